"""How much of the configured processor rate the worker sustains, and that it never goes over.

    .venv/bin/python -m bench.worker_rate [--backend embedded|services] [--rate 25,100]
        [--latency 0.05] [--seconds 15] [--workers 1] [--concurrency N] [--json FILE]

For each rate: seeds rate x seconds due payments (spread over 100 accounts), then runs
``Worker.run_once`` (``--workers`` of them at once, each with its own SQL engine, sharing one
limiter: a ``LocalRateLimiter`` in this process, or with ``--backend services`` a
``RedisRateLimiter`` in Redis, as separate worker processes would) against the sandbox gateway
wrapped with ``--latency`` seconds per charge (a realistic Stripe round trip). Every charge
request's start time is recorded. Reported:

* share: the requests started in the whole seconds from the first one, per second, as a share
  of the configured rate (target >= 95%);
* max/s: the most requests in any one-second window (sliding, half-open), never above the rate;
* the pass's wall time and each worker's report.

The embedded backend is a temporary SQLite file; services uses its own PostgreSQL database
(default paybot_worker_bench, created and emptied here) and Redis db 12.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bot.clock import FrozenClock
from bot.config.settings import Settings
from bot.ledger.db import Database
from bot.ledger.models import Account, AuditEvent, Base, Payment, PaymentMethod
from bot.outreach.notifications import Notifier
from bot.providers.email import SandboxEmail
from bot.providers.payments import ChargeResult
from bot.providers.sandbox_gateway import SandboxGateway
from bot.providers.sms import SandboxSms
from bot.worker.loop import LocalRateLimiter, RateLimiter, RedisRateLimiter, Worker, WorkerConfig

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/paybot_worker_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/12"  # 13, 14: other benches; 15: the tests
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 10 a.m. in New York: inside the day window
ACCOUNTS = 100


class SlowGateway:
    """The sandbox, answering after ``latency`` seconds; records when each request started."""

    def __init__(self, latency: float) -> None:
        self.inner = SandboxGateway()
        self.latency = latency
        self.starts: list[float] = []

    async def charge(self, **kwargs: Any) -> ChargeResult:
        self.starts.append(time.monotonic())
        await asyncio.sleep(self.latency)
        return await self.inner.charge(**kwargs)

    async def close(self) -> None:
        await self.inner.close()


def max_in_any_second(starts: list[float]) -> int:
    starts = sorted(starts)
    best, lo = 0, 0
    for hi, t in enumerate(starts):
        while starts[lo] <= t - 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def reset(database: Database) -> None:
    from sqlalchemy import delete

    async with database.session() as session:
        for table in (AuditEvent, Payment, PaymentMethod, Account):
            await session.execute(delete(table))
        await session.commit()


async def seed(database: Database, payments: int) -> None:
    from sqlalchemy import insert, select

    async with database.session() as session:
        await session.execute(insert(Account), [
            {"account_ref": f"BENCH-{n:04d}", "first_name": "Bench", "last_name": f"N{n}",
             "email": f"bench{n}@example.com", "balance_cents": 10**9,
             "timezone": "America/New_York", "processor_customer_id": f"cus_bench{n:04d}",
             "created_at": NOW, "updated_at": NOW}
            for n in range(ACCOUNTS)
        ])
        ids = list(await session.scalars(select(Account.id).order_by(Account.id)))
        await session.execute(insert(PaymentMethod), [
            {"account_id": a, "processor_ref": "pm_card_visa", "kind": "card", "brand": "Visa",
             "last4": "4242", "is_default": True, "created_at": NOW} for a in ids
        ])
        methods = {account_id: method_id for account_id, method_id in await session.execute(
            select(PaymentMethod.account_id, PaymentMethod.id))}
        await session.execute(insert(Payment), [
            {"reference": f"B-{n:07d}", "idempotency_key": f"bench:{n}",
             "account_id": ids[n % ACCOUNTS], "method_id": methods[ids[n % ACCOUNTS]],
             "amount_cents": 1000, "fee_cents": 0, "scheduled_for": NOW.date(),
             "status": "scheduled", "channel": "sms", "created_at": NOW, "updated_at": NOW}
            for n in range(payments)
        ])
        await session.commit()


async def run_rate(args: argparse.Namespace, url: str, rate: float, redis: Any) -> dict[str, Any]:
    payments = int(rate * args.seconds)
    setup = Database(url)
    try:
        await reset(setup)
        await seed(setup, payments)
    finally:
        await setup.close()

    gateway = SlowGateway(args.latency)
    config = WorkerConfig(rate=rate, batch=args.batch, concurrency=args.concurrency)
    concurrency = config.slots
    settings = Settings(database_url=url)
    notifier = Notifier(sms=SandboxSms(), email=SandboxEmail(), brand="PayBot")
    shared: RateLimiter | None = (
        None if redis is not None
        else LocalRateLimiter(rate, min_gap_share=args.min_gap_share, margin=args.local_margin)
    )
    if redis is not None:
        await redis.delete("paybot:rate:bench")
    engines = [Database(url) for _ in range(args.workers)]
    workers = [
        Worker(database=db, gateway=gateway, notifier=notifier,  # type: ignore[arg-type]
               settings=settings, clock=FrozenClock(NOW), config=config,
               limiter=shared or RedisRateLimiter(redis, rate, key="paybot:rate:bench",
                                                     min_gap_share=args.min_gap_share,
                                                     margin=args.margin),
               name=f"bench-{n}")
        for n, db in enumerate(engines)
    ]
    started = time.monotonic()
    cpu = time.process_time()
    try:
        reports = await asyncio.gather(*(w.run_once() for w in workers))
    finally:
        for db in engines:
            await db.close()
    wall = time.monotonic() - started
    starts = sorted(gateway.starts)
    # Whole seconds from the first request: each may hold at most `rate`; the share is what they
    # held on average (the partial last second is left out).
    whole = math.floor(starts[-1] - starts[0]) if starts else 0
    in_whole = sum(1 for t in starts if t < starts[0] + whole)
    achieved = in_whole / whole if whole else float("nan")
    per_second = [0] * whole
    for t in starts:
        if t < starts[0] + whole:
            per_second[int(t - starts[0])] += 1
    paid = sum(r.paid for r in reports)
    return {
        "rate": rate,
        "payments": payments,
        "paid": paid,
        "requests": len(starts),
        "workers": args.workers,
        "concurrency": concurrency,
        "latency_s": args.latency,
        "limiter": "redis" if redis is not None else "process",
        "achieved_per_s": round(achieved, 2),
        "share": round(achieved / rate, 4),
        "max_in_any_second": max_in_any_second(starts),
        "per_second": per_second,
        "cpu_s": round(time.process_time() - cpu, 2),
        "wall_s": round(wall, 2),
        "errors": sum(r.errors for r in reports),
    }


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    redis = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend == "embedded":
            url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        else:
            url = args.database_url
            dbname = urlparse(url).path.lstrip("/")
            if dbname in {"", "test", "postgres", "paybot_bench"} or dbname.startswith(
                "paybot_test"
            ):
                sys.exit(f"bench: refusing database {dbname!r}: use one of its own")
            import asyncpg
            import redis.asyncio as aioredis

            parsed = urlparse(url)
            admin = await asyncpg.connect(parsed._replace(path="/postgres").geturl())
            try:
                if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1",
                                            dbname):
                    await admin.execute(f'CREATE DATABASE "{dbname}"')
            finally:
                await admin.close()
            if args.limiter != "local":
                redis = aioredis.Redis.from_url(args.redis_url)
        database = Database(url)
        try:
            await database.migrate()
        finally:
            await database.close()
        assert Base  # the schema comes from the migrations, as in production
        results = []
        try:
            for rate in args.rate:
                result = await run_rate(args, url, rate, redis)
                results.append(result)
                print(
                    f"rate {rate:g}/s, {result['workers']} worker(s), limiter "
                    f"{result['limiter']}, latency {args.latency * 1000:.0f} ms, concurrency "
                    f"{result['concurrency']}: {result['paid']}/{result['payments']} paid, "
                    f"{result['achieved_per_s']}/s sustained = {result['share']:.1%} of the "
                    f"limit, at most {result['max_in_any_second']} in any second, "
                    f"{result['wall_s']} s ({result['cpu_s']} s CPU), errors {result['errors']}; "
                    f"slowest seconds {sorted(result['per_second'])[:3]}"
                )
        finally:
            if redis is not None:
                await redis.aclose()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["embedded", "services"], default="embedded")
    parser.add_argument("--rate", default="25,100", help="limits to measure, e.g. 25,100")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--seconds", type=float, default=15.0, help="backlog = rate x seconds")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--min-gap-share", type=float, default=0.5)
    parser.add_argument("--limiter", choices=["local", "redis"], default=None,
                        help="default: redis with --backend services, else local")
    parser.add_argument("--margin", type=float, default=0.02,
                        help="RedisRateLimiter's window margin, seconds")
    parser.add_argument("--local-margin", type=float, default=0.001,
                        help="LocalRateLimiter's window margin, seconds")
    parser.add_argument("--database-url", default=DEFAULT_PG)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    args.rate = [float(r) for r in args.rate.split(",")]
    results = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
