"""A slow card processor holds up only the customer who is paying."""

from __future__ import annotations

import asyncio

import pytest

from bot.providers.payments import ChargeResult
from bot.providers.sandbox_gateway import SandboxGateway
from tests.seed import CONFIRM_STEPS, add_account


class SlowProcessor(SandboxGateway):
    """The sandbox, answering a charge only when the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.charging = asyncio.Event()
        self.may_answer = asyncio.Event()

    async def charge(self, **charge) -> ChargeResult:  # type: ignore[no-untyped-def, override]
        self.charging.set()
        await self.may_answer.wait()
        return await super().charge(**charge)


@pytest.fixture
def gateway() -> SlowProcessor:
    return SlowProcessor()


async def test_others_are_answered_while_a_charge_waits_on_the_processor(app, phone, gateway):
    await add_account(app)
    await add_account(app, ref="ACC-2002", phone="+15555550122", first_name="Bob")
    maria, bob = phone(), phone("+15555550122")
    for text in CONFIRM_STEPS:
        await maria.send(text)
    paying = asyncio.create_task(maria.send("agree"))
    await gateway.charging.wait()

    # On SQLite the writers of a process queue: the paying turn must not keep its place while
    # it waits on the processor. The guard turns a wait that never ends into a failure.
    (balance,) = await asyncio.wait_for(bob.send("balance"), timeout=30)
    assert balance.startswith("Your balance on Acme Card ending 4821 is $1,250.00.")
    assert not paying.done()

    gateway.may_answer.set()
    (done,) = await asyncio.wait_for(paying, timeout=30)
    assert done.startswith("Done: $50.00 paid")
