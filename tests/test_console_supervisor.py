"""The supervisors' pages over HTTP: agents get 403 on each; a supervisor sees each page whole; a
creditor's bad value is refused, named next to its field, with nothing changed; a good change
is what the next SMS conversation follows; a refund made on the page reaches localstripe, the
ledger and the balance, once however often it is submitted; a scheduled payment is canceled
with its notice; the CSV comes whole as an attachment; every change is audited as staff:NAME."""

from __future__ import annotations

import html
import re
from datetime import date, timedelta

import pyotp
import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger import queries as ledger
from bot.ledger.models import (
    Account,
    AuditEvent,
    Creditor,
    Handoff,
    OutboundEmail,
    Payment,
    Refund,
    WrongNumber,
)
from tests.console_support import Console, add_staff, code_at, hidden
from tests.seed import CONFIRM_STEPS, add_account

PAGES = [
    "/agent/supervisor/", "/agent/supervisor/dashboard", "/agent/supervisor/creditors",
    "/agent/supervisor/creditors/northwind", "/agent/supervisor/payments",
    "/agent/supervisor/payments.csv", "/agent/supervisor/wrong-numbers",
    "/agent/supervisor/canned",
]
SCHEDULE_STEPS = ["pay", "ok", "50", "1", "dec 15", "yes", "agree"]


@pytest.fixture
async def supervisor(app, client, clock) -> Console:  # type: ignore[no-untyped-def]
    """Sam, a supervisor with a second factor, signed in through the real forms."""
    secret = pyotp.random_base32()
    await add_staff(app, "sam@paybot.test", "Sam", "supervisor", totp_secret=secret)
    console = Console(client)
    response = await console.sign_in("sam@paybot.test", code=code_at(secret, clock.now()))
    assert response.status == 303
    return console


def text_of(page: str) -> str:
    """The page's words, as a person reads them (tags out, whitespace collapsed)."""
    body = page.split("<main", 1)[1]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


async def audited(app, kind: str) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id))
        return [(row.actor, row.detail) for row in rows]


async def stored_creditor(app) -> Creditor:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        creditor = await session.get(Creditor, "northwind")
        assert creditor is not None
        return creditor


async def only_payment(app) -> Payment:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        (payment,) = await session.scalars(select(Payment))
        return payment


@pytest.mark.parametrize("path", PAGES + ["/agent/supervisor/payments/P-NONE"])
async def test_an_agent_gets_403_on_every_supervisor_page(app, client, path):
    await add_account(app)
    await add_staff(app)
    console = Console(client)
    await console.sign_in()
    response = await console.get(path)
    assert response.status == 403
    assert "This page is for supervisors." in await response.text()


@pytest.mark.parametrize("path", ["/agent/supervisor/creditors/northwind",
                                  "/agent/supervisor/payments/P-X/refund",
                                  "/agent/supervisor/payments/P-X/cancel",
                                  "/agent/supervisor/canned"])
async def test_an_agent_posting_to_a_supervisor_form_gets_403_and_nothing_changes(
    app, client, path
):
    await add_account(app)
    await add_staff(app)
    console = Console(client)
    await console.sign_in()
    response = await console.post(path, {"name": "Taken over", "amount": "1",
                                         "shortcut": "x", "body": "Pay us"})
    assert response.status == 403
    assert (await stored_creditor(app)).name == "Northwind Recovery"
    assert await audited(app, "creditor_changed") == []
    assert await audited(app, "canned_reply_saved") == []


