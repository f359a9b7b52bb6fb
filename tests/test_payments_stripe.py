"""Paying by text with the real Stripe SDK against localstripe: charge, decline, one charge only."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Payment
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
        from bot.ledger.models import Account

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
    from bot.coordination import Coordinator, connect_redis
    from bot.sms.engine import Inbound

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
    replies = await asyncio.gather(
        engine.receive(Inbound(phone="+15555550100", body="agree", sid="SMrace1")),
        lonely.receive(Inbound(phone="+15555550100", body="agree", sid="SMrace2")),
    )
    assert len(await payment_intents(localstripe)) == 1
    assert len(await ledger_payments(app)) == 1
    # Both messages are processed like any other: Twilio's retry of either gets the same answer
    # and charges nothing.
    for sid, reply in zip(("SMrace1", "SMrace2"), replies, strict=True):
        again = await engine.receive(Inbound(phone="+15555550100", body="agree", sid=sid))
        assert again == reply
    assert len(await payment_intents(localstripe)) == 1
    await lonely.coordinator.redis.aclose()


async def test_two_agrees_held_inside_their_turns_at_once_answer_about_one_payment(
    app, client, settings, localstripe
):
    """Two engines without a shared lock, both held inside their turns at once (a table lock
    on the audit trail stops the first just before its commit; the second waits on the first's
    rows): the ledger, not Redis, decides. One charge; the second turn answers about the payment
    the first made, and both messages are processed (a retry gets the same answer)."""
    import asyncpg

    from bot.app import build_engine
    from bot.coordination import Coordinator, connect_redis
    from bot.sms.engine import Inbound
    from tests.conftest import BACKEND

    if BACKEND != "services":
        pytest.skip("SQLite's writers of one process queue: two turns are never inside at once")
    await add_account(app)
    engine = app[appkeys.ENGINE]
    for n, text in enumerate(CONFIRM_STEPS):
        await engine.receive(Inbound(phone="+15555550100", body=text, sid=f"SMprep{n}"))
    lonely = build_engine(
        settings, app[appkeys.DATABASE], Coordinator(connect_redis(None)),
        app[appkeys.PROVIDERS], app[appkeys.CLOCK],
    )
    # A table lock on the audit trail holds the first turn after its payment INSERT, uncommitted.
    blocker = await asyncpg.connect(settings.database_url)
    try:
        holding = blocker.transaction()
        await holding.start()
        await blocker.execute("LOCK TABLE audit_events IN EXCLUSIVE MODE")
        turns = asyncio.gather(
            engine.receive(Inbound(phone="+15555550100", body="agree", sid="SMcollide1")),
            lonely.receive(Inbound(phone="+15555550100", body="agree", sid="SMcollide2")),
        )
        # One turn waits on the table lock, the other on the first one's transaction.
        # PostgreSQL tells no one when a backend starts to wait on a lock: pg_locks is read.
        async with asyncio.timeout(30):
            while await blocker.fetchval(  # noqa: ASYNC110
                "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted"
            ) < 2:
                await asyncio.sleep(0.01)
        await holding.commit()
        replies = await turns
    finally:
        await blocker.close()
        await lonely.coordinator.redis.aclose()

    (payment,) = await ledger_payments(app)
    assert len(await payment_intents(localstripe)) == 1
    texts = sorted(text for reply in replies for text in reply)
    assert len(texts) == 2, texts
    assert texts[0].startswith("Done: $50.00 paid") and payment.reference in texts[0], texts
    assert "is being processed" in texts[1] and payment.reference in texts[1], texts
    for sid, reply in zip(("SMcollide1", "SMcollide2"), replies, strict=True):
        again = await engine.receive(Inbound(phone="+15555550100", body="agree", sid=sid))
        assert again == reply
    assert len(await payment_intents(localstripe)) == 1
