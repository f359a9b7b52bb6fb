"""Stripe's webhook: signed events move payments along, once, in any order; the customer hears of
a change once, by email. Asserted on what the ledger holds and what the customer receives."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import pytest
import stripe
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot import appkeys
from bot.app import create_app
from bot.ledger.models import Account, AuditEvent, Payment, PaymentMethod, ProcessedEvent
from bot.security import new_payment_reference
from tests.conftest import SmsPhone
from tests.seed import add_account

SECRET = "whsec_test_paybot_webhooks"
PATH = "/webhooks/stripe"
BALANCE = 125000  # add_account's $1,250.00
_event_ids = itertools.count(1)


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """The app of every test here knows the webhook secret."""
    return settings.replace(stripe_webhook_secret=SECRET)


# --------------------------------------------------------------------------- helpers


def intent_event(
    event_type: str,
    intent_id: str,
    *,
    amount: int = 5000,
    reference: str | None = None,
    failure_code: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An event shaped as Stripe sends it (the PaymentIntent as it was at that moment)."""
    status = {
        "payment_intent.succeeded": "succeeded",
        "payment_intent.processing": "processing",
        "payment_intent.payment_failed": "requires_payment_method",
    }.get(event_type, "succeeded")
    error = None
    if event_type == "payment_intent.payment_failed":
        error = {"code": failure_code or "card_declined", "message": "Your card was declined."}
    return {
        "id": event_id or f"evt_test_{next(_event_ids):06d}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {
            "object": {
                "id": intent_id,
                "object": "payment_intent",
                "amount": amount,
                "currency": "usd",
                "status": status,
                "customer": "cus_test",
                "metadata": {"paybot_reference": reference} if reference else {},
                "last_payment_error": error,
            }
        },
    }


def sign(payload: str, *, secret: str = SECRET, timestamp: int | None = None) -> str:
    """Stripe's own scheme, from the SDK: t=TIMESTAMP,v1=HMAC_SHA256(secret, "t.payload")."""
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)


async def post_event(
    client: TestClient,
    event: dict[str, Any] | str | bytes,
    *,
    secret: str = SECRET,
    signature: str | None = None,
) -> tuple[int, str]:
    payload = event if isinstance(event, str | bytes) else json.dumps(event)
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if signature is None and isinstance(payload, str):
        signature = sign(payload, secret=secret)
    if signature:
        headers["Stripe-Signature"] = signature
    response = await client.post(PATH, data=payload, headers=headers)
    return response.status, await response.text()


async def add_payment(
    app: web.Application,
    account: Account,
    *,
    status: str,
    processor_id: str | None = "pi_test_1",
    amount_cents: int = 5000,
) -> str:
    """A payment as the charge path leaves it: the row is written before the processor is called."""
    now = app[appkeys.CLOCK].now()
    async with app[appkeys.DATABASE].session() as session:
        method_id = await session.scalar(
            select(PaymentMethod.id).where(PaymentMethod.account_id == account.id)
        )
        reference = new_payment_reference()
        session.add(
            Payment(
                reference=reference,
                idempotency_key=f"test:{reference}",
                account_id=account.id,
                method_id=method_id,
                amount_cents=amount_cents,
                scheduled_for=now.date(),
                status=status,
                processor_id=processor_id,
                failure_code="card_declined" if status == "declined" else None,
                channel="sms",
                created_at=now,
                updated_at=now,
            )
        )
        await session.commit()
    return reference


async def ledger_state(app: web.Application, reference: str) -> dict[str, Any]:
    async with app[appkeys.DATABASE].session() as session:
        payment = await session.scalar(select(Payment).where(Payment.reference == reference))
        assert payment is not None
        account = await session.get(Account, payment.account_id)
        assert account is not None
        events = await session.scalar(select(func.count()).select_from(ProcessedEvent))
        return {
            "status": payment.status,
            "failure_code": payment.failure_code,
            "processor_id": payment.processor_id,
            "balance": account.balance_cents,
            "processed_events": events,
        }