async def test_a_supervisor_sees_every_page_whole(app, client, supervisor, phone):
    await add_account(app)
    maria = phone()
    for text in [*CONFIRM_STEPS, "agree"]:
        await maria.send(text)
    paid = await only_payment(app)
    now = app[appkeys.CLOCK].now()
    async with app[appkeys.DATABASE].session() as session:
        account = await session.scalar(select(Account))
        session.add(WrongNumber(phone="+15555550177", account_id=account.id,
                                reported_by="agent:Ana", reported_at=now))
        await session.commit()

    for path in PAGES:
        response = await supervisor.get(path)
        assert response.status == 200, path
        if path.endswith(".csv"):
            continue
        page = await response.text()
        assert page.rstrip().endswith("</html>"), path
        assert "Sam <small>(supervisor)</small>" in page

    home = text_of(await (await supervisor.get("/agent/supervisor/")).text())
    assert "Dashboard Creditors Payments Canned replies Wrong numbers" in home

    listing = text_of(await (await supervisor.get("/agent/supervisor/creditors")).text())
    assert "northwind Northwind Recovery - 1 defaults Edit" in listing

    payments = text_of(await (await supervisor.get("/agent/supervisor/payments")).text())
    assert "1 payment; page 1 of 1. Dates are UTC." in payments
    assert (f"{paid.reference} ACC-1001 Maria Lopez northwind sms Paid $50.00 2026-11-25 "
            "Visa ending 4242") in payments

    board = text_of(await (await supervisor.get("/agent/supervisor/dashboard")).text())
    assert ("Today Collected $50.00 Refunded $0.00 Opt-outs 0 Declines 0 ($0.00) "
            "Median first agent reply no reply yet Collected by channel") in board
    assert ("Funnel (phone numbers) Texted 1 Replied 1 Verified 1 Paid 1 "
            "Handoffs by reason None") in board
    page = await (await supervisor.get("/agent/supervisor/dashboard")).text()
    assert ('aria-label="Collected by channel: SMS $50.00; Web $0.00; Worker (scheduled) $0.00"'
            in page)
    assert "<script" not in page.split("</main>")[0]  # the charts are SVG drawn on the server

    wrong = text_of(await (await supervisor.get("/agent/supervisor/wrong-numbers")).text())
    assert ("Phone Account Customer Creditor Marked by When (UTC) ***-0177 ACC-1001 Maria Lopez "
            "northwind agent:Ana 2026-11-25 15:00") in wrong
    assert "5555550177" not in wrong


async def test_a_bad_creditor_value_is_refused_next_to_its_field_and_nothing_changes(
    app, client, supervisor
):
    await add_account(app)
    form = await supervisor.get("/agent/supervisor/creditors/northwind")
    page = await form.text()
    assert 'name="quiet_hours_start" value="21" type="number"' in page
    assert 'id="f-contact_review" name="contact_review" value="true" checked' in page

    response = await supervisor.post("/agent/supervisor/creditors/northwind", {
        "name": "Renamed", "disclosure": "This is a communication from a debt collector.",
        "contact_review": "true", "virtual_collection": "true", "allow_skip_offer": "true",
        "schedule_payment": "true", "sms_plan_signing": "true",
        "quiet_hours_start": "25", "methods_enabled": "cash", "action": "save",
    })
    assert response.status == 422
    page = await response.text()
    said = text_of(page)
    assert ("Nothing was changed. Fix these fields: methods_enabled : must list one or more of "
            "card, us_bank_account, paypal, once each quiet_hours_start : Input should be less "
            "than or equal to 24") in said
    assert ('<p class="field-error" id="err-quiet_hours_start">quiet_hours_start: Input should '
            'be less than or equal to 24</p>') in page
    assert 'name="quiet_hours_start" value="25" type="number"' in page  # what was typed, kept
    assert 'name="name" value="Renamed"' in page
    creditor = await stored_creditor(app)
    assert (creditor.name, creditor.settings) == ("Northwind Recovery", {})
    assert await audited(app, "creditor_changed") == []


async def test_a_preview_shows_what_the_settings_produce_and_saves_nothing(
    app, client, supervisor
):
    await add_account(app)
    page = text_of(await (await supervisor.get("/agent/supervisor/creditors/northwind")).text())
    assert ("First text Northwind Recovery: Hi Maria, your balance on Acme Card ending 4821 is "
            "$1,250.00. Reply PAY to pay by text or open https://paybot.test/p/EXAMPLE This is "
            "a communication from a debt collector. Reply STOP to opt out.") in page
    assert ("Pays an amount of their own Your contact details (contact_review) We have your "
            "email as m***@example.com. Reply OK, or send a new email.") in page
    assert "When (schedule) Pay now or later?" in page

    response = await supervisor.post("/agent/supervisor/creditors/northwind", {
        "name": "Northwind Collections",
        "disclosure": "Northwind Collections is a debt collector.",
        "virtual_collection": "true", "allow_skip_offer": "true", "sms_plan_signing": "true",
        "action": "preview",
    })
    assert response.status == 200
    said = text_of(await response.text())
    assert "Preview of the settings below: nothing is saved until you press Save." in said
    assert ("First text Northwind Collections: Hi Maria, your balance on Acme Card ending 4821 "
            "is $1,250.00. Reply PAY to pay by text or open https://paybot.test/p/EXAMPLE "
            "Northwind Collections is a debt collector. Reply STOP to opt out.") in said
    assert ("contact_review : off virtual_collection : on allow_skip_offer : on "
            "schedule_payment : off") in said
    assert ("Pays an amount of their own Choose an offer (offers) Offers for you: 1) Pay $800.00 "
            "by Dec 9, 2026 and settle in full (save $450.00) 2) 6 monthly payments of $208.34 "
            "3) Skip. Reply 1, 2 or 3. How much (amount)") in said
    assert "When (schedule)" not in said
    creditor = await stored_creditor(app)
    assert (creditor.name, creditor.settings) == ("Northwind Recovery", {})
    assert await audited(app, "creditor_changed") == []


