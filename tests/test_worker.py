"""`paybot worker`: every due scheduled payment charged exactly once, asserted on the ledger and on
what the processor holds (localstripe through the real Stripe SDK, or the sandbox).

Tests that ask for the `localstripe` fixture run against localstripe; the others on the sandbox
gateway. Time is a FrozenClock moved by the test; the rate limiters run on a fake clock."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import fakeredis
import pytest
import redis.asyncio as aioredis
import stripe
from sqlalchemy import select

from bot import appkeys
from bot.ledger.db import Database
from bot.ledger.models import Account, AuditEvent, Payment, PaymentMethod
from bot.outreach.notifications import Notifier
from bot.providers.payments import ChargeResult
from bot.providers.sandbox_gateway import SandboxGateway
from bot.security import new_payment_reference
from bot.worker.claims import NEEDS_REVIEW
from bot.worker.loop import Worker, WorkerConfig
from bot.worker.rate_limits import LocalRateLimiter, RedisRateLimiter
from bot.worker.rules import local_today
from tests.seed import add_account

NY = ZoneInfo("America/New_York")
BALANCE = 125000
WEBHOOK_SECRET = "whsec_test_paybot_worker"
SCHEDULE_STEPS = ["pay", "ok", "$50", "1", "dec 15", "yes", "agree"]
_event_ids = itertools.count(1)
ROOT = str(Path(__file__).resolve().parents[1])


# --------------------------------------------------------------------------- fixtures, helpers


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """Stripe events can be posted to the app of every test here."""
    return settings.replace(stripe_webhook_secret=WEBHOOK_SECRET)


@pytest.fixture
def gateway(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """localstripe (the real SDK) for a test that asks for `localstripe`; else the sandbox."""
    if "localstripe" in request.fixturenames:
        return request.getfixturevalue("stripe_gateway")
    return SandboxGateway()


class NoLimit:
    async def acquire(self) -> None:
        return None


def local(day: date, hour: int = 10, minute: int = 0, zone: ZoneInfo = NY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)


def make_worker(app, *, database: Database | None = None, gateway: Any = None,  # type: ignore[no-untyped-def]
                limiter: Any = None, name: str = "worker", **config: Any) -> Worker:
    providers = app[appkeys.PROVIDERS]
    settings = app[appkeys.SETTINGS]
    return Worker(
        database=database or app[appkeys.DATABASE],
        gateway=gateway or providers.payments,
        notifier=Notifier(sms=providers.sms, email=providers.email, brand=settings.brand),
        settings=settings,
        clock=app[appkeys.CLOCK],
        config=WorkerConfig(**config),
        limiter=limiter or NoLimit(),
        name=name,
    )


async def schedule_by_text(phone) -> None:  # type: ignore[no-untyped-def]
    """Maria schedules $50.00 for Dec 15 by text (as in test_conversation)."""
    maria = phone()
    for text in SCHEDULE_STEPS[:-1]:
        await maria.send(text)
    (done,) = await maria.send(SCHEDULE_STEPS[-1])
    assert done.startswith("Done: $50.00 scheduled for Dec 15, 2026. Ref P-")


async def add_scheduled(app, account: Account, day: date, *, amount: int = 5000,  # type: ignore[no-untyped-def]
                        count: int = 1) -> list[str]:
    """Scheduled rows written straight into the ledger (as PaymentService writes them)."""
    now = app[appkeys.CLOCK].now()
    references = []
    async with app[appkeys.DATABASE].session() as session:
        method_id = await session.scalar(
            select(PaymentMethod.id).where(PaymentMethod.account_id == account.id)
        )
        for _ in range(count):
            reference = new_payment_reference()
            while reference in references:
                reference = new_payment_reference()
            references.append(reference)
            session.add(Payment(
                reference=reference, idempotency_key=f"test:{reference}",
                account_id=account.id, method_id=method_id, amount_cents=amount,
                scheduled_for=day, status="scheduled", channel="sms",
                created_at=now, updated_at=now,
            ))
        await session.commit()
    return references


async def payments(app) -> list[Payment]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return list(await session.scalars(select(Payment).order_by(Payment.id)))


async def balance(app, ref: str = "ACC-1001") -> int:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return int(await session.scalar(
            select(Account.balance_cents).where(Account.account_ref == ref)
        ))


def outbox(app) -> list[Any]:  # type: ignore[no-untyped-def]
    return list(app[appkeys.PROVIDERS].email.outbox)


async def payment_intents(localstripe) -> list[dict]:  # type: ignore[no-untyped-def]
    """What the processor holds, asked of localstripe itself (not of our ledger)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{localstripe.url}/v1/payment_intents",
            params={"limit": "100"},
            headers={"Authorization": "Bearer sk_test_paybot"},
        ) as response:
            assert response.status == 200, await response.text()
            return (await response.json())["data"]