def emails(app: web.Application) -> list[Any]:
    """What reached the customer's inbox (the sandbox email outbox)."""
    return list(app[appkeys.PROVIDERS].email.outbox)


@pytest.fixture
async def maria(app, client) -> Account:  # type: ignore[no-untyped-def]
    """Maria's account (balance $1,250.00, a Visa on file), in a running app."""
    return await add_account(app)


# --------------------------------------------------------------------------- tests


async def test_succeeded_makes_a_pending_payment_paid_and_emails_one_receipt(app, client, maria):
    reference = await add_payment(app, maria, status="pending")  # an ACH debit in flight

    status, _ = await post_event(client, intent_event("payment_intent.succeeded", "pi_test_1"))

    assert status == 200
    state = await ledger_state(app, reference)
    assert state["status"] == "paid"
    assert state["balance"] == BALANCE - 5000
    assert state["processed_events"] == 1
    (receipt,) = emails(app)
    assert receipt.to == "maria@example.com"
    assert receipt.subject == f"Your payment receipt {reference}"
    assert "$50.00" in receipt.text and "Status: Paid" in receipt.text
    assert "Visa ending 4242" in receipt.text
    assert receipt.text.startswith("Northwind Recovery")  # the creditor's name, as in the SMS
    async with app[appkeys.DATABASE].session() as session:
        kinds = list(await session.scalars(select(AuditEvent.kind).order_by(AuditEvent.id)))
    assert kinds[-2:] == ["payment_paid", "payment_status_changed"]


async def test_the_same_event_twice_changes_and_emails_once(app, client, maria):
    reference = await add_payment(app, maria, status="pending")
    event = intent_event("payment_intent.succeeded", "pi_test_1")

    assert (await post_event(client, event))[0] == 200
    status, text = await post_event(client, event)  # Stripe's retry

    assert status == 200 and text == "already processed"
    state = await ledger_state(app, reference)
    assert state["status"] == "paid" and state["balance"] == BALANCE - 5000
    assert state["processed_events"] == 1
    assert len(emails(app)) == 1


async def test_the_same_event_delivered_twice_at_once_counts_once(app, client, maria):
    reference = await add_payment(app, maria, status="pending")
    event = intent_event("payment_intent.succeeded", "pi_test_1")

    results = await asyncio.gather(post_event(client, event), post_event(client, event))

    assert [status for status, _ in results] == [200, 200]
    state = await ledger_state(app, reference)
    assert state["balance"] == BALANCE - 5000 and state["processed_events"] == 1
    assert len(emails(app)) == 1


async def test_a_second_event_for_a_paid_payment_sends_no_second_receipt(app, client, maria):
    """A charge that succeeded at once was already told (SMS + receipt) by the conversation."""
    reference = await add_payment(app, maria, status="pending")
    await post_event(client, intent_event("payment_intent.succeeded", "pi_test_1"))
    already = await add_payment(app, maria, status="paid", processor_id="pi_test_2")

    for intent_id in ("pi_test_1", "pi_test_2"):
        status, _ = await post_event(client, intent_event("payment_intent.succeeded", intent_id))
        assert status == 200

    assert (await ledger_state(app, reference))["balance"] == BALANCE - 5000
    assert (await ledger_state(app, already))["status"] == "paid"
    assert len(emails(app)) == 1


@pytest.mark.parametrize(
    "case", ["wrong secret", "tampered body", "missing header", "garbage header", "expired"]
)
async def test_a_forged_event_is_refused_and_changes_nothing(app, client, maria, case):
    reference = await add_payment(app, maria, status="pending")
    payload = json.dumps(intent_event("payment_intent.succeeded", "pi_test_1"))
    signature = {
        "wrong secret": sign(payload, secret="whsec_someone_else"),
        "tampered body": sign(payload),
        "missing header": "",
        "garbage header": "v1=deadbeef",
        "expired": sign(payload, timestamp=int(time.time()) - 3600),  # a replay
    }[case]
    if case == "tampered body":
        payload = payload.replace('"amount": 5000', '"amount": 50')

    status, text = await post_event(client, payload, signature=signature)

    assert status == 400 and text == "invalid signature"
    assert await ledger_state(app, reference) == {
        "status": "pending",
        "failure_code": None,
        "processor_id": "pi_test_1",
        "balance": BALANCE,
        "processed_events": 0,
    }
    assert emails(app) == []


