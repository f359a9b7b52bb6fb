"""`GET /metrics`: Prometheus's text exposition, for the loopback address or a bearer token.

Who may read it: a client at the loopback address (the real peer; `X-Forwarded-For` only as far
as `PAYBOT_TRUSTED_PROXIES` says, through the `client_ip` the app factory hands in), or one
presenting `Authorization: Bearer $PAYBOT_METRICS_TOKEN` when that is set (compared in constant
time). Anyone else: 401 without credentials (when a token is configured), 403 with wrong ones or
when no token is configured; the refusal says nothing more.

What it says: the counters and histograms of `bot/metrics.py` (all processes' in multiprocess
mode), then gauges read from the ledger now, three aggregate queries on indexed columns
(`ledger_families`), bounded by `LEDGER_SECONDS`: a slow database leaves them out rather than
holding the scrape.

`serving` puts the same handler on a port of its own, for a process without the web app
(`paybot worker --metrics-port`): its counters, without a shared PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time
from typing import Any

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import func, select

from bot import appkeys, metrics
from bot.config.settings import Settings
from bot.ledger.db import Database
from bot.ledger.models import Handoff, OutboundEmail, Payment

log = logging.getLogger(__name__)

LEDGER_SECONDS = 2.0
UNSENT_EMAIL = ("queued", "sending")  # what the outbox still has to send


def handler(
    client_ip: Callable[[web.Request], str | None],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def scrape(request: web.Request) -> web.Response:
        refused = _refusal(request, client_ip)
        if refused is not None:
            return refused
        database = request.config_dict[appkeys.DATABASE]
        now = request.config_dict[appkeys.CLOCK].now()
        try:
            families = await asyncio.wait_for(ledger_families(database, now), LEDGER_SECONDS)
        except Exception as error:  # the counters still answer; the gauges are left out
            log.warning("metrics: the ledger's gauges were not read (%s)", type(error).__name__)
            families = []
        body = metrics.exposition(families)
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    return scrape


@asynccontextmanager
async def serving(
    settings: Settings, database: Database, clock: Any, *, host: str, port: int
) -> AsyncIterator[None]:
    """`GET /metrics` on `host:port` while the block runs: the same handler and the same rules
    as the web's. No proxy stands in front of it, so who asks is the peer's own address."""
    app = web.Application()
    app[appkeys.SETTINGS], app[appkeys.DATABASE], app[appkeys.CLOCK] = settings, database, clock
    app.router.add_get("/metrics", handler(lambda request: request.remote))
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise MetricsPortUnavailable(f"{host}:{port}: {reason}") from error
        log.info("metrics at http://%s:%d/metrics", host, port)
        yield
    finally:
        await runner.cleanup()


class MetricsPortUnavailable(Exception):
    """The address given for /metrics cannot be listened on (taken, or not this machine's)."""


def _refusal(
    request: web.Request, client_ip: Callable[[web.Request], str | None]
) -> web.Response | None:
    token = request.config_dict[appkeys.SETTINGS].metrics_token
    given = request.headers.get("Authorization")
    if token and given is not None:
        expected = f"Bearer {token}".encode()
        if hmac.compare_digest(given.encode("utf-8", "replace"), expected):
            return None
        return web.Response(status=403, text="forbidden")
    if _loopback(client_ip(request)):
        return None
    if token:
        return web.Response(
            status=401, text="unauthorized", headers={"WWW-Authenticate": "Bearer"}
        )
    return web.Response(status=403, text="forbidden")


def _loopback(address: str | None) -> bool:
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return False  # a Unix socket's peer has no address: not known to be this machine
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return parsed.is_loopback


async def ledger_families(database: Database, now: datetime) -> list[Metric]:
    """What the ledger holds now: due payments and the worker's lag, the email outbox's backlog,
    the requests for a person no agent has taken yet."""
    today = now.astimezone(UTC).date()
    async with database.session() as session:
        due, oldest_due = (await session.execute(
            select(func.count(), func.min(Payment.scheduled_for)).where(
                Payment.status == "scheduled", Payment.scheduled_for <= today
            )
        )).one()
        unsent, oldest_email = (await session.execute(
            select(func.count(), func.min(OutboundEmail.created_at)).where(
                OutboundEmail.status.in_(UNSENT_EMAIL)
            )
        )).one()
        waiting, oldest_request = (await session.execute(
            select(func.count(), func.min(Handoff.requested_at)).where(
                Handoff.claimed_at.is_(None), Handoff.resolved_at.is_(None)
            )
        )).one()
    lag_since = datetime.combine(oldest_due, time.min, UTC) if oldest_due else None
    return [
        _gauge("paybot_payments_due", "Scheduled payments due today (UTC) or before, unclaimed.",
               due),
        _gauge("paybot_worker_lag_seconds",
               "Seconds since the oldest due, unclaimed payment fell due (its date's start, "
               "UTC); 0 when none is due.", _age(lag_since, now)),
        _gauge("paybot_email_outbox_backlog", "Emails in the outbox not sent yet (queued, "
               "sending).", unsent),
        _gauge("paybot_email_outbox_oldest_age_seconds",
               "Age of the oldest email not sent yet; 0 when none.", _age(oldest_email, now)),
        _gauge("paybot_handoffs_waiting", "Requests for a person no agent has claimed yet.",
               waiting),
        _gauge("paybot_handoff_oldest_wait_seconds",
               "How long the oldest unclaimed request for a person has waited; 0 when none.",
               _age(oldest_request, now)),
    ]


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _age(since: datetime | None, now: datetime) -> float:
    if since is None:
        return 0.0
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return max(0.0, (now - since).total_seconds())
