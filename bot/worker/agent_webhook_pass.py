"""The worker's job for the agents' own desk: deliver the queued webhook events
(bot/inbox/agent_webhook.py), each retried with backoff until delivered or failed."""

from __future__ import annotations

import logging

from bot.clock import Clock
from bot.config.settings import Settings
from bot.inbox import agent_webhook
from bot.ledger.db import Database
from bot.worker.config import PassReport

log = logging.getLogger(__name__)


async def deliver_agent_webhooks(
    report: PassReport, *, database: Database, settings: Settings, clock: Clock
) -> agent_webhook.DeliveryReport:
    """One batch a pass; nothing at all without PAYBOT_AGENT_WEBHOOK_URL."""
    if not settings.agent_webhook_url:
        return agent_webhook.DeliveryReport()
    try:
        delivered = await agent_webhook.deliver_due(database, settings, now=clock.now())
    except Exception:
        report.errors += 1
        log.exception("agents' webhook events not delivered this pass")
        return agent_webhook.DeliveryReport()
    if delivered.sent or delivered.retrying or delivered.failed:
        log.info("agents' webhook: %d sent, %d to retry, %d failed",
                 delivered.sent, delivered.retrying, delivered.failed)
    return delivered
