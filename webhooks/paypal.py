"""PayPal's webhook: verify the signature, de-duplicate the event, dispatch by type.

``POST /webhooks/paypal``

* Verified the way PayPal documents it for a self-check: the string
  ``transmission_id|transmission_time|webhook_id|crc32(body)`` is signed RSA-SHA256 with the key
  of the certificate named in ``PAYPAL-CERT-URL``. That address must be PayPal's (https on
  ``*.paypal.com``) or under ``PAYPAL_BASE_URL`` (a local fake in tests), and the certificate in
  its validity period; the webhook id is ours (``PAYPAL_WEBHOOK_ID``), so an event signed for
  another merchant's webhook fails. (paypal-server-sdk 2.4 has no verify-webhook-signature
  call, and checking locally saves a round trip per event.) A missing or wrong signature, an
  unknown certificate address, no webhook id configured or a body that is not an event is
  refused with 400 and changes nothing.
* The event id goes into ``processed_events`` (source ``paypal``) in the same transaction as its
  effect: the same event again is acknowledged and changes nothing; a failure keeps neither
  (503: PayPal retries).
* ``PAYMENT.CAPTURE.COMPLETED`` / ``.PENDING`` / ``.DENIED`` move the payment to Paid / Pending /
  Declined through the same ``apply_charge_result`` and the same order rules as Stripe's events
  (``webhooks/stripe.py``: nothing undoes Paid, a late Pending reopens nothing), with the same
  receipt or decline notice after the commit. ``PAYMENT.CAPTURE.REFUNDED`` records a refund
  made at PayPal (its dashboard, a dispute) once: ``bot.payments.refunds.record_processor_refund``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import appkeys, metrics
from bot.config.settings import Settings
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Payment, ProcessedEvent
from bot.outreach import email_outbox
from bot.outreach.decline_notices import NOT_RETRIED, Notice
from bot.payments.refunds import record_processor_refund
from bot.payments.service import apply_charge_result
from bot.providers.payments import polite_decline_message
from bot.providers.paypal_gateway import cents_from_value
from webhooks.stripe import (
    MAX_EVENT_ID,
    MAX_EVENT_TYPE,
    MAY_MOVE_FROM,
    EventContext,
    _notice,
    _queue_notice,
    _refuse,
    _short_text,
)

log = logging.getLogger(__name__)

SOURCE = "paypal"
MAX_BODY = 256 * 1024
_CERTS: dict[str, x509.Certificate] = {}  # by address: PayPal rotates them rarely

Handler = Callable[[AsyncSession, dict[str, Any], EventContext], Awaitable[Notice | None]]


# --------------------------------------------------------------------------- verification


def _cert_address_trusted(url: str, settings: Settings) -> bool:
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:  # "https://[...": no address at all (and a 400, never a 500)
        return False
    if parts.scheme == "https" and (host == "paypal.com" or host.endswith(".paypal.com")):
        return True
    base = (settings.paypal_base_url or "").rstrip("/")
    return bool(base) and url.startswith(f"{base}/")


async def _certificate(url: str) -> x509.Certificate:
    cert = _CERTS.get(url)
    if cert is None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as response:
            response.raise_for_status()
            cert = x509.load_pem_x509_certificate(await response.read())
        _CERTS[url] = cert
    return cert


async def verified(request: web.Request, body: bytes, settings: Settings) -> bool:
    """Whether PayPal signed this very body for our webhook id (see the module's text)."""
    headers = request.headers
    transmission_id = headers.get("PAYPAL-TRANSMISSION-ID", "")
    when = headers.get("PAYPAL-TRANSMISSION-TIME", "")
    signature = headers.get("PAYPAL-TRANSMISSION-SIG", "")
    cert_url = headers.get("PAYPAL-CERT-URL", "")
    if headers.get("PAYPAL-AUTH-ALGO", "SHA256withRSA") != "SHA256withRSA":
        return False
    if not (transmission_id and when and signature and cert_url) or len(cert_url) > 500:
        return False
    if not _cert_address_trusted(cert_url, settings):
        log.warning("refused a PayPal webhook whose certificate is not PayPal's")
        return False
    try:
        cert = await _certificate(cert_url)
        raw = base64.b64decode(signature, validate=True)
    except (aiohttp.ClientError, TimeoutError, ValueError, binascii.Error):
        log.warning("refused a PayPal webhook: its certificate or signature could not be read")
        return False
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return False
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    message = f"{transmission_id}|{when}|{settings.paypal_webhook_id}|{zlib.crc32(body)}"
    try:
        key.verify(raw, message.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------- the endpoint


async def handle(request: web.Request) -> web.Response:
    settings = request.config_dict[appkeys.SETTINGS]
    if not settings.paypal_webhook_id:
        log.error("refused a PayPal webhook: PAYPAL_WEBHOOK_ID is not set")
        return _refuse("webhook id not configured")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _refuse("payload too large")
    body = await request.read()
    if len(body) > MAX_BODY:
        return _refuse("payload too large")
    if not await verified(request, body, settings):
        metrics.WEBHOOK_VERIFICATION_FAILURES.labels("paypal").inc()
        log.warning("refused a PayPal webhook with a missing or wrong signature")
        return _refuse("invalid signature")
    try:
        event = json.loads(body)
    except ValueError:
        return _refuse("malformed payload")
    if not isinstance(event, dict):
        return _refuse("malformed payload")
    event_id, event_type = event.get("id"), event.get("event_type")
    if not _short_text(event_id, MAX_EVENT_ID) or not _short_text(event_type, MAX_EVENT_TYPE):
        return _refuse("malformed event: id and event_type are required")
    handler = HANDLERS.get(event_type)
    if handler is None:
        log.info("PayPal event %s of type %s ignored", event_id, event_type)
        return web.Response(text="ignored")
    resource = event.get("resource")
    if not isinstance(resource, dict) or not _short_text(resource.get("id"), 64):
        return _refuse("malformed event: resource is required")

    database = request.config_dict[appkeys.DATABASE]
    clock = request.config_dict[appkeys.CLOCK]
    context = EventContext(event_id, event_type, clock.now(),
                           public_base_url=settings.public_base_url)
    try:
        async with database.session() as session:
            session.add(ProcessedEvent(source=SOURCE, event_id=event_id, event_type=event_type,
                                       received_at=context.at))
            try:
                await session.flush()
            except IntegrityError:
                await session.rollback()
                log.info("PayPal event %s (%s) seen before: acknowledged", event_id, event_type)
                return web.Response(text="already processed")
            notice = await handler(session, resource, context)
            queued = _queue_notice(request, session, notice) if notice is not None else None
            await session.commit()
    except Exception:
        log.exception("PayPal event %s (%s) could not be processed", event_id, event_type)
        return web.Response(status=503, text="temporarily unable to process the event")
    if queued is not None:
        row, notifier, seal = queued
        try:
            await email_outbox.deliver(database, notifier, [row.id], seal=seal, clock=clock)
        except Exception:  # the row stays queued: the worker sends it
            log.exception("the email of PayPal event %s could not be sent now", event_id)
    return web.Response(text="ok")


# --------------------------------------------------------------------------- captures


async def _payment_of(session: AsyncSession, capture_id: str,
                      reference: object) -> Payment | None:
    """By the capture id we stored; else by our reference (``custom_id``: the charge's answer
    was lost before we could store the id)."""
    payment = await session.scalar(
        select(Payment).where(Payment.processor_id == capture_id).with_for_update()
    )
    if payment is not None or not isinstance(reference, str) or not reference:
        return payment
    payment = await session.scalar(
        select(Payment).where(Payment.reference == reference[:16]).with_for_update()
    )
    if payment is not None and payment.processor_id not in (None, capture_id):
        log.error("PayPal capture %s names payment %s, which %s already charges: left for "
                  "review", capture_id, reference, payment.processor_id)
        return None
    return payment


def capture_handler(target: str) -> Handler:
    async def apply(
        session: AsyncSession, capture: dict[str, Any], context: EventContext
    ) -> Notice | None:
        payment = await _payment_of(session, capture["id"], capture.get("custom_id"))
        if payment is None:
            log.info("PayPal event %s: no payment for capture %s", context.event_id,
                     capture["id"])
            return None
        before = payment.status
        if before == target or before not in MAY_MOVE_FROM[target]:
            log.info("PayPal event %s (%s) leaves payment %s %s", context.event_id,
                     context.event_type, payment.reference, before)
            return None
        amount = cents_from_value((capture.get("amount") or {}).get("value"))
        if amount is not None and amount != payment.amount_cents + payment.fee_cents:
            log.error("PayPal event %s: capture %s is for %d cents, payment %s for %d; left "
                      "unchanged for review", context.event_id, capture["id"], amount,
                      payment.reference, payment.amount_cents)
            return None
        failure_code = "paypal_declined" if target == "declined" else None
        if target == "paid":
            await session.get(Account, payment.account_id, with_for_update=True)
        await apply_charge_result(session, payment, status=target, processor_id=capture["id"],
                                  failure_code=failure_code, at=context.at)
        await ledger.audit(
            session, "payment_status_changed", at=context.at, actor="paypal",
            account_id=payment.account_id, reference=payment.reference, from_status=before,
            to_status=payment.status, event_id=context.event_id,
            failure_code=payment.failure_code,
        )
        log.info("PayPal event %s (%s): payment %s %s -> %s", context.event_id,
                 context.event_type, payment.reference, before, payment.status)
        if payment.status == "paid":
            return await _notice(session, payment, "receipt")
        if payment.status == "declined":
            reason = polite_decline_message(payment.failure_code)
            return await _notice(session, payment, "decline", reason=f"{reason} {NOT_RETRIED}",
                                 context=context)
        return None

    return apply


async def refunded(
    session: AsyncSession, refund: dict[str, Any], context: EventContext
) -> Notice | None:
    """A refund of one of our captures: recorded once, whoever made it."""
    up = next((link.get("href") for link in refund.get("links") or []
               if isinstance(link, dict) and link.get("rel") == "up"), None)
    capture_id = str(up).rstrip("/").rsplit("/", 1)[-1] if up else None
    amount = cents_from_value((refund.get("amount") or {}).get("value"))
    if not capture_id or amount is None or amount <= 0:
        log.info("PayPal event %s: refund %s names no capture or amount", context.event_id,
                 refund["id"])
        return None
    payment = await _payment_of(session, capture_id, refund.get("custom_id"))
    if payment is None:
        log.info("PayPal event %s: no payment for capture %s", context.event_id, capture_id)
        return None
    await record_processor_refund(session, payment, processor_ref=refund["id"],
                                  amount_cents=amount, actor="paypal", at=context.at)
    return None


HANDLERS: dict[str, Handler] = {
    "PAYMENT.CAPTURE.COMPLETED": capture_handler("paid"),
    "PAYMENT.CAPTURE.PENDING": capture_handler("pending"),
    "PAYMENT.CAPTURE.DENIED": capture_handler("declined"),
    "PAYMENT.CAPTURE.REFUNDED": refunded,
}
