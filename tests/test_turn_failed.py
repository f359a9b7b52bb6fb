"""A turn that fails after part of it was committed (the payment service commits the payment, and
with it the message's claim, before the processor answers) is answered with an apology that
cannot make the customer pay twice, stored as the message's reply: Twilio's retry with the same
MessageSid gets the same, never an empty <Response/>. A message never claimed is processed anew
on its retry. The faults are real: a database trigger that refuses the reply, a Stripe peer that
holds the charge while the web process is killed (-9)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import aiohttp
import pytest
from sqlalchemy import select, text

from bot import appkeys
from bot.app import create_app
from bot.config.settings import Settings
from bot.coordination import AGENT_FEED
from bot.ledger.models import Message
from bot.providers import Providers
from bot.providers.email import SandboxEmail
from bot.providers.sms import SandboxSms
from bot.providers.stripe_gateway import StripeGateway
from tests.conftest import API_KEY, SmsPhone, signed_post
from tests.fakes.slow_stripe import SlowStripe
from tests.seed import CONFIRM_STEPS, add_account
from tests.test_graceful_stop import WAIT, Process, env_with, paybot
from tests.test_serving import free_port
from tests.test_worker import payments

MARIA = "+15555550100"
APOLOGY = (
    "Sorry, something went wrong on our side. Before you try again, reply BALANCE in a few "
    "minutes to see where your account stands."
)
APOLOGY_ES = (
    "Lo sentimos, algo salio mal de nuestro lado. Antes de intentarlo de nuevo, responda SALDO "
    "en unos minutos para ver como esta su cuenta."
)


def twiml(*texts: str) -> str:
    """The whole TwiML Twilio gets for these texts."""
    messages = "".join(f"<Message>{escape(body)}</Message>" for body in texts)
    body = f"<Response>{messages}</Response>" if texts else "<Response />"
    return f'<?xml version="1.0" encoding="UTF-8"?>{body}'


async def sms(client: Any, body: str, sid: str) -> tuple[int, str]:
    """One signed Twilio webhook: the status and the whole TwiML."""
    response = await signed_post(client, "/webhooks/twilio/sms", {
        "MessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": MARIA,
        "To": "+15005550006", "Body": body, "NumMedia": "0",
    })
    return response.status, await response.text()


# The database refuses to store a reply: the fault strikes after the payment was committed.
REFUSE = {
    "sqlite": [
        "CREATE TRIGGER refuse_reply BEFORE INSERT ON messages WHEN NEW.direction = 'outbound' "
        "AND ({condition}) BEGIN SELECT RAISE(ABORT, 'reply refused by the test'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_reply() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'reply refused by the test'; END $$",
        "CREATE TRIGGER refuse_reply BEFORE INSERT ON messages FOR EACH ROW WHEN "
        "(NEW.direction = 'outbound' AND ({condition})) EXECUTE FUNCTION refuse_reply()",
    ],
}
LIFT = {
    "sqlite": ["DROP TRIGGER IF EXISTS refuse_reply"],
    "postgresql": ["DROP TRIGGER IF EXISTS refuse_reply ON messages",
                   "DROP FUNCTION IF EXISTS refuse_reply()"],
}


class Refusal:
    """Replies whose body matches `condition` (SQL on NEW.body) cannot be stored."""

    def __init__(self, app: Any) -> None:
        self.database = app[appkeys.DATABASE]

    async def _run(self, statements: list[str]) -> None:
        async with self.database.engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))

    async def arm(self, condition: str) -> None:
        dialect = self.database.engine.dialect.name
        await self._run([s.format(condition=condition) for s in REFUSE[dialect]])

    async def lift(self) -> None:
        await self._run(LIFT[self.database.engine.dialect.name])


@pytest.fixture
async def refusal(app: Any) -> AsyncIterator[Refusal]:
    fault = Refusal(app)
    try:
        yield fault
    finally:
        await fault.lift()  # PostgreSQL's test database outlives the test


async def thread_of(app: Any, sid: str) -> tuple[list[Any], list[str]]:
    """The inbound rows with this sid (processed or not) and the replies stored to it."""
    async with app[appkeys.DATABASE].session() as session:
        inbound = list(await session.scalars(select(Message).where(Message.provider_sid == sid)))
        replies = list(await session.scalars(
            select(Message.body).where(Message.in_reply_to_id.in_([m.id for m in inbound]))
            .order_by(Message.id)))
    return [(m.direction, m.body, m.processed_at is not None) for m in inbound], replies


async def test_a_turn_that_fails_after_the_charge_apologizes_the_same_on_every_retry(
    app, client, phone, refusal
):
    await add_account(app)
    maria = phone()
    for step in CONFIRM_STEPS:
        await maria.send(step)
    await refusal.arm("NEW.body LIKE 'Done:%'")
    feed = app[appkeys.COORDINATOR].redis.pubsub()
    await feed.subscribe(AGENT_FEED)
    await feed.get_message(timeout=1.0)  # the subscription's confirmation

    assert await sms(client, "agree", "SMfails1") == (200, twiml(APOLOGY))
    assert await sms(client, "agree", "SMfails1") == (200, twiml(APOLOGY))
    assert await sms(client, "agree", "SMfails1") == (200, twiml(APOLOGY))

    # The agents' live feed was told once, as of a turn; the retries changed nothing.
    told = await feed.get_message(ignore_subscribe_messages=True, timeout=5.0)
    assert told is not None
    event = json.loads(told["data"])
    assert (event["type"], event["phone"], event["inbound"], event["replies"]) == (
        "message", MARIA, "agree", [APOLOGY])
    assert await feed.get_message(ignore_subscribe_messages=True, timeout=0) is None
    await feed.aclose()

    # Charged once, the message stored once and claimed, the apology its one reply.
    assert [(p.amount_cents, p.status) for p in await payments(app)] == [(5000, "paid")]
    assert len(app[appkeys.PROVIDERS].payments.charges) == 1
    assert await thread_of(app, "SMfails1") == ([("inbound", "agree", True)], [APOLOGY])
    # The agents read it in the transcript, as the bot's reply.
    response = await client.get(f"/api/v1/conversations/{MARIA}",
                                headers={"Authorization": f"Bearer {API_KEY}"})
    last = (await response.json())["messages"][-2:]
    assert [(m["direction"], m["author"], m["body"]) for m in last] == [
        ("in", "customer", "agree"), ("out", "bot", APOLOGY)]

    # BALANCE, as the apology says, shows the payment made.
    await refusal.lift()
    (balance,) = await maria.send("balance")
    assert "$1,200.00" in balance


async def test_the_apology_is_in_the_conversations_language(app, client, phone, refusal):
    await add_account(app, language="es")
    maria = phone()
    for step in CONFIRM_STEPS:
        await maria.send(step)
    await refusal.arm("NEW.body LIKE 'Listo:%'")

    assert await sms(client, "agree", "SMfalla1") == (200, twiml(APOLOGY_ES))
    assert await sms(client, "agree", "SMfalla1") == (200, twiml(APOLOGY_ES))
    assert [(p.amount_cents, p.status) for p in await payments(app)] == [(5000, "paid")]
    assert await thread_of(app, "SMfalla1") == ([("inbound", "agree", True)], [APOLOGY_ES])


async def test_a_message_never_claimed_is_processed_on_its_retry(app, client, phone, refusal):
    await add_account(app)
    # HELP commits nothing before its reply: the failed turn rolls its claim back whole.
    await refusal.arm("NEW.body LIKE '%Msg & data rates may apply%'")

    assert await sms(client, "help", "SMhelp1") == (200, twiml(APOLOGY))
    assert await thread_of(app, "SMhelp1") == ([("inbound", "help", False)], [])

    await refusal.lift()
    status, answered = await sms(client, "help", "SMhelp1")
    (help_text,) = await phone().send("help")  # the answer HELP gets
    assert (status, answered) == (200, twiml(help_text))
    assert await thread_of(app, "SMhelp1") == ([("inbound", "help", True)], [help_text])


async def test_an_opt_out_whose_turn_failed_gets_no_apology(app, client, refusal):
    await add_account(app)
    await refusal.arm("NEW.body LIKE '%unsubscribed%'")
    assert await sms(client, "stop", "SMstop1") == (200, twiml())
    await refusal.lift()
    status, answered = await sms(client, "stop", "SMstop1")
    assert status == 200 and "You are unsubscribed" in answered


# --------------------------------------------------------------- separate processes


@pytest.fixture
async def stripe() -> AsyncIterator[SlowStripe]:
    async with SlowStripe() as peer:
        yield peer
        peer.release.set()


async def serve(settings: Settings, tmp_path: Path, stripe: SlowStripe, port: int) -> Process:
    server = await paybot(env_with(settings, tmp_path, stripe), "serve", "--port", str(port))
    assert server.process.stdout is not None
    async with asyncio.timeout(WAIT):
        while b"Running on" not in await server.process.stdout.readline():
            pass
    return server


async def stop(server: Process) -> None:
    if server.process.returncode is None:
        server.process.kill()
        await server.process.wait()


async def test_a_process_killed_during_the_charge_leaves_an_apology_for_the_retry(
    app, client, settings: Settings, tmp_path: Path, stripe: SlowStripe
) -> None:  # type: ignore[no-untyped-def]
    await add_account(app)
    port = free_port()
    first = await serve(settings, tmp_path, stripe, port)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as web:
            maria = SmsPhone(client=web, number=MARIA, in_process=False)  # type: ignore[arg-type]
            for step in CONFIRM_STEPS:
                await maria.send(step)
            paying = asyncio.create_task(sms(web, "agree", "SMkilled1"))
            async with asyncio.timeout(WAIT):
                await stripe.charging.wait()  # the payment and the claim are committed
            first.process.send_signal(signal.SIGKILL)
            with pytest.raises(aiohttp.ClientError):
                await paying
    finally:
        await stop(first)

    second = await serve(settings, tmp_path, stripe, port)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as web:
            assert await sms(web, "agree", "SMkilled1") == (200, twiml(APOLOGY))
            assert await sms(web, "agree", "SMkilled1") == (200, twiml(APOLOGY))
    finally:
        await stop(second)
    # Sent once to the processor, its answer unknown: `processing` for the worker's recovery
    # (same idempotency key), never charged again by the retries.
    assert len(stripe.intents) == 1
    assert [p.status for p in await payments(app)] == ["processing"]
    assert await thread_of(app, "SMkilled1") == ([("inbound", "agree", True)], [APOLOGY])


class Heard(logging.Handler):
    """An event per log message seen: a test waits on a line instead of sleeping."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.INFO)
        self.text, self.event = text, asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


