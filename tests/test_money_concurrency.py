"""One payment, confirmed at the same moment by text, on the web and by the worker: one charge at
the processor, one Paid row, the balance lowered once, and every channel told something true.

The SMS conversation and the portal share one flow, so the customer's AGREE by text and her
"I agree" on the web page confirm the same payment; the worker is the third party that completes
a payment (a due row, or one whose charge answer was lost). tests/test_payments_stripe.py already
races two AGREEs by text (with and without the shared Redis lock, and held inside their turns on
PostgreSQL); these add the web page and the worker to the race, and the worker charging a plan's
due installment while the customer pays the plan off by text."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Account, Payment
from bot.providers.payments import ChargeResult
from bot.providers.sandbox_gateway import SandboxGateway
from tests.money_world import World
from tests.seed import CONFIRM_STEPS, add_account
from tests.test_portal import csrf_of, state_of, visible_text
from tests.test_worker import make_worker

BALANCE = 125000
# Who starts first: asyncio runs the three in this order up to their first wait, so each order
# gives a different one the head start (the ledger, not the order, must decide).
ORDERS = [("sms", "web", "worker"), ("web", "worker", "sms"), ("worker", "sms", "web")]


async def at_once(order: tuple[str, ...], **parties: Awaitable[Any]) -> dict[str, Any]:
    results = await asyncio.gather(*(parties[name] for name in order))
    return dict(zip(order, results, strict=True))


async def at_agreement_on_both_channels(client, phone) -> tuple[object, str]:  # type: ignore[no-untyped-def]
    """Maria takes $50.00 now to the AGREE step by text, then opens her account's link (from the
    menu she was texted first): the web page shows the same payment's agreement."""
    maria = phone()
    (menu,) = await maria.send("MENU")
    link = re.search(r"https://paybot\.test(/p/\S+)", menu)[1]  # type: ignore[index]
    for text in CONFIRM_STEPS:
        (reply,) = await maria.send(text)
    assert reply.startswith("Reply AGREE to authorize this payment"), reply
    response = await client.get(link)
    page = await response.text()
    assert response.status == 200 and state_of(page) == "agreement", visible_text(page)[:300]
    assert "$50.00" in visible_text(page)
    return maria, page


