"""The worker's outreach job each pass (bot/outreach/queue.py does the work): offers past their
expiry expired, reminders queued, then every proactive message whose time has come delivered,
each text after a permit from the SMS rate limiter."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.clock import Clock
from bot.config.settings import Settings
from bot.ledger.db import Database
from bot.outreach import queue as outreach
from bot.outreach.notifications import Notifier
from bot.worker.config import PassReport
from bot.worker.rate_limits import RateLimiter

log = logging.getLogger(__name__)


async def run_outreach_pass(
    report: PassReport,
    *,
    database: Database,
    settings: Settings,
    clock: Clock,
    notifier: Notifier,
    sms_limiter: RateLimiter,
    actor: str,
    should_stop: Callable[[], bool],
) -> None:
    """Offers expired, reminders queued, then every proactive message whose time has come."""
    try:
        planned = await outreach.plan_outreach(
            database=database, settings=settings, clock=clock, actor=actor
        )
        delivered = await outreach.deliver_due(
            database=database, settings=settings, clock=clock,
            sms=notifier.sms, email=notifier.email, sms_limiter=sms_limiter,
            actor=actor, should_stop=should_stop,
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
