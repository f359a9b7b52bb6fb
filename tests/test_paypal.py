"""PayPal beside card and bank: a saved PayPal account paid by text and by the worker, declined,
and PayPal's webhooks, all through paypal-server-sdk against the local PayPal fake
(tests/fakes/paypal.py). Asserted on what the customer reads and what the ledger holds."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot import appkeys
from bot.accounts.loading import ensure_processor_customer, record_saved_method
from bot.ledger.models import Account, AuditEvent, Payment, PaymentMethod, Plan, Refund
from bot.outreach.notifications import Notifier
from bot.providers import Providers
from bot.providers.email import SandboxEmail
from bot.providers.payments import GatewayUnavailable, MethodRejected, PaymentError
from bot.providers.paypal_gateway import PAYPAL_SETUP_PREFIX, PayPalGateway
from bot.providers.paypal_sandbox import SandboxPayPal
from bot.providers.sms import SandboxSms
from bot.security import new_payment_reference
from bot.worker.loop import Worker, WorkerConfig
from tests.fakes.paypal import PayPalFake, dumps
from tests.seed import add_account

BALANCE = 125000
PAYPAL_ONLY = {"methods_enabled": ["card", "paypal"], "contact_review": False}
NY = ZoneInfo("America/New_York")


@pytest.fixture
def settings(settings, paypal_fake: PayPalFake):  # type: ignore[no-untyped-def]
    return settings.replace(
        paypal_client_id=paypal_fake.client_id,
        paypal_client_secret=paypal_fake.client_secret,
        paypal_webhook_id=paypal_fake.webhook_id,
        paypal_base_url=paypal_fake.base_url,
    )


@pytest.fixture
async def providers(settings, gateway, paypal_gateway):  # type: ignore[no-untyped-def]
    providers = Providers(sms=SandboxSms(), email=SandboxEmail(settings.outbox_dir / "email"),
                          payments=gateway, paypal=paypal_gateway)
    yield providers
    await providers.close()


class NoLimit:
    async def acquire(self) -> None:
        return None


def make_worker(app) -> Worker:  # type: ignore[no-untyped-def]
    providers = app[appkeys.PROVIDERS]
    settings = app[appkeys.SETTINGS]
    return Worker(
        database=app[appkeys.DATABASE], gateway=providers.charging,
        notifier=Notifier(sms=providers.sms, email=providers.email, brand=settings.brand),
        settings=settings, clock=app[appkeys.CLOCK], config=WorkerConfig(), limiter=NoLimit(),
    )


async def save_paypal(app, fake: PayPalFake, ref: str = "ACC-1001") -> PaymentMethod:  # type: ignore[no-untyped-def]
    """What the portal's PayPal button does: a setup token, the payer's approval, the vault id
    kept as the account's default method."""
    providers = app[appkeys.PROVIDERS]
    async with app[appkeys.DATABASE].session() as session:
        account = await session.scalar(select(Account).where(Account.account_ref == ref))
        assert account is not None
        customer = await ensure_processor_customer(providers.charging, account)
        token, approve_url = await providers.paypal.create_setup_intent(customer_id=customer,
                                                                        kind="paypal")
        assert approve_url.startswith(fake.base_url)
        fake.setup_tokens[token]["status"] = "APPROVED"
        saved = await providers.charging.save_method(customer_id=customer,
                                                     method_ref=PAYPAL_SETUP_PREFIX + token)
        method = await record_saved_method(session, account, saved, at=app[appkeys.CLOCK].now(),
                                           default=True, channel="web")
        await session.commit()
        return method


async def payments(app) -> list[Payment]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return list(await session.scalars(select(Payment).order_by(Payment.id)))


async def balance(app) -> int:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return int(await session.scalar(select(Account.balance_cents)) or 0)


def outbox(app) -> list[Any]:  # type: ignore[no-untyped-def]
    return app[appkeys.PROVIDERS].email.outbox


# --------------------------------------------------------------------------- the gateway


