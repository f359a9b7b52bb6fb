"""The agents' outbound webhook (PAYBOT_AGENT_WEBHOOK_URL): queued with the change that makes an
event true, delivered by the worker, signed (PayBot-Signature), retried with backoff, failed at
last; nothing queued without a URL. A small local aiohttp receiver checks every signature."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from bot import appkeys
from bot.app import create_app
from bot.config.check import review
from bot.inbox import agent_webhook, handoffs
from bot.ledger.models import AgentWebhookDelivery, Conversation
from bot.worker.agent_webhook_pass import deliver_agent_webhooks
from bot.worker.config import PassReport
from tests.conftest import API_KEY, START, SmsPhone
from tests.seed import add_account

SECRET = "whsec-agents-desk-0123456789"
MARIA = "+15555550100"


class Receiver:
    """The agents' desk: answers ``statuses`` in turn (then 200), keeps what it verified."""

    def __init__(self, now: Any) -> None:
        self.now = now
        self.statuses: list[int] = []
        self.events: list[dict[str, Any]] = []
        self.forged = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get(agent_webhook.HEADER, "")
        if not agent_webhook.verify(SECRET, body, header, now=self.now().timestamp()):
            self.forged += 1
            return web.Response(status=401)
        if self.statuses:
            return web.Response(status=self.statuses.pop(0))
        self.events.append(json.loads(body))
        return web.Response(status=204)


@pytest.fixture
async def desk(aiohttp_server, clock):  # type: ignore[no-untyped-def]
    receiver = Receiver(clock.now)
    app = web.Application()
    app.router.add_post("/paybot", receiver.handle)
    server = await aiohttp_server(app)
    receiver.url = str(server.make_url("/paybot"))  # type: ignore[attr-defined]
    return receiver


@pytest.fixture
async def hooked(settings, providers, clock, desk, aiohttp_client):  # type: ignore[no-untyped-def]
    """The app with the desk's URL and secret, and a client for it."""
    configured = settings.replace(agent_webhook_url=desk.url, agent_webhook_secret=SECRET)
    app = create_app(configured, providers, clock)
    client = await aiohttp_client(app)
    return app, client


async def deliver(app) -> PassReport:  # type: ignore[no-untyped-def]
    report = PassReport()
    await deliver_agent_webhooks(report, database=app[appkeys.DATABASE],
                                 settings=app[appkeys.SETTINGS], clock=app[appkeys.CLOCK])
    return report


async def deliveries(app) -> list[tuple[str, str, int, str | None]]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        rows = await session.scalars(select(AgentWebhookDelivery).order_by(AgentWebhookDelivery.id))
        return [(row.event, row.status, row.attempts, row.last_error) for row in rows]


