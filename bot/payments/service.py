"""Taking a payment: the ledger row first (with its unique idempotency key), then the processor.

Whatever is retried (a duplicate webhook, a second YES, two processes) finds the same row by its
key and never charges again; a crash between charge and write-back leaves the row `processing`
and a later retry sends the same idempotency key, which the processor replays.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime

from dateutil.relativedelta import relativedelta
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import metrics
from bot.clock import Clock
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Agreement, Offer, Payment, PaymentMethod, Plan
from bot.payments import collectable
from bot.providers.payments import (
    ChargeResult,
    GatewayUnavailable,
    PaymentError,
    PaymentGateway,
)
from bot.security import new_payment_reference

log = logging.getLogger(__name__)

FREQUENCY_STEP = {
    "weekly": relativedelta(weeks=1),
    "biweekly": relativedelta(weeks=2),
    "monthly": relativedelta(months=1),
}

# What every status is called wherever a person reads it (SMS, API, portal, email).
STATUS_LABELS = {
    "scheduled": "Scheduled",
    "processing": "Processing",
    "pending": "Pending",
    "paid": "Paid",
    "declined": "Declined",
    "canceled": "Canceled",
}


class PaymentRefused(Exception):
    """A domain error the customer can act on (e.g. the method no longer exists)."""


class AmountNotOpen(PaymentRefused):
    """More than is open on the account (bot/payments/collectable.py); the message says how
    much is."""

    def __init__(self, state: collectable.Collectable) -> None:
        super().__init__(state.explanation())
        self.state = state


@dataclass(frozen=True)
class PaymentRequest:
    idempotency_key: str
    amount_cents: int
    method_id: int
    pay_on: date | None  # None: now
    offer_id: int | None
    offer_kind: str | None
    installment_count: int
    frequency: str | None
    plan_total_cents: int | None
    channel: str
    agreement_text: str
    terms_version: str
    ip_address: str | None = None
    user_agent: str | None = None
    fee_cents: int = 0  # only on a single payment: plans carry no convenience fee
    # EXTRA: the plan whose scheduled installments this payment takes the place of (they are
    # lowered by as much once it is made), so they leave room for it.
    displaces_plan_id: int | None = None


@dataclass(frozen=True)
class PaymentOutcome:
    reference: str
    status: str
    amount_cents: int
    method_label: str
    pay_on: date | None
    failure_message: str | None = None
    installments: int = 1
    fee_cents: int = 0
    settles: bool = False  # a settlement offer's payment: nothing is left to pay once it is paid


# Called with the outcome just before the commit that records it, only by the call that recorded
# it (not by a retry, nor after a Stripe event that got there first): what must be written with
# the payment (its receipt) is then durable exactly when it is.
OnRecorded = Callable[[PaymentOutcome], None]
# Called with the new payment row in the transaction that writes it (before any charge): what
# must change together with it (EXTRA lowers its plan's installments), or not at all.
WithRecord = Callable[[AsyncSession, Payment], Awaitable[None]]


def installment_schedule(
    *, total_cents: int, count: int, installment_cents: int, frequency: str, start: date
) -> list[tuple[date, int]]:
    """Dates and amounts that add up to the total to the cent (the last one takes the rest)."""
    step = FREQUENCY_STEP[frequency]
    amounts = [installment_cents] * (count - 1) + [total_cents - installment_cents * (count - 1)]
    return [(start + step * i, amount) for i, amount in enumerate(amounts)]


class PaymentService:
    def __init__(
        self,
        gateway: PaymentGateway,
        clock: Clock,
        *,
        between_writes: Callable[[], AbstractAsyncContextManager[None]] = nullcontext,
    ) -> None:
        self.gateway = gateway
        self.clock = clock
        # The processor call sits between two commits; on SQLite it lets other writers go on.
        self.between_writes = between_writes

    async def submit(
        self,
        session: AsyncSession,
        account: Account,
        request: PaymentRequest,
        *,
        today: date,
        on_recorded: OnRecorded | None = None,
        with_record: WithRecord | None = None,
    ) -> PaymentOutcome:
        """Record the payment and, when it is due today, charge it. ``on_recorded`` adds to the
        session what must be written with the outcome (the receipt): a process that stops
        between the charge and the end of its turn then loses no receipt."""
        method = await session.get(PaymentMethod, request.method_id)
        if method is None or method.account_id != account.id or (
            method.single_use and await _single_use_spent(session, method, request)
        ):
            raise PaymentRefused("That payment method is no longer on file.")

        def recorded(payment: Payment) -> None:
            if on_recorded is not None:
                on_recorded(_outcome(payment, method, request))

        payment, created = await self._record(
            session, account, method, request, today=today, recorded=recorded,
            with_record=with_record,
        )
        # Only the request that wrote the row charges: any other (a retry, a race) reads it. A row
        # left `processing` by a crash is retried by the worker with the same idempotency key.
        if created and payment.status == "processing":
            await self._charge(session, account, method, payment, recorded=recorded)
            payment = await session.get(Payment, payment.id, populate_existing=True) or payment
        if created:
            metrics.PAYMENTS.labels(payment.status, request.channel).inc()
        return _outcome(payment, method, request)

    async def _record(
        self,
        session: AsyncSession,
        account: Account,
        method: PaymentMethod,
        request: PaymentRequest,
        *,
        today: date,
        recorded: Callable[[Payment], None],
        with_record: WithRecord | None = None,
    ) -> tuple[Payment, bool]:
        existing = await _payment_by_key(session, request.idempotency_key)
        if existing is not None:
            return existing, False
        await check_collectable(session, account, request)
        now = self.clock.now()
        start = request.pay_on or today
        status_for = lambda day: "scheduled" if day > today else "processing"  # noqa: E731
        # A SAVEPOINT: when the same request won a race elsewhere (two processes without a
        # shared lock), only these rows are undone; the turn's claim and reads stand.
        try:
            async with session.begin_nested():
                plan_id = None
                schedule = [(start, request.amount_cents)]
                if request.offer_kind == "plan" and request.installment_count > 1:
                    plan = Plan(
                        account_id=account.id,
                        offer_id=request.offer_id,
                        total_cents=request.plan_total_cents or request.amount_cents,
                        installment_count=request.installment_count,
                        frequency=request.frequency or "monthly",
                        method_id=method.id,
                        created_at=now,
                    )
                    session.add(plan)
                    await session.flush()
                    plan_id = plan.id
                    schedule = installment_schedule(
                        total_cents=plan.total_cents,
                        count=plan.installment_count,
                        installment_cents=request.amount_cents,
                        frequency=plan.frequency,
                        start=start,
                    )
                references = await unused_references(session, len(schedule))
                payments = [
                    Payment(
                        reference=references[n - 1],
                        # The first installment carries the request's key: a retry finds it.
                        idempotency_key=request.idempotency_key
                        if n == 1
                        else f"{request.idempotency_key}#{n}",
                        account_id=account.id,
                        method_id=method.id,
                        offer_id=request.offer_id,
                        plan_id=plan_id,
                        installment_number=n if plan_id else None,
                        amount_cents=amount,
                        fee_cents=request.fee_cents if n == 1 and plan_id is None else 0,
                        scheduled_for=day,
                        status=status_for(day),
                        channel=request.channel,
                        created_at=now,
                        updated_at=now,
                    )
                    for n, (day, amount) in enumerate(schedule, start=1)
                ]
                session.add_all(payments)
        except IntegrityError:
            existing = await _payment_by_key(session, request.idempotency_key)
            if existing is not None:
                return existing, False  # theirs is the one
            raise PaymentRefused("We could not record the payment. Nothing was charged.") from None
        if with_record is not None:
            await with_record(session, payments[0])
        session.add(
            Agreement(
                account_id=account.id,
                payment_id=None if plan_id else payments[0].id,
                plan_id=plan_id,
                terms_version=request.terms_version,
                text_sha256=hashlib.sha256(request.agreement_text.encode()).hexdigest(),
                text=request.agreement_text,
                signer_name=f"{account.first_name} {account.last_name}",
                signature_kind="click" if request.channel == "web" else "sms_reply",
                channel=request.channel,
                ip_address=request.ip_address,
                user_agent=request.user_agent,
                signed_at=now,
            )
        )
        await ledger.audit(
            session,
            "payment_authorized",
            at=now,
            account_id=account.id,
            reference=payments[0].reference,
            amount_cents=request.amount_cents,
            installments=len(payments),
            channel=request.channel,
        )
        if payments[0].status == "scheduled":
            recorded(payments[0])  # its outcome is final now; one due today is after the charge
        try:
            await session.commit()
        except IntegrityError:
            return await self._collided(session, request)
        return payments[0], True

    @staticmethod
    async def _collided(session: AsyncSession, request: PaymentRequest) -> tuple[Payment, bool]:
        await session.rollback()
        existing = await _payment_by_key(session, request.idempotency_key)
        if existing is not None:
            return existing, False  # the same request won a race elsewhere: theirs is the one
        raise PaymentRefused("We could not record the payment. Nothing was charged.")

    async def _charge(
        self,
        session: AsyncSession,
        account: Account,
        method: PaymentMethod,
        payment: Payment,
        *,
        recorded: Callable[[Payment], None],
    ) -> None:
        """Charge now; ``recorded`` is called when this call, not an earlier event, wrote the
        outcome."""
        if not account.processor_customer_id:
            raise PaymentRefused("That payment method is no longer on file.")
        try:
            async with self.between_writes():
                result = await self.gateway.charge(
                    customer_id=account.processor_customer_id,
                    method_ref=method.processor_ref,
                    amount_cents=payment.amount_cents + payment.fee_cents,
                    idempotency_key=payment.idempotency_key,
                    method_kind=method.kind,
                    metadata={
                        "paybot_reference": payment.reference,
                        "account_ref": account.account_ref,
                    },
                )
        except GatewayUnavailable:
            metrics.PROCESSOR_ERRORS.labels("unavailable").inc()
            payment.failure_code = "processor_unavailable"
            payment.updated_at = self.clock.now()
            await session.commit()
            return
        except PaymentError as error:
            # Refused outright (an unknown method, a parameter the processor rejects): nothing was
            # charged. Recorded as declined with its reason, never left Processing.
            metrics.PROCESSOR_ERRORS.labels("refused").inc()
            log.warning("payment %s refused by the processor: %s", payment.reference, error.code)
            result = ChargeResult(
                status="declined",
                processor_id=None,
                failure_code=(error.code or "processor_error")[:64],
            )
        except Exception:
            # An SDK fault: whether the processor charged is unknown. Left for the worker, which
            # asks again with the same idempotency key (never a second charge).
            metrics.PROCESSOR_ERRORS.labels("fault").inc()
            log.exception("payment %s: the processor call failed", payment.reference)
            payment.failure_code = "processor_unavailable"
            payment.updated_at = self.clock.now()
            await session.commit()
            return
        # A webhook may have recorded this charge while we waited: read the row afresh, locked.
        fresh = await session.get(Payment, payment.id, with_for_update=True, populate_existing=True)
        assert fresh is not None
        changed = await apply_charge_result(
            session,
            fresh,
            status=result.status,
            processor_id=result.processor_id,
            failure_code=result.failure_code,
            at=self.clock.now(),
        )
        if changed:
            recorded(fresh)
        await session.commit()


async def check_collectable(
    session: AsyncSession, account: Account, request: PaymentRequest
) -> None:
    """The rule of bot/payments/collectable.py for a payment about to be written in this
    transaction: the account is locked, then what it asks (a plan's whole total) must fit what
    is open."""
    state = await collectable.locked_collectable(session, account.id)
    account.balance_cents = state.balance_cents  # what the lock read; the caller sees it too
    is_plan = request.offer_kind == "plan" and request.installment_count > 1
    asked = (request.plan_total_cents or request.amount_cents) if is_plan else request.amount_cents
    if request.offer_kind == "settlement" and request.offer_id is not None:
        offer = await session.get(Offer, request.offer_id, populate_existing=True)
        if offer is None or offer.status != "open":
            raise PaymentRefused("That settlement offer is no longer open.")
    displaced = 0
    if request.displaces_plan_id is not None:
        displaced = int(
            await session.scalar(
                select(func.coalesce(func.sum(Payment.amount_cents), 0)).where(
                    Payment.plan_id == request.displaces_plan_id,
                    Payment.account_id == account.id,
                    Payment.status == "scheduled",
                )
            )
            or 0
        )
    try:
        state.require(asked, also_open_cents=displaced)
    except collectable.NotCollectable:
        raise AmountNotOpen(state) from None


async def apply_charge_result(
    session: AsyncSession,
    payment: Payment,
    *,
    status: str,
    processor_id: str | None,
    failure_code: str | None,
    at: datetime,
) -> bool:
    """Write a processor's answer back; the balance moves only when money really arrived.
    False when nothing changed (the payment was already paid)."""
    if payment.status == "paid":
        return False  # a late or repeated event never undoes or repeats a completed payment
    new_status = {"requires_action": "declined"}.get(status, status)
    counted = payment.status in {"pending", "processing"}
    payment.status = new_status
    payment.processor_id = processor_id or payment.processor_id
    payment.failure_code = failure_code if new_status == "declined" else None
    payment.updated_at = at
    settlement = None
    if payment.offer_id is not None and payment.plan_id is None:
        offer = await session.get(Offer, payment.offer_id, populate_existing=True)
        settlement = offer if offer is not None and offer.kind == "settlement" else None
    if settlement is not None:
        await _settlement_moved(session, settlement, payment, at=at)
    if counted and new_status == "declined" and payment.plan_id is not None:
        # plan_changes builds on this module: imported here, where an EXTRA fails.
        from bot.plans.changes import give_back_extra

        await give_back_extra(session, payment, at=at)
    if new_status == "paid":
        # The row is locked and read afresh: two writers must not both lower the same balance.
        account = await session.get(
            Account, payment.account_id, with_for_update=True, populate_existing=True
        )
        assert account is not None
        settles = settlement is not None
        if not settles and payment.amount_cents > account.balance_cents:
            # Money that arrived anyway (a bank debit declined, then paid after all): it cannot
            # be refused here, so a person is told to refund what is beyond the balance.
            log.error("payment %s: paid %d cents beyond the balance; refund due",
                      payment.reference, payment.amount_cents - account.balance_cents)
            await ledger.audit(
                session, "paid_beyond_balance", at=at, account_id=account.id,
                reference=payment.reference,
                beyond_cents=payment.amount_cents - account.balance_cents,
            )
        account.balance_cents = (
            0 if settles else max(0, account.balance_cents - payment.amount_cents)
        )
        account.updated_at = at
        if settles:
            await settle_account(session, account.id, at=at)
        await ledger.audit(
            session,
            "settled" if settles else "payment_paid",
            at=at,
            account_id=account.id,
            reference=payment.reference,
            amount_cents=payment.amount_cents,
        )
    return True


async def _settlement_moved(
    session: AsyncSession, offer: Offer, payment: Payment, *, at: datetime
) -> None:
    """A settlement that is Paid or Pending is the offer taken: accepted, never offered again.
    Its payment failing gives the offer back (open again until it expires), unless another
    payment of it is still on its way."""
    if payment.status in {"paid", "pending"}:
        if offer.status != "accepted":
            offer.status, offer.accepted_at = "accepted", at
        return
    if payment.status != "declined" or offer.status != "accepted":
        return
    alive = await session.scalar(
        select(func.count())
        .select_from(Payment)
        .where(
            Payment.offer_id == offer.id,
            Payment.id != payment.id,
            Payment.status.in_(("scheduled", "processing", "pending", "paid")),
        )
    )
    if alive:
        return
    expired = offer.expires_at is not None and offer.expires_at <= at
    offer.status = "expired" if expired else "open"
    offer.accepted_at = None
    await ledger.audit(
        session, "settlement_reopened", at=at, account_id=offer.account_id, offer_id=offer.id,
        reference=payment.reference, status=offer.status,
    )


async def settle_account(session: AsyncSession, account_id: int, *, at: datetime) -> None:
    """A settlement was paid: nothing more is owed, so nothing still scheduled is charged, and
    every active plan is closed as paid in full."""
    leftovers = list(
        await session.scalars(
            select(Payment)
            .where(Payment.account_id == account_id, Payment.status == "scheduled")
            .with_for_update()
        )
    )
    for row in leftovers:
        row.status, row.failure_code, row.updated_at = "canceled", "settled", at
    plans = await session.scalars(
        select(Plan).where(Plan.account_id == account_id, Plan.status == "active")
    )
    for plan in plans:
        plan.status = "completed"
    if leftovers:
        await ledger.audit(
            session, "scheduled_canceled_settled", at=at, account_id=account_id,
            references=[row.reference for row in leftovers],
        )


async def unused_references(session: AsyncSession, count: int) -> list[str]:
    """Short random references (read aloud to an agent) that no payment uses yet: a clash is
    drawn again here rather than failing the insert."""
    chosen: list[str] = []
    while len(chosen) < count:
        wanted = [new_payment_reference() for _ in range(count - len(chosen))]
        taken = set(
            await session.scalars(select(Payment.reference).where(Payment.reference.in_(wanted)))
        )
        chosen += [r for r in dict.fromkeys(wanted) if r not in taken and r not in chosen]
    return chosen


def _outcome(payment: Payment, method: PaymentMethod, request: PaymentRequest) -> PaymentOutcome:
    return PaymentOutcome(
        reference=payment.reference,
        status=payment.status,
        amount_cents=payment.amount_cents,
        method_label=method.description,
        pay_on=payment.scheduled_for if payment.status == "scheduled" else None,
        failure_message=_failure_text(payment.failure_code),
        installments=request.installment_count if request.offer_kind == "plan" else 1,
        fee_cents=payment.fee_cents,
        settles=request.offer_kind == "settlement",
    )


async def _single_use_spent(
    session: AsyncSession, method: PaymentMethod, request: PaymentRequest
) -> bool:
    """A single-use method (saved by a knowledge-only session) pays one payment, now: not a
    later date, and not a second payment (the same one asked again is no second)."""
    if request.pay_on is not None:
        return True
    other = await session.scalar(
        select(Payment.id)
        .where(Payment.method_id == method.id, Payment.idempotency_key != request.idempotency_key)
        .limit(1)
    )
    return other is not None


async def _payment_by_key(session: AsyncSession, key: str) -> Payment | None:
    return await session.scalar(select(Payment).where(Payment.idempotency_key == key))


def _failure_text(code: str | None) -> str | None:
    if code is None:
        return None
    if code == "processor_unavailable":
        return "We could not reach the payment processor."
    if code in {"insufficient_funds"}:
        return "The bank reported insufficient funds."
    if code in {"expired_card"}:
        return "The card has expired."
    return "The payment was declined."
