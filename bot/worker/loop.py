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

5. **Handoff waits** (``handoff_waits.py``): requests no agent claimed within the creditor's
   ``agent_wait_minutes`` time out (the customer is told, the bot answers again, the request
   stays queued); a customer an agent owns but has not answered in that time is told once.

6. **Overdue emails**: receipts, notices and agreement copies a stopped process left unsent.

Each job is a module of its own: recovering and claiming in bot/worker/claims.py, charging and
the write-back in charges.py, the decline retry rule and notice in declines.py, outreach in
outreach_pass.py, handoff waits in handoff_waits.py, overdue emails in overdue.py; the
processor's rate limit in rate_limits.py, the configuration and the pass's report in config.py.
This module keeps the loop (one producer claims, ``concurrency`` consumers charge, then the other
jobs run) and ``run_worker``, the ``paybot worker`` command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from bot.clock import Clock, SystemClock
from bot.config.settings import Settings
from bot.ledger.db import Database
from bot.outreach import email_outbox
from bot.outreach.notifications import Notifier
from bot.providers.payments import PaymentGateway
from bot.worker.agent_webhook_pass import deliver_agent_webhooks
from bot.worker.charges import ChargeLookup, Charges
from bot.worker.claims import Claims, Job
from bot.worker.config import PassReport, WorkerConfig
from bot.worker.declines import Declines
from bot.worker.handoff_waits import HandoffWaits
from bot.worker.outreach_pass import run_outreach_pass
from bot.worker.overdue import send_overdue_emails
from bot.worker.plan_notices import PlanNotices
from bot.worker.rate_limits import LocalRateLimiter, RateLimiter, RedisRateLimiter
from bot.worker.rules import CreditorRules

# What `paybot worker`, the demo and bench/worker_rate.py import from here.
__all__ = [
    "LocalRateLimiter",
    "PassReport",
    "RateLimiter",
    "RedisRateLimiter",
    "Worker",
    "WorkerConfig",
    "run_worker",
]

log = logging.getLogger(__name__)


