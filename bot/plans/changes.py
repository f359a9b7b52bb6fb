"""Changing a signed plan by text, within its rules: move the next date, skip one, pay extra now.

The rules come from the plan (`Plan.rules`, copied from the offer: ``skips_allowed``,
``move_max_days``) with the creditor's flow settings as defaults (``plan_skips_allowed``,
``plan_move_max_days``, ``min_payment_cents``, ``furthest_schedule_days``).

`plan_status` reads where a plan stands; the ``check_*`` functions are pure and raise
`PlanChangeRefused` with a sentence the customer can read; the ``*_installment`` and `pay_extra`
functions check again under a lock (a confirmation may be stale) and write the change with an
audit event, then commit.

The date a payment may be moved to is bounded by its ORIGINAL date (the one signed, or the one a
skip gave it), read from the audit trail, so moving it twice never takes it further.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.settings import FlowSettings
from bot.ledger import queries as ledger
from bot.ledger.models import Account, AuditEvent, Payment, PaymentMethod, Plan
from bot.money import format_cents
from bot.payments import collectable
from bot.payments.service import (
    FREQUENCY_STEP,
    OnRecorded,
    PaymentOutcome,
    PaymentRequest,
    PaymentService,
)
from bot.plans.signing import PlanError
from bot.text.i18n import gettext
from bot.text.rendering import format_day

MOVED = "plan_installment_moved"
SKIPPED = "plan_installment_skipped"
EXTRA_PAID = "plan_extra_payment"
# A charge in these states counts as made: the worker completes a `processing` one with its key.
EXTRA_COUNTS = {"paid", "pending", "processing"}


class PlanChangeRefused(PlanError):
    """A change the plan's rules do not allow, worded for the customer."""


@dataclass(frozen=True)
class PlanRules:
    skips_allowed: int
    move_max_days: int
    min_payment_cents: int
    furthest_schedule_days: int


def plan_rules(plan: Plan, settings: FlowSettings) -> PlanRules:
    rules = plan.rules or {}

    def whole(name: str, default: int) -> int:
        value = rules.get(name, default)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    return PlanRules(
        skips_allowed=whole("skips_allowed", settings.plan_skips_allowed),
        move_max_days=whole("move_max_days", settings.plan_move_max_days),
        min_payment_cents=settings.min_payment_cents,
        furthest_schedule_days=settings.furthest_schedule_days,
    )


@dataclass(frozen=True)
class PlanStatus:
    """Where an active plan stands, as the customer sees it (dates in their zone)."""

    plan_id: int
    frequency: str
    today: date
    rules: PlanRules
    skips_used: int
    paid_cents: int
    remaining_cents: int  # still scheduled
    remaining_count: int
    method_label: str | None = None
    next_payment_id: int | None = None
    next_due: date | None = None
    next_amount_cents: int = 0
    original_due: date | None = None  # of the next payment: the bound of a move
    following_due: date | None = None
    last_due: date | None = None
    # Installments the processor declined (each retry is a row of its own): the customer hears
    # of them with the plan, not only "paid so far".
    declined_count: int = 0
    declined_cents: int = 0
    last_declined_on: date | None = None

    @property
    def skips_left(self) -> int:
        return max(0, self.rules.skips_allowed - self.skips_used)

    @property
    def horizon(self) -> date:
        return self.today + timedelta(days=self.rules.furthest_schedule_days)

    @property
    def latest_move(self) -> date | None:
        """The latest day the next payment may be moved to."""
        if self.next_due is None:
            return None
        latest = min(
            (self.original_due or self.next_due) + timedelta(days=self.rules.move_max_days),
            self.horizon,
        )
        if self.following_due is not None:
            latest = min(latest, self.following_due - timedelta(days=1))
        return latest

    @property
    def min_extra_cents(self) -> int:
        return min(self.rules.min_payment_cents, self.remaining_cents)

    @property
    def skip_to(self) -> date | None:
        """Where a skipped payment goes: one step after the plan's last one."""
        if self.last_due is None:
            return None
        return self.last_due + FREQUENCY_STEP.get(self.frequency, relativedelta(months=1))


# ---------------------------------------------------------------- the rules (pure)


