"""Payment plans made from an offer: signing one, cancelling one.

A plan offer made for a customer (bot/plans/offers.py) carries its exact schedule. Signing it, on
the web or by text, writes in one transaction: the plan, one scheduled payment per installment (each
with a stable idempotency key derived from the offer, so signing twice can never create a second
set of charges), the agreement as signed, and the offer marked accepted. The worker charges the
installments when they fall due.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger import queries as ledger
from bot.ledger.models import Account, Agreement, Offer, Payment, PaymentMethod, Plan
from bot.outreach import email_outbox
from bot.outreach.email_texts import render_email
from bot.payments.collectable import locked_collectable
from bot.payments.service import unused_references
from bot.plans.agreement_copy import queue_copy

SIGNATURE_KINDS = ("typed", "drawn", "sms_reply")


class PlanError(Exception):
    """A domain error about a plan or an offer, worded for the person who can act on it."""


class OfferNotOpen(PlanError):
    """The offer was already signed, has expired or was withdrawn."""


class PlanNotOpen(PlanError):
    """The plan would promise more than is open on the account (bot/payments/collectable.py)."""


@dataclass(frozen=True)
class Signature:
    kind: str  # typed | drawn | sms_reply
    data: str  # the typed name, the PNG data: URL, or the reply as received
    signer_name: str
    channel: str  # web | sms
    esign_consent_at: datetime
    ip_address: str | None = None
    user_agent: str | None = None


def offer_schedule(offer: Offer) -> list[tuple[date, int]]:
    """The offer's installments as (due date, cents)."""
    if not offer.schedule:
        raise PlanError("This offer has no schedule to sign.")
    return [(date.fromisoformat(day), int(cents)) for day, cents in offer.schedule]


def installment_key(offer_id: int, number: int) -> str:
    return f"offer:{offer_id}#{number}"


