"""The worker's last job each pass: receipts, notices and agreement copies a stopped process left
unsent (and refusals due for a retry) are sent, and sends cut off by a crash marked ``unknown``."""

from __future__ import annotations

import logging

from bot.clock import Clock
from bot.ledger.db import Database
from bot.outreach import email_outbox
from bot.outreach.notifications import Notifier
from bot.plans import agreement_copy
from bot.worker.config import PassReport

log = logging.getLogger(__name__)


async def send_overdue_emails(
    report: PassReport,
    *,
    database: Database,
    notifier: Notifier,
    clock: Clock,
    seal: email_outbox.Seal,
    default_brand: str,
) -> None:
    """Receipts, notices and agreement copies a stopped process left unsent, and refusals
    due for a retry."""
    try:
        emails = await email_outbox.deliver_overdue(database, notifier, clock=clock, seal=seal)
        emails.add(await agreement_copy.deliver_overdue_copies(
            database, notifier, clock=clock, default_brand=default_brand
        ))
        async with database.writer(), database.session() as session:
            report.emails_cut_off = await email_outbox.mark_cut_off(session, now=clock.now())
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