async def test_the_gateway_saves_charges_once_per_key_declines_and_refunds(paypal_fake,
                                                                           paypal_gateway):
    token, _ = await paypal_gateway.create_setup_intent(customer_id="ACC-1")
    with pytest.raises(MethodRejected) as not_yet:  # the payer has not approved it
        await paypal_gateway.save_method(customer_id="ACC-1",
                                         method_ref=PAYPAL_SETUP_PREFIX + token)
    assert not_yet.value.code == "setup_token_not_approved"
    paypal_fake.setup_tokens[token]["status"] = "APPROVED"
    saved = await paypal_gateway.save_method(customer_id="ACC-1",
                                             method_ref=PAYPAL_SETUP_PREFIX + token)
    assert (saved.kind, saved.brand, saved.last4, saved.label) == (
        "paypal", "PayPal", "", "m***@example.com")
    assert saved.processor_ref in paypal_fake.vault

    charge = {"customer_id": "ACC-1", "method_ref": saved.processor_ref, "amount_cents": 5025,
              "metadata": {"paybot_reference": "P-TEST1"}, "method_kind": "paypal"}
    paid = await paypal_gateway.charge(idempotency_key="pay:1", **charge)
    assert paid.status == "paid"
    assert await paypal_gateway.charge(idempotency_key="pay:1", **charge) == paid  # replayed
    (order,) = paypal_fake.orders.values()
    unit = order["purchase_units"][0]
    assert unit["amount"] == {"currency_code": "USD", "value": "50.25"}
    assert unit["custom_id"] == "P-TEST1"
    (capture,) = paypal_fake.captures
    assert capture["id"] == paid.processor_id
    sent = [h for method, path, h in paypal_fake.requests if path == "/v2/checkout/orders"]
    assert [h["PayPal-Request-Id"] for h in sent] == ["pay:1", "pay:1"]

    paypal_fake.decline = True
    declined = await paypal_gateway.charge(idempotency_key="pay:2", **charge)
    assert (declined.status, declined.failure_code, declined.failure_message) == (
        "declined", "paypal_declined",
        "PayPal declined the payment. Please check your PayPal account or use another "
        "payment method.")
    paypal_fake.decline_as = "instrument"
    refused = await paypal_gateway.charge(idempotency_key="pay:3", **charge)
    assert (refused.status, refused.decline_code) == ("declined", "instrument_declined")

    paypal_fake.fail_next(503)
    with pytest.raises(GatewayUnavailable):
        await paypal_gateway.charge(idempotency_key="pay:4", **charge)
    refund = await paypal_gateway.refund(charge_id=paid.processor_id, amount_cents=1000,
                                         idempotency_key="refund:1", metadata={})
    assert refund.status == "succeeded"
    with pytest.raises(PaymentError) as wrong_kind:
        await paypal_gateway.charge(idempotency_key="pay:5", **{**charge, "method_kind": "card"})
    assert wrong_kind.value.code == "unsupported_kind"


async def test_wrong_credentials_are_unavailable_and_never_show_the_secret(paypal_fake):
    gateway = PayPalGateway(paypal_fake.client_id, "not-the-secret", base_url=paypal_fake.base_url)
    with pytest.raises(GatewayUnavailable) as refused:
        await gateway.charge(customer_id="c", method_ref="V", amount_cents=100,
                             idempotency_key="k", metadata={})
    assert "not-the-secret" not in str(refused.value) + repr(gateway)


async def test_the_sandbox_keeps_the_same_rules():
    sandbox = SandboxPayPal()
    token, _ = await sandbox.create_setup_intent(customer_id="ACC-1")
    saved = await sandbox.save_method(customer_id="ACC-1", method_ref=PAYPAL_SETUP_PREFIX + token)
    assert saved.label == "p***@example.com"
    first = await sandbox.charge(customer_id="ACC-1", method_ref=saved.processor_ref,
                                 amount_cents=100, idempotency_key="k", metadata={})
    again = await sandbox.charge(customer_id="ACC-1", method_ref=saved.processor_ref,
                                 amount_cents=100, idempotency_key="k", metadata={})
    assert first == again and first.status == "paid" and len(sandbox.charges) == 1
    sandbox.decline = True
    declined = await sandbox.charge(customer_id="ACC-1", method_ref=saved.processor_ref,
                                    amount_cents=100, idempotency_key="k2", metadata={})
    assert declined.failure_code == "paypal_declined"


