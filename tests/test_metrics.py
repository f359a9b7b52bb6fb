"""`GET /metrics` (issue 16): what an operator's Prometheus reads after real actions, and who may
read it. Counters are process-wide, so each test reads the lines a scrape shows before and after
its actions and asserts exactly which `paybot_` lines changed, and by how much."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from bot import metrics
from bot.app import create_app
from bot.config.settings import Settings
from bot.serving import shared_metrics
from tests.seed import CONFIRM_STEPS, add_account
from tests.test_handoff_bot import make_worker

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = re.compile(r"^(paybot_\S+) (\S+)$")
TURN_LINES = ("paybot_turn_duration_seconds_bucket", "paybot_turn_duration_seconds_sum")


async def scrape(client: TestClient, **headers: str) -> dict[str, float]:
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == ("text/plain; version=0.0.4; charset=utf-8")
    return parse(await response.text())


def parse(text: str) -> dict[str, float]:
    return {m[1]: float(m[2]) for line in text.splitlines() if (m := SAMPLE.match(line))}


def changed(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The `paybot_` lines whose value moved, with how much; the latency buckets and sum move
    by however long the turns took, so they are left to `turn_latency_counted`."""
    return {
        name: round(value - before.get(name, 0.0), 6)
        for name, value in after.items()
        if value != before.get(name) and not name.startswith(TURN_LINES)
    }


def turn_latency_counted(before: dict[str, float], after: dict[str, float], turns: int) -> None:
    inf = 'paybot_turn_duration_seconds_bucket{le="+Inf"}'
    assert after[inf] - before.get(inf, 0) == turns
    assert after["paybot_turn_duration_seconds_sum"] > before.get(
        "paybot_turn_duration_seconds_sum", 0
    )


async def test_an_sms_payment_is_counted_where_it_happens(app, client, phone) -> None:
    await add_account(app)
    maria = phone()
    before = await scrape(client)
    for text in [*CONFIRM_STEPS, "agree"]:
        await maria.send(text)
    await maria.send("agree", sid="SM-the-same-twice")
    await maria.send("agree", sid="SM-the-same-twice")  # Twilio's retry: answered from the ledger
    after = await scrape(client)
    assert changed(before, after) == {
        'paybot_inbound_messages_total{channel="sms"}': 9.0,
        'paybot_turns_total{outcome="answered"}': 8.0,
        'paybot_turns_total{outcome="duplicate"}': 1.0,
        "paybot_turn_duration_seconds_count": 9.0,
        'paybot_payments_total{channel="sms",status="paid"}': 1.0,
    }
    turn_latency_counted(before, after, 9)


async def test_a_scheduled_payment_shows_as_due_then_the_worker_charges_it(
    app, client, phone, clock
) -> None:
    await add_account(app)
    maria = phone()
    for text in ["pay", "ok", "50", "1", "12/15", "yes", "agree"]:
        await maria.send(text)
    # Dec 16, 10 a.m. in New York: the payment fell due 39 hours ago (Dec 15, 00:00 UTC).
    clock.set(datetime(2026, 12, 16, 15, 0, tzinfo=UTC))
    before = await scrape(client)
    assert before['paybot_payments_total{channel="sms",status="scheduled"}'] >= 1
    assert (before["paybot_payments_due"], before["paybot_worker_lag_seconds"]) == (1.0, 140400.0)

    await make_worker(app).run_once()
    after = await scrape(client)
    assert changed(before, after) == {
        "paybot_worker_payments_due_total": 1.0,
        "paybot_worker_payments_claimed_total": 1.0,
        'paybot_worker_payments_charged_total{status="paid"}': 1.0,
        "paybot_payments_due": -1.0,
        "paybot_worker_lag_seconds": -140400.0,
    }


async def test_a_waiting_handoff_and_an_opt_out_show(app, client, phone, clock) -> None:
    await add_account(app)
    maria = phone()
    before = await scrape(client)
    await maria.send("agent")
    clock.advance(timedelta(seconds=90))
    waiting = await scrape(client)
    assert (waiting["paybot_handoffs_waiting"], waiting["paybot_handoff_oldest_wait_seconds"]) \
        == (1.0, 90.0)
    await maria.send("stop")
    after = await scrape(client)
    assert changed(before, after) == {
        'paybot_inbound_messages_total{channel="sms"}': 2.0,
        'paybot_turns_total{outcome="answered"}': 2.0,
        "paybot_turn_duration_seconds_count": 2.0,
        'paybot_opt_outs_total{channel="sms"}': 1.0,
        "paybot_handoffs_waiting": 1.0,
        "paybot_handoff_oldest_wait_seconds": 90.0,
    }


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(stripe_webhook_secret="whsec_metrics_test")


async def test_forged_webhooks_are_counted_by_provider_and_nothing_else(app, client, phone) -> None:
    before = await scrape(client)
    status, _ = await phone().post("pay", token="not-the-auth-token")
    assert status == 403
    stripe = await client.post(
        "/webhooks/stripe", data=b'{"id": "evt_1"}', headers={"Stripe-Signature": "t=1,v1=00"}
    )
    assert stripe.status == 400
    after = await scrape(client)
    assert changed(before, after) == {
        'paybot_webhook_verification_failures_total{provider="twilio"}': 1.0,
        'paybot_webhook_verification_failures_total{provider="stripe"}': 1.0,
    }