def by_reference(intents: list[dict]) -> Counter[str]:
    return Counter(i["metadata"].get("paybot_reference") for i in intents)


class SimulatedCrash(BaseException):
    """The process dies: nothing after this point runs (not caught as an Exception)."""


class CrashingGateway:
    """Wraps a gateway; the process "dies" before the request leaves, or after the processor
    charged and before the answer is written back."""

    def __init__(self, inner: Any, *, after_charge: bool) -> None:
        self.inner = inner
        self.after_charge = after_charge
        self.calls = 0

    async def charge(self, **kwargs: Any) -> ChargeResult:
        self.calls += 1
        if not self.after_charge:
            raise SimulatedCrash("worker died before the charge request left")
        await self.inner.charge(**kwargs)
        raise SimulatedCrash("worker died between the charge and the write-back")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CountingGateway:
    """Counts charge requests per idempotency key, with a little latency to interleave."""

    def __init__(self, inner: Any, latency: float = 0.002) -> None:
        self.inner = inner
        self.latency = latency
        self.keys: Counter[str] = Counter()

    async def charge(self, **kwargs: Any) -> ChargeResult:
        self.keys[kwargs["idempotency_key"]] += 1
        await asyncio.sleep(self.latency)
        return await self.inner.charge(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class MeetingGateway(CountingGateway):
    """One per worker: each worker's first charge waits until the other has charged too, so the
    race is real whichever worker the event loop happens to start first."""

    def __init__(self, inner: Any, keys: Counter[str], meeting: asyncio.Barrier) -> None:
        super().__init__(inner)
        self.keys = keys
        self.meeting = meeting
        self.met = False

    async def charge(self, **kwargs: Any) -> ChargeResult:
        if not self.met:
            self.met = True
            await asyncio.wait_for(self.meeting.wait(), 10)  # the other worker never charged
        return await super().charge(**kwargs)


class FakeTime:
    """A clock that moves only when slept on (the limiters sleep one waiter at a time)."""

    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


def max_in_any_second(times: list[float]) -> int:
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + 1 - 1e-9) for t in times)


# --------------------------------------------------------------------------- due dates


async def test_a_scheduled_payment_is_charged_once_on_its_date(
    app, client, phone, clock, localstripe, providers
):
    await add_account(app)
    await schedule_by_text(phone)
    (payment,) = await payments(app)
    assert payment.status == "scheduled" and payment.scheduled_for == date(2026, 12, 15)
    receipts_before = len(outbox(app))  # the "scheduled" receipt sent by the conversation
    worker = make_worker(app)

    assert (await worker.run_once()).claimed == 0  # Nov 25: not yet
    # 8 p.m. on Dec 14 in New York is already Dec 15 in UTC: the customer's date decides.
    clock.set(local(date(2026, 12, 14), 20))
    assert (await worker.run_once()).claimed == 0
    assert await payment_intents(localstripe) == []
    assert (await payments(app))[0].status == "scheduled"

    clock.set(local(date(2026, 12, 15), 10))
    report = await worker.run_once()
    assert (report.claimed, report.paid, report.errors) == (1, 1, 0)

    (intent,) = await payment_intents(localstripe)
    (payment,) = await payments(app)
    assert payment.status == "paid" and payment.processor_id == intent["id"]
    assert intent["status"] == "succeeded" and intent["amount"] == 5000
    assert intent["metadata"]["paybot_reference"] == payment.reference
    assert await balance(app) == BALANCE - 5000
    (receipt,) = outbox(app)[receipts_before:]
    assert receipt.to == "maria@example.com"
    assert receipt.subject == f"Your payment receipt {payment.reference}"
    assert "Status: Paid" in receipt.text and "$50.00" in receipt.text
    assert receipt.text.startswith("Northwind Recovery")

    # Again, and a day later: nothing more is charged or sent.
    assert (await worker.run_once()).claimed == 0
    clock.advance(timedelta(days=1))
    assert (await make_worker(app).run_once()).claimed == 0
    assert len(await payment_intents(localstripe)) == 1
    assert len(outbox(app)) == receipts_before + 1
    assert await balance(app) == BALANCE - 5000


async def test_due_means_the_customers_date_and_daytime(app, client, clock, providers):
    maria = await add_account(app, timezone="America/Los_Angeles")
    await add_scheduled(app, maria, date(2026, 12, 15))
    worker = make_worker(app)
    la = ZoneInfo("America/Los_Angeles")

    clock.set(local(date(2026, 12, 14), 23, 30, la))  # Dec 15 in New York and UTC, not in LA
    assert (await worker.run_once()).claimed == 0
    clock.set(local(date(2026, 12, 15), 7, 0, la))  # her date, but 7 a.m.: quiet hours
    report = await worker.run_once()
    assert (report.claimed, report.held) == (0, 1)
    assert providers.payments.charges == []
    clock.set(local(date(2026, 12, 15), 8, 0, la))
    assert (await worker.run_once()).paid == 1
    assert len(providers.payments.charges) == 1