# --------------------------------------------------------------------------- by text


async def test_a_paypal_account_is_offered_by_text_and_paid_through_paypal(app, client, phone,
                                                                          paypal_fake):
    await add_account(app, methods=("pm_card_visa",), creditor_settings=PAYPAL_ONLY)
    await save_paypal(app, paypal_fake)
    maria = phone()
    await maria.send("pay")
    (menu,) = await maria.send("$50")
    link = menu.rsplit(" ", 1)[-1]
    assert menu == (
        "Which payment method? Reply 1 for PayPal (m***@example.com), 2 for Visa ending 4242, "
        f"or 3 to add a card or PayPal account: {link}"
    )
    assert link.startswith("https://paybot.test/p/")
    (when,) = await maria.send("1")
    assert when == "Pay now or later? Reply NOW, or a date such as 12/15 (up to Feb 23, 2027)."
    (confirm,) = await maria.send("now")
    assert confirm == ("Confirm: $50.00 from PayPal (m***@example.com) today. Reply YES to "
                       "confirm or NO to change.")
    await maria.send("yes")
    (done,) = await maria.send("agree")
    (payment,) = await payments(app)
    assert payment.status == "paid"
    assert done == (f"Done: $50.00 paid with PayPal (m***@example.com). Ref {payment.reference}. "
                    "Receipt sent to m***@example.com.")
    (capture,) = paypal_fake.captures
    assert payment.processor_id == capture["id"] and capture["custom_id"] == payment.reference
    assert await balance(app) == BALANCE - 5000


# --------------------------------------------------------------------------- the worker


async def add_paypal_plan(app, method: PaymentMethod, day: date) -> list[str]:  # type: ignore[no-untyped-def]
    """A plan of two $400.00 installments on the PayPal account (as signing writes them)."""
    now = app[appkeys.CLOCK].now()
    async with app[appkeys.DATABASE].session() as session:
        plan = Plan(account_id=method.account_id, total_cents=80000, installment_count=2,
                    frequency="monthly", method_id=method.id, created_at=now)
        session.add(plan)
        await session.flush()
        references = [new_payment_reference(), new_payment_reference()]
        for n, (reference, when) in enumerate(zip(references, [day, date(2027, 1, 15)],
                                                  strict=True), start=1):
            session.add(Payment(
                reference=reference, idempotency_key=f"plan:{reference}",
                account_id=method.account_id, method_id=method.id, plan_id=plan.id,
                installment_number=n, amount_cents=40000, scheduled_for=when,
                status="scheduled", channel="web", created_at=now, updated_at=now,
            ))
        await session.commit()
    return references


def ten_am(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 10, tzinfo=NY).astimezone(UTC)


async def test_the_worker_charges_a_plan_installment_to_the_paypal_account(
    app, client, clock, paypal_fake
):
    await add_account(app, methods=(), creditor_settings=PAYPAL_ONLY)
    method = await save_paypal(app, paypal_fake)
    first, _ = await add_paypal_plan(app, method, date(2026, 12, 15))
    clock.set(ten_am(date(2026, 12, 15)))

    report = await make_worker(app).run_once()
    assert (report.claimed, report.paid) == (1, 1)
    installment, later = await payments(app)
    assert (installment.reference, installment.status) == (first, "paid")
    assert later.status == "scheduled"
    (capture,) = paypal_fake.captures
    assert installment.processor_id == capture["id"]
    assert capture["amount"] == {"currency_code": "USD", "value": "400.00"}
    (order_call,) = [h for _, path, h in paypal_fake.requests if path == "/v2/checkout/orders"]
    assert order_call["PayPal-Request-Id"] == installment.idempotency_key
    assert await balance(app) == BALANCE - 40000
    (receipt,) = outbox(app)
    assert "PayPal (m***@example.com)" in receipt.text and "$400.00" in receipt.text
    assert (await make_worker(app).run_once()).claimed == 0  # charged once


