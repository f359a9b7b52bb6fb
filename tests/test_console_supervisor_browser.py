"""A supervisor in real Chromium (Playwright, Debian's chromium): edits a creditor's settings, an
invalid value is refused and names its field, a valid one is saved and the next SMS conversation
follows it; then every supervisor page is photographed at 1280x800 and 390x844 into
docs/console/ (the README shows them)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Creditor, Payment
from tests.console_support import PASSWORD, add_staff, code_at
from tests.fixtures_browser import *  # noqa: F403
from tests.fixtures_browser import CHROMIUM_ARGS, TIMEOUT_MS, LiveServer  # noqa: F401
from tests.seed import CONFIRM_STEPS, add_account

pytestmark = pytest.mark.asyncio(loop_scope="session")

DOCS = Path(__file__).resolve().parents[1] / "docs" / "console"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
PAGES = {
    "supervisor-dashboard": "/agent/supervisor/dashboard",
    "supervisor-creditors": "/agent/supervisor/creditors",
    "supervisor-creditor": "/agent/supervisor/creditors/northwind",
    "supervisor-payments": "/agent/supervisor/payments",
    "supervisor-wrong-numbers": "/agent/supervisor/wrong-numbers",
}


async def sign_in(page: Page, secret: str, clock) -> None:  # type: ignore[no-untyped-def]
    await page.goto("/agent/login")
    await page.get_by_label("Email").fill("sam@paybot.test")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_label("6-digit code from your authenticator app").fill(
        code_at(secret, clock.now()))
    await page.get_by_role("button", name="Continue").click()
    await expect(page.locator("header .who")).to_contain_text("Sam (supervisor)")


async def stored(live: LiveServer) -> Creditor:
    async with live.app[appkeys.DATABASE].session() as session:
        creditor = await session.get(Creditor, "northwind")
        assert creditor is not None
        return creditor


async def test_a_supervisor_edits_a_creditor_in_the_browser_and_every_page_is_photographed(
    browser: Browser, live: LiveServer, clock  # type: ignore[no-untyped-def]
) -> None:
    await add_account(live.app)
    secret = pyotp.random_base32()
    await add_staff(live.app, "sam@paybot.test", "Sam", "supervisor", totp_secret=secret)
    context = await browser.new_context(base_url=live.url, locale="en-US",
                                        viewport=SIZES["desktop"])
    context.set_default_timeout(TIMEOUT_MS)
    csp: list[str] = []
    try:
        page = await context.new_page()
        page.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text
                else None)
        await sign_in(page, secret, clock)
        await page.get_by_role("link", name="Supervisor", exact=True).click()
        await page.locator("main").get_by_role("link", name="Creditors").first.click()
        await page.get_by_role("link", name="Edit", exact=True).click()
        await expect(page.locator("h1")).to_contain_text("Northwind Recovery")

        # Invalid: refused, named beside the field, nothing stored.
        await page.locator("#f-quiet_hours_start").fill("25")
        await page.get_by_role("button", name="Save").click()
        error = page.locator("#err-quiet_hours_start")
        await expect(error).to_have_text(
            "quiet_hours_start: Input should be less than or equal to 24")
        await expect(page.locator("#form-error")).to_contain_text("Nothing was changed.")
        await expect(page.locator("#f-quiet_hours_start")).to_have_attribute(
            "aria-invalid", "true")
        assert (await stored(live)).settings == {}

        # Valid: contact review off, a higher minimum; previewed, then saved.
        await page.locator("#f-quiet_hours_start").fill("21")
        await page.locator("#f-contact_review").uncheck()
        await page.locator("#f-min_payment_cents").fill("5000")
        await page.get_by_role("button", name="Preview").click()
        await expect(page.locator("#preview")).to_contain_text("contact_review: off")
        await expect(page.locator("#preview")).to_contain_text(
            "Reply an amount from $50.00 to $1,250.00")
        assert (await stored(live)).settings == {}
        await page.get_by_role("button", name="Save").click()
        await expect(page.get_by_role("status")).to_have_text(
            "Saved. The next conversation follows these settings.")
        assert (await stored(live)).settings == {"contact_review": False,
                                                 "min_payment_cents": 5000}

        # The next SMS conversation follows them: no contact review, the new minimum.
        assert await live.phone().send("pay") == [
            "How much would you like to pay? Reply an amount from $50.00 to $1,250.00, or FULL."
        ]
        for text in [*CONFIRM_STEPS[2:], "agree"]:  # (amount onwards: a payment to show)
            await live.phone().send(text)
        assert csp == []
    finally:
        await context.close()

    async with live.app[appkeys.DATABASE].session() as session:
        reference = await session.scalar(select(Payment.reference))
    pages = {**PAGES, "supervisor-payment": f"/agent/supervisor/payments/{reference}"}
    DOCS.mkdir(parents=True, exist_ok=True)
    for size, viewport in SIZES.items():
        context = await browser.new_context(base_url=live.url, locale="en-US", viewport=viewport,
                                            is_mobile=size == "phone", has_touch=size == "phone")
        context.set_default_timeout(TIMEOUT_MS)
        try:
            page = await context.new_page()
            clock.advance(timedelta(seconds=30))  # a code is taken once: the next one
            await sign_in(page, secret, clock)
            for name, path in pages.items():
                response = await page.goto(path)
                assert response is not None and response.status == 200, path
                await page.screenshot(path=str(DOCS / f"{name}-{size}.png"), full_page=True)
                wide = await page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth")
                assert wide <= 0, f"{path} at {size}: {wide}px wider than the screen"
        finally:
            await context.close()
