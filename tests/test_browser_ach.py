"""The portal's bank account (ACH) path in a real browser, at a phone and a desktop viewport.

localstripe has neither us_bank_account SetupIntents nor Stripe.js's bank methods, so this test
stands in for both, and only for them: the server's gateway is the sandbox gateway behind a
facade the portal treats as a real processor (it then prepares Stripe.js entry: a SetupIntent
for a card and one for a bank account), and Stripe.js is tests/data/stripe_standin.js, served
from an origin of its own as Stripe's is. Everything between (portal_fallback/static/card.js, the
page, the CSP, the form posts, the flow and the ledger) is the real thing.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import expect
from sqlalchemy import select

from bot import appkeys
from bot.config.settings import Settings
from bot.ledger import queries as ledger
from bot.ledger.models import Payment, PaymentMethod
from bot.providers.sandbox_gateway import SandboxGateway
from tests.browser_support import (
    accept_terms,
    agree_to_pay,
    confirm_payment,
    expect_receipt,
    review_and_start,
    signed,
)
from tests.fixtures_browser import *  # noqa: F403
from tests.fixtures_browser import LiveServer, Tab
from tests.seed import add_account

pytestmark = pytest.mark.asyncio(loop_scope="session")

STANDIN_JS = Path(__file__).parent / "data" / "stripe_standin.js"
PUBLISHABLE_KEY = "pk_test_standin"
NACHA = "This authorization is made online (NACHA WEB)"


class ProcessorStandIn:
    """The sandbox gateway, but not recognizably the sandbox: the portal asks it for SetupIntents
    (card and us_bank_account) as it asks Stripe, and it saves and charges the sandbox's test
    methods (pm_usBankAccount: a bank account ending 6789 whose charges settle later)."""

    def __init__(self) -> None:
        self.sandbox = SandboxGateway()
        self.setup_intents: list[tuple[str, str]] = []  # (kind, client secret)
        # The sandbox's own methods, passed through as they are. Not a subclass: the portal
        # offers its test methods in place of Stripe.js entry to any SandboxGateway.
        self.ensure_customer = self.sandbox.ensure_customer
        self.save_method = self.sandbox.save_method
        self.charge = self.sandbox.charge
        self.close = self.sandbox.close

    async def create_setup_intent(self, *, customer_id: str, kind: str = "card") -> tuple[str, str]:
        seti, secret = await self.sandbox.create_setup_intent(customer_id=customer_id, kind=kind)
        self.setup_intents.append((kind, secret))
        return seti, secret


# These two replace the browser fixtures' own (a gateway on localstripe, Stripe.js from it).
@pytest.fixture
def gateway() -> ProcessorStandIn:
    return ProcessorStandIn()


@pytest.fixture(scope="session")
def standin_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stripe_standin(standin_socket: socket.socket) -> AsyncIterator[str]:
    """The stand-in Stripe.js, served from an origin of its own; yields that origin."""

    async def script(_: web.Request) -> web.Response:
        return web.Response(
            body=STANDIN_JS.read_bytes(),
            content_type="application/javascript",
            headers={"Cache-Control": "no-store"},
        )

    app = web.Application()
    app.router.add_get("/v3/", script)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, standin_socket).start()
        host, port = standin_socket.getsockname()
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
        standin_socket.close()


@pytest.fixture
def settings(settings: Settings, live_socket: socket.socket, stripe_standin: str) -> Settings:
    port = live_socket.getsockname()[1]
    return settings.replace(
        public_base_url=f"http://127.0.0.1:{port}",
        stripe_js_url=f"{stripe_standin}/v3/",
        stripe_publishable_key=PUBLISHABLE_KEY,
    )


async def payment_link(live: LiveServer, account_id: int) -> str:
    app = live.app
    async with app[appkeys.DATABASE].session() as session:
        token = await ledger.create_link(
            session,
            account_id=account_id,
            at=app[appkeys.CLOCK].now(),
            lifetime=timedelta(hours=72),
        )
        await session.commit()
    return f"{live.url}/p/{token}"


async def ledger_payments(live: LiveServer) -> list[tuple[Payment, PaymentMethod | None]]:
    async with live.app[appkeys.DATABASE].session() as session:
        rows = await session.execute(
            select(Payment, PaymentMethod)
            .outerjoin(PaymentMethod, Payment.method_id == PaymentMethod.id)
            .order_by(Payment.id)
        )
        return [(p, m) for p, m in rows.all()]


async def standin_record(tab: Tab) -> dict[str, Any]:
    """What the stand-in Stripe.js was asked, on this page and the tab's earlier ones."""
    return await tab.page.evaluate("JSON.parse(sessionStorage.getItem('stripeStandIn'))")


