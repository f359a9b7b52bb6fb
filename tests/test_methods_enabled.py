"""A creditor's ``methods_enabled`` holds on every path: the SMS method step, the web pay flow,
the plan signing and method update pages, the sandbox's test methods and every endpoint that
saves a method (a method of a kind not taken is refused, politely, and nothing is kept); and
Confirm shows the method the customer chose."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import PaymentMethod
from tests.seed import add_account
from tests.test_portal import Browser, link_for
from tests.test_portal_hardening import method_link
from tests.test_signing import add_plan_offer

CARD_ONLY = {"methods_enabled": ["card"], "contact_review": False}


async def saved_methods(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        rows = await session.scalars(select(PaymentMethod).order_by(PaymentMethod.id))
        return [(m.kind, m.last4) for m in rows]


async def method_id(app, last4: str) -> int:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        found = await session.scalar(select(PaymentMethod.id).where(PaymentMethod.last4 == last4))
    assert found is not None
    return found


async def test_card_only_the_sms_method_step_offers_cards_alone(app, client, phone):
    await add_account(
        app, methods=("pm_card_visa", "pm_usBankAccount"), creditor_settings=CARD_ONLY
    )
    maria = phone()
    await maria.send("pay")
    (menu,) = await maria.send("$50")
    assert menu.startswith(
        "Pay with Visa ending 4242? Reply 1 for Visa ending 4242, 2 to add a card: "
        "https://paybot.test/p/"
    )
    (adding,) = await maria.send("2")
    assert adding.startswith("Add your card securely at https://paybot.test/p/")
    assert "bank" not in menu.lower() + adding.lower()


async def test_card_only_the_web_pay_flow_offers_and_saves_no_bank_account(app, client, phone):
    await add_account(app, methods=("pm_card_visa",), creditor_settings=CARD_ONLY)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue", amount="50")
    assert browser.state == "method"
    assert "Test Visa ending 4242" in browser.text and "bank" not in browser.text.lower()

    await browser.post("/portal/methods", {"payment_method": "pm_usBankAccount"}, status=422)
    assert "We can take only a card for this account." in browser.text
    assert browser.state == "method"
    assert await saved_methods(app) == [("card", "4242")]


async def test_confirm_shows_the_method_saved_on_the_web(app, client, phone):
    await add_account(app, methods=("pm_card_visa",), creditor_settings=CARD_ONLY)
    maria = phone()
    await maria.send("pay")
    await maria.send("$50")
    await maria.send("2")  # a new method, on the web
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    assert browser.state == "awaiting_method"
    await browser.post("/portal/methods", {"payment_method": "pm_usBankAccount"}, status=422)
    assert browser.state == "awaiting_method"  # nothing chosen for the customer
    await browser.post("/portal/methods", {"payment_method": "pm_card_chargeCustomerFail"})
    assert browser.state == "schedule"
    await browser.step(action="now")
    assert browser.state == "confirm" and "Visa ending 0341" in browser.text
    assert "Visa ending 4242" not in browser.text


async def test_bank_only_the_web_offers_no_card(app, client, phone):
    await add_account(
        app, methods=(), creditor_settings={"methods_enabled": ["us_bank_account"],
                                            "contact_review": False}
    )
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue", amount="50")
    assert "Add a bank account" in browser.text and "Test bank account ending 6789" in browser.text
    assert "Visa" not in browser.text and "Add a card" not in browser.text
    await browser.post("/portal/methods", {"payment_method": "pm_card_visa"}, status=422)
    assert "We can take only a bank account for this account." in browser.text
    assert await saved_methods(app) == []


@pytest.mark.parametrize("page", ["plan", "method_update"])
async def test_card_only_the_plan_and_method_pages_list_choose_and_save_cards_alone(
    app, client, page
):
    maria = await add_account(
        app, methods=("pm_card_visa", "pm_usBankAccount"), creditor_settings=CARD_ONLY
    )
    bank = await method_id(app, "6789")
    browser = Browser(client)
    if page == "plan":
        _, link = await add_plan_offer(app, maria.id)
        await browser.get(link)
        await browser.post("/portal/plan/start", {})
        choose, save = "/portal/plan/method", "/portal/plan/methods"
    else:
        await browser.get(await method_link(app, maria.id))
        choose, save = "/portal/method", "/portal/method/new"
    assert "Visa ending 4242" in browser.text and "bank" not in browser.text.lower()
    form = browser.html
    await browser.post(choose, {"method": str(bank)}, status=422)
    assert "Please choose how you will pay." in browser.text
    browser.html = form
    await browser.post(save, {"payment_method": "pm_usBankAccount"}, status=422)
    assert "We can take only a card for this account." in browser.text
    assert await saved_methods(app) == [("card", "4242"), ("us_bank_account", "6789")]