async def agree_on_the_web(client, page: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    response = await client.post("/portal/pay", data={
        "csrf_token": csrf_of(page), "state": "agreement", "action": "pay",
        "consent": "yes",
    })
    return response.status, visible_text(await response.text())


async def ledger(app) -> tuple[list[Payment], int]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        rows = list(await session.scalars(select(Payment).order_by(Payment.id)))
        return rows, int(await session.scalar(select(Account.balance_cents)))


def told_about(text: str, reference: str, balance_after: str) -> bool:
    """A sensible answer about the one payment: it is done or already on its way (naming it), or,
    for the channel that came second, the balance it already lowered."""
    return (reference in text and bool(
        re.search(r"paid|Paid|Thank you|being processed|already", text)
    )) or balance_after in text


@pytest.mark.parametrize("order", ORDERS, ids="-".join)
async def test_pay_now_confirmed_at_once_by_text_on_the_web_and_while_the_worker_runs(
    app, client, phone, clock, providers, order
):
    await add_account(app)
    maria, page = await at_agreement_on_both_channels(client, phone)

    answers = await at_once(order, sms=maria.send("agree"), web=agree_on_the_web(client, page),
                            worker=make_worker(app).run_once())
    by_text, (web_status, on_the_web), report = answers["sms"], answers["web"], answers["worker"]

    (payment,), balance = await ledger(app)
    assert (payment.status, payment.amount_cents) == ("paid", 5000)
    assert len(providers.payments.charges) == 1
    assert balance == BALANCE - 5000
    assert (report.claimed, report.paid) == (0, 0)  # the worker takes no flow's payment
    assert web_status < 500
    texted = "\n".join(by_text)
    assert told_about(texted, payment.reference, "$1,200.00"), texted
    assert told_about(on_the_web, payment.reference, "$1,200.00"), on_the_web[:500]

    # Later passes (after the recovery delay too) find nothing left to complete.
    clock.advance(timedelta(minutes=15))
    assert (await make_worker(app).run_once()).recovered == 0
    assert len(providers.payments.charges) == 1 and (await ledger(app))[1] == BALANCE - 5000


@pytest.mark.parametrize("order", ORDERS, ids="-".join)
async def test_a_charge_whose_answer_was_lost_is_completed_once_by_text_web_and_worker(
    app, client, phone, clock, providers, order
):
    """The processor charged but its answer never came back (a timeout): the payment waits in
    Processing. Then, at once, Maria says AGREE again, taps "I agree" again on the web page, and
    the worker's recovery pass comes round. The processor holds one charge; the ledger one Paid
    row; the balance goes down once."""
    await add_account(app)
    maria, page = await at_agreement_on_both_channels(client, phone)
    providers.payments.lose_next_charge_response = True
    (first,) = await maria.send("agree")
    (waiting,), balance = await ledger(app)
    assert waiting.status == "processing" and balance == BALANCE, (waiting.status, first)
    assert len(providers.payments.charges) == 1

    clock.advance(timedelta(minutes=11))  # past the worker's recovery delay
    answers = await at_once(order, sms=maria.send("agree"), web=agree_on_the_web(client, page),
                            worker=make_worker(app).run_once())
    by_text, (web_status, on_the_web), report = answers["sms"], answers["web"], answers["worker"]

    (payment,), balance = await ledger(app)
    assert payment.id == waiting.id and payment.status == "paid"
    assert len(providers.payments.charges) == 1
    assert balance == BALANCE - 5000
    assert report.claimed == 0 and report.recovered <= 1
    assert web_status < 500
    texted = "\n".join(by_text)
    assert texted and "Traceback" not in texted and "Traceback" not in on_the_web


class HoldingGateway:
    """The sandbox, except that once armed, the next charge waits inside the processor call
    until released: the party that charges first is held there while the other one acts."""

    def __init__(self, inner: SandboxGateway) -> None:
        self.inner = inner
        self.armed = False
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def charge(self, **kwargs: Any) -> ChargeResult:
        if self.armed:
            self.armed = False
            self.entered.set()
            await self.release.wait()
        return await self.inner.charge(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TestPayingOffAPlanOnTheDayAnInstallmentIsDue:
    """Maria pays her plan off by text (EXTRA, FULL, YES) on the day an installment is due, while
    the worker charges that installment: whichever reaches the processor first is held inside
    its charge while the other acts. Together they never take more than the balance, the
    processor holds exactly the charges the ledger records, and nothing is left Scheduled once
    the balance is 0."""

    @pytest.fixture
    def gateway(self) -> HoldingGateway:
        return HoldingGateway(SandboxGateway())

    @pytest.mark.parametrize("first", ["sms", "worker"])
    async def test_never_more_than_the_balance(self, app, client, phone, clock, gateway, first):
        await add_account(app)
        world = World(app=app, client=client, clock=clock, gateway=gateway.inner, phone=phone())
        await world.agent_plan_offer(3, world.today() + timedelta(days=7))  # 3 x $416.67
        await world.sign_plan_by_text()
        rows, _ = await ledger(app)
        assert [p.status for p in rows] == ["scheduled"] * 3, world.log
        clock.set(clock.now() + timedelta(days=7))  # the first installment is due today
        for text in ("MENU", "EXTRA"):
            await world.sms(text)
        confirm = await world.sms("FULL")
        assert confirm.startswith("Pay $1,250.00 now from Visa ending 4242?"), confirm

        gateway.armed = True
        pay_off = world.phone.send("yes")
        worker = make_worker(app).run_once()
        held = asyncio.create_task(pay_off if first == "sms" else worker)
        async with asyncio.timeout(60):
            await gateway.entered.wait()
            other = await (worker if first == "sms" else pay_off)
            gateway.release.set()
            answers = {first: await held, "worker" if first == "sms" else "sms": other}

        rows, balance = await ledger(app)
        paid = [p for p in rows if p.status == "paid"]
        story = [(p.amount_cents, p.status, p.installment_number) for p in rows]
        assert sum(p.amount_cents for p in paid) <= BALANCE, story
        assert balance == BALANCE - sum(p.amount_cents for p in paid), story
        charged = [p for p in rows if p.status in ("paid", "declined")]
        assert len(gateway.inner.charges) == len(charged), story
        if balance == 0:
            assert not [p for p in rows if p.status in ("scheduled", "processing")], story
        texted = "\n".join(answers["sms"])
        assert texted and "Traceback" not in texted
