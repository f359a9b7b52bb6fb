"""The rate limiters every processor request and every outreach text waits on.

**Rate limit**: every processor request (a charge, a look-up) first takes a permit from a
``RateLimiter``: ``LocalRateLimiter`` in the process, or ``RedisRateLimiter`` shared by every
worker on the same Redis (the same rule, run atomically in Redis on Redis's clock). The rule is a
sliding window over the actual grant times: at most ``rate`` permits in any one second (for a
whole rate), and two permits at least ``min_gap_share / rate`` apart so a backlog never
leaves in one burst; the window is a little longer than a second (1 ms locally, 20 ms through
Redis, where a grant reaches its worker a round trip later). Both take the clock and the
``sleep`` function, so tests run without sleeping. One charge is one request on real Stripe
(``StripeGateway`` adds a charge look-up after a decline only when the error names no
PaymentIntent, as localstripe's do). A 429 from Stripe arrives as ``GatewayUnavailable``: the
pass stops and the row is retried on the next one.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class RateLimiter(Protocol):
    async def acquire(self) -> None:
        """Return when one more processor request may go out."""


def sliding_window(
    rate: float, min_gap_share: float, margin: float = 0.0
) -> tuple[int, float, float]:
    """(permits, window seconds, least gap seconds) for a rate in requests per second."""
    if not rate > 0:
        raise ValueError("the rate must be a positive number of requests per second")
    if not 0 <= min_gap_share <= 1:
        raise ValueError("min_gap_share must be between 0 and 1")
    if not 0 <= margin < 1:
        raise ValueError("the margin is a fraction of a second")
    permits = max(1, math.floor(rate))
    return permits, permits / rate + margin, min_gap_share / rate


class LocalRateLimiter:
    """At most ``floor(rate)`` permits in any window of ``floor(rate)/rate`` seconds (for a whole
    rate: at most ``rate`` in any one second), in one process.

    A sliding window over the actual grant times, not a schedule: a waiter that wakes late
    (a busy event loop) delays only its own permit and the window catches up, so the sustained
    rate stays at the limit while no window ever holds more. Two permits are also at least
    ``min_gap_share / rate`` apart, so a backlog never leaves as one burst (with the default 0.5,
    at most twice the rate at any instant; 1.0 spaces permits evenly, at the cost of the
    lateness of every wake-up). Waiters queue on a lock (first come, first served); only the
    head sleeps. The window is ``margin`` (1 ms) longer than a second: the request leaves a few
    microseconds after its permit, and a whole second to the microsecond would be a tie.
    """

    def __init__(
        self,
        rate: float,
        *,
        min_gap_share: float = 0.5,
        margin: float = 0.001,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.permits, self.window, self.min_gap = sliding_window(rate, min_gap_share, margin)
        self._clock = clock
        self._sleep = sleep
        self._granted: deque[float] = deque(maxlen=self.permits)
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                wait = 0.0
                if len(self._granted) == self.permits:
                    wait = self._granted[0] + self.window - now
                if self._granted:
                    wait = max(wait, self._granted[-1] + self.min_gap - now)
                if wait <= 0:
                    self._granted.append(now)
                    return
                await self._sleep(min(wait, self.window))


# KEYS[1]: the list of the latest grant times (newest first), in microseconds.
# ARGV: permits, window, least gap (microseconds), then "now" in microseconds or "" for Redis's
# own clock (one clock for every worker, whatever their machines say).
_SLIDING_WINDOW = """
local permits = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local gap = tonumber(ARGV[3])
local now
if ARGV[4] ~= '' then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local wait = 0
local held = redis.call('LLEN', KEYS[1])
if held >= permits then
  wait = tonumber(redis.call('LINDEX', KEYS[1], permits - 1)) + window - now
end
if held > 0 then
  local since_last = tonumber(redis.call('LINDEX', KEYS[1], 0)) + gap - now
  if since_last > wait then wait = since_last end
end
if wait > 0 then
  if wait > window then wait = window end
  return math.ceil(wait)
end
redis.call('LPUSH', KEYS[1], string.format('%.0f', now))
redis.call('LTRIM', KEYS[1], 0, permits - 1)
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil(window / 1000) + 1000))
return 0
"""


class RedisRateLimiter:
    """``LocalRateLimiter``'s rule for every worker on one Redis: the latest grant times live in
    Redis and a permit is checked and taken atomically (a Lua script) on Redis's clock. A grant
    reaches its worker a round trip later, or later still when the worker's event loop is busy:
    the window is ``margin`` (20 ms) longer than a second so that this jitter does not put more
    than the rate into a second as the requests leave (measured: 5 ms is not enough under load,
    see bench/worker_rate.py). Within a process, waiters queue on a lock. Redis unreachable:
    ``acquire`` raises, and the worker sends nothing (the job is released)."""

    def __init__(
        self,
        redis: Any,
        rate: float,
        *,
        min_gap_share: float = 0.5,
        margin: float = 0.02,
        key: str = "paybot:rate:processor",
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] | None = None,  # seconds; None: Redis's own TIME (production)
    ) -> None:
        self.rate = rate
        self.key = key
        permits, window, gap = sliding_window(rate, min_gap_share, margin)
        self._args = [permits, round(window * 1_000_000), round(gap * 1_000_000)]
        self._sleep = sleep
        self._clock = clock
        self._script = redis.register_script(_SLIDING_WINDOW)
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = "" if self._clock is None else str(round(self._clock() * 1_000_000))
                wait_us = int(await self._script(keys=[self.key], args=[*self._args, now]))
                if wait_us <= 0:
                    return
                await self._sleep(wait_us / 1_000_000)

