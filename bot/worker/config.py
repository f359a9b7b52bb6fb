"""What a worker is told (``WorkerConfig``: rates, batches, delays, the decline retry rule) and
what one pass reports back (``PassReport``, one count per outcome)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import timedelta

from bot.worker.rate_limits import sliding_window


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
        sliding_window(self.rate, self.min_gap_share)
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
    # Handoffs (bot/worker/handoff_waits.py): unclaimed requests timed out (customer told), and
    # customers told an agent has their message
    handoffs_timed_out: int = 0
    agent_waits_told: int = 0
    # Receipts, notices and agreement copies sent late (bot/outreach/email_outbox.py,
    # bot/plans/agreement_copy.py)
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

