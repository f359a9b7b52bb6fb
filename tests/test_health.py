"""`/healthz` and `/readyz` (issue 16): what a load balancer and an orchestrator read."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from bot.app import create_app
from bot.ledger.db import Database, alembic_config
from tests.conftest import BACKEND

READY = {
    "status": "ready",
    "checks": {"database": "ok", "redis": "ok", "migrations": "ok"},
}


async def test_healthz_says_the_process_is_up(client) -> None:
    response = await client.get("/healthz")
    assert (response.status, await response.text()) == (200, "ok")


async def test_readyz_names_each_check(client) -> None:
    response = await client.get("/readyz")
    assert (response.status, await response.json()) == (200, READY)


@pytest.mark.skipif(BACKEND == "services", reason="downgrades the schema: a private SQLite only")
async def test_a_database_behind_by_a_migration_is_not_ready(client, settings) -> None:
    script = ScriptDirectory.from_config(alembic_config())
    (head,) = script.get_heads()
    previous = script.get_revision(head).down_revision
    database = Database(settings.database_url)
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), "-1"))
    finally:
        await database.close()

    response = await client.get("/readyz")
    assert (response.status, await response.json()) == (503, {
        "status": "not ready",
        "checks": {
            "database": "ok",
            "redis": "ok",
            "migrations": f"at {previous}, head is {head}",
        },
    })


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the probe is


async def test_an_unreachable_redis_is_named(aiohttp_client, settings, providers, clock) -> None:
    app = create_app(settings.replace(redis_url=f"redis://127.0.0.1:{closed_port()}/0"),
                     providers, clock)
    client = await aiohttp_client(app)
    response = await client.get("/readyz")
    assert (response.status, await response.json()) == (503, {
        "status": "not ready",
        "checks": {"database": "ok", "redis": "unreachable (ConnectionError)", "migrations": "ok"},
    })
    # Alive all the same: a liveness probe does not restart it for its Redis.
    assert (await client.get("/healthz")).status == 200


@pytest.fixture
async def silent_redis() -> AsyncIterator[int]:
    """A server that accepts connections and never answers: a Redis hung, or a black hole."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_hung_redis_answers_503_in_bounded_time(
    aiohttp_client, settings, providers, clock, silent_redis
) -> None:
    app = create_app(settings.replace(redis_url=f"redis://127.0.0.1:{silent_redis}/0"),
                     providers, clock)
    client = await aiohttp_client(app)
    response = await asyncio.wait_for(client.get("/readyz"), 10)
    assert (response.status, await response.json()) == (503, {
        "status": "not ready",
        "checks": {"database": "ok", "redis": "no answer within 2 s", "migrations": "ok"},
    })