@pytest.mark.parametrize(
    "zone_name", ["America/New_York", "Pacific/Honolulu"], ids=["new-york", "honolulu"]
)
@pytest.mark.parametrize(
    "day", [date(2027, 3, 14), date(2027, 11, 7)], ids=["spring-forward", "fall-back"]
)
async def test_due_on_the_day_the_clocks_change(app, client, clock, providers, zone_name, day):
    # Honolulu keeps no DST: the same UTC instants are other local hours there, and the worker
    # must follow the customer's own clock either way.
    zone = ZoneInfo(zone_name)
    maria = await add_account(app, timezone=zone_name)
    await add_scheduled(app, maria, day)
    worker = make_worker(app)

    clock.set(local(day - timedelta(days=1), 23, 59, zone))
    assert (await worker.run_once()).claimed == 0
    clock.set(local(day, 7, 59, zone))  # her date, but still quiet hours on her clock
    report = await worker.run_once()
    assert (report.claimed, report.held) == (0, 1)
    assert providers.payments.charges == []
    clock.set(local(day, 8, 0, zone))
    assert (await worker.run_once()).paid == 1
    assert len(providers.payments.charges) == 1
    clock.advance(timedelta(days=1))
    assert (await worker.run_once()).claimed == 0
    assert len(providers.payments.charges) == 1


def test_local_today_uses_the_account_zone_or_the_last_us_zone():
    now = datetime(2026, 12, 15, 8, 0, tzinfo=UTC)  # 3 a.m. in New York, 10 p.m. Dec 14 Hawaii
    assert local_today(now, "America/New_York") == date(2026, 12, 15)
    assert local_today(now, "Not/AZone") == date(2026, 12, 14)
    assert local_today(now, None) == date(2026, 12, 14)


# --------------------------------------------------------------------------- declines


async def test_a_decline_is_recorded_and_told_once(
    app, client, phone, clock, localstripe, method_ref_for, gateway
):
    declining = await method_ref_for(gateway, "charge_declined")
    await add_account(app, methods=(declining,))
    await schedule_by_text(phone)
    emails_before = len(outbox(app))
    clock.set(local(date(2026, 12, 15), 10))
    worker = make_worker(app)

    report = await worker.run_once()
    assert (report.claimed, report.declined, report.retries_scheduled) == (1, 1, 0)
    (payment,) = await payments(app)
    assert payment.status == "declined" and payment.failure_code == "card_declined"
    assert await balance(app) == BALANCE
    (notice,) = outbox(app)[emails_before:]
    assert notice.subject == f"Your payment {payment.reference} did not go through"
    assert "Status: Declined" in notice.text
    assert "We will not try this payment again automatically." in notice.text
    assert "Update your payment method" in notice.text  # and its personalized link
    assert "https://paybot.test/p/" in notice.text
    assert "This is a communication from a debt collector." in notice.text
    attempts = by_reference(await payment_intents(localstripe))
    assert attempts[payment.reference] <= 1  # the declined attempt, if localstripe keeps it


    assert (await worker.run_once()).claimed == 0
    clock.advance(timedelta(days=3))
    assert (await worker.run_once()).claimed == 0
    assert len(outbox(app)) == emails_before + 1
    assert by_reference(await payment_intents(localstripe)) == attempts

async def test_a_decline_notice_says_it_is_from_a_debt_collector_even_when_the_creditor_left_it_out(
    app, client, phone, clock, localstripe, method_ref_for, gateway
):
    from bot.ledger.models import Creditor

    declining = await method_ref_for(gateway, "charge_declined")
    await add_account(app, methods=(declining,))
    async with app[appkeys.DATABASE].session() as session:
        (creditor,) = await session.scalars(select(Creditor))
        creditor.disclosure = ""
        await session.commit()
    await schedule_by_text(phone)
    emails_before = len(outbox(app))
    clock.set(local(date(2026, 12, 15), 10))
    await make_worker(app).run_once()
    (notice,) = outbox(app)[emails_before:]
    assert (
        "pay the missed amount. Or reply PAY to our text.\n\n"
        "This is a communication from a debt collector.\n\nQuestions?"
    ) in notice.text



