"""The SMS reply does not wait for the email provider: the receipt follows it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot import appkeys
from bot.config.settings import Settings
from bot.providers import Providers
from bot.providers.email import SandboxEmail, SentEmail
from bot.providers.payments import PaymentGateway
from bot.providers.sms import SandboxSms
from tests.seed import CONFIRM_STEPS, add_account


class SlowEmail(SandboxEmail):
    """An email provider that answers only when the test lets it (a slow SendGrid)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.may_answer = asyncio.Event()

    async def send(self, **message) -> SentEmail:  # type: ignore[no-untyped-def, override]
        await self.may_answer.wait()
        return await super().send(**message)


@pytest.fixture
async def providers(settings: Settings, gateway: PaymentGateway) -> AsyncIterator[Providers]:
    providers = Providers(
        sms=SandboxSms(), email=SlowEmail(settings.outbox_dir / "email"), payments=gateway
    )
    yield providers
    await providers.close()


async def test_the_receipt_follows_the_reply_and_is_not_lost(app, phone, providers):
    await add_account(app)
    maria = phone()
    maria.in_process = False  # answered without waiting for the emails: that is the point
    for text in CONFIRM_STEPS:
        await maria.send(text)
    # A reply that waited for the provider would never come: the guard turns that into a failure.
    (done,) = await asyncio.wait_for(maria.send("agree"), timeout=30)
    assert done.startswith("Done: $50.00 paid")
    assert providers.email.outbox == []  # the provider has not answered, the customer has

    providers.email.may_answer.set()
    await app[appkeys.ENGINE].settled()
    (receipt,) = providers.email.outbox
    assert receipt.to == "maria@example.com" and "$50.00" in receipt.text
