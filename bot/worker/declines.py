"""Declines: the retry rule, the customer's decline notice and its link to update the method.

**Decline retry rule** (``retry_declined_after_days``, ``max_decline_retries``; a creditor may
override both with the keys ``decline_retry_days`` and ``decline_max_retries`` in its settings):
off by default: a declined payment stays Declined, the customer gets one notice with a personalized
link (a week, or through the retry date when later) to the page where they pick another method
for what is still scheduled and pay the missed amount, and the sentence that it will not be retried
automatically. When set to N days, a declined payment (except one the bank wants the customer to
approve, or one with no method left) gets a new ``scheduled`` row for the same amount and method
(the plan's method when it has one) on the customer's local today + N days, with the idempotency key
``<key>~r<k>``, at most ``max_decline_retries`` times; the notice names that date.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.clock import Clock
from bot.config.settings import Settings
from bot.ledger import queries as ledger
from bot.ledger.db import Database
from bot.ledger.models import Account, Payment, Plan
from bot.outreach import decline_notices, email_outbox
from bot.outreach.notifications import Notifier
from bot.payments import collectable
from bot.payments.service import PaymentOutcome
from bot.providers.payments import ChargeResult, polite_decline_message
from bot.security import new_payment_reference
from bot.text import i18n
from bot.worker.config import PassReport
from bot.worker.rules import Rules, local_today

log = logging.getLogger(__name__)

METHOD_MISSING = "payment_method_missing"
# A decline the same method will not cure by itself: no automatic retry.
NOT_RETRIED = frozenset({"authentication_required", METHOD_MISSING})
_RETRY_SUFFIX = re.compile(r"~r(\d+)$")
_KEY_LENGTH = 80  # payments.idempotency_key


class Declines:
    def __init__(
        self,
        *,
        database: Database,
        notifier: Notifier,
        settings: Settings,
        clock: Clock,
        seal: email_outbox.Seal,
        name: str,
    ) -> None:
        self.database = database
        self.notifier = notifier
        self.settings = settings
        self.clock = clock
        self.seal = seal
        self.name = name

    async def notify(
        self,
        account: Account,
        outcome: PaymentOutcome,
        rules: Rules,
        result: ChargeResult,
        retry_on: date | None,
        now: datetime,
    ) -> None:
        """The decline notice, sent now (and recorded in the email outbox)."""
        update_url = await self.update_method_link(account, now, retry_on)
        email = self.email(account, outcome, rules, result, retry_on, update_url)
        await email_outbox.send_now(self.database, self.notifier, email, kind="decline",
                                    account_id=account.id, clock=self.clock,
                                    seal=self.seal)

    async def schedule_retry(
        self, payment: Payment, account: Account, rules: Rules, now: datetime,
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
                # A retry is a new promise: never more than is open now
                # (bot/payments/collectable.py).
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


    def email(
        self,
        account: Account,
        outcome: PaymentOutcome,
        rules: Rules,
        result: ChargeResult,
        retry_on: date | None,
        update_url: str | None = None,
    ) -> dict[str, Any]:
        # The same notice a Stripe event sends (bot/outreach/decline_notices.py), plus the retry
        # rule.
        # The notice is written in the customer's language (its texts and the retry rule).
        with i18n.using(account.language):
            return self._email(account, outcome, rules, result, retry_on, update_url)

    def _email(
        self,
        account: Account,
        outcome: PaymentOutcome,
        rules: Rules,
        result: ChargeResult,
        retry_on: date | None,
        update_url: str | None,
    ) -> dict[str, Any]:
        reason = result.failure_message or polite_decline_message(
            result.failure_code, result.decline_code
        )
        if retry_on is not None:
            rule = i18n.gettext("We will try this payment again on %(day)s.") % {
                "day": i18n.format_day(retry_on)
            }
        else:
            rule = i18n.gettext(decline_notices.NOT_RETRIED)
        notice = decline_notices.Notice(
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
        return decline_notices.decline_email(self.notifier, notice, brand=rules.brand)

    async def update_method_link(
        self, account: Account, now: datetime, retry_on: date | None
    ) -> str | None:
        """The notice's link to update the method; without one the notice still goes (it says
        how to get a link by text)."""
        try:
            async with self.database.session() as session:
                url = await decline_notices.update_method_link(
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
