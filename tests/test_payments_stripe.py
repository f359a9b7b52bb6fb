"""Paying by text with the real Stripe SDK against localstripe: charge, decline, one charge only."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from sqlalchemy import func, select

from bot import appkeys
from bot.models import Payment
from tests.seed import CONFIRM_STEPS, add_account


@pytest.fixture
def gateway(stripe_gateway):  # type: ignore[no-untyped-def]
    """Every test here runs the Stripe adapter against localstripe."""
    return stripe_gateway


async def payment_intents(localstripe) -> list[dict]:  # type: ignore[no-untyped-def]
    """What the processor holds, asked of localstripe itself (not of our ledger)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{localstripe.url}/v1/payment_intents",
            params={"limit": "100"},
            headers={"Authorization": "Bearer sk_test_paybot"},
        ) as response:
            assert response.status == 200, await response.text()
            return (await response.json())["data"]


async def ledger_payments(app) -> list[Payment]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return list(await session.scalars(select(Payment).order_by(Payment.id)))


async def test_pay_by_text_charges_the_saved_card_at_the_processor(app, phone, localstripe):
    await add_account(app)
    maria = phone()
    for text in CONFIRM_STEPS:
        await maria.send(text)
    (done,) = await maria.send("agree")
    assert done.startswith("Done: $50.00 paid with Visa ending 4242. Ref P-")
    (intent,) = await payment_intents(localstripe)
    assert intent["amount"] == 5000 and intent["currency"] == "usd"
    assert intent["status"] == "succeeded"
    (payment,) = await ledger_payments(app)
    assert payment.status == "paid" and payment.processor_id == intent["id"]
    assert intent["metadata"]["paybot_reference"] == payment.reference


async def test_decline_is_recorded_and_told(app, phone, localstripe, method_ref_for, gateway):
    declining = await method_ref_for(gateway, "charge_declined")
    await add_account(app, methods=(declining,))
    maria = phone()
    for text in CONFIRM_STEPS:
        await maria.send(text)
    text = "\n".join(await maria.send("agree"))
    assert "did not go through" in text and "Nothing was charged." in text
    (payment,) = await ledger_payments(app)
    assert payment.status == "declined" and payment.failure_code == "card_declined"
    async with app[appkeys.DATABASE].session() as session:
        from bot.models import Account

        balance = await session.scalar(select(Account.balance_cents))
    assert balance == 125000


async def test_replays_and_races_charge_exactly_once(app, phone, localstripe):
    """A duplicate MessageSid, a second AGREE and two concurrent AGREEs: one charge."""
    await add_account(app)
    maria = phone()
    for text in CONFIRM_STEPS:
        await maria.send(text)
    # Two different messages saying AGREE arrive at the same moment...
    first, second = await asyncio.gather(
        maria.send("agree", sid="SM" + "1" * 32), maria.send("AGREE", sid="SM" + "2" * 32)
    )
    # ... then Twilio retries one of them, and the customer taps AGREE again.
    retried = await maria.send("agree", sid="SM" + "1" * 32)
    await maria.send("agree")
    assert retried == first
    done = [r for r in first + second if r.startswith("Done: $50.00 paid")]
    assert len(done) == 1
    assert len(await payment_intents(localstripe)) == 1
    assert len(await ledger_payments(app)) == 1


async def test_the_ledger_guard_holds_even_without_the_redis_lock(
    app, client, settings, localstripe
):
    """Two engines that do not share a lock (Redis lost between them) still charge once."""
    from bot.app import build_engine
    from bot.conversation import Inbound
    from bot.coordination import Coordinator, connect_redis

    await add_account(app)
    engine = app[appkeys.ENGINE]
    for n, text in enumerate(CONFIRM_STEPS):
        await engine.receive(Inbound(phone="+15555550100", body=text, sid=f"SMprep{n}"))
    lonely = build_engine(
        settings,
        app[appkeys.DATABASE],
        Coordinator(connect_redis(None)),
        app[appkeys.PROVIDERS],
        app[appkeys.CLOCK],
    )
    await asyncio.gather(
        engine.receive(Inbound(phone="+15555550100", body="agree", sid="SMrace1")),
        lonely.receive(Inbound(phone="+15555550100", body="agree", sid="SMrace2")),
    )
    assert len(await payment_intents(localstripe)) == 1
    async with app[appkeys.DATABASE].session() as session:
        assert await session.scalar(select(func.count()).select_from(Payment)) == 1
    await lonely.coordinator.redis.aclose()