async def test_a_retry_while_redis_lost_the_lock_gets_the_turns_answer_not_an_apology(
    app, phone, settings: Settings, clock, stripe: SlowStripe, aiohttp_client
) -> None:  # type: ignore[no-untyped-def]
    await add_account(app)
    for step in CONFIRM_STEPS:
        await phone().send(step)
    # The same ledger served by a process whose Stripe holds the charge until told.
    slow_app = create_app(settings, Providers(
        sms=SandboxSms(), email=SandboxEmail(settings.outbox_dir / "email"),
        payments=StripeGateway("sk_test_slow", api_base=stripe.base_url, max_network_retries=0),
    ), clock)
    slow = await aiohttp_client(slow_app)
    engine_log = logging.getLogger("bot.sms.recovery")
    heard, level = Heard("waits for the attempt at work"), engine_log.level
    engine_log.addHandler(heard)
    engine_log.setLevel(logging.INFO)
    try:
        first = asyncio.create_task(sms(slow, "agree", "SMrace1"))
        async with asyncio.timeout(WAIT):
            await stripe.charging.wait()  # the payment and the claim are committed
        # The conversation's lock is gone (this run's own database: a shared Redis has others).
        await slow_app[appkeys.COORDINATOR].redis.flushdb()
        retry = asyncio.create_task(sms(slow, "agree", "SMrace1"))
        async with asyncio.timeout(WAIT):
            await heard.event.wait()
        assert not first.done() and not retry.done()
        stripe.release.set()
        async with asyncio.timeout(WAIT):
            (status, done), again = await asyncio.gather(first, retry)
    finally:
        engine_log.removeHandler(heard)
        engine_log.setLevel(level)
        await slow_app[appkeys.PROVIDERS].close()
    assert status == 200 and "<Message>Done: $50.00 paid with Visa ending 4242. Ref P-" in done
    assert again == (200, done)
    assert len(stripe.intents) == 1
    assert [p.status for p in await payments(app)] == ["paid"]
    (inbound,), replies = await thread_of(app, "SMrace1")
    assert inbound == ("inbound", "agree", True) and len(replies) == 1
