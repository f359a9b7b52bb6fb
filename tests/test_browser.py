"""The portal in a real browser (Chromium through Playwright), at a phone and a desktop viewport.

The same journeys tests/test_portal.py checks over HTTP, here with the real page: the fake
Stripe.js localstripe serves, card entry typed key by key, the CSP enforced by the browser.
Screenshots of each step land in test-artifacts/screenshots/<test>/.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import expect

from bot import appkeys
from tests.browser_support import agree_to_pay, confirm_payment, expect_receipt, save_test_card
from tests.fixtures_browser import *  # noqa: F403
from tests.fixtures_browser import LiveServer, Tab
from tests.seed import add_account

pytestmark = pytest.mark.asyncio(loop_scope="session")

LINK = re.compile(r"http://127\.0\.0\.1:\d+/p/[\w-]+")


async def link_in_reply(live: LiveServer, body: str = "hi") -> str:
    (reply,) = await live.phone().send(body)
    match = LINK.search(reply)
    assert match, reply
    return match.group(0)


async def add_card(tab: Tab) -> None:
    """Save the test card through localstripe's Stripe.js; the flow moves on to the date."""
    await save_test_card(tab)
    # confirmCardSetup -> pm_... -> POST /portal/methods -> the flow moves on to the date.
    await expect(tab.page.locator("h1")).to_have_text("When")


async def test_the_link_journey_with_a_new_card(live: LiveServer, tab: Tab) -> None:
    await add_account(live.app, methods=())
    page = tab.page
    await page.goto(await link_in_reply(live))
    await expect(page.locator("h1")).to_have_text("Your balance")
    await expect(page.locator(".balance")).to_have_text(
        "Balance on Acme Card ending 4821: $1,250.00"
    )
    await tab.shot("balance")

    await tab.press("Make a payment")
    await expect(page.locator("h1")).to_have_text("Your contact details")
    await expect(page.locator("#step-form")).to_contain_text("m***@example.com")
    # Every input type is styled alike: the phone field as the email field, not the browser's.
    look = (
        "e => { const s = getComputedStyle(e); "
        "return [s.width, s.borderTopWidth, s.borderTopColor, s.borderRadius, s.paddingTop]; }"
    )
    phone_look = await page.locator("#phone").evaluate(look)
    assert phone_look == await page.locator("#email").evaluate(look)
    assert phone_look[1:] == ["1px", "rgb(138, 148, 163)", "6px", "11.2px"]
    await tab.shot("contact-review")

    await tab.press("Continue")
    await expect(page.locator("h1")).to_have_text("How much")
    await tab.type_into(page.get_by_label("Amount"), "75.50")
    await tab.shot("amount")

    await tab.press("Continue")
    await expect(page.locator("h1")).to_have_text("Payment method")
    await expect(page.get_by_text("Add a card to continue.")).to_be_visible()
    # localstripe's Stripe.js loaded (past the CSP) and mounted its five inputs.
    await expect(page.locator("#card-element input")).to_have_count(5)
    await tab.shot("method")

    await add_card(tab)
    await tab.shot("schedule")
    await confirm_payment(tab, "$75.50", "Visa ending 4242")
    await tab.shot("agreement")
    await agree_to_pay(tab, "Pay $75.50")

    await expect_receipt(tab, "Thank you", "Paid", "$75.50", "Visa ending 4242")
    assert "/portal/receipt/P-" in page.url
    await tab.shot("receipt")

    account = await live.api("/api/v1/accounts/ACC-1001")
    assert account["balance_cents"] == 125000 - 7550
    assert [(p["status"], p["channel"]) for p in account["payments"]] == [("Paid", "web")]
    (receipt_email,) = live.providers.email.outbox  # type: ignore[attr-defined]
    assert receipt_email.to == "maria@example.com"
    assert "$75.50" in receipt_email.text
    (intent,) = await live.payment_intents()
    assert intent["status"] == "succeeded"
    assert intent["amount"] == 7550 and intent["currency"] == "usd"
    assert intent["payment_method"].startswith("pm_")  # the card Stripe.js saved in the page
    tab.assert_clean(live)


async def test_lookup_after_a_wrong_code(live: LiveServer, tab: Tab) -> None:
    await add_account(live.app)
    page = tab.page
    await page.goto("/portal")
    await expect(page.locator("h1")).to_have_text("Find your account")
    await tab.type_into(page.get_by_label("Account ID or Social Security number"), "ACC-1001")
    await tab.shot("lookup")
    await tab.press("Continue")
    await expect(page.locator("h1")).to_have_text("Verify it's you")
    await expect(page.locator("main")).not_to_contain_text("1,250")

    code = await code_texted(live)
    await tab.type_into(page.get_by_label("Code"), wrong(code))
    await tab.shot("verify")
    await tab.press(page.get_by_role("button", name="Verify with the code"))
    await expect(page.get_by_role("alert")).to_have_text("That did not match. 2 tries left.")
    await tab.shot("wrong-code")

    await tab.type_into(page.get_by_label("Code"), code)
    await tab.press(page.get_by_role("button", name="Verify with the code"))
    await expect(page.locator("h1")).to_have_text("Your balance")
    await expect(page.locator(".balance")).to_contain_text("$1,250.00")
    assert await tab.state() == "idle"
    await tab.shot("account")
    tab.assert_clean(live)


