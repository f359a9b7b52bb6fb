"""Proactive messages (offers, reminders, expiry and cancellation notices), each at most once.

Anything that wants to reach a customer unprompted queues an Outreach row here with a dedupe key;
the worker delivers queued rows when they may go out (opt-outs, quiet hours in the customer's
time zone, the per-customer frequency cap).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.models import Outreach

CHANNELS = ("sms", "email", "both")


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
