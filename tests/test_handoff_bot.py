"""The customer's side of a handoff (issue 14), through the signed Twilio webhook and the worker:
the reply says when a person will answer; MENU, PAY, BALANCE and LINK bring the bot back while no
one has claimed it; a claimed conversation is the agent's but for STOP, HELP and MENU; nobody
waits in silence past the creditor's wait limit; hardship, disputes and wrong numbers get their
own replies, and a wrong number is never texted about that account again."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.accounts.loading import import_csv
from bot.inbox import handoffs
from bot.ledger.models import Account, AuditEvent, Conversation, Handoff, Message, WrongNumber
from bot.outreach.campaigns import send_links
from bot.outreach.notifications import Notifier
from bot.text.gsm7 import is_gsm7, segment_count
from bot.worker.loop import Worker, WorkerConfig
from tests.cli_support import in_process_paybot
from tests.conftest import START
from tests.seed import add_account

MARIA = "+15555550100"
MENU = (
    "Your balance on Acme Card ending 4821 is $1,250.00. Reply PAY to pay by text or open "
)
ASKED_IN_HOURS = (
    "Thanks. A member of our team will text you back here within about 15 minutes. Reply MENU "
    "to use the automated assistant meanwhile, or STOP to opt out."
)
STILL_IN_LINE = (
    "You are still in line for a member of our team, who will text you back here soon. Reply "
    "MENU to use the automated assistant meanwhile."
)
TIMED_OUT = (
    "Sorry, our team could not get to you yet. You are still in line and someone will text you "
    "back here. Meanwhile the automated assistant can help: reply MENU, PAY or BALANCE. Reply "
    "STOP to opt out."
)
CONTACT_REVIEW = "We have your email as m***@example.com. Reply OK, or send a new email."
# Saturday 2026-11-28, 10:00 in New York: agents (weekdays 8 a.m. to 8 p.m. Eastern) are away.
SATURDAY = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


class NoLimit:
    async def acquire(self) -> None:
        return None


def make_worker(app, name: str = "worker") -> Worker:  # type: ignore[no-untyped-def]
    providers, settings = app[appkeys.PROVIDERS], app[appkeys.SETTINGS]
    return Worker(
        database=app[appkeys.DATABASE], gateway=providers.payments,
        notifier=Notifier(sms=providers.sms, email=providers.email, brand=settings.brand),
        settings=settings, clock=app[appkeys.CLOCK], config=WorkerConfig(outreach=False),
        limiter=NoLimit(), sms_limiter=NoLimit(), name=name,
    )


async def rows(app, model, *where) -> list[Any]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return list(await session.scalars(select(model).where(*where).order_by(model.id)))


async def conversation(app, number: str = MARIA) -> Conversation:  # type: ignore[no-untyped-def]
    (conv,) = await rows(app, Conversation, Conversation.phone == number)
    return conv


async def claim(app, agent: str, number: str = MARIA) -> None:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        conv = await session.scalar(select(Conversation).where(Conversation.phone == number))
        await handoffs.claim(session, conv, agent=agent, at=app[appkeys.CLOCK].now())
        await session.commit()


def texts_to(providers, number: str = MARIA) -> list[str]:  # type: ignore[no-untyped-def]
    return [sent.body for sent in providers.sms.outbox if sent.to == number]


# --------------------------------------------------------------------------- the reply


async def test_in_hours_the_reply_says_within_how_long_and_a_follow_up_is_answered_once(
    app, phone
):
    await add_account(app)
    maria = phone()
    assert await maria.send("AGENT") == [ASKED_IN_HOURS]
    assert await maria.send("hello? are you there?") == [STILL_IN_LINE]
    assert await maria.send("hello??") == []  # stored for the agents; not a string of replies
    conv = await conversation(app)
    (handoff,) = await rows(app, Handoff)
    assert (conv.status, conv.reason, conv.handoff_id) == ("waiting", "asked", handoff.id)
    assert (handoff.requested_at, handoff.bot_resumed_at, handoff.claimed_at) == (
        START, None, None
    )
    inbound = await rows(app, Message, Message.direction == "inbound")
    assert [m.body for m in inbound] == ["AGENT", "hello? are you there?", "hello??"]


async def test_out_of_hours_the_reply_says_when_agents_are_back_in_the_customers_zone(
    app, phone, clock
):
    clock.set(SATURDAY)
    await add_account(app, timezone="America/Los_Angeles")
    assert await phone().send("can I talk to a real person") == [
        "Thanks. Our team is away now and back Monday at 5:00 AM PST; a member of the team "
        "will text you back here then. Reply MENU to continue with the automated assistant, or "
        "STOP to opt out."
    ]
    # A stranger (no account, no zone): in the agents' own zone.
    assert await phone("+15555550199").send("agent") == [
        "Thanks. Our team is away now and back Monday at 8:00 AM EST; a member of the team "
        "will text you back here then. Reply MENU to continue with the automated assistant, or "
        "STOP to opt out."
    ]
    # Late on a weekday: back tomorrow.
    clock.set(datetime(2026, 11, 26, 2, 0, tzinfo=UTC))  # Wednesday 9 p.m. in New York
    assert (await phone("+15555550177").send("agent"))[0].startswith(
        "Thanks. Our team is away now and back tomorrow at 8:00 AM EST;"
    )


async def test_each_creditor_sets_its_agents_hours_zone_and_wait(app, phone):
    await add_account(app, creditor_settings={
        "agent_hours": "mon-fri 09:00-17:00", "agent_timezone": "America/Chicago",
        "agent_wait_minutes": 30,
    })
    # Wednesday 10:00 in New York is 9:00 in Chicago: in.
    assert await phone().send("agent") == [
        "Thanks. A member of our team will text you back here within about 30 minutes. Reply "
        "MENU to use the automated assistant meanwhile, or STOP to opt out."
    ]


# --------------------------------------------------------------------------- coming back


@pytest.mark.parametrize(
    ("word", "answer"),
    [
        ("pay", CONTACT_REVIEW),
        ("MENU", MENU),
        ("balance", "Your balance on Acme Card ending 4821 is $1,250.00."),
        ("link", "Your secure link: https://paybot.test/p/"),
        ("what's my plan", "You have no payment plan"),
    ],
)
async def test_while_waiting_menu_pay_balance_and_link_bring_the_bot_back_and_the_request_stays(
    app, phone, word, answer
):
    await add_account(app)
    maria = phone()
    await maria.send("agent")
    (reply,) = await maria.send(word)
    assert reply.startswith(answer), reply
    conv = await conversation(app)
    (handoff,) = await rows(app, Handoff)
    assert conv.status == "waiting"  # still in the queue, until an agent claims or resolves it
    assert (handoff.bot_resumed_at, handoff.resolved_at) == (START, None)
    # From then on the bot answers everything, as it would with no handoff at all.
    assert (await maria.send("purple"))[0].startswith("Sorry, I did not understand that.\n")
    (resumed,) = await rows(app, AuditEvent, AuditEvent.kind == "bot_resumed")
    assert resumed.phone == MARIA


async def test_help_and_stop_are_answered_while_waiting_and_while_an_agent_has_it(app, phone):
    await add_account(app)
    maria = phone()
    await maria.send("agent")
    (help_,) = await maria.send("HELP")
    assert "Msg & data rates may apply" in help_
    (start,) = await maria.send("START")
    assert start.startswith("Northwind Recovery: You are resubscribed.")
    await claim(app, "Dana")
    (help_,) = await maria.send("help")
    assert "Msg & data rates may apply" in help_
    assert await maria.send("STOP") == [
        "Northwind Recovery: You are unsubscribed and will get no more messages. "
        "Reply START to resubscribe."
    ]


async def test_a_claimed_conversation_is_the_agents_until_menu(app, phone):
    await add_account(app)
    maria = phone()
    await maria.send("agent")
    await claim(app, "Dana")
    for text in ["pay", "balance", "link", "hello?", "agent"]:
        assert await maria.send(text) == [], text
    (menu,) = await maria.send("menu")
    assert menu.startswith(MENU)
    conv = await conversation(app)
    (handoff,) = await rows(app, Handoff)
    assert (conv.status, conv.assignee, conv.handoff_id) == ("bot", None, None)
    assert (handoff.claimed_by, handoff.resolved_by, handoff.resolved_at) == (
        "Dana", "customer", START
    )
    assert await maria.send("pay") == [CONTACT_REVIEW]


async def test_three_misreads_hand_over_and_say_what_happens_next(app, phone, clock):
    """The reported case: "$0" at the amount step, three times, muted the customer for good."""
    await add_account(app)
    maria = phone()
    await maria.send("pay")
    await maria.send("ok")
    ask = "How much would you like to pay? Reply an amount from $25.00 to $1,250.00, or FULL."
    zero = (
        "The amount must be more than $0.00. If you cannot pay now, reply AGENT and our team "
        f"will go over your options.\n{ask}"
    )
    assert await maria.send("$0") == [zero]
    assert await maria.send("$0") == [zero]
    clock.advance(timedelta(seconds=20))  # a person types; the frozen clock does not
    assert await maria.send("$0") == [
        "Sorry, I am having trouble understanding. A member of our team will text you back here "
        "within about 15 minutes. Reply MENU to start over with the automated assistant "
        "meanwhile."
    ]
    assert await maria.send("$0") == [STILL_IN_LINE]
    (handoff,) = await rows(app, Handoff)
    assert handoff.reason == "confused"
    (menu,) = await maria.send("menu")
    assert menu.startswith(MENU)
    assert await maria.send("pay") == [CONTACT_REVIEW]


# --------------------------------------------------------------------------- reasons


async def test_hardship_gets_empathy_and_the_options_a_plan_or_a_person(app, phone):
    await add_account(app, offers=True)  # the creditor offers a 6-month plan
    maria = phone()
    assert await maria.send("i lost my job") == [
        "I'm sorry to hear that. We can work with you. A payment plan may help: reply PAY to "
        "see your options. Or a member of our team will text you back here within about 15 "
        "minutes."
    ]
    (handoff,) = await rows(app, Handoff)
    assert (handoff.reason, (await conversation(app)).reason) == ("hardship", "hardship")
    assert await maria.send("pay") == [CONTACT_REVIEW]  # the bot, at once
    (offers,) = await maria.send("ok")
    assert "6 monthly payments of $208.34" in offers


async def test_hardship_without_a_plan_on_offer(app, phone):
    await add_account(app)
    assert await phone().send("I got laid off") == [
        "I'm sorry to hear that. We can work with you. Reply PAY to see what you can pay now, "
        "even a smaller amount. Or a member of our team will text you back here within about "
        "15 minutes."
    ]


async def test_a_dispute_gets_the_rights_and_a_person(app, phone):
    await add_account(app)
    (reply,) = await phone().send("this isn't my debt")
    assert reply == (
        "You have the right to dispute this debt. If you dispute it within the period in your "
        "validation notice, we stop collecting the disputed part until we send you "
        "verification. A member of our team will text you back here within about 15 minutes. "
        "Reply MENU for the automated assistant."
    )
    assert is_gsm7(reply) and segment_count(reply) <= 2
    (handoff,) = await rows(app, Handoff)
    assert handoff.reason == "dispute"


# --------------------------------------------------------------------------- wrong numbers


async def test_a_wrong_number_is_unlinked_and_never_texted_about_the_account_again(
    app, client, phone, providers, tmp_path
):
    account = await add_account(app)
    await add_account(app, ref="ACC-1002", balance="80.00")  # a second account on the number
    stranger = phone()
    assert await stranger.send("wrong number") == [
        "Thanks for letting us know, and sorry for the trouble. We have removed this number and "
        "will not text it about this account again."
    ]
    reports = await rows(app, WrongNumber)
    assert [(w.phone, w.reported_by, w.reported_at) for w in reports] == [
        (MARIA, "customer", START), (MARIA, "customer", START)
    ]
    assert {w.account_id for w in reports} == {a.id for a in await rows(app, Account)}
    assert [a.phone for a in await rows(app, Account)] == [None, None]
    conv = await conversation(app)
    assert (conv.account_id, conv.flow, conv.state) == (None, "verification", "new")
    (handoff,) = await rows(app, Handoff)
    assert (handoff.reason, handoff.account_id) == ("wrong_number", account.id)
    audits = await rows(app, AuditEvent, AuditEvent.kind == "wrong_number")
    assert len(audits) == 2 and {a.actor for a in audits} == {"customer"}

    # Whoever writes next from the number is a stranger: asked who they are, nothing shown.
    (next_reply,) = await stranger.send("ok thanks")
    assert "account ID" in next_reply and "$" not in next_reply
    assert await stranger.send("wrong number") != []  # said again: idempotent, answered
    assert len(await rows(app, WrongNumber)) == 2

    # A link campaign texts no one; the worker has nothing to time out for a wrong number.
    settings = app[appkeys.SETTINGS]
    report = await send_links(settings=settings, database=app[appkeys.DATABASE],
                              sms=providers.sms, email=providers.email, clock=app[appkeys.CLOCK])
    assert report.summary == "0 sent, 0 failed"  # no account has the number any more
    assert providers.sms.outbox == []
    app[appkeys.CLOCK].advance(timedelta(hours=1))
    await make_worker(app).run_once()
    assert texts_to(providers) == []

    # The creditor's next file puts the number back: refused, the rest is loaded.
    path = tmp_path / "accounts.csv"
    path.write_text("account_id,first_name,last_name,phone,email,balance\n"
                    "ACC-1001,Maria,Lopez,+15555550100,maria@example.com,1200.00\n")
    db = app[appkeys.DATABASE]
    loaded = await import_csv(db.session, path, secret_key="test-secret-key",
                              clock=app[appkeys.CLOCK])
    assert loaded.errors == []
    assert loaded.refused == [
        (2, "phone not loaded: it was reported as a wrong number for this account")
    ]
    assert loaded.summary == "0 created, 1 updated, 0 rejected; 1 kept without a field that " \
        "was refused"
    (first, _) = await rows(app, Account)
    assert (first.phone, first.balance_cents) == (None, 120000)
    # ... and so does the REST path (the same upsert).
    await add_account(app)
    (first, _) = await rows(app, Account)
    assert first.phone is None
    assert len(await rows(app, AuditEvent, AuditEvent.kind == "wrong_number_refused")) == 2


async def test_the_operator_report_masks_the_number(app, phone, settings, monkeypatch, capsys):
    await add_account(app)
    paybot = in_process_paybot(settings, monkeypatch, capsys, "accounts")
    assert await paybot("wrong-numbers") == (0, "No wrong numbers reported.\n", "")
    await phone().send("Wrong number!")
    code, out, err = await paybot("wrong-numbers")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "phone         account               reported by               reported at (UTC)",
        "***-***-0100  ACC-1001              customer                  2026-11-25 15:00",
    ]
    assert "5555550100" not in out


# --------------------------------------------------------------------------- the worker


async def test_an_unclaimed_request_times_out_after_the_wait_and_the_bot_answers_again(
    app, client, phone, providers, clock
):
    await add_account(app)
    maria = phone()
    await maria.send("agent")
    worker = make_worker(app)
    clock.advance(timedelta(minutes=14, seconds=59))
    report = await worker.run_once()
    assert (report.handoffs_timed_out, texts_to(providers)) == (0, [])
    clock.advance(timedelta(seconds=1))
    report = await worker.run_once()
    assert (report.handoffs_timed_out, texts_to(providers)) == (1, [TIMED_OUT])
    (handoff,) = await rows(app, Handoff)
    at = START + timedelta(minutes=15)
    assert (handoff.timed_out_at, handoff.bot_resumed_at, handoff.resolved_at) == (at, at, None)
    assert (await conversation(app)).status == "waiting"  # still in the queue
    sent = providers.sms.outbox[0]
    (message,) = await rows(app, Message, Message.provider_sid == sent.sid)
    assert (message.direction, message.body, message.status, message.author) == (
        "outbound", TIMED_OUT, "queued", "bot"
    )
    clock.advance(timedelta(hours=1))
    assert (await worker.run_once()).handoffs_timed_out == 0  # told once
    assert len(texts_to(providers)) == 1
    (reply,) = await maria.send("hello")
    assert reply.startswith(f"Hi Maria!\n{MENU}")  # the bot answers again


async def test_a_request_made_when_agents_are_away_waits_from_when_they_are_back(
    app, client, phone, providers, clock
):
    clock.set(SATURDAY)
    await add_account(app)
    await phone().send("agent")
    worker = make_worker(app)
    clock.advance(timedelta(hours=6))
    await worker.run_once()
    assert texts_to(providers) == []
    clock.set(datetime(2026, 11, 30, 13, 15, tzinfo=UTC))  # Monday 8:15 in New York
    await worker.run_once()
    assert texts_to(providers) == [TIMED_OUT]


async def test_no_time_out_text_to_an_opted_out_number_and_none_twice_with_two_workers(
    app, client, phone, providers, clock
):
    await add_account(app)
    await add_account(app, ref="ACC-2", phone="+15555550111")
    await phone().send("agent")
    await phone().send("stop")
    await phone("+15555550111").send("agent")
    clock.advance(timedelta(minutes=20))
    await asyncio.gather(make_worker(app, "w1").run_once(), make_worker(app, "w2").run_once())
    assert texts_to(providers) == []
    assert texts_to(providers, "+15555550111") == [TIMED_OUT]
    assert all(h.timed_out_at is not None for h in await rows(app, Handoff))


async def test_an_agent_who_has_not_answered_leaves_no_one_in_silence(
    app, client, phone, providers, clock
):
    await add_account(app)
    maria = phone()
    await maria.send("agent")
    await claim(app, "Dana")
    clock.advance(timedelta(minutes=5))
    assert await maria.send("hello? anyone?") == []
    worker = make_worker(app)
    clock.advance(timedelta(minutes=14))
    await worker.run_once()
    assert texts_to(providers) == []
    clock.advance(timedelta(minutes=1))
    report = await worker.run_once()
    told = "Dana has your message and will reply soon. Reply MENU for the automated assistant."
    assert (report.agent_waits_told, texts_to(providers)) == (1, [told])
    await worker.run_once()
    assert texts_to(providers) == [told]  # once
    # The agent answers: then nothing from the worker, whatever the time.
    await maria.send("ok")
    async with app[appkeys.DATABASE].session() as session:
        conv = await session.scalar(select(Conversation))
        session.add(Message(conversation_id=conv.id, direction="outbound", channel="sms",
                            phone=MARIA, body="Hi Maria, Dana here.", author="agent:Dana",
                            status="queued", created_at=clock.now()))
        await session.commit()
    clock.advance(timedelta(hours=2))
    await worker.run_once()
    assert texts_to(providers) == [told]
    (audit,) = await rows(app, AuditEvent, AuditEvent.kind == "agent_wait_told")
    assert audit.detail == {"agent": "Dana"}


async def test_a_time_out_leaves_a_customer_already_back_with_the_bot_where_they_are(
    app, client, phone, providers, clock
):
    await add_account(app)
    maria = phone()
    await maria.send("agent")
    await maria.send("pay")
    await maria.send("ok")  # at the amount step with the bot
    clock.advance(timedelta(minutes=15))
    await make_worker(app).run_once()
    assert texts_to(providers) == [TIMED_OUT]
    assert (await conversation(app)).state == "amount"
    (reply,) = await maria.send("50")
    assert reply.startswith("Pay with Visa ending 4242?")


# --------------------------------------------------------------------------- the settings


def test_agent_hours_read_as_written_and_refused_with_the_reason():
    from bot.config.agent_hours import parse_agent_hours
    from bot.config.flow import FlowSettings, InvalidCreditorSettings, check_creditor_settings

    hours = parse_agent_hours("Mon-Fri 08:00-20:00; sat 09:00-13:00")
    assert hours.windows == (*[((480, 1200),)] * 5, ((540, 780),), ())
    assert parse_agent_hours("always").windows == (((0, 1440),),) * 7
    assert parse_agent_hours("fri-mon 22:00-24:00").windows[6] == ((1320, 1440),)
    with pytest.raises(InvalidCreditorSettings) as refused:
        check_creditor_settings({
            "agent_hours": "weekdays 9-5", "agent_timezone": "Eastern",
            "agent_wait_minutes": 0,
        })
    assert refused.value.problems == {
        "agent_hours": "'weekdays 9-5' is not like 'mon-fri 08:00-20:00'",
        "agent_timezone": "'Eastern' is not a time zone (e.g. America/New_York)",
        "agent_wait_minutes": "Input should be greater than or equal to 1",
    }
    for bad, why in [
        ("funday 08:00-20:00", "'funday' is not a day (mon, tue, ... sun, weekdays, daily)"),
        ("mon 20:00-08:00", "'mon 20:00-08:00': the window must end after it starts"),
        ("mon 08:00-25:00", "25:00 is not a time of day"),
        ("", "must say when agents answer, e.g. 'mon-fri 08:00-20:00' or 'always'"),
    ]:
        with pytest.raises(InvalidCreditorSettings) as refused:
            check_creditor_settings({"agent_hours": bad})
        assert refused.value.problems == {"agent_hours": why}
    # Friday 19:59 in New York: in; 20:00: back Monday 8:00.
    settings = FlowSettings()
    friday = datetime(2026, 11, 27, 19, 59, tzinfo=ZoneInfo("America/New_York"))
    assert settings.agent_wait(friday, None) == {
        "open": True, "minutes": 15, "back": "", "opens": None, "today": date(2026, 11, 27)
    }
    chicago = ZoneInfo("America/Chicago")
    assert settings.agent_wait(friday + timedelta(minutes=1), "America/Chicago") == {
        "open": False, "minutes": 15, "back": "Monday at 7:00 AM CST",
        "opens": datetime(2026, 11, 30, 7, 0, tzinfo=chicago), "today": date(2026, 11, 27),
    }


async def test_paybot_creditors_set_checks_the_agent_settings(
    app, phone, settings, monkeypatch, capsys
):
    await add_account(app)
    paybot = in_process_paybot(settings, monkeypatch, capsys, "creditors")
    code, _, err = await paybot("set", "northwind", "agent_hours=mon-fri 9 to 5",
                                "agent_wait_minutes=5")
    assert (code, err) == (2, "paybot creditors: northwind: nothing changed: agent_hours: "
                              "'mon-fri 9 to 5' is not like 'mon-fri 08:00-20:00'\n")
    code, out, err = await paybot("set", "northwind", "agent_hours=always",
                                  "agent_wait_minutes=5")
    assert (code, err) == (0, "")
    clock = app[appkeys.CLOCK]
    clock.set(SATURDAY)
    assert await phone().send("agent") == [
        "Thanks. A member of our team will text you back here within about 5 minutes. Reply "
        "MENU to use the automated assistant meanwhile, or STOP to opt out."
    ]


async def test_asked_again_after_a_time_out_the_wait_starts_again(
    app, client, phone, providers, clock
):
    await add_account(app)
    maria = phone()
    await maria.send("agent")
    worker = make_worker(app)
    clock.advance(timedelta(minutes=15))
    await worker.run_once()
    clock.advance(timedelta(minutes=5))
    assert await maria.send("agent please") == [ASKED_IN_HOURS]
    # One "still in line" after each request, this one asked again too; then stored only.
    assert await maria.send("still nobody?") == [STILL_IN_LINE]
    assert await maria.send("hello?") == []
    clock.advance(timedelta(minutes=14))
    await worker.run_once()
    assert texts_to(providers) == [TIMED_OUT]
    clock.advance(timedelta(minutes=1))
    await worker.run_once()
    assert texts_to(providers) == [TIMED_OUT, TIMED_OUT]
    (handoff,) = await rows(app, Handoff)  # one request, kept in the queue all along
    assert handoff.timed_out_at == START + timedelta(minutes=15)
    assert handoff.bot_resumed_at == START + timedelta(minutes=35)


async def test_asked_first_then_said_why_the_queue_shows_the_why(app, phone):
    await add_account(app)
    maria = phone()
    await maria.send("agent")
    (reply,) = await maria.send("I lost my job")
    assert reply.startswith("I'm sorry to hear that.")
    (handoff,) = await rows(app, Handoff)  # the same request, its place kept
    assert (handoff.reason, (await conversation(app)).reason) == ("hardship", "hardship")


async def test_a_stranger_gets_the_same_replies_without_any_account_detail(app, phone, clock):
    await add_account(app)
    stranger = phone("+15555550199")
    (hardship,) = await stranger.send("i lost my job")
    assert hardship.startswith("I'm sorry to hear that. We can work with you. Reply PAY")
    (dispute,) = await phone("+15555550198").send("not my debt")
    assert dispute.startswith("You have the right to dispute this debt.")
    (wrong,) = await phone("+15555550197").send("wrong number")
    assert wrong.startswith("Thanks for letting us know")
    assert await rows(app, WrongNumber) == []  # on file for no account: nothing to unlink
    assert [h.reason for h in await rows(app, Handoff)] == ["hardship", "dispute", "wrong_number"]
