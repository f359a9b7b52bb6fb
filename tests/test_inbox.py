"""The agents' domain (bot/inbox/): inbox views and search, a conversation whole with its account
panel, the rules of an agent's message (quiet hours, opt-out, segments), the link, notes and
canned replies with placeholders."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.inbox import canned, notes, reads, replies
from bot.ledger.models import Account, Conversation, Link, Message
from tests.conftest import START
from tests.seed import add_account

MARIA = "+15555550100"


async def conversation(session, phone=MARIA):  # type: ignore[no-untyped-def]
    return await session.scalar(select(Conversation).where(Conversation.phone == phone))


def deps(app):  # type: ignore[no-untyped-def]
    return {"settings": app[appkeys.SETTINGS], "coordinator": app[appkeys.COORDINATOR]}


# --- the counter ---

def test_segments_count_what_will_be_sent():
    assert replies.segments("Hi Maria") == replies.Segments(
        encoding="GSM-7", characters=8, segments=1, max_segments=2, non_gsm7=())
    # look-alikes are sent as GSM-7 (and counted so): the curly quote does not cost UCS-2
    assert replies.segments("it\u2019s").encoding == "GSM-7"
    assert replies.segments("x" * 161).segments == 2
    assert replies.segments("x" * 307).fits is False
    smile = replies.segments("thanks \U0001f600")
    assert (smile.encoding, smile.segments, smile.non_gsm7) == ("UCS-2", 1, ("\U0001f600",))
    assert replies.segments("   ").segments == 0 and not replies.segments("   ").fits


# --- the views ---

async def test_the_queue_oldest_first_mine_and_search(app, phone, clock):
    await add_account(app)
    await add_account(app, ref="ACC-2002", phone="+15555550101", email="zoe@example.com",
                      first_name="Zoe")
    await add_account(app, ref="ACC-3003", phone="+15555550142", email="al@example.com",
                      first_name="Al")
    await phone("+15555550101").send("AGENT")  # first in the queue
    clock.advance(timedelta(minutes=5))
    await phone(MARIA).send("AGENT")
    clock.advance(timedelta(minutes=5))
    await phone("+15555550142").send("hi")  # with the bot
    db = app[appkeys.DATABASE]
    async with db.session() as session:
        waiting = await reads.list_conversations(session, status="waiting", now=clock.now())
        assert [(r.phone, r.account_id, r.customer_name, r.reason, r.waiting_since)
                for r in waiting] == [
            ("+15555550101", "ACC-2002", "Zoe Lopez", "asked", START),
            (MARIA, "ACC-1001", "Maria Lopez", "asked", START + timedelta(minutes=5)),
        ]
        assert waiting[0].last_message_direction == "out"
        (live,) = await reads.list_conversations(session, status="bot", now=clock.now())
        assert (live.phone, live.flow, live.state, live.last_message_direction) == (
            "+15555550142", "payment", live.state, "out")
        await replies.claim(session, await conversation(session), agent="jsmith",
                            now=clock.now())
        mine = await reads.list_conversations(session, assignee="jsmith", now=clock.now())
        assert [r.phone for r in mine] == [MARIA]
        assert await reads.counts(session) == {"waiting": 1, "agent": 1, "bot": 1, "resolved": 0}
        assert await reads.counts(session, assignee="jsmith") == {
            "waiting": 0, "agent": 1, "bot": 0, "resolved": 0}
        assert (await reads.get_conversation(session, MARIA)).assignee == "jsmith"

        async def found(term):  # type: ignore[no-untyped-def]
            rows = await reads.list_conversations(session, search=term, now=clock.now())
            return sorted(r.phone for r in rows)

        assert await found("acc-2002") == ["+15555550101"]
        assert await found("zoe") == ["+15555550101"]
        assert await found("maria lopez") == [MARIA]
        assert await found("0142") == ["+15555550142"]
        assert await found("50_%") == []  # LIKE's wildcards are plain characters here
        with pytest.raises(ValueError):
            await reads.list_conversations(session, status="open", now=clock.now())


async def test_a_conversation_whole_with_its_account_panel(app, phone, clock):
    await add_account(app, offers=True)
    await phone().send("AGENT")
    async with app[appkeys.DATABASE].session() as session:
        detail = await reads.conversation_detail(
            session, MARIA, now=clock.now(), flow=app[appkeys.SETTINGS].flow)
    assert detail is not None
    assert [(m.direction, m.author, m.body) for m in detail.messages][0] == (
        "in", "customer", "AGENT")
    panel = detail.account
    assert panel is not None
    assert (panel.account_id, panel.first_name, panel.creditor, panel.balance_cents,
            panel.open_cents, panel.settling) == (
        "ACC-1001", "Maria", "Northwind Recovery", 125000, 125000, False)
    assert "maria@example.com" not in (panel.email or "") and panel.email
    assert MARIA not in (panel.phone or "") and (panel.phone or "").endswith("0100")
    assert [(o.kind, o.status) for o in panel.offers] and all(
        o.status == "open" for o in panel.offers)
    assert (panel.timezone, panel.local_time.hour, panel.quiet_hours) == (
        "America/New_York", 10, False)
    assert (detail.opted_out, detail.quiet_hours, detail.notes) == (False, False, ())
    async with app[appkeys.DATABASE].session() as session:
        assert await reads.conversation_detail(
            session, "+15555550199", now=clock.now(), flow=app[appkeys.SETTINGS].flow) is None


# --- an agent's message ---

async def test_quiet_hours_block_a_message_unless_the_customer_just_wrote(app, phone, clock):
    await add_account(app)
    await phone().send("AGENT")
    sms = app[appkeys.PROVIDERS].sms
    # 9:30 p.m. in New York, the customer's message four hours old
    clock.set(START.replace(hour=2, minute=30) + timedelta(days=1))
    async with app[appkeys.DATABASE].session() as session:
        conv = await conversation(session)
        with pytest.raises(replies.QuietHours):
            await replies.send_agent_message(session, app[appkeys.PROVIDERS], conv,
                                             agent="jsmith", body="Hi", now=clock.now(),
                                             **deps(app))
    assert sms.outbox == []
    await phone().send("are you there?")  # now they wrote: an answer is not outreach
    clock.advance(timedelta(minutes=59))
    async with app[appkeys.DATABASE].session() as session:
        conv = await conversation(session)
        sent = await replies.send_agent_message(session, app[appkeys.PROVIDERS], conv,
                                                agent="jsmith", body="Yes, I'm here.",
                                                now=clock.now(), **deps(app))
    assert (sent.body, sent.segments, sent.claimed) == ("Yes, I'm here.", 1, True)
    assert [m.body for m in sms.outbox] == ["Yes, I'm here."]


async def test_opted_out_numbers_get_nothing(app, phone, clock):
    await add_account(app)
    await phone().send("STOP")
    async with app[appkeys.DATABASE].session() as session:
        conv = await conversation(session)
        with pytest.raises(replies.OptedOut):
            await replies.send_agent_message(session, app[appkeys.PROVIDERS], conv,
                                             agent="jsmith", body="Hi", now=clock.now(),
                                             **deps(app))
        with pytest.raises(replies.OptedOut):
            await replies.send_link(session, app[appkeys.PROVIDERS], conv, agent="jsmith",
                                    now=clock.now(), **deps(app))
    assert [m.body for m in app[appkeys.PROVIDERS].sms.outbox] == []


async def test_an_opt_out_at_the_carrier_is_recorded(app, phone, clock):
    await add_account(app)
    await phone().send("AGENT")
    app[appkeys.PROVIDERS].sms.block(MARIA)
    async with app[appkeys.DATABASE].session() as session:
        conv = await conversation(session)
        with pytest.raises(replies.OptedOut):
            await replies.send_agent_message(session, app[appkeys.PROVIDERS], conv,
                                             agent="jsmith", body="Hi", now=clock.now(),
                                             **deps(app))
    async with app[appkeys.DATABASE].session() as session:
        detail = await reads.conversation_detail(session, MARIA, now=clock.now(),
                                                 flow=app[appkeys.SETTINGS].flow)
        assert detail is not None and detail.opted_out
        assert (detail.row.status, detail.row.assignee) == ("waiting", None)


async def test_the_agent_sends_the_secure_link(app, client, phone, clock):
    await add_account(app)
    await phone().send("AGENT")
    async with app[appkeys.DATABASE].session() as session:
        conv = await conversation(session)
        sent = await replies.send_link(session, app[appkeys.PROVIDERS], conv, agent="jsmith",
                                       now=clock.now(), **deps(app))
    prefix = "Your secure link: https://paybot.test/p/"
    assert sent.body.startswith(prefix) and sent.body.endswith(" (valid for 72 hours).")
    token = sent.body.removeprefix(prefix).split(" ")[0]
    page = await client.get(f"/p/{token}", allow_redirects=True)
    assert page.status == 200  # the link opens the portal on Maria's account
    async with app[appkeys.DATABASE].session() as session:
        (link,) = await session.scalars(select(Link))
        assert link.expires_at == START + timedelta(hours=72)
        stored = await session.scalar(select(Message).where(Message.author == "agent:jsmith"))
        assert stored.body == sent.body


# --- notes and canned replies ---

async def test_private_notes(app, phone, clock):
    await add_account(app)
    await phone().send("AGENT")
    async with app[appkeys.DATABASE].session() as session:
        conv = await conversation(session)
        note = await notes.add_note(session, conv, author="jsmith", body=" Lost her job \n",
                                    now=clock.now())
        with pytest.raises(replies.EmptyMessage):
            await notes.add_note(session, conv, author="jsmith", body="  ", now=clock.now())
        assert await notes.list_notes(session, conv) == [
            reads.NoteLine(id=note.id, author="jsmith", body="Lost her job", at=START)]
    assert app[appkeys.PROVIDERS].sms.outbox == []  # private: never sent


async def test_canned_replies_fill_their_placeholders(app, phone, clock):
    await add_account(app)
    await phone().send("AGENT")
    async with app[appkeys.DATABASE].session() as session:
        with pytest.raises(canned.UnknownPlaceholder) as refused:
            await canned.save_canned(session, shortcut="hi", body="Hi {firstname}",
                                     by="jsmith", now=clock.now())
        assert str(refused.value).startswith("unknown placeholder {firstname}; known: ")
        saved = await canned.save_canned(
            session, shortcut="Balance", by="jsmith", now=clock.now(),
            body="Hi {first_name}, your balance is {balance}. Pay here: {link}")
        assert (saved.shortcut, saved.placeholders) == (
            "balance", ("first_name", "balance", "link"))
        assert [c.shortcut for c in await canned.list_canned(session)] == ["balance"]
        conv = await conversation(session)
        account = await session.get(Account, conv.account_id)
        text = await canned.fill(session, saved.body, account, brand="Northwind Recovery",
                                 support_contact="help@example.com",
                                 link_url=replies.LINK_SLOT)
        assert text == "Hi Maria, your balance is $1,250.00. Pay here: {link}"
        with pytest.raises(canned.CannedRefused):
            await canned.fill(session, saved.body, account, brand="N", support_contact="s")
        sent = await replies.send_filled(session, app[appkeys.PROVIDERS], conv, agent="jsmith",
                                         body=text, now=clock.now(), **deps(app))
        assert sent.body.startswith(
            "Hi Maria, your balance is $1,250.00. Pay here: https://paybot.test/p/")
        await canned.delete_canned(session, "balance", by="jsmith", now=clock.now())
        assert await canned.list_canned(session) == []
        with pytest.raises(canned.NoSuchCanned):
            await canned.get_canned(session, "balance")


async def test_an_agent_makes_an_offer_through_the_offer_rules(app, phone, clock):
    from bot.plans import offers

    await add_account(app)
    await phone().send("AGENT")
    async with app[appkeys.DATABASE].session() as session:
        conv = await conversation(session)
        offer = await replies.make_offer(
            session, conv, agent="jsmith", settings=app[appkeys.SETTINGS], now=clock.now(),
            request=offers.OfferRequest(kind="settlement", created_by="ignored",
                                        settlement_cents=80000))
        assert (offer.kind, offer.total_cents, offer.created_by, offer.status) == (
            "settlement", 80000, "agent:jsmith", "open")
        with pytest.raises(offers.InvalidOffer):  # a settlement must save something
            await replies.make_offer(
                session, conv, agent="jsmith", settings=app[appkeys.SETTINGS],
                now=clock.now(), request=offers.OfferRequest(
                    kind="settlement", created_by="x", settlement_cents=125000))
