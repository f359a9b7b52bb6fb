"""Claiming: which payments are due (or unconfirmed) and taking each for this worker alone.

Due rows are read once a pass, then claimed a batch at a time (``SELECT ... FOR UPDATE SKIP
LOCKED`` where the database has it, and always the conditional ``UPDATE ... WHERE
status='scheduled'``), each batch fitted to the accounts' balances first; the claim is committed
before the processor is called. Rows a crash or an unreachable processor left ``processing`` with
no processor id are taken again once it is safe (see bot/worker/loop.py). A claimed row that is
not sent goes back (``release``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from bot import metrics
from bot.clock import Clock
from bot.ledger import queries as ledger
from bot.ledger.db import Database
from bot.ledger.models import Account, AuditEvent, Payment, Plan
from bot.payments import collectable
from bot.worker.config import PassReport, WorkerConfig
from bot.worker.plan_notices import PlanNotices
from bot.worker.rules import CreditorRules, local_today

log = logging.getLogger(__name__)

UNAVAILABLE = "processor_unavailable"  # the code PaymentService uses too
NEEDS_REVIEW = "needs_review"
CLAIM_EVENT = "charge_claimed"
# No time zone is more than a day ahead of UTC (UTC+14 at most).
_ZONE_LEAD = timedelta(days=1)


@dataclass(frozen=True)
class Job:
    payment_id: int
    recovery: bool


class Claims:
    def __init__(
        self,
        *,
        database: Database,
        clock: Clock,
        config: WorkerConfig,
        rules: CreditorRules,
        notices: PlanNotices,
        name: str,
        can_look_up: bool,
    ) -> None:
        self.database = database
        self.clock = clock
        self.config = config
        self.rules = rules
        self.notices = notices
        self.name = name
        # A gateway that finds a charge by our reference: an old unconfirmed row is looked up
        # rather than left for review.
        self.can_look_up = can_look_up

    async def due_ids(self) -> list[int]:
        """Scheduled rows whose date has begun somewhere (no zone is a day ahead of UTC),
        oldest date first; whether it has begun for the customer is checked at the claim."""
        horizon = self.clock.now().astimezone(UTC).date() + _ZONE_LEAD
        async with self.database.session() as session:
            rows = await session.execute(
                select(Payment.id, Payment.scheduled_for).where(
                    Payment.status == "scheduled", Payment.scheduled_for <= horizon
                )
            )
            due = [row.id for row in sorted(rows, key=lambda r: (r.scheduled_for, r.id))]
        metrics.WORKER_DUE.inc(len(due))
        return due

    async def unconfirmed_ids(self) -> list[int]:
        async with self.database.session() as session:
            rows = await session.scalars(
                select(Payment.id).where(
                    Payment.status == "processing",
                    Payment.processor_id.is_(None),
                    Payment.failure_code.is_distinct_from(NEEDS_REVIEW),
                )
            )
            return sorted(rows)

    async def claim_due(self, ids: list[int], report: PassReport) -> list[Job]:
        now = self.clock.now()
        jobs: list[Job] = []
        taken: list[Any] = []
        async with self.database.session() as session:
            closed, settling = await self._fit_to_balances(session, ids, now)
            rows = (
                await session.execute(
                    select(
                        Payment.id,
                        Payment.reference,
                        Payment.scheduled_for,
                        Payment.account_id,
                        Account.timezone,
                        Account.creditor_code,
                        Plan.status.label("plan_status"),
                    )
                    .join(Account, Account.id == Payment.account_id)
                    .outerjoin(Plan, Plan.id == Payment.plan_id)
                    .where(Payment.id.in_(ids), Payment.status == "scheduled")
                    .order_by(Payment.scheduled_for, Payment.id)
                    .with_for_update(skip_locked=True, of=Payment)
                )
            ).all()
            for row in rows:
                if row.plan_status == "canceled":
                    continue  # the cancellation cancels the rows; never charge meanwhile
                if row.scheduled_for > local_today(now, row.timezone):
                    continue
                if row.account_id in settling:
                    report.held_for_settlement += 1
                    continue
                rules = await self.rules.of(session, row.creditor_code)
                if self.rules.held(now, row.timezone, rules):
                    report.held += 1
                    continue
                claimed = await session.execute(
                    update(Payment)
                    .where(Payment.id == row.id, Payment.status == "scheduled")
                    .values(status="processing", failure_code=None, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
                if claimed.rowcount != 1:
                    continue  # another worker took it
                jobs.append(Job(row.id, recovery=False))
                taken.append(row)
            for row in taken:  # added together: one INSERT for the batch
                await ledger.audit(
                    session,
                    CLAIM_EVENT,
                    at=now,
                    actor=self.name[:40],
                    account_id=row.account_id,
                    reference=row.reference,
                )
            notices = [await self.notices.queue(session, plan, now) for plan in closed]
            await session.commit()  # the claim is kept before any processor call
        report.claimed += len(jobs)
        metrics.WORKER_CLAIMED.inc(len(jobs))
        await self.notices.send([n for n in notices if n is not None])
        return jobs

    async def _fit_to_balances(
        self, session: Any, ids: list[int], now: datetime
    ) -> tuple[list[Plan], set[int]]:
        """The rule of bot/payments/collectable.py before anything is charged: on each account of
        the batch (locked, in id order, before its payments, as every other writer does) what is
        scheduled beyond the balance is cut, the latest installments first; a plan left with
        nothing to charge is closed as paid in full. Returns the plans closed, and the accounts
        whose settlement is on its way: their scheduled payments wait (charged, they would come
        on top of a settlement that settles everything; canceled, they would be lost if its bank
        debit fails)."""
        account_ids = sorted(set(await session.scalars(
            select(Payment.account_id).where(Payment.id.in_(ids), Payment.status == "scheduled")
        )))
        closed: list[Plan] = []
        settling: set[int] = set()
        for account_id in account_ids:
            account = await collectable.lock_account(session, account_id)
            state = await collectable.collectable(
                session, account_id, balance_cents=account.balance_cents
            )
            if state.settling:
                settling.add(account_id)
                continue
            cuts = await collectable.fit_scheduled(session, account_id, at=now, state=state)
            if not cuts:
                continue
            await ledger.audit(
                session, "scheduled_cut_to_balance", at=now, actor=self.name[:40],
                account_id=account_id,
                cuts=[{"reference": p.reference, "old_cents": old, "new_cents": p.amount_cents}
                      for p, old in cuts],
            )
            plan_ids = {p.plan_id for p, _ in cuts if p.plan_id is not None}
            closed += await collectable.close_paid_plans(session, plan_ids, at=now)
        return closed, settling

    async def claim_unconfirmed(self, ids: list[int], report: PassReport) -> list[Job]:
        """Rows the ledger shows `processing` with no processor id: unknown outcome."""
        now = self.clock.now()
        jobs: list[Job] = []
        async with self.database.session() as session:
            rows = (
                await session.execute(
                    select(
                        Payment.id,
                        Payment.reference,
                        Payment.account_id,
                        Payment.updated_at,
                        Payment.created_at,
                        Payment.failure_code,
                        Account.timezone,
                        Account.creditor_code,
                    )
                    .join(Account, Account.id == Payment.account_id)
                    .where(
                        Payment.id.in_(ids),
                        Payment.status == "processing",
                        Payment.processor_id.is_(None),
                        Payment.failure_code.is_distinct_from(NEEDS_REVIEW),
                    )
                    .order_by(Payment.id)
                    .with_for_update(skip_locked=True, of=Payment)
                )
            ).all()
            for row in rows:
                waited = now - row.updated_at
                if not (
                    waited >= self.config.recovery_delay
                    or (row.failure_code == UNAVAILABLE
                        and waited >= self.config.retry_unavailable_after)
                ):
                    continue  # possibly still in flight elsewhere
                rules = await self.rules.of(session, row.creditor_code)
                if self.rules.held(now, row.timezone, rules):
                    report.held += 1
                    continue
                first_attempt = await _first_attempt_at(session, row)
                too_old = now - first_attempt > self.config.replay_window
                values: dict[str, Any] = {"failure_code": None, "updated_at": now}
                if too_old and not self.can_look_up:
                    values["failure_code"] = NEEDS_REVIEW
                # Compare-and-set on what we read: of two workers, only one changes the row.
                taken = await session.execute(
                    update(Payment)
                    .where(
                        Payment.id == row.id,
                        Payment.status == "processing",
                        Payment.processor_id.is_(None),
                        Payment.updated_at == row.updated_at,
                        Payment.failure_code.is_not_distinct_from(row.failure_code),
                    )
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                if taken.rowcount != 1:
                    continue
                if values["failure_code"] == NEEDS_REVIEW:
                    report.needs_review += 1
                    log.error(
                        "payment %s: outcome unknown since %s, beyond the processor's "
                        "idempotency window; not retried, left for review",
                        row.reference, first_attempt.isoformat(),
                    )
                    await ledger.audit(
                        session, "payment_needs_review", at=now, actor=self.name[:40],
                        account_id=row.account_id, reference=row.reference,
                        first_attempt=first_attempt.isoformat(),
                    )
                    continue
                await ledger.audit(
                    session, "charge_recovery", at=now, actor=self.name[:40],
                    account_id=row.account_id, reference=row.reference,
                    after=row.failure_code or "interrupted",
                )
                jobs.append(Job(row.id, recovery=True))
            await session.commit()
        report.recovered += len(jobs)
        metrics.WORKER_CLAIMED.inc(len(jobs))
        return jobs

    async def release(self, job: Job, report: PassReport) -> None:
        """A claimed row we will not send now (stopping, processor down): nothing reached the
        processor, so a due row goes back to `scheduled`; a recovered one waits for the next
        pass as `processor_unavailable`."""
        now = self.clock.now()
        values: dict[str, Any] = (
            {"failure_code": UNAVAILABLE, "updated_at": now}
            if job.recovery
            else {"status": "scheduled", "failure_code": None, "updated_at": now}
        )
        await self._unclaim(job, values)
        report.released += 1

    async def mark_unavailable(self, job: Job, report: PassReport) -> None:
        """The processor could not be reached: the row waits for the next pass."""
        report.unavailable += 1
        await self._unclaim(job, {"failure_code": UNAVAILABLE, "updated_at": self.clock.now()})

    async def _unclaim(self, job: Job, values: dict[str, Any]) -> None:
        async with self.database.session() as session:
            await session.execute(
                update(Payment)
                .where(
                    Payment.id == job.payment_id,
                    Payment.status == "processing",
                    Payment.processor_id.is_(None),
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            await session.commit()


async def _first_attempt_at(session: Any, row: Any) -> datetime:
    """When this payment's key first went (or may have gone) to the processor: its first claim
    by a worker, else its creation (a payment made "now" is charged as it is written)."""
    events = await session.execute(
        select(AuditEvent.at, AuditEvent.detail)
        .where(AuditEvent.account_id == row.account_id, AuditEvent.kind == CLAIM_EVENT)
        .order_by(AuditEvent.id)
    )
    for at, detail in events:
        if isinstance(detail, dict) and detail.get("reference") == row.reference:
            return at
    return row.created_at
