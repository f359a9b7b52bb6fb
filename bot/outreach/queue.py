"""Proactive messages (offers, reminders, expiry and cancellation notices), each at most once:
the public face of the outreach queue, whose parts live in their own modules.

Anything that wants to reach a customer unprompted queues an Outreach row with a dedupe key
(``enqueue``, bot/outreach/queueing.py); the worker delivers queued rows when they may go out
(opt-outs, quiet hours in the customer's time zone, the per-customer frequency cap). See
docs/outreach.md.

Each worker pass runs two steps after charging:

* ``plan_outreach`` (bot/outreach/scheduling.py): expires open offers whose ``expires_at`` has
  passed and queues up to three reminders before an unsigned offer expires. Idempotent.
* ``deliver_due`` (bot/outreach/delivery.py): every ``held`` row whose ``not_before`` has come,
  oldest first, claimed and committed before anything is sent, so of several workers only one
  ever sends it (at most once); a row a crash left ``sending`` is later marked ``unknown``.

What the messages say is in bot/outreach/messages.py; when they may go in bot/outreach/timing.py.
"""

from __future__ import annotations

from bot.outreach.delivery import CAP_WINDOW, MAX_ATTEMPTS, RETRY_AFTER, Limiter, deliver_due
from bot.outreach.messages import (
    DELIVERED_KINDS,
    EMAIL_TEMPLATES,
    SMS_SEGMENTS,
    SMS_TEMPLATES,
    SUBJECT_LIMIT,
    compose_email,
    compose_sms,
    describe_installments,
    message_context,
    offer_terms,
)
from bot.outreach.queueing import CHANNELS, OFFER_KINDS, VIA, OutreachReport, enqueue
from bot.outreach.scheduling import expire_offer, plan_outreach
from bot.outreach.timing import REMINDER_HOUR, reminder_due, window_opens

__all__ = [
    "CAP_WINDOW",
    "CHANNELS",
    "DELIVERED_KINDS",
    "EMAIL_TEMPLATES",
    "MAX_ATTEMPTS",
    "OFFER_KINDS",
    "REMINDER_HOUR",
    "RETRY_AFTER",
    "SMS_SEGMENTS",
    "SMS_TEMPLATES",
    "SUBJECT_LIMIT",
    "VIA",
    "Limiter",
    "OutreachReport",
    "compose_email",
    "compose_sms",
    "deliver_due",
    "describe_installments",
    "enqueue",
    "expire_offer",
    "message_context",
    "offer_terms",
    "plan_outreach",
    "reminder_due",
    "window_opens",
]
