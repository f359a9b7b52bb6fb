"""SendGrid's Event Webhook: verify the batch, de-duplicate each event, record email opt-outs.

``POST /webhooks/sendgrid``

* The signature is checked with the SDK (``sendgrid.helpers.eventwebhook.EventWebhook``): ECDSA
  P-256 / SHA-256 over the ``X-Twilio-Email-Event-Webhook-Timestamp`` header followed by the raw
  body, base64 in ``X-Twilio-Email-Event-Webhook-Signature``, against
  ``SENDGRID_WEBHOOK_PUBLIC_KEY`` (the verification key as SendGrid shows it: base64 DER, with or
  without PEM armour).
* Refusals change nothing:
  - no key configured, or one that is not a P-256 public key: 400 ``not configured``;
  - a missing or wrong signature: 403 (as the Twilio webhook answers a bad signature);
  - a signed timestamp more than five minutes from now (a replay, or a clock far off): 403;
  - a body that is not UTF-8 (it cannot be checked), or a signed one that is not a JSON
    array: 400;
  - a body over ``MAX_BODY`` bytes: 413. (The app's own 64 KiB request limit is not applied
    here: SendGrid posts batches of up to 768 KB.)
* The body is a batch. Each event is read on its own; one that is not an object, or lacks its
  type or a usable address, is logged (never with the address) and skipped, and the rest of the
  batch goes on.
* By type (``HANDLERS``):
  - ``unsubscribe``, ``group_unsubscribe``, ``spamreport``, ``bounce`` (``type`` "bounce"; a
    ``blocked`` one is a temporary refusal and changes nothing), and ``dropped`` whose reason is
    "Unsubscribed Address", "Bounced Address" or "Spam Reporting Address": the address is opted
    out of email in the ledger (``ledger.set_email_opt_out``, reason = the event type, e.g.
    ``spamreport``, ``dropped (bounced)``). An address already out for a reason at least as
    strong keeps its first reason.
  - ``group_resubscribe``: lifts an opt-out whose reason is ``group_unsubscribe``, and only when
    the resubscription happened after that opt-out. A global unsubscribe, a spam report or a
    bounce is not undone by rejoining a group (SendGrid keeps those suppressions too).
  - ``processed``, ``delivered``, ``deferred``, ``open``, ``click`` and any unknown type:
    acknowledged and ignored. Nothing is written for them, not even their ``sg_event_id``:
    they have no effect to protect from a repeat, and opens and clicks are the bulk of the
    traffic.
* Idempotent on ``sg_event_id``: each event with an effect writes its id to
  ``processed_events`` (source ``sendgrid``); an id seen before, in an earlier batch or earlier
  in the same one, changes nothing. A batch is one transaction: a failure keeps none of it (not
  even the ids), and the answer is 503 so that SendGrid retries the batch. An opt-out without a
  usable ``sg_event_id`` is still applied (applying it twice changes nothing); a resubscription
  without one is ignored.
* The time of a change is the event's own ``timestamp`` (never later than now), so that
  batches that arrive out of order cannot let an old resubscription undo a newer opt-out.
"""

from __future__ import annotations

import binascii
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import appkeys, metrics
from bot.ledger import queries as ledger
from bot.ledger.models import EmailOptOut, ProcessedEvent

log = logging.getLogger(__name__)

SOURCE = "sendgrid"
SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE  # X-Twilio-Email-Event-Webhook-Signature
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP  # X-Twilio-Email-Event-Webhook-Timestamp
TOLERANCE_SECONDS = 300  # a signed timestamp further from now than this is refused
MAX_BODY = 2 * 1024 * 1024  # SendGrid's batches stay under 768 KB
MAX_EVENT_ID = 100  # processed_events.event_id
MAX_EVENT_TYPE = 60  # processed_events.event_type
MAX_ADDRESS = 254  # email_opt_outs.address
ATTEMPTS = 3  # a concurrent copy of the batch can make a commit fail on the unique keys

# Opt-outs a group resubscription lifts; any other reason stays until an operator lifts it.
LIFTED_BY_RESUBSCRIBE = frozenset({"group_unsubscribe"})

# A dropped message names the suppression list that stopped it.
DROPPED_REASONS = (
    ("unsubscribed", "dropped (unsubscribed)"),
    ("bounced address", "dropped (bounced)"),
    ("spam reporting address", "dropped (spam report)"),
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f\s]")


@dataclass(frozen=True)
class EmailEvent:
    event_id: str | None  # sg_event_id, when usable
    event_type: str
    address: str  # lower case
    at: datetime  # when it happened: the event's timestamp, at the latest now
    detail: dict[str, Any]


Handler = Callable[[AsyncSession, EmailEvent], Awaitable[None]]


# --------------------------------------------------------------------------- the endpoint