async def test_without_a_configured_secret_every_event_is_refused(
    settings, providers, clock, aiohttp_client
):
    app = create_app(settings.replace(stripe_webhook_secret=None), providers, clock)
    client = await aiohttp_client(app)
    account = await add_account(app)
    reference = await add_payment(app, account, status="pending")

    status, text = await post_event(client, intent_event("payment_intent.succeeded", "pi_test_1"))

    assert status == 400 and "secret" in text
    assert (await ledger_state(app, reference))["status"] == "pending"
    assert emails(app) == []


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "[1, 2, 3]",
        '"an event"',
        '{"object": "event", "type": "payment_intent.succeeded"}',  # no id
        '{"id": "evt_1", "type": "payment_intent.succeeded", "data": {}}',  # no object
        '{"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": "pi_1"}}',
        json.dumps({"id": "evt_" + "x" * 200, "type": "payment_intent.succeeded"}),
        "",
    ],
)
async def test_a_signed_body_that_is_not_an_event_is_refused(app, client, maria, body):
    reference = await add_payment(app, maria, status="pending")

    status, text = await post_event(client, body)

    assert status == 400 and text.startswith("malformed")
    assert (await ledger_state(app, reference))["processed_events"] == 0


async def test_a_body_that_is_not_utf8_is_refused(app, client, maria):
    status, _ = await post_event(client, b"\xff\xfe{}", signature="t=1,v1=00")
    assert status == 400


async def test_payment_failed_after_paid_leaves_it_paid(app, client, maria):
    reference = await add_payment(app, maria, status="pending")
    await post_event(client, intent_event("payment_intent.succeeded", "pi_test_1"))

    for late in ("payment_intent.payment_failed", "payment_intent.processing"):
        status, _ = await post_event(client, intent_event(late, "pi_test_1"))
        assert status == 200

    state = await ledger_state(app, reference)
    assert state["status"] == "paid" and state["failure_code"] is None
    assert state["balance"] == BALANCE - 5000
    assert state["processed_events"] == 3
    assert [e.subject for e in emails(app)] == [f"Your payment receipt {reference}"]


async def test_processing_then_failed_is_declined_with_one_decline_email(app, client, maria):
    reference = await add_payment(app, maria, status="processing", processor_id=None)

    status, _ = await post_event(
        client, intent_event("payment_intent.processing", "pi_test_1", reference=reference)
    )
    assert status == 200
    assert (await ledger_state(app, reference))["status"] == "pending"
    assert emails(app) == []  # Pending: nothing new to tell yet

    failed = intent_event(
        "payment_intent.payment_failed", "pi_test_1", failure_code="insufficient_funds"
    )
    assert (await post_event(client, failed))[0] == 200
    assert (await post_event(client, failed))[0] == 200  # retried: no second email

    state = await ledger_state(app, reference)
    assert state["status"] == "declined" and state["failure_code"] == "insufficient_funds"
    assert state["processor_id"] == "pi_test_1"
    assert state["balance"] == BALANCE
    (notice,) = emails(app)
    assert notice.to == "maria@example.com"
    assert notice.subject == f"Your payment {reference} did not go through"
    assert "$50.00" in notice.text and "insufficient funds" in notice.text
    assert "Update your payment method" in notice.text and "https://paybot.test/p/" in notice.text
    assert "We will not try this payment again automatically." in notice.text
    assert "UNSUBSCRIBE" in notice.text
    assert notice.text.startswith("Northwind Recovery")
    assert "This is a communication from a debt collector." in notice.text
    assert "Or reply PAY to our text." in notice.html and "UNSUBSCRIBE" in notice.html