async def test_a_declined_paypal_installment_is_declined_with_its_notice(
    app, client, clock, paypal_fake
):
    await add_account(app, methods=(), creditor_settings=PAYPAL_ONLY)
    method = await save_paypal(app, paypal_fake)
    await add_paypal_plan(app, method, date(2026, 12, 15))
    paypal_fake.decline = True
    clock.set(ten_am(date(2026, 12, 15)))

    report = await make_worker(app).run_once()
    assert (report.claimed, report.declined) == (1, 1)
    installment, _ = await payments(app)
    assert (installment.status, installment.failure_code) == ("declined", "paypal_declined")
    assert await balance(app) == BALANCE
    (notice,) = outbox(app)
    assert notice.subject == f"Your payment {installment.reference} did not go through"
    assert "Status: Declined" in notice.text
    assert "PayPal declined the payment. Please check your PayPal account or use another " \
           "payment method." in notice.text
    assert "Update your payment method" in notice.text


# --------------------------------------------------------------------------- webhooks


async def processing_payment(app, fake: PayPalFake) -> Payment:  # type: ignore[no-untyped-def]
    """A PayPal payment whose answer was lost (left Processing, no capture id yet)."""
    await add_account(app, methods=(), creditor_settings=PAYPAL_ONLY)
    method = await save_paypal(app, fake)
    now = app[appkeys.CLOCK].now()
    async with app[appkeys.DATABASE].session() as session:
        payment = Payment(
            reference=new_payment_reference(), idempotency_key="lost:1",
            account_id=method.account_id, method_id=method.id, amount_cents=5000,
            scheduled_for=now.date(), status="processing", channel="web",
            created_at=now, updated_at=now,
        )
        session.add(payment)
        await session.commit()
        return payment


def capture_resource(payment: Payment, capture_id: str = "CAPTURE0000000001",
                     value: str = "50.00") -> dict[str, Any]:
    return {"id": capture_id, "status": "COMPLETED", "custom_id": payment.reference,
            "amount": {"currency_code": "USD", "value": value}}


async def post_event(client, fake: PayPalFake, event: dict[str, Any], **sign: Any) -> Any:  # type: ignore[no-untyped-def]
    body = dumps(event)
    response = await client.post("/webhooks/paypal", data=body, headers=fake.signed(body, **sign))
    return response.status, await response.text()


async def test_a_signed_completed_capture_makes_the_payment_paid_once(app, client, paypal_fake):
    payment = await processing_payment(app, paypal_fake)
    event = paypal_fake.capture_event("PAYMENT.CAPTURE.COMPLETED", capture_resource(payment))
    assert await post_event(client, paypal_fake, event) == (200, "ok")
    assert await post_event(client, paypal_fake, event) == (200, "already processed")
    (paid,) = await payments(app)
    assert (paid.status, paid.processor_id) == ("paid", "CAPTURE0000000001")
    assert await balance(app) == BALANCE - 5000
    (receipt,) = outbox(app)
    assert receipt.to == "maria@example.com" and "PayPal (m***@example.com)" in receipt.text
    # Late and out of order: a denial after the completion changes nothing.
    denied = paypal_fake.capture_event("PAYMENT.CAPTURE.DENIED", capture_resource(payment))
    assert await post_event(client, paypal_fake, denied) == (200, "ok")
    (still,) = await payments(app)
    assert still.status == "paid" and len(outbox(app)) == 1


