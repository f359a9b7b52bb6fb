"""`paybot serve --workers N`: several web processes on one port, one conversation lock."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from bot import appkeys
from bot.config.settings import ConfigError, Settings
from bot.ledger.models import Payment
from bot.serving import freeze_again_when_warm
from tests.conftest import BACKEND, PUBLIC_BASE_URL, SmsPhone
from tests.seed import CONFIRM_STEPS, add_account
from tests.test_metrics import parse as parse_metrics

ROOT = Path(__file__).resolve().parent.parent


def server_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYBOT_", "REDIS_"))}
    # Not production (http): the sandboxes stand in for the providers, which production (https)
    # refuses. Without TWILIO_AUTH_TOKEN the signatures SmsPhone computes for https are not read.
    env.pop("TWILIO_AUTH_TOKEN", None)
    env.update(
        DATABASE_URL=settings.database_url,
        PUBLIC_BASE_URL=PUBLIC_BASE_URL.replace("https://", "http://"),
        SECRET_KEY="test-secret-key",
        PAYBOT_DATA_DIR=str(tmp_path / "var"),
        PAYBOT_MIGRATE_ON_START="0",
    )
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_what_the_first_requests_built_is_frozen_out_of_the_collector(aiohttp_client):
    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    freeze_again_when_warm(app, after=3)
    client = await aiohttp_client(app)
    before = gc.get_freeze_count()
    try:
        for n in range(3):
            assert gc.get_freeze_count() == before, f"frozen after {n} requests"
            assert (await client.get("/")).status == 200
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()  # the rest of the test session keeps its collector


def test_more_than_one_process_needs_a_shared_redis(settings: Settings, tmp_path: Path) -> None:
    env = server_env(settings.replace(redis_url=None), tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve", "--workers", "2", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--workers above 1 needs REDIS_URL" in result.stderr


@pytest.mark.skipif(
    BACKEND != "services", reason="needs a Redis that processes share: runs in the services pass"
)
async def test_two_processes_answer_on_one_port_and_charge_once(
    client, app, settings: Settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    await add_account(app)
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "bot.cli", "serve", "--workers", "2", "--port", str(port)],
        cwd=ROOT,
        env=server_env(settings, tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        # aiohttp prints one "Running on" line per process once it listens.
        assert server.stdout is not None
        listening = 0
        while listening < 2:
            line = await server.stdout.readline()
            assert line, "the server ended before both processes listened"
            listening += b"Running on" in line

        connector = aiohttp.TCPConnector(force_close=True)  # each request a new connection
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector) as web:
            maria = SmsPhone(client=web, number="+15555550100", in_process=False)  # type: ignore[arg-type]
            for text in CONFIRM_STEPS:
                await maria.send(text)
            # Two taps of AGREE at once, on separate connections (so, likely, processes).
            replies = await asyncio.gather(maria.send("agree"), maria.send("agree"))
            # /metrics adds up both processes, whichever answers (PROMETHEUS_MULTIPROC_DIR).
            for _ in range(2):
                async with web.get("/metrics") as response:
                    scraped = parse_metrics(await response.text())
                assert scraped['paybot_turns_total{outcome="answered"}'] == len(CONFIRM_STEPS) + 2
                assert scraped['paybot_payments_total{channel="sms",status="paid"}'] == 1
        done = [r for reply in replies for r in reply if r.startswith("Done: $50.00 paid")]
        assert len(done) == 1
        async with app[appkeys.DATABASE].session() as session:
            assert await session.scalar(select(func.count()).select_from(Payment)) == 1

        server.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.wait(), 90) == 0
        with pytest.raises(OSError):  # nothing listens any more
            await asyncio.open_connection("127.0.0.1", port)
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()


@pytest.mark.parametrize("value", ["0", "-3", "eight", "2.5"])
def test_the_turns_in_flight_setting_refuses_nonsense(value: str) -> None:
    with pytest.raises(ConfigError, match="PAYBOT_SMS_TURNS_IN_FLIGHT must be a whole number"):
        Settings.from_env({"PAYBOT_SMS_TURNS_IN_FLIGHT": value})


def test_the_turns_in_flight_setting_is_read() -> None:
    assert Settings.from_env({}).sms_turns_in_flight == 8
    assert Settings.from_env({"PAYBOT_SMS_TURNS_IN_FLIGHT": "3"}).sms_turns_in_flight == 3
