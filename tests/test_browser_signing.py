"""Signing a plan offer in a real browser (Chromium through Playwright), phone and desktop: the
typed signature with a saved card, and the drawn signature on the canvas with a card added through
localstripe's Stripe.js. Screenshots of each step land in test-artifacts/screenshots/<test>/."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser_support import accept_terms, review_and_start, save_test_card, signed
from tests.fixtures_browser import *  # noqa: F403
from tests.fixtures_browser import LiveServer, Tab
from tests.seed import add_account
from tests.test_signing import add_plan_offer, pdf_text

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_signing_with_a_typed_name(live: LiveServer, tab: Tab) -> None:
    account = await add_account(live.app)
    _, link = await add_plan_offer(live.app, account.id)
    page = tab.page
    await review_and_start(tab, link)
    await expect(page.get_by_label("Visa ending 4242")).to_be_checked()
    await tab.shot("method")
    await tab.press("Continue")
    await accept_terms(tab)

    name = page.get_by_label("Full name")
    await name.fill("")
    await tab.type_into(name, "Maria Lopez")
    await expect(page.locator("#typed-preview")).to_have_text("Maria Lopez")
    await tab.shot("sign-typed")
    await tab.press("Sign with my typed name")

    await expect(page.locator("h1")).to_have_text("Your payment plan is set up")
    await expect(page.locator(".typed-signature")).to_have_text("Maria Lopez")
    await expect(page.locator("main")).to_contain_text("A copy is on its way to m***@example.com")
    await tab.shot("confirmation")

    plan, payments, agreement = await signed(live)
    assert [p.amount_cents for p in payments] == [40000, 40000, 45000]
    assert agreement.signature_kind == "typed" and agreement.signature_data == "Maria Lopez"
    assert agreement.user_agent and "Chrome" in agreement.user_agent
    (email,) = live.providers.email.outbox  # type: ignore[attr-defined]
    assert "Maria Lopez" in pdf_text(email.attachments[0].data)
    tab.assert_clean(live)


async def test_signing_with_a_drawn_signature_and_a_new_card(live: LiveServer, tab: Tab) -> None:
    account = await add_account(live.app, methods=())
    _, link = await add_plan_offer(live.app, account.id)
    page = tab.page
    await review_and_start(tab, link)
    await expect(page.locator("#card-element input")).to_have_count(5)
    await save_test_card(tab)
    await expect(page.locator("main")).to_contain_text("Visa ending 4242")
    await accept_terms(tab)

    pad = page.locator("#signature-pad")
    await expect(pad).to_be_visible()
    # Signing with an empty box is refused in the page.
    await tab.press("Sign with my drawing")
    await expect(page.locator("#pad-errors")).to_contain_text("Please draw your signature")
    box = await pad.bounding_box()
    assert box is not None
    await pad.scroll_into_view_if_needed()
    box = await pad.bounding_box()
    assert box is not None
    left, top, width, height = box["x"], box["y"], box["width"], box["height"]
    await page.mouse.move(left + width * 0.1, top + height * 0.7)
    await page.mouse.down()
    for n in range(1, 13):
        await page.mouse.move(
            left + width * (0.1 + 0.065 * n),
            top + height * (0.7 - 0.4 * (n % 2)),
            steps=4,
        )
    await page.mouse.up()
    await tab.shot("sign-drawn")
    await tab.press("Sign with my drawing")

    await expect(page.locator("h1")).to_have_text("Your payment plan is set up")
    image = page.locator("img.drawn-signature")
    await expect(image).to_be_visible()
    assert await image.evaluate("img => img.complete && img.naturalWidth") == 600
    await tab.shot("confirmation")

    plan, payments, agreement = await signed(live)
    assert {p.method_id for p in payments} == {plan.method_id}
    assert agreement.signature_kind == "drawn"
    assert agreement.signature_data.startswith("data:image/png;base64,")
    (email,) = live.providers.email.outbox  # type: ignore[attr-defined]
    assert b"/Subtype /Image" in email.attachments[0].data
    tab.assert_clean(live)