async def test_a_saved_change_is_what_the_next_conversation_follows_and_is_audited(
    app, client, supervisor, phone
):
    await add_account(app)
    form = await supervisor.get("/agent/supervisor/creditors/northwind")
    token = hidden(await form.text(), "csrf_token")
    response = await supervisor.post("/agent/supervisor/creditors/northwind", {
        "name": "Northwind Recovery", "brand": "Northwind", "support_contact": "1-800-555-0100",
        "disclosure": "This is a communication from a debt collector.",
        # contact_review unticked: off
        "virtual_collection": "true", "allow_skip_offer": "true", "schedule_payment": "true",
        "sms_plan_signing": "true", "min_payment_cents": "5000", "methods_enabled": "card",
        "quiet_hours_start": "21", "reminder_days_before": "7, 3, 1", "action": "save",
    }, csrf=token)
    assert (response.status, response.headers["Location"]) == (
        303, "/agent/supervisor/creditors/northwind?done=saved")
    page = await (await supervisor.get(response.headers["Location"])).text()
    assert "Saved. The next conversation follows these settings." in page
    creditor = await stored_creditor(app)
    assert (creditor.brand, creditor.support_contact, creditor.settings) == (
        "Northwind", "1-800-555-0100",
        {"contact_review": False, "min_payment_cents": 5000, "methods_enabled": ["card"]},
    )
    assert await audited(app, "creditor_changed") == [("staff:Sam", {
        "creditor": "northwind",
        "changes": {"brand": "Northwind", "support_contact": "1-800-555-0100",
                    "contact_review": "false", "min_payment_cents": "5000",
                    "methods_enabled": '["card"]'},
    })]

    maria = phone()
    (reply,) = await maria.send("pay")  # no contact review now: straight to the amount
    assert reply == (
        "How much would you like to pay? Reply an amount from $50.00 to $1,250.00, or FULL."
    )

    # "use the default" puts the default back.
    response = await supervisor.post("/agent/supervisor/creditors/northwind", {
        "name": "Northwind Recovery", "brand": "Northwind", "support_contact": "1-800-555-0100",
        "disclosure": "This is a communication from a debt collector.",
        "virtual_collection": "true", "allow_skip_offer": "true", "schedule_payment": "true",
        "sms_plan_signing": "true", "min_payment_cents": "5000", "default:min_payment_cents": "1",
        "methods_enabled": "card", "action": "save",
    })
    assert response.status == 303
    assert (await stored_creditor(app)).settings == {
        "contact_review": False, "methods_enabled": ["card"]}


