"""Portal page benchmark: server render time per page (p50/p99 under load) and bytes per page.

    .venv/bin/python -m bench.portal_pages [--backend embedded|services] [--seconds 5]
        [--concurrency 16] [--json out.json]

The app runs in this process on 127.0.0.1 (sandbox providers, no network). A timing middleware
measures the server's own time per request (routing, session, database, rendering), so the load
generator's costs are not counted; bytes are the response bodies. Stripe.js is not included
(it is Stripe's, loaded by the browser from Stripe's origin).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import ClientSession, CookieJar, web
from aiohttp.test_utils import TestServer

from bot import appkeys
from bot.accounts import parse_account, save_method_at_processor, upsert_account
from bot.app import create_app
from bot.clock import FrozenClock
from bot.config import Settings
from bot.models import Creditor
from bot.providers import Providers
from bot.providers.email import SandboxEmail
from bot.providers.payments import SandboxGateway
from bot.providers.sms import SandboxSms

PG_URL = "postgresql://postgres@127.0.0.1:5432/paybot_bench_pages"
REDIS_URL = "redis://127.0.0.1:6379/13"
# Each page and the steps (form posts) that lead a fresh session to it.
PAGES: dict[str, list[dict[str, str]]] = {
    "lookup": [],
    "pay: balance": [],
    "pay: contact": [{"action": "start"}],
    "pay: amount": [{"action": "start"}, {"action": "continue"}],
    "pay: method": [
        {"action": "start"},
        {"action": "continue"},
        {"action": "continue", "amount": "50"},
    ],
    "pay: confirm": [
        {"action": "start"},
        {"action": "continue"},
        {"action": "continue", "amount": "50"},
        {"action": "continue", "choice": "1"},
        {"action": "now"},
    ],
    "pay: agreement": [
        {"action": "start"},
        {"action": "continue"},
        {"action": "continue", "amount": "50"},
        {"action": "continue", "choice": "1"},
        {"action": "now"},
        {"action": "confirm"},
    ],
}
TIMINGS: dict[str, list[float]] = defaultdict(list)
SIZES: dict[str, list[int]] = defaultdict(list)


@web.middleware
async def timing(request: web.Request, handler):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    response = await handler(request)
    label = request.headers.get("X-Bench-Page")
    if label:
        TIMINGS[label].append((time.perf_counter() - started) * 1000)
        body = getattr(response, "body", None)
        SIZES[label].append(len(body) if isinstance(body, bytes | bytearray) else 0)
    return response


async def reset_postgres() -> None:
    from sqlalchemy import text

    from bot.db import Database

    admin = Database("postgresql://postgres@127.0.0.1:5432/test")
    async with admin.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("DROP DATABASE IF EXISTS paybot_bench_pages WITH (FORCE)"))
        await conn.execute(text("CREATE DATABASE paybot_bench_pages"))
    await admin.close()


async def seed(app: web.Application, accounts: int) -> list[str]:
    """Accounts with a saved card; returns a link path per account."""
    from datetime import timedelta

    from bot import ledger

    gateway = app[appkeys.PROVIDERS].payments
    now = app[appkeys.CLOCK].now()
    paths = []
    async with app[appkeys.DATABASE].session() as session:
        session.add(Creditor(code="bench", name="Bench Recovery", disclosure="", settings={}))
        await session.flush()
        for n in range(accounts):
            record = {
                "account_id": f"B-{n:05d}",
                "first_name": "Maria",
                "last_name": "Lopez",
                "phone": f"+1555{n:07d}",
                "email": f"m{n}@example.com",
                "balance": "1250.00",
                "creditor": "bench",
                "description": "Acme Card ending 4821",
            }
            account, _ = await upsert_account(
                session, parse_account(record), secret_key="bench", at=now, actor="bench"
            )
            await save_method_at_processor(session, gateway, account, "pm_card_visa", at=now)
            token = await ledger.create_link(
                session, account_id=account.id, at=now, lifetime=timedelta(hours=72)
            )
            paths.append(f"/p/{token}")
        await session.commit()
    return paths


async def open_session(server: TestServer, link: str, steps: list[dict[str, str]]) -> ClientSession:
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(server.make_url("/"))])
    client = ClientSession(base_url=server.make_url("/"), cookie_jar=jar)
    async with client.get(link) as response:
        html = await response.text()
    for step in steps:
        fields = {"csrf_token": _field(html, "csrf_token"), "state": _field(html, "state"), **step}
        async with client.post("/portal/pay", data=fields) as response:
            html = await response.text()
            assert response.status == 200, (response.status, step)
    return client


def _field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field"
    return match.group(1)


async def hammer(client: ClientSession, path: str, label: str, deadline: float) -> int:
    count = 0
    while time.perf_counter() < deadline:
        async with client.get(path, headers={"X-Bench-Page": label}) as response:
            await response.read()
            assert response.status == 200, (label, response.status)
        count += 1
    return count


async def open_loop(
    clients: list[ClientSession], path: str, label: str, rate: float, seconds: float
) -> None:
    """Requests arrive at a fixed rate whatever the answers' speed (latency as users see it)."""
    tasks = []
    started = time.perf_counter()
    n = 0
    while (now := time.perf_counter()) - started < seconds:
        due = started + n / rate
        if due > now:
            await asyncio.sleep(due - now)
        client = clients[n % len(clients)]
        tasks.append(asyncio.create_task(_one(client, path, label)))
        n += 1
    await asyncio.gather(*tasks)