async def test_a_denied_capture_declines_the_payment_with_its_notice(app, client, paypal_fake):
    payment = await processing_payment(app, paypal_fake)
    event = paypal_fake.capture_event("PAYMENT.CAPTURE.DENIED", capture_resource(payment))
    assert await post_event(client, paypal_fake, event) == (200, "ok")
    (declined,) = await payments(app)
    assert (declined.status, declined.failure_code) == ("declined", "paypal_declined")
    (notice,) = outbox(app)
    assert notice.subject == f"Your payment {payment.reference} did not go through"
    assert "PayPal declined the payment." in notice.text


async def test_unverified_events_are_refused_and_change_nothing(app, client, paypal_fake):
    payment = await processing_payment(app, paypal_fake)
    event = paypal_fake.capture_event("PAYMENT.CAPTURE.COMPLETED", capture_resource(payment))
    body = dumps(event)
    headers = paypal_fake.signed(body)
    tampered = body.replace(b"50.00", b"00.50")
    for sent, sent_headers in [
        (tampered, headers),  # the body changed after signing: its CRC32 differs
        (body, {k: v for k, v in headers.items() if k != "PAYPAL-TRANSMISSION-SIG"}),
        (body, {**headers, "PAYPAL-CERT-URL": "https://evil.example/cert.pem"}),
        (body, paypal_fake.signed(body, webhook_id="WH-SOMEONE-ELSE")),
    ]:
        response = await client.post("/webhooks/paypal", data=sent, headers=sent_headers)
        assert response.status == 400, await response.text()
    (still,) = await payments(app)
    assert still.status == "processing" and not outbox(app)
    async with app[appkeys.DATABASE].session() as session:
        assert await session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.kind == "payment_status_changed")) == 0


async def test_a_refund_made_at_paypal_is_recorded_once(app, client, paypal_fake):
    payment = await processing_payment(app, paypal_fake)
    completed = paypal_fake.capture_event("PAYMENT.CAPTURE.COMPLETED", capture_resource(payment))
    refund = {"id": "REFUND00000000001", "status": "COMPLETED", "custom_id": payment.reference,
              "amount": {"currency_code": "USD", "value": "20.00"},
              "links": [{"rel": "up", "method": "GET", "href": f"{paypal_fake.base_url}"
                         "/v2/payments/captures/CAPTURE0000000001"}]}
    refunded = paypal_fake.capture_event("PAYMENT.CAPTURE.REFUNDED", refund)
    # Out of order: the refund first names a capture no payment holds yet; nothing is kept.
    assert await post_event(client, paypal_fake, refunded) == (200, "ok")
    assert await post_event(client, paypal_fake, completed) == (200, "ok")
    again = paypal_fake.capture_event("PAYMENT.CAPTURE.REFUNDED", refund)
    assert await post_event(client, paypal_fake, again) == (200, "ok")
    assert await post_event(client, paypal_fake, again) == (200, "already processed")
    (paid,) = await payments(app)
    assert (paid.status, paid.refunded_cents) == ("paid", 2000)
    assert await balance(app) == BALANCE - 5000 + 2000
    async with app[appkeys.DATABASE].session() as session:
        (row,) = await session.scalars(select(Refund))
        assert (row.status, row.processor_ref, row.amount_cents) == (
            "succeeded", "REFUND00000000001", 2000)


async def test_malformed_certificate_addresses_are_refused_not_a_500(app, client, paypal_fake):
    # A certificate address Python's URL parser cannot read ("https://[...") was a 500.
    payment = await processing_payment(app, paypal_fake)
    event = paypal_fake.capture_event("PAYMENT.CAPTURE.COMPLETED", capture_resource(payment))
    body = dumps(event)
    headers = paypal_fake.signed(body)
    for cert_url in ["https://[api.paypal.com/cert.pem", "https://api.paypal.com:99999/c.pem",
                     "https://api.paypal.com\\@evil.example/c.pem", "http://api.paypal.com/c"]:
        response = await client.post(
            "/webhooks/paypal", data=body, headers={**headers, "PAYPAL-CERT-URL": cert_url}
        )
        assert (response.status, await response.text()) == (400, "invalid signature"), cert_url
    (still,) = await payments(app)
    assert still.status == "processing" and not outbox(app)