class TestMoneyOnThePage:
    @pytest.fixture
    def gateway(self, stripe_gateway):  # type: ignore[no-untyped-def]
        return stripe_gateway

    async def test_a_refund_reaches_localstripe_the_ledger_and_the_balance_once(
        self, app, client, supervisor, phone
    ):
        await add_account(app)
        maria = phone()
        for text in [*CONFIRM_STEPS, "agree"]:
            await maria.send(text)
        ref = (await only_payment(app)).reference
        path = f"/agent/supervisor/payments/{ref}"
        page = await (await supervisor.get(path)).text()
        key = hidden(page, "key")
        assert key.startswith("console:")

        for amount, status, said in [
            ("abc", 422, "Amount: 'abc' is not an amount in dollars, e.g. 12.34."),
            ("0", 422, "Amount: a refund is more than $0.00."),
            ("50.01", 409, f"{ref}: at most $50.00 can be refunded ($50.00 paid, $0.00 refunded "
                           "already); $50.01 was asked."),
        ]:
            response = await supervisor.post(f"{path}/refund", {"amount": amount, "key": key})
            assert response.status == status, amount
            refused = await response.text()
            assert said in text_of(refused)
            assert hidden(refused, "key") == key  # the same request, sent again, keeps its key

        token = await supervisor.csrf()
        for _ in range(2):  # a double submit: the same form, the same key
            response = await supervisor.post(f"{path}/refund", {
                "amount": "12.34", "key": key, "reason": "double charge"}, csrf=token)
            assert response.status == 303
        async with app[appkeys.DATABASE].session() as session:
            (refund,) = await session.scalars(select(Refund))
            balance = await session.scalar(select(Account.balance_cents))
            payment = await session.scalar(select(Payment))
            (receipt,) = await session.scalars(
                select(OutboundEmail).where(OutboundEmail.kind == "refund_receipt"))
        assert (refund.amount_cents, refund.status, refund.requested_by, refund.reason,
                refund.idempotency_key) == (1234, "succeeded", "staff:Sam", "double charge", key)
        assert refund.processor_ref and refund.processor_ref.startswith("re_")
        assert (balance, payment.refunded_cents) == (121234, 1234)
        assert (receipt.status, receipt.subject) == (
            "sent", f"Your refund receipt for payment {ref}")
        shown = text_of(await (await supervisor.get(response.headers["Location"])).text())
        assert "Already done: $12.34 was refunded (succeeded); nothing more was refunded." in shown
        assert "Refunded $12.34 Due" in shown and "Account balance $1,212.34" in shown
        assert [actor for actor, _ in await audited(app, "refunded")] == ["staff:Sam"]

        # The rest, in full, with a fresh form.
        key = hidden(await (await supervisor.get(path)).text(), "key")
        response = await supervisor.post(f"{path}/refund", {"whole": "1", "key": key})
        shown = text_of(await (await supervisor.get(response.headers["Location"])).text())
        assert ("Refunded $37.66 (succeeded). Refunded in all $50.00 of $50.00; the balance is "
                "now $1,250.00.") in shown
        assert "Refunded in full." in shown

    async def test_cancel_a_scheduled_payment_on_the_page(self, app, client, supervisor, phone):
        await add_account(app)
        maria = phone()
        for text in SCHEDULE_STEPS:
            await maria.send(text)
        scheduled = await only_payment(app)
        assert (scheduled.status, scheduled.scheduled_for) == ("scheduled", date(2026, 12, 15))
        path = f"/agent/supervisor/payments/{scheduled.reference}"
        response = await supervisor.post(f"{path}/cancel", {"reason": "customer called"})
        assert (response.status, response.headers["Location"]) == (303, f"{path}?done=canceled")
        shown = text_of(await (await supervisor.get(response.headers["Location"])).text())
        assert "Canceled: it will not be charged, and the customer was emailed." in shown
        assert (await only_payment(app)).status == "canceled"
        assert await audited(app, "payment_canceled") == [("staff:Sam", {
            "reference": scheduled.reference, "amount_cents": 5000,
            "scheduled_for": "2026-12-15", "reason": "customer called"})]

        response = await supervisor.post(f"{path}/cancel", {})
        assert response.status == 409
        assert f"{scheduled.reference} is Canceled: it is canceled already." in text_of(
            await response.text())
        response = await supervisor.post(f"{path}/refund", {"whole": "1", "key": "k1"})
        assert response.status == 409
        assert (f"{scheduled.reference} is Canceled: only a Paid payment can be refunded."
                in text_of(await response.text()))
        assert len(await audited(app, "payment_canceled")) == 1


async def test_the_csv_comes_whole_as_an_attachment_with_the_filters(
    app, client, supervisor, phone
):
    await add_account(app)
    maria = phone()
    for text in [*CONFIRM_STEPS, "agree"]:
        await maria.send(text)
    paid = await only_payment(app)
    response = await supervisor.get("/agent/supervisor/payments.csv?status=paid&channel=sms")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="payments-20261125-150000.csv"')
    assert await response.text() == (
        "reference,account_id,customer,creditor,channel,status,amount,fee,refunded,"
        "scheduled_for,created_at_utc,method,plan,installment\n"
        f"{paid.reference},ACC-1001,Maria Lopez,northwind,sms,Paid,50.00,0.00,0.00,2026-11-25,"
        "2026-11-25T15:00:00Z,Visa ending 4242,,\n"
    )
    response = await supervisor.get("/agent/supervisor/payments.csv?channel=web")
    assert (await response.text()).count("\n") == 1  # the header alone

    page = await (await supervisor.get("/agent/supervisor/payments?status=paid")).text()
    assert 'href="/agent/supervisor/payments.csv?status=paid"' in page