async def _one(client: ClientSession, path: str, label: str) -> None:
    async with client.get(path, headers={"X-Bench-Page": label}) as response:
        await response.read()
        assert response.status == 200, (label, response.status)


def _p(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return round(ordered[max(0, int(len(ordered) * q) - 1)], 2)


async def run(
    backend: str, seconds: float, concurrency: int, fraction: float
) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "services":
            await reset_postgres()
            database_url, redis_url = PG_URL, REDIS_URL
        else:
            database_url, redis_url = f"sqlite:///{tmp}/bench.sqlite3", None
        settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            public_base_url="https://pay.bench.test",
            secret_key="bench",
            data_dir=Path(tmp),
        )
        providers = Providers(sms=SandboxSms(), email=SandboxEmail(), payments=SandboxGateway())
        app = create_app(settings, providers, FrozenClock(datetime(2026, 11, 25, 15, tzinfo=UTC)))
        app.middlewares.append(timing)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            links = await seed(app, concurrency * len(PAGES))
            results = {}
            for index, (label, steps) in enumerate(PAGES.items()):
                mine = links[index * concurrency : (index + 1) * concurrency]
                path = "/portal/" if label == "lookup" else "/portal/pay"
                clients = [await open_session(server, link, steps) for link in mine]
                try:
                    deadline = time.perf_counter() + seconds
                    counts = await asyncio.gather(
                        *(hammer(c, path, label, deadline) for c in clients)
                    )
                    closed = list(TIMINGS[label])
                    TIMINGS[label].clear()
                    max_rate = sum(counts) / seconds
                    await open_loop(clients, path, label, max_rate * fraction, seconds)
                finally:
                    for client in clients:
                        await client.close()
                results[label] = {
                    "max_req_per_s": round(max_rate, 1),
                    "closed_p50_ms": _p(closed, 0.5),
                    "closed_p99_ms": _p(closed, 0.99),
                    "open_rate": round(max_rate * fraction, 1),
                    "open_p50_ms": _p(TIMINGS[label], 0.5),
                    "open_p99_ms": _p(TIMINGS[label], 0.99),
                    "bytes": int(statistics.median(SIZES[label])),
                }
            return results
        finally:
            await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["embedded", "services"], default="embedded")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--fraction",
        type=float,
        default=0.5,
        help="open-loop arrival rate as a share of the measured maximum",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(run(args.backend, args.seconds, args.concurrency, args.fraction))
    print(
        f"backend={args.backend} concurrency={args.concurrency} seconds/page={args.seconds} "
        f"open loop at {args.fraction:.0%} of max"
    )
    print(
        f"{'page':16} {'max/s':>7} {'closed p50':>10} {'p99':>7} {'open/s':>7} "
        f"{'open p50':>8} {'p99':>7} {'bytes':>6}"
    )
    for label, r in results.items():
        print(
            f"{label:16} {r['max_req_per_s']:>7} {r['closed_p50_ms']:>10} "
            f"{r['closed_p99_ms']:>7} {r['open_rate']:>7} {r['open_p50_ms']:>8} "
            f"{r['open_p99_ms']:>7} {r['bytes']:>6}"
        )
    css = (
        (Path(__file__).parent.parent / "portal_fallback" / "static" / "portal.css").stat().st_size
    )
    print(f"portal.css: {css} bytes (cached by the browser after the first page)")
    if args.json:
        args.json.write_text(json.dumps({"backend": args.backend, "pages": results}, indent=2))


if __name__ == "__main__":
    main()
