"""The portal over HTTP: the link journey, the look-up journey, the refusals, the handoff."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select, update

from bot import appkeys
from bot.ledger.models import Account, Agreement, Link, Payment
from tests.conftest import API_KEY
from tests.seed import add_account


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def state_of(html: str) -> str:
    match = re.search(r'name="state" value="([^"]+)"', html)
    assert match, "not a flow page"
    return match.group(1)


def visible_text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


class Browser:
    """Fills and posts the portal's forms the way a person's browser does."""

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        self.html = ""

    async def get(self, path: str, status: int = 200) -> str:
        response = await self.client.get(path)
        self.html = await response.text()
        await self.client.app[appkeys.ENGINE].settled()  # codes go out after the page
        assert response.status == status, (response.status, visible_text(self.html)[:400])
        return self.html

    async def post(self, path: str, data: dict[str, str], status: int = 200) -> str:
        fields = {"csrf_token": csrf_of(self.html), **data}
        if 'name="state"' in self.html and path == "/portal/pay":
            fields.setdefault("state", state_of(self.html))
        response = await self.client.post(path, data=fields)
        self.html = await response.text()
        await self.client.app[appkeys.ENGINE].settled()  # codes go out after the page
        assert response.status == status, (response.status, visible_text(self.html)[:400])
        return self.html

    async def step(self, **data: str) -> str:
        return await self.post("/portal/pay", data)

    @property
    def state(self) -> str:
        return state_of(self.html)

    @property
    def text(self) -> str:
        return visible_text(self.html)


async def link_for(app, phone) -> str:  # type: ignore[no-untyped-def]
    (menu,) = await phone().send("hi")
    return menu.split("https://paybot.test", 1)[1].split()[0]


async def test_the_link_journey_pays_on_the_web(app, client, phone, providers):
    await add_account(app, offers=True)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    assert browser.state == "idle"
    assert "Balance on Acme Card ending 4821: $1,250.00" in browser.text
    assert "maria@example.com" not in browser.html
    await browser.step(action="start")
    assert browser.state == "contact_review" and "m***@example.com" in browser.text
    await browser.step(action="continue")
    assert browser.state == "offers" and "6 monthly payments of $208.34" in browser.text
    await browser.step(action="continue", choice="3")
    assert browser.state == "amount"
    await browser.step(action="continue", amount="75.50")
    assert browser.state == "method" and "Visa ending 4242" in browser.text
    await browser.step(action="continue", choice="1")
    assert browser.state == "schedule"
    await browser.step(action="now")
    assert browser.state == "confirm"
    assert "$75.50" in browser.text and "Visa ending 4242" in browser.text
    assert "authorize Northwind Recovery to charge $75.50 today" in browser.text.replace("\n", " ")
    await browser.step(action="pay", consent="yes")
    assert "Thank you" in browser.text and "Paid" in browser.text and "P-" in browser.text

    response = await client.get(
        "/api/v1/accounts/ACC-1001", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    account = await response.json()
    assert account["balance_cents"] == 125000 - 7550
    assert [(p["status"], p["channel"]) for p in account["payments"]] == [("Paid", "web")]
    async with app[appkeys.DATABASE].session() as session:
        agreement = await session.scalar(select(Agreement))
    assert agreement.channel == "web" and agreement.signature_kind == "click"
    assert agreement.ip_address == "127.0.0.1" and agreement.user_agent
    assert "$75.50" in agreement.text
    assert providers.email.outbox[-1].to == "maria@example.com"


async def test_the_final_step_needs_the_consent(app, client, phone):
    await add_account(app, creditor_settings={"contact_review": False, "schedule_payment": False})
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue", amount="50")
    await browser.step(action="continue", choice="1")
    await browser.post("/portal/pay", {"action": "pay"}, status=422)
    assert "Please tick the box to accept the authorization." in browser.text
    assert browser.state == "confirm"
    async with app[appkeys.DATABASE].session() as session:
        assert await session.scalar(select(Agreement)) is None


async def test_bad_amount_is_explained_and_changes_nothing(app, client, phone):
    await add_account(app, creditor_settings={"contact_review": False})
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.post("/portal/pay", {"action": "continue", "amount": "5000"}, status=422)
    assert "That is more than you owe. Enter up to $1,250.00." in browser.text
    assert browser.state == "amount"


async def test_a_post_without_csrf_is_refused(app, client, phone):
    await add_account(app)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    response = await client.post("/portal/pay", data={"state": "idle", "action": "start"})
    assert response.status == 403
    assert "This form has expired" in await response.text()
    assert state_of(await browser.get("/portal/pay")) == "idle"


async def test_links_that_do_not_work_say_what_to_do(app, client, phone, clock):
    await add_account(app)
    path = await link_for(app, phone)
    tampered = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    response = await client.get(tampered)
    html = await response.text()
    assert response.status == 404 and 'href="/portal/"' in html
    # The creditor's name, never the product's, and the way back to the portal.
    assert visible_text(html) == (
        "Link not found - Northwind Recovery Skip to content Northwind Recovery Español "
        "We could not find that link Check that the whole address was copied from the "
        "message. To get a new secure link, text LINK in reply to our message. Look up your "
        "account Questions? support@paybot.example. Secure payments processed by Stripe."
    )
    async with app[appkeys.DATABASE].session() as session:
        await session.execute(update(Link).values(revoked_at=clock.now()))
        await session.commit()
    response = await client.get(path)
    html = await response.text()
    assert response.status == 410 and 'href="/portal/"' in html
    assert visible_text(html) == (
        "Link expired - Northwind Recovery Skip to content Northwind Recovery Español "
        "This link has expired For your security, payment links work for a limited time. "
        "To get a fresh link, text LINK in reply to our message. Look up your account "
        "Questions? support@paybot.example. Secure payments processed by Stripe."
    )


async def test_opening_a_link_rotates_the_session(app, client, phone):
    await add_account(app)
    browser = Browser(client)
    await browser.get("/portal/")
    await browser.post("/portal/lookup", {"identifier": "ACC-1001"})  # the session starts here
    before = client.session.cookie_jar.filter_cookies(client.make_url("/"))["paybot_session"].value
    await browser.get(await link_for(app, phone))
    after = client.session.cookie_jar.filter_cookies(client.make_url("/"))["paybot_session"].value
    assert before != after
    client.session.cookie_jar.clear()
    response = await client.get(
        "/portal/pay", allow_redirects=False, cookies={"paybot_session": before}
    )
    assert response.status == 303 and response.headers["Location"] == "/portal/"


async def test_pages_carry_strict_security_headers(app, client, phone):
    await add_account(app)
    response = await client.get(await link_for(app, phone), allow_redirects=False)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    response = await client.get("/portal/pay")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["Referrer-Policy"] == "no-referrer"
    html = await response.text()
    assert "<script>" not in html and "style=" not in html  # nothing inline for the CSP to allow
    assert len(html.encode()) < 60_000


async def test_lookup_by_account_id_with_a_texted_code(app, client, providers):
    await add_account(app)
    browser = Browser(client)
    await browser.get("/portal/")
    await browser.post("/portal/lookup", {"identifier": "ACC-1001"})
    assert "If we found your account, we sent a 6-digit code" in browser.text
    assert "1,250" not in browser.text
    code = re.search(r"code is (\d{6})", providers.sms.outbox[-1].body).group(1)  # type: ignore[union-attr]
    assert providers.sms.outbox[-1].to == "+15555550100"
    await browser.post("/portal/verify", {"code": code})
    assert browser.state == "idle" and "$1,250.00" in browser.text


async def add_account_without_contacts(app, **fields):  # type: ignore[no-untyped-def]
    """An account with no phone and no email on file (an import needs one; an upsert may not)."""
    account = await add_account(app, phone=None, **fields)
    async with app[appkeys.DATABASE].session() as session:
        await session.execute(update(Account).where(Account.id == account.id).values(email=None))
        await session.commit()
    return account


async def test_lookup_by_ssn_with_knowledge_answers(app, client):
    # Only an account with no phone and no email may use them (tests/test_lookup_limits.py).
    await add_account_without_contacts(app, ssn="123-45-6789", dob="1985-04-12")
    browser = Browser(client)
    await browser.get("/portal/")
    await browser.post("/portal/lookup", {"identifier": "123-45-6789"})
    await browser.post("/portal/verify", {"ssn_last4": "6789", "dob": "1985-04-12"})
    assert browser.state == "idle"
    assert "123-45-6789" not in browser.html and "6789" not in browser.text


async def test_unknown_account_gets_the_same_answer_and_the_code_is_spent_after_three(
    app, client, providers
):
    await add_account(app)
    browser = Browser(client)
    await browser.get("/portal/")
    await browser.post("/portal/lookup", {"identifier": "NOPE-1"})
    assert "If we found your account, we sent a 6-digit code" in browser.text
    assert providers.sms.outbox == []
    await browser.post("/portal/verify", {"code": "123456"}, status=422)
    assert "That did not match. 2 tries left." in browser.text
    await browser.post("/portal/verify", {"code": "123457"}, status=422)
    await browser.post("/portal/verify", {"code": "123458"}, status=422)
    assert "that code no longer works" in browser.text
    assert 'name="code"' not in browser.html
    # Not a lock: the same browser asking for another account is not held back by it.
    await browser.get("/portal/")
    await browser.post("/portal/lookup", {"identifier": "ACC-1001"})
    assert 'name="code"' in browser.html
    assert providers.sms.outbox[-1].to == "+15555550100"


async def test_lookups_are_rate_limited_per_address(app, client):
    browser = Browser(client)
    await browser.get("/portal/")
    for n in range(10):
        await browser.post("/portal/lookup", {"identifier": f"NOPE-{n}"})
        await browser.get("/portal/")
    await browser.post("/portal/lookup", {"identifier": "NOPE-X"}, status=429)
    assert "Too many look-ups" in browser.text


async def test_text_to_web_to_text_handoff(app, client, phone, providers):
    await add_account(app, methods=())
    maria = phone()
    for text in ["pay", "ok"]:
        await maria.send(text)
    (add,) = await maria.send("50")
    path = add.split("https://paybot.test", 1)[1].split()[0]
    browser = Browser(client)
    await browser.get(path)
    assert browser.state == "method" and "Add a card" in browser.text
    await browser.post("/portal/methods", {"payment_method": "pm_card_visa"})
    assert browser.state == "schedule"
    (texted,) = [m.body for m in providers.sms.outbox if m.to == "+15555550100"]
    assert texted == (
        "Card ending 4242 saved.\n"
        "Pay now or later? Reply NOW, or a date such as 12/15 (up to Feb 23, 2027)."
    )
    assert await maria.send("now") == [
        "Confirm: $50.00 from Visa ending 4242 today. Reply YES to confirm or NO to change."
    ]


async def test_web_to_text_handoff(app, client, phone):
    await add_account(app, creditor_settings={"contact_review": False})
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue", amount="60")
    await browser.step(action="continue", choice="1")
    await browser.step(action="now")
    assert browser.state == "confirm"
    maria = phone()
    (agreement,) = await maria.send("yes")
    assert agreement.startswith("Reply AGREE to authorize this payment")
    (done,) = await maria.send("agree")
    assert done.startswith("Done: $60.00 paid with Visa ending 4242")
    # The web page now shows where the flow stands: done, back at the start.
    await browser.get("/portal/pay")
    assert browser.state == "idle" and "$1,190.00" in browser.text


async def test_a_stale_form_changes_nothing(app, client, phone):
    await add_account(app, creditor_settings={"contact_review": False})
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    stale = browser.html
    await browser.step(action="start")
    browser.html = stale
    await browser.post("/portal/pay", {"action": "start"}, status=409)
    assert "This page was out of date" in browser.text and browser.state == "amount"


async def test_a_receipt_is_only_shown_to_its_account(app, client, phone):
    await add_account(app)
    await add_account(app, ref="ACC-2002", phone="+15555550199", email="x@example.com")
    maria = phone()
    for text in ["pay", "ok", "50", "1", "now", "yes", "agree"]:
        await maria.send(text)
    async with app[appkeys.DATABASE].session() as session:
        reference = await session.scalar(select(Payment.reference))
    browser = Browser(client)
    await browser.get(await link_for(app, lambda: phone("+15555550199")))
    await browser.get(f"/portal/receipt/{reference}", status=404)
    await browser.get(await link_for(app, phone))
    await browser.get(f"/portal/receipt/{reference}")
    assert reference in browser.text and "$50.00" in browser.text


async def test_declined_on_the_web_goes_back_to_the_method(app, client, phone):
    await add_account(
        app,
        methods=("pm_card_chargeCustomerFail",),
        creditor_settings={"contact_review": False, "schedule_payment": False},
    )
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue", amount="50")
    await browser.step(action="continue", choice="1")
    await browser.step(action="pay", consent="yes")
    assert "did not go through" in browser.text and browser.state == "method"


async def test_expired_session_asks_to_look_up_again(app, client, phone, clock):
    await add_account(app)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    clock.advance(timedelta(minutes=31))
    response = await client.get("/portal/pay", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/portal/"


async def make_link(client, **terms) -> str:  # type: ignore[no-untyped-def]
    response = await client.post(
        "/api/v1/accounts/ACC-1001/links",
        json=terms,
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status == 201, await response.text()
    return (await response.json())["url"].removeprefix("https://paybot.test")


async def test_a_fixed_amount_link_with_a_fee(app, client, providers):
    await add_account(
        app, offers=True, creditor_settings={"contact_review": False, "schedule_payment": False}
    )
    browser = Browser(client)
    await browser.get(
        await make_link(
            client, amount="120.00", allow_amount_change=False, fee="2.50", due_on="2026-12-15"
        )
    )
    assert "Amount requested: $120.00 , due by Dec 15, 2026." in browser.text
    assert "convenience fee of $2.50" in browser.text
    await browser.step(action="start")
    assert browser.state == "method"  # no offers, no amount step: the link fixed it
    await browser.step(action="continue", choice="1")
    assert "Convenience fee $2.50 Total charged $122.50" in browser.text
    assert "$120.00 plus a $2.50 convenience fee (total $122.50)" in browser.text
    assert "Pay $122.50" in browser.text
    await browser.step(action="pay", consent="yes")
    assert "Total charged $122.50" in browser.text
    (charge,) = providers.payments.charges
    assert charge.amount_cents == 12250
    response = await client.get(
        "/api/v1/accounts/ACC-1001", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert (await response.json())["balance_cents"] == 125000 - 12000


async def test_a_preset_amount_can_be_changed_when_the_link_allows(app, client):
    await add_account(app, creditor_settings={"contact_review": False})
    browser = Browser(client)
    await browser.get(await make_link(client, amount="80.00"))
    await browser.step(action="start")
    assert browser.state == "amount" and 'value="80.00"' in browser.html
    await browser.step(action="continue", amount="90")
    assert browser.state == "method"


async def test_link_terms_are_validated(app, client):
    await add_account(app)
    for terms, message in [
        ({"amount": "5000.00"}, "more than the balance"),
        ({"allow_amount_change": False}, "a fixed amount needs an amount"),
        ({"fee": "-1"}, "fee must be"),
        ({"due_on": "soon"}, "due_on must be a date"),
        ({"expires_in_hours": 0}, "expires_in_hours"),
        ({"colour": "red"}, "unknown field"),
    ]:
        response = await client.post(
            "/api/v1/accounts/ACC-1001/links",
            json=terms,
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        assert response.status == 422, terms
        assert message in (await response.json())["error"]


async def test_contact_review_checks_a_new_contact_and_asks_for_its_code(app, client, phone):
    await add_account(app)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    assert "***-***-0100" in browser.text
    await browser.post("/portal/pay", {"action": "continue", "phone": "12"}, status=422)
    assert "does not look like a mobile number" in browser.text
    await browser.step(action="continue", email="maria.new@example.com", phone="(555) 555-0177")
    # The change waits for the codes sent to the new contacts (tests/test_contact_proof.py).
    assert browser.state == "contact_review"
    assert "Code sent to ***-***-0177" in browser.text
    response = await client.get("/api/v1/accounts/ACC-1001",
                                headers={"Authorization": f"Bearer {API_KEY}"})
    account = await response.json()
    assert account["email"] == "m***@example.com" and account["phone"].endswith("0100")


async def test_knowledge_verified_session_cannot_change_contacts(app, client):
    await add_account_without_contacts(app, ssn="123-45-6789", dob="1985-04-12")
    browser = Browser(client)
    await browser.get("/portal/")
    await browser.post("/portal/lookup", {"identifier": "ACC-1001"})
    await browser.post("/portal/verify", {"ssn_last4": "6789", "dob": "1985-04-12"})
    await browser.step(action="start")
    await browser.step(action="continue", email="attacker@example.com")
    response = await client.get("/api/v1/accounts/ACC-1001",
                                headers={"Authorization": f"Bearer {API_KEY}"})
    assert (await response.json())["email"] is None


async def test_a_bank_account_on_the_web_gets_the_nacha_authorization(app, client, phone):
    await add_account(app, methods=(), creditor_settings={"contact_review": False,
                                                          "schedule_payment": False})
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue", amount="100")
    assert "Test bank account ending 6789" in browser.text
    await browser.post("/portal/methods", {"payment_method": "pm_usBankAccount"})
    assert browser.state == "confirm" and "Bank ending 6789" in browser.text
    assert "initiate this ACH debit entry to my bank account" in browser.text
    assert "NACHA WEB" in browser.text
    await browser.step(action="pay", consent="yes")
    assert "Payment pending" in browser.text and "Pending" in browser.text
    async with app[appkeys.DATABASE].session() as session:
        agreement = await session.scalar(select(Agreement))
    assert "ACH debit" in agreement.text