async def test_the_retry_rule_tries_a_declined_payment_once_more(app, client, clock, providers):
    maria = await add_account(app, methods=("pm_card_chargeCustomerFail",))
    (reference,) = await add_scheduled(app, maria, date(2026, 12, 15))
    worker = make_worker(app, retry_declined_after_days=3, max_decline_retries=1)

    clock.set(local(date(2026, 12, 15), 10))
    report = await worker.run_once()
    assert (report.declined, report.retries_scheduled) == (1, 1)
    first, retry = await payments(app)
    assert (first.reference, first.status) == (reference, "declined")
    assert (retry.status, retry.scheduled_for) == ("scheduled", date(2026, 12, 18))
    assert retry.idempotency_key == f"test:{reference}~r1"
    assert retry.amount_cents == 5000 and retry.method_id == first.method_id
    (notice,) = outbox(app)
    assert "We will try this payment again on Dec 18, 2026." in notice.text

    clock.set(local(date(2026, 12, 17), 10))
    assert (await worker.run_once()).claimed == 0
    clock.set(local(date(2026, 12, 18), 10))
    report = await worker.run_once()
    assert (report.claimed, report.declined, report.retries_scheduled) == (1, 1, 0)
    assert [p.status for p in await payments(app)] == ["declined", "declined"]
    assert "We will not try this payment again automatically." in outbox(app)[-1].text
    assert len(providers.payments.charges) == 2  # the first attempt and the one retry
    clock.advance(timedelta(days=30))
    assert (await worker.run_once()).claimed == 0


async def test_a_creditor_can_set_its_own_retry_rule(app, client, clock, providers):
    maria = await add_account(app, methods=("pm_card_chargeCustomerFail",),
                              creditor_settings={"decline_retry_days": 5})
    await add_scheduled(app, maria, date(2026, 12, 15))
    clock.set(local(date(2026, 12, 15), 10))
    assert (await make_worker(app).run_once()).retries_scheduled == 1
    assert (await payments(app))[-1].scheduled_for == date(2026, 12, 20)


# --------------------------------------------------------------------------- crash and restart


async def test_a_crash_after_the_charge_is_completed_after_the_recovery_delay(
    app, client, settings, clock, providers
):
    """The sandbox honours idempotency keys as Stripe does: the restarted worker sends the same
    key, the processor replays its first answer, and there is one charge."""
    maria = await add_account(app)
    (reference,) = await add_scheduled(app, maria, date(2026, 11, 25))
    sandbox = providers.payments
    crashing = CrashingGateway(sandbox, after_charge=True)
    with pytest.raises(SimulatedCrash):
        await make_worker(app, gateway=crashing).run_once()
    (payment,) = await payments(app)
    assert (payment.status, payment.processor_id) == ("processing", None)
    assert len(sandbox.charges) == 1 and outbox(app) == []

    restarted_db = Database(settings.database_url)
    try:
        restarted = make_worker(app, database=restarted_db)
        clock.advance(timedelta(minutes=5))  # within the recovery delay: perhaps still in flight
        assert (await restarted.run_once()).recovered == 0
        assert (await payments(app))[0].status == "processing"

        clock.advance(timedelta(minutes=6))
        report = await restarted.run_once()
        assert (report.recovered, report.paid, report.claimed) == (1, 1, 0)
    finally:
        await restarted_db.close()
    (payment,) = await payments(app)
    assert payment.status == "paid" and payment.processor_id == sandbox.charges[0].processor_id
    assert [c.idempotency_key for c in sandbox.charges] == [f"test:{reference}"]
    assert await balance(app) == BALANCE - 5000
    (receipt,) = outbox(app)
    assert receipt.subject == f"Your payment receipt {reference}"
    assert (await make_worker(app).run_once()).recovered == 0


async def test_a_lost_charge_answer_is_retried_with_the_same_key_on_the_next_pass(
    app, client, clock, providers
):
    maria = await add_account(app)
    await add_scheduled(app, maria, date(2026, 11, 25), count=3)
    sandbox = providers.payments
    sandbox.lose_next_charge_response = True  # charged, then the answer is lost (a timeout)
    worker = make_worker(app, concurrency=1)
    report = await worker.run_once()
    # The processor "went away": the pass stops sending; the rows it claimed go back.
    assert (report.unavailable, report.released, report.paid) == (1, 2, 0)
    rows = await payments(app)
    assert [(p.status, p.failure_code) for p in rows] == [
        ("processing", "processor_unavailable"), ("scheduled", None), ("scheduled", None)
    ]
    report = await worker.run_once()
    assert (report.recovered, report.claimed, report.paid) == (1, 2, 3)
    assert len(sandbox.charges) == 3  # the lost one was replayed, not charged again
    assert await balance(app) == BALANCE - 15000
    assert len(outbox(app)) == 3


async def test_processor_down_leaves_the_payment_for_the_next_pass(app, client, clock, providers):
    maria = await add_account(app)
    await add_scheduled(app, maria, date(2026, 11, 25))
    providers.payments.unavailable = True
    report = await make_worker(app).run_once()
    assert (report.unavailable, report.declined) == (1, 0)
    (payment,) = await payments(app)
    assert (payment.status, payment.failure_code) == ("processing", "processor_unavailable")
    assert outbox(app) == []
    providers.payments.unavailable = False
    assert (await make_worker(app).run_once()).paid == 1