async def test_a_late_processing_event_does_not_reopen_a_declined_payment(app, client, maria):
    reference = await add_payment(app, maria, status="pending")
    await post_event(client, intent_event("payment_intent.payment_failed", "pi_test_1"))

    await post_event(client, intent_event("payment_intent.processing", "pi_test_1"))

    assert (await ledger_state(app, reference))["status"] == "declined"
    assert len(emails(app)) == 1


async def test_an_immediate_decline_already_told_by_sms_gets_no_email(app, client, maria):
    reference = await add_payment(app, maria, status="declined")

    status, _ = await post_event(client, intent_event("payment_intent.payment_failed", "pi_test_1"))

    assert status == 200
    assert (await ledger_state(app, reference))["status"] == "declined"
    assert emails(app) == []


async def test_a_retried_debit_can_still_succeed_after_a_decline(app, client, maria):
    reference = await add_payment(app, maria, status="declined")

    await post_event(client, intent_event("payment_intent.succeeded", "pi_test_1"))

    state = await ledger_state(app, reference)
    assert state["status"] == "paid" and state["failure_code"] is None
    assert state["balance"] == BALANCE - 5000
    (receipt,) = emails(app)
    assert "Status: Paid" in receipt.text


async def test_found_by_our_reference_when_the_intent_id_was_never_stored(app, client, maria):
    """The charge's answer was lost (crash, timeout): the event still settles the payment."""
    reference = await add_payment(app, maria, status="processing", processor_id=None)

    await post_event(
        client, intent_event("payment_intent.succeeded", "pi_test_7", reference=reference)
    )

    state = await ledger_state(app, reference)
    assert state["status"] == "paid" and state["processor_id"] == "pi_test_7"
    assert len(emails(app)) == 1


async def test_a_second_intent_for_the_same_payment_is_left_for_review(app, client, maria):
    reference = await add_payment(app, maria, status="declined", processor_id="pi_test_1")

    await post_event(
        client, intent_event("payment_intent.succeeded", "pi_test_2", reference=reference)
    )

    state = await ledger_state(app, reference)
    assert state["status"] == "declined" and state["balance"] == BALANCE
    assert emails(app) == []


async def test_an_amount_that_does_not_match_changes_nothing(app, client, maria):
    reference = await add_payment(app, maria, status="pending")

    await post_event(client, intent_event("payment_intent.succeeded", "pi_test_1", amount=9999))

    state = await ledger_state(app, reference)
    assert state["status"] == "pending" and state["balance"] == BALANCE
    assert emails(app) == []


async def test_an_unknown_event_type_is_acknowledged_and_ignored(app, client, maria):
    reference = await add_payment(app, maria, status="pending")
    event = intent_event("customer.updated", "pi_test_1")
    event["data"]["object"] = {"id": "cus_test", "object": "customer"}

    status, text = await post_event(client, event)

    assert status == 200 and text == "ignored"
    assert await ledger_state(app, reference) == {
        "status": "pending",
        "failure_code": None,
        "processor_id": "pi_test_1",
        "balance": BALANCE,
        "processed_events": 0,
    }
    assert emails(app) == []


async def test_an_event_for_an_unknown_payment_is_acknowledged(app, client, maria):
    reference = await add_payment(app, maria, status="pending")

    status, _ = await post_event(
        client, intent_event("payment_intent.succeeded", "pi_elsewhere", reference="P-NOPE1")
    )

    assert status == 200
    state = await ledger_state(app, reference)
    assert state["status"] == "pending" and state["balance"] == BALANCE
    assert emails(app) == []