async def test_every_family_is_described_from_the_first_scrape(client) -> None:
    text = await (await client.get("/metrics")).text()
    families = dict(re.findall(r"^# TYPE (paybot_\S+) (\S+)$", text, re.MULTILINE))
    assert families == {
        "paybot_inbound_messages_total": "counter",
        "paybot_turns_total": "counter",
        "paybot_turn_duration_seconds": "histogram",
        "paybot_payments_total": "counter",
        "paybot_processor_errors_total": "counter",
        "paybot_worker_payments_due_total": "counter",
        "paybot_worker_payments_claimed_total": "counter",
        "paybot_worker_payments_charged_total": "counter",
        "paybot_opt_outs_total": "counter",
        "paybot_webhook_verification_failures_total": "counter",
        "paybot_payments_due": "gauge",
        "paybot_worker_lag_seconds": "gauge",
        "paybot_email_outbox_backlog": "gauge",
        "paybot_email_outbox_oldest_age_seconds": "gauge",
        "paybot_handoffs_waiting": "gauge",
        "paybot_handoff_oldest_wait_seconds": "gauge",
    }
    assert "phone" not in text and "+1555" not in text  # labels never carry a customer


# ------------------------------------------------------------------ who may read it


def proxied(settings: Settings, token: str | None) -> Settings:
    # The test client connects from 127.0.0.1: made a trusted proxy, the client it forwards for
    # is the one named in X-Forwarded-For.
    return settings.replace(trusted_proxies=(ip_network("127.0.0.0/8"),), metrics_token=token)


async def get(client: TestClient, **headers: str) -> tuple[int, str]:
    response = await client.get("/metrics", headers=headers)
    return response.status, await response.text()


async def test_the_loopback_address_reads_it_whatever_x_forwarded_for_says(client) -> None:
    # No trusted proxy: the header is whatever a client wrote; the real peer is what counts.
    status, text = await get(client, **{"X-Forwarded-For": "203.0.113.9"})
    assert status == 200 and "paybot_turns_total" in text


async def make_client(aiohttp_client, settings, providers, clock) -> TestClient:  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(settings, providers, clock))


async def test_a_client_behind_a_trusted_proxy_is_refused_without_a_token(
    aiohttp_client, settings, providers, clock
) -> None:
    client = await make_client(aiohttp_client, proxied(settings, None), providers, clock)
    assert await get(client, **{"X-Forwarded-For": "203.0.113.9"}) == (403, "forbidden")
    # A client writing 127.0.0.1 itself: the proxy appends the address it saw.
    assert await get(client, **{"X-Forwarded-For": "127.0.0.1, 203.0.113.9"}) == (403, "forbidden")
    assert (await get(client, **{"X-Forwarded-For": "127.0.0.1"}))[0] == 200  # the proxy's own


async def test_the_bearer_token_right_wrong_or_missing(
    aiohttp_client, settings, providers, clock
) -> None:
    token = "metrics-token-0123456789"
    client = await make_client(aiohttp_client, proxied(settings, token), providers, clock)
    remote = {"X-Forwarded-For": "203.0.113.9"}
    status, text = await get(client, **remote, Authorization=f"Bearer {token}")
    assert status == 200 and "paybot_turns_total" in text
    assert await get(client, **remote, Authorization="Bearer wrong") == (403, "forbidden")
    assert await get(client, **remote, Authorization=f"Basic {token}") == (403, "forbidden")
    assert await get(client, **remote, Authorization=f"Bearer {token}\u00e9") == (403, "forbidden")
    response = await client.get("/metrics", headers=remote)
    assert (response.status, await response.text()) == (401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


# ------------------------------------------------------------------ several processes

COUNT_ONE_TURN = "from bot import metrics; metrics.TURNS.labels('answered').inc()"
SCRAPE = "import sys; from bot import metrics; sys.stdout.buffer.write(metrics.exposition())"


def test_several_processes_add_up_in_one_scrape(tmp_path: Path) -> None:
    """`paybot serve --workers N` (bot/serving.py) gives its processes one fresh directory;
    two processes count a turn each, a third one's scrape shows both."""
    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_DIR}
    with shared_metrics():
        directory = os.environ[metrics.MULTIPROC_DIR]
        env[metrics.MULTIPROC_DIR] = directory
        for _ in range(2):
            subprocess.run([sys.executable, "-c", COUNT_ONE_TURN], cwd=ROOT, env=env, check=True,
                           timeout=60)
        scraped = subprocess.run([sys.executable, "-c", SCRAPE], cwd=ROOT, env=env, check=True,
                                 capture_output=True, text=True, timeout=60).stdout
    assert parse(scraped)['paybot_turns_total{outcome="answered"}'] == 2.0
    assert parse(scraped)['paybot_turns_total{outcome="failed"}'] == 0.0
    assert not Path(directory).exists()  # cleaned when the processes have ended
    assert metrics.MULTIPROC_DIR not in os.environ


# ------------------------------------------------------------------ the dashboard

SUFFIXES = ("_bucket", "_sum", "_count")


async def test_the_grafana_dashboard_queries_what_metrics_says(client) -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    queries = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    queried = {name for expr in queries for name in re.findall(r"\bpaybot_\w+", expr)}
    text = await (await client.get("/metrics")).text()
    families = set(re.findall(r"^# TYPE (paybot_\w+) ", text, re.MULTILINE))
    samples = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
               if line.startswith("paybot_")}
    assert queried - samples - families == set(), "the dashboard queries what /metrics lacks"
    # ... and every family has a panel.
    covered = {name.removesuffix(s) for name in queried for s in SUFFIXES if name.endswith(s)}
    assert families - queried - covered == set()