async def calls_of(tab: Tab, method: str) -> list[list[Any]]:
    return [c["args"] for c in (await standin_record(tab))["calls"] if c["method"] == method]


async def to_the_method_step(live: LiveServer, tab: Tab) -> None:
    """A link for an account with no saved method, walked to the method step ($200.00)."""
    account = await add_account(live.app, methods=())
    page = tab.page
    await page.goto(await payment_link(live, account.id))
    await expect(page.locator("h1")).to_have_text("Your balance")
    await tab.press("Make a payment")
    await expect(page.locator("h1")).to_have_text("Your contact details")
    await tab.press("Continue")
    await expect(page.locator("h1")).to_have_text("How much")
    await tab.type_into(page.get_by_label("Amount"), "200")
    await tab.press("Continue")
    await expect(page.locator("h1")).to_have_text("Payment method")


def assert_clean(tab: Tab, live: LiveServer, stripe_standin: str) -> None:
    """Only the app and the stand-in Stripe.js origin were asked for anything; no CSP
    violation, no script error, nothing wider than the screen."""
    assert tab.requests
    assert tab.foreign_requests({live.url, stripe_standin}) == []
    assert tab.csp_violations() == []
    assert tab.unexpected_console_errors() == []
    assert tab.errors == []
    assert tab.overflow == []


async def test_a_bank_account_added_in_the_page_pays_by_ach(
    live: LiveServer, tab: Tab, gateway: ProcessorStandIn, stripe_standin: str
) -> None:
    page = tab.page
    await to_the_method_step(live, tab)
    # card.js found Stripe.js offering bank accounts and showed the bank form.
    bank_form = page.locator("#bank-form")
    await expect(bank_form).to_be_visible()
    await expect(bank_form).to_contain_text("NACHA WEB")
    await expect(page.locator("#card-element input")).to_have_count(1)
    await tab.shot("method")
    kinds = [kind for kind, _ in gateway.setup_intents]
    assert kinds == ["card", "us_bank_account"]
    bank_secret = gateway.setup_intents[1][1]

    await tab.press("Add a bank account")
    # collectBankAccountForSetup -> confirmUsBankAccountSetup -> pm id posted -> the flow goes on.
    await expect(page.locator("h1")).to_have_text("When")
    await tab.shot("schedule")
    assert (await standin_record(tab))["keys"] == [PUBLISHABLE_KEY] * 2
    ((collect,),) = await calls_of(tab, "collectBankAccountForSetup")
    billing = collect["params"]["payment_method_data"].pop("billing_details")
    assert collect == {
        "clientSecret": bank_secret,
        "params": {"payment_method_type": "us_bank_account", "payment_method_data": {}},
    }
    assert billing["email"] == "maria@example.com"
    assert billing["name"] == "Maria Lopez"  # ACH needs the account holder's full name
    assert await calls_of(tab, "confirmUsBankAccountSetup") == [[bank_secret]]
    assert await calls_of(tab, "confirmCardSetup") == []

    agreement = await confirm_payment(tab, "$200.00", "Bank ending 6789")
    await expect(agreement).to_contain_text("Bank ending 6789")
    await expect(agreement).to_contain_text(NACHA)
    await tab.shot("agreement")
    assert await ledger_payments(live) == []  # nothing is charged before the agreement
    await agree_to_pay(tab)

    await expect_receipt(tab, "Payment pending", "$200.00", "Bank ending 6789", "Pending")
    await tab.shot("receipt")

    ((payment, method),) = await ledger_payments(live)
    assert (payment.status, payment.amount_cents, payment.channel) == ("pending", 20000, "web")
    assert method is not None
    assert (method.kind, method.last4, method.processor_ref) == (
        "us_bank_account",
        "6789",
        "pm_usBankAccount",
    )
    document = await live.api("/api/v1/accounts/ACC-1001")
    assert [(p["status"], p["method"]) for p in document["payments"]] == [
        ("Pending", "Bank ending 6789")
    ]
    assert document["balance_cents"] == 125000  # an ACH debit settles later
    assert_clean(tab, live, stripe_standin)