def check_move(status: PlanStatus, new_date: date) -> None:
    if status.next_due is None:
        raise PlanChangeRefused(gettext("There is no upcoming payment on your plan to move."))
    if new_date < status.today:
        raise PlanChangeRefused(gettext("That date has already passed."))
    if new_date == status.next_due:
        raise PlanChangeRefused(
            gettext("Your next payment is already on %(day)s.") % {"day": format_day(new_date)}
        )
    latest = status.latest_move
    assert latest is not None
    if new_date > latest:
        if status.following_due is not None and new_date >= status.following_due:
            raise PlanChangeRefused(
                gettext("The new date must be before your following payment on %(day)s.")
                % {"day": format_day(status.following_due)}
            )
        raise PlanChangeRefused(
            gettext(
                "Your plan lets you move a payment up to %(days)s days; the latest date is "
                "%(day)s."
            ) % {"days": status.rules.move_max_days, "day": format_day(latest)}
        )


def check_skip(status: PlanStatus) -> None:
    if status.next_due is None:
        raise PlanChangeRefused(gettext("There is no upcoming payment on your plan to skip."))
    if status.rules.skips_allowed <= 0:
        raise PlanChangeRefused(gettext("Your plan does not allow skipping a payment."))
    if status.skips_left <= 0:
        allowed = status.rules.skips_allowed
        if allowed == 1:
            raise PlanChangeRefused(
                gettext("You can skip one payment on this plan and already did.")
            )
        raise PlanChangeRefused(
            gettext("You can skip %(num)s payments on this plan and already did.")
            % {"num": allowed}
        )


def check_extra(status: PlanStatus, amount_cents: int) -> None:
    if status.remaining_cents <= 0:
        raise PlanChangeRefused(gettext("Nothing is left to pay on your plan."))
    if amount_cents > status.remaining_cents:
        raise PlanChangeRefused(
            gettext("That is more than is left on your plan (%(amount)s).")
            % {"amount": format_cents(status.remaining_cents)}
        )
    if amount_cents < status.min_extra_cents:
        raise PlanChangeRefused(
            gettext("The smallest extra payment is %(amount)s.")
            % {"amount": format_cents(status.min_extra_cents)}
        )


# ---------------------------------------------------------------- reading a plan


async def active_plan(session: AsyncSession, account_id: int) -> Plan | None:
    return await session.scalar(
        select(Plan)
        .where(Plan.account_id == account_id, Plan.status == "active")
        .order_by(Plan.created_at.desc(), Plan.id.desc())
        .limit(1)
    )


async def _scheduled(session: AsyncSession, plan_id: int, *, lock: bool = False) -> list[Payment]:
    query = (
        select(Payment)
        .where(Payment.plan_id == plan_id, Payment.status == "scheduled")
        .order_by(Payment.scheduled_for, Payment.id)
    )
    if lock:
        query = query.with_for_update()
    return list(await session.scalars(query))


async def _original_due(session: AsyncSession, payment: Payment) -> date:
    """The date a move is measured from: the first date it was moved away from since it was
    signed or last skipped, else where it stands."""
    events = await session.scalars(
        select(AuditEvent)
        .where(AuditEvent.account_id == payment.account_id, AuditEvent.kind.in_((MOVED, SKIPPED)))
        .order_by(AuditEvent.id)
    )
    original: date | None = None
    for event in events:
        if (event.detail or {}).get("payment_id") != payment.id:
            continue
        if event.kind == SKIPPED:
            original = None
        elif original is None:
            original = date.fromisoformat(event.detail["old_date"])
    return original or payment.scheduled_for


async def plan_status(
    session: AsyncSession,
    plan: Plan,
    *,
    settings: FlowSettings,
    today: date,
    lock: bool = False,
) -> PlanStatus:
    scheduled = await _scheduled(session, plan.id, lock=lock)
    paid = await session.scalars(
        select(Payment.amount_cents).where(Payment.plan_id == plan.id, Payment.status == "paid")
    )
    declined = list(
        await session.scalars(
            select(Payment)
            .where(Payment.plan_id == plan.id, Payment.status == "declined")
            .order_by(Payment.scheduled_for, Payment.id)
        )
    )
    method = await session.get(PaymentMethod, plan.method_id) if plan.method_id else None
    base: dict[str, Any] = {
        "plan_id": plan.id,
        "frequency": plan.frequency,
        "today": today,
        "rules": plan_rules(plan, settings),
        "skips_used": plan.skips_used or 0,
        "paid_cents": sum(paid),
        "remaining_cents": sum(p.amount_cents for p in scheduled),
        "remaining_count": len(scheduled),
        "method_label": method.description if method else None,
        "declined_count": len(declined),
        "declined_cents": sum(p.amount_cents for p in declined),
        "last_declined_on": declined[-1].scheduled_for if declined else None,
    }
    if not scheduled:
        return PlanStatus(**base)
    upcoming = scheduled[0]
    return PlanStatus(
        **base,
        next_payment_id=upcoming.id,
        next_due=upcoming.scheduled_for,
        next_amount_cents=upcoming.amount_cents,
        original_due=await _original_due(session, upcoming),
        following_due=scheduled[1].scheduled_for if len(scheduled) > 1 else None,
        last_due=scheduled[-1].scheduled_for,
    )


