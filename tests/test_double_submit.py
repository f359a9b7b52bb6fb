"""A form sent twice at once (a double click on "I agree", a second tab): the second answer says
where the payment stands, never that the customer entered something wrong (found by trying the
demo: the second click of "I agree" answered "Please check what you entered" on the balance page,
with no receipt, inviting the customer to pay again)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Payment
from tests.seed import add_account
from tests.test_portal import Browser, csrf_of, link_for, make_link, state_of, visible_text


async def test_a_double_click_on_i_agree_pays_once_and_both_answers_say_where_it_stands(
    app, client, phone, monkeypatch
):
    await add_account(app, creditor_settings={"contact_review": False, "schedule_payment": False})
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue", amount="50")
    await browser.step(action="continue", choice="1")
    assert browser.state == "confirm"  # the one final step: consent and Pay
    form = {
        "csrf_token": csrf_of(browser.html), "state": state_of(browser.html),
        "action": "pay", "consent": "yes",
    }

    async def click() -> tuple[int, str]:
        response = await client.post("/portal/pay", data=form)
        return response.status, visible_text(await response.text())

    # Both clicks read the page's state before either takes the conversation lock (as two
    # requests a few milliseconds apart do): the first waits at the lock until the second is there.
    coordinator = app[appkeys.COORDINATOR]
    acquire, both_there, arrived = coordinator._acquire, asyncio.Event(), []

    async def side_by_side(*args: Any) -> None:
        arrived.append(args)
        if len(arrived) == 2:
            both_there.set()
        else:
            await both_there.wait()
        await acquire(*args)

    monkeypatch.setattr(coordinator, "_acquire", side_by_side)
    first, second = asyncio.create_task(click()), asyncio.create_task(click())
    answers = [await first, await second]

    async with app[appkeys.DATABASE].session() as session:
        payments = list(await session.scalars(select(Payment)))
    assert [(p.amount_cents, p.status) for p in payments] == [(5000, "paid")]
    (status, text), (again_status, again_text) = sorted(answers)
    assert status == 200 and "Thank you" in text and payments[0].reference in text
    assert again_status == 409 and "This page was out of date" in again_text, again_text[:300]
    assert "Please check what you entered" not in again_text


async def test_a_fixed_amount_link_opened_mid_conversation_pays_its_amount_and_is_then_done(
    app, client, phone, providers
):
    """A customer half way through PAY by text opens an operator's link for a fixed $120 with a
    $2.50 fee (found by trying the demo: the page went on at the text's amount step, took any
    amount without the fee, and left the link open for its own payment afterwards)."""
    await add_account(app, creditor_settings={"contact_review": False, "schedule_payment": False})
    maria = phone()
    (asked,) = await maria.send("PAY")
    assert asked.startswith("How much would you like to pay?"), asked
    link = await make_link(client, amount="120.00", allow_amount_change=False, fee="2.50")
    browser = Browser(client)
    await browser.get(link)
    assert browser.state == "idle" and "Amount requested: $120.00" in browser.text
    await browser.step(action="start")
    assert browser.state == "method"  # the link fixed the amount: no amount step
    await browser.step(action="continue", choice="1")
    await browser.step(action="pay", consent="yes")
    assert "Total charged $122.50" in browser.text
    assert [c.amount_cents for c in providers.payments.charges] == [12250]
    await browser.get(link, status=410)
    assert "This link has already been used" in browser.text
