"""The agents' console in-process: a customer's AGENT lands in Waiting; an agent claims it and
another sees it taken; the reply reaches the SMS provider and the transcript; notes stay with
staff; the hand-back tells the customer and the bot answers again; refusals (opted out, quiet
hours, someone else's conversation) are shown in words, with nothing sent; the live feed tells
a signed-in console what changed, and only that."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from aiohttp import CookieJar
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import AuditEvent
from tests.conftest import signed_post
from tests.console_support import Console, add_staff
from tests.seed import add_account

REPLY = "Hi Maria, this is Ana. I can help with a plan today."


async def second_console(aiohttp_client, client) -> Console:  # type: ignore[no-untyped-def]
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(client.server.make_url("/"))])
    return Console(await aiohttp_client(client.server, cookie_jar=jar))


async def waiting_customer(app, phone):  # type: ignore[no-untyped-def]
    await add_account(app)
    customer = phone()
    await customer.send("agent")
    return customer


async def test_a_waiting_customer_is_claimed_answered_and_handed_back(
    app, client, phone, aiohttp_client
):
    customer = await waiting_customer(app, phone)
    await add_staff(app)
    await add_staff(app, "ben@paybot.test", "Ben")
    ana, ben = Console(client), await second_console(aiohttp_client, client)
    await ana.sign_in()
    await ben.sign_in("ben@paybot.test")

    waiting = await (await ana.get("/agent/inbox/waiting")).text()
    assert "Maria" in waiting and "asked for a person" in waiting and "0 min" in waiting

    assert (await ana.post("/agent/c/15555550100/claim")).status == 303
    taken = await (await ben.get("/agent/c/15555550100")).text()
    assert "Ana owns this conversation." in taken
    refused = await ben.post("/agent/c/15555550100/claim")
    assert refused.status == 409 and "Ana owns this conversation" in await refused.text()

    sms = app[appkeys.PROVIDERS].sms
    sms.clear()
    response = await ana.post("/agent/c/15555550100/reply", {"body": REPLY})
    assert response.headers["Location"] == "/agent/c/15555550100?done=sent"
    assert [(s.to, s.body) for s in sms.outbox] == [("+15555550100", REPLY)]
    page = await (await ana.get("/agent/c/15555550100?done=sent")).text()
    assert "Sent." in page and REPLY in page and "Ana &middot; SMS" in page

    await ana.post("/agent/c/15555550100/note", {"body": "Lost her job in October."})
    assert "Lost her job in October." in await (await ben.get("/agent/c/15555550100")).text()
    assert all("October" not in s.body for s in sms.outbox)

    sms.clear()
    response = await ana.post("/agent/c/15555550100/handback")
    assert response.headers["Location"] == "/agent/c/15555550100?done=handed_back"
    assert [s.body for s in sms.outbox] == [
        "You're back with the automated assistant. Reply MENU for options."]
    assert (await customer.send("balance"))[0].startswith("Your balance")

    async with app[appkeys.DATABASE].session() as session:
        audited = [(e.kind, e.actor) for e in await session.scalars(
            select(AuditEvent).where(AuditEvent.actor.like("agent:%"),
                                     AuditEvent.kind != "conversation_viewed")
            .order_by(AuditEvent.id))]
    assert audited == [("conversation_claimed", "agent:Ana"), ("agent_message_sent", "agent:Ana"),
                       ("note_added", "agent:Ana"), ("handed_back", "agent:Ana")]


async def test_refusals_are_said_and_nothing_is_sent(app, client, phone):
    customer = await waiting_customer(app, phone)
    await add_staff(app)
    ana = Console(client)
    await ana.sign_in()
    sms = app[appkeys.PROVIDERS].sms
    sms.clear()
    empty = await ana.post("/agent/c/15555550100/reply", {"body": "   "})
    assert empty.status == 422 and "The message is empty." in await empty.text()
    long = await ana.post("/agent/c/15555550100/reply", {"body": "x" * 400})
    assert long.status == 422 and "at most 2" in await long.text()
    await customer.send("STOP")
    sms.clear()
    stopped = await ana.post("/agent/c/15555550100/reply", {"body": "Are you there?"})
    html = await stopped.text()
    assert stopped.status == 409 and "opted out" in html and "Are you there?" in html  # kept
    assert sms.outbox == []


async def test_quiet_hours_block_a_reply_unless_the_customer_just_wrote(app, client, phone,
                                                                        clock):
    await waiting_customer(app, phone)  # wrote at 10:00 New York
    await add_staff(app)
    ana = Console(client)
    clock.advance(timedelta(hours=12))  # 22:00 in New York, 12 hours since they wrote
    await ana.sign_in()
    page = await (await ana.get("/agent/c/15555550100")).text()
    assert "replies are blocked until 8 a.m. their time" in page
    response = await ana.post("/agent/c/15555550100/reply", {"body": "Hello?"})
    assert response.status == 409 and "quiet hours" in await response.text()


async def test_a_supervisor_may_reassign(app, client, phone, aiohttp_client, clock):
    import pyotp

    from tests.console_support import code_at

    await waiting_customer(app, phone)
    await add_staff(app)
    secret = pyotp.random_base32()
    await add_staff(app, "sam@paybot.test", "Sam", "supervisor", totp_secret=secret)
    ana, sam = Console(client), await second_console(aiohttp_client, client)
    await ana.sign_in()
    await ana.post("/agent/c/15555550100/claim")
    await sam.sign_in("sam@paybot.test", code=code_at(secret, clock.now()))
    page = await (await sam.get("/agent/c/15555550100")).text()
    assert "Reassign to me" in page
    assert (await sam.post("/agent/c/15555550100/claim", {"reassign": "1"})).status == 303
    assert "Ana owns" not in await (await sam.get("/agent/c/15555550100")).text()
    assert "Sam owns this conversation." in await (await ana.get("/agent/c/15555550100")).text()


async def test_search_finds_by_account_name_and_last_four(app, client, phone):
    await waiting_customer(app, phone)
    await add_staff(app)
    ana = Console(client)
    await ana.sign_in()
    for term in ("ACC-1001", "maria", "0100"):
        html = await (await ana.get(f"/agent/inbox/search?q={term}")).text()
        assert 'href="/agent/c/15555550100"' in html, term
    html = await (await ana.get("/agent/inbox/search?q=9999")).text()
    assert "Nothing found." in html


async def test_the_live_feed_names_what_changed_and_no_message_text(app, client, phone):
    await add_account(app)
    await add_staff(app)
    ana = Console(client)
    await ana.sign_in()
    response = await client.get("/agent/live", headers={"Accept": "text/event-stream"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"

    async def next_event() -> dict:
        while True:
            line = (await asyncio.wait_for(response.content.readline(), 5)).decode()
            if line.startswith("data:"):
                return json.loads(line[5:])

    assert await next_event() == {"type": "hello"}
    await phone().send("agent")
    event = await next_event()
    assert event["type"] in ("message", "needs_agent") and event["phone"] == "+15555550100"
    assert "inbound" not in event and "text" not in event and "replies" not in event
    # The row as the views show it comes along, so an inbox needs not ask again.
    assert event["status"] in ("bot", "waiting")
    assert "Maria Lopez" in event["rows"]["other"] and "ACC-1001" in event["rows"]["waiting"]

    # Twilio's delivery status of an agent's text: the console hears of it, the page shows it.
    await ana.post("/agent/c/15555550100/reply", {"body": "Hello Maria"})
    sid = app[appkeys.PROVIDERS].sms.outbox[-1].sid
    while (await next_event())["type"] != "agent_message":
        pass
    status = await signed_post(client, "/webhooks/twilio/status", {
        "MessageSid": sid, "MessageStatus": "delivered", "To": "+15555550100",
        "From": "+15005550006", "AccountSid": "AC" + "0" * 32})
    assert status.status == 204
    while (event := await next_event())["type"] != "delivery":
        pass
    assert event["phone"] == "+15555550100"
    page = await (await ana.get("/agent/c/15555550100?part=1")).text()
    assert "Hello Maria<span class=\"meta\">Ana &middot; SMS" in page and "delivered" in page
    response.close()


async def test_marking_a_wrong_number_unlinks_it(app, client, phone):
    await waiting_customer(app, phone)
    await add_staff(app)
    ana = Console(client)
    await ana.sign_in()
    response = await ana.post("/agent/c/15555550100/wrong-number")
    assert response.headers["Location"] == "/agent/c/15555550100?done=wrong_number"
    page = await (await ana.get("/agent/c/15555550100")).text()
    assert "not linked to an account" in page
    from bot.ledger.models import Account, WrongNumber

    async with app[appkeys.DATABASE].session() as session:
        (marked,) = await session.scalars(select(WrongNumber))
        account = await session.get(Account, marked.account_id)
        audited = await session.scalar(
            select(AuditEvent.actor).where(AuditEvent.kind == "wrong_number")
        )
    assert (marked.phone, marked.reported_by, account.phone) == (
        "+15555550100", "agent:Ana", None
    )
    assert audited == "agent:Ana"


async def test_an_agent_makes_an_offer_through_the_offer_rules(app, client, phone):
    from bot.ledger.models import Offer

    await waiting_customer(app, phone)
    await add_staff(app)
    ana = Console(client)
    await ana.sign_in()
    refused = await ana.post("/agent/c/15555550100/offer",
                             {"kind": "settlement", "amount": "1250.00", "send_via": ""})
    assert refused.status == 422
    assert "Make an offer" in await refused.text()
    nonsense = await ana.post("/agent/c/15555550100/offer",
                              {"kind": "plan", "count": "six", "send_via": ""})
    assert nonsense.status == 422
    assert "A plan needs a number of payments and a start date." in await nonsense.text()
    made = await ana.post("/agent/c/15555550100/offer",
                          {"kind": "settlement", "amount": "800.00", "send_via": ""})
    assert made.headers["Location"] == "/agent/c/15555550100?done=offer"
    page = await (await ana.get("/agent/c/15555550100")).text()
    assert "Settle for $800.00" in page
    async with app[appkeys.DATABASE].session() as session:
        (offer,) = await session.scalars(select(Offer))
    assert (offer.kind, offer.total_cents, offer.created_by) == ("settlement", 80000, "agent:Ana")


async def test_opening_a_customer_is_in_the_audit_trail_once_per_look(app, client, phone):
    await waiting_customer(app, phone)
    await add_staff(app)
    ana = Console(client)
    await ana.sign_in()
    assert (await ana.get("/agent/c/15555550100")).status == 200
    assert (await ana.get("/agent/c/15555550100?part=1")).status == 200  # the live refresh
    assert (await ana.get("/agent/c/15555550100")).status == 200
    async with app[appkeys.DATABASE].session() as session:
        views = (await session.execute(
            select(AuditEvent.actor, AuditEvent.phone, AuditEvent.account_id)
            .where(AuditEvent.kind == "conversation_viewed")
        )).all()
    assert [tuple(v) for v in views] == [("agent:Ana", "+15555550100", 1)] * 2
