"""Charging one claimed payment: a look-up first where the gateway has one (a recovered row),
else the charge with the payment's own idempotency key, each request let through by the rate
limiter; then the outcome written back on the row read afresh and locked, and after the commit
one email (the receipt, or the decline notice). A processor that cannot be reached halts the
pass: the row waits, as ``processor_unavailable``, for the next one.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from sqlalchemy import select, update

from bot import logs, metrics
from bot.clock import Clock
from bot.ledger import queries as ledger
from bot.ledger.db import Database
from bot.ledger.models import Account, Payment, PaymentMethod
from bot.outreach import email_outbox
from bot.outreach.notifications import Notifier
from bot.payments import collectable
from bot.payments.service import PaymentOutcome, apply_charge_result
from bot.providers.payments import (
    ChargeResult,
    GatewayUnavailable,
    PaymentError,
    PaymentGateway,
)
from bot.worker.claims import NEEDS_REVIEW, Claims, Job
from bot.worker.config import PassReport
from bot.worker.declines import METHOD_MISSING, Declines
from bot.worker.plan_notices import PlanNotices
from bot.worker.rate_limits import RateLimiter
from bot.worker.rules import CreditorRules, Rules

log = logging.getLogger(__name__)


@runtime_checkable
class ChargeLookup(Protocol):
    """Optional on a gateway: the charge already made for our reference, if any.

    With it, a row the ledger shows unconfirmed is first looked up at the processor, and a
    charge found there is recorded instead of sending another request (what makes recovery
    exact on a processor that ignores idempotency keys, and after Stripe forgot the key)."""

    async def find_charge(
        self, *, customer_id: str, reference: str, idempotency_key: str
    ) -> ChargeResult | None: ...


class Charges:
    def __init__(
        self,
        *,
        database: Database,
        gateway: PaymentGateway,
        limiter: RateLimiter,
        notifier: Notifier,
        clock: Clock,
        rules: CreditorRules,
        claims: Claims,
        notices: PlanNotices,
        declines: Declines,
        name: str,
    ) -> None:
        self.database = database
        self.gateway = gateway
        self.limiter = limiter
        self.notifier = notifier
        self.clock = clock
        self.rules = rules
        self.claims = claims
        self.notices = notices
        self.declines = declines
        self.name = name
        self._find_charge = gateway.find_charge if isinstance(gateway, ChargeLookup) else None
        # The processor or the limiter is out of reach: claim nothing more this pass.
        self.halted = False

    async def _mark_unavailable(self, job: Job, report: PassReport) -> None:
        self.halted = True  # the processor is down: claim nothing more this pass
        metrics.WORKER_CHARGED.labels("unavailable").inc()
        await self.claims.mark_unavailable(job, report)

    async def _permit(self, job: Job, report: PassReport) -> bool:
        try:
            await self.limiter.acquire()
        except Exception:
            log.exception("rate limiter unavailable: nothing is sent this pass")
            self.halted = True
            await self.claims.release(job, report)
            return False
        return True

    async def process(self, job: Job, report: PassReport) -> None:
        with logs.scope(payment_id=job.payment_id):  # on each line of this charge
            await self._process(job, report)

    async def _process(self, job: Job, report: PassReport) -> None:
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
            logs.bind(account_id=account.id, payment=payment.reference)
            rules = await self.rules.of(session, account.creditor_code)

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
                metrics.PROCESSOR_ERRORS.labels("unavailable").inc()
                log.warning("payment %s: processor unavailable; retried next pass",
                            payment.reference)
                await self._mark_unavailable(job, report)
                return
            except PaymentError as exc:
                if exc.code == "idempotency_error":
                    await self._needs_review(job, payment.reference, str(exc), report)
                    return
                # Refused outright (4xx): nothing was charged.
                metrics.PROCESSOR_ERRORS.labels("refused").inc()
                result = ChargeResult(
                    status="declined",
                    processor_id=None,
                    failure_code=(exc.code or "processor_error")[:64],
                )
        label = method.description if method else "your payment method"
        await self._write_back(job, result, rules, report, label)

    async def _needs_review(
        self, job: Job, reference: str, reason: str, report: PassReport
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
        job: Job,
        result: ChargeResult,
        rules: Rules,
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
            metrics.WORKER_CHARGED.labels(payment.status).inc()
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
                    notices.append(await self.notices.queue(session, plan, now))
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
                session, self.notifier, account, outcome, brand=rules.brand, at=now,
                disclosure=rules.disclosure,
            )
            await session.commit()
        await self.notices.send([n for n in notices if n is not None])
        status = payment.status
        setattr(report, status, getattr(report, status) + 1)
        log.info("payment %s: %s %s", payment.reference, status, payment.processor_id or "")

        retry_on = None
        if status == "declined":
            retry_on = await self.declines.schedule_retry(payment, account, rules, now, report)
        if not account.email:
            log.info("payment %s: no email on file, none sent", payment.reference)
            return
        try:
            if receipt is not None:
                await email_outbox.deliver(self.database, self.notifier, [receipt.id],
                                           clock=self.clock)
            elif status == "declined":
                await self.declines.notify(account, outcome, rules, result, retry_on, now)
        except Exception:
            log.exception("payment %s: the %s email could not be sent", payment.reference, status)
