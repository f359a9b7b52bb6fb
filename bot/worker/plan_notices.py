"""The customer's email that a plan is paid in full: queued in the transaction that closes the
plan (a cut to the balance at a claim, or the last installment's charge), sent after its commit."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from bot.clock import Clock
from bot.ledger import queries as ledger
from bot.ledger.db import Database
from bot.ledger.models import Account, Plan
from bot.outreach import email_outbox
from bot.outreach.notifications import Notifier
from bot.plans.signing import plan_paid_email
from bot.worker.rules import CreditorRules

log = logging.getLogger(__name__)


class PlanNotices:
    def __init__(
        self,
        *,
        database: Database,
        notifier: Notifier,
        clock: Clock,
        rules: CreditorRules,
        name: str,
    ) -> None:
        self.database = database
        self.notifier = notifier
        self.clock = clock
        self.rules = rules
        self.name = name

    async def queue(self, session: Any, plan: Plan, now: datetime) -> int | None:
        """The customer's email that the plan is paid in full, queued with the change."""
        account = await session.get(Account, plan.account_id)
        await ledger.audit(session, "plan_paid_in_full", at=now, actor=self.name[:40],
                           account_id=plan.account_id, plan_id=plan.id)
        if account is None or not account.email:
            return None
        rules = await self.rules.of(session, account.creditor_code)
        try:
            email = await plan_paid_email(session, self.notifier.env, account, plan,
                                          brand=rules.brand)
        except Exception:
            log.exception("plan %d: the paid-in-full notice could not be written", plan.id)
            return None
        row = email_outbox.queue(session, email, kind="plan_paid", account_id=account.id, at=now)
        await session.flush()
        return row.id

    async def send(self, email_ids: list[int]) -> None:
        if not email_ids:
            return
        try:
            await email_outbox.deliver(self.database, self.notifier, email_ids, clock=self.clock)
        except Exception:  # queued: the next pass sends them
            log.exception("plan notices not sent now; left queued")