async def test_localstripe_crash_before_the_request_left_is_charged_once_on_restart(
    app, client, settings, clock, localstripe
):
    maria = await add_account(app)
    (reference,) = await add_scheduled(app, maria, date(2026, 11, 25))
    gateway = app[appkeys.PROVIDERS].payments
    with pytest.raises(SimulatedCrash):
        await make_worker(app, gateway=CrashingGateway(gateway, after_charge=False)).run_once()
    assert await payment_intents(localstripe) == []
    assert (await payments(app))[0].status == "processing"

    clock.advance(timedelta(minutes=11))
    restarted_db = Database(settings.database_url)
    try:
        assert (await make_worker(app, database=restarted_db).run_once()).paid == 1
    finally:
        await restarted_db.close()
    assert by_reference(await payment_intents(localstripe)) == {reference: 1}
    assert await balance(app) == BALANCE - 5000


async def test_localstripe_crash_after_the_charge_the_stripe_event_records_it_no_retry(
    app, client, settings, clock, localstripe
):
    """localstripe ignores idempotency keys, so a blind retry of a charge that did go through
    would make a second PaymentIntent there (real Stripe would replay the first within 24 h).
    Our guard: only rows the ledger shows unconfirmed are retried. Here Stripe's
    payment_intent.succeeded event (signed, to /webhooks/stripe) records the charge first, so the
    restarted worker finds nothing to retry and the processor holds one charge."""
    maria = await add_account(app)
    (reference,) = await add_scheduled(app, maria, date(2026, 11, 25))
    gateway = app[appkeys.PROVIDERS].payments
    with pytest.raises(SimulatedCrash):
        await make_worker(app, gateway=CrashingGateway(gateway, after_charge=True)).run_once()
    (intent,) = await payment_intents(localstripe)
    assert (await payments(app))[0].processor_id is None

    event = {
        "id": f"evt_worker_{next(_event_ids)}", "object": "event", "type":
        "payment_intent.succeeded", "created": int(time.time()), "data": {"object": intent},
    }
    payload = json.dumps(event)
    signature = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)
    response = await client.post("/webhooks/stripe", data=payload, headers={
        "Content-Type": "application/json", "Stripe-Signature": signature})
    assert response.status == 200, await response.text()
    (payment,) = await payments(app)
    assert (payment.status, payment.processor_id) == ("paid", intent["id"])

    clock.advance(timedelta(minutes=11))
    report = await make_worker(app).run_once()
    assert (report.recovered, report.claimed) == (0, 0)
    assert by_reference(await payment_intents(localstripe)) == {reference: 1}
    assert await balance(app) == BALANCE - 5000
    assert len(outbox(app)) == 1  # the receipt, sent by the event's handler


