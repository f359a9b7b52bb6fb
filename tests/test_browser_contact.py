"""The contact step's code page in a real browser: a new email takes effect only once the code
sent to it is typed in (issue 12, finding 3)."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Account
from tests.fixtures_browser import *  # noqa: F403
from tests.fixtures_browser import LiveServer, Tab
from tests.seed import add_account
from tests.test_browser import link_in_reply

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def stored_email(live: LiveServer) -> str | None:
    async with live.app[appkeys.DATABASE].session() as session:
        return await session.scalar(select(Account.email))


async def test_a_new_email_takes_effect_once_its_code_is_typed_in(
    live: LiveServer, tab: Tab
) -> None:
    await add_account(live.app)
    page = tab.page
    await page.goto(await link_in_reply(live))
    await tab.press("Make a payment")
    await expect(page.locator("h1")).to_have_text("Your contact details")
    await tab.type_into(page.get_by_label("Use a different email (optional)"), "new@example.com")
    await tab.press("Continue")

    code_field = page.get_by_label("Code sent to n***@example.com")
    await expect(code_field).to_be_visible()
    await tab.shot("contact-code")
    assert await stored_email(live) == "maria@example.com"
    (code_email,) = [m for m in live.providers.email.outbox if m.to == "new@example.com"]  # type: ignore[attr-defined]
    code = re.search(r"\b(\d{6})\b", code_email.text).group(1)  # type: ignore[union-attr]

    await tab.type_into(code_field, code)
    await tab.press("Confirm")
    await expect(page.locator("h1")).to_have_text("How much")
    assert await stored_email(live) == "new@example.com"
    tab.assert_clean(live)
