"""The operators' endpoints: `/healthz` (the process is up), `/readyz` (database, Redis and
migrations ready, each check time-bounded: `health.py`) and `/metrics` (Prometheus text, the
loopback address or a bearer token: `scrape.py`, the ledger's gauges read at scrape time).

May import the ledger, `bot/metrics.py`, `bot/config`, `bot/coordination.py`, `bot/appkeys.py`;
who the client is (`portal_fallback.sessions.client_ip`) is handed in by the app factory.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from bot.operations import health, scrape


def add_routes(app: web.Application, client_ip: Callable[[web.Request], str | None]) -> None:
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", scrape.handler(client_ip))
