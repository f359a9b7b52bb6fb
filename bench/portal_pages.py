"""Portal page benchmark: server render time per page (p50/p99 under load) and bytes per page.

    .venv/bin/python -m bench.portal_pages [--backend embedded|services] [--seconds 5]
        [--concurrency 16] [--pages "plan:"] [--no-freeze-gc] [--json out.json]

Pages: the lookup page, each step of the payment flow, and each step of signing a plan offer
(review, method, terms, sign, and the confirmation once signed: every session signs an offer of
its own for that one).

The benchmark seeds the database, then starts the app in a process of its own on 127.0.0.1
(bench/portal_server.py: sandbox providers, no network, gc frozen at start-up as `paybot serve`
does) and drives it over HTTP from this process. A timing middleware in the server measures its
own time per request (routing, session, database, rendering), so neither the load generator's
work nor its garbage collections are counted; bytes are the response bodies. Stripe.js is not
included (it is Stripe's, loaded by the browser from Stripe's origin).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import ClientError, ClientSession, CookieJar

from bot.accounts.loading import parse_account, save_method_at_processor, upsert_account
from bot.ledger.db import Database
from bot.ledger.models import Creditor, Offer
from bot.providers.sandbox_gateway import SandboxGateway

PG_URL = "postgresql://postgres@127.0.0.1:5432/paybot_bench_pages"
REDIS_URL = "redis://127.0.0.1:6379/13"
# The clock the server runs at (its links and offers are seeded from it).
NOW = datetime(2026, 11, 25, 15, tzinfo=UTC)
READY_WITHIN_S = 60.0
PAY = "/portal/pay"
# A field value taken from the page before the post, as a browser's form would send it.
FROM_PAGE = "<from the page>"
PLAN_START = ("/portal/plan/start", {})
PLAN_METHOD = ("/portal/plan/method", {"method": FROM_PAGE})
PLAN_TERMS = ("/portal/plan/terms", {"esign_consent": "yes", "accept": "yes"})
PLAN_SIGN = ("/portal/plan/sign", {"kind": "typed", "signer_name": "Maria Lopez"})


@dataclass(frozen=True)
class Page:
    """A page the benchmark GETs, the link a session opens (a payment link or a plan offer's),
    and the form posts (path, fields) that lead a fresh session to it."""

    path: str
    link: str = "pay"
    steps: tuple[tuple[str, dict[str, str]], ...] = ()


def _pay(*steps: dict[str, str]) -> Page:
    return Page(PAY, "pay", tuple((PAY, step) for step in steps))


PAGES: dict[str, Page] = {
    "lookup": Page("/portal/"),
    "pay: balance": _pay(),
    "pay: contact": _pay({"action": "start"}),
    "pay: amount": _pay({"action": "start"}, {"action": "continue"}),
    "pay: method": _pay(
        {"action": "start"}, {"action": "continue"}, {"action": "continue", "amount": "50"}
    ),
    "pay: confirm": _pay(
        {"action": "start"},
        {"action": "continue"},
        {"action": "continue", "amount": "50"},
        {"action": "continue", "choice": "1"},
        {"action": "now"},
    ),
    "pay: agreement": _pay(
        {"action": "start"},
        {"action": "continue"},
        {"action": "continue", "amount": "50"},
        {"action": "continue", "choice": "1"},
        {"action": "now"},
        {"action": "confirm"},
    ),
    "plan: review": Page("/portal/plan", "plan"),
    "plan: method": Page("/portal/plan/method", "plan", (PLAN_START,)),
    "plan: terms": Page("/portal/plan/terms", "plan", (PLAN_START, PLAN_METHOD)),
    "plan: sign": Page("/portal/plan/sign", "plan", (PLAN_START, PLAN_METHOD, PLAN_TERMS)),
    "plan: confirmed": Page(
        "/portal/plan", "plan", (PLAN_START, PLAN_METHOD, PLAN_TERMS, PLAN_SIGN)
    ),
}
# A plan of three monthly installments that settles the seeded balance ($1,250.00).
PLAN_SCHEDULE = [["2026-12-01", 40000], ["2027-01-01", 40000], ["2027-02-01", 45000]]


async def reset_postgres() -> None:
    from sqlalchemy import text

    from bot.ledger.db import Database

    admin = Database("postgresql://postgres@127.0.0.1:5432/test")
    async with admin.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("DROP DATABASE IF EXISTS paybot_bench_pages WITH (FORCE)"))
        await conn.execute(text("CREATE DATABASE paybot_bench_pages"))
    await admin.close()


async def seed(database_url: str, accounts: int) -> list[dict[str, str]]:
    """Accounts with a saved card, each with a payment link and an open plan offer's link;
    returns the link paths per account, by kind ("pay", "plan")."""
    from datetime import timedelta

    from bot.ledger import queries as ledger

    # The server's own sandbox gateway starts empty; it accepts the customer ids made here.
    gateway = SandboxGateway()
    now = NOW
    paths = []
    database = Database(database_url)
    await database.migrate()
    async with database.session() as session:
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
            offer = Offer(
                account_id=account.id,
                kind="plan",
                total_cents=sum(cents for _, cents in PLAN_SCHEDULE),
                installment_count=len(PLAN_SCHEDULE),
                frequency="monthly",
                schedule=PLAN_SCHEDULE,
                expires_at=now + timedelta(days=7),
                status="open",
                created_at=now,
            )
            session.add(offer)
            await session.flush()
            plan_token = await ledger.create_link(
                session,
                account_id=account.id,
                at=now,
                lifetime=timedelta(days=7),
                purpose="plan_offer",
                offer_id=offer.id,
            )
            paths.append({"pay": f"/p/{token}", "plan": f"/p/{plan_token}"})
        await session.commit()
    await database.close()
    return paths


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(env: dict[str, str], port: int, freeze_gc: bool) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bench.portal_server", "--port", str(port)]
    command += ["--at", NOW.isoformat()] + ([] if freeze_gc else ["--no-freeze-gc"])
    return subprocess.Popen(command, env={**os.environ, **env}, cwd=Path(__file__).parent.parent)


async def wait_until_ready(server: subprocess.Popen[bytes], base_url: str) -> None:
    """Poll the health check (database and Redis reachable) until it answers 200."""
    deadline = time.perf_counter() + READY_WITHIN_S
    async with ClientSession() as client:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"portal server exited with {server.returncode} at start-up")
            try:
                async with client.get(f"{base_url}/healthz") as response:
                    if response.status == 200:
                        return
            except ClientError:
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError(f"portal server not ready after {READY_WITHIN_S:.0f} s")
            await asyncio.sleep(0.05)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def fetch_timings(base_url: str, label: str) -> tuple[list[float], list[int]]:
    """The server's recorded times (ms) and body sizes for one page; it forgets them."""
    async with ClientSession() as client:
        url = f"{base_url}/__bench/timings"
        async with client.get(url, params={"label": label, "reset": "1"}) as response:
            assert response.status == 200, response.status
            recorded = (await response.json())[label]
    return recorded["ms"], recorded["bytes"]


async def open_session(base_url: str, link: str, page: Page) -> ClientSession:
    """A browser session opened by the link and walked through the forms (CSRF included)."""
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[f"{base_url}/"])
    client = ClientSession(base_url=f"{base_url}/", cookie_jar=jar)
    async with client.get(link) as response:
        html = await response.text()
        assert response.status == 200, (response.status, link)
    for path, step in page.steps:
        fields = {"csrf_token": _field(html, "csrf_token")}
        if path == PAY:
            fields["state"] = _field(html, "state")
        fields.update({k: _field(html, k) if v == FROM_PAGE else v for k, v in step.items()})
        async with client.post(path, data=fields) as response:
            html = await response.text()
            assert response.status == 200, (response.status, path, step)
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
    backend: str,
    seconds: float,
    concurrency: int,
    fraction: float,
    only: str = "",
    freeze_gc: bool = True,
) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "services":
            await reset_postgres()
            env = {"DATABASE_URL": PG_URL, "REDIS_URL": REDIS_URL}
        else:
            # No REDIS_URL: in-process Redis, which is the server's alone.
            env = {"DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3", "REDIS_URL": ""}
        env |= {
            "PUBLIC_BASE_URL": "https://pay.bench.test",
            "SECRET_KEY": "bench",
            "PAYBOT_DATA_DIR": tmp,
        }
        pages = {label: page for label, page in PAGES.items() if only in label}
        links = await seed(env["DATABASE_URL"], concurrency * len(pages))
        port = _free_port()
        base_url = f"http://127.0.0.1:{port}"
        server = start_server(env, port, freeze_gc)
        try:
            await wait_until_ready(server, base_url)
            results = {}
            for index, (label, page) in enumerate(pages.items()):
                mine = links[index * concurrency : (index + 1) * concurrency]
                path = page.path
                clients = [await open_session(base_url, own[page.link], page) for own in mine]
                try:
                    deadline = time.perf_counter() + seconds
                    counts = await asyncio.gather(
                        *(hammer(c, path, label, deadline) for c in clients)
                    )
                    closed, _ = await fetch_timings(base_url, label)
                    max_rate = sum(counts) / seconds
                    await open_loop(clients, path, label, max_rate * fraction, seconds)
                    opened, sizes = await fetch_timings(base_url, label)
                finally:
                    for client in clients:
                        await client.close()
                results[label] = {
                    "max_req_per_s": round(max_rate, 1),
                    "closed_p50_ms": _p(closed, 0.5),
                    "closed_p99_ms": _p(closed, 0.99),
                    "open_rate": round(max_rate * fraction, 1),
                    "open_p50_ms": _p(opened, 0.5),
                    "open_p99_ms": _p(opened, 0.99),
                    "bytes": int(statistics.median(sizes)),
                }
            return results
        finally:
            stop_server(server)


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
    parser.add_argument("--pages", default="", help='only the pages whose name has this, "plan:"')
    parser.add_argument(
        "--no-freeze-gc",
        dest="freeze_gc",
        action="store_false",
        help="leave the server's start-up objects to the collector (paybot serve freezes them, "
        "as the benchmark's server does by default; without: full collections stall requests)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(
        run(args.backend, args.seconds, args.concurrency, args.fraction, args.pages, args.freeze_gc)
    )
    print(
        f"backend={args.backend} concurrency={args.concurrency} seconds/page={args.seconds} "
        f"open loop at {args.fraction:.0%} of max" + (" gc frozen" if args.freeze_gc else "")
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