class LookupGateway:
    """A StripeGateway with ``find_charge``. Against real Stripe it would use the Search API
    (``payment_intents.search(query="metadata['paybot_reference']:'P-...'")``); localstripe has
    no search, so this lists its PaymentIntents and filters (tests only)."""

    def __init__(self, inner: Any, localstripe: Any) -> None:
        self.inner = inner
        self.localstripe = localstripe
        self.lookups = 0

    async def find_charge(
        self, *, customer_id: str, reference: str, idempotency_key: str
    ) -> ChargeResult | None:
        self.lookups += 1
        for intent in await payment_intents(self.localstripe):
            if (intent["metadata"].get("paybot_reference") == reference
                    and intent["customer"] == customer_id):
                status = {"succeeded": "paid", "processing": "pending"}.get(
                    intent["status"], "declined")
                return ChargeResult(status=status, processor_id=intent["id"],
                                    failure_code=None if status != "declined" else "card_declined")
        return None

    async def charge(self, **kwargs: Any) -> ChargeResult:
        return await self.inner.charge(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_localstripe_crash_after_the_charge_is_found_not_charged_again(
    app, client, settings, clock, localstripe
):
    """No event arrived; the restarted worker asks the processor for the charge by our reference
    before retrying, finds it, and records it: still one PaymentIntent on localstripe."""
    maria = await add_account(app)
    (reference,) = await add_scheduled(app, maria, date(2026, 11, 25))
    stripe_gateway = app[appkeys.PROVIDERS].payments
    with pytest.raises(SimulatedCrash):
        await make_worker(app, gateway=CrashingGateway(stripe_gateway, after_charge=True)
                          ).run_once()
    (intent,) = await payment_intents(localstripe)

    clock.advance(timedelta(minutes=11))
    lookup = LookupGateway(stripe_gateway, localstripe)
    report = await make_worker(app, gateway=lookup).run_once()
    assert (report.recovered, report.reconciled, report.paid) == (1, 1, 1)
    (payment,) = await payments(app)
    assert (payment.status, payment.processor_id) == ("paid", intent["id"])
    assert by_reference(await payment_intents(localstripe)) == {reference: 1}
    assert await balance(app) == BALANCE - 5000
    assert len(outbox(app)) == 1


async def test_an_unconfirmed_payment_past_the_key_lifetime_is_left_for_review(
    app, client, clock, providers
):
    maria = await add_account(app)
    await add_scheduled(app, maria, date(2026, 11, 25))
    with pytest.raises(SimulatedCrash):
        await make_worker(app, gateway=CrashingGateway(providers.payments, after_charge=True)
                          ).run_once()
    clock.advance(timedelta(hours=25))  # nobody restarted the worker for a day
    report = await make_worker(app).run_once()
    assert (report.needs_review, report.recovered) == (1, 0)
    (payment,) = await payments(app)
    assert (payment.status, payment.failure_code) == ("processing", NEEDS_REVIEW)
    assert len(providers.payments.charges) == 1
    assert (await make_worker(app).run_once()).needs_review == 0  # reported once
    async with app[appkeys.DATABASE].session() as session:
        kinds = list(await session.scalars(select(AuditEvent.kind)))
    assert kinds.count("payment_needs_review") == 1


# --------------------------------------------------------------------------- two workers


async def test_two_workers_charge_each_due_row_once_at_localstripe(
    app, client, settings, clock, localstripe
):
    accounts = [await add_account(app, ref=f"ACC-20{n:02d}", phone=f"+1555555020{n}")
                for n in range(3)]
    references = []
    for account in accounts:
        references += await add_scheduled(app, account, date(2026, 11, 25), amount=1000,
                                          count=3)
    engines = [Database(settings.database_url), Database(settings.database_url)]
    try:
        reports = await asyncio.gather(*(
            make_worker(app, database=db, name=f"worker-{n}", batch=2, concurrency=2).run_once()
            for n, db in enumerate(engines)
        ))
    finally:
        for db in engines:
            await db.close()
    assert sum(r.claimed for r in reports) == 9 and sum(r.paid for r in reports) == 9
    assert by_reference(await payment_intents(localstripe)) == dict.fromkeys(references, 1)
    assert {p.status for p in await payments(app)} == {"paid"}
    for account in accounts:
        assert await balance(app, account.account_ref) == BALANCE - 3000


async def test_two_workers_race_on_many_rows_and_one_balance(app, client, settings, clock,
                                                               providers):
    maria = await add_account(app)
    await add_scheduled(app, maria, date(2026, 11, 25), amount=1000, count=40)
    keys: Counter[str] = Counter()
    meeting = asyncio.Barrier(2)
    engines = [Database(settings.database_url), Database(settings.database_url)]
    try:
        reports = await asyncio.gather(*(
            make_worker(app, database=db, gateway=MeetingGateway(providers.payments, keys, meeting),
                        name=f"worker-{n}", batch=5, concurrency=4).run_once()
            for n, db in enumerate(engines)
        ))
    finally:
        for db in engines:
            await db.close()
    assert all(r.claimed for r in reports)  # both took a share
    assert sum(r.paid for r in reports) == 40 and sum(r.errors for r in reports) == 0
    assert len(keys) == 40 and set(keys.values()) == {1}
    assert await balance(app) == BALANCE - 40000  # no lost update of the shared balance
    assert len(outbox(app)) == 40


# --------------------------------------------------------------------------- plans


async def test_a_plan_is_charged_installment_by_installment(app, client, phone, clock,
                                                             providers):
    await add_account(app, offers=True)
    maria = phone()
    for text in ["pay", "ok", "2", "1", "dec 1", "yes"]:
        await maria.send(text)
    (done,) = await maria.send("agree")
    assert "the first of 6 payments" in done
    emails_before = len(outbox(app))
    worker = make_worker(app)
    assert (await worker.run_once()).claimed == 0

    due = [date(2026, 12, 1)] + [date(2027, m, 1) for m in range(1, 6)]
    paid_so_far = 0
    for n, day in enumerate(due, start=1):
        clock.set(local(day - timedelta(days=1), 12))
        assert (await worker.run_once()).claimed == 0
        clock.set(local(day, 9))
        report = await worker.run_once()
        assert (report.claimed, report.paid) == (1, 1), day
        rows = await payments(app)
        assert [p.status for p in rows] == ["paid"] * n + ["scheduled"] * (6 - n)
        assert rows[n - 1].installment_number == n
        paid_so_far += rows[n - 1].amount_cents
        assert await balance(app) == BALANCE - paid_so_far
    assert paid_so_far == BALANCE and await balance(app) == 0
    assert len(providers.payments.charges) == 6
    assert len(outbox(app)) == emails_before + 6
    clock.set(local(date(2027, 7, 1)))
    assert (await worker.run_once()).claimed == 0


async def test_a_canceled_plan_is_not_charged(app, client, phone, clock, providers):
    from bot.ledger.models import Plan

    await add_account(app, offers=True)
    maria = phone()
    for text in ["pay", "ok", "2", "1", "dec 1", "yes", "agree"]:
        await maria.send(text)
    async with app[appkeys.DATABASE].session() as session:
        plan = await session.scalar(select(Plan))
        plan.status = "canceled"
        await session.commit()
    clock.set(local(date(2026, 12, 1)))
    assert (await make_worker(app).run_once()).claimed == 0
    assert providers.payments.charges == []


async def test_canceling_a_plan_by_api_stops_every_remaining_debit(app, client, phone, clock,
                                                                    providers):
    from tests.conftest import API_KEY

    await add_account(app, offers=True)
    maria = phone()
    for text in ["pay", "ok", "2", "1", "dec 1", "yes", "agree"]:
        await maria.send(text)
    worker = make_worker(app)
    clock.set(local(date(2026, 12, 1)))
    assert (await worker.run_once()).paid == 1  # the first installment is made
    plan_id = (await payments(app))[0].plan_id
    headers = {"Authorization": f"Bearer {API_KEY}"}
    response = await client.post(f"/api/v1/plans/{plan_id}/cancel", headers=headers)
    assert response.status == 200
    assert (await response.json())["installments_canceled"] == 5
    assert [p.status for p in await payments(app)] == ["paid"] + ["canceled"] * 5
    (email,) = [m for m in providers.email.outbox if "canceled" in m.subject]
    assert "No remaining payment will be debited" in email.text and "$1,041.66" in email.text
    for month in range(1, 6):
        clock.set(local(date(2027, month, 1)))
        assert (await worker.run_once()).claimed == 0
    assert len(providers.payments.charges) == 1
    again = await client.post(f"/api/v1/plans/{plan_id}/cancel", headers=headers)
    assert again.status == 409
    listed = (await (await client.get("/api/v1/accounts/ACC-1001", headers=headers)).json())
    assert [p["status"] for p in listed["payments"]] == ["Paid"] + ["Canceled"] * 5


# --------------------------------------------------------------------------- rate limits


async def test_the_limiter_never_lets_more_than_the_rate_through():
    fake = FakeTime()
    limiter = LocalRateLimiter(10, margin=0.0, clock=fake.now, sleep=fake.sleep)
    granted: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        granted.append(fake.t)

    await asyncio.gather(*(one() for _ in range(25)))
    assert len(granted) == 25
    assert max_in_any_second(granted) == 10
    assert min(b - a for a, b in itertools.pairwise(granted)) >= 0.05 - 1e-9  # half of 1/rate
    assert granted[:11] == pytest.approx([0.05 * n for n in range(10)] + [1.0])
    assert granted[-1] == pytest.approx(2.2)  # 25 permits: 10 a second, no slower either


async def test_the_limiter_can_space_requests_evenly():
    fake = FakeTime()
    limiter = LocalRateLimiter(10, min_gap_share=1.0, margin=0.0, clock=fake.now, sleep=fake.sleep)
    granted = []
    for _ in range(6):
        await limiter.acquire()
        granted.append(fake.t)
    assert granted == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])


