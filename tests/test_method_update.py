"""After a decline: one notice with a personalized link; the page it opens shows what did not go
through and what is still to come, and switching the method (a saved one, or a card added there)
moves the plan and every scheduled payment to it, so the next charge uses it. Asserted on the
email, the page, the ledger and the processor (the sandbox, and localstripe once)."""

from __future__ import annotations

import logging
import re
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Account, AuditEvent, Link, Payment, PaymentMethod, Plan
from bot.providers.sandbox_gateway import SandboxGateway
from tests.seed import add_account
from tests.test_portal import Browser, csrf_of
from tests.test_stripe_webhooks import SECRET, intent_event, post_event
from tests.test_stripe_webhooks import add_payment as add_payment_row
from tests.test_worker import add_scheduled, local, make_worker, outbox, payment_intents

LINK = re.compile(r"https://paybot\.test(/p/[A-Za-z0-9_-]+)")
PLAN_STEPS = ["pay", "ok", "2", "1", "dec 1", "yes", "agree"]  # 6 monthly payments from Dec 1


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    return settings.replace(stripe_webhook_secret=SECRET)


@pytest.fixture
def gateway(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """localstripe (the real SDK) for a test that asks for `localstripe`; else the sandbox."""
    if "localstripe" in request.fixturenames:
        return request.getfixturevalue("stripe_gateway")
    return SandboxGateway()


def link_in(text: str) -> str:
    match = LINK.search(text)
    assert match, "no personalized link in the notice"
    return match.group(1)


async def sign_plan_by_text(phone) -> None:  # type: ignore[no-untyped-def]
    maria = phone()
    for text in PLAN_STEPS[:-1]:
        await maria.send(text)
    (done,) = await maria.send(PLAN_STEPS[-1])
    assert "the first of 6 payments" in done


async def method_id(app, account_id: int, processor_ref: str) -> int:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        found = await session.scalar(
            select(PaymentMethod.id).where(
                PaymentMethod.account_id == account_id,
                PaymentMethod.processor_ref == processor_ref,
            )
        )
        assert found is not None
        return found


async def ledger(app) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return {
            "plans": list(await session.scalars(select(Plan).order_by(Plan.id))),
            "payments": list(await session.scalars(select(Payment).order_by(Payment.id))),
            "methods": list(
                await session.scalars(select(PaymentMethod).order_by(PaymentMethod.id))
            ),
            "switches": list(
                await session.scalars(
                    select(AuditEvent).where(AuditEvent.kind == "payment_method_switched")
                )
            ),
        }


def scheduled(state: dict[str, Any]) -> list[Payment]:
    return [p for p in state["payments"] if p.status == "scheduled"]


def default_method(state: dict[str, Any], account_id: int) -> int:
    (found,) = [m.id for m in state["methods"] if m.account_id == account_id and m.is_default]
    return found


# --------------------------------------------------------------------------- the whole journey


async def test_a_declined_installment_is_moved_to_another_method_and_charged_there(
    app, client, phone, clock, providers, caplog
):
    caplog.set_level(logging.DEBUG)
    maria = await add_account(
        app, offers=True, methods=("pm_card_chargeCustomerFail", "pm_card_mastercard")
    )
    await sign_plan_by_text(phone)
    emails_before = len(outbox(app))
    worker = make_worker(app, retry_declined_after_days=3, max_decline_retries=1)

    clock.set(local(date(2026, 12, 1), 10))
    report = await worker.run_once()
    assert (report.declined, report.retries_scheduled) == (1, 1)
    (notice,) = outbox(app)[emails_before:]
    assert "We will try this payment again on Dec 4, 2026." in notice.text
    assert "Update your payment method" in notice.text
    assert "Update your payment method" in notice.html
    path = link_in(notice.text)
    assert path in notice.html
    assert path.removeprefix("/p/") not in caplog.text  # the raw token is never logged
    async with app[appkeys.DATABASE].session() as session:
        (link,) = await session.scalars(select(Link).where(Link.purpose == "update_method"))
        assert link.account_id == maria.id
        assert link.expires_at - clock.now() == timedelta(days=7)

    state = await ledger(app)
    first = state["payments"][0]
    installment = first.amount_cents
    browser = Browser(client)
    await browser.get(path)
    text = browser.text
    assert "What did not go through" in text
    assert f"Amount ${installment / 100:,.2f}" in text and "Date Dec 1, 2026" in text
    assert "Method Visa ending 0341" in text and "declined by the card issuer" in text
    assert "We will try it again on Dec 4, 2026" in text
    assert "Retry of the missed payment" in text
    assert "Jan 1, 2027" in text and "Plan payment 2 of 6" in text and "May 1, 2027" in text
    assert "Mastercard ending 4444" in text and "Or add a card" in text
    assert "maria@example.com" not in browser.html

    mastercard = await method_id(app, maria.id, "pm_card_mastercard")
    await browser.post("/portal/method", {"method": str(mastercard)})
    text = browser.text
    assert "Payment method updated" in text
    assert "Mastercard ending 4444 will be used for:" in text
    assert "Dec 4, 2026 $" in text and "Jan 1, 2027 $" in text
    assert "We will try the missed" in text and "again on Dec 4, 2026 with Mastercard" in text

    state = await ledger(app)
    (plan,) = state["plans"]
    assert plan.method_id == mastercard and default_method(state, maria.id) == mastercard
    rows = scheduled(state)
    assert len(rows) == 6  # the retry of the first installment and the five still to come
    assert {p.method_id for p in rows} == {mastercard}
    retry = next(p for p in rows if p.idempotency_key.endswith("~r1"))
    assert retry.scheduled_for == date(2026, 12, 4)
    (switch,) = state["switches"]
    assert switch.account_id == maria.id and switch.detail["method_id"] == mastercard
    assert sorted(switch.detail["payments"]) == sorted(p.reference for p in rows)

    clock.set(local(date(2026, 12, 4), 10))
    assert (await worker.run_once()).paid == 1
    charge = providers.payments.charges[-1]
    assert charge.method_ref == "pm_card_mastercard" and charge.status == "paid"
    assert charge.metadata["paybot_reference"] == retry.reference

    # Later: a card added on the page takes over what is still to come.
    browser = Browser(client)
    await browser.get(path)
    assert "What did not go through" not in browser.text  # the retry made up for it
    await browser.post("/portal/method/new", {"payment_method": "pm_card_visa"})
    assert "Visa ending 4242 will be used for:" in browser.text
    visa = await method_id(app, maria.id, "pm_card_visa")
    state = await ledger(app)
    assert state["plans"][0].method_id == visa and default_method(state, maria.id) == visa
    assert {p.method_id for p in scheduled(state)} == {visa} and len(scheduled(state)) == 5
    assert len(state["switches"]) == 2

    clock.set(local(date(2027, 1, 1), 10))
    assert (await worker.run_once()).paid == 1
    assert providers.payments.charges[-1].method_ref == "pm_card_visa"


async def test_without_a_retry_the_page_offers_to_pay_the_missed_amount(app, client, clock):
    maria = await add_account(app, methods=("pm_card_chargeCustomerFail", "pm_card_visa"))
    await add_scheduled(app, maria, date(2026, 12, 15))
    (later,) = await add_scheduled(app, maria, date(2027, 1, 2), amount=40000)
    clock.set(local(date(2026, 12, 15), 10))
    assert (await make_worker(app).run_once()).declined == 1
    (notice,) = outbox(app)
    assert "We will not try this payment again automatically." in notice.text

    browser = Browser(client)
    await browser.get(link_in(notice.text))
    assert "Scheduled payment" in browser.text and "Jan 2, 2027" in browser.text
    visa = await method_id(app, maria.id, "pm_card_visa")
    await browser.post("/portal/method", {"method": str(visa)})
    assert "Visa ending 4242 will be used for: Jan 2, 2027 $400.00" in browser.text
    assert "Pay the missed $50.00 now" in browser.text
    assert 'href="/portal/pay"' in browser.html
    state = await ledger(app)
    (row,) = scheduled(state)
    assert (row.reference, row.method_id) == (later, visa)


# --------------------------------------------------------------------------- refusals


async def test_a_form_without_csrf_or_with_another_accounts_method_changes_nothing(
    app, client, clock
):
    maria = await add_account(app, methods=("pm_card_chargeCustomerFail", "pm_card_visa"))
    other = await add_account(
        app,
        ref="ACC-2002",
        phone="+15555550199",
        email="sam@example.com",
        methods=("pm_card_visa",),
    )
    await add_scheduled(app, maria, date(2026, 12, 15))
    await add_scheduled(app, maria, date(2027, 1, 2))
    clock.set(local(date(2026, 12, 15), 10))
    await make_worker(app).run_once()
    (notice,) = outbox(app)
    browser = Browser(client)
    await browser.get(link_in(notice.text))
    before = await ledger(app)

    visa = await method_id(app, maria.id, "pm_card_visa")
    response = await client.post("/portal/method", data={"method": str(visa)})
    assert response.status == 403
    response = await client.post(
        "/portal/method", data={"method": str(visa), "csrf_token": "forged"}
    )
    assert response.status == 403
    response = await client.post("/portal/method/new", data={"payment_method": "pm_card_visa"})
    assert response.status == 403

    theirs = await method_id(app, other.id, "pm_card_visa")
    await browser.post("/portal/method", {"method": str(theirs)}, status=422)
    assert "Please choose how you will pay." in browser.text  # as for an id that does not exist
    await browser.post("/portal/method", {"method": "nonsense"}, status=422)
    assert "Please choose how you will pay." in browser.text
    await browser.post(
        "/portal/method/new", {"payment_method": "pm_card_visa_chargeDeclined"}, status=422
    )
    assert "could not be saved" in browser.text

    after = await ledger(app)
    assert [(p.id, p.status, p.method_id) for p in after["payments"]] == [
        (p.id, p.status, p.method_id) for p in before["payments"]
    ]
    assert [(m.id, m.is_default) for m in after["methods"]] == [
        (m.id, m.is_default) for m in before["methods"]
    ]
    assert after["switches"] == []


async def test_the_link_lasts_a_week_or_until_the_retry_then_410(app, client, clock):
    maria = await add_account(
        app, methods=("pm_card_chargeCustomerFail",), creditor_settings={"decline_retry_days": 10}
    )
    await add_scheduled(app, maria, date(2026, 12, 15))
    clock.set(local(date(2026, 12, 15), 10))
    await make_worker(app).run_once()
    (notice,) = outbox(app)
    assert "We will try this payment again on Dec 25, 2026." in notice.text
    path = link_in(notice.text)

    clock.set(local(date(2026, 12, 25), 20))  # past a week, still the day of the retry
    response = await client.get(path, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/portal/method"
    clock.set(local(date(2026, 12, 26), 0, 1))
    response = await client.get(path)
    assert response.status == 410 and "This link has expired" in await response.text()


async def test_a_link_past_its_week_is_410(app, client, clock):
    maria = await add_account(app, methods=("pm_card_chargeCustomerFail",))
    await add_scheduled(app, maria, date(2026, 12, 15))
    clock.set(local(date(2026, 12, 15), 10))
    await make_worker(app).run_once()
    (notice,) = outbox(app)
    clock.advance(timedelta(days=7, seconds=1))
    response = await client.get(link_in(notice.text))
    assert response.status == 410 and "This link has expired" in await response.text()
    assert "Content-Security-Policy" in response.headers


async def test_the_page_needs_a_session(app, client):
    response = await client.get("/portal/method", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/portal/"


# --------------------------------------------------------------------------- the Stripe event


async def test_a_decline_told_by_stripe_carries_the_link_too(app, client, clock):
    maria = await add_account(app, methods=("pm_card_visa", "pm_card_mastercard"))
    reference = await add_payment_row(app, maria, status="pending")
    (coming,) = await add_scheduled(app, maria, date(2026, 12, 20), amount=7500)
    failed = intent_event(
        "payment_intent.payment_failed", "pi_test_1", failure_code="insufficient_funds"
    )
    assert (await post_event(client, failed))[0] == 200
    assert (await post_event(client, failed))[0] == 200  # a retried event: no second notice
    (notice,) = [e for e in outbox(app) if "did not go through" in e.subject]
    assert notice.subject == f"Your payment {reference} did not go through"
    assert "We will not try this payment again automatically." in notice.text
    path = link_in(notice.text)
    assert path in notice.html

    browser = Browser(client)
    await browser.get(path)
    assert "Amount $50.00" in browser.text and "insufficient funds" in browser.text
    assert "Dec 20, 2026" in browser.text and "$75.00" in browser.text
    mastercard = await method_id(app, maria.id, "pm_card_mastercard")
    await browser.post("/portal/method", {"method": str(mastercard)})
    assert "Mastercard ending 4444 will be used for: Dec 20, 2026 $75.00" in browser.text
    (row,) = scheduled(await ledger(app))
    assert (row.reference, row.method_id) == (coming, mastercard)


# --------------------------------------------------------------------------- localstripe


async def test_at_localstripe_the_retry_is_charged_to_the_method_chosen(
    app, client, clock, localstripe, method_ref_for, gateway
):
    declining = await method_ref_for(gateway, "charge_declined")
    visa_ref = await method_ref_for(gateway, "visa")
    maria = await add_account(app, methods=(declining, visa_ref))
    (reference,) = await add_scheduled(app, maria, date(2026, 12, 15))
    worker = make_worker(app, retry_declined_after_days=3)
    clock.set(local(date(2026, 12, 15), 10))
    assert (await worker.run_once()).declined == 1
    (notice,) = outbox(app)

    browser = Browser(client)
    await browser.get(link_in(notice.text))
    assert "What did not go through" in browser.text and "Amount $50.00" in browser.text
    assert 'id="card-form"' in browser.html  # Stripe.js card entry, its script from Stripe
    assert csrf_of(browser.html)
    async with app[appkeys.DATABASE].session() as session:
        visa = await session.scalar(
            select(PaymentMethod).where(
                PaymentMethod.account_id == maria.id, PaymentMethod.processor_ref != declining
            )
        )
        assert visa is not None
    await browser.post("/portal/method", {"method": str(visa.id)})
    assert f"{visa.brand} ending {visa.last4} will be used for: Dec 18, 2026 $50.00" in browser.text

    clock.set(local(date(2026, 12, 18), 10))
    assert (await worker.run_once()).paid == 1
    state = await ledger(app)
    retry = state["payments"][-1]
    assert retry.status == "paid" and retry.idempotency_key == f"test:{reference}~r1"
    intents = [
        i
        for i in await payment_intents(localstripe)
        if i["metadata"].get("paybot_reference") == retry.reference
    ]
    assert [(i["status"], i["payment_method"]) for i in intents] == [
        ("succeeded", visa.processor_ref)
    ]
    async with app[appkeys.DATABASE].session() as session:
        account = await session.get(Account, maria.id)
        assert account is not None and account.balance_cents == 125000 - 5000
