"""Issue 12, finding 7 and its must-holds: a link's session lives no longer than its link and
reaches only what the link was sent for; a link whose purpose is done answers 410, and so does the
session it opened. Also: a cookieless visit to the portal stores no session, and a session
opened with knowledge answers only (SSN last 4 + date of birth) cannot change methods."""

from __future__ import annotations

import dataclasses
import re
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, update

from bot import appkeys
from bot.ledger.models import Account, Link, Offer, Payment, PaymentMethod, WebSession
from bot.payments.service import PaymentRefused, PaymentRequest
from tests.seed import add_account
from tests.test_portal import Browser, csrf_of, link_for, make_link
from tests.test_signing import add_plan_offer
from tests.test_worker import add_scheduled


async def sessions_stored(app) -> int:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return int(await session.scalar(select(func.count()).select_from(WebSession)) or 0)


async def pay_through(browser: Browser) -> None:
    """From the idle page of a link with a fixed amount, contact review and scheduling off."""
    await browser.step(action="start")
    await browser.step(action="continue", choice="1")
    await browser.step(action="pay", consent="yes")
    assert "Thank you" in browser.text


async def test_a_preset_amount_link_is_done_once_its_payment_is_made(app, client):
    await add_account(app, creditor_settings={"contact_review": False, "schedule_payment": False})
    path = await make_link(client, amount="120.00", allow_amount_change=False)
    browser = Browser(client)
    await browser.get(path)
    await pay_through(browser)
    receipt = browser.html
    # The session that paid still shows what it paid, and nothing more.
    await browser.get("/portal/pay", status=410)
    assert "already been used" in browser.text and "text LINK" in browser.text
    reference = re.search(r"P-[0-9A-Z]{5}", receipt).group(0)  # type: ignore[union-attr]
    await browser.get(f"/portal/receipt/{reference}")
    # The link itself: 410 with the usual helpful page.
    other = Browser(client)
    await other.get(path, status=410)
    assert "already been used" in other.text and "look up your account" in other.text


async def test_an_account_link_works_while_something_is_owed(app, client, phone):
    await add_account(
        app, balance="100.00",
        creditor_settings={"contact_review": False, "schedule_payment": False},
    )
    path = await link_for(app, phone)
    browser = Browser(client)
    await browser.get(path)
    await browser.step(action="start")
    await browser.step(action="continue", amount="40")
    await browser.step(action="continue", choice="1")
    await browser.step(action="pay", consent="yes")
    await browser.get(path)  # $60 still owed: the link works
    assert browser.state == "idle"
    await browser.step(action="start")
    await browser.step(action="full")
    await browser.step(action="continue", choice="1")
    await browser.step(action="pay", consent="yes")
    assert "Thank you" in browser.text
    await browser.get("/portal/pay", status=410)
    assert "nothing is owed" in browser.text
    other = Browser(client)
    await other.get(path, status=410)
    assert "nothing is owed" in other.text


async def test_a_withdrawn_offers_session_stops_working(app, client):
    account = await add_account(app)
    offer_id, path = await add_plan_offer(app, account.id)
    browser = Browser(client)
    await browser.get(path)
    async with app[appkeys.DATABASE].session() as session:
        (await session.get(Offer, offer_id)).status = "withdrawn"
        await session.commit()
    for page in ("/portal/plan", "/portal/pay", "/portal/method"):
        await browser.get(page, status=410)
        assert "was withdrawn" in browser.text