async def test_three_wrong_codes_spend_the_code_and_this_browser_waits(
    live: LiveServer, tab: Tab
) -> None:
    await add_account(live.app)
    page = tab.page
    await page.goto("/portal/")
    await tab.type_into(page.get_by_label("Account ID or Social Security number"), "ACC-1001")
    await tab.press("Continue")
    await expect(page.locator("h1")).to_have_text("Verify it's you")
    code = await code_texted(live)
    for left in ["2 tries left.", "1 try left.", None]:
        await tab.type_into(page.get_by_label("Code"), wrong(code))
        await tab.press(page.get_by_role("button", name="Verify with the code"))
        if left:
            await expect(page.get_by_role("alert")).to_contain_text(left)
    await expect(page.get_by_role("alert")).to_contain_text(
        "that code no longer works. For your security, please wait 1 minute"
    )
    await expect(page.get_by_label("Code")).to_have_count(0)
    await tab.shot("spent")

    # Back to the form: this browser waits, with no way to enter even the right code.
    await page.goto("/portal/verify")
    await expect(page.get_by_role("alert")).to_contain_text("please wait 1 minute")
    await expect(page.get_by_label("Code")).to_have_count(0)
    await tab.shot("waiting")
    await page.goto("/portal/pay")
    await expect(page.locator("h1")).to_have_text("Find your account")
    tab.assert_clean(live)


async def test_text_to_web_to_text_handoff(live: LiveServer, tab: Tab) -> None:
    await add_account(live.app, methods=())
    maria = live.phone()
    await maria.send("pay")
    await maria.send("ok")
    (method_prompt,) = await maria.send("50")
    link = LINK.search(method_prompt)
    assert link, method_prompt

    page = tab.page
    await page.goto(link.group(0))
    await expect(page.locator("h1")).to_have_text("Payment method")
    assert await tab.state() == "method"
    await tab.shot("method")
    await add_card(tab)
    await tab.shot("schedule")
    assert live.texts_to("+15555550100")[-1] == (
        "Card ending 4242 saved.\n"
        "Pay now or later? Reply NOW, or a date such as 12/15 (up to Feb 23, 2027)."
    )

    assert await maria.send("NOW") == [
        "Confirm: $50.00 from Visa ending 4242 today. Reply YES to confirm or NO to change."
    ]
    (agreement,) = await maria.send("YES")
    assert agreement.startswith("Reply AGREE to authorize this payment")
    (done,) = await maria.send("AGREE")
    assert done.startswith("Done: $50.00 paid with Visa ending 4242")
    (intent,) = await live.payment_intents()
    assert intent["status"] == "succeeded" and intent["amount"] == 5000

    # The page, reloaded, shows where the conversation left the flow: done, back at the start.
    await page.reload()
    await expect(page.locator("h1")).to_have_text("Your balance")
    await expect(page.locator(".balance")).to_contain_text("$1,200.00")
    await tab.shot("after-text")
    tab.assert_clean(live)


@pytest.mark.parametrize("viewport", ["desktop"])
async def test_the_watchers_notice_what_they_watch_for(live: LiveServer, tab: Tab) -> None:
    """The checks above are only worth something if a blocked inline script and a missing
    asset are noticed."""
    page = tab.page
    await page.goto("/portal/")
    await expect(page.locator("h1")).to_have_text("Find your account")
    assert tab.csp_violations() == [] and tab.unexpected_console_errors() == []
    with pytest.raises(PlaywrightError):  # the CSP blocks the inline <script>
        await page.add_script_tag(content="document.title = 'inline ran'")
    assert await page.title() != "inline ran"
    assert tab.csp_violations() != []
    missing = f"{live.url}/static/missing.png"
    async with page.expect_console_message(lambda message: message.type == "error"):
        await page.evaluate("url => { const i = new Image(); i.src = url; }", missing)
    assert missing in [url for _, url in tab.unexpected_console_errors()]


async def code_texted(live: LiveServer) -> str:
    await live.app[appkeys.ENGINE].settled()  # the code goes out after the page
    (text,) = live.texts_to("+15555550100")
    match = re.search(r"code is (\d{6})", text)
    assert match, text
    return match.group(1)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"
