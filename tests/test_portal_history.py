"""What a customer has paid and will pay, in the page's words: the statuses (Paid, Pending,
"Pending (scheduled for Dec 15)", Declined), "Your payments" with a receipt for each (only the
session's own), "Email my receipt" with its limit, the landing page's plan and scheduled
payments, and the amount being paid on every step from the amount on."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Account, Payment, PaymentMethod, Plan
from tests.conftest import START
from tests.seed import add_account
from tests.test_portal import Browser, link_for

FOOT = "Questions? support@paybot.example. Secure payments processed by Stripe."


async def pay_on_the_web(app, client, phone, *, amount: str, day: str | None) -> Browser:  # type: ignore[no-untyped-def]
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue", amount=amount)
    await browser.step(action="continue", choice="1")
    if day is None:
        await browser.step(action="now")
    else:
        await browser.step(action="later", date=day)
    return browser


async def test_a_scheduled_payment_in_the_pages_words_everywhere(app, client, phone, providers):
    await add_account(app, creditor_settings={"contact_review": False})
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue", amount="40")
    # From the amount on, every step shows what is being paid, not the balance.
    assert "Payment method You are paying $40.00 Pay with Visa ending 4242" in browser.text
    assert "Balance on" not in browser.text
    await browser.step(action="continue", choice="1")
    head = "Northwind Recovery Skip to content Northwind Recovery Español Sign out"
    assert browser.text == (
        f"When - {head} When You are paying $40.00 Pay today, or choose a date up to "
        f"Feb 23, 2027. Pay on this date Schedule Pay today Back Your payments {FOOT}"
    )
    await browser.step(action="later", date="2026-12-15")
    final = browser.text
    assert final.startswith(
        f"Review and pay - {head} Review and pay You are paying $40.00 Amount $40.00 "
        "From Visa ending 4242 Date Dec 15, 2026 Payment authorization Payment authorization"
    )
    assert final.endswith(
        "Full terms I have read and accept this authorization, and I agree to receive it, my "
        "receipts and notices electronically (I can ask for a paper copy at no charge). "
        f"Schedule $40.00 for Dec 15 Change Your payments {FOOT}"
    )
    await browser.step(action="pay", consent="yes")
    async with app[appkeys.DATABASE].session() as session:
        payment = await session.scalar(select(Payment))
    ref = payment.reference
    assert payment.status == "scheduled"
    assert browser.text == (
        "Receipt - Northwind Recovery Skip to content Northwind Recovery Español "
        f"Payment scheduled Reference {ref} Amount $40.00 To be paid with Visa ending 4242 "
        "Date Dec 15, 2026 Status Pending (scheduled for Dec 15) Account Acme Card ending 4821 "
        "Balance now $1,250.00 Paid to Northwind Recovery Print receipt Email my receipt "
        f"Your payments · Back to my account {FOOT}"
    )
    await browser.get("/portal/pay")
    assert browser.state == "idle"
    assert browser.text == (
        f"Your balance - {head} Your balance Balance on Acme Card ending 4821: $1,250.00 "
        f"Your account at a glance $40.00: Pending (scheduled for Dec 15) {ref} "
        "Hi Maria. You can pay all or part of your balance now or on a later date. "
        f"Make a payment Your payments {FOOT}"
    )
    await browser.get("/portal/payments")
    assert browser.text == (
        f"Your payments - {head} Your payments Balance on Acme Card ending 4821: $1,250.00 "
        "Every payment on this account Date Method Amount Status Receipt "
        f"Dec 15, 2026 Visa ending 4242 $40.00 Pending (scheduled for Dec 15) {ref} "
        f"Back to my account {FOOT}"
    )


async def add_plan_with_a_decline(app, account: Account) -> list[Payment]:  # type: ignore[no-untyped-def]
    """A three-payment plan: the first paid, the second declined, the third still to come."""
    async with app[appkeys.DATABASE].session() as session:
        method = await session.scalar(select(PaymentMethod))
        plan = Plan(account_id=account.id, total_cents=30000, installment_count=3,
                    frequency="monthly", method_id=method.id, status="active", created_at=START)
        session.add(plan)
        await session.flush()
        rows = []
        for n, (day, status) in enumerate(
            [(date(2026, 10, 1), "paid"), (date(2026, 11, 1), "declined"),
             (date(2026, 12, 1), "scheduled")], start=1,
        ):
            row = Payment(reference=f"P-PLAN{n}", idempotency_key=f"plan-{plan.id}-{n}",
                          account_id=account.id, method_id=method.id, plan_id=plan.id,
                          installment_number=n, amount_cents=10000, scheduled_for=day,
                          status=status, channel="web", created_at=START, updated_at=START)
            session.add(row)
            rows.append(row)
        await session.commit()
        return rows


async def test_the_landing_page_shows_the_plan_its_next_payment_and_the_decline(
    app, client, phone
):
    account = await add_account(app, balance="200.00")
    await add_plan_with_a_decline(app, account)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    head = "Northwind Recovery Skip to content Northwind Recovery Español Sign out"
    assert browser.text == (
        f"Your balance - {head} Your balance Balance on Acme Card ending 4821: $200.00 "
        "Your account at a glance Your payment plan: $300.00 in 3 payments; $100.00 paid so "
        "far. Next payment: $100.00 on Dec 1, 2026. Payment 2 of your plan, $100.00 on "
        "Nov 1, 2026, was declined. Make a payment Hi Maria. You can pay all or part of your "
        f"balance now or on a later date. Make a payment Your payments {FOOT}"
    )
    await browser.get("/portal/receipt/P-PLAN3")
    # The plan's receipt lists its schedule, each installment in the page's words.
    assert (
        "Payment schedule # Date Amount Status 1 Oct 1, 2026 $100.00 Paid "
        "2 Nov 1, 2026 $100.00 Declined 3 Dec 1, 2026 $100.00 Pending (scheduled for Dec 1) "
    ) in browser.text
    await browser.get("/portal/payments")
    assert (
        "Date Method Amount Status Receipt "
        "Dec 1, 2026 Visa ending 4242 $100.00 Pending (scheduled for Dec 1) P-PLAN3 "
        "Nov 1, 2026 Visa ending 4242 $100.00 Declined P-PLAN2 "
        "Oct 1, 2026 Visa ending 4242 $100.00 Paid P-PLAN1 Back to my account"
    ) in browser.text


async def test_another_accounts_receipt_is_not_found(app, client, phone):
    await add_account(app)
    other = await add_account(app, ref="ACC-2002", phone="+15555550199", email="x@example.com")
    async with app[appkeys.DATABASE].session() as session:
        session.add(Payment(reference="P-OTHER", idempotency_key="other-1", account_id=other.id,
                            amount_cents=5000, scheduled_for=date(2026, 11, 20), status="paid",
                            channel="web", created_at=START, updated_at=START))
        await session.commit()
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.get("/portal/receipt/P-OTHER", status=404)
    assert "We could not find that page" in browser.text and "$50.00" not in browser.text
    await browser.get("/portal/payments")
    assert "P-OTHER" not in browser.text and "No payments yet." in browser.text
    response = await client.post("/portal/receipt/P-OTHER/email",
                                 data={"csrf_token": "x"})
    assert response.status == 403  # no CSRF, no answer about the payment at all


async def test_email_my_receipt_three_times_an_hour_then_a_clear_answer(
    app, client, phone, providers
):
    await add_account(app, creditor_settings={"contact_review": False})
    browser = await pay_on_the_web(app, client, phone, amount="40", day=None)
    await browser.step(action="pay", consent="yes")
    async with app[appkeys.DATABASE].session() as session:
        ref = (await session.scalar(select(Payment))).reference
    sent_before = len(providers.email.outbox)
    for _ in range(3):
        await browser.post(f"/portal/receipt/{ref}/email", {})
        assert "Your receipt is on its way to m***@example.com." in browser.text
    assert len(providers.email.outbox) == sent_before + 3
    assert {m.to for m in providers.email.outbox[sent_before:]} == {"maria@example.com"}
    assert all(ref in m.text for m in providers.email.outbox[sent_before:])
    await browser.post(f"/portal/receipt/{ref}/email", {}, status=429)
    assert (
        "Thank you You have asked for 3 receipts by email in the last hour, which is as many "
        "as we send. Please try again later, or print this page. Reference"
    ) in browser.text
    assert len(providers.email.outbox) == sent_before + 3
