"""Queueing one proactive message: an Outreach row per dedupe key (a retried request or a second
worker never queues a message twice), the channels it may take, and the counts a pass reports."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger.models import Outreach

CHANNELS = ("sms", "email", "both")
VIA = {"sms": ("sms",), "email": ("email",), "both": ("sms", "email")}
# Kinds about an offer that is still open: not sent once it was signed, withdrawn or expired.
OFFER_KINDS = frozenset({"offer", "reminder"})


async def enqueue(
    session: AsyncSession,
    *,
    dedupe_key: str,
    account_id: int,
    kind: str,
    channel: str,
    at: datetime,
    offer_id: int | None = None,
    plan_id: int | None = None,
    not_before: datetime | None = None,
    detail: dict[str, Any] | None = None,
) -> Outreach:
    """Queue one proactive message (no commit). The same dedupe key again returns the row already
    queued: a retried request or a second worker never queues a message twice."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    existing = await session.scalar(select(Outreach).where(Outreach.dedupe_key == dedupe_key))
    if existing is not None:
        return existing
    row = Outreach(
        dedupe_key=dedupe_key,
        account_id=account_id,
        offer_id=offer_id,
        plan_id=plan_id,
        kind=kind,
        channel=channel,
        status="held",
        not_before=not_before or at,
        detail=detail or {},
        created_at=at,
    )
    session.add(row)
    return row


@dataclass
class OutreachReport:
    queued: int = 0  # reminders and expiry notices queued by the scheduling pass
    expired: int = 0  # offers that reached their expiry
    sent: int = 0
    held: int = 0  # examined and held again (quiet hours, frequency cap, a send to retry)
    skipped: int = 0  # offer no longer open, opted out, nothing to send to
    failed: int = 0  # the providers refused every channel, MAX_ATTEMPTS times

    def add(self, other: OutreachReport) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
