"""Stripe's webhook (Saleor style): verify the signature, de-duplicate the event, dispatch by type.

``POST /webhooks/stripe``

* ``Stripe-Signature`` is checked with the SDK (``stripe.Webhook.construct_event``) against
  ``STRIPE_WEBHOOK_SECRET``. A missing or wrong signature, a timestamp older than five minutes
  (a replay) or no secret configured is refused with 400; so is a signed body that is not a
  JSON event. A refusal changes nothing.
* Handlers are looked up by event type; any other type is acknowledged (200) and ignored.
* The event id goes into ``processed_events`` (source ``stripe``) in the same transaction as its
  effect: the same event again is acknowledged and changes nothing, and a failure before the
  commit keeps neither, so Stripe's retry (we answer 503) does both.
* ``payment_intent.succeeded`` / ``.processing`` / ``.payment_failed`` move the payment to
  Paid / Pending / Declined through ``bot.payments.service.apply_charge_result``, whatever the order
  they arrive in: nothing undoes Paid, a late ``processing`` does not reopen a Declined payment,
  and a retried ACH debit can still turn Declined into Paid.
* After the commit, the customer is emailed once about a change they have not heard of: the
  receipt when the event makes the payment Paid, the decline notice when it makes it Declined.
  The decline notice carries a personalized link (purpose ``update_method``, minted in the same
  transaction as the status change) to the page where the customer picks the method the missed
  and the coming payments are charged to.
  A charge answered at once (paid or declined) was already told by the conversation, so the
  event that confirms it changes no status and sends nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe
from aiohttp import web
from jinja2 import Environment
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import appkeys, metrics
from bot.ledger import queries as ledger
from bot.ledger.models import Account, OutboundEmail, Payment, PaymentMethod, ProcessedEvent
from bot.outreach import email_outbox
from bot.outreach.decline_notices import NOT_RETRIED, Notice, decline_email, update_method_link
from bot.outreach.notifications import Notifier, ledger_email_opt_outs
from bot.payments.service import PaymentOutcome, apply_charge_result
from bot.providers.payments import polite_decline_message
from bot.text.rendering import build_environment

log = logging.getLogger(__name__)

SOURCE = "stripe"
TOLERANCE_SECONDS = 300  # Stripe's own default: an older signed timestamp is a replay
MAX_EVENT_ID = 100  # processed_events.event_id
MAX_EVENT_TYPE = 60  # processed_events.event_type


@dataclass(frozen=True)
class EventContext:
    event_id: str
    event_type: str
    at: datetime
    public_base_url: str = ""


Handler = Callable[[AsyncSession, dict[str, Any], EventContext], Awaitable[Notice | None]]


# --------------------------------------------------------------------------- the endpoint


async def handle(request: web.Request) -> web.Response:
    settings = request.config_dict[appkeys.SETTINGS]
    secret = settings.stripe_webhook_secret
    if not secret:
        log.error("refused a Stripe webhook: STRIPE_WEBHOOK_SECRET is not set")
        return _refuse("webhook secret not configured")
    body = await request.read()
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        return _refuse("malformed payload")
    try:
        event = stripe.Webhook.construct_event(
            payload, request.headers.get("Stripe-Signature"), secret, tolerance=TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError:
        metrics.WEBHOOK_VERIFICATION_FAILURES.labels("stripe").inc()
        log.warning("refused a Stripe webhook with a missing, wrong or expired signature")
        return _refuse("invalid signature")
    except Exception:  # signed, but not JSON (ValueError) or not an event object
        log.warning("refused a signed Stripe webhook whose body is not an event")
        return _refuse("malformed payload")

    data = event.to_dict()
    event_id, event_type = data.get("id"), data.get("type")
    if not _short_text(event_id, MAX_EVENT_ID) or not _short_text(event_type, MAX_EVENT_TYPE):
        return _refuse("malformed event: id and type are required")
    handler = HANDLERS.get(event_type)
    if handler is None:
        log.info("Stripe event %s of type %s ignored", event_id, event_type)
        return web.Response(text="ignored")
    envelope = data.get("data")
    obj = envelope.get("object") if isinstance(envelope, dict) else None
    if not isinstance(obj, dict) or not _short_text(obj.get("id"), 64):
        return _refuse("malformed event: data.object is required")

    database = request.config_dict[appkeys.DATABASE]
    context = EventContext(
        event_id,
        event_type,
        request.config_dict[appkeys.CLOCK].now(),
        public_base_url=settings.public_base_url,
    )
    try:
        async with database.session() as session:
            # The event first: a concurrent copy waits on the unique key, then sees it taken.
            session.add(
                ProcessedEvent(
                    source=SOURCE, event_id=event_id, event_type=event_type, received_at=context.at
                )
            )
            try:
                await session.flush()
            except IntegrityError:
                await session.rollback()
                log.info("Stripe event %s (%s) seen before: acknowledged", event_id, event_type)
                return web.Response(text="already processed")
            notice = await handler(session, obj, context)
            # The customer's email is written with the change it reports, then sent.
            queued = _queue_notice(request, session, notice) if notice is not None else None
            await session.commit()
    except Exception:
        # Nothing was kept (not even the event id): Stripe retries a non-2xx answer.
        log.exception("Stripe event %s (%s) could not be processed", event_id, event_type)
        return web.Response(status=503, text="temporarily unable to process the event")
    if queued is not None:
        row, notifier, seal = queued
        try:
            await email_outbox.deliver(database, notifier, [row.id], seal=seal,
                                       clock=request.config_dict[appkeys.CLOCK])
        except Exception:  # the row stays queued: the worker sends it
            log.exception("the email of Stripe event %s could not be sent now", event_id)
    return web.Response(text="ok")


def _refuse(reason: str) -> web.Response:
    return web.Response(status=400, text=reason)


def _short_text(value: object, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit


# --------------------------------------------------------------------------- payment intents

# Which ledger statuses an event may move a payment from. Paid is final; Declined is final
# except for money that really arrived (a retried ACH debit succeeds); a `processing` event that
# arrives after the outcome is late and changes nothing.
MAY_MOVE_FROM = {
    "paid": frozenset({"scheduled", "processing", "pending", "declined", "canceled"}),
    "pending": frozenset({"scheduled", "processing"}),
    "declined": frozenset({"scheduled", "processing", "pending"}),
}


def payment_intent_handler(target: str) -> Handler:
    async def apply(
        session: AsyncSession, intent: dict[str, Any], context: EventContext
    ) -> Notice | None:
        payment = await _find_payment(session, intent)
        if payment is None:
            log.info(
                "Stripe event %s: no payment for PaymentIntent %s; nothing to do",
                context.event_id,
                intent["id"],
            )
            return None
        before = payment.status
        if before == target or before not in MAY_MOVE_FROM[target]:
            log.info(
                "Stripe event %s (%s) leaves payment %s %s",
                context.event_id,
                context.event_type,
                payment.reference,
                before,
            )
            return None
        amount = intent.get("amount")
        if isinstance(amount, int) and amount != payment.amount_cents + payment.fee_cents:
            log.error(
                "Stripe event %s: PaymentIntent %s is for %d cents, payment %s for %d; "
                "left unchanged for review",
                context.event_id,
                intent["id"],
                amount,
                payment.reference,
                payment.amount_cents,
            )
            return None
        error = intent.get("last_payment_error")
        error = error if isinstance(error, dict) else {}
        failure_code = None
        if target == "declined":
            failure_code = str(error.get("code") or "card_declined")[:64]
        if target == "paid":
            # Lock the balance we are about to lower (PostgreSQL; SQLite has one writer anyway).
            await session.get(Account, payment.account_id, with_for_update=True)
        await apply_charge_result(
            session,
            payment,
            status=target,
            processor_id=intent["id"],
            failure_code=failure_code,
            at=context.at,
        )
        await ledger.audit(
            session,
            "payment_status_changed",
            at=context.at,
            actor="stripe",
            account_id=payment.account_id,
            reference=payment.reference,
            from_status=before,
            to_status=payment.status,
            event_id=context.event_id,
            failure_code=payment.failure_code,
        )
        log.info(
            "Stripe event %s (%s): payment %s %s -> %s",
            context.event_id,
            context.event_type,
            payment.reference,
            before,
            payment.status,
        )
        if payment.status == "paid":
            return await _notice(session, payment, "receipt")
        if payment.status == "declined":
            decline_code = error.get("decline_code")
            reason = polite_decline_message(
                payment.failure_code, decline_code if isinstance(decline_code, str) else None
            )
            # Only the worker schedules retries, and only for a decline it records itself.
            return await _notice(
                session, payment, "decline", reason=f"{reason} {NOT_RETRIED}", context=context
            )
        return None

    return apply


async def _find_payment(session: AsyncSession, intent: dict[str, Any]) -> Payment | None:
    """By the PaymentIntent id we stored; else by our reference in its metadata (the charge's
    answer was lost before we could store the id)."""
    intent_id = intent["id"]
    payment = await session.scalar(
        select(Payment).where(Payment.processor_id == intent_id).with_for_update()
    )
    if payment is not None:
        return payment
    metadata = intent.get("metadata")
    reference = metadata.get("paybot_reference") if isinstance(metadata, dict) else None
    if not isinstance(reference, str) or not reference:
        return None
    payment = await session.scalar(
        select(Payment).where(Payment.reference == reference).with_for_update()
    )
    if payment is not None and payment.processor_id not in (None, intent_id):
        log.error(
            "PaymentIntent %s names payment %s, which PaymentIntent %s already charges: "
            "a second charge at the processor? Left for review",
            intent_id,
            reference,
            payment.processor_id,
        )
        return None
    return payment


async def _notice(
    session: AsyncSession,
    payment: Payment,
    kind: str,
    *,
    reason: str | None = None,
    context: EventContext | None = None,
) -> Notice | None:
    account = await session.get(Account, payment.account_id)
    if account is None:
        return None
    update_url = None
    if kind == "decline" and context is not None and account.email:
        update_url = await update_method_link(
            session, account=account, at=context.at, public_base_url=context.public_base_url
        )
    method = await session.get(PaymentMethod, payment.method_id) if payment.method_id else None
    creditor = await ledger.creditor_of(session, account)
    outcome = PaymentOutcome(
        reference=payment.reference,
        status=payment.status,
        amount_cents=payment.amount_cents,
        method_label=method.description if method else "your payment method",
        pay_on=None,
        failure_message=reason,
    )
    return Notice(
        kind=kind,
        account=account,
        outcome=outcome,
        creditor_name=creditor.shown_name if creditor else None,  # the sender the customer knows
        disclosure=creditor.disclosure if creditor else "",
        update_url=update_url,
    )


HANDLERS: dict[str, Handler] = {
    "payment_intent.succeeded": payment_intent_handler("paid"),
    "payment_intent.processing": payment_intent_handler("pending"),
    "payment_intent.payment_failed": payment_intent_handler("declined"),
}


# --------------------------------------------------------------------------- emails


@functools.cache
def _environment() -> Environment:
    return build_environment()


def _queue_notice(
    request: web.Request, session: AsyncSession, notice: Notice
) -> tuple[OutboundEmail, Notifier, email_outbox.Seal | None] | None:
    """The notice's email, added to the event's transaction; None when there is nothing to send
    (no address) or it could not be built (logged: the event itself is not refused for it)."""
    reference = notice.outcome.reference
    if not notice.account.email:
        log.info("no email on file for payment %s: %s not sent", reference, notice.kind)
        return None
    providers = request.config_dict[appkeys.PROVIDERS]
    settings = request.config_dict[appkeys.SETTINGS]
    brand = notice.creditor_name or settings.brand
    notifier = Notifier(
        sms=providers.sms,
        email=providers.email,
        brand=brand,
        env=_environment(),
        email_opted_out=ledger_email_opt_outs(request.config_dict[appkeys.DATABASE]),
    )
    seal = None
    try:
        if notice.kind == "receipt":
            email = notifier.receipt(notice.account, notice.outcome, brand=brand,
                                     at=request.config_dict[appkeys.CLOCK].now(),
                                     disclosure=notice.disclosure)
        else:  # carries a personal link: kept sealed until it is sent
            email = decline_email(notifier, notice, brand=brand)
            seal = email_outbox.Seal(settings.secret_key)
    except Exception:
        log.exception("the %s email for payment %s could not be written", notice.kind, reference)
        return None
    row = email_outbox.queue(session, email, kind=notice.kind, account_id=notice.account.id,
                             at=request.config_dict[appkeys.CLOCK].now(), seal=seal)
    return row, notifier, seal
