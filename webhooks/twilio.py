"""Twilio's webhooks: inbound SMS answered as TwiML, delivery status recorded.

Signatures are checked with the SDK's RequestValidator against PUBLIC_BASE_URL + path (+ query):
behind a proxy the request's own URL is not what Twilio signed.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from aiohttp import web
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from bot import appkeys, metrics
from bot.ledger import queries as ledger
from bot.phones import InvalidPhone, normalize_phone
from bot.sms.engine import Inbound, TurnFailed

log = logging.getLogger(__name__)

FORM = web.RequestKey("twilio_form", dict)
TURNS = web.AppKey("sms_turns", asyncio.Semaphore)
OPTED_OUT_ERROR = "21610"


def create_app(turns_in_flight: int) -> web.Application:
    app = web.Application(middlewares=[verify_signature])
    # Admission control: past a few turns at once, each extra one only stretches every other
    # one's latency (they share one core); waiting in order keeps the tail short under bursts.
    app[TURNS] = asyncio.Semaphore(turns_in_flight)
    app.router.add_post("/sms", inbound_sms)
    app.router.add_post("/status", message_status)
    return app


@web.middleware
async def verify_signature(request: web.Request, handler):  # type: ignore[no-untyped-def]
    settings = request.config_dict[appkeys.SETTINGS]
    form = {key: value for key, value in (await request.post()).items() if isinstance(value, str)}
    if settings.production and not settings.twilio_auth_token:
        # Production refuses to start without the token; should an app be built without it
        # anyway, an unsigned webhook is still never believed there.
        log.error("refused a Twilio webhook: TWILIO_AUTH_TOKEN is not set")
        metrics.WEBHOOK_VERIFICATION_FAILURES.labels("twilio").inc()
        return web.Response(status=403, text="invalid signature")
    if settings.twilio_auth_token:
        signature = request.headers.get("X-Twilio-Signature", "")
        url = settings.public_base_url + request.path_qs
        if not RequestValidator(settings.twilio_auth_token).validate(url, form, signature):
            metrics.WEBHOOK_VERIFICATION_FAILURES.labels("twilio").inc()
            log.warning("refused a Twilio webhook with a bad signature (%s)", request.path)
            return web.Response(status=403, text="invalid signature")
    request[FORM] = form
    return await handler(request)


def twiml(texts: list[str]) -> web.Response:
    response = MessagingResponse()
    for text in texts:
        response.message(text)
    return web.Response(text=str(response), content_type="application/xml")


async def inbound_sms(request: web.Request) -> web.Response:
    form: dict[str, str] = request[FORM]
    sid, sender = form.get("MessageSid", ""), form.get("From", "")
    if not sid or not sender:
        return web.Response(status=400, text="MessageSid and From are required")
    try:
        phone = normalize_phone(sender)
    except InvalidPhone:
        return twiml([])  # short codes and alphanumeric senders: nothing to answer
    engine = request.config_dict[appkeys.ENGINE]
    try:
        async with request.app[TURNS]:
            texts = await engine.receive(
                Inbound(phone=phone, body=form.get("Body", ""), sid=sid), reply_first=True
            )
    except TurnFailed as failure:
        # The engine's apology, stored as the reply when part of the turn was committed (a
        # retry with this MessageSid gets it again), else said while the retry processes anew.
        log.exception("inbound SMS %s could not be processed", sid)
        texts = failure.texts
    except Exception:
        # Not even stored (the database is out of reach). A 200 here would end it: Twilio would
        # not send it again and the message would be lost. A 503 makes Twilio retry it (the
        # webhook URL's connection overrides) or call the number's Fallback URL, whose TwiML
        # can apologize (docs/operations.md); bench/chaos found the loss.
        log.exception("inbound SMS %s could not be stored: 503 for Twilio to retry", sid)
        return web.Response(status=503, headers={"Retry-After": "5"},
                            text="not stored; send it again")
    return twiml(texts)


async def message_status(request: web.Request) -> web.Response:
    form: dict[str, str] = request[FORM]
    sid, status = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if not sid or not status:
        return web.Response(status=400, text="MessageSid and MessageStatus are required")
    error_code = form.get("ErrorCode") or None
    database = request.config_dict[appkeys.DATABASE]
    clock = request.config_dict[appkeys.CLOCK]
    async with database.session() as session:
        await ledger.record_status(session, sid=sid, status=status[:20], error_code=error_code)
        if error_code == OPTED_OUT_ERROR and form.get("To"):
            try:
                phone = normalize_phone(form["To"])
            except InvalidPhone:
                phone = None
            if phone:
                await ledger.set_opt_out(
                    session,
                    phone,
                    opted_out=True,
                    keyword="carrier 21610",
                    channel="carrier",
                    at=clock.now(),
                )
        await session.commit()
    await _tell_agents_of_delivery(request, form.get("To", ""), clock.now())
    return web.Response(status=204)


async def _tell_agents_of_delivery(request: web.Request, to: str, at: datetime) -> None:
    """A console showing the conversation reads its transcript again: the status shows live."""
    try:
        phone = normalize_phone(to) if to else None
    except InvalidPhone:
        phone = None
    if phone:
        await request.config_dict[appkeys.COORDINATOR].publish(
            {"type": "delivery", "phone": phone, "at": at.isoformat()}
        )