def agreement_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def accept_plan_offer(
    session: AsyncSession,
    *,
    offer: Offer,
    account: Account,
    method: PaymentMethod,
    signature: Signature,
    agreement_text: str,
    terms_version: str,
    at: datetime,
) -> Plan:
    """Sign a plan offer and commit. Signing the same offer again (a second tap, a retry, the
    other channel) returns the plan already made and changes nothing."""
    if signature.kind not in SIGNATURE_KINDS:
        raise PlanError("Unknown way of signing.")
    if not signature.data.strip():
        raise PlanError("Please sign before you continue.")
    if method.account_id != account.id or offer.account_id != account.id:
        raise PlanError("That payment method is not on this account.")
    existing = await plan_for_offer(session, offer.id)
    if existing is not None:
        return existing
    if offer.kind != "plan" or offer.status != "open":
        raise OfferNotOpen("This offer is no longer open.")
    if offer.expires_at is not None and offer.expires_at <= at:
        raise OfferNotOpen("This offer has expired.")
    schedule = offer_schedule(offer)
    # The rule of bot/payments/collectable.py, with the account locked until this signature commits.
    state = await locked_collectable(session, account.id)
    if state.settling or offer.total_cents > state.open_cents:
        raise PlanNotOpen(state.explanation())
    plan = Plan(
        account_id=account.id,
        offer_id=offer.id,
        total_cents=offer.total_cents,
        installment_count=len(schedule),
        frequency=offer.frequency or "custom",
        method_id=method.id,
        rules=offer.rules,
        created_at=at,
    )
    session.add(plan)
    await session.flush()
    references = await unused_references(session, len(schedule))
    session.add_all(
        Payment(
            reference=references[n - 1],
            idempotency_key=installment_key(offer.id, n),
            account_id=account.id,
            method_id=method.id,
            offer_id=offer.id,
            plan_id=plan.id,
            installment_number=n,
            amount_cents=amount,
            scheduled_for=day,
            status="scheduled",
            channel=signature.channel,
            created_at=at,
            updated_at=at,
        )
        for n, (day, amount) in enumerate(schedule, start=1)
    )
    agreement = Agreement(
        account_id=account.id,
        plan_id=plan.id,
        offer_id=offer.id,
        terms_version=terms_version,
        text_sha256=agreement_digest(agreement_text),
        text=agreement_text,
        signer_name=signature.signer_name[:160],
        signature_kind=signature.kind,
        signature_data=signature.data,
        channel=signature.channel,
        ip_address=signature.ip_address,
        user_agent=(signature.user_agent or "")[:400] or None,
        esign_consent_at=signature.esign_consent_at,
        signed_at=at,
    )
    session.add(agreement)
    # Only an offer still open at write time is taken: a withdrawal or expiry that committed while
    # the customer was signing wins, and nothing of this signature is kept.
    taken = await session.execute(
        update(Offer)
        .where(Offer.id == offer.id, Offer.status == "open")
        .values(status="accepted", accepted_at=at)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        winner = await plan_for_offer(session, offer.id)
        if winner is not None:
            return winner
        raise OfferNotOpen("This offer is no longer open.")
    offer.status, offer.accepted_at = "accepted", at  # what the row now holds, for the caller
    await ledger.audit(
        session,
        "plan_signed",
        at=at,
        account_id=account.id,
        offer_id=offer.id,
        plan_id=plan.id,
        installments=len(schedule),
        channel=signature.channel,
        signature_kind=signature.kind,
    )
    await session.flush()  # the agreement's id names its copy
    await queue_copy(session, agreement, at=at)  # signed and owed a copy: one commit
    try:
        await session.commit()
    except IntegrityError:
        # The same offer was signed at the same moment elsewhere: that plan is the one.
        await session.rollback()
        winner = await plan_for_offer(session, offer.id)
        if winner is None:
            raise
        return winner
    return plan


async def plan_for_offer(session: AsyncSession, offer_id: int) -> Plan | None:
    return await session.scalar(select(Plan).where(Plan.offer_id == offer_id).limit(1))


async def plan_installments(session: AsyncSession, plan_id: int) -> list[Payment]:
    return list(
        await session.scalars(
            select(Payment).where(Payment.plan_id == plan_id).order_by(Payment.scheduled_for)
        )
    )


@dataclass(frozen=True)
class Cancellation:
    plan: Plan
    account: Account
    canceled: list[Payment]

    @property
    def canceled_total(self) -> int:
        return sum(p.amount_cents for p in self.canceled)

    def email_context(self, brand: str) -> dict[str, Any]:
        return {
            "account": self.account,
            "brand": brand,
            "canceled": self.canceled,
            "canceled_total": self.canceled_total,
        }


async def cancel_plan(
    session: AsyncSession, plan_id: int, *, actor: str, reason: str | None, at: datetime
) -> Cancellation:
    """Cancel a plan and commit: every installment not yet charged is canceled (the worker never
    takes a canceled row). Payments already made stand. The caller emails the customer."""
    plan = await session.get(Plan, plan_id)
    if plan is None:
        raise PlanError("No plan with that id.")
    # One conditional update decides between two cancellations at once (SQLite has no row locks):
    # only the winner cancels the installments and emails the customer.
    won = await session.execute(
        update(Plan)
        .where(Plan.id == plan_id, Plan.status != "canceled")
        .values(status="canceled", canceled_at=at, canceled_by=actor[:40],
                cancel_reason=(reason or None) and reason[:200])
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise PlanError("The plan is already canceled.")
    canceled = list(
        await session.scalars(
            select(Payment)
            .where(Payment.plan_id == plan.id, Payment.status == "scheduled")
            .order_by(Payment.scheduled_for)
            .with_for_update()
        )
    )
    for payment in canceled:
        payment.status, payment.updated_at = "canceled", at
    account = await session.get(Account, plan.account_id)
    assert account is not None
    await ledger.audit(
        session,
        "plan_canceled",
        at=at,
        actor=actor,
        account_id=account.id,
        plan_id=plan.id,
        installments_canceled=len(canceled),
    )
    await session.commit()
    await session.refresh(plan)
    return Cancellation(plan=plan, account=account, canceled=canceled)


async def switch_method(
    session: AsyncSession, account: Account, method: PaymentMethod, *, at: datetime, actor: str
) -> list[Payment]:
    """Charge everything still to come to ``method`` and commit: it becomes the account's
    default, the method of its active plans and of every scheduled payment (a scheduled retry of
    a declined one included). Returns those payments, by date. A row the worker has already
    claimed keeps the method it is being charged with."""
    if method.account_id != account.id:
        raise PlanError("That payment method is not on this account.")
    await session.execute(
        update(PaymentMethod)
        .where(PaymentMethod.account_id == account.id)
        .values(is_default=PaymentMethod.id == method.id)
        .execution_options(synchronize_session=False)
    )
    plans = await session.execute(
        update(Plan)
        .where(Plan.account_id == account.id, Plan.status == "active")
        .values(method_id=method.id)
        .execution_options(synchronize_session=False)
    )
    # One conditional UPDATE: a row claimed meanwhile (status processing) is left alone.
    await session.execute(
        update(Payment)
        .where(Payment.account_id == account.id, Payment.status == "scheduled")
        .values(method_id=method.id, updated_at=at)
        .execution_options(synchronize_session=False)
    )
    switched = list(
        await session.scalars(
            select(Payment)
            .where(
                Payment.account_id == account.id,
                Payment.status == "scheduled",
                Payment.method_id == method.id,
            )
            .order_by(Payment.scheduled_for, Payment.id)
            .execution_options(populate_existing=True)
        )
    )
    await ledger.audit(
        session,
        "payment_method_switched",
        at=at,
        actor=actor[:40],
        account_id=account.id,
        method_id=method.id,
        method_kind=method.kind,
        plans=plans.rowcount,  # type: ignore[attr-defined]
        payments=[p.reference for p in switched],
    )
    await session.commit()
    method.is_default = True
    return switched


async def plan_paid_email(
    session: AsyncSession, env: Any, account: Account, plan: Plan, *, brand: str
) -> dict[str, Any]:
    """The notice that a plan is closed as paid in full because nothing more is owed (the
    worker canceled what the balance no longer needed): what was paid, what will not be."""
    rows = list(
        await session.scalars(
            select(Payment).where(Payment.plan_id == plan.id).order_by(Payment.scheduled_for)
        )
    )
    context = {
        "account": account,
        "brand": brand,
        "paid_cents": sum(p.amount_cents for p in rows if p.status == "paid"),
        "canceled": [p for p in rows if p.status == "canceled"],
        "disclosure": await email_outbox.creditor_disclosure(session, account),
    }
    return {
        "to": account.email,
        **render_email(env, "plan_paid", context, language=account.language),
        "transactional": True,  # about payments the customer authorized
    }


async def email_cancellation(
    db: Any, notifier: Any, result: Cancellation, brand: str, *, clock: Any
) -> None:
    """Tell the customer by email that nothing more will be debited (the API's and the CLI's
    cancellation alike): sent now, through the outbox so a refusal is tried again."""
    if not result.account.email:
        return
    context = result.email_context(brand)
    async with db.session() as session:
        context["disclosure"] = await email_outbox.creditor_disclosure(session, result.account)
    email = {
        "to": result.account.email,
        **render_email(notifier.env, "plan_canceled", context, language=result.account.language),
        "transactional": True,
    }
    await email_outbox.send_now(db, notifier, email, kind="plan_canceled",
                                account_id=result.account.id, clock=clock)
