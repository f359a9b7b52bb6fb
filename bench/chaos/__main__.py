"""`python -m bench.chaos` (`make chaos`): set the stage, seed, run the customers while the faults
fall, let the system settle, check the invariants, print the table. Exit 1 on any violation.

Imports bench.chaos's modules, bot (the ledger's counts), tests.fakes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench.chaos import report
from bench.chaos.faults import KINDS, Injector
from bench.chaos.fleet import Fleet, paybot_env
from bench.chaos.services import PrivatePostgres, PrivateRedis
from bench.chaos.stage import SMS_PATH, STRIPE_WEBHOOK_SECRET, Stage, signed_sms
from bench.chaos.stripe_proxy import StripeProxy

SETTLE_WITHIN = 60.0  # after the load: events relayed, due charges made, emails sent
LATER_BY = timedelta(minutes=20)  # the time after the run, passed at once (settle)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--minutes", type=float, default=2.0, help="load with faults (2)")
    parser.add_argument("--customers", type=int, default=200, help="simulated customers (200)")
    parser.add_argument("--concurrency", type=int, default=24,
                        help="customers in a conversation at once (24)")
    parser.add_argument("--seed", type=int, default=7, help="the faults' and customers' seed")
    parser.add_argument("--no-faults", action="store_true", help="the load alone (a baseline)")
    parser.add_argument("--only", metavar="KIND,...", type=_kinds, default=KINDS,
                        help="only these faults: " + ", ".join(KINDS))
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    return parser.parse_args(argv)


def _kinds(value: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"unknown fault {unknown}; known: {', '.join(KINDS)}")
    return kinds


class Canary:
    """A text from a number of its own to one web process: is SMS answered there?"""

    def __init__(self) -> None:
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self.numbers = itertools.count(1)
        self.tag = secrets.token_hex(4)

    async def __call__(self, base_url: str) -> bool:
        sid = f"SMcanary{self.tag}{next(self.numbers):018d}"
        form, headers = signed_sms("+15550100999", "HELP", sid)
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self.http.post(base_url + SMS_PATH, data=form, headers=headers) as response:
                return response.status == 200 and "<Message>" in await response.text()
        return False

    async def close(self) -> None:
        await self.http.close()


async def settle(stage: Stage, proxy: StripeProxy, fleet: Fleet, within: float) -> dict[str, Any]:
    """Let what the load left in flight finish: Stripe's events taken, the charges due today
    made (or declined), the emails owed sent. Then the time after the run, passed at once: two
    worker passes at a moment LATER_BY ahead (`paybot worker --once --at`), by when the worker's
    recovery delay for a charge cut off mid-way (10 min) and its email retries (10 min after a
    refusal) have run out, as they would have on a real day."""
    started = time.monotonic()
    events_drained = await proxy.drain(within)
    left = await _left(stage)
    while any(left.values()) and time.monotonic() - started < within:
        await asyncio.sleep(1.0)
        left = await _left(stage)
    left_live = dict(left)
    later = datetime.now(UTC) + LATER_BY
    for _ in range(2):
        await fleet.worker_pass(at=later)
    await proxy.drain(within)  # the later passes' charges have events too
    return {"seconds": round(time.monotonic() - started, 1), "events_drained": events_drained,
            "left_with_live_workers": left_live, "left": await _left(stage, at=later)}


async def _left(stage: Stage, at: datetime | None = None) -> dict[str, int]:
    """Payments in flight or due by the customer's own date (the worker's rule), and emails
    not sent yet."""
    from zoneinfo import ZoneInfo

    from sqlalchemy import text

    from bot.ledger.db import Database

    moment = at or datetime.now(UTC)
    database = Database(stage.database_url)
    try:
        async with database.session() as session:
            rows = (await session.execute(text(
                "SELECT p.status, p.scheduled_for, a.timezone FROM payments p "
                "JOIN accounts a ON a.id = p.account_id "
                "WHERE p.status IN ('processing', 'scheduled')"))).all()
            emails = int(await session.scalar(text(
                "SELECT count(*) FROM outbound_emails WHERE status IN ('queued', 'sending')"))
                or 0)
    finally:
        await database.close()
    due = sum(1 for status, day, zone in rows
              if status == "processing"
              or day <= moment.astimezone(ZoneInfo(zone or "America/New_York")).date())
    return {"payments due or in flight": due, "emails not yet sent": emails}


async def run(args: argparse.Namespace) -> int:
    from bot.providers.localstripe import LocalStripe
    from tests.fakes.sendgrid_api import SendGridFake
    from tests.fakes.twilio_api import TwilioFake

    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="paybot-chaos-"))
    print(f"chaos: seed {args.seed}, {args.customers} customers, {args.minutes:g} min"
          f"{' without faults' if args.no_faults else ''}; work folder {folder}", flush=True)
    postgres, redis = PrivatePostgres(folder / "postgres"), PrivateRedis(folder / "redis")
    localstripe = twilio = sendgrid = proxy = fleet = canary = None
    health: asyncio.Task[None] | None = None
    code = 2
    keep = False
    try:
        await asyncio.gather(postgres.start(), redis.start())
        localstripe = await asyncio.to_thread(LocalStripe.start)
        twilio, sendgrid = await TwilioFake().start(), await SendGridFake().start()
        stage = Stage(database_url=postgres.url, redis_url=redis.url, web=None,  # type: ignore[arg-type]
                      localstripe_url=localstripe.url, stripe_api_url="", twilio=twilio,
                      sendgrid=sendgrid, rng=random.Random(rng.random()))
        proxy = await StripeProxy(localstripe.url, stage.charges, stage.pick_web,
                                  random.Random(rng.random())).start()
        stage.stripe_api_url = proxy.url
        await asyncio.to_thread(localstripe.register_webhook, "paybot", proxy.relay_url,
                                STRIPE_WEBHOOK_SECRET)
        env = paybot_env(database_url=postgres.url, redis_url=redis.url, stripe_api=proxy.url,
                         twilio_api=twilio.base_url, twilio_sid=twilio.account_sid,
                         sendgrid_host=sendgrid.base_url, sendgrid_key=sendgrid.api_key,
                         data_dir=folder / "data")
        fleet = Fleet(env, folder)
        stage.web = fleet
        await fleet.migrate()
        started = time.monotonic()
        customers = []
        if args.customers:
            from bench.chaos.seed import seed

            customers = await seed(stage, args.customers, datetime.now(UTC),
                                   random.Random(rng.random()))
        seeded = time.monotonic() - started
        await fleet.start_all()
        health = asyncio.get_running_loop().create_task(fleet.health_loop())
        print(f"chaos: seeded in {seeded:.0f}s; {len(fleet.web)} web processes and "
              f"{len(fleet.workers)} workers up; load for {args.minutes:g} min", flush=True)
        canary = Canary()
        injector = Injector(fleet, postgres, redis, proxy, sendgrid, random.Random(rng.random()),
                            canary)
        load_started = time.monotonic()
        until = load_started + args.minutes * 60
        tasks = []
        if customers:
            from bench.chaos.customers import run_customers

            tasks.append(run_customers(stage, customers, until=until,
                                       concurrency=args.concurrency))
        if not args.no_faults:
            # The last fault is repaired before the load stops: recovery is measured under load.
            tasks.append(injector.run(until=until - 15, kinds=args.only))
        outcome = await asyncio.gather(*tasks)
        stats = outcome[0] if customers else None
        load_seconds = time.monotonic() - load_started
        print(f"chaos: load done in {load_seconds:.0f}s, {len(injector.events)} faults; "
              "settling", flush=True)
        settled = await settle(stage, proxy, fleet, SETTLE_WITHIN)
        checks = []
        if customers:
            from bench.chaos.invariants import check

            checks = await check(stage, stats)
        exits = await fleet.stop_all()
        figures = await report.figures(
            stage=stage, stats=stats, events=injector.events, checks=checks, proxy=proxy.stats,
            fleet=fleet, exits=exits, settled=settled, load_seconds=load_seconds, args=args)
        print(report.table(figures), flush=True)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2, default=str))
        code = 0 if figures["violations"] == 0 else 1
        # A 500 a customer met is worth its logs even when every invariant held.
        served_500 = any("HTTP 500" in kind or kind == "http_500"
                         for kind in figures["load"].get("errors", {}))
        keep = keep or served_500
        return code
    finally:
        if health is not None:
            health.cancel()
        if fleet is not None:
            with contextlib.suppress(Exception):
                await fleet.stop_all()
        for closing in (canary, proxy, twilio, sendgrid):
            if closing is not None:
                with contextlib.suppress(Exception):
                    await closing.close()
        if localstripe is not None:
            localstripe.stop()
        await redis.stop()
        await postgres.stop("immediate")
        if args.keep or keep or code != 0:
            print(f"chaos: logs kept in {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
