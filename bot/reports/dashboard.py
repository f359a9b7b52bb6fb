"""The supervisors' dashboard: figures for today and for the last 30 days, as plain dataclasses.

Periods are UTC: "today" runs from 00:00 UTC to now; "the last 30 days" from 00:00 UTC 29 days
before today to now (30 calendar days, today included). The definitions:

* **Collected by channel**: payments that became Paid in the period (a Paid row is never written
  again, so its ``updated_at`` is when), their amounts without the convenience fee, gross of
  refunds. ``worker``: charged by the worker on a later day than it was made (scheduled
  payments, plan installments, retries), whatever channel authorized it; ``sms`` and ``web``:
  charged at once where the customer authorized it (``Payment.channel``). Refunds made in the
  period are given beside it.
* **The funnel**, in phone numbers: *texted*: PayBot sent the number an SMS in the period;
  *replied*: of those, the number texted back in the period; *verified*: of those, its
  conversation is tied to an account (a number on file, or one that passed the second factor);
  *paid*: of those, the account had a payment become Paid in the period.
* **Handoffs** requested in the period, by reason; the median time from the request to an
  agent's first reply, over those answered (None when none was).
* **Opt-outs**: numbers that opted out in the period (STOP and its kin, or the carrier's 21610).
* **Declines**: payments declined in the period, and their amounts.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger.models import AuditEvent, Conversation, Handoff, Message, Payment, Refund

COLLECTING_CHANNELS = ("sms", "web", "worker")


@dataclass(frozen=True)
class Funnel:
    texted: int
    replied: int
    verified: int
    paid: int


@dataclass(frozen=True)
class Figures:
    start: datetime  # UTC
    end: datetime  # UTC (now)
    collected_cents: dict[str, int]  # sms, web, worker: always all three
    collected_count: dict[str, int]
    refunded_cents: int
    funnel: Funnel
    handoffs_by_reason: dict[str, int]
    median_first_reply_seconds: float | None
    opt_outs: int
    declines: int
    declined_cents: int

    @property
    def collected_total_cents(self) -> int:
        return sum(self.collected_cents.values())


@dataclass(frozen=True)
class Dashboard:
    as_of: datetime
    today: Figures
    last_30_days: Figures
    timezone: str = field(default="UTC")  # every period and time above


async def dashboard(session: AsyncSession, *, now: datetime) -> Dashboard:
    midnight = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    return Dashboard(
        as_of=now,
        today=await figures(session, start=midnight, end=now),
        last_30_days=await figures(session, start=midnight - timedelta(days=29), end=now),
    )


async def figures(session: AsyncSession, *, start: datetime, end: datetime) -> Figures:
    cents, count = await _collected(session, start, end)
    declines, declined_cents = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(Payment.amount_cents), 0)).where(
                Payment.status == "declined", Payment.updated_at >= start,
                Payment.updated_at <= end,
            )
        )
    ).one()
    refunded = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount_cents), 0)).where(
            Refund.status.in_(("succeeded", "pending")), Refund.updated_at >= start,
            Refund.updated_at <= end,
        )
    )
    opt_outs = await session.scalar(
        select(func.count(func.distinct(AuditEvent.phone))).where(
            AuditEvent.kind == "opt_out", AuditEvent.at >= start, AuditEvent.at <= end
        )
    )
    by_reason, median = await _handoffs(session, start, end)
    return Figures(
        start=start, end=end, collected_cents=cents, collected_count=count,
        refunded_cents=int(refunded or 0), funnel=await _funnel(session, start, end),
        handoffs_by_reason=by_reason, median_first_reply_seconds=median,
        opt_outs=int(opt_outs or 0), declines=int(declines), declined_cents=int(declined_cents),
    )


async def _collected(
    session: AsyncSession, start: datetime, end: datetime
) -> tuple[dict[str, int], dict[str, int]]:
    cents = dict.fromkeys(COLLECTING_CHANNELS, 0)
    count = dict.fromkeys(COLLECTING_CHANNELS, 0)
    found = await session.execute(
        select(Payment.channel, Payment.amount_cents, Payment.scheduled_for, Payment.created_at)
        .where(Payment.status == "paid", Payment.updated_at >= start, Payment.updated_at <= end)
    )
    for channel, amount, scheduled_for, created_at in found:
        # Made for a later day than it was made on: the worker charged it.
        via = "worker" if scheduled_for > created_at.astimezone(UTC).date() else channel
        via = via if via in cents else "worker"
        cents[via] += int(amount)
        count[via] += 1
    return cents, count


async def _funnel(session: AsyncSession, start: datetime, end: datetime) -> Funnel:
    def phones(direction: str) -> object:
        return select(Message.phone).distinct().where(
            Message.direction == direction, Message.channel == "sms",
            Message.created_at >= start, Message.created_at <= end,
        )

    texted = set(await session.scalars(phones("outbound")))  # type: ignore[call-overload]
    replied = texted & set(await session.scalars(phones("inbound")))  # type: ignore[call-overload]
    accounts: dict[str, int] = {
        phone: account_id
        for phone, account_id in await session.execute(
            select(Conversation.phone, Conversation.account_id).where(
                Conversation.phone.in_(replied), Conversation.account_id.is_not(None)
            )
        )
    } if replied else {}
    paying = set(
        await session.scalars(
            select(Payment.account_id).distinct().where(
                Payment.account_id.in_(set(accounts.values())), Payment.status == "paid",
                Payment.updated_at >= start, Payment.updated_at <= end,
            )
        )
    ) if accounts else set()
    paid = sum(1 for account_id in accounts.values() if account_id in paying)
    return Funnel(texted=len(texted), replied=len(replied), verified=len(accounts), paid=paid)


async def _handoffs(
    session: AsyncSession, start: datetime, end: datetime
) -> tuple[dict[str, int], float | None]:
    found = (
        await session.execute(
            select(Handoff.reason, Handoff.requested_at, Handoff.first_reply_at).where(
                Handoff.requested_at >= start, Handoff.requested_at <= end
            )
        )
    ).all()
    by_reason: dict[str, int] = {}
    waits = []
    for reason, requested_at, first_reply_at in found:
        by_reason[reason] = by_reason.get(reason, 0) + 1
        if first_reply_at is not None:
            waits.append((first_reply_at - requested_at).total_seconds())
    return dict(sorted(by_reason.items())), (statistics.median(waits) if waits else None)