async def test_a_plan_offer_link_reaches_only_its_signing_pages(app, client):
    account = await add_account(app)
    _, path = await add_plan_offer(app, account.id)
    browser = Browser(client)
    await browser.get(path)
    for elsewhere in ("/portal/pay", "/portal/method", "/portal/receipt/P-ABCDE"):
        response = await client.get(elsewhere, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/portal/plan"
    response = await client.post(
        "/portal/pay", data={"csrf_token": "x", "state": "idle", "action": "start"},
        allow_redirects=False,
    )
    assert response.status == 303 and response.headers["Location"] == "/portal/plan"
    async with app[appkeys.DATABASE].session() as session:
        assert await session.scalar(select(func.count()).select_from(Payment)) == 0


async def test_a_payment_link_does_not_reach_the_method_update(app, client, phone):
    maria = await add_account(app)
    await add_scheduled(app, maria, date(2026, 12, 15))
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    response = await client.get("/portal/method", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/portal/pay"


async def test_a_session_lives_no_longer_than_its_link(app, client, clock):
    await add_account(app)
    path = await make_link(client, expires_in_hours=1)
    browser = Browser(client)
    await browser.get(path)
    for _ in range(2):  # active all along: the idle timeout alone would keep it going
        clock.advance(timedelta(minutes=25))
        await browser.get("/portal/pay")
    async with app[appkeys.DATABASE].session() as session:
        row = await session.scalar(select(WebSession))
        link = await session.scalar(select(Link))
    assert row.expires_at == link.expires_at  # the link's end caps the idle timeout
    clock.advance(timedelta(minutes=15))  # 65 minutes: the link has expired, and its session
    # The customer is told what happened and what to do, as the link itself would tell them.
    for path in ("/portal/pay", "/portal/methods"):
        response = await client.get(path, allow_redirects=False)
        text = await response.text()
        assert response.status == 410, (path, response.status)
        assert "This link has expired" in text and "text <strong>LINK</strong>" in text
    # The look-up still opens the portal afresh.
    response = await client.get("/portal/", allow_redirects=False)
    assert response.status == 200 and 'name="identifier"' in await response.text()


async def test_a_cookieless_visit_to_the_portal_stores_no_session(app, client, providers):
    await add_account(app)
    for _ in range(3):
        client.session.cookie_jar.clear()
        await Browser(client).get("/portal/")
    assert await sessions_stored(app) == 0
    browser = Browser(client)
    await browser.get("/portal/")
    await browser.post("/portal/lookup", {"identifier": "ACC-1001"})
    assert "we sent a 6-digit code" in browser.text
    assert await sessions_stored(app) == 1


async def knowledge_session(app, client) -> Browser:  # type: ignore[no-untyped-def]
    browser = Browser(client)
    await browser.get("/portal/")
    await browser.post("/portal/lookup", {"identifier": "ACC-1001"})
    await browser.post("/portal/verify", {"ssn_last4": "6789", "dob": "1985-04-12"})
    return browser


async def test_a_knowledge_session_cannot_move_installments_to_another_method(app, client):
    maria = await add_account(
        app, methods=("pm_card_visa", "pm_card_chargeCustomerFail"),
        ssn="123-45-6789", dob="1985-04-12",
    )
    await add_scheduled(app, maria, date(2026, 12, 15))
    async with app[appkeys.DATABASE].session() as session:
        await session.execute(update(Account).values(email=None, phone=None))
        await session.commit()
        declining = await session.scalar(
            select(PaymentMethod.id).where(
                PaymentMethod.processor_ref.like("%chargeCustomerFail%")
            )
        )
        before = [(p.id, p.method_id) for p in await session.scalars(select(Payment))]
    browser = await knowledge_session(app, client)
    csrf = csrf_of(browser.html)
    await browser.get("/portal/method", status=403)
    assert "verify with a code" in browser.text
    response = await client.post(
        "/portal/method", data={"csrf_token": csrf, "method": str(declining)}
    )
    assert response.status == 403 and "verify with a code" in await response.text()
    response = await client.post(
        "/portal/method/new",
        data={"csrf_token": csrf, "payment_method": "pm_card_chargeCustomerFail"},
    )
    assert response.status == 403 and "verify with a code" in await response.text()
    async with app[appkeys.DATABASE].session() as session:
        after = [(p.id, p.method_id) for p in await session.scalars(select(Payment))]
    assert after == before


async def test_a_knowledge_session_pays_once_with_a_new_method(app, client):
    await add_account(
        app, methods=("pm_card_visa",), ssn="123-45-6789", dob="1985-04-12",
        creditor_settings={"contact_review": False},
    )
    async with app[appkeys.DATABASE].session() as session:
        await session.execute(update(Account).values(email=None, phone=None))
        await session.commit()
    browser = await knowledge_session(app, client)
    await browser.step(action="start")
    await browser.step(action="continue", amount="50")
    await browser.post("/portal/methods", {"payment_method": "pm_usBankAccount"})
    # Pay now only: no date to choose, so nothing is left to charge the new method later.
    assert browser.state == "confirm" and "Bank ending 6789" in browser.text
    await browser.step(action="pay", consent="yes")
    async with app[appkeys.DATABASE].session() as session:
        methods = {
            m.processor_ref: m.is_default for m in await session.scalars(select(PaymentMethod))
        }
        (payment,) = list(await session.scalars(select(Payment)))
    assert payment.scheduled_for is None or payment.status in ("paid", "pending")
    # The saved methods are as they were: the new one paid once and is not the default.
    assert methods["pm_card_visa"] is True and methods["pm_usBankAccount"] is False


async def test_a_knowledge_sessions_new_method_is_used_once_and_never_listed_again(
    app, client, phone
):
    """The bank account a knowledge-only session paid with is single-use: it pays that one
    payment and is never listed or chosen afterwards (by text, on the web, for a plan), not even
    by a session proved by a code or a link, until such a session saves it again."""
    await add_account(
        app, methods=("pm_card_visa",), ssn="123-45-6789", dob="1985-04-12",
        creditor_settings={"contact_review": False},
    )
    async with app[appkeys.DATABASE].session() as session:
        await session.execute(update(Account).values(email=None, phone=None))
        await session.commit()
    stranger = await knowledge_session(app, client)
    await stranger.step(action="start")
    await stranger.step(action="continue", amount="50")
    await stranger.post("/portal/methods", {"payment_method": "pm_usBankAccount"})
    assert stranger.state == "confirm" and "Bank ending 6789" in stranger.text
    await stranger.step(action="pay", consent="yes")
    async with app[appkeys.DATABASE].session() as session:
        (payment,) = list(await session.scalars(select(Payment)))
        bank = await session.scalar(
            select(PaymentMethod).where(PaymentMethod.processor_ref == "pm_usBankAccount")
        )
        assert payment.method_id == bank.id and payment.status == "pending"
        # Maria's contacts come back: she proves herself by a code (by text) and by a link.
        await session.execute(update(Account).values(email="maria@example.com",
                                                     phone="+15555550100"))
        await session.commit()

    # By text: the method step lists only her own card.
    maria = phone()
    for text in ["pay", "25"]:
        replies = await maria.send(text)
    (methods,) = replies
    assert "Visa ending 4242" in methods and "6789" not in methods, methods
    # On the web, from her link: the same.
    client.session.cookie_jar.clear()
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue", amount="25")
    assert browser.state == "method" and "Visa ending 4242" in browser.text
    assert "Bank ending 6789" not in browser.text, browser.text

    # Saved again from her link's session, it is hers to use.
    await browser.post("/portal/methods", {"payment_method": "pm_usBankAccount"})
    assert browser.state == "schedule"  # chosen, and on to the date, as any saved method is
    async with app[appkeys.DATABASE].session() as session:
        bank = await session.get(PaymentMethod, bank.id)
    assert (bank.single_use, bank.is_default) == (False, True)



async def test_a_single_use_method_pays_no_second_payment_and_nothing_later(app, client):
    """Whatever asks (a stale step, an operator's tool): the payment service itself refuses a
    single-use method for a second payment or a later date, in the customer's words; the one
    payment asked again (its own key) is still that payment."""
    await add_account(
        app, methods=("pm_card_visa",), ssn="123-45-6789", dob="1985-04-12",
        creditor_settings={"contact_review": False},
    )
    async with app[appkeys.DATABASE].session() as session:
        await session.execute(update(Account).values(email=None, phone=None))
        await session.commit()
    stranger = await knowledge_session(app, client)
    await stranger.step(action="start")
    await stranger.step(action="continue", amount="50")
    await stranger.post("/portal/methods", {"payment_method": "pm_usBankAccount"})
    await stranger.step(action="pay", consent="yes")
    engine, clock = app[appkeys.ENGINE], app[appkeys.CLOCK]
    today = clock.now().date()
    async with app[appkeys.DATABASE].session() as session:
        (payment,) = list(await session.scalars(select(Payment)))
        account = await session.get(Account, payment.account_id)

    def asking(key: str, pay_on: date | None) -> PaymentRequest:
        return PaymentRequest(
            idempotency_key=key, amount_cents=2500, method_id=payment.method_id, pay_on=pay_on,
            offer_id=None, offer_kind=None, installment_count=1, frequency=None,
            plan_total_cents=None, channel="web", agreement_text="I agree.", terms_version="x",
        )

    for key, pay_on in [("second", None), ("later", today + timedelta(days=7))]:
        async with app[appkeys.DATABASE].writer(), app[appkeys.DATABASE].session() as session:
            with pytest.raises(PaymentRefused, match="no longer on file"):
                await engine.payments.submit(session, account, asking(key, pay_on), today=today)
    async with app[appkeys.DATABASE].writer(), app[appkeys.DATABASE].session() as session:
        again = asking(payment.idempotency_key, None)
        outcome = await engine.payments.submit(
            session, account, dataclasses.replace(again, amount_cents=5000), today=today
        )
    assert outcome.reference == payment.reference
    async with app[appkeys.DATABASE].session() as session:
        assert [p.id for p in await session.scalars(select(Payment))] == [payment.id]