class Worker:
    """One worker: each pass recovers, claims and charges, then runs outreach and overdue emails.
    The jobs are units of their own (``claims``, ``charges``, ...); this class runs them."""

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
        self.rules = CreditorRules(settings, self.config)
        self.notices = PlanNotices(
            database=database, notifier=notifier, clock=clock, rules=self.rules, name=name
        )
        self.claims = Claims(
            database=database, clock=clock, config=self.config, rules=self.rules,
            notices=self.notices, name=name, can_look_up=isinstance(gateway, ChargeLookup),
        )
        self.declines = Declines(
            database=database, notifier=notifier, settings=settings, clock=clock,
            seal=self.seal, name=name,
        )
        self.charges = Charges(
            database=database, gateway=gateway, limiter=self.limiter, notifier=notifier,
            clock=clock, rules=self.rules, claims=self.claims, notices=self.notices,
            declines=self.declines, name=name,
        )
        self.handoff_waits = HandoffWaits(
            database=database, notifier=notifier, settings=settings, clock=clock,
            sms_limiter=self.sms_limiter,
        )
        self._stop = asyncio.Event()

    # ------------------------------------------------------------------ running

    def request_stop(self) -> None:
        """Finish what is in flight, claim nothing more (SIGTERM, Ctrl-C)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        return self._stop.is_set()

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
        self.charges.halted = False
        self.rules.clear()
        queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=self.config.batch)
        consumers = [
            asyncio.create_task(self._consume(queue, report))
            for _ in range(self.config.slots)
        ]
        try:
            await self._produce(
                self.claims.unconfirmed_ids, self.claims.claim_unconfirmed, queue, report
            )
            await self._produce(self.claims.due_ids, self.claims.claim_due, queue, report)
        finally:
            for _ in consumers:
                await queue.put(None)
            await asyncio.gather(*consumers)
        if self.config.outreach and not self._stop.is_set():
            await run_outreach_pass(
                report, database=self.database, settings=self.settings, clock=self.clock,
                notifier=self.notifier, sms_limiter=self.sms_limiter, actor=self.name,
                should_stop=self._stop.is_set,
            )
        if not self._stop.is_set():  # no one who asked for a person waits in silence
            await self.handoff_waits.run(report)
        if not self._stop.is_set():
            await deliver_agent_webhooks(
                report, database=self.database, settings=self.settings, clock=self.clock
            )
        if not self._stop.is_set():
            await send_overdue_emails(
                report, database=self.database, notifier=self.notifier, clock=self.clock,
                seal=self.seal, default_brand=self.settings.brand,
            )
        return report

    def _stopping(self) -> bool:
        return self.charges.halted or self._stop.is_set()

    async def _produce(
        self,
        candidates: Callable[[], Awaitable[list[int]]],
        claim: Callable[[list[int], PassReport], Awaitable[list[Job]]],
        queue: asyncio.Queue[Job | None],
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

    async def _consume(self, queue: asyncio.Queue[Job | None], report: PassReport) -> None:
        while (job := await queue.get()) is not None:
            try:
                if self._stopping():
                    await self.claims.release(job, report)
                else:
                    await self.charges.process(job, report)
            except Exception:
                # The row stays `processing`: a later pass recovers it with the same key.
                report.errors += 1
                log.exception("payment %d: charge not completed; left for recovery",
                              job.payment_id)


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


async def _until_stopped(worker: Worker, *, once: bool, grace: float) -> int:
    """Run the worker (one pass, or the daemon) until done or stopped. The first SIGTERM or
    Ctrl-C stops claiming: charges in flight finish and are written back, claimed rows not yet
    sent go back to ``scheduled``; after ``grace`` seconds, or at a second signal, what is still
    running is cancelled (a charge whose processor call had started stays ``processing`` for the
    recovery of unconfirmed rows)."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    cut_off: list[str] = []
    timers: list[asyncio.TimerHandle] = []

    def cancel(why: str) -> None:
        if main is not None and not cut_off:
            cut_off.append(why)
            main.cancel()

    def on_signal() -> None:
        if worker.stopping:
            cancel("signal")  # a second signal: stop now
            return
        log.info("stopping: finishing the charges in flight for up to %g s (signal again to "
                 "stop now)", grace)
        worker.request_stop()
        timers.append(loop.call_later(grace, cancel, "grace"))

    # Only signals no one else handles: a caller with handlers of its own (the demo runs a
    # pass inside its loop) keeps them.
    watched = [sig for sig in (signal.SIGTERM, signal.SIGINT)
               if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler)]
    for sig in watched:
        # Where the loop cannot watch signals (Windows: NotImplementedError; a thread other
        # than the main one: RuntimeError) the graceful stop is not offered, and Ctrl-C
        # stops the worker at once (KeyboardInterrupt, exit code 130) as a second signal
        # would: rows left half-done are recovered by the next pass.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    try:
        if once:
            report = await worker.run_once()
            print(report.summary, flush=True)
            code = 1 if report.errors else 0
        else:
            await worker.run()
            code = 0
    except asyncio.CancelledError:
        if not cut_off:
            raise
        log.warning("worker stopped %s: unconfirmed charges are recovered by the next run",
                    "at once" if cut_off[0] == "signal" else f"after the {grace:g} s grace")
        return 130 if cut_off[0] == "signal" else 0
    finally:
        for timer in timers:
            timer.cancel()
        for sig in watched:
            with contextlib.suppress(NotImplementedError, RuntimeError):  # as when added
                loop.remove_signal_handler(sig)
    if worker.stopping:
        log.info("worker stopped")
    return code


# What runs beside the worker for as long as it runs, given its ledger and clock: the CLI's
# `/metrics` server (`--metrics-port`, built by bot/operations, which the worker does not import).
Beside = Callable[[Database, Clock], AbstractAsyncContextManager[None]]


async def run_worker(
    settings: Settings, config: WorkerConfig, *, once: bool, clock: Clock | None = None,
    beside: Beside | None = None,
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
        clock = clock or SystemClock()
        worker = Worker(
            database=database,
            gateway=providers.charging,
            notifier=Notifier(sms=providers.sms, email=providers.email, brand=settings.brand),
            settings=settings,
            clock=clock,
            config=config,
            limiter=limiter,
            sms_limiter=sms_limiter,
        )
        if not once:
            log.info("worker started: at most %g processor requests/s (%s), a pass every %g s",
                     config.rate, shared, config.interval)
        async with beside(database, clock) if beside else contextlib.nullcontext():
            return await _until_stopped(worker, once=once, grace=settings.shutdown_grace_seconds)
    finally:
        await resources.close()
