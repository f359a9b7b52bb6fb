"""The scheduling step of each worker pass (``plan_outreach``): offers past their expiry expired
(status ``expired``, links revoked so ``/p/{token}`` answers 410, one ``expired`` notice queued
when the offer had gone out) and up to three reminders queued before an unsigned offer expires
(``reminder_days_before``, in the customer's wall-clock time). Idempotent: dedupe keys."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.settings import FlowSettings, Settings
from bot.ledger import queries as ledger
from bot.ledger.db import Database
from bot.ledger.models import Account, Link, Offer, Outreach
from bot.outreach.queueing import OutreachReport, enqueue
from bot.outreach.timing import reminder_due

log = logging.getLogger(__name__)


async def plan_outreach(
    *, database: Database, settings: Settings, clock: Any, actor: str = "worker"
) -> OutreachReport:
    """Expire offers past their expiry and queue the reminders of open offers. Idempotent."""
    report = OutreachReport()
    now = clock.now()
    async with database.session() as session:
        due_to_expire = list(await session.scalars(
            select(Offer.id).where(
                Offer.status == "open", Offer.expires_at.is_not(None), Offer.expires_at <= now
            ).order_by(Offer.expires_at, Offer.id)
        ))
        to_remind = list(await session.scalars(
            select(Offer.id).where(
                Offer.status == "open", Offer.sent_at.is_not(None), Offer.expires_at > now
            ).order_by(Offer.id)
        ))
    for offer_id in due_to_expire:
        await _expire(database, offer_id, now, actor, report)
    for offer_id in to_remind:
        await _queue_reminders(database, settings, offer_id, now, report)
    return report


async def expire_offer(
    session: AsyncSession, offer: Offer, *, at: datetime, actor: str = "worker"
) -> bool:
    """Mark an open offer expired, revoke its links, queue its expiry notice (no commit). False
    when the offer was no longer open (someone else got there first)."""
    changed = await session.execute(
        update(Offer)
        .where(Offer.id == offer.id, Offer.status == "open")
        .values(status="expired")
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        return False
    await session.execute(
        update(Link)
        .where(Link.offer_id == offer.id, Link.revoked_at.is_(None))
        .values(revoked_at=at)
        .execution_options(synchronize_session=False)
    )
    await ledger.audit(session, "offer_expired", at=at, actor=actor[:40],
                       account_id=offer.account_id, offer_id=offer.id)
    if offer.sent_at is not None:  # the customer was told of the offer: tell them it ended
        await enqueue(
            session, dedupe_key=f"expired:{offer.id}", account_id=offer.account_id,
            kind="expired", channel=await _offer_channel(session, offer.id), at=at,
            offer_id=offer.id,
        )
    return True


async def _expire(
    database: Database, offer_id: int, now: datetime, actor: str, report: OutreachReport
) -> None:
    async with database.session() as session:
        offer = await session.get(Offer, offer_id)
        if offer is None:
            return
        try:
            if not await expire_offer(session, offer, at=now, actor=actor):
                return
            queued = any(isinstance(o, Outreach) for o in session.new)
            await session.commit()
        except IntegrityError:  # another worker queued the same notice first
            await session.rollback()
            return
    report.expired += 1
    report.queued += int(queued)


async def _offer_channel(session: AsyncSession, offer_id: int) -> str:
    """Reminders and the expiry notice go the way the offer went (both when unknown)."""
    channel = await session.scalar(
        select(Outreach.channel)
        .where(Outreach.offer_id == offer_id, Outreach.kind == "offer")
        .order_by(Outreach.id)
        .limit(1)
    )
    return channel or "both"


async def _queue_reminders(
    database: Database, settings: Settings, offer_id: int, now: datetime, report: OutreachReport
) -> None:
    async with database.session() as session:
        found = (await session.execute(
            select(Offer, Account).join(Account, Account.id == Offer.account_id)
            .where(Offer.id == offer_id, Offer.status == "open")
        )).first()
        if found is None:
            return
        offer, account = found
        flow = await _flow(session, settings, account)
        try:
            added = await _add_reminders(session, offer, account, flow, now)
            if added:
                await session.commit()
        except IntegrityError:  # queued meanwhile by another worker
            await session.rollback()
            return
    report.queued += added


async def _add_reminders(
    session: AsyncSession, offer: Offer, account: Account, flow: FlowSettings, now: datetime
) -> int:
    assert offer.expires_at is not None and offer.sent_at is not None
    existing = set(await session.scalars(
        select(Outreach.dedupe_key).where(Outreach.offer_id == offer.id,
                                          Outreach.kind == "reminder")
    ))
    channel: str | None = None
    added = 0
    offsets = sorted(set(flow.reminder_days_before), reverse=True)[:3]
    for number, days in enumerate(offsets, start=1):
        key = f"reminder:{offer.id}:{number}"
        if key in existing or days <= 0:
            continue
        due = reminder_due(offer.expires_at, days, account.timezone)
        if due <= offer.sent_at:
            continue  # already past when the offer went out: never a burst of reminders
        channel = channel or await _offer_channel(session, offer.id)
        await enqueue(
            session, dedupe_key=key, account_id=account.id, kind="reminder",
            channel=channel, at=now, offer_id=offer.id, not_before=due,
            detail={"n": number, "days_before": days, "due_at": due.isoformat()},
        )
        added += 1
    return added


async def _flow(session: AsyncSession, settings: Settings, account: Account) -> FlowSettings:
    creditor = await ledger.creditor_of(session, account)
    return settings.flow.for_creditor(creditor)