async def test_late_wake_ups_neither_break_the_limit_nor_pile_up():
    fake = FakeTime()

    async def late_sleep(seconds: float) -> None:  # the event loop was busy: 20 ms late
        await fake.sleep(seconds + 0.02)

    limiter = LocalRateLimiter(10, margin=0.0, clock=fake.now, sleep=late_sleep)
    granted = []
    for _ in range(40):
        await limiter.acquire()
        granted.append(fake.t)
    assert max_in_any_second(granted) <= 10
    # Each second's first permit is 20 ms late, and only that: 10 permits every 1.02 s. (Even
    # spacing on the grant times would lose 20 ms on every permit: 10 every 1.2 s.)
    assert [granted[n] for n in (10, 20, 30)] == pytest.approx([1.02, 2.04, 3.06])


@pytest.fixture
async def redis_client(redis_url: str | None):  # type: ignore[no-untyped-def]
    client = aioredis.Redis.from_url(redis_url) if redis_url else fakeredis.FakeAsyncRedis()
    yield client
    await client.aclose()


async def test_the_redis_limiter_is_shared_by_every_worker(redis_client):
    fake = FakeTime()
    fake.t = 1000.0  # one clock for both: Redis's
    one, other = (
        RedisRateLimiter(redis_client, 5, key="paybot:test:rate", clock=fake.now,
                         sleep=fake.sleep, margin=0.0)
        for _ in range(2)
    )
    granted = []
    for limiter in [one, other] * 8:  # two workers taking turns
        await limiter.acquire()
        granted.append(fake.t - 1000.0)
    assert max_in_any_second(granted) == 5
    assert min(b - a for a, b in itertools.pairwise(granted)) >= 0.1 - 1e-6
    assert granted[:6] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 1.0], abs=1e-6)
    assert granted[-1] == pytest.approx(3.0, abs=1e-6)  # 16 permits at 5 a second


