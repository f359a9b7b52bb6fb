"""The worker (`paybot worker`): charges every due scheduled payment exactly once.

One pass (``Worker.run_once``; ``paybot worker --once`` runs one and exits, the daemon runs one
every ``interval`` seconds until SIGTERM or Ctrl-C):

1. **Recover** rows a crash or an unreachable processor left ``processing`` with no
   ``processor_id`` (the ledger does not know whether the processor charged them):

   * ``failure_code == "processor_unavailable"`` (the processor could not be reached, or its
     answer was lost): retried on the next pass (``retry_unavailable_after``, default at once);
   * anything else (a worker or web process died between the claim or the charge and the
     write-back): retried once it has been untouched for ``recovery_delay`` (10 minutes), far
     longer than any charge call takes, so a charge still in flight elsewhere is never retried.

   A retry sends the payment's *own* idempotency key again: real Stripe answers a repeated key
   (kept at least 24 hours) with the first request's result and charges nothing more, so the
   retry completes the payment whether or not the first request got through. localstripe
   ignores idempotency keys: there a retry of a request that did reach it makes a second
   PaymentIntent, which is why a retry is only ever sent for a row the ledger shows unconfirmed
   (``processing``, no ``processor_id``; a Stripe event that arrived meanwhile has recorded the
   charge and takes the row out of that set), and why a gateway that can look a charge up by
   our reference (an optional ``find_charge`` method, see ``ChargeLookup``) is asked first.
   A row whose first attempt is older than ``replay_window`` (23 h, inside Stripe's 24 h key
   lifetime) is not retried blindly: without a look-up it is marked ``needs_review``
   (``failure_code``) and left ``processing`` for a person.

2. **Claim** due rows in batches: status ``scheduled`` and ``scheduled_for`` on or before the
   customer's *local* today (``accounts.timezone``; the same rule the conversation uses to
   decide "now or later"), outside the customer's quiet hours (the creditor's flow settings,
   8 a.m. to 9 p.m. by default) because a receipt or a decline notice follows the charge at
   once. The candidates' ids are read once a pass (the ``(status, scheduled_for)`` index), then
   each batch is read with ``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL: two workers read
   disjoint rows; SQLAlchemy leaves the clause out on SQLite), and each row is claimed
   with a conditional ``UPDATE payments SET status='processing' WHERE id=:id AND
   status='scheduled'``: only a row count of 1 makes it ours. That is the portable guard; it
   holds on SQLite, where several processes share one writer and no row locks. The claim is
   committed before the processor is called.

3. **Charge** each claimed row (``concurrency`` at a time, each request let through by the rate
   limiter): an ``off_session`` PaymentIntent for amount plus fee with the payment's stable
   idempotency key; the answer is written back with ``apply_charge_result`` on the row read
   afresh and locked, and only while it is still ``processing`` (a Stripe event that recorded
   the outcome first has told the customer already). Then, after the commit, one email: the
   receipt (Paid, Pending) or the decline notice. A crash between the charge and the write-back
   leaves the row ``processing``: step 1 of a later pass completes it.

4. **Outreach** (``bot/outreach/queue.py``, after the charges; ``outreach=False`` turns it off):
   offers past their expiry are expired (links revoked, one notice queued), reminders queued,
   then every proactive message whose time has come is delivered once, opt-outs, quiet hours and
   the frequency cap respected; each text first takes a permit from the SMS limiter
   (``sms_rate``, 1 a second by default: a Twilio long code's rate).

``GatewayUnavailable`` leaves the row ``processing`` (marked ``processor_unavailable``) for the
next pass and stops this pass claiming more; claimed rows not yet sent go back to ``scheduled``.
Stopping (SIGTERM) does the same: in-flight charges finish and are written back, the rest is
released.

**Decline retry rule** (``retry_declined_after_days``, ``max_decline_retries``; a creditor may
override both with the keys ``decline_retry_days`` and ``decline_max_retries`` in its settings):
off by default: a declined payment stays Declined, the customer gets one notice with a personalized
link (a week, or through the retry date when later) to the page where they pick another method
for what is still scheduled and pay the missed amount, and the sentence that it will not be retried
automatically. When
set to N days, a declined payment (except one the bank wants the customer to approve, or one
with no method left) gets a new ``scheduled`` row for the same amount and method (the plan's
method when it has one) on the customer's local today + N days, with the idempotency key
``<key>~r<k>``, at most ``max_decline_retries`` times; the notice names that date.

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
import contextlib
import hashlib
import logging
import math
import re
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bot.clock import Clock, SystemClock
from bot.config.settings import FlowSettings, Settings
from bot.ledger import queries as ledger
from bot.ledger.db import Database
from bot.ledger.models import Account, AuditEvent, Creditor, Payment, PaymentMethod, Plan
from bot.outreach import email_outbox
from bot.outreach import queue as outreach
from bot.outreach.compliance import in_quiet_hours
from bot.outreach.notifications import Notifier
from bot.payments import collectable
from bot.payments.service import PaymentOutcome, apply_charge_result
from bot.plans import agreement_copy
from bot.plans.signing import plan_paid_email
from bot.providers.payments import (
    ChargeResult,
    GatewayUnavailable,
    PaymentError,
    PaymentGateway,
    polite_decline_message,
)
from bot.security import new_payment_reference

log = logging.getLogger(__name__)

UNAVAILABLE = "processor_unavailable"  # the code PaymentService uses too
NEEDS_REVIEW = "needs_review"
METHOD_MISSING = "payment_method_missing"
CLAIM_EVENT = "charge_claimed"
# A decline the same method will not cure by itself: no automatic retry.
NOT_RETRIED = frozenset({"authentication_required", METHOD_MISSING})
# No time zone is more than a day ahead of UTC (UTC+14 at most).
_ZONE_LEAD = timedelta(days=1)
# Where an account's zone cannot be read, a date is due only once it has begun everywhere in the
# US (the last place to reach a date is Hawaii).
_LATEST_US_ZONE = ZoneInfo("Pacific/Honolulu")
_RETRY_SUFFIX = re.compile(r"~r(\d+)$")
_KEY_LENGTH = 80  # payments.idempotency_key


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class WorkerConfig:
    rate: float = 20.0  # processor requests per second (Stripe: 25/s test mode, 100/s live)
    min_gap_share: float = 0.5  # two requests at least this share of 1/rate apart
    batch: int = 20  # rows claimed per transaction
    # Charges in flight at once: rate x (processor latency + ledger time) must fit in it.
    # None: max(8, 0.3 s worth of the rate).
    concurrency: int | None = None
    interval: float = 30.0  # seconds between passes (daemon)
    recovery_delay: timedelta = timedelta(minutes=10)
    retry_unavailable_after: timedelta = timedelta(0)  # 0: the next pass
    replay_window: timedelta = timedelta(hours=23)  # Stripe keeps idempotency keys >= 24 h
    retry_declined_after_days: int | None = None  # None: a decline is not retried
    max_decline_retries: int = 1
    respect_quiet_hours: bool = True  # charge (and so email) only in the customer's daytime
    # Proactive messages (bot/outreach/queue.py) after the charges of each pass, texts at most
    # sms_rate a second (a Twilio long code sends about 1 message a second; shared by every
    # worker through Redis, as the processor rate is).
    outreach: bool = True
    sms_rate: float = 1.0

    @property
    def slots(self) -> int:
        if self.concurrency is not None:
            return self.concurrency
        return max(8, math.ceil(self.rate * 0.3))

    def __post_init__(self) -> None:
        _window(self.rate, self.min_gap_share)
        if not self.sms_rate > 0:
            raise ValueError("the SMS rate must be a positive number of texts per second")
        for name in ("batch", "slots"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.interval < 0:
            raise ValueError("the interval must not be negative")
        if self.recovery_delay <= timedelta(0):
            raise ValueError("the recovery delay must be positive")
        if self.replay_window <= self.recovery_delay:
            raise ValueError("the replay window must be longer than the recovery delay")
        if self.retry_declined_after_days is not None and self.retry_declined_after_days < 1:
            raise ValueError("a declined payment is retried at least one day later")
        if self.max_decline_retries < 0:
            raise ValueError("max_decline_retries must not be negative")


@dataclass
class PassReport:
    claimed: int = 0  # due rows taken this pass
    recovered: int = 0  # unconfirmed rows taken again
    reconciled: int = 0  # ... of which the processor already held the charge (look-up)
    paid: int = 0
    pending: int = 0
    declined: int = 0
    unavailable: int = 0  # left processing for the next pass
    released: int = 0  # claimed but not sent (stop, processor down): back to scheduled
    held: int = 0  # due, but quiet hours in the customer's zone
    held_for_settlement: int = 0  # due, but a settlement on its way may settle the account
    needs_review: int = 0
    retries_scheduled: int = 0
    kept: int = 0  # someone else (a Stripe event) recorded the outcome first
    errors: int = 0
    # Proactive messages (bot/outreach/queue.py)
    offers_expired: int = 0
    outreach_queued: int = 0
    outreach_sent: int = 0
    outreach_held: int = 0
    outreach_skipped: int = 0
    outreach_failed: int = 0
    # Receipts, notices and agreement copies sent late (bot/outreach/email_outbox.py, agreement_copy.py)
    emails_sent: int = 0
    emails_retrying: int = 0
    emails_skipped: int = 0
    emails_failed: int = 0
    emails_cut_off: int = 0  # found `sending` long after their claim: now `unknown`

    @property
    def summary(self) -> str:
        parts = [f"{f.name.replace('_', ' ')} {getattr(self, f.name)}" for f in fields(self)
                 if getattr(self, f.name)]
        return "worker pass: " + (", ".join(parts) if parts else "nothing due")


@dataclass(frozen=True)
class _Job:
    payment_id: int
    recovery: bool


@dataclass(frozen=True)
class _Rules:
    """What a creditor decides for its payments (cached for one pass)."""

    flow: FlowSettings
    brand: str
    disclosure: str
    retry_days: int | None
    max_retries: int


@runtime_checkable
class ChargeLookup(Protocol):
    """Optional on a gateway: the charge already made for our reference, if any.

    With it, a row the ledger shows unconfirmed is first looked up at the processor, and a
    charge found there is recorded instead of sending another request (what makes recovery
    exact on a processor that ignores idempotency keys, and after Stripe forgot the key)."""

    async def find_charge(
        self, *, customer_id: str, reference: str, idempotency_key: str
    ) -> ChargeResult | None: ...


# --------------------------------------------------------------------------- rate limits


class RateLimiter(Protocol):
    async def acquire(self) -> None:
        """Return when one more processor request may go out."""


def _window(rate: float, min_gap_share: float, margin: float = 0.0) -> tuple[int, float, float]:
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
        self.permits, self.window, self.min_gap = _window(rate, min_gap_share, margin)
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
        permits, window, gap = _window(rate, min_gap_share, margin)
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


# --------------------------------------------------------------------------- the worker


class Worker:
    def __init__(
        self,
        *,
        database: Database,
        gateway: PaymentGateway,
        notifier: Notifier,
        settings: Settings,
        clock: Clock,
        config: WorkerConfig | None = None,
        limiter: RateLimiter | None = None,
        name: str = "worker",
        sms_limiter: RateLimiter | None = None,
    ) -> None:
        self.database = database
        self.gateway = gateway
        self.notifier = notifier
        self.settings = settings
        self.seal = email_outbox.Seal(settings.secret_key)  # decline notices carry a link
        self.clock = clock
        self.config = config or WorkerConfig()
        self.limiter = limiter or LocalRateLimiter(
            self.config.rate, min_gap_share=self.config.min_gap_share
        )
        self.name = name
        self.sms_limiter = sms_limiter or LocalRateLimiter(
            self.config.sms_rate, min_gap_share=self.config.min_gap_share
        )
        self._find_charge = gateway.find_charge if isinstance(gateway, ChargeLookup) else None
        self._stop = asyncio.Event()
        self._halted = False
        self._rules_cache: dict[str | None, _Rules] = {}

    # ------------------------------------------------------------------ running

    def request_stop(self) -> None:
        """Finish what is in flight, claim nothing more (SIGTERM, Ctrl-C)."""
        self._stop.set()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """The daemon: a pass, then wait ``interval`` (or until stopped), again."""
        if stop is not None:
            self._stop = stop
        while not self._stop.is_set():
            try:
                report = await self.run_once()
            except Exception:
                log.exception("worker pass failed; trying again in %.0f s", self.config.interval)
            else:
                if report.summary != "worker pass: nothing due":
                    log.info("%s", report.summary)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.config.interval)

    async def run_once(self) -> PassReport:
        """Recover unconfirmed rows, then claim and charge everything due now."""
        report = PassReport()
        self._halted = False
        self._rules_cache = {}
        queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=self.config.batch)
        consumers = [
            asyncio.create_task(self._consume(queue, report))
            for _ in range(self.config.slots)
        ]
        try:
            await self._produce(self._unconfirmed_ids, self._claim_unconfirmed, queue, report)
            await self._produce(self._due_ids, self._claim_due, queue, report)
        finally:
            for _ in consumers:
                await queue.put(None)
            await asyncio.gather(*consumers)
        if self.config.outreach and not self._stop.is_set():
            await self._outreach(report)
        if not self._stop.is_set():
            await self._overdue_emails(report)
        return report

    async def _overdue_emails(self, report: PassReport) -> None:
        """Receipts, notices and agreement copies a stopped process left unsent, and refusals
        due for a retry."""
        try:
            emails = await email_outbox.deliver_overdue(
                self.database, self.notifier, clock=self.clock, seal=self.seal
            )
            emails.add(await agreement_copy.deliver_overdue_copies(
                self.database, self.notifier, clock=self.clock, default_brand=self.settings.brand
            ))
            async with self.database.writer(), self.database.session() as session:
                report.emails_cut_off = await email_outbox.mark_cut_off(
                    session, now=self.clock.now()
                )
        except Exception:
            report.errors += 1
            log.exception("overdue emails not sent this pass")
            return
        if report.emails_cut_off:
            log.warning("%d emails or texts were being sent when a process stopped: whether they "
                        "left is not known, so they are not sent again; they are marked 'unknown' "
                        "(`paybot emails list` shows the emails)", report.emails_cut_off)
        report.emails_sent += emails.sent
        report.emails_retrying += emails.retrying
        report.emails_skipped += emails.skipped
        report.emails_failed += emails.failed

    async def _outreach(self, report: PassReport) -> None:
        """Offers expired, reminders queued, then every proactive message whose time has come."""
        try:
            planned = await outreach.plan_outreach(
                database=self.database, settings=self.settings, clock=self.clock, actor=self.name
            )
            delivered = await outreach.deliver_due(
                database=self.database, settings=self.settings, clock=self.clock,
                sms=self.notifier.sms, email=self.notifier.email, sms_limiter=self.sms_limiter,
                actor=self.name, should_stop=self._stop.is_set,
            )
        except Exception:
            report.errors += 1
            log.exception("outreach not completed this pass")
            return
        planned.add(delivered)
        report.offers_expired += planned.expired
        report.outreach_queued += planned.queued
        report.outreach_sent += planned.sent
        report.outreach_held += planned.held
        report.outreach_skipped += planned.skipped
        report.outreach_failed += planned.failed

    def _stopping(self) -> bool:
        return self._halted or self._stop.is_set()

    async def _produce(
        self,
        candidates: Callable[[], Awaitable[list[int]]],
        claim: Callable[[list[int], PassReport], Awaitable[list[_Job]]],
        queue: asyncio.Queue[_Job | None],
        report: PassReport,
    ) -> None:
        """The candidates' ids first (one query on the (status, scheduled_for) index), then
        claimed `batch` at a time, each batch in its own short transaction."""
        ids = [] if self._stopping() else await candidates()
        for start in range(0, len(ids), self.config.batch):
            if self._stopping():
                return
            for job in await claim(ids[start : start + self.config.batch], report):
                await queue.put(job)

    async def _consume(self, queue: asyncio.Queue[_Job | None], report: PassReport) -> None:
        while (job := await queue.get()) is not None:
            try:
                if self._stopping():
                    await self._release(job, report)
                else:
                    await self._process(job, report)
            except Exception:
                # The row stays `processing`: a later pass recovers it with the same key.
                report.errors += 1
                log.exception("payment %d: charge not completed; left for recovery",
                              job.payment_id)

    # ------------------------------------------------------------------ rules

    async def _rules(self, session: Any, creditor_code: str | None) -> _Rules:
        cached = self._rules_cache.get(creditor_code)
        if cached is not None:
            return cached
        creditor = await session.get(Creditor, creditor_code) if creditor_code else None
        overrides = dict(creditor.settings or {}) if creditor is not None else {}
        retry_days, max_retries = self.config.retry_declined_after_days, \
            self.config.max_decline_retries
        if "decline_retry_days" in overrides:
            value = overrides["decline_retry_days"]
            if value is None or (_whole(value) and value >= 1):
                retry_days = value
            else:
                log.error("creditor %s: decline_retry_days must be a whole number of days >= 1 "
                          "or null; ignored", creditor_code)
        if "decline_max_retries" in overrides:
            value = overrides["decline_max_retries"]
            if _whole(value) and value >= 0:
                max_retries = value
            else:
                log.error("creditor %s: decline_max_retries must be a whole number; ignored",
                          creditor_code)
        rules = _Rules(
            flow=self.settings.flow.for_creditor(creditor),
            brand=creditor.name if creditor is not None else self.settings.brand,
            disclosure=creditor.disclosure if creditor is not None else "",
            retry_days=retry_days,
            max_retries=max_retries,
        )
        self._rules_cache[creditor_code] = rules
        return rules

    def _held(self, now: datetime, timezone: str | None, rules: _Rules) -> bool:
        return self.config.respect_quiet_hours and in_quiet_hours(now, timezone, rules.flow)

    # ------------------------------------------------------------------ claiming

    async def _due_ids(self) -> list[int]:
        """Scheduled rows whose date has begun somewhere (no zone is a day ahead of UTC),
        oldest date first; whether it has begun for the customer is checked at the claim."""
        horizon = self.clock.now().astimezone(UTC).date() + _ZONE_LEAD
        async with self.database.session() as session:
            rows = await session.execute(
                select(Payment.id, Payment.scheduled_for).where(
                    Payment.status == "scheduled", Payment.scheduled_for <= horizon
                )
            )
            return [row.id for row in sorted(rows, key=lambda r: (r.scheduled_for, r.id))]

    async def _unconfirmed_ids(self) -> list[int]:
        async with self.database.session() as session:
            rows = await session.scalars(
                select(Payment.id).where(
                    Payment.status == "processing",
                    Payment.processor_id.is_(None),
                    Payment.failure_code.is_distinct_from(NEEDS_REVIEW),
                )
            )
            return sorted(rows)

    async def _claim_due(self, ids: list[int], report: PassReport) -> list[_Job]:
        now = self.clock.now()
        jobs: list[_Job] = []
        taken: list[Any] = []
        async with self.database.session() as session:
            closed, settling = await self._fit_to_balances(session, ids, now)
            rows = (
                await session.execute(
                    select(
                        Payment.id,
                        Payment.reference,
                        Payment.scheduled_for,
                        Payment.account_id,
                        Account.timezone,
                        Account.creditor_code,
                        Plan.status.label("plan_status"),
                    )
                    .join(Account, Account.id == Payment.account_id)
                    .outerjoin(Plan, Plan.id == Payment.plan_id)
                    .where(Payment.id.in_(ids), Payment.status == "scheduled")
                    .order_by(Payment.scheduled_for, Payment.id)
                    .with_for_update(skip_locked=True, of=Payment)
                )
            ).all()
            for row in rows:
                if row.plan_status == "canceled":
                    continue  # the cancellation cancels the rows; never charge meanwhile
                if row.scheduled_for > local_today(now, row.timezone):
                    continue
                if row.account_id in settling:
                    report.held_for_settlement += 1
                    continue
                rules = await self._rules(session, row.creditor_code)
                if self._held(now, row.timezone, rules):
                    report.held += 1
                    continue
                claimed = await session.execute(
                    update(Payment)
                    .where(Payment.id == row.id, Payment.status == "scheduled")
                    .values(status="processing", failure_code=None, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
                if claimed.rowcount != 1:
                    continue  # another worker took it
                jobs.append(_Job(row.id, recovery=False))
                taken.append(row)
            for row in taken:  # added together: one INSERT for the batch
                await ledger.audit(
                    session,
                    CLAIM_EVENT,
                    at=now,
                    actor=self.name[:40],
                    account_id=row.account_id,
                    reference=row.reference,
                )
            notices = [await self._plan_paid_notice(session, plan, now) for plan in closed]
            await session.commit()  # the claim is kept before any processor call
        report.claimed += len(jobs)
        await self._send_notices([n for n in notices if n is not None])
        return jobs

    async def _fit_to_balances(
        self, session: Any, ids: list[int], now: datetime
    ) -> tuple[list[Plan], set[int]]:
        """The rule of bot/payments/collectable.py before anything is charged: on each account of the
        batch (locked, in id order, before its payments, as every other writer does) what is
        scheduled beyond the balance is cut, the latest installments first; a plan left with
        nothing to charge is closed as paid in full. Returns the plans closed, and the accounts
        whose settlement is on its way: their scheduled payments wait (charged, they would come
        on top of a settlement that settles everything; canceled, they would be lost if its bank
        debit fails)."""
        account_ids = sorted(set(await session.scalars(
            select(Payment.account_id).where(Payment.id.in_(ids), Payment.status == "scheduled")
        )))
        closed: list[Plan] = []
        settling: set[int] = set()
        for account_id in account_ids:
            account = await collectable.lock_account(session, account_id)
            state = await collectable.collectable(
                session, account_id, balance_cents=account.balance_cents
            )
            if state.settling:
                settling.add(account_id)
                continue
            cuts = await collectable.fit_scheduled(session, account_id, at=now, state=state)
            if not cuts:
                continue
            await ledger.audit(
                session, "scheduled_cut_to_balance", at=now, actor=self.name[:40],
                account_id=account_id,
                cuts=[{"reference": p.reference, "old_cents": old, "new_cents": p.amount_cents}
                      for p, old in cuts],
            )
            plan_ids = {p.plan_id for p, _ in cuts if p.plan_id is not None}
            closed += await collectable.close_paid_plans(session, plan_ids, at=now)
        return closed, settling

    async def _plan_paid_notice(self, session: Any, plan: Plan, now: datetime) -> int | None:
        """The customer's email that the plan is paid in full, queued with the change."""
        account = await session.get(Account, plan.account_id)
        await ledger.audit(session, "plan_paid_in_full", at=now, actor=self.name[:40],
                           account_id=plan.account_id, plan_id=plan.id)
        if account is None or not account.email:
            return None
        rules = await self._rules(session, account.creditor_code)
        try:
            email = await plan_paid_email(session, self.notifier.env, account, plan,
                                          brand=rules.brand)
        except Exception:
            log.exception("plan %d: the paid-in-full notice could not be written", plan.id)
            return None
        row = email_outbox.queue(session, email, kind="plan_paid", account_id=account.id, at=now)
        await session.flush()
        return row.id

    async def _send_notices(self, email_ids: list[int]) -> None:
        if not email_ids:
            return
        try:
            await email_outbox.deliver(self.database, self.notifier, email_ids, clock=self.clock)
        except Exception:  # queued: the next pass sends them
            log.exception("plan notices not sent now; left queued")

    async def _claim_unconfirmed(self, ids: list[int], report: PassReport) -> list[_Job]:
        """Rows the ledger shows `processing` with no processor id: unknown outcome."""
        now = self.clock.now()
        jobs: list[_Job] = []
        async with self.database.session() as session:
            rows = (
                await session.execute(
                    select(
                        Payment.id,
                        Payment.reference,
                        Payment.account_id,
                        Payment.updated_at,
                        Payment.created_at,
                        Payment.failure_code,
                        Account.timezone,
                        Account.creditor_code,
                    )
                    .join(Account, Account.id == Payment.account_id)
                    .where(
                        Payment.id.in_(ids),
                        Payment.status == "processing",
                        Payment.processor_id.is_(None),
                        Payment.failure_code.is_distinct_from(NEEDS_REVIEW),
                    )
                    .order_by(Payment.id)
                    .with_for_update(skip_locked=True, of=Payment)
                )
            ).all()
            for row in rows:
                waited = now - row.updated_at
                if not (
                    waited >= self.config.recovery_delay
                    or (row.failure_code == UNAVAILABLE
                        and waited >= self.config.retry_unavailable_after)
                ):
                    continue  # possibly still in flight elsewhere
                rules = await self._rules(session, row.creditor_code)
                if self._held(now, row.timezone, rules):
                    report.held += 1
                    continue
                first_attempt = await _first_attempt_at(session, row)
                too_old = now - first_attempt > self.config.replay_window
                values: dict[str, Any] = {"failure_code": None, "updated_at": now}
                if too_old and self._find_charge is None:
                    values["failure_code"] = NEEDS_REVIEW
                # Compare-and-set on what we read: of two workers, only one changes the row.
                taken = await session.execute(
                    update(Payment)
                    .where(
                        Payment.id == row.id,
                        Payment.status == "processing",
                        Payment.processor_id.is_(None),
                        Payment.updated_at == row.updated_at,
                        Payment.failure_code.is_not_distinct_from(row.failure_code),
                    )
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                if taken.rowcount != 1:
                    continue
                if values["failure_code"] == NEEDS_REVIEW:
                    report.needs_review += 1
                    log.error(
                        "payment %s: outcome unknown since %s, beyond the processor's "
                        "idempotency window; not retried, left for review",
                        row.reference, first_attempt.isoformat(),
                    )
                    await ledger.audit(
                        session, "payment_needs_review", at=now, actor=self.name[:40],
                        account_id=row.account_id, reference=row.reference,
                        first_attempt=first_attempt.isoformat(),
                    )
                    continue
                await ledger.audit(
                    session, "charge_recovery", at=now, actor=self.name[:40],
                    account_id=row.account_id, reference=row.reference,
                    after=row.failure_code or "interrupted",
                )
                jobs.append(_Job(row.id, recovery=True))
            await session.commit()
        report.recovered += len(jobs)
        return jobs

    async def _release(self, job: _Job, report: PassReport) -> None:
        """A claimed row we will not send now (stopping, processor down): nothing reached the
        processor, so a due row goes back to `scheduled`; a recovered one waits for the next
        pass as `processor_unavailable`."""
        now = self.clock.now()
        values: dict[str, Any] = (
            {"failure_code": UNAVAILABLE, "updated_at": now}
            if job.recovery
            else {"status": "scheduled", "failure_code": None, "updated_at": now}
        )
        async with self.database.session() as session:
            await session.execute(
                update(Payment)
                .where(
                    Payment.id == job.payment_id,
                    Payment.status == "processing",
                    Payment.processor_id.is_(None),
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        report.released += 1

    async def _mark_unavailable(self, job: _Job, report: PassReport) -> None:
        self._halted = True  # the processor is down: claim nothing more this pass
        report.unavailable += 1
        async with self.database.session() as session:
            await session.execute(
                update(Payment)
                .where(
                    Payment.id == job.payment_id,
                    Payment.status == "processing",
                    Payment.processor_id.is_(None),
                )
                .values(failure_code=UNAVAILABLE, updated_at=self.clock.now())
                .execution_options(synchronize_session=False)
            )
            await session.commit()

    # ------------------------------------------------------------------ charging

    async def _permit(self, job: _Job, report: PassReport) -> bool:
        try:
            await self.limiter.acquire()
        except Exception:
            log.exception("rate limiter unavailable: nothing is sent this pass")
            self._halted = True
            await self._release(job, report)
            return False
        return True

    async def _process(self, job: _Job, report: PassReport) -> None:
        async with self.database.session() as session:
            found = (
                await session.execute(
                    select(Payment, Account, PaymentMethod)
                    .join(Account, Account.id == Payment.account_id)
                    .outerjoin(PaymentMethod, PaymentMethod.id == Payment.method_id)
                    .where(Payment.id == job.payment_id)
                )
            ).first()
            if found is None or found[0].status != "processing" or found[0].processor_id:
                report.kept += 1
                return  # recorded meanwhile (a Stripe event)
            payment, account, method = found
            rules = await self._rules(session, account.creditor_code)

        customer_id = account.processor_customer_id
        result: ChargeResult | None = None
        if job.recovery and self._find_charge is not None and customer_id:
            if not await self._permit(job, report):
                return
            try:
                result = await self._find_charge(
                    customer_id=customer_id,
                    reference=payment.reference,
                    idempotency_key=payment.idempotency_key,
                )
            except GatewayUnavailable:
                await self._mark_unavailable(job, report)
                return
            if result is not None:
                report.reconciled += 1
                log.info("payment %s: the processor already holds %s (%s); recorded",
                         payment.reference, result.processor_id, result.status)
        if result is None and (method is None or not customer_id):
            result = ChargeResult(
                status="declined",
                processor_id=None,
                failure_code=METHOD_MISSING,
                failure_message="The payment method on file is no longer available.",
            )
        if result is None:
            assert method is not None and customer_id
            if not await self._permit(job, report):
                return
            try:
                result = await self.gateway.charge(
                    customer_id=customer_id,
                    method_ref=method.processor_ref,
                    amount_cents=payment.amount_cents + payment.fee_cents,
                    idempotency_key=payment.idempotency_key,
                    metadata={
                        "paybot_reference": payment.reference,
                        "account_ref": account.account_ref,
                    },
                    method_kind=method.kind,
                )
            except GatewayUnavailable:
                log.warning("payment %s: processor unavailable; retried next pass",
                            payment.reference)
                await self._mark_unavailable(job, report)
                return
            except PaymentError as exc:
                if exc.code == "idempotency_error":
                    await self._needs_review(job, payment.reference, str(exc), report)
                    return
                # Refused outright (4xx): nothing was charged.
                result = ChargeResult(
                    status="declined",
                    processor_id=None,
                    failure_code=(exc.code or "processor_error")[:64],
                )
        label = f"{method.brand} ending {method.last4}" if method else "your payment method"
        await self._write_back(job, result, rules, report, label)

    async def _needs_review(
        self, job: _Job, reference: str, reason: str, report: PassReport
    ) -> None:
        now = self.clock.now()
        report.needs_review += 1
        log.error("payment %s: %s; left for review", reference, reason)
        async with self.database.session() as session:
            await session.execute(
                update(Payment)
                .where(Payment.id == job.payment_id, Payment.status == "processing")
                .values(failure_code=NEEDS_REVIEW, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            payment = await session.get(Payment, job.payment_id)
            await ledger.audit(
                session, "payment_needs_review", at=now, actor=self.name[:40],
                account_id=payment.account_id if payment else None, reference=reference,
                reason=reason[:200],
            )
            await session.commit()

    async def _write_back(
        self,
        job: _Job,
        result: ChargeResult,
        rules: _Rules,
        report: PassReport,
        method_label: str,
    ) -> None:
        now = self.clock.now()
        async with self.database.session() as session:
            # A Stripe event may have recorded this charge while we waited: read afresh, locked.
            payment = await session.get(
                Payment, job.payment_id, with_for_update=True, populate_existing=True
            )
            if payment is None or payment.status != "processing":
                report.kept += 1
                log.info("payment %d: outcome recorded meanwhile (%s); kept",
                         job.payment_id, payment.status if payment else "gone")
                return
            await apply_charge_result(
                session,
                payment,
                status=result.status,
                processor_id=result.processor_id,
                failure_code=result.failure_code,
                at=now,
            )
            if payment.status != "paid":  # a payment made Paid is audited as such already
                await ledger.audit(
                    session, "scheduled_charge", at=now, actor=self.name[:40],
                    account_id=payment.account_id, reference=payment.reference,
                    status=payment.status, failure_code=payment.failure_code,
                    recovery=job.recovery,
                )
            # Loaded (locked) already when the payment was paid; else read now, in this session.
            account = await session.get(Account, payment.account_id)
            assert account is not None
            notices = []
            if payment.plan_id is not None and payment.status == "paid":
                for plan in await collectable.close_paid_plans(session, {payment.plan_id}, at=now):
                    notices.append(await self._plan_paid_notice(session, plan, now))
                await collectable.close_plan_run_its_course(session, payment.plan_id)
            outcome = PaymentOutcome(
                reference=payment.reference,
                status=payment.status,
                amount_cents=payment.amount_cents,
                method_label=method_label,
                pay_on=None,
                failure_message=result.failure_message,
                fee_cents=payment.fee_cents,
            )
            # Receipts and decline notices are about a payment the customer authorized: they go
            # even after an email unsubscribe (which stops campaigns and reminders, not these).
            # A receipt is written with the payment it reports.
            receipt = email_outbox.queue_receipt(
                session, self.notifier, account, outcome, brand=rules.brand, at=now
            )
            await session.commit()
        await self._send_notices([n for n in notices if n is not None])
        status = payment.status
        setattr(report, status, getattr(report, status) + 1)
        log.info("payment %s: %s %s", payment.reference, status, payment.processor_id or "")

        retry_on = None
        if status == "declined":
            retry_on = await self._schedule_retry(payment, account, rules, now, report)
        if not account.email:
            log.info("payment %s: no email on file, none sent", payment.reference)
            return
        try:
            if receipt is not None:
                await email_outbox.deliver(self.database, self.notifier, [receipt.id],
                                           clock=self.clock)
            elif status == "declined":
                update_url = await self._update_method_link(account, now, retry_on)
                email = self._decline_email(account, outcome, rules, result, retry_on, update_url)
                await email_outbox.send_now(self.database, self.notifier, email, kind="decline",
                                            account_id=account.id, clock=self.clock,
                                            seal=self.seal)
        except Exception:
            log.exception("payment %s: the %s email could not be sent", payment.reference, status)

    def _decline_email(
        self,
        account: Account,
        outcome: PaymentOutcome,
        rules: _Rules,
        result: ChargeResult,
        retry_on: date | None,
        update_url: str | None = None,
    ) -> dict[str, Any]:
        # The same notice a Stripe event sends (webhooks/stripe.py), plus the retry rule.
        from webhooks.stripe import NOT_RETRIED, Notice, decline_email

        reason = result.failure_message or polite_decline_message(
            result.failure_code, result.decline_code
        )
        if retry_on is not None:
            rule = f"We will try this payment again on {retry_on:%b} {retry_on.day}, " \
                   f"{retry_on.year}."
        else:
            rule = NOT_RETRIED
        notice = Notice(
            kind="decline",
            account=account,
            outcome=PaymentOutcome(
                reference=outcome.reference,
                status="declined",
                amount_cents=outcome.amount_cents,
                method_label=outcome.method_label,
                pay_on=None,
                failure_message=f"{reason} {rule}",
            ),
            creditor_name=rules.brand,
            disclosure=rules.disclosure,
            update_url=update_url,
        )
        return decline_email(self.notifier, notice, brand=rules.brand)

    async def _update_method_link(
        self, account: Account, now: datetime, retry_on: date | None
    ) -> str | None:
        """The notice's link to update the method; without one the notice still goes (it says
        how to get a link by text)."""
        from webhooks.stripe import update_method_link

        try:
            async with self.database.session() as session:
                url = await update_method_link(
                    session,
                    account=account,
                    at=now,
                    public_base_url=self.settings.public_base_url,
                    retry_on=retry_on,
                )
                await session.commit()
        except Exception:
            log.exception("account %s: the update-method link could not be made", account.id)
            return None
        return url

    async def _schedule_retry(
        self, payment: Payment, account: Account, rules: _Rules, now: datetime,
        report: PassReport,
    ) -> date | None:
        """The decline retry rule: a new scheduled row N days on, at most max_retries times."""
        if rules.retry_days is None or payment.failure_code in NOT_RETRIED:
            return None
        match = _RETRY_SUFFIX.search(payment.idempotency_key)
        done = int(match.group(1)) if match else 0
        if done >= rules.max_retries:
            return None
        base = payment.idempotency_key[: match.start()] if match else payment.idempotency_key
        key = f"{base}~r{done + 1}"
        if len(key) > _KEY_LENGTH:
            key = f"retry:{hashlib.sha256(base.encode()).hexdigest()[:40]}~r{done + 1}"
        retry_on = local_today(now, account.timezone) + timedelta(days=rules.retry_days)
        for _ in range(3):  # a clash of the short random reference: draw another
            async with self.database.session() as session:
                method_id = payment.method_id
                if payment.plan_id is not None:
                    plan = await session.get(Plan, payment.plan_id)
                    if plan is None or plan.status == "canceled":
                        return None
                    method_id = plan.method_id or method_id
                if await session.scalar(select(Payment.id).where(Payment.idempotency_key == key)):
                    return retry_on  # scheduled already (this write-back ran twice)
                # A retry is a new promise: never more than is open now (bot/payments/collectable.py).
                state = await collectable.locked_collectable(session, payment.account_id)
                amount = min(payment.amount_cents, state.open_cents)
                if amount <= 0:
                    return None
                retry = Payment(
                    reference=new_payment_reference(),
                    idempotency_key=key,
                    account_id=payment.account_id,
                    method_id=method_id,
                    offer_id=payment.offer_id,
                    plan_id=payment.plan_id,
                    installment_number=payment.installment_number,
                    amount_cents=amount,
                    fee_cents=payment.fee_cents,
                    scheduled_for=retry_on,
                    status="scheduled",
                    channel=payment.channel,
                    created_at=now,
                    updated_at=now,
                )
                session.add(retry)
                await ledger.audit(
                    session, "decline_retry_scheduled", at=now, actor=self.name[:40],
                    account_id=payment.account_id, reference=retry.reference,
                    retry_of=payment.reference, scheduled_for=retry_on.isoformat(),
                )
                try:
                    await session.commit()
                except IntegrityError:
                    await session.rollback()
                    continue
                report.retries_scheduled += 1
                return retry_on
        log.error("payment %s: the retry could not be scheduled", payment.reference)
        return None


# --------------------------------------------------------------------------- helpers


def local_today(now: datetime, timezone: str | None) -> date:
    """The customer's date; an unreadable zone counts as the last US zone to reach a date."""
    try:
        zone = ZoneInfo(timezone) if timezone else _LATEST_US_ZONE
    except (ZoneInfoNotFoundError, ValueError, OSError):
        zone = _LATEST_US_ZONE
    return now.astimezone(zone).date()


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def _first_attempt_at(session: Any, row: Any) -> datetime:
    """When this payment's key first went (or may have gone) to the processor: its first claim
    by a worker, else its creation (a payment made "now" is charged as it is written)."""
    events = await session.execute(
        select(AuditEvent.at, AuditEvent.detail)
        .where(AuditEvent.account_id == row.account_id, AuditEvent.kind == CLAIM_EVENT)
        .order_by(AuditEvent.id)
    )
    for at, detail in events:
        if isinstance(detail, dict) and detail.get("reference") == row.reference:
            return at
    return row.created_at


# --------------------------------------------------------------------------- the command


@dataclass
class _Resources:
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    async def close(self) -> None:
        for close in reversed(self.closers):
            try:
                await close()
            except Exception:
                log.exception("closing a worker resource failed")


async def run_worker(
    settings: Settings, config: WorkerConfig, *, once: bool, clock: Clock | None = None
) -> int:
    """`paybot worker`: the server's settings and providers, the same migrations."""
    from bot.coordination import connect_redis
    from bot.providers import build_providers

    resources = _Resources()
    database = Database(settings.database_url)
    resources.closers.append(database.close)
    providers = build_providers(settings)
    resources.closers.append(providers.close)
    try:
        if settings.migrate_on_start:
            await database.migrate()
        if settings.redis_url:
            redis = connect_redis(settings.redis_url)
            resources.closers.append(redis.aclose)
            limiter: RateLimiter = RedisRateLimiter(
                redis, config.rate, min_gap_share=config.min_gap_share
            )
            sms_limiter: RateLimiter = RedisRateLimiter(
                redis, config.sms_rate, min_gap_share=config.min_gap_share,
                key="paybot:rate:sms",
            )
            shared = "shared through Redis"
        else:
            limiter = LocalRateLimiter(config.rate, min_gap_share=config.min_gap_share)
            sms_limiter = LocalRateLimiter(config.sms_rate, min_gap_share=config.min_gap_share)
            shared = "this process only (no REDIS_URL)"
        worker = Worker(
            database=database,
            gateway=providers.payments,
            notifier=Notifier(sms=providers.sms, email=providers.email, brand=settings.brand),
            settings=settings,
            clock=clock or SystemClock(),
            config=config,
            limiter=limiter,
            sms_limiter=sms_limiter,
        )
        if once:
            report = await worker.run_once()
            print(report.summary)
            return 1 if report.errors else 0
        log.info("worker started: at most %g processor requests/s (%s), a pass every %g s",
                 config.rate, shared, config.interval)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()

        def on_signal() -> None:
            if stop.is_set() and main is not None:
                main.cancel()  # a second signal: stop now (unconfirmed rows are recovered later)
                return
            log.info("stopping: finishing the charges in flight (signal again to stop now)")
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            # Where the loop cannot watch signals (Windows: NotImplementedError; a thread other
            # than the main one: RuntimeError) the graceful stop is not offered, and Ctrl-C
            # stops the worker at once (KeyboardInterrupt, exit code 130) as a second signal
            # would: rows left half-done are recovered by the next pass.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal)
        try:
            await worker.run(stop)
        except asyncio.CancelledError:
            log.warning("worker stopped at once: unconfirmed charges are recovered by the next run")
            return 130
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):  # as when added
                    loop.remove_signal_handler(sig)
        log.info("worker stopped")
        return 0
    finally:
        await resources.close()