async def test_a_closed_bank_window_or_an_unverified_account_saves_nothing(
    live: LiveServer, tab: Tab, stripe_standin: str
) -> None:
    page = tab.page
    await to_the_method_step(live, tab)
    button = page.get_by_role("button", name="Add a bank account")
    errors = page.locator("#bank-errors")

    # The customer closes Stripe's bank window: no error, still on the method step.
    await page.evaluate("window.stripeStandIn.bankOutcome = 'canceled'")
    await tab.press("Add a bank account")
    await expect(button).to_be_enabled()
    assert len(await calls_of(tab, "collectBankAccountForSetup")) == 1
    assert await calls_of(tab, "confirmUsBankAccountSetup") == []
    await expect(page.locator("h1")).to_have_text("Payment method")
    await expect(errors).to_be_hidden()

    # Numbers typed by hand: Stripe verifies them by small deposits, days away. Not a method yet.
    await page.evaluate("window.stripeStandIn.bankOutcome = 'microdeposits'")
    await tab.press("Add a bank account")
    await expect(errors).to_have_text(re.compile("needs a few days to be verified"))
    await expect(button).to_be_enabled()
    await expect(page.locator("h1")).to_have_text("Payment method")
    await tab.shot("unverified")
    async with live.app[appkeys.DATABASE].session() as session:
        assert list(await session.scalars(select(PaymentMethod))) == []

    # Signed in to the bank this time: saved, and on to the date.
    await page.evaluate("window.stripeStandIn.bankOutcome = 'verified'")
    await tab.press("Add a bank account")
    await expect(page.locator("h1")).to_have_text("When")
    async with live.app[appkeys.DATABASE].session() as session:
        (method,) = await session.scalars(select(PaymentMethod))
    assert (method.kind, method.last4) == ("us_bank_account", "6789")
    assert_clean(tab, live, stripe_standin)


async def test_a_plan_is_signed_with_a_bank_account_added_on_the_way(
    live: LiveServer, tab: Tab, gateway: ProcessorStandIn, stripe_standin: str
) -> None:
    from tests.test_signing import add_plan_offer

    account = await add_account(live.app, methods=())
    _, link = await add_plan_offer(live.app, account.id)
    page = tab.page
    await review_and_start(tab, link)
    bank_form = page.locator("#bank-form")
    await expect(bank_form).to_be_visible()
    await expect(bank_form).to_contain_text("NACHA WEB")
    await tab.shot("plan-method")
    await tab.press("Add a bank account")
    await accept_terms(tab)
    ((collect,),) = await calls_of(tab, "collectBankAccountForSetup")
    assert collect["params"]["payment_method_data"]["billing_details"]["name"] == "Maria Lopez"

    name = page.get_by_label("Full name")
    await name.fill("")
    await tab.type_into(name, "Maria Lopez")
    await tab.press("Sign with my typed name")
    await expect(page.locator("h1")).to_have_text("Your payment plan is set up")
    await expect(page.locator("main")).to_contain_text("Bank ending 6789")
    await tab.shot("plan-signed")

    plan, payments, agreement = await signed(live)
    async with live.app[appkeys.DATABASE].session() as session:
        method = await session.get(PaymentMethod, plan.method_id)
    assert method is not None and (method.kind, method.last4) == ("us_bank_account", "6789")
    assert {p.method_id for p in payments} == {method.id}
    assert NACHA in agreement.text  # a recurring debit of a bank account: the authorization says so
    assert_clean(tab, live, stripe_standin)
