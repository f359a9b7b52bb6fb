"""The agents' REST (issue 14): the queue, a conversation with its transcript, claim, an agent's
message, hand-back; whole documents, what the ledger holds, and what the agents' feed is told."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from bot import appkeys
from bot.coordination import AGENT_FEED
from bot.inbox import handoffs
from bot.ledger.models import AuditEvent, Conversation, Handoff, Message
from bot.providers import Providers
from tests.conftest import API_KEY, START
from tests.seed import add_account

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MARIA = "+15555550100"
AT = START.isoformat()
NOT_A_PHONE = {"error": "not a phone number: +15555550100 (E.164) or 10 digits"}


async def get(client, path):  # type: ignore[no-untyped-def]
    response = await client.get(f"/api/v1{path}", headers=AUTH)
    return response.status, await response.json()


async def post(client, path, body=None):  # type: ignore[no-untyped-def]
    response = await client.post(f"/api/v1{path}", json=body, headers=AUTH)
    return response.status, await response.json()


async def audit_trail(app, kind):  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        rows = await session.scalars(select(AuditEvent).where(AuditEvent.kind == kind))
        return [(row.actor, row.phone) for row in rows]


async def test_an_agent_works_a_conversation_from_the_queue_to_the_hand_back(app, client, phone):
    await add_account(app)
    maria = phone()
    (handover,) = await maria.send("AGENT")

    assert await get(client, "/conversations?status=waiting") == (200, {"conversations": [{
        "phone": MARIA, "account_id": "ACC-1001", "status": "waiting", "reason": "asked",
        "waiting_since": AT, "assignee": None,
    }]})
    assert await get(client, "/conversations?status=agent") == (200, {"conversations": []})
    assert await get(client, f"/conversations/{MARIA}") == (200, {
        "phone": MARIA, "account_id": "ACC-1001", "status": "waiting", "reason": "asked",
        "waiting_since": AT, "assignee": None,
        "messages": [
            {"direction": "in", "author": "customer", "body": "AGENT", "at": AT,
             "channel": "sms", "status": None},
            {"direction": "out", "author": "bot", "body": handover, "at": AT,
             "channel": "sms", "status": "replied"},
        ],
    })

    claimed = {"phone": MARIA, "account_id": "ACC-1001", "status": "agent", "reason": "asked",
               "waiting_since": AT, "assignee": "jsmith"}
    assert await post(client, f"/conversations/{MARIA}/claim", {"agent": "jsmith"}) == (
        200, claimed)
    assert await post(client, f"/conversations/{MARIA}/claim", {"agent": "jsmith"}) == (
        200, claimed)  # claiming one's own again changes nothing
    assert await post(client, f"/conversations/{MARIA}/claim", {"agent": "alee"}) == (
        409, {"error": "the conversation is owned by another agent (jsmith)"})

    curly = "Hi Maria, it\u2019s John. How can I help?"
    status, sent = await post(client, f"/conversations/{MARIA}/messages",
                              {"agent": "jsmith", "body": curly})
    assert (status, sent) == (201, {
        "direction": "out", "author": "agent:jsmith",
        "body": "Hi Maria, it's John. How can I help?",  # the curly apostrophe sent as GSM-7
        "at": AT, "channel": "sms", "status": "queued",
    })
    (text,) = app[appkeys.PROVIDERS].sms.outbox
    assert (text.to, text.body) == (MARIA, "Hi Maria, it's John. How can I help?")
    assert app[appkeys.PROVIDERS].sms.status_callbacks[text.sid] == (
        "https://paybot.test/webhooks/twilio/status")
    assert await post(client, f"/conversations/{MARIA}/messages",
                      {"agent": "alee", "body": "Hello"}) == (
        409, {"error": "the conversation is owned by another agent (jsmith)"})

    assert await maria.send("I can pay 50 on friday") == []  # the agent's, not the bot's
    _, detail = await get(client, f"/conversations/{MARIA}")
    assert [(m["direction"], m["author"], m["body"]) for m in detail["messages"]] == [
        ("in", "customer", "AGENT"),
        ("out", "bot", handover),
        ("out", "agent:jsmith", "Hi Maria, it's John. How can I help?"),
        ("in", "customer", "I can pay 50 on friday"),
    ]

    assert await post(client, f"/conversations/{MARIA}/handback", {"agent": "jsmith"}) == (
        200, {"phone": MARIA, "handled_by": "bot", "status": "resolved"})
    assert [m.body for m in app[appkeys.PROVIDERS].sms.outbox][1:] == [
        "You're back with the automated assistant. Reply MENU for options."]
    assert await get(client, "/conversations?status=resolved") == (200, {"conversations": [{
        "phone": MARIA, "account_id": "ACC-1001", "status": "resolved", "reason": "asked",
        "waiting_since": None, "assignee": None,
    }]})
    async with app[appkeys.DATABASE].session() as session:
        (handoff,) = await session.scalars(select(Handoff))
        assert (handoff.claimed_by, handoff.claimed_at, handoff.first_reply_at,
                handoff.resolved_by, handoff.resolved_at) == ("jsmith", START, START,
                                                              "agent:jsmith", START)
    (reply,) = await maria.send("pay")
    assert reply.startswith("We have your email")  # the bot again, from the main menu
    assert await audit_trail(app, "conversation_claimed") == [("agent:jsmith", MARIA)]
    assert await audit_trail(app, "agent_message_sent") == [("agent:jsmith", MARIA)]
    assert await audit_trail(app, "handed_back") == [("agent:jsmith", MARIA)]


async def test_a_message_claims_a_conversation_no_agent_owns(app, client, phone):
    await add_account(app)
    await phone().send("hi")
    status, _ = await post(client, f"/conversations/{MARIA}/messages",
                           {"agent": "jsmith", "body": "Hello from a person"})
    assert status == 201
    assert await get(client, "/conversations") == (200, {"conversations": [{
        "phone": MARIA, "account_id": "ACC-1001", "status": "agent", "reason": "agent_opened",
        "waiting_since": AT, "assignee": "jsmith",
    }]})


async def test_refusals_say_why_and_send_nothing(app, client, phone, clock):
    await add_account(app)
    await add_account(app, ref="ACC-2002", phone="+15555550101", email="zoe@example.com")
    await phone().send("AGENT")
    await phone("+15555550101").send("STOP")
    sms = app[appkeys.PROVIDERS].sms
    path = f"/conversations/{MARIA}/messages"
    assert await post(client, path, {"agent": "jsmith", "body": " \n "}) == (
        422, {"error": "body must be text of 1 to 306 characters"})
    assert await post(client, path, {"agent": "jsmith", "body": "\u200b"}) == (
        422, {"error": "the message is empty"})
    assert await post(client, path, {"agent": "jsmith", "body": "x" * 307}) == (
        422, {"error": "body must be text of 1 to 306 characters"})
    assert await post(client, path, {"agent": "jsmith", "body": "\U0001f600" + "x" * 140}) == (
        422, {"error": "the message is 3 SMS segments; at most 2 (134 characters in UCS-2)"})
    assert await post(client, path, {"agent": "", "body": "hi"}) == (
        422, {"error": "agent must be a name of 1 to 34 letters, digits and . _ @ + - "
                       "(e.g. jsmith)"})
    assert await post(client, path, {"body": "hi"}) == (422, {"error": "agent is required"})
    assert await post(client, "/conversations/+15555550101/messages",
                      {"agent": "jsmith", "body": "hi"}) == (
        409, {"error": "the customer opted out of texts: nothing may be sent to this number"})
    # 2 a.m. in New York, the customer's last message three hours old: Reg F's quiet hours.
    clock.set(START.replace(hour=7) + timedelta(days=1))
    assert await post(client, path, {"agent": "jsmith", "body": "hi"}) == (
        409, {"error": "it is the customer's quiet hours and they have not written within "
                       "the last hour"})
    assert sms.outbox == []
    async with app[appkeys.DATABASE].session() as session:
        conv = await session.scalar(select(Conversation).where(Conversation.phone == MARIA))
        assert (conv.status, conv.assignee) == ("waiting", None)  # no refused send claimed it


async def test_unknown_and_odd_numbers_and_statuses(app, client):
    for path in ("/conversations/+15555550199", ):
        assert await get(client, path) == (404, {"error": "no conversation with that number"})
    for action, body in (("claim", {"agent": "a"}), ("messages", {"agent": "a", "body": "b"}),
                         ("handback", None)):
        assert await post(client, f"/conversations/+15555550199/{action}", body) == (
            404, {"error": "no conversation with that number"})
        assert await post(client, f"/conversations/not-a-phone/{action}", body) == (
            400, NOT_A_PHONE)
    assert await get(client, "/conversations/12") == (400, NOT_A_PHONE)
    assert await get(client, "/conversations/(555)%20555-0100") == (400, NOT_A_PHONE)
    assert (await get(client, "/conversations/5555550199"))[0] == 404  # 10 digits: +1...
    assert await get(client, "/conversations?status=open") == (
        400, {"error": "status must be one of waiting, agent, bot, resolved"})


async def test_agent_actions_reach_the_agents_feed(app, client, phone):
    await add_account(app)
    await phone().send("AGENT")
    pubsub = app[appkeys.COORDINATOR].redis.pubsub()
    await pubsub.subscribe(AGENT_FEED)
    await pubsub.get_message(timeout=1.0)  # the subscription's confirmation
    await post(client, f"/conversations/{MARIA}/claim", {"agent": "jsmith"})
    await post(client, f"/conversations/{MARIA}/messages", {"agent": "jsmith", "body": "Hi"})
    await post(client, f"/conversations/{MARIA}/handback", {"agent": "jsmith"})
    events = []
    while len(events) < 3:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
        assert message is not None, events
        events.append(json.loads(message["data"]))
    await pubsub.aclose()
    async with app[appkeys.DATABASE].session() as session:
        message_id = await session.scalar(
            select(Message.id).where(Message.author == "agent:jsmith"))
    assert events == [
        {"type": "claimed", "phone": MARIA, "agent": "jsmith", "previous": None, "at": AT},
        {"type": "agent_message", "phone": MARIA, "agent": "jsmith", "author": "agent:jsmith",
         "body": "Hi", "message_id": message_id, "status": "queued", "at": AT},
        {"type": "resolved", "phone": MARIA, "by": "agent:jsmith", "at": AT},
    ]


async def test_the_agents_message_reaches_twilio(app, settings, providers, clock, twilio_fake,
                                                 twilio_sms, aiohttp_client, phone):
    """Through the real SDK to the local Twilio fake, with the status callback."""
    from bot.app import create_app

    await add_account(app)
    await phone().send("AGENT")
    own = create_app(settings, Providers(sms=twilio_sms, email=providers.email,
                                         payments=providers.payments), clock)
    agent_desk = await aiohttp_client(own)
    status, sent = await post(agent_desk, f"/conversations/{MARIA}/messages",
                              {"agent": "jsmith", "body": "Hi Maria, this is John."})
    assert status == 201 and sent["status"] == "queued"
    (request,) = twilio_fake.requests
    assert {k: request.form[k] for k in ("To", "Body", "StatusCallback")} == {
        "To": MARIA, "Body": "Hi Maria, this is John.",
        "StatusCallback": "https://paybot.test/webhooks/twilio/status",
    }
    async with own[appkeys.DATABASE].session() as session:
        stored = await session.scalar(select(Message).where(Message.author == "agent:jsmith"))
        assert (stored.provider_sid, stored.status) == (twilio_fake.last["sid"], "queued")


async def test_rows_written_before_authors_read_as_customer_and_bot(app, client, phone):
    await add_account(app)
    await phone().send("hi")
    async with app[appkeys.DATABASE].session() as session:
        for message in await session.scalars(select(Message)):
            message.author = None
        await session.commit()
    _, detail = await get(client, f"/conversations/{MARIA}")
    assert [(m["direction"], m["author"]) for m in detail["messages"]] == [
        ("in", "customer"), ("out", "bot")]


async def test_another_agent_is_refused_even_by_the_domain(app, phone):
    """The REST is a face of bot/inbox: the rule is the domain's."""
    await add_account(app)
    await phone().send("AGENT")
    async with app[appkeys.DATABASE].session() as session:
        conv = await session.scalar(select(Conversation).where(Conversation.phone == MARIA))
        await handoffs.claim(session, conv, agent="jsmith", at=START)
        await session.commit()
        try:
            await handoffs.claim(session, conv, agent="alee", at=START)
        except handoffs.OwnedByAnother as exc:
            assert exc.owner == "jsmith"
        else:
            raise AssertionError("claimed from another agent")


async def test_two_agents_claiming_at_once_get_one_owner(app, client, phone):
    import asyncio

    await add_account(app)
    await phone().send("AGENT")
    answers = await asyncio.gather(
        post(client, f"/conversations/{MARIA}/claim", {"agent": "jsmith"}),
        post(client, f"/conversations/{MARIA}/claim", {"agent": "alee"}),
    )
    assert sorted(status for status, _ in answers) == [200, 409]
    (owner,) = [body["assignee"] for status, body in answers if status == 200]
    (refusal,) = [body for status, body in answers if status == 409]
    assert refusal == {"error": f"the conversation is owned by another agent ({owner})"}
    assert await audit_trail(app, "conversation_claimed") == [(f"agent:{owner}", MARIA)]
