"""A PayPal account saved and paid with in a real browser (Chromium through Playwright): the
portal loads the PayPal fake's stand-in for PayPal's JS SDK (past the CSP), its button approves
the vault setup token at the fake, the page posts it back, and the payment is captured through
paypal-server-sdk against the fake (tests/fakes/paypal.py)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import expect
from sqlalchemy import select

from bot import appkeys
from bot.config.settings import Settings
from bot.ledger.models import PaymentMethod
from bot.providers import Providers
from bot.providers.email import SandboxEmail
from bot.providers.localstripe import LOCALSTRIPE_KEY, LocalStripe
from bot.providers.paypal_gateway import PayPalGateway
from bot.providers.sms import SandboxSms
from bot.providers.stripe_gateway import StripeGateway
from tests.browser_support import agree_to_pay, confirm_payment, expect_receipt
from tests.fakes.paypal import PayPalFake
from tests.fixtures_browser import *  # noqa: F403
from tests.fixtures_browser import LiveServer, Tab
from tests.seed import add_account
from tests.test_browser import link_in_reply

pytestmark = pytest.mark.asyncio(loop_scope="session")

TAKES_PAYPAL = {"methods_enabled": ["card", "paypal"], "contact_review": False}


@pytest_asyncio.fixture(loop_scope="session")
async def paypal_fake() -> AsyncIterator[PayPalFake]:
    async with PayPalFake() as fake:
        yield fake


@pytest.fixture
def settings(
    settings: Settings, live_socket: socket.socket, localstripe: LocalStripe,
    paypal_fake: PayPalFake,
) -> Settings:
    """tests/fixtures_browser.py's settings (the live address, localstripe) and PayPal's fake:
    a fixture named as the one it stands for gets conftest's, so both are made here."""
    port = live_socket.getsockname()[1]
    return settings.replace(
        public_base_url=f"http://127.0.0.1:{port}",
        stripe_js_url=localstripe.js_url,
        stripe_publishable_key="pk_test_paybot",
        stripe_secret_key=LOCALSTRIPE_KEY,
        stripe_api_base=localstripe.url,
        paypal_client_id=paypal_fake.client_id,
        paypal_client_secret=paypal_fake.client_secret,
        paypal_webhook_id=paypal_fake.webhook_id,
        paypal_base_url=paypal_fake.base_url,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def providers(
    settings: Settings, gateway: StripeGateway, paypal_fake: PayPalFake
) -> AsyncIterator[Providers]:
    providers = Providers(
        sms=SandboxSms(),
        email=SandboxEmail(settings.outbox_dir / "email"),
        payments=gateway,
        paypal=PayPalGateway(paypal_fake.client_id, paypal_fake.client_secret,
                             base_url=paypal_fake.base_url, timeout=5.0),
    )
    yield providers
    await providers.close()


async def test_a_paypal_account_is_saved_and_paid_with_on_the_web(
    live: LiveServer, tab: Tab, paypal_fake: PayPalFake
) -> None:
    await add_account(live.app, methods=(), creditor_settings=TAKES_PAYPAL)
    page = tab.page
    await page.goto(await link_in_reply(live))
    await tab.press("Make a payment")
    await expect(page.locator("h1")).to_have_text("How much")
    await tab.type_into(page.get_by_label("Amount"), "75.50")
    await tab.press("Continue")
    await expect(page.locator("h1")).to_have_text("Payment method")
    paypal_form = page.locator("#paypal-form")
    await expect(paypal_form.locator("h3")).to_have_text("Or pay with PayPal")
    await tab.shot("method")

    # The fake's stand-in of PayPal's button: approve at "PayPal", then post the token back.
    await tab.press(paypal_form.get_by_role("button", name="PayPal", exact=True))
    await expect(page.locator("h1")).to_have_text("When")
    await confirm_payment(tab, "$75.50", "PayPal (m***@example.com)")
    await agree_to_pay(tab)
    await expect_receipt(tab, "Thank you", "Paid", "$75.50", "PayPal (m***@example.com)")
    await tab.shot("receipt")

    account = await live.api("/api/v1/accounts/ACC-1001")
    assert account["balance_cents"] == 125000 - 7550
    assert [(p["status"], p["channel"]) for p in account["payments"]] == [("Paid", "web")]
    async with live.app[appkeys.DATABASE].session() as session:
        (method,) = await session.scalars(select(PaymentMethod))
    assert (method.kind, method.label) == ("paypal", "m***@example.com")
    assert method.processor_ref in paypal_fake.vault  # the vault id, never the setup token
    (capture,) = paypal_fake.captures
    assert capture["status"] == "COMPLETED"
    assert capture["amount"] == {"currency_code": "USD", "value": "75.50"}
    assert not tab.csp_violations() and not tab.errors
    assert tab.foreign_requests({live.url, live.localstripe.url, paypal_fake.base_url}) == []