async def test_the_redis_limiter_on_the_servers_clock(redis_client):
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(seconds)  # a few ms: the server's clock must really move

    limiter = RedisRateLimiter(redis_client, 200, min_gap_share=1.0,
                               key="paybot:test:rate:time", sleep=sleep)
    for _ in range(3):
        await limiter.acquire()
    assert waits and all(0 < w <= 0.005 + 1e-6 for w in waits)


async def test_the_worker_asks_the_limiter_before_every_charge(app, client, clock, providers):
    maria = await add_account(app)
    await add_scheduled(app, maria, date(2026, 11, 25), amount=1000, count=12)
    fake = FakeTime()
    sent: list[float] = []

    class Recording(CountingGateway):
        async def charge(self, **kwargs: Any) -> ChargeResult:
            sent.append(fake.t)
            return await super().charge(**kwargs)

    worker = make_worker(app, gateway=Recording(providers.payments, latency=0), concurrency=4,
                         limiter=LocalRateLimiter(4, margin=0, clock=fake.now, sleep=fake.sleep),
                         batch=5)
    assert (await worker.run_once()).paid == 12
    assert len(sent) == 12
    assert min(b - a for a, b in itertools.pairwise(sorted(sent))) >= 0.125 - 1e-9
    assert max_in_any_second(sent) == 4
    assert max(sent) == pytest.approx(2.375)  # 12 requests at 4 a second


def test_the_config_refuses_nonsense():
    with pytest.raises(ValueError):
        WorkerConfig(rate=0)
    with pytest.raises(ValueError):
        WorkerConfig(batch=0)
    with pytest.raises(ValueError):
        WorkerConfig(retry_declined_after_days=0)


# --------------------------------------------------------------------------- the command


def _daytime_zone() -> str:
    """A zone where it is midday now (the worker charges in the customer's daytime only)."""
    offset = 12 - datetime.now(UTC).hour  # -11 .. +12
    return f"Etc/GMT{-offset:+d}" if offset else "UTC"


async def _run_cli(settings, *args: str, until_stderr: str | None = None):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STRIPE_", "TWILIO_", "SENDGRID_", "DATABASE_URL", "REDIS_URL"))}
    env.update(DATABASE_URL=settings.database_url, PAYBOT_DATA_DIR=str(settings.data_dir))
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "worker", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    stderr = b""
    if until_stderr is not None:
        assert process.stderr is not None
        async with asyncio.timeout(60):
            while until_stderr.encode() not in stderr:
                line = await process.stderr.readline()
                assert line, stderr.decode()
                stderr += line
        process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    return process.returncode, out.decode(), (stderr + err).decode()


async def test_paybot_worker_once_charges_what_is_due(app, client, settings):
    zone = _daytime_zone()
    maria = await add_account(app, timezone=zone)
    yesterday = local_today(datetime.now(UTC), zone) - timedelta(days=1)
    (reference,) = await add_scheduled(app, maria, yesterday)

    code, out, err = await _run_cli(settings, "--once", "--rate", "50")
    assert code == 0, err
    assert out.strip() == "worker pass: claimed 1, paid 1"
    (payment,) = await payments(app)
    assert payment.status == "paid"
    receipts = list((settings.data_dir / "outbox" / "email").glob("*.eml"))
    assert len(receipts) == 1 and reference in receipts[0].read_text()

    code, out, _ = await _run_cli(settings, "--once")
    assert (code, out.strip()) == (0, "worker pass: nothing due")


async def test_paybot_worker_runs_until_sigterm(app, client, settings):
    zone = _daytime_zone()
    maria = await add_account(app, timezone=zone)
    await add_scheduled(app, maria, local_today(datetime.now(UTC), zone))
    code, _, err = await _run_cli(settings, "--interval", "0.2", until_stderr="paid 1")
    assert code == 0, err
    assert "worker started" in err and "worker stopped" in err and "Traceback" not in err
    assert [p.status for p in await payments(app)] == ["paid"]


async def test_paybot_worker_refuses_a_bad_option(settings):
    code, _, err = await _run_cli(settings, "--once", "--rate", "0")
    assert code == 2 and "rate must be a positive number" in err
    code, _, err = await _run_cli(settings, "--once", "--at", "2026-12-15 10:00")
    assert code == 2 and "UTC offset" in err


async def test_paybot_worker_at_a_given_moment(app, client, phone, settings):
    """The demo's way to move time: the payment scheduled for Dec 15 is charged "on" Dec 15."""
    await add_account(app)
    await schedule_by_text(phone)
    code, out, err = await _run_cli(settings, "--once", "--at", "2026-12-14T10:00-05:00")
    assert (code, out.strip()) == (0, "worker pass: nothing due"), err
    code, out, err = await _run_cli(settings, "--once", "--at", "2026-12-15T10:00-05:00")
    assert (code, out.strip()) == (0, "worker pass: claimed 1, paid 1"), err
    assert [p.status for p in await payments(app)] == ["paid"]