async def test_needs_agent_customer_message_and_resolved_reach_the_desk_signed(hooked, desk):
    app, client = hooked
    await add_account(app)
    maria = SmsPhone(client=client, number=MARIA)
    await maria.send("AGENT")
    async with app[appkeys.DATABASE].session() as session:
        conv = await session.scalar(select(Conversation).where(Conversation.phone == MARIA))
        # What the engine calls for a message while the customer waits for a person.
        await handoffs.customer_wrote(session, conv, text="are you there?", channel="sms",
                                      at=START)
        await session.commit()
    response = await client.post(f"/api/v1/conversations/{MARIA}/handback",
                                 json={"agent": "jsmith"},
                                 headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status == 200
    assert desk.events == []  # queued in the ledger, sent by the worker
    await deliver(app)
    at = START.isoformat()
    assert desk.events == [
        {"event": "needs_agent", "id": 1, "at": at, "phone": MARIA, "account_id": "ACC-1001",
         "reason": "asked", "text": "AGENT"},
        {"event": "customer_message", "id": 2, "at": at, "phone": MARIA,
         "account_id": "ACC-1001", "text": "are you there?", "channel": "sms"},
        {"event": "resolved", "id": 3, "at": at, "phone": MARIA, "account_id": "ACC-1001",
         "by": "agent:jsmith"},
    ]
    assert desk.forged == 0
    assert await deliveries(app) == [
        ("needs_agent", "sent", 1, None), ("customer_message", "sent", 1, None),
        ("resolved", "sent", 1, None)]
    await deliver(app)
    assert len(desk.events) == 3  # sent once


async def test_a_failing_desk_is_retried_with_backoff_then_given_up(hooked, desk, clock):
    app, client = hooked
    await add_account(app)
    await SmsPhone(client=client, number=MARIA).send("AGENT")
    desk.statuses = [500, 503]
    await deliver(app)
    assert await deliveries(app) == [("needs_agent", "queued", 1, "HTTP 500")]
    await deliver(app)  # not due yet: 30 s after the first failure
    assert await deliveries(app) == [("needs_agent", "queued", 1, "HTTP 500")]
    clock.advance(timedelta(seconds=30))
    await deliver(app)
    assert await deliveries(app) == [("needs_agent", "queued", 2, "HTTP 503")]
    clock.advance(timedelta(seconds=59))  # the second wait is a minute
    await deliver(app)
    assert desk.events == []
    clock.advance(timedelta(seconds=1))
    await deliver(app)
    assert [e["event"] for e in desk.events] == ["needs_agent"]
    assert await deliveries(app) == [("needs_agent", "sent", 3, None)]

    await SmsPhone(client=client, number="+15555550101").send("AGENT")
    desk.statuses = [500] * agent_webhook.MAX_ATTEMPTS
    for _ in range(agent_webhook.MAX_ATTEMPTS):
        await deliver(app)
        clock.advance(agent_webhook.LONGEST_WAIT)
    assert (await deliveries(app))[1] == (
        "needs_agent", "failed", agent_webhook.MAX_ATTEMPTS, "HTTP 500")


async def test_a_forged_or_stale_signature_does_not_verify():
    body = b'{"event":"resolved"}'
    t = int(START.timestamp())
    header = agent_webhook.sign(SECRET, body, t)
    assert agent_webhook.verify(SECRET, body, header, now=t + 10)
    assert not agent_webhook.verify(SECRET, body + b" ", header, now=t)
    assert not agent_webhook.verify("another secret", body, header, now=t)
    assert not agent_webhook.verify(SECRET, body, header, now=t + 301)
    assert not agent_webhook.verify(SECRET, body, "v1=abc", now=t)


async def test_without_a_url_nothing_is_queued(app, phone):
    await add_account(app)
    await phone().send("AGENT")
    assert await deliveries(app) == []
    assert await deliver(app) == PassReport()


async def test_an_unreachable_desk_is_an_error_kept_on_the_row(settings, providers, clock,
                                                               aiohttp_client):
    configured = settings.replace(agent_webhook_url="http://127.0.0.1:9/nobody",
                                  agent_webhook_secret=SECRET)
    app = create_app(configured, providers, clock)
    client = await aiohttp_client(app)
    await add_account(app)
    await SmsPhone(client=client, number=MARIA).send("AGENT")
    await deliver(app)
    assert await deliveries(app) == [
        ("needs_agent", "queued", 1, "not reached: ClientConnectorError")]


def test_production_needs_the_secret_and_https(settings):
    production = settings.replace(public_base_url="https://paybot.example",
                                  agent_webhook_url="http://desk.example/hook")
    found = {item.name: item.state for item in review(production).items}
    assert (found["PAYBOT_AGENT_WEBHOOK_URL"], found["PAYBOT_AGENT_WEBHOOK_SECRET"]) == (
        "invalid", "missing")
    ready = production.replace(agent_webhook_url="https://desk.example/hook",
                               agent_webhook_secret=SECRET)
    found = {item.name: item.state for item in review(ready).items}
    assert (found["PAYBOT_AGENT_WEBHOOK_URL"], found["PAYBOT_AGENT_WEBHOOK_SECRET"]) == (
        "ok", "ok")
