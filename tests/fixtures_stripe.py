"""Pytest fixtures for the payment gateway.

Load with ``pytest_plugins = ["tests.fixtures_stripe"]`` (or ``from tests.fixtures_stripe
import *`` in tests/conftest.py).

* ``localstripe``      session: one localstripe process (LocalStripe: url, flush,
                       register_webhook, js_url), started on first use only.
* ``localstripe_url``  session: its base URL.
* ``stripe_gateway``   function: flushes localstripe, yields a StripeGateway pointed at it
                       (key sk_test_paybot, no network retries), closed afterwards.
* ``sandbox_gateway``  function: a fresh SandboxGateway.
* ``payment_gateway``  function, parametrized ["sandbox", "localstripe"]: either one.
* ``method_ref_for``   function: ``await method_ref_for(gateway, "visa")`` -> a method ref
                       that behaves the same on either backend. Names: "visa",
                       "charge_declined" (4000000000000341), "attach_declined"
                       (4000000000000002), "requires_action" (3-D Secure).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from bot.providers.localstripe import LOCALSTRIPE_KEY, LocalStripe, create_card_method
from bot.providers.payments import PaymentGateway
from bot.providers.sandbox_gateway import SandboxGateway
from bot.providers.stripe_gateway import StripeGateway

__all__ = [
    "localstripe",
    "localstripe_url",
    "method_ref_for",
    "payment_gateway",
    "sandbox_gateway",
    "stripe_gateway",
]

# name -> (sandbox ref, localstripe card number or test ref)
TEST_METHODS: dict[str, tuple[str, str]] = {
    "visa": ("pm_card_visa", "pm_card_visa"),
    "charge_declined": ("pm_card_chargeCustomerFail", "4000000000000341"),
    "attach_declined": ("pm_card_visa_chargeDeclined", "4000000000000002"),
    "requires_action": ("pm_card_authenticationRequired", "4000002500003155"),
}


@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripe]:
    server = LocalStripe.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def localstripe_url(localstripe: LocalStripe) -> str:
    return localstripe.url


@pytest.fixture
async def stripe_gateway(localstripe: LocalStripe) -> AsyncIterator[StripeGateway]:
    await localstripe.flush_async()
    gateway = StripeGateway(LOCALSTRIPE_KEY, api_base=localstripe.url, max_network_retries=0)
    try:
        yield gateway
    finally:
        await gateway.close()


@pytest.fixture
async def sandbox_gateway() -> AsyncIterator[SandboxGateway]:
    gateway = SandboxGateway()
    try:
        yield gateway
    finally:
        await gateway.close()


@pytest.fixture(params=["sandbox", "localstripe"])
def payment_gateway(request: pytest.FixtureRequest) -> PaymentGateway:
    name = "sandbox_gateway" if request.param == "sandbox" else "stripe_gateway"
    return request.getfixturevalue(name)


@pytest.fixture
def method_ref_for() -> Callable[[PaymentGateway, str], Awaitable[str]]:
    async def make(gateway: PaymentGateway, name: str) -> str:
        sandbox_ref, stripe_ref = TEST_METHODS[name]
        if isinstance(gateway, SandboxGateway):
            return sandbox_ref
        if stripe_ref.startswith("pm_"):
            return stripe_ref
        assert isinstance(gateway, StripeGateway) and gateway.api_base
        return await create_card_method(gateway.api_base, stripe_ref)

    return make
