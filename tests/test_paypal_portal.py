"""PayPal on the portal's method step with the sandbox PayPal (the demo's): the button is offered
only where the creditor takes PayPal, an approval posted back is saved and paid with, and one
posted where PayPal is not taken is refused and keeps nothing. The CSP names PayPal's origins
only where PayPal is configured."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.config.check import review
from bot.config.settings import Settings
from bot.ledger.models import Payment, PaymentMethod
from bot.providers import Providers
from bot.providers.email import SandboxEmail
from bot.providers.paypal_sandbox import SandboxPayPal
from bot.providers.sms import SandboxSms
from portal_fallback.app import content_security_policy
from tests.seed import add_account
from tests.test_portal import Browser, link_for

TAKES_PAYPAL = {"methods_enabled": ["card", "paypal"], "contact_review": False}
CARD_ONLY = {"methods_enabled": ["card"], "contact_review": False}


@pytest.fixture
async def providers(settings, gateway):  # type: ignore[no-untyped-def]
    providers = Providers(sms=SandboxSms(), email=SandboxEmail(settings.outbox_dir / "email"),
                          payments=gateway, paypal=SandboxPayPal())
    yield providers
    await providers.close()


def setup_token(html: str) -> str:
    found = re.search(r'data-setup-token="([^"]+)"', html)
    assert found, "no PayPal button on the page"
    return found.group(1)


async def to_the_method_step(app, client, phone, settings: dict) -> Browser:  # type: ignore[no-untyped-def,type-arg]
    await add_account(app, methods=(), creditor_settings=settings)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue", amount="75.50")
    assert browser.state == "method"
    return browser


async def test_an_approved_paypal_account_is_saved_and_paid_with(app, client, phone):
    browser = await to_the_method_step(app, client, phone, TAKES_PAYPAL)
    assert "Or pay with PayPal" in browser.text
    assert '<script src="/static/paypal_standin.js?client-id=sandbox"></script>' in browser.html
    token = setup_token(browser.html)
    await browser.post("/portal/methods", {"payment_method": f"paypal-setup:{token}"})
    assert browser.state == "schedule"
    await browser.step(action="now")
    assert browser.state == "confirm" and "PayPal (p***@example.com)" in browser.text
    await browser.step(action="pay", consent="yes")  # the one final step (issue 15)
    async with app[appkeys.DATABASE].session() as session:
        (method,) = await session.scalars(select(PaymentMethod))
        (payment,) = await session.scalars(select(Payment))
    assert (method.kind, method.brand, method.label) == ("paypal", "PayPal", "p***@example.com")
    assert (payment.status, payment.method_id) == ("paid", method.id)
    (charge,) = app[appkeys.PROVIDERS].paypal.charges
    assert (charge.capture_id, charge.amount_cents) == (payment.processor_id, 7550)
    assert not app[appkeys.PROVIDERS].payments.charges  # Stripe's sandbox charged nothing


async def test_no_paypal_where_the_creditor_does_not_take_it(app, client, phone):
    browser = await to_the_method_step(app, client, phone, CARD_ONLY)
    assert "PayPal" not in browser.text and "data-setup-token" not in browser.html
    paypal = app[appkeys.PROVIDERS].paypal
    token, _ = await paypal.create_setup_intent(customer_id="x", kind="paypal")
    await browser.post("/portal/methods", {"payment_method": f"paypal-setup:{token}"},
                       status=422)
    assert "We can take only a card for this account." in browser.text
    async with app[appkeys.DATABASE].session() as session:
        assert list(await session.scalars(select(PaymentMethod))) == []


async def test_an_unknown_approval_is_refused_politely(app, client, phone):
    browser = await to_the_method_step(app, client, phone, TAKES_PAYPAL)
    await browser.post("/portal/methods", {"payment_method": "paypal-setup:FORGED"}, status=422)
    assert browser.state == "method"
    async with app[appkeys.DATABASE].session() as session:
        assert list(await session.scalars(select(PaymentMethod))) == []


def test_the_csp_names_paypal_only_where_it_is_configured():
    stripe = "https://js.stripe.com/v3/"
    plain = content_security_policy(stripe)
    assert "paypal" not in plain
    live = content_security_policy(stripe, "https://www.paypal.com/sdk/js")
    assert "script-src 'self' https://*.js.stripe.com https://js.stripe.com https://*.paypal.com" \
           " https://*.paypalobjects.com;" in live
    assert "frame-src https://*.js.stripe.com https://js.stripe.com https://hooks.stripe.com " \
           "https://*.paypal.com;" in live
    fake = content_security_policy(stripe, "http://127.0.0.1:4567/sdk/js")
    assert "connect-src 'self' https://api.stripe.com http://127.0.0.1:4567;" in fake
    assert content_security_policy(stripe, "/static/paypal_standin.js") == plain


def test_production_wants_the_paypal_secret_and_webhook_id_once_the_client_id_is_set(tmp_path):
    base = Settings(public_base_url="https://pay.example", data_dir=tmp_path)
    items = {item.name: item.state for item in review(base).items}
    assert items["PAYPAL_CLIENT_ID"] == "optional"
    with_id = base.replace(paypal_client_id="AbC123")
    items = {item.name: item.state for item in review(with_id).items}
    assert (items["PAYPAL_CLIENT_SECRET"], items["PAYPAL_WEBHOOK_ID"]) == ("missing", "missing")
    plain_http = with_id.replace(paypal_client_secret="s", paypal_webhook_id="WH-1",
                                 paypal_base_url="http://paypal.internal")
    items = {item.name: item.state for item in review(plain_http).items}
    assert (items["PAYPAL_CLIENT_SECRET"], items["PAYPAL_WEBHOOK_ID"],
            items["PAYPAL_BASE_URL"]) == ("ok", "ok", "invalid")
    assert with_id.paypal_js_url == "/static/paypal_standin.js"  # no secret: not configured
    assert plain_http.paypal_js_url == "http://paypal.internal/sdk/js"
    assert plain_http.replace(paypal_base_url=None).paypal_js_url == \
        "https://www.paypal.com/sdk/js"


async def test_another_accounts_paypal_approval_is_not_saved(app, client, phone):
    # A setup token is made for one account's page; PayPal ties it to no customer of ours, so
    # another account's session posting it would have saved that payer's PayPal as its own.
    maria = await to_the_method_step(app, client, phone, TAKES_PAYPAL)
    token = setup_token(maria.html)
    await add_account(app, ref="ACC-1002", phone="+15555550101", email="james@example.com",
                      first_name="James", methods=())
    james = Browser(client)
    (menu,) = await phone("+15555550101").send("hi")
    await james.get(menu.split("https://paybot.test", 1)[1].split()[0])
    await james.step(action="start")
    await james.step(action="continue", amount="75.50")
    await james.post("/portal/methods", {"payment_method": f"paypal-setup:{token}"}, status=422)
    assert james.state == "method"
    async with app[appkeys.DATABASE].session() as session:
        assert list(await session.scalars(select(PaymentMethod))) == []
    assert james.text == (
        "Payment method - Northwind Recovery Skip to content Northwind Recovery Español Sign out "
        "Payment method That card or account could not be saved. Please check it or use another "
        "one. You are paying $75.50 Add a card to continue. Back Add a card Test mode: no real "
        "processor is configured. Test Visa ending 4242 Test Visa ending 0341 (declines) Save "
        "test method Or pay with PayPal You sign in to PayPal in its own window. We keep only a "
        "link to your PayPal account, never your password. PayPal could not be connected. Please "
        "try again or use another method. Your payments Questions? support@paybot.example. "
        "Secure payments processed by Stripe."
    )