async def handle(request: web.Request) -> web.Response:
    settings = request.config_dict[appkeys.SETTINGS]
    configured = settings.sendgrid_webhook_public_key
    if not configured:
        log.error("refused a SendGrid event batch: SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
        return web.Response(status=400, text="webhook public key not configured")
    public_key = load_public_key(configured)
    if public_key is None:
        log.error("refused a SendGrid event batch: SENDGRID_WEBHOOK_PUBLIC_KEY is not a P-256 key")
        return web.Response(status=400, text="webhook public key not configured")

    body = await _read_body(request)
    if body is None:
        log.warning("refused a SendGrid event batch over %d bytes", MAX_BODY)
        return web.Response(status=413, text="payload too large")
    now = request.config_dict[appkeys.CLOCK].now()
    signature = request.headers.get(SIGNATURE_HEADER, "")
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    if not signature or not timestamp:
        metrics.WEBHOOK_VERIFICATION_FAILURES.labels("sendgrid").inc()
        log.warning("refused a SendGrid event batch without a signature")
        return web.Response(status=403, text="missing signature")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        return web.Response(status=400, text="malformed payload")
    if not verify(public_key, payload, signature, timestamp):
        metrics.WEBHOOK_VERIFICATION_FAILURES.labels("sendgrid").inc()
        log.warning("refused a SendGrid event batch with a wrong signature")
        return web.Response(status=403, text="invalid signature")
    if abs(now.timestamp() - int(timestamp)) > TOLERANCE_SECONDS:
        metrics.WEBHOOK_VERIFICATION_FAILURES.labels("sendgrid").inc()
        log.warning("refused a SendGrid event batch signed at %s: too old or too new", timestamp)
        return web.Response(status=403, text="stale timestamp")

    try:
        batch = json.loads(payload)
    except ValueError:
        log.warning("refused a signed SendGrid event batch that is not JSON")
        return web.Response(status=400, text="malformed payload")
    if not isinstance(batch, list):
        log.warning("refused a signed SendGrid event batch that is not a JSON array")
        return web.Response(status=400, text="malformed payload: a JSON array is expected")

    work: list[tuple[EmailEvent, Handler]] = []
    for position, item in enumerate(batch):
        event = read_event(item, now, position)
        if event is None:
            continue
        handler = handler_for(event)
        if handler is None:
            log.debug("SendGrid event %s (%s) acknowledged", event.event_id, event.event_type)
            continue
        if event.event_id is None and handler is resubscribe:
            log.warning("SendGrid %s event without a usable sg_event_id ignored", event.event_type)
            continue
        work.append((event, handler))
    if not work:
        return web.Response(text="ok")

    database = request.config_dict[appkeys.DATABASE]
    for attempt in range(1, ATTEMPTS + 1):
        try:
            applied = await _apply(database, work, now)
        except IntegrityError:
            # A concurrent copy of these events committed first: once more, and they are seen.
            log.info("SendGrid event batch raced a copy of itself (attempt %d)", attempt)
            continue
        except Exception:
            log.exception("a SendGrid event batch could not be processed; nothing was kept")
            return web.Response(status=503, text="temporarily unable to process the events")
        log.info("SendGrid event batch: %d of %d events applied", applied, len(batch))
        return web.Response(text="ok")
    log.error("a SendGrid event batch kept colliding with a concurrent copy; nothing was kept")
    return web.Response(status=503, text="temporarily unable to process the events")


async def _apply(database: Any, work: list[tuple[EmailEvent, Handler]], now: datetime) -> int:
    """Every new event's id and effect, in one transaction; how many events were new."""
    applied = 0
    async with database.session() as session:
        ids = {event.event_id for event, _ in work if event.event_id}
        seen = set(
            await session.scalars(
                select(ProcessedEvent.event_id).where(
                    ProcessedEvent.source == SOURCE, ProcessedEvent.event_id.in_(ids)
                )
            )
        )
        for event, handler in work:
            if event.event_id is not None:
                if event.event_id in seen:
                    log.info(
                        "SendGrid event %s (%s) seen before: acknowledged",
                        event.event_id,
                        event.event_type,
                    )
                    continue
                seen.add(event.event_id)
                session.add(
                    ProcessedEvent(
                        source=SOURCE,
                        event_id=event.event_id,
                        event_type=event.event_type[:MAX_EVENT_TYPE],
                        received_at=now,
                    )
                )
            await handler(session, event)
            await session.flush()  # the next event of the batch sees this one's effect
            applied += 1
        await session.commit()
    return applied


async def _read_body(request: web.Request) -> bytes | None:
    """The raw body, at most ``MAX_BODY`` bytes (``None`` beyond). Read from the stream: the
    app's ``client_max_size`` suits forms, not SendGrid's batches."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------- the signature


@functools.lru_cache(maxsize=4)
def load_public_key(text: str) -> ec.EllipticCurvePublicKey | None:
    """The verification key from its base64 DER text (as SendGrid shows it), also accepted in
    PEM armour, on one line or several, with ``\\n`` escapes; ``None`` if it is no P-256 key.

    ``EventWebhook.convert_public_key_to_ecdsa`` wants the bare base64 and adds the armour
    itself, so any armour given is taken off first."""
    lines = text.replace("\\n", "\n").strip().splitlines()
    bare = "".join("".join(line.split()) for line in lines if not line.strip().startswith("-----"))
    if not bare:
        return None
    try:
        key = EventWebhook().convert_public_key_to_ecdsa(bare)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return None
    return key


def verify(
    public_key: ec.EllipticCurvePublicKey, payload: str, signature: str, timestamp: str
) -> bool:
    """The SDK's check of ``timestamp + payload``; a timestamp must be whole seconds."""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    try:
        return bool(
            EventWebhook().verify_signature(payload, signature, timestamp, public_key=public_key)
        )
    except (ValueError, TypeError, binascii.Error):  # not base64, not a DER signature
        return False


# --------------------------------------------------------------------------- the events


def read_event(item: object, now: datetime, position: int) -> EmailEvent | None:
    """One event of the batch, or ``None`` (logged, without the address) when unusable."""
    if not isinstance(item, dict):
        log.warning("SendGrid event #%d is not an object: skipped", position)
        return None
    event_type = item.get("event")
    if not isinstance(event_type, str) or not event_type.strip():
        log.warning("SendGrid event #%d has no type: skipped", position)
        return None
    event_type = event_type.strip().lower()
    event_id = item.get("sg_event_id")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID:
        event_id = None
    address = item.get("email")
    if (
        not isinstance(address, str)
        or not 3 <= len(address.strip()) <= MAX_ADDRESS
        or "@" not in address
        or _CONTROL.search(address.strip())
    ):
        log.warning(
            "SendGrid event %s (#%d, %s) has no usable address: skipped",
            event_id,
            position,
            event_type[:MAX_EVENT_TYPE],
        )
        return None
    return EmailEvent(
        event_id=event_id,
        event_type=event_type,
        address=address.strip().lower(),
        at=_event_time(item.get("timestamp"), now),
        detail=item,
    )


def _event_time(value: object, now: datetime) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return now
    try:
        at = datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return now
    return min(at, now)


def handler_for(event: EmailEvent) -> Handler | None:
    handler = HANDLERS.get(event.event_type)
    if handler is not None:
        return handler
    if event.event_type == "bounce":
        if str(event.detail.get("type") or "bounce").lower() == "blocked":
            return None  # a temporary refusal by the receiving server
        return opt_out_handler("bounce")
    if event.event_type == "dropped":
        reason = str(event.detail.get("reason") or "").lower()
        for words, label in DROPPED_REASONS:
            if words in reason:
                return opt_out_handler(label)
        return None
    return None  # processed, delivered, deferred, open, click, or a type we do not know


# --------------------------------------------------------------------------- the handlers


@functools.cache
def opt_out_handler(reason: str) -> Handler:
    async def opt_out(session: AsyncSession, event: EmailEvent) -> None:
        row = await session.get(EmailOptOut, event.address)
        if row is not None and row.opted_out:
            if row.reason not in LIFTED_BY_RESUBSCRIBE or row.reason == reason:
                log.info(
                    "SendGrid event %s (%s): the address was already opted out (%s)",
                    event.event_id,
                    event.event_type,
                    row.reason,
                )
                return
        # Never back in time: a late opt-out still wins over an earlier change of mind.
        at = event.at if row is None else max(event.at, row.updated_at)
        await ledger.set_email_opt_out(session, event.address, opted_out=True, reason=reason, at=at)
        log.info("SendGrid event %s (%s): address opted out of email", event.event_id, reason)

    return opt_out


async def resubscribe(session: AsyncSession, event: EmailEvent) -> None:
    row = await session.get(EmailOptOut, event.address)
    if row is None or not row.opted_out:
        log.info(
            "SendGrid event %s (%s): the address was not opted out",
            event.event_id,
            event.event_type,
        )
        return
    if row.reason not in LIFTED_BY_RESUBSCRIBE:
        log.info(
            "SendGrid event %s (%s): the address stays opted out (%s is not lifted by a group "
            "resubscription)",
            event.event_id,
            event.event_type,
            row.reason,
        )
        return
    if event.at < row.updated_at:
        log.info(
            "SendGrid event %s (%s) is older than the opt-out it would lift: ignored",
            event.event_id,
            event.event_type,
        )
        return
    await ledger.set_email_opt_out(
        session, event.address, opted_out=False, reason=event.event_type, at=event.at
    )
    log.info(
        "SendGrid event %s (%s): address opted back in to email", event.event_id, event.event_type
    )


HANDLERS: dict[str, Handler] = {
    "unsubscribe": opt_out_handler("unsubscribe"),
    "group_unsubscribe": opt_out_handler("group_unsubscribe"),
    "spamreport": opt_out_handler("spamreport"),
    "group_resubscribe": resubscribe,
    # "bounce" and "dropped" depend on the event's type / reason: see handler_for.
}
