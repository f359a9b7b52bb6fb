"""`paybot worker --metrics-port PORT` serves the worker's own /metrics, under the web's rules
(the loopback address, or `Bearer $PAYBOT_METRICS_TOKEN`): its due, claimed and charged counts
and the lag are read from the worker itself, with no PROMETHEUS_MULTIPROC_DIR shared with the
web. A real worker process, scraped while its charge is held by a Stripe peer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config.settings import Settings
from tests.fakes.slow_stripe import SlowStripe
from tests.seed import add_account
from tests.test_graceful_stop import WAIT, env_with, paybot
from tests.test_serving import free_port
from tests.test_worker import add_scheduled, payments

TOKEN = "worker-scrape-token-0123456789"


@pytest.fixture
async def stripe() -> AsyncIterator[SlowStripe]:
    async with SlowStripe() as peer:
        yield peer
        peer.release.set()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_the_worker_serves_its_own_metrics_under_the_webs_rules(
    app, client, settings: Settings, tmp_path: Path, stripe: SlowStripe
) -> None:  # type: ignore[no-untyped-def]
    maria = await add_account(app)
    await add_scheduled(app, maria, date(2026, 12, 15))
    port = free_port()
    env = env_with(settings, tmp_path, stripe, PAYBOT_METRICS_TOKEN=TOKEN)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    worker = await paybot(env, "worker", "--once", "--no-outreach", "--at",
                          "2026-12-15T10:00-05:00", "--metrics-port", str(port))
    try:
        line = await worker.said("metrics at")
        assert f"metrics at http://127.0.0.1:{port}/metrics" in line
        async with asyncio.timeout(WAIT):
            await stripe.charging.wait()  # claimed, its charge in flight
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as web:
            async with web.get("/metrics") as response:  # loopback: allowed
                assert response.status == 200
                seen = samples(await response.text())
            async with web.get("/metrics", headers={"Authorization": "Bearer wrong"}) as refused:
                assert (refused.status, await refused.text()) == (403, "forbidden")
            async with web.get("/metrics",
                               headers={"Authorization": f"Bearer {TOKEN}"}) as allowed:
                assert allowed.status == 200
        assert {name: seen[name] for name in [
            ("paybot_worker_payments_due_total", ()),
            ("paybot_worker_payments_claimed_total", ()),
            ("paybot_worker_payments_charged_total", (("status", "paid"),)),
            ("paybot_payments_due", ()),
            ("paybot_worker_lag_seconds", ()),
        ]} == {
            ("paybot_worker_payments_due_total", ()): 1.0,
            ("paybot_worker_payments_claimed_total", ()): 1.0,
            ("paybot_worker_payments_charged_total", (("status", "paid"),)): 0.0,
            ("paybot_payments_due", ()): 0.0,  # claimed: no longer waiting
            ("paybot_worker_lag_seconds", ()): 0.0,
        }
        stripe.release.set()
        assert await worker.exit_code() == 0
    finally:
        if worker.process.returncode is None:
            worker.process.kill()
            await worker.process.wait()
    assert [p.status for p in await payments(app)] == ["paid"]
    with pytest.raises(OSError):  # the worker took its /metrics with it
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_metrics_port_taken_is_said_and_exits_2(
    app, client, settings: Settings, tmp_path: Path, stripe: SlowStripe
) -> None:  # type: ignore[no-untyped-def]
    taken = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = taken.sockets[0].getsockname()[1]
    try:
        worker = await paybot(env_with(settings, tmp_path, stripe), "worker", "--once",
                              "--no-outreach", "--metrics-port", str(port))
        line = await worker.said("--metrics-port")
        assert line == (f"paybot worker: --metrics-port: cannot listen on 127.0.0.1:{port}: "
                        "Address already in use")
        assert await worker.exit_code() == 2
    finally:
        taken.close()
        await taken.wait_closed()
