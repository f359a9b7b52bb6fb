"""Stopping a deployment (SIGTERM, as systemd, Docker and Kubernetes send it) loses nothing and
doubles nothing: `paybot serve` stops accepting, answers the turn in flight whole and exits 0;
`paybot worker` finishes the charge in flight, puts back what it claimed but had not sent, and
exits 0. Real processes, a Stripe peer that answers only when the test lets it; every wait is on
an event (a line of the process's output, the peer's request)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import aiohttp
import pytest

from bot.config.settings import Settings
from tests.conftest import SmsPhone
from tests.fakes.slow_stripe import SlowStripe
from tests.seed import CONFIRM_STEPS, add_account
from tests.test_serving import ROOT, free_port, server_env
from tests.test_worker import add_scheduled, payments

WAIT = 60  # seconds: a guard that turns a wait that never ends into a failure


class Process:
    """A `paybot ...` subprocess whose stderr lines are read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._seen = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            async with self._seen:
                self.lines.append(line.decode().rstrip())
                self._seen.notify_all()
        async with self._seen:
            self.lines.append("")  # the end
            self._seen.notify_all()

    async def said(self, text: str) -> str:
        """Wait for the first stderr line containing `text`."""
        async with asyncio.timeout(WAIT), self._seen:
            while True:
                found = [line for line in self.lines if text in line]
                if found:
                    return found[0]
                assert "" not in self.lines, f"ended without saying {text!r}:\n" + "\n".join(
                    self.lines)
                await self._seen.wait()

    async def exit_code(self) -> int:
        async with asyncio.timeout(WAIT):
            code = await self.process.wait()
            await self._reader
        return code


@pytest.fixture
async def stripe() -> AsyncIterator[SlowStripe]:
    async with SlowStripe() as peer:
        yield peer
        peer.release.set()


def env_with(settings: Settings, tmp_path: Path, stripe: SlowStripe, **more: str) -> dict[str, str]:
    env = server_env(settings, tmp_path)
    for name in [n for n in env if n.startswith(("STRIPE_", "SENDGRID_", "TWILIO_"))]:
        del env[name]
    env.update(STRIPE_SECRET_KEY="sk_test_slow", STRIPE_API_BASE=stripe.base_url,
               PAYBOT_DATA_DIR=str(settings.data_dir), **more)
    return env


async def paybot(env: dict[str, str], *args: str) -> Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    return Process(process)


async def test_serve_answers_the_turn_in_flight_whole_then_exits_0(
    app, client, settings: Settings, tmp_path: Path, stripe: SlowStripe
) -> None:  # type: ignore[no-untyped-def]
    await add_account(app)
    port = free_port()
    server = await paybot(env_with(settings, tmp_path, stripe), "serve", "--port", str(port))
    try:
        assert server.process.stdout is not None
        async with asyncio.timeout(WAIT):
            while b"Running on" not in await server.process.stdout.readline():
                pass
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as web:
            maria = SmsPhone(client=web, number="+15555550100", in_process=False)  # type: ignore[arg-type]
            for text in CONFIRM_STEPS:
                await maria.send(text)
            paying = asyncio.create_task(maria.send("agree"))
            async with asyncio.timeout(WAIT):
                await stripe.charging.wait()

            server.process.send_signal(signal.SIGTERM)
            line = await server.said("stopping: no new connections")
            assert "stopping: no new connections; requests in flight have up to 20 s" in line
            with pytest.raises(OSError):  # the port is closed to anyone new
                await asyncio.open_connection("127.0.0.1", port)
            assert not paying.done()

            stripe.release.set()
            async with asyncio.timeout(WAIT):
                (done,) = await paying
        assert done.startswith("Done: $50.00 paid")
        assert await server.exit_code() == 0
        assert len(stripe.intents) == 1
        assert [p.status for p in await payments(app)] == ["paid"]
        assert not [line for line in server.lines if "Traceback" in line or "ERROR" in line]
    finally:
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()


async def test_worker_finishes_the_charge_in_flight_and_puts_back_the_rest(
    app, client, settings: Settings, tmp_path: Path, stripe: SlowStripe
) -> None:  # type: ignore[no-untyped-def]
    maria = await add_account(app)
    first, second = await add_scheduled(app, maria, date(2026, 12, 15), count=2)
    worker = await paybot(
        env_with(settings, tmp_path, stripe), "worker", "--once", "--no-outreach",
        "--concurrency", "1", "--at", "2026-12-15T10:00-05:00",
    )
    try:
        async with asyncio.timeout(WAIT):
            await stripe.charging.wait()
        worker.process.send_signal(signal.SIGTERM)
        await worker.said("stopping: finishing the charges in flight for up to 20 s")
        stripe.release.set()
        assert await worker.exit_code() == 0
        assert worker.process.stdout is not None
        summary = (await worker.process.stdout.read()).decode().strip()
    finally:
        if worker.process.returncode is None:
            worker.process.kill()
            await worker.process.wait()

    assert len(stripe.intents) == 1  # one request reached the processor
    rows = sorted(await payments(app), key=lambda p: p.status)
    assert {p.reference for p in rows} == {first, second}
    assert [(p.status, p.processor_id, p.failure_code) for p in rows] == [
        ("paid", "pi_slow_1", None), ("scheduled", None, None)]
    assert summary == "worker pass: claimed 2, paid 1, released 1"


async def test_worker_past_its_grace_leaves_the_charge_for_recovery_and_exits_0(
    app, client, settings: Settings, tmp_path: Path, stripe: SlowStripe
) -> None:  # type: ignore[no-untyped-def]
    maria = await add_account(app)
    (reference,) = await add_scheduled(app, maria, date(2026, 12, 15))
    worker = await paybot(
        env_with(settings, tmp_path, stripe, PAYBOT_SHUTDOWN_GRACE_SECONDS="1"),
        "worker", "--once", "--no-outreach", "--at", "2026-12-15T10:00-05:00",
    )
    try:
        async with asyncio.timeout(WAIT):
            await stripe.charging.wait()
        worker.process.send_signal(signal.SIGTERM)  # the processor never answers
        await worker.said("worker stopped after the 1 s grace: unconfirmed charges are "
                          "recovered by the next run")
        assert await worker.exit_code() == 0
    finally:
        if worker.process.returncode is None:
            worker.process.kill()
            await worker.process.wait()
    (payment,) = await payments(app)
    # Sent to the processor, answer unknown: `processing`, no processor id, for the recovery of
    # unconfirmed rows (same idempotency key) on the next pass. Never back to `scheduled`.
    assert (payment.reference, payment.status, payment.processor_id) == (
        reference, "processing", None)