@pytest.mark.parametrize("query, said", [
    ("status=lost", "status 'lost': one of scheduled, processing, pending, paid, declined, "
                    "canceled"),
    ("from=12/01", "from '12/01' is not a date (YYYY-MM-DD)"),
    ("from=2026-12-02&to=2026-12-01", "the range starts (2026-12-02) after it ends (2026-12-01)"),
    ("page=x", "page: a whole number from 1"),
])
async def test_a_bad_filter_is_said_never_a_500(app, client, supervisor, query, said):
    response = await supervisor.get(f"/agent/supervisor/payments?{query}")
    assert response.status == 422
    assert said in text_of(await response.text())


async def test_the_dashboard_counts_handoffs_by_reason_with_the_median_first_reply(
    app, client, supervisor
):
    account = await add_account(app)
    now = app[appkeys.CLOCK].now()
    async with app[appkeys.DATABASE].session() as session:
        conversation = await ledger.conversation_for(session, "+15555550100", at=now)
        for reason, waited in [("asked", 60), ("asked", 180), ("hardship", None)]:
            session.add(Handoff(
                conversation_id=conversation.id, account_id=account.id,
                reason=reason, requested_at=now - timedelta(minutes=30),
                first_reply_at=None if waited is None
                else now - timedelta(minutes=30) + timedelta(seconds=waited),
            ))
        await session.commit()
    said = text_of(await (await supervisor.get("/agent/supervisor/dashboard")).text())
    assert "Median first agent reply 2 min 00 s" in said
    assert "Handoffs by reason asked for a person 2 hardship 1" in said


async def test_supervisors_keep_the_canned_replies_agents_insert(app, client, supervisor, phone):
    await add_account(app)
    saved = await supervisor.post("/agent/supervisor/canned", {
        "shortcut": "hours", "body": "Hi {first_name}, {brand} is open 8-8 weekdays: "
                                     "{support_contact}."})
    assert (saved.status, saved.headers["Location"]) == (
        303, "/agent/supervisor/canned?done=saved")
    listed = text_of(await (await supervisor.get("/agent/supervisor/canned?done=saved")).text())
    assert "Saved. Add or replace" in listed
    assert ("Replies (1) Shortcut Text Added by hours Hi {first_name}, {brand} is open 8-8 "
            "weekdays: {support_contact}. Sam Delete") in listed

    # A placeholder the console cannot fill is refused by name; what was typed stays.
    refused = await supervisor.post("/agent/supervisor/canned", {
        "shortcut": "ssn", "body": "Your SSN is {ssn}"})
    assert refused.status == 422
    page = await refused.text()
    assert "unknown placeholder {ssn}; known: {first_name}, {last_name}" in html.unescape(page)
    assert 'value="ssn"' in page and ">Your SSN is {ssn}</textarea>" in page

    await supervisor.post("/agent/supervisor/canned", {"shortcut": "bye", "body": "Bye!"})
    deleted = await supervisor.post("/agent/supervisor/canned/bye/delete")
    assert deleted.headers["Location"] == "/agent/supervisor/canned?done=deleted"
    gone = await supervisor.post("/agent/supervisor/canned/bye/delete")
    assert gone.status == 404 and "That canned reply is gone." in await gone.text()
    assert [kind for kind in ("canned_reply_saved", "canned_reply_deleted")
            if ("agent:Sam", {"shortcut": "bye"}) in await audited(app, kind)] == [
        "canned_reply_saved", "canned_reply_deleted"]

    # The agent's conversation view offers what is left, filled for this
    # customer (signed in on the same client: Sam's session ends here).
    await phone().send("agent")
    await add_staff(app)
    ana = Console(client)
    await ana.sign_in()
    view = html.unescape(await (await ana.get("/agent/c/15555550100")).text())
    assert "Hi Maria, Northwind Recovery is open 8-8 weekdays: support@paybot.example." in view
    assert "Bye!" not in view
