"""Refunds, full or partial, of a Paid payment: the ledger row first, then the processor.

The rules:

* Only a Paid payment is refunded, and never more than ``amount_cents - refunded_cents`` less
  what other refunds of it still wait on the processor. The convenience fee (``fee_cents``) is
  not refundable here: it paid for the card service, not the debt, and a refund must move the
  balance by exactly what it gives back. (A fee given back as a courtesy is the processor
  dashboard's job; it is not a debt payment and touches no balance.)
* Idempotent: a request has a key (the caller's, e.g. a key minted with the supervisor's form,
  or by default ``refund:<REFERENCE>:<cents|full>``: the same amount on the same payment asked
  twice is the same request). The same key finds the same ``refunds`` row and refunds nothing
  more; the same key is sent to Stripe.
* The row is written ``requested`` and committed BEFORE the processor is asked (as payments
  are). A crash or a lost answer leaves it ``requested``: asking again with the same key sends
  the same idempotency key, which real Stripe replays (localstripe ignores keys: there the row
  is the only guard), and the answer is applied once, whoever gets it first.
* On success (``succeeded``, or ``pending``: accepted, the bank not done yet) in one
  transaction with the account locked: ``Payment.refunded_cents`` grows, the account's balance
  rises by the refund (Paid had lowered it: ``service.apply_charge_result``), the audit trail
  names the actor (``staff:NAME`` / ``cli:NAME``) and the refund receipt is queued in the email
  outbox, then sent after the commit. The payment's ``updated_at`` is left alone: it is when it
  became Paid (``collectable.paid_since`` reads it).
* A refund of a settlement payment gives the money back; the part the settlement forgave stays
  forgiven (a creditor who voids the settlement loads the balance anew).

Entry point: ``refund_payment(database, gateway, reference=..., actor=..., clock=...)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger import queries as ledger
from bot.ledger.models import Account, Payment, PaymentMethod, Refund
from bot.money import format_cents
from bot.outreach import email_outbox
from bot.outreach.email_texts import render_email
from bot.payments.collectable import lock_account
from bot.payments.service import STATUS_LABELS
from bot.providers.payments import GatewayUnavailable, PaymentError, PaymentGateway

if TYPE_CHECKING:
    from bot.clock import Clock
    from bot.ledger.db import Database
    from bot.outreach.notifications import Notifier

log = logging.getLogger(__name__)

APPLIED = ("succeeded", "pending")  # the processor took the refund: the ledger counts it


class MoneyOperationError(Exception):
    """A supervisor's money operation that cannot be done; ``str()`` says why, in a sentence
    the page or the command shows as it is."""


class NoSuchPayment(MoneyOperationError):
    def __init__(self, reference: str) -> None:
        super().__init__(f"No payment with reference {reference!r}.")


class RefundRefused(MoneyOperationError):
    """Nothing was refunded (not Paid, more than is left, the processor refused...)."""


class RefundNotConfirmed(MoneyOperationError):
    """The processor could not be reached or its answer was lost: the refund stays
    ``requested``; the same request again sends the same key and is applied once."""


@dataclass(frozen=True)
class RefundOutcome:
    refund_id: int
    idempotency_key: str
    reference: str  # the payment's
    amount_cents: int  # this refund
    status: str  # succeeded | pending | failed | requested
    processor_id: str | None  # re_...
    payment_cents: int  # what the payment collected (without its fee)
    refunded_cents: int  # the payment's refunds in all, this one included when applied
    balance_cents: int  # the account's, after
    repeated: bool  # this request was made before: nothing more was refunded
    email_id: int | None = None  # the receipt queued (None: no address, or repeated)

    @property
    def refundable_cents(self) -> int:
        return max(0, self.payment_cents - self.refunded_cents)


def refund_key(reference: str, amount_cents: int | None) -> str:
    """The key of a request that brings none: the same payment and amount are the same
    request (a double click, a command run twice)."""
    return f"refund:{reference}:{'full' if amount_cents is None else amount_cents}"


def normal_reference(reference: str) -> str:
    return reference.strip().upper()[:16]


async def payment_by_reference(session: AsyncSession, reference: str) -> Payment:
    payment = await session.scalar(
        select(Payment).where(Payment.reference == normal_reference(reference))
    )
    if payment is None:
        raise NoSuchPayment(reference.strip()[:40])
    return payment


async def locked_payment(session: AsyncSession, reference: str) -> tuple[Account, Payment]:
    """The payment's account locked first (the order every money writer takes), then the
    payment read afresh under it."""
    found = await payment_by_reference(session, reference)
    account = await lock_account(session, found.account_id)
    payment = await session.get(Payment, found.id, with_for_update=True, populate_existing=True)
    assert payment is not None
    return account, payment


async def brand_of(session: AsyncSession, account: Account, notifier: Notifier | None) -> str:
    creditor = await ledger.creditor_of(session, account)
    if creditor is not None and (creditor.brand or creditor.name):
        return creditor.brand or creditor.name
    return notifier.brand if notifier is not None else ""


async def refund_payment(
    database: Database,
    gateway: PaymentGateway,
    *,
    reference: str,
    actor: str,
    clock: Clock,
    amount_cents: int | None = None,
    reason: str | None = None,
    idempotency_key: str | None = None,
    notifier: Notifier | None = None,
) -> RefundOutcome:
    """Refund ``amount_cents`` (None: all that is left) of the Paid payment ``reference``.

    ``actor``: ``staff:NAME`` or ``cli:NAME``. ``notifier``: queues and sends the receipt (the
    worker sends a queued one anyway if this process stops first). Raises ``NoSuchPayment``,
    ``RefundRefused`` (nothing refunded) or ``RefundNotConfirmed`` (ask again: same key)."""
    if amount_cents is not None and (isinstance(amount_cents, bool) or amount_cents <= 0):
        raise RefundRefused("A refund must be a positive amount.")
    key = (idempotency_key or "").strip()[:80] or refund_key(
        normal_reference(reference), amount_cents
    )
    async with database.writer(), database.session() as session:
        row, outcome = await _record(
            session, reference, key, amount_cents, actor=actor, reason=reason, clock=clock
        )
    if outcome is not None:
        return outcome  # asked before and answered: nothing more
    try:
        result = await gateway.refund(
            charge_id=row.charge_id,
            amount_cents=row.amount_cents,
            idempotency_key=row.key,
            metadata={"paybot_reference": row.reference, "paybot_refund": str(row.refund_id)},
        )
    except GatewayUnavailable as exc:
        log.warning("refund %d of %s not confirmed: %s", row.refund_id, row.reference, exc.code)
        raise RefundNotConfirmed(
            f"The processor could not be reached: the refund of {format_cents(row.amount_cents)} "
            f"on {row.reference} is not confirmed. Ask again with the same request: the "
            "processor refunds it at most once."
        ) from None
    except PaymentError as exc:
        await _failed(database, row, exc.code or "processor_error", actor=actor, clock=clock)
        raise RefundRefused(
            f"The processor refused the refund of {row.reference} ({exc.code or 'error'}): "
            "nothing was refunded."
        ) from None
    except Exception:
        # An SDK fault: whether the processor refunded is unknown. The row stays `requested`;
        # the same request again sends the same key (never a second refund on real Stripe).
        log.exception("refund %d of %s: the processor call failed", row.refund_id, row.reference)
        raise RefundNotConfirmed(
            f"The processor's answer about the refund of {format_cents(row.amount_cents)} on "
            f"{row.reference} was lost. Ask again with the same request: the processor refunds "
            "it at most once."
        ) from None
    if result.status not in APPLIED:
        await _failed(database, row, result.failure_code or "failed", actor=actor, clock=clock)
        raise RefundRefused(
            f"The refund of {row.reference} failed at the processor "
            f"({result.failure_code or 'failed'}): nothing was refunded."
        )
    async with database.writer(), database.session() as session:
        outcome, email_id = await _apply(
            session, row, result.status, result.processor_id, actor=actor, clock=clock,
            notifier=notifier,
        )
    if email_id is not None and notifier is not None:
        await email_outbox.deliver(database, notifier, [email_id], clock=clock)
    return outcome


@dataclass(frozen=True)
class _Requested:
    refund_id: int
    key: str
    reference: str
    charge_id: str
    amount_cents: int


async def _record(
    session: AsyncSession, reference: str, key: str, amount_cents: int | None, *, actor: str,
    reason: str | None, clock: Clock,
) -> tuple[_Requested, RefundOutcome | None]:
    account, payment = await locked_payment(session, reference)
    existing = await session.scalar(select(Refund).where(Refund.idempotency_key == key))
    if existing is None:
        existing = await _insert(session, account, payment, key, amount_cents, actor=actor,
                                 reason=reason, clock=clock)
    if existing.payment_id != payment.id:
        raise RefundRefused("That request key was used for a refund of another payment.")
    requested = _Requested(existing.id, key, payment.reference, payment.processor_id or "",
                           existing.amount_cents)
    if existing.status == "requested":
        return requested, None  # new, or left unanswered by an earlier try: ask (same key)
    return requested, _outcome(existing, payment, account, repeated=True)


async def _insert(
    session: AsyncSession, account: Account, payment: Payment, key: str,
    amount_cents: int | None, *, actor: str, reason: str | None, clock: Clock,
) -> Refund:
    if payment.status != "paid":
        label = STATUS_LABELS.get(payment.status, payment.status)
        raise RefundRefused(
            f"{payment.reference} is {label}: only a Paid payment can be refunded"
            + (" (cancel a Scheduled one instead)." if payment.status == "scheduled" else ".")
        )
    if not payment.processor_id:
        raise RefundRefused(f"{payment.reference} has no charge at the processor to refund.")
    left = await refundable_cents(session, payment)
    waiting = payment.amount_cents - payment.refunded_cents - left
    amount = left if amount_cents is None else amount_cents
    if amount <= 0 or amount > left:
        done = f"{format_cents(payment.refunded_cents)} refunded already"
        if waiting:
            done += f", {format_cents(waiting)} waiting on the processor"
        raise RefundRefused(
            f"{payment.reference}: at most {format_cents(max(0, left))} can be refunded "
            f"({format_cents(payment.amount_cents)} paid, {done}); "
            + (f"{format_cents(amount)} was asked." if amount_cents is not None
               else "nothing is left to refund.")
            + (" The convenience fee is not refundable." if payment.fee_cents else "")
        )
    now = clock.now()
    row = Refund(
        payment_id=payment.id, account_id=account.id, amount_cents=amount, idempotency_key=key,
        status="requested", reason=(reason or "").strip()[:200] or None,
        requested_by=actor[:90], created_at=now, updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        # The same request, at the same moment, from elsewhere: theirs is the one.
        theirs = await session.scalar(select(Refund).where(Refund.idempotency_key == key))
        if theirs is None:
            raise
        return theirs
    await ledger.audit(
        session, "refund_requested", at=now, actor=actor[:40], account_id=account.id,
        reference=payment.reference, refund_id=row.id, amount_cents=amount,
        reason=row.reason,
    )
    await session.commit()  # the row exists before the processor hears of it
    return row


async def _failed(
    database: Database, row: _Requested, code: str, *, actor: str, clock: Clock
) -> None:
    async with database.writer(), database.session() as session:
        refund = await session.get(Refund, row.refund_id, with_for_update=True)
        if refund is None or refund.status != "requested":
            return
        refund.status, refund.failure_code = "failed", code[:64]
        refund.updated_at = clock.now()
        await ledger.audit(
            session, "refund_failed", at=clock.now(), actor=actor[:40],
            account_id=refund.account_id, reference=row.reference, refund_id=refund.id,
            failure_code=code[:64],
        )
        await session.commit()


async def _apply(
    session: AsyncSession, row: _Requested, status: str, processor_id: str | None, *,
    actor: str, clock: Clock, notifier: Notifier | None,
) -> tuple[RefundOutcome, int | None]:
    """The processor's yes, written once: whoever applies it first (this call, or a retry that
    got the replayed answer) moves the money; the other reads what was written."""
    account, payment = await locked_payment(session, row.reference)
    refund = await session.get(Refund, row.refund_id, with_for_update=True, populate_existing=True)
    assert refund is not None
    if refund.status != "requested":
        return _outcome(refund, payment, account, repeated=True), None
    now = clock.now()
    refund.status, refund.processor_ref, refund.updated_at = status, processor_id, now
    payment.refunded_cents += refund.amount_cents  # not updated_at: it says when it was Paid
    account.balance_cents += refund.amount_cents
    account.updated_at = now
    await ledger.audit(
        session, "refunded", at=now, actor=actor[:40], account_id=account.id,
        reference=payment.reference, refund_id=refund.id, amount_cents=refund.amount_cents,
        status=status, processor_ref=processor_id, requested_by=refund.requested_by,
    )
    email = None
    if notifier is not None and account.email:
        try:
            message = await refund_receipt(session, notifier, account, payment, refund)
        except Exception:  # the refund stands whatever the receipt's template does
            log.exception("refund %d: the receipt could not be written", refund.id)
        else:
            email = email_outbox.queue(session, message, kind="refund_receipt",
                                       account_id=account.id, at=now)
    await session.commit()
    return _outcome(refund, payment, account, repeated=False), (email.id if email else None)


async def refund_receipt(
    session: AsyncSession, notifier: Notifier, account: Account, payment: Payment,
    refund: Refund,
) -> dict[str, Any]:
    """The refund receipt (text and HTML), as the email outbox takes it."""
    method = await session.get(PaymentMethod, payment.method_id) if payment.method_id else None
    context = {
        "brand": await brand_of(session, account, notifier),
        "account": account,
        "payment": payment,
        "refund": refund,
        "method_label": method.description if method else "",
        "disclosure": await email_outbox.creditor_disclosure(session, account),
    }
    return {
        "to": account.email,
        **render_email(notifier.env, "refund", context, language=account.language),
        "transactional": True,  # the record of money given back goes even after an unsubscribe
    }


def _outcome(refund: Refund, payment: Payment, account: Account, *, repeated: bool
             ) -> RefundOutcome:
    return RefundOutcome(
        refund_id=refund.id,
        idempotency_key=refund.idempotency_key,
        reference=payment.reference,
        amount_cents=refund.amount_cents,
        status=refund.status,
        processor_id=refund.processor_ref,
        payment_cents=payment.amount_cents,
        refunded_cents=payment.refunded_cents,
        balance_cents=account.balance_cents,
        repeated=repeated,
    )


async def refundable_cents(session: AsyncSession, payment: Payment) -> int:
    """What may still be refunded on ``payment`` (0 unless Paid): what the form offers. The
    check that counts is the one ``refund_payment`` makes under the lock."""
    if payment.status != "paid":
        return 0
    waiting = int(
        await session.scalar(
            select(func.coalesce(func.sum(Refund.amount_cents), 0)).where(
                Refund.payment_id == payment.id, Refund.status == "requested"
            )
        )
        or 0
    )
    return max(0, payment.amount_cents - payment.refunded_cents - waiting)


async def refunds_of(session: AsyncSession, payment_id: int) -> list[Refund]:
    """A payment's refunds, oldest first (the console's payment view)."""
    return list(
        await session.scalars(
            select(Refund).where(Refund.payment_id == payment_id).order_by(Refund.id)
        )
    )


async def record_processor_refund(
    session: AsyncSession, payment: Payment, *, processor_ref: str, amount_cents: int,
    actor: str, at: datetime,
) -> bool:
    """A refund the processor reports (PayPal's PAYMENT.CAPTURE.REFUNDED), written once: one we
    asked for and whose answer was lost is applied; one made elsewhere (the processor's
    dashboard, a dispute) gets its own row, so the balance rises by exactly what went back. The
    caller holds the payment's row locked and commits. False when nothing changed."""
    known = await session.scalar(select(Refund).where(Refund.processor_ref == processor_ref))
    if known is not None or payment.status != "paid":
        return False
    account = await session.get(Account, payment.account_id, with_for_update=True)
    assert account is not None
    asked = await session.scalar(
        select(Refund).where(Refund.payment_id == payment.id, Refund.status == "requested",
                             Refund.amount_cents == amount_cents)
        .order_by(Refund.id).limit(1).with_for_update()
    )
    amount = min(amount_cents, payment.amount_cents - payment.refunded_cents)
    if asked is None:
        if amount <= 0:
            return False
        asked = Refund(
            payment_id=payment.id, account_id=account.id, amount_cents=amount,
            idempotency_key=f"{actor}:{processor_ref}"[:80], status="requested",
            reason="refunded at the processor", requested_by=actor[:90], created_at=at,
            updated_at=at,
        )
        session.add(asked)
    asked.status, asked.processor_ref, asked.updated_at = "succeeded", processor_ref, at
    payment.refunded_cents += asked.amount_cents
    account.balance_cents += asked.amount_cents
    account.updated_at = at
    await session.flush()
    await ledger.audit(
        session, "refunded", at=at, actor=actor[:40], account_id=account.id,
        reference=payment.reference, refund_id=asked.id, amount_cents=asked.amount_cents,
        status="succeeded", processor_ref=processor_ref, requested_by=asked.requested_by,
    )
    return True