# ---------------------------------------------------------------- the changes


@dataclass(frozen=True)
class DateChange:
    reference: str
    amount_cents: int
    old_date: date
    new_date: date
    skips_left: int = 0


async def _locked_plan(session: AsyncSession, plan_id: int) -> Plan:
    plan = await session.get(Plan, plan_id, with_for_update=True, populate_existing=True)
    if plan is None or plan.status != "active":
        raise PlanChangeRefused(gettext("Your plan is no longer active, so nothing was changed."))
    return plan


async def move_next_installment(
    session: AsyncSession,
    plan_id: int,
    *,
    new_date: date,
    settings: FlowSettings,
    today: date,
    at: datetime,
    channel: str = "sms",
) -> DateChange:
    plan = await _locked_plan(session, plan_id)
    status = await plan_status(session, plan, settings=settings, today=today, lock=True)
    check_move(status, new_date)
    return await _reschedule_next(
        session, plan, status, new_date, MOVED, at=at, channel=channel, skips_left=status.skips_left
    )


async def skip_next_installment(
    session: AsyncSession,
    plan_id: int,
    *,
    settings: FlowSettings,
    today: date,
    at: datetime,
    channel: str = "sms",
) -> DateChange:
    plan = await _locked_plan(session, plan_id)
    status = await plan_status(session, plan, settings=settings, today=today, lock=True)
    check_skip(status)
    assert status.skip_to is not None
    plan.skips_used = (plan.skips_used or 0) + 1
    return await _reschedule_next(
        session,
        plan,
        status,
        status.skip_to,
        SKIPPED,
        at=at,
        channel=channel,
        skips_left=status.skips_left - 1,
        skips_used=plan.skips_used,
    )


async def _reschedule_next(
    session: AsyncSession,
    plan: Plan,
    status: PlanStatus,
    new_date: date,
    event: str,
    *,
    at: datetime,
    channel: str,
    skips_left: int,
    **detail: Any,
) -> DateChange:
    """Give the plan's next payment a new date, audited, and commit."""
    payment = await session.get(Payment, status.next_payment_id)
    assert payment is not None
    old = payment.scheduled_for
    payment.scheduled_for, payment.updated_at = new_date, at
    await _record_change(
        session,
        plan,
        payment,
        event,
        at=at,
        channel=channel,
        payment_id=payment.id,
        old_date=old.isoformat(),
        new_date=new_date.isoformat(),
        **detail,
    )
    return DateChange(payment.reference, payment.amount_cents, old, new_date, skips_left)


async def _record_change(
    session: AsyncSession,
    plan: Plan,
    payment: Payment,
    event: str,
    *,
    at: datetime,
    channel: str,
    **detail: Any,
) -> None:
    """Audit a change the customer made to `plan` through `payment`, and commit it."""
    await ledger.audit(
        session,
        event,
        at=at,
        account_id=plan.account_id,
        plan_id=plan.id,
        reference=payment.reference,
        channel=channel,
        **detail,
    )
    await session.commit()


@dataclass(frozen=True)
class ExtraPayment:
    outcome: PaymentOutcome
    applied: bool  # the last installments were lowered (False: declined, nothing changed)
    reduced: list[tuple[str, int, int]] = field(default_factory=list)  # (reference, old, new)
    remaining_cents: int = 0


