"""The faults, on a seeded random schedule: each is applied, held a while, repaired, and its
time to recover measured (a canary's text answered by every live web process again).

Imports only the standard library and bench.chaos (services, fleet, stripe_proxy, stage)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.chaos.fleet import Fleet
    from bench.chaos.services import PrivatePostgres, PrivateRedis
    from bench.chaos.stripe_proxy import StripeProxy
    from tests.fakes.sendgrid_api import SendGridFake

KINDS = (
    "kill -9 web",
    "kill -9 worker",
    "redis FLUSHALL",
    "redis restart",
    "postgres restart",
    "postgres terminate",
    "stripe 500",
    "stripe hang",
    "sendgrid refusing",
)


@dataclass
class FaultEvent:
    kind: str
    target: str
    started: float  # time.time(), as the customers' records
    repaired: float = 0.0  # the moment it was undone (or, for a one-off blow, the blow)
    recovered: float = 0.0  # the canary answered everywhere again; 0: not within the limit

    @property
    def recovery_seconds(self) -> float | None:
        return self.recovered - self.repaired if self.recovered else None


@dataclass
class Injector:
    fleet: Fleet
    postgres: PrivatePostgres
    redis: PrivateRedis
    stripe: StripeProxy
    sendgrid: SendGridFake
    rng: random.Random
    # An SMS turn sent to one web process; True when it was answered (bench.chaos.__main__).
    canary: Callable[[str], Awaitable[bool]]
    events: list[FaultEvent] = field(default_factory=list)
    recover_within: float = 90.0

    async def run(self, *, until: float, every: tuple[float, float] = (2.0, 6.0),
                  kinds: tuple[str, ...] = KINDS) -> None:
        """One fault after another until `until` (time.monotonic()), every kind in turn before
        any repeats (so a short run still meets each kind), in a seeded order."""
        bag: list[str] = []
        while time.monotonic() < until:
            await asyncio.sleep(self.rng.uniform(*every))
            if time.monotonic() >= until:
                break
            if not bag:
                bag = list(kinds)
                self.rng.shuffle(bag)
            await self.inject(bag.pop())

    async def inject(self, kind: str) -> FaultEvent:
        event = FaultEvent(kind, "", time.time())
        self.events.append(event)
        hold = self.rng.uniform(2.0, 6.0)
        if kind in ("kill -9 web", "kill -9 worker"):
            members = self.fleet.web if kind.endswith("web") else self.fleet.workers
            member = self.rng.choice(members)
            event.target = member.name
            await self.fleet.kill9(member)
            await asyncio.sleep(hold)  # the supervisor's restart delay
            await self.fleet.start(member)
        elif kind == "redis FLUSHALL":
            await self.redis.flushall()
        elif kind == "redis restart":
            await self.redis.restart(down_for=hold)
        elif kind == "postgres restart":
            mode = self.rng.choice(("fast", "immediate"))
            event.target = mode
            await self.postgres.restart(down_for=hold, mode=mode)
        elif kind == "postgres terminate":
            event.target = f"{await self.postgres.terminate_connections()} connections"
        elif kind in ("stripe 500", "stripe hang"):
            self.stripe.mode = "error" if kind == "stripe 500" else "hang"
            await asyncio.sleep(hold * 2)
            self.stripe.mode = "ok"
        elif kind == "sendgrid refusing":
            self.sendgrid.refusing = 503
            await asyncio.sleep(hold * 2)
            self.sendgrid.refusing = 0
        else:
            raise ValueError(kind)
        event.repaired = time.time()
        await self._measure_recovery(event)
        return event

    async def _measure_recovery(self, event: FaultEvent) -> None:
        deadline = event.repaired + self.recover_within
        while time.time() < deadline:
            urls = self.fleet.live_urls()
            if len(urls) == len(self.fleet.web):
                answers = await asyncio.gather(*(self.canary(url) for url in urls))
                if all(answers):
                    event.recovered = time.time()
                    return
            await asyncio.sleep(0.2)
