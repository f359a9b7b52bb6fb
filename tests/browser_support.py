"""Steps the browser tests (tests/test_browser*.py) share: ticking a box, saving the test card
through Stripe.js, the final step of a payment (summary, agreement, one consent, Pay), and a plan
offer's review and terms pages with the plan they leave in the ledger.

Plain functions on a ``Tab``, not fixtures: the fixtures are in tests/fixtures_browser.py.
"""

from __future__ import annotations

import re

from playwright.async_api import Locator, expect
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Agreement, Payment, Plan
from tests.fixtures_browser import LiveServer, Tab

# localstripe's Stripe.js fields, by placeholder: a Visa ending 4242 (the year has two digits).
TEST_CARD = {
    "number": "4242424242424242",
    "exp_month": "12",
    "exp_year": "34",
    "cvc": "123",
    "postal_code": "10001",
}


async def check(tab: Tab, name: str) -> None:
    """Tick the checkbox whose name matches ``name`` (a tap on the phone) and see it ticked."""
    checkbox = tab.page.get_by_role("checkbox", name=re.compile(name))
    if tab.mobile:
        await checkbox.tap()
    else:
        await checkbox.check()
    await expect(checkbox).to_be_checked()


async def save_test_card(tab: Tab) -> None:
    """Type the test card into Stripe.js's fields key by key and press "Save card"; where the
    page goes next is the caller's to check."""
    page = tab.page
    for placeholder, value in TEST_CARD.items():
        await tab.type_into(page.get_by_placeholder(placeholder, exact=True), value)
    await tab.shot("card-typed")
    await tab.press(page.locator("#card-save"))  # "Save card", "Guardar tarjeta"


async def confirm_payment(tab: Tab, amount: str, method: str) -> Locator:
    """From the date step: pay today and land on the one final step, which shows the amount and
    the method in the summary and the agreement that states the amount. Returns the agreement's
    text."""
    page = tab.page
    await tab.press("Pay today")
    await expect(page.locator("h1")).to_have_text("Review and pay")
    await expect(page.locator("#paying")).to_have_text(f"You are paying {amount}")
    summary = page.locator("dl.summary")
    await expect(summary).to_contain_text(amount)
    await expect(summary).to_contain_text(method)
    agreement = page.locator(".agreement")
    await expect(agreement).to_contain_text(amount)
    return agreement


async def agree_to_pay(tab: Tab, button: str | None = None) -> None:
    """On the final step: the browser holds the form back until the one consent box is ticked;
    then the button that says what it does ("Pay $75.50", "Schedule $40.00 for Dec 15")."""
    page = tab.page
    pay = page.locator("#pay-button")
    if button is not None:
        await expect(pay).to_have_text(button)
    await tab.press(pay)
    await expect(page.locator("#consent")).not_to_be_checked()  # required: nothing was sent
    await check(tab, "I have read and accept this authorization")
    await tab.press(pay)


async def expect_receipt(tab: Tab, heading: str, *texts: str) -> None:
    """The page after the final button: its heading, and a receipt that shows each of ``texts``."""
    await expect(tab.page.locator("h1")).to_have_text(heading)
    receipt = tab.page.locator(".receipt")
    for text in texts:
        await expect(receipt).to_contain_text(text)


async def review_and_start(tab: Tab, link: str) -> None:
    """Open a plan offer's link, check its schedule, and go on to the method step."""
    page = tab.page
    await page.goto(link)
    await expect(page.locator("h1")).to_have_text("Complete Payment Agreement")
    schedule = page.locator("table.schedule")
    await expect(schedule).to_contain_text("Dec 1, 2026")
    await expect(schedule).to_contain_text("$450.00")
    await expect(schedule).to_contain_text("$1,250.00")
    await tab.shot("review")
    await tab.press("Get Started")
    await expect(page.locator("h1")).to_have_text("Payment method")


async def accept_terms(tab: Tab) -> None:
    """On the plan's terms: the browser holds the form back until both boxes are ticked; then
    on to the signature step."""
    page = tab.page
    await expect(page.locator("h1")).to_have_text("Terms and Conditions")
    await expect(page.locator("#agreement-text")).to_contain_text("Dec 1, 2026: $400.00")
    await expect(page.locator("#agreement-text")).to_contain_text("E-SIGN")
    await tab.shot("terms")
    # Continue without the consent: the browser itself holds the form back.
    await tab.press("Continue")
    await expect(page.locator("h1")).to_have_text("Terms and Conditions")
    await check(tab, "I agree to use electronic records and signatures")
    await check(tab, "I authorize the payments")
    await tab.press("Continue")
    await expect(page.locator("h1")).to_have_text("Sign your agreement")


async def signed(live: LiveServer) -> tuple[Plan, list[Payment], Agreement]:
    """The one plan, its payments by date and its one agreement, as signing left them."""
    async with live.app[appkeys.DATABASE].session() as session:
        (plan,) = list(await session.scalars(select(Plan)))
        payments = list(await session.scalars(select(Payment).order_by(Payment.scheduled_for)))
        (agreement,) = list(await session.scalars(select(Agreement)))
        return plan, payments, agreement
