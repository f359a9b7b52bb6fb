"""Losing Redis costs speed, not turns: with Redis unreachable (a real client to a closed port),
the conversation lock is taken in the database, a whole payment by text reads and books exactly
as it does with Redis, and the pages that need Redis for a rate limit answer 503 with a page
that says what to do, never a 500 (bench/chaos measures the same under load)."""

from __future__ import annotations

import asyncio
import re
import socket

import pytest
from aiohttp import CookieJar
from sqlalchemy import select

from bot import appkeys
from bot.app import create_app
from bot.coordination import Coordinator, connect_redis
from bot.ledger.db import Database
from bot.ledger.models import Account, Payment
from tests.conftest import BACKEND, SmsPhone
from tests.seed import add_account

SCRIPT = ["hi", "pay", "ok", "50", "1", "now", "yes", "agree", "balance"]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def without_tokens(texts: list[str]) -> list[str]:
    return [re.sub(r"/p/[A-Za-z0-9_-]+", "/p/TOKEN", re.sub(r"P-[A-Z0-9]+", "P-REF", t))
            for t in texts]


async def transcript(app, aiohttp_client, ref: str, number: str,  # type: ignore[no-untyped-def]
                     ) -> tuple[list[list[str]], list[tuple[int, str, str]]]:
    client = await aiohttp_client(app, cookie_jar=CookieJar(unsafe=True))  # starts the app
    await add_account(app, ref=ref, phone=number)
    customer = SmsPhone(client=client, number=number)
    replies = [without_tokens(await customer.send(text)) for text in SCRIPT]
    async with app[appkeys.DATABASE].session() as session:
        account_payments = select(Payment).join(Account).where(Account.account_ref == ref)
        booked = [(p.amount_cents, p.status, p.channel)
                  for p in await session.scalars(account_payments.order_by(Payment.id))]
    return replies, booked


async def test_a_payment_by_text_reads_and_books_the_same_with_redis_away(
        settings, providers, clock, aiohttp_client):
    with_redis = await transcript(create_app(settings, providers, clock), aiohttp_client,
                                  "ACC-1001", "+15555550100")
    # The same ledger, another customer of the same kind: only Redis differs.
    away = settings.replace(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    without_redis = await transcript(create_app(away, providers, clock), aiohttp_client,
                                     "ACC-1002", "+15555550101")
    assert without_redis == with_redis
    replies, booked = without_redis
    assert booked == [(5000, "paid", "sms")]
    assert replies[-1] == ["Your balance on Acme Card ending 4821 is $1,200.00."]


@pytest.mark.skipif(BACKEND != "services", reason="the database lock is PostgreSQL's; SQLite's "
                    "writers already queue one at a time")
async def test_while_redis_is_away_one_turn_of_a_conversation_at_a_time(settings):
    database = Database(settings.database_url)
    away = Coordinator(connect_redis(f"redis://127.0.0.1:{closed_port()}/0"),
                       fallback=database.advisory_lock)
    order: list[str] = []
    first_in = asyncio.Event()

    async def turn(name: str, hold: asyncio.Event | None) -> None:
        async with away.conversation_lock("+15555550100"):
            order.append(f"{name} in")
            first_in.set()
            if hold is not None:
                await hold.wait()
            order.append(f"{name} out")

    release = asyncio.Event()
    try:
        first = asyncio.create_task(turn("first", release))
        await first_in.wait()
        second = asyncio.create_task(turn("second", None))
        other = asyncio.create_task(_other_conversation(away, order))
        await other  # another conversation is not held up by this one
        assert order == ["first in", "other in and out"]
        release.set()
        await asyncio.gather(first, second)
        assert order == ["first in", "other in and out", "first out", "second in", "second out"]
    finally:
        release.set()
        await away.redis.aclose()
        await database.close()


async def _other_conversation(coordinator: Coordinator, order: list[str]) -> None:
    async with coordinator.conversation_lock("+15555550199"):
        order.append("other in and out")


async def test_a_page_that_needs_redis_answers_503_with_what_to_do(
        settings, providers, clock, aiohttp_client, aiohttp_server):
    away = settings.replace(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    server = await aiohttp_server(create_app(away, providers, clock))
    # PUBLIC_BASE_URL is https: the form's cookie is Secure (as conftest's `client`).
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(server.make_url("/"))])
    client = await aiohttp_client(server, cookie_jar=jar)
    form = await client.get("/portal/")
    assert form.status == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', await form.text())
    assert token is not None
    response = await client.post("/portal/lookup", data={
        "csrf_token": token.group(1), "identifier": "ACC-1001"})
    assert response.status == 503
    assert response.headers["Retry-After"] == "30"
    page = await response.text()
    assert "<h1>We cannot open this page right now</h1>" in page
    assert ("<p>Nothing was changed and no payment was made by this request. Please try again "
            "in a minute: your link still works.</p>") in page
    # The button is a plain link (the CSP blocks `javascript:` URLs): back to the portal's start.
    assert '<a class="button primary" href="/portal/">Try again</a>' in page
    assert "javascript:" not in page