async def _settle_extra(
    session: AsyncSession,
    plan: Plan,
    payment: Payment,
    outcome: PaymentOutcome,
    lowered: list[tuple[int, int, int]],
    *,
    at: datetime,
    channel: str,
) -> ExtraPayment:
    """After the charge of an EXTRA this call recorded: declined at once, the installments it
    lowered are given back (those still scheduled or canceled by it); otherwise the change is
    audited and a plan with nothing left and this paid is completed."""
    rows = {
        row.id: row
        for row in await session.scalars(
            select(Payment)
            .where(Payment.id.in_([i for i, _, _ in lowered]))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    if payment.status not in EXTRA_COUNTS:
        for installment_id, old, new in lowered:
            row = rows.get(installment_id)
            untouched = row is not None and row.amount_cents == new
            if not untouched or row.status not in {"scheduled", "canceled"}:
                continue  # claimed or changed meanwhile: left as it now stands
            row.amount_cents, row.status, row.updated_at = old, "scheduled", at
        payment.plan_id = None
        remaining = sum(p.amount_cents for p in await _scheduled(session, plan.id))
        await session.commit()
        return ExtraPayment(outcome, applied=False, remaining_cents=remaining)
    remaining = sum(p.amount_cents for p in await _scheduled(session, plan.id))
    references = {row.id: row.reference for row in rows.values()}
    reduced = [(references.get(i, ""), old, new) for i, old, new in lowered]
    return await _extra_applied(
        session, plan, payment, outcome, reduced, remaining, at=at, channel=channel
    )


async def _extra_applied(
    session: AsyncSession,
    plan: Plan,
    payment: Payment,
    outcome: PaymentOutcome,
    reduced: list[tuple[str, int, int]],
    remaining: int,
    *,
    at: datetime,
    channel: str,
) -> ExtraPayment:
    """An EXTRA that counts, whichever way its installments were lowered: a plan it paid off is
    completed, and the change is recorded with what it lowered."""
    if remaining == 0 and payment.status == "paid":
        plan.status = "completed"
    await _record_change(
        session,
        plan,
        payment,
        EXTRA_PAID,
        at=at,
        channel=channel,
        amount_cents=payment.amount_cents,
        status=payment.status,
        reduced=[{"reference": r, "old_cents": o, "new_cents": n} for r, o, n in reduced],
        remaining_cents=remaining,
    )
    return ExtraPayment(outcome, applied=True, reduced=reduced, remaining_cents=remaining)


async def give_back_extra(session: AsyncSession, payment: Payment, *, at: datetime) -> None:
    """An EXTRA that counted (Pending by bank, or Processing) has failed after all: the
    installments it lowered are owed again, so they are scheduled again as they were, in the
    transaction that records the failure. Only rows still as the EXTRA left them, and never
    beyond what is open (bot/payments/collectable.py): the balance may have moved meanwhile."""
    if payment.plan_id is None or payment.installment_number is not None:
        return  # not an EXTRA, or one given back (or declined at once) already
    changes = await session.scalars(
        select(AuditEvent)
        .where(AuditEvent.kind == EXTRA_PAID, AuditEvent.account_id == payment.account_id)
        .order_by(AuditEvent.id)
    )
    change = next((e for e in changes if (e.detail or {}).get("reference") == payment.reference),
                  None)
    if change is None:
        return  # no EXTRA of a plan lowered anything with this payment
    plan_id, payment.plan_id = payment.plan_id, None  # as a decline at once leaves it
    plan = await session.get(Plan, plan_id, with_for_update=True, populate_existing=True)
    if plan is None or plan.status != "active":
        return
    account = await collectable.lock_account(session, payment.account_id)
    await session.flush()  # the failed EXTRA no longer counts as on its way
    room = (await collectable.collectable(
        session, account.id, balance_cents=account.balance_cents
    )).open_cents
    lowered = {str(r["reference"]): (int(r["old_cents"]), int(r["new_cents"]))
               for r in change.detail.get("reduced") or []}
    rows = await session.scalars(
        select(Payment)
        .where(Payment.plan_id == plan.id, Payment.reference.in_(list(lowered)))
        .order_by(Payment.scheduled_for, Payment.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    given = []
    for row in rows:
        old, new = lowered[row.reference]
        as_left = row.amount_cents == new and (
            row.status == "scheduled" or (row.status == "canceled" and row.failure_code is None)
        )
        if room <= 0 or not as_left:
            continue  # charged, cut or settled meanwhile: left as it now stands
        back = min(old - new, room)
        row.amount_cents, row.status, row.updated_at = new + back, "scheduled", at
        room -= back
        given.append({"reference": row.reference, "old_cents": new, "new_cents": new + back})
    await ledger.audit(
        session, "plan_extra_given_back", at=at, account_id=plan.account_id, plan_id=plan.id,
        reference=payment.reference, given_back=given,
    )


async def pay_extra(
    session: AsyncSession,
    plan_id: int,
    account: Account,
    *,
    amount_cents: int,
    payments: PaymentService,
    idempotency_key: str,
    agreement_text: str,
    terms_version: str,
    settings: FlowSettings,
    today: date,
    at: datetime,
    channel: str = "sms",
    on_recorded: OnRecorded | None = None,
) -> ExtraPayment:
    """Charge `amount_cents` now with the plan's method (one payment, one key: a retry finds
    it) and take it off the LAST installments, cancelling those that reach zero, so what is
    paid plus what is scheduled stays the plan's total. The installments are lowered and the
    payment joins the plan in the transaction that records it, before the charge (given back
    if the charge is declined at once): that is what makes applying it happen once, and what
    keeps the account from ever promising more than it owes (bot/payments/collectable.py)."""
    plan = await session.get(Plan, plan_id)
    if plan is None or plan.status != "active" or plan.account_id != account.id:
        raise PlanChangeRefused(gettext("Your plan is no longer active, so nothing was charged."))
    if plan.method_id is None:
        raise PlanChangeRefused(gettext("Your plan has no payment method on file."))
    existing = await session.scalar(
        select(Payment).where(Payment.idempotency_key == idempotency_key)
    )
    if existing is None:
        status = await plan_status(session, plan, settings=settings, today=today)
        check_extra(status, amount_cents)
    lowered: list[tuple[int, int, int]] = []  # (installment id, old, new) as this call wrote them

    async def lower_installments(session: AsyncSession, payment: Payment) -> None:
        # In the transaction that writes the payment: what is taken or promised never adds up
        # to more than the plan, not even while the charge is on its way.
        await _locked_plan(session, plan_id)
        left = payment.amount_cents
        for installment in reversed(await _scheduled(session, plan_id, lock=True)):
            if left <= 0:
                break
            take = min(left, installment.amount_cents)
            old = installment.amount_cents
            lowered.append((installment.id, old, old - take))
            installment.amount_cents -= take
            installment.updated_at = at
            if installment.amount_cents == 0:
                installment.status = "canceled"
            left -= take
        payment.plan_id = plan_id

    outcome = await payments.submit(
        session,
        account,
        PaymentRequest(
            idempotency_key=idempotency_key,
            amount_cents=amount_cents,
            method_id=plan.method_id,
            pay_on=None,
            offer_id=None,
            offer_kind=None,
            installment_count=1,
            frequency=None,
            plan_total_cents=None,
            channel=channel,
            agreement_text=agreement_text,
            terms_version=terms_version,
            displaces_plan_id=plan.id,
        ),
        today=today,
        on_recorded=on_recorded,
        with_record=lower_installments,
    )
    payment = await session.scalar(
        select(Payment)
        .where(Payment.idempotency_key == idempotency_key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert payment is not None
    plan = await _locked_plan(session, plan_id)
    if lowered:
        return await _settle_extra(session, plan, payment, outcome, lowered, at=at,
                                   channel=channel)
    if payment.plan_id is not None or payment.status not in EXTRA_COUNTS:
        remaining = sum(p.amount_cents for p in await _scheduled(session, plan.id))
        await session.commit()
        return ExtraPayment(outcome, applied=payment.plan_id is not None, remaining_cents=remaining)
    scheduled = await _scheduled(session, plan.id, lock=True)
    left = payment.amount_cents
    reduced: list[tuple[str, int, int]] = []
    for installment in reversed(scheduled):
        if left <= 0:
            break
        take = min(left, installment.amount_cents)
        old = installment.amount_cents
        installment.amount_cents = old - take
        installment.updated_at = at
        if installment.amount_cents == 0:
            installment.status = "canceled"
        reduced.append((installment.reference, old, installment.amount_cents))
        left -= take
    payment.plan_id = plan.id
    remaining = sum(p.amount_cents for p in scheduled if p.status == "scheduled")
    return await _extra_applied(
        session, plan, payment, outcome, reduced, remaining, at=at, channel=channel
    )
