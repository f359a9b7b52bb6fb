"""Scaffolding to develop the seed, the customers and the checks before __main__ lands (the
integrator may delete this file): the system without the fault schedule, one web kill.

    .venv/bin/python -m bench.chaos.dev_run --customers 30 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.chaos.customers import run_customers
from bench.chaos.fleet import Fleet, paybot_env
from bench.chaos.invariants import check
from bench.chaos.seed import seed
from bench.chaos.services import PrivatePostgres, PrivateRedis
from bench.chaos.stage import STRIPE_WEBHOOK_SECRET, Stage
from bench.chaos.stripe_proxy import StripeProxy
from bot.providers.localstripe import LocalStripe
from tests.fakes.sendgrid_api import SendGridFake
from tests.fakes.twilio_api import TwilioFake


async def main(customers: int, seconds: float, kill: bool, folder: Path) -> None:
    pg, redis = PrivatePostgres(folder / "pg"), PrivateRedis(folder / "redis")
    await pg.start()
    await redis.start()
    localstripe = LocalStripe.start()
    twilio, sendgrid = await TwilioFake().start(), await SendGridFake().start()
    rng = random.Random(7)
    fleet: Fleet | None = None
    stage = Stage(database_url=pg.url, redis_url=redis.url, web=None,  # type: ignore[arg-type]
                  localstripe_url=localstripe.url, stripe_api_url="", twilio=twilio,
                  sendgrid=sendgrid, rng=rng)
    proxy = await StripeProxy(localstripe.url, stage.charges, stage.pick_web, rng,
                              max_event_delay=5.0).start()
    stage.stripe_api_url = proxy.url
    try:
        await localstripe.register_webhook_async("paybot", proxy.relay_url, STRIPE_WEBHOOK_SECRET)
        env = paybot_env(database_url=pg.url, redis_url=redis.url, stripe_api=proxy.url,
                         twilio_api=twilio.base_url, twilio_sid=twilio.account_sid,
                         sendgrid_host=sendgrid.base_url, sendgrid_key=sendgrid.api_key,
                         data_dir=folder)
        fleet = Fleet(env, folder, web=2, workers=1)
        stage.web = fleet
        await fleet.migrate()
        t0 = time.monotonic()
        made = await seed(stage, customers, datetime.now(UTC), rng)
        print(f"seeded {len(made)} in {time.monotonic() - t0:.1f}s: "
              f"{sum(c.plan_id is not None for c in made)} plans, "
              f"{sum(c.offers for c in made)} with offers, {sum(c.declines for c in made)} "
              "declining", flush=True)
        await fleet.start_all()
        health = asyncio.create_task(fleet.health_loop())

        async def killer() -> None:
            await asyncio.sleep(seconds / 3)
            victim = fleet.web[0]
            await fleet.kill9(victim)
            print("killed", victim.name, flush=True)
            await asyncio.sleep(3)
            await fleet.start(victim)

        tasks = [asyncio.create_task(killer())] if kill else []
        stats = await run_customers(stage, made, until=time.monotonic() + seconds,
                                    concurrency=max(4, customers // 2))
        await asyncio.gather(*tasks)
        print(f"messages {stats.messages} attempts {stats.attempts} retries {stats.retries} "
              f"unanswered {stats.unanswered} web {stats.web_visits}/{stats.web_payments} "
              f"sms asked {stats.sms_payments_asked} done {stats.sms_payments_done} "
              f"signed {stats.plans_signed} extras {stats.extras} "
              f"brought forward {stats.installments_brought_forward}", flush=True)
        print("errors", dict(stats.errors), flush=True)
        with (Path(__file__).parent / "dev_transcript.txt").open("w") as out:
            for record in sorted(stats.records, key=lambda r: (r.phone, r.attempts[0].started)):
                answer = " | ".join(record.answer or [])
                out.write(f"{record.phone} > {record.body}\n    < {answer}\n")
        await asyncio.sleep(8)  # the worker's passes
        await proxy.drain(30)
        health.cancel()
        for result in await check(stage, stats):
            print(f"{result.name}: examined {result.examined}, "
                  f"{len(result.violations)} violations", flush=True)
            for line in result.violations[:15]:
                print("   !", line)
                for record in stats.records:
                    if record.sid in line:
                        for a in record.attempts:
                            print(f"       {a.started:.2f} {a.seconds:.2f}s {a.status} "
                                  f"{a.error} {a.texts}")
            for line in result.notes[:5]:
                print("   .", line)
        for member in fleet.members:
            if member.crashes:
                print(member.name, "crashed", member.crashes)
    finally:
        if fleet is not None:
            await fleet.stop_all()
        await proxy.close()
        await twilio.close()
        await sendgrid.close()
        localstripe.stop()
        await redis.stop()
        await pg.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--kill", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chaos-dev-") as tmp:
        asyncio.run(main(args.customers, args.seconds, args.kill, Path(tmp)))