async def test_a_database_failure_answers_503_so_stripe_retries(app, client, maria, monkeypatch):
    from webhooks import stripe as stripe_webhooks

    reference = await add_payment(app, maria, status="pending")
    event = intent_event("payment_intent.succeeded", "pi_test_1")

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("database went away")

    monkeypatch.setattr(stripe_webhooks, "apply_charge_result", broken)
    status, _ = await post_event(client, event)
    assert status == 503
    assert await ledger_state(app, reference) == {
        "status": "pending",
        "failure_code": None,
        "processor_id": "pi_test_1",
        "balance": BALANCE,
        "processed_events": 0,  # the event id was not kept: the retry does the work
    }

    monkeypatch.undo()
    assert (await post_event(client, event))[0] == 200
    assert (await ledger_state(app, reference))["status"] == "paid"
    assert len(emails(app)) == 1


# --------------------------------------------------------------------------- end to end


class TestLocalstripeSendsTheWebhook:
    """localstripe signs and sends the real event to the app on a real port (once, after ~1 s)."""

    @pytest.fixture
    def gateway(self, stripe_gateway):  # type: ignore[no-untyped-def]
        return stripe_gateway

    @pytest.fixture
    async def started(self, app, aiohttp_client, localstripe):  # type: ignore[no-untyped-def]
        """The app, listening, with localstripe's webhook pointed at it; yields the answers."""
        answers: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

        async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
            if request.path == PATH:
                answers.put_nowait((request.headers.get("Stripe-Signature", ""), response.status))

        app.on_response_prepare.append(on_prepare)
        client = await aiohttp_client(app)
        url = str(client.server.make_url(PATH))
        events = ["payment_intent.succeeded", "payment_intent.payment_failed"]
        await localstripe.register_webhook_async("paybot-tests", url, SECRET, events=events)
        try:
            yield client, answers
        finally:
            # localstripe cannot forget a target: leave it one that matches no event.
            await localstripe.register_webhook_async(
                "paybot-tests", url, SECRET, events=["none.none"]
            )

    async def test_a_paid_charge_is_confirmed_by_the_webhook_once(self, app, started):
        client, answers = started
        await add_account(app)
        maria = SmsPhone(client=client, number="+15555550100")
        for text in ["pay", "ok", "50", "1", "now", "yes"]:
            await maria.send(text)
        (done,) = await maria.send("agree")
        assert done.startswith("Done: $50.00 paid")
        assert len(emails(app)) == 1  # the conversation's receipt

        signature, status = await asyncio.wait_for(answers.get(), 10)

        assert signature.startswith("t=") and ",v1=" in signature
        assert status == 200
        async with app[appkeys.DATABASE].session() as session:
            (payment,) = list(await session.scalars(select(Payment)))
            processed = list(await session.scalars(select(ProcessedEvent)))
            balance = await session.scalar(select(Account.balance_cents))
        assert [(p.source, p.event_type) for p in processed] == [
            ("stripe", "payment_intent.succeeded")
        ]
        assert payment.status == "paid" and payment.processor_id
        assert balance == BALANCE - 5000  # lowered once, by the charge
        assert len(emails(app)) == 1  # no second receipt

    async def test_a_declined_charge_is_recorded_once_and_not_emailed(
        self, app, started, method_ref_for, gateway
    ):
        client, answers = started
        await add_account(app, methods=(await method_ref_for(gateway, "charge_declined"),))
        maria = SmsPhone(client=client, number="+15555550100")
        for text in ["pay", "ok", "50", "1", "now", "yes"]:
            await maria.send(text)
        assert "did not go through" in "\n".join(await maria.send("agree"))

        _, status = await asyncio.wait_for(answers.get(), 10)

        assert status == 200
        async with app[appkeys.DATABASE].session() as session:
            (payment,) = list(await session.scalars(select(Payment)))
            events = list(await session.scalars(select(ProcessedEvent.event_type)))
        assert events == ["payment_intent.payment_failed"]
        assert payment.status == "declined" and payment.failure_code == "card_declined"
        assert emails(app) == []  # told by SMS at once; the event changes nothing
