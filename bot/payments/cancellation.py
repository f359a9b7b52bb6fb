"""Canceling a scheduled one-off payment, for a supervisor, with a notice to the customer.

* Only a one-off payment that is still ``scheduled``. A plan's installment is not canceled one
  by one here: the plan's rules (skips, moves) belong to the customer's plan, and the plan is
  canceled as a whole (``paybot plans cancel`` / ``bot.plans.signing.cancel_plan``), so a plan
  never carries a hole nobody agreed to.
* Under the account lock, by one conditional ``UPDATE ... WHERE status = 'scheduled'``: the
  worker claims a due payment the same way, so of a cancellation and a charge exactly one wins;
  a payment already ``processing`` (being charged), ``pending``, ``paid`` or ``declined`` is
  refused with a sentence saying what to do instead.
* Audited with the actor (``staff:NAME`` / ``cli:NAME``). The customer is told by email, queued
  in the email outbox in the same transaction and sent after the commit (the worker sends it if
  this process stops first), and by a text queued in the outreach queue (kind
  ``payment_canceled``), which the worker sends outside quiet hours and never to an opted-out
  number; being about the customer's own payment, it is not held by the weekly cap.

Entry point: ``cancel_scheduled_payment(database, reference=..., actor=..., clock=...)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy import update

from bot.ledger import queries as ledger
from bot.ledger.models import Payment
from bot.outreach import email_outbox
from bot.outreach.email_texts import render_email
from bot.outreach.queueing import enqueue
from bot.payments.refunds import MoneyOperationError, brand_of, locked_payment
from bot.payments.service import STATUS_LABELS

if TYPE_CHECKING:
    from bot.clock import Clock
    from bot.ledger.db import Database
    from bot.outreach.notifications import Notifier

log = logging.getLogger(__name__)

_WHY_NOT = {
    "processing": "it is being charged now and can no longer be canceled",
    "pending": "the processor has taken it and the bank has not confirmed it yet; it can no "
    "longer be canceled",
    "paid": "it was paid; refund it instead",
    "declined": "it was declined, so nothing will be charged",
    "canceled": "it is canceled already",
}


class CancelRefused(MoneyOperationError):
    """Nothing was canceled; ``str()`` says why."""


@dataclass(frozen=True)
class CanceledPayment:
    reference: str
    account_ref: str
    amount_cents: int
    fee_cents: int
    scheduled_for: date
    balance_cents: int
    email_id: int | None  # the notice queued (None: no address on file)
    text_queued: bool = False  # a text queued for the worker (quiet hours and opt-outs hold)


async def cancel_scheduled_payment(
    database: Database,
    *,
    reference: str,
    actor: str,
    clock: Clock,
    reason: str | None = None,
    notifier: Notifier | None = None,
) -> CanceledPayment:
    """Cancel the scheduled one-off payment ``reference`` and tell the customer by email
    (``notifier``). Raises ``NoSuchPayment`` or ``CancelRefused``."""
    async with database.writer(), database.session() as session:
        account, payment = await locked_payment(session, reference)
        if payment.plan_id is not None:
            raise CancelRefused(
                f"{payment.reference} is installment {payment.installment_number} of plan "
                f"{payment.plan_id}: cancel the plan (paybot plans cancel {payment.plan_id}); "
                "a single installment is not canceled on its own."
            )
        if payment.status != "scheduled":
            label = STATUS_LABELS.get(payment.status, payment.status)
            raise CancelRefused(
                f"{payment.reference} is {label}: "
                f"{_WHY_NOT.get(payment.status, 'only a Scheduled payment can be canceled')}."
            )
        now = clock.now()
        won = await session.execute(
            update(Payment)
            .where(Payment.id == payment.id, Payment.status == "scheduled")
            .values(status="canceled", updated_at=now)  # who and why: the audit trail
            .execution_options(synchronize_session=False)
        )
        if won.rowcount != 1:  # type: ignore[attr-defined]
            # The worker claimed it between our read and our write (PostgreSQL: it does not
            # take the account lock to claim).
            await session.rollback()
            raise CancelRefused(f"{payment.reference} is {_WHY_NOT['processing']}.")
        await session.refresh(payment)
        await ledger.audit(
            session, "payment_canceled", at=now, actor=actor[:40], account_id=account.id,
            reference=payment.reference, amount_cents=payment.amount_cents,
            scheduled_for=payment.scheduled_for.isoformat(),
            reason=(reason or "").strip()[:200] or None,
        )
        email = None
        if notifier is not None and account.email:
            context = {
                "brand": await brand_of(session, account, notifier),
                "account": account,
                "payment": payment,
                "disclosure": await email_outbox.creditor_disclosure(session, account),
            }
            try:
                message = {
                    "to": account.email,
                    **render_email(notifier.env, "payment_canceled", context,
                                   language=account.language),
                    "transactional": True,  # about a payment the customer authorized
                }
            except Exception:  # the cancellation stands whatever the template does
                log.exception("payment %s: the cancellation notice could not be written",
                              payment.reference)
            else:
                email = email_outbox.queue(session, message, kind="payment_canceled",
                                           account_id=account.id, at=now)
        texted = False
        if account.phone:
            # Through the outreach queue, so quiet hours and opt-outs hold (the worker sends it).
            await enqueue(
                session, dedupe_key=f"payment_canceled:{payment.id}", account_id=account.id,
                kind="payment_canceled", channel="sms", at=now,
                detail={"transactional": True, "notice": {
                    "reference": payment.reference,
                    "amount_cents": payment.amount_cents + payment.fee_cents,
                    "scheduled_for": payment.scheduled_for.isoformat(),
                }},
            )
            texted = True
        await session.commit()
        result = CanceledPayment(
            reference=payment.reference,
            account_ref=account.account_ref,
            amount_cents=payment.amount_cents,
            fee_cents=payment.fee_cents,
            scheduled_for=payment.scheduled_for,
            balance_cents=account.balance_cents,
            email_id=email.id if email is not None else None,
            text_queued=texted,
        )
    if result.email_id is not None and notifier is not None:
        await email_outbox.deliver(database, notifier, [result.email_id], clock=clock)
    return result
