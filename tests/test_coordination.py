"""What processes share: the conversation lock and the agents' live feed (Redis), and pooled
database connections that outlive a cut."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from bot import appkeys
from bot.app import build_engine
from bot.coordination import AGENT_FEED, Coordinator, LockNotAcquired
from bot.ledger.db import Database
from bot.ledger.models import Message
from bot.sms.engine import Inbound
from tests.conftest import BACKEND
from tests.seed import add_account


async def feed_events(pubsub, count: int) -> list[dict]:  # type: ignore[no-untyped-def]
    events = []
    while len(events) < count:
        message = await pubsub.get_message(timeout=5)
        assert message is not None, f"the feed carried {len(events)} events, not {count}"
        events.append(json.loads(message["data"]))
    return events


async def test_agents_see_every_message_and_every_hand_over_live(app, phone):
    await add_account(app)
    pubsub = app[appkeys.COORDINATOR].redis.pubsub()
    await pubsub.subscribe(AGENT_FEED)
    subscribed = await pubsub.get_message(timeout=5)
    assert subscribed is not None and subscribed["type"] == "subscribe"
    try:
        maria = phone()
        (balance,) = await maria.send("balance")
        await maria.send("I want to talk to a person")
        first, handover, second = await feed_events(pubsub, 3)
    finally:
        await pubsub.aclose()
    assert first["type"] == "message"
    assert (first["phone"], first["inbound"], first["replies"]) == (
        "+15555550100",
        "balance",
        [balance],
    )
    assert handover["type"] == "needs_agent"
    assert handover["text"] == "I want to talk to a person"
    assert (second["type"], second["status"]) == ("message", "waiting")


async def test_one_message_of_a_conversation_at_a_time(app, client):
    shared = app[appkeys.COORDINATOR]
    impatient = Coordinator(shared.redis, lock_timeout=0.05)
    async with shared.conversation_lock("+15555550100"):
        with pytest.raises(LockNotAcquired):
            async with impatient.conversation_lock("+15555550100"):
                pass
        async with impatient.conversation_lock("+15555550199"):  # other conversations go on
            pass
    async with impatient.conversation_lock("+15555550100"):  # free again once let go
        pass


async def test_a_lock_that_expired_and_was_taken_is_not_released_by_its_old_holder(app, client):
    coordinator = app[appkeys.COORDINATOR]
    key = "paybot:conv-lock:+15555550100"
    async with coordinator.conversation_lock("+15555550100"):
        await coordinator.redis.set(key, "another-process")  # ours lapsed; another took it
    assert await coordinator.redis.get(key) == b"another-process"


@pytest.mark.skipif(BACKEND != "services", reason="SQLite has no server connection to cut")
@pytest.mark.parametrize("idle_seconds, survives", [(0.0, True), (3600.0, False)])
async def test_a_pooled_connection_cut_while_idle(settings, idle_seconds, survives):
    """A connection idle longer than the threshold is pinged and replaced if dead; the
    threshold is what decides (one that is not pinged fails its next use)."""
    database = Database(settings.database_url, ping_after_idle_seconds=idle_seconds)
    admin = Database(settings.database_url)
    try:
        async with database.session() as session:
            backend = await session.scalar(text("SELECT pg_backend_pid()"))
        async with admin.engine.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        async with database.session() as session:
            if survives:
                assert await session.scalar(text("SELECT pg_backend_pid()")) != backend
            else:
                with pytest.raises(DBAPIError):
                    await session.scalar(text("SELECT 1"))
    finally:
        await database.close()
        await admin.close()


async def test_writers_of_one_process_take_turns_on_sqlite_only(settings):
    """SQLite admits one writer and makes the others sleep and retry; this process's writers
    queue instead. PostgreSQL lets them overlap."""
    database = Database(settings.database_url)
    order: list[str] = []
    first_in, let_go = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with database.writer():
            order.append("first in")
            first_in.set()
            await let_go.wait()
            order.append("first out")

    async def second() -> None:
        await first_in.wait()
        async with database.writer():
            order.append("second in")

    try:
        tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
        await first_in.wait()
        for _ in range(5):  # let the second writer run up to wherever it has to wait
            await asyncio.sleep(0)
        let_go.set()
        await asyncio.gather(*tasks)
    finally:
        await database.close()
    if database.is_sqlite:
        assert order == ["first in", "first out", "second in"]
    else:
        assert order == ["first in", "second in", "first out"]


@pytest.mark.skipif(BACKEND != "services", reason="SQLite has no server connection to cut")
async def test_a_message_arriving_on_a_cut_connection_is_still_stored_and_answered(
    app, client, settings
):
    """Inside the idle-ping window a restart is found by the first statement: the inbound
    insert runs once more on a fresh connection rather than losing the message."""
    await add_account(app)
    database = Database(settings.database_url, ping_after_idle_seconds=3600.0)
    engine = build_engine(
        settings,
        database,
        app[appkeys.COORDINATOR],
        app[appkeys.PROVIDERS],
        app[appkeys.CLOCK],
    )
    try:
        async with database.session() as session:
            backend = await session.scalar(text("SELECT pg_backend_pid()"))
        async with app[appkeys.DATABASE].engine.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        (reply,) = await engine.receive(Inbound(phone="+15555550100", body="balance", sid="SMcut1"))
        assert "Your balance on Acme Card ending 4821 is $1,250.00" in reply
        async with database.session() as session:
            stored = await session.scalar(
                select(func.count()).select_from(Message).where(Message.provider_sid == "SMcut1")
            )
        assert stored == 1
    finally:
        await database.close()
