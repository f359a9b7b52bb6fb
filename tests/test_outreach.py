"""Proactive outreach delivered by the worker: offers, reminders, expiry, opt-outs, quiet hours
and the frequency cap, with time moved by a FrozenClock across days, time zones and DST.

Offers are written straight into the ledger (as bot/plans/offers.py makes them) and queued with
``bot.outreach.queue.enqueue``; what the customer receives is read from the sandbox outboxes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.config.settings import FlowSettings
from bot.ledger.db import Database
from bot.ledger.models import Account, Creditor, Link, Offer, OptOut, Outreach
from bot.outreach.notifications import Notifier
from bot.outreach.queue import (
    compose_sms,
    deliver_due,
    enqueue,
    plan_outreach,
    reminder_due,
    window_opens,
)
from bot.text.gsm7 import is_gsm7, segment_count
from bot.text.rendering import SmsRenderer
from bot.worker.loop import Worker, WorkerConfig
from tests.conftest import BACKEND, PUBLIC_BASE_URL
from tests.seed import add_account

ROOT = Path(__file__).resolve().parents[1]
NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")
HONOLULU = ZoneInfo("Pacific/Honolulu")
DISCLOSURE = "This is a communication from a debt collector."
LINK = re.compile(re.escape(PUBLIC_BASE_URL) + r"/p/([A-Za-z0-9_-]+)")
# 6 monthly payments adding up to the balance, $1,250.00, to the cent.
SCHEDULE = [["2026-12-15", 20834], ["2027-01-15", 20834], ["2027-02-15", 20834],
            ["2027-03-15", 20834], ["2027-04-15", 20834], ["2027-05-15", 20830]]


def at(day: date, hour: int, minute: int = 0, zone: ZoneInfo = NY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)


def end_of_day(day: date, zone: ZoneInfo = NY) -> datetime:
    return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=zone).astimezone(UTC)


class CountingLimiter:
    def __init__(self) -> None:
        self.permits = 0

    async def acquire(self) -> None:
        self.permits += 1


async def add_offer(app, account: Account, *, kind: str = "plan",  # type: ignore[no-untyped-def]
                    expires_at: datetime | None = None, total: int = 125000,
                    schedule: list | None = None) -> Offer:
    now = app[appkeys.CLOCK].now()
    async with app[appkeys.DATABASE].session() as session:
        offer = Offer(
            account_id=account.id, kind=kind, total_cents=total,
            installment_count=len(schedule or SCHEDULE) if kind == "plan" else 1,
            frequency="monthly" if kind == "plan" else None,
            schedule=(schedule or SCHEDULE) if kind == "plan" else None,
            expires_at=expires_at or end_of_day(date(2026, 12, 9)),
            status="open", created_at=now, created_by="test",
        )
        session.add(offer)
        await session.commit()
        return offer


async def queue(app, offer: Offer, channel: str = "sms") -> None:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        await enqueue(session, dedupe_key=f"offer:{offer.id}", account_id=offer.account_id,
                      kind="offer", channel=channel, at=app[appkeys.CLOCK].now(),
                      offer_id=offer.id)
        await session.commit()


async def deliver(app, *, database: Database | None = None, limiter: Any = None):  # type: ignore[no-untyped-def]
    providers = app[appkeys.PROVIDERS]
    return await deliver_due(
        database=database or app[appkeys.DATABASE], settings=app[appkeys.SETTINGS],
        clock=app[appkeys.CLOCK], sms=providers.sms, email=providers.email, sms_limiter=limiter,
    )


async def plan(app):  # type: ignore[no-untyped-def]
    return await plan_outreach(database=app[appkeys.DATABASE], settings=app[appkeys.SETTINGS],
                               clock=app[appkeys.CLOCK])


async def rows(app, model, *where, order=None):  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        query = select(model).where(*where)
        query = query.order_by(order if order is not None else model.__mapper__.primary_key[0])
        return list(await session.scalars(query))


async def fetch(app, model, key):  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return await session.get(model, key)


def texts(app) -> list[str]:  # type: ignore[no-untyped-def]
    return [m.body for m in app[appkeys.PROVIDERS].sms.outbox]


def emails(app) -> list[Any]:  # type: ignore[no-untyped-def]
    return list(app[appkeys.PROVIDERS].email.outbox)


async def opens(client, token: str) -> int:  # type: ignore[no-untyped-def]
    return (await client.get(f"/p/{token}")).status


# --------------------------------------------------------------------------- the offer


async def test_a_plan_offer_goes_out_by_text_with_a_link_that_works_until_it_expires(
    app, client, clock
):
    maria = await add_account(app)
    offer = await add_offer(app, maria)
    await queue(app, offer, "sms")
    report = await deliver(app)
    assert (report.sent, report.held, report.skipped) == (1, 0, 0)

    (body,) = texts(app)
    (token,) = LINK.findall(body)
    assert body == (
        "Northwind Recovery: Hi Maria, your payment plan is ready: 6 payments of $208.34 "
        "(last $208.30), first on Dec 15, 2026, total $1,250.00. Offer ends Dec 9, 2026. "
        f"Complete Payment Agreement: {PUBLIC_BASE_URL}/p/{token} or reply PLAN to review and "
        f"sign by text. {DISCLOSURE} Reply STOP to opt out."
    )
    assert is_gsm7(body) and segment_count(body.replace(DISCLOSURE, "")) <= 2
    (link,) = await rows(app, Link)
    assert (link.purpose, link.offer_id, link.account_id) == ("plan_offer", offer.id, maria.id)
    assert link.expires_at == offer.expires_at and link.revoked_at is None
    assert await opens(client, token) == 200

    (row,) = await rows(app, Outreach)
    assert (row.status, row.sent_at) == ("sent", clock.now())
    assert (await fetch(app, Offer, offer.id)).sent_at == clock.now()
    assert (await deliver(app)).sent == 0  # sent once
    assert len(texts(app)) == 1

    clock.set(end_of_day(date(2026, 12, 9)) + timedelta(seconds=1))
    assert await opens(client, token) == 410  # the link ends with the offer


async def test_a_plan_offer_by_email_has_the_schedule_and_the_agreement_button(app, client):
    maria = await add_account(app)
    offer = await add_offer(app, maria)
    await queue(app, offer, "email")
    assert (await deliver(app)).sent == 1
    assert texts(app) == []
    (sent,) = emails(app)
    assert sent.to == "maria@example.com"
    assert sent.subject == "Complete Payment Agreement: your payment plan with Northwind Recovery"
    assert "Your payment plan: 6 payments of $208.34 (last $208.30), the first on Dec 15, 2026, " \
           "$1,250.00 in total." in sent.text
    assert "  1. Dec 15, 2026: $208.34" in sent.text and "  6. May 15, 2027: $208.30" in sent.text
    assert "This offer is open until Dec 9, 2026 at 11:59 PM EST." in sent.text
    assert DISCLOSURE in sent.text
    assert "To stop these emails, reply to this message with UNSUBSCRIBE." in sent.text
    (token,) = set(LINK.findall(sent.text))
    assert f'href="{PUBLIC_BASE_URL}/p/{token}"' in sent.html
    assert ">Complete Payment Agreement</a>" in sent.html
    assert "UNSUBSCRIBE" in sent.html and DISCLOSURE in sent.html
    assert await opens(client, token) == 200


async def test_both_sends_a_text_and_an_email_each_with_its_own_link(app, client):
    maria = await add_account(app)
    offer = await add_offer(app, maria)
    await queue(app, offer, "both")
    assert (await deliver(app)).sent == 1
    (body,) = texts(app)
    (email,) = emails(app)
    assert email.sender.startswith("Northwind Recovery <")  # the offer comes from the creditor
    sms_token, email_token = LINK.findall(body)[0], LINK.findall(email.text)[0]
    assert sms_token != email_token
    for token in (sms_token, email_token):
        assert await opens(client, token) == 200
    assert len(await rows(app, Link, Link.offer_id == offer.id)) == 2


async def test_a_settlement_offer_links_to_the_payment_flow_and_offers_no_plan_signing(
    app, client
):
    maria = await add_account(app)
    offer = await add_offer(app, maria, kind="settlement", total=80000)
    await queue(app, offer, "sms")
    await deliver(app)
    (body,) = texts(app)
    assert body.startswith("Northwind Recovery: Hi Maria, you can settle your account for "
                           "$800.00: pay by Dec 9, 2026. Complete Payment Agreement: ")
    assert "PLAN" not in body
    (link,) = await rows(app, Link)
    assert (link.purpose, link.offer_id, link.amount_cents) == ("payment", offer.id, None)


async def test_without_sms_plan_signing_the_text_only_carries_the_link(app, client):
    maria = await add_account(app, creditor_settings={"sms_plan_signing": False})
    await queue(app, await add_offer(app, maria), "sms")
    await deliver(app)
    (body,) = texts(app)
    assert "reply PLAN" not in body
    assert re.search(r"/p/[A-Za-z0-9_-]+ This is a communication", body)


async def test_only_the_first_text_to_a_number_carries_the_disclosure(app, client, clock):
    maria = await add_account(app)
    await queue(app, await add_offer(app, maria), "sms")
    await queue(app, await add_offer(app, maria, kind="settlement", total=80000), "sms")
    assert (await deliver(app)).sent == 2
    first, second = texts(app)
    assert DISCLOSURE in first and DISCLOSURE not in second
    assert second.endswith("Reply STOP to opt out.")


# --------------------------------------------------------------------------- opt-outs


async def test_an_opted_out_number_is_skipped(app, client, clock):
    maria = await add_account(app)
    async with app[appkeys.DATABASE].session() as session:
        session.add(OptOut(phone=maria.phone, opted_out=True, keyword="STOP", channel="sms",
                           updated_at=clock.now()))
        await session.commit()
    await queue(app, await add_offer(app, maria), "sms")
    report = await deliver(app)
    assert (report.sent, report.skipped) == (0, 1)
    assert texts(app) == [] and await rows(app, Link) == []
    (row,) = await rows(app, Outreach)
    assert (row.status, row.detail["reason"]) == ("skipped", "sms opted_out")


async def test_an_email_opt_out_is_skipped_and_both_sends_what_it_can(app, client, clock):
    from bot.ledger import queries as ledger

    maria = await add_account(app)
    async with app[appkeys.DATABASE].session() as session:
        await ledger.set_email_opt_out(session, "Maria@Example.com", opted_out=True,
                                       reason="unsubscribe", at=clock.now())
        await session.commit()
    await queue(app, await add_offer(app, maria), "email")
    await queue(app, await add_offer(app, maria, kind="settlement", total=80000), "both")
    report = await deliver(app)
    assert (report.sent, report.skipped) == (1, 1)
    assert emails(app) == []
    (body,) = texts(app)
    assert "settle your account" in body
    email_only, both = await rows(app, Outreach)
    assert (email_only.status, email_only.detail["reason"]) == ("skipped", "email opted_out")
    assert both.status == "sent" and both.detail["not_reached"] == {"email": "opted_out"}


async def test_nothing_to_send_to_is_skipped(app, client):
    maria = await add_account(app, phone=None)
    await queue(app, await add_offer(app, maria), "sms")
    assert (await deliver(app)).skipped == 1
    (row,) = await rows(app, Outreach)
    assert row.detail["reason"] == "sms no_phone"


async def test_a_carrier_opt_out_is_recorded_and_the_link_revoked(app, client, providers):
    maria = await add_account(app)
    providers.sms.block(maria.phone)
    await queue(app, await add_offer(app, maria), "sms")
    assert (await deliver(app)).skipped == 1
    (row,) = await rows(app, Outreach)
    assert (row.status, row.detail["reason"]) == ("skipped", "opted_out_at_carrier")
    assert (await fetch(app, OptOut, maria.phone)).opted_out
    (link,) = await rows(app, Link)
    assert link.revoked_at is not None


# --------------------------------------------------------------------------- quiet hours


@pytest.mark.parametrize("zone", [NY, LA, HONOLULU], ids=lambda z: z.key)
async def test_an_offer_queued_at_night_goes_out_at_8_the_next_morning(app, client, clock, zone):
    maria = await add_account(app, timezone=zone.key)
    clock.set(at(date(2026, 11, 25), 22, 30, zone))
    await queue(app, await add_offer(app, maria), "both")
    report = await deliver(app)
    assert (report.sent, report.held) == (0, 1)
    (row,) = await rows(app, Outreach)
    assert (row.status, row.not_before) == ("held", at(date(2026, 11, 26), 8, 0, zone))
    assert row.detail["held"] == "quiet_hours"

    clock.set(at(date(2026, 11, 26), 7, 59, zone))
    assert (await deliver(app)).sent == 0
    assert texts(app) == [] and emails(app) == []
    clock.set(at(date(2026, 11, 26), 8, 0, zone))
    assert (await deliver(app)).sent == 1
    assert len(texts(app)) == 1 and len(emails(app)) == 1


def test_an_unreadable_zone_waits_for_daytime_everywhere_in_the_us():
    flow = FlowSettings()
    # 8:30 a.m. in New York is 3:30 a.m. in Hawaii: still quiet for "anywhere in the US".
    now = at(date(2026, 11, 26), 8, 30)
    assert window_opens(now, "Not/AZone", flow) == at(date(2026, 11, 26), 8, 0, HONOLULU)
    assert window_opens(now, "America/New_York", flow) == now


@pytest.mark.parametrize("day", [date(2027, 3, 14), date(2027, 11, 7)],
                         ids=["spring-forward", "fall-back"])
async def test_quiet_hours_follow_the_local_clock_on_the_day_dst_changes(app, client, clock, day):
    maria = await add_account(app)
    clock.set(at(day, 7, 30))  # 7:30 a.m. local, whatever the offset that morning
    await queue(app, await add_offer(app, maria, expires_at=end_of_day(day + timedelta(10))))
    assert (await deliver(app)).held == 1
    (row,) = await rows(app, Outreach)
    assert row.not_before == at(day, 8, 0)
    # Under the day's other offset it would have been 8:30 (fall-back) or 6:30 (spring-forward).
    clock.set(at(day, 7, 59))
    assert (await deliver(app)).sent == 0
    clock.set(at(day, 8, 0))
    assert (await deliver(app)).sent == 1


# --------------------------------------------------------------------------- reminders


async def send_offer(app, account, *, channel: str = "sms", **kwargs) -> Offer:  # type: ignore[no-untyped-def]
    offer = await add_offer(app, account, **kwargs)
    await queue(app, offer, channel)
    assert (await deliver(app)).sent == 1
    return offer


async def reminders(app, offer: Offer) -> list[Outreach]:  # type: ignore[no-untyped-def]
    return await rows(app, Outreach, Outreach.offer_id == offer.id, Outreach.kind == "reminder",
                      order=Outreach.not_before)


async def test_three_reminders_at_7_3_and_1_days_before_expiry(app, client, clock):
    maria = await add_account(app)
    offer = await send_offer(app, maria, expires_at=end_of_day(date(2026, 12, 9)))
    assert (await plan(app)).queued == 3
    assert (await plan(app)).queued == 0  # idempotent
    queued = await reminders(app, offer)
    assert [r.dedupe_key for r in queued] == [f"reminder:{offer.id}:{n}" for n in (1, 2, 3)]
    assert [r.not_before for r in queued] == [
        at(date(2026, 12, 2), 10), at(date(2026, 12, 6), 10), at(date(2026, 12, 8), 10)
    ]

    sent_at: list[datetime] = []
    day = date(2026, 11, 26)
    while day <= date(2026, 12, 12):
        for hour in (9, 10, 11, 22):
            clock.set(at(day, hour))
            await plan(app)
            if (await deliver(app)).sent:
                sent_at.append(clock.now())
        day += timedelta(days=1)
    reminder_texts = texts(app)[1:]
    assert sent_at == [at(date(2026, 12, d), 10) for d in (2, 6, 8)] + [at(date(2026, 12, 10), 9)]
    assert [t.split(" Complete Payment Agreement: ")[0] for t in reminder_texts[:3]] == [
        "Northwind Recovery: Hi Maria, a reminder: your payment plan offer (6 payments of "
        f"$208.34) ends Dec 9, 2026 ({left})." for left in ("7 days left", "3 days left",
                                                           "tomorrow")
    ]
    for body in reminder_texts[:3]:
        assert "Complete Payment Agreement: " in body and "reply PLAN" in body
        assert body.endswith("Reply STOP to opt out.") and segment_count(body) <= 2
    assert "offer ended on Dec 9, 2026" in reminder_texts[3]  # the expiry notice, next morning
    assert len(reminder_texts) == 4


async def test_no_reminder_after_the_offer_is_accepted_or_withdrawn(app, client, clock):
    maria = await add_account(app)
    accepted = await send_offer(app, maria)
    withdrawn = await send_offer(app, maria, kind="settlement", total=80000)
    await plan(app)
    async with app[appkeys.DATABASE].session() as session:
        (await session.get(Offer, accepted.id)).status = "accepted"  # type: ignore[union-attr]
        (await session.get(Offer, withdrawn.id)).status = "withdrawn"  # type: ignore[union-attr]
        await session.commit()
    clock.set(at(date(2026, 12, 12), 12))
    await plan(app)
    report = await deliver(app)
    assert (report.sent, report.skipped) == (0, 6)
    assert len(texts(app)) == 2  # the two offers, nothing more
    assert {r.detail["reason"] for r in await rows(app, Outreach, Outreach.kind == "reminder")} \
        == {"offer_not_open"}
    assert await rows(app, Outreach, Outreach.kind == "expired") == []


async def test_an_offer_sent_late_gets_only_the_reminders_still_ahead(app, client, clock):
    maria = await add_account(app)
    clock.set(at(date(2026, 12, 6), 12))  # 3 days before the end, after 10 a.m.
    offer = await send_offer(app, maria, expires_at=end_of_day(date(2026, 12, 9)))
    assert (await plan(app)).queued == 1
    (only,) = await reminders(app, offer)
    assert (only.dedupe_key, only.not_before) == (f"reminder:{offer.id}:3",
                                                 at(date(2026, 12, 8), 10))
    assert (await deliver(app)).sent == 0


async def test_after_downtime_only_the_latest_due_reminder_goes(app, client, clock):
    maria = await add_account(app)
    offer = await send_offer(app, maria, expires_at=end_of_day(date(2026, 12, 9)))
    await plan(app)
    clock.set(at(date(2026, 12, 8), 12))  # the worker was down from Nov 25 to Dec 8
    report = await deliver(app)
    assert (report.sent, report.skipped) == (1, 2)
    assert "(tomorrow)" in texts(app)[-1]
    assert [r.status for r in await reminders(app, offer)] == ["skipped", "skipped", "sent"]


@pytest.mark.parametrize(
    ("expiry", "expected"),
    [
        # US spring-forward on Sunday 2027-03-14: 10 a.m. EST before it, EDT after it.
        (date(2027, 3, 17), [at(date(2027, 3, 10), 10), at(date(2027, 3, 14), 10),
                             at(date(2027, 3, 16), 10)]),
        # US fall-back on Sunday 2027-11-07.
        (date(2027, 11, 10), [at(date(2027, 11, 3), 10), at(date(2027, 11, 7), 10),
                              at(date(2027, 11, 9), 10)]),
    ],
    ids=["spring-forward", "fall-back"],
)
async def test_reminders_keep_their_local_hour_across_dst(app, client, clock, expiry, expected):
    maria = await add_account(app)
    clock.set(at(expiry - timedelta(days=12), 12))
    offer = await send_offer(app, maria, expires_at=end_of_day(expiry))
    await plan(app)
    assert [r.not_before for r in await reminders(app, offer)] == expected
    assert expected[1].hour != expected[0].hour  # the UTC hour moved, the local one did not
    for due in expected:
        clock.set(due - timedelta(minutes=1))
        assert (await deliver(app)).sent == 0
        clock.set(due)
        assert (await deliver(app)).sent == 1
        assert clock.now().astimezone(NY).hour == 10


def test_reminder_due_is_10_am_local_n_days_before_the_last_day():
    expires = end_of_day(date(2027, 3, 17))
    assert reminder_due(expires, 3, "America/New_York") == datetime(2027, 3, 14, 14, tzinfo=UTC)
    assert reminder_due(expires, 7, "America/New_York") == datetime(2027, 3, 10, 15, tzinfo=UTC)
    assert reminder_due(expires, 1, "Not/AZone") == expires - timedelta(days=1)


# --------------------------------------------------------------------------- expiry


async def test_an_expired_offer_is_closed_its_link_answers_410_and_one_notice_goes(
    app, client, clock
):
    maria = await add_account(app)
    offer = await send_offer(app, maria, channel="both")
    (token,) = LINK.findall(texts(app)[0])
    (email_token,) = set(LINK.findall(emails(app)[0].text))
    await plan(app)
    clock.set(end_of_day(date(2026, 12, 9)) + timedelta(minutes=1))  # 0:00 local: quiet hours
    report = await plan(app)
    assert (report.expired, report.queued) == (1, 1)
    assert (await fetch(app, Offer, offer.id)).status == "expired"
    assert all(link.revoked_at == clock.now() for link in await rows(app, Link))
    assert await opens(client, token) == 410
    assert await opens(client, email_token) == 410
    assert (await plan(app)).expired == 0

    assert (await deliver(app)).held == 1  # the notice waits for the morning
    clock.set(at(date(2026, 12, 10), 8))
    await plan(app)
    assert (await deliver(app)).sent == 1
    notice = texts(app)[-1]
    assert notice.startswith("Northwind Recovery: Hi Maria, your payment plan offer ended on "
                             "Dec 9, 2026 and its link no longer works. Reply LINK for a new "
                             "payment link or contact ")
    assert "/p/" not in notice and notice.endswith("Reply STOP to opt out.")
    expired_email = emails(app)[-1]
    assert expired_email.subject == "Your offer from Northwind Recovery has expired"
    assert "reply LINK to our text messages" in expired_email.text
    assert "/p/" not in expired_email.text and "UNSUBSCRIBE" in expired_email.text

    clock.advance(timedelta(days=2))
    await plan(app)
    assert (await deliver(app)).sent == 0
    assert len(await rows(app, Outreach, Outreach.kind == "expired")) == 1
    # The reminders never went; the held ones were skipped.
    assert {r.status for r in await reminders(app, offer)} <= {"sent", "skipped"}


async def test_an_offer_never_sent_expires_without_a_notice(app, client, clock):
    maria = await add_account(app)
    offer = await add_offer(app, maria)
    clock.set(at(date(2026, 12, 10), 12))
    report = await plan(app)
    assert (report.expired, report.queued) == (1, 0)
    assert (await fetch(app, Offer, offer.id)).status == "expired"
    assert await rows(app, Outreach) == []


async def test_a_queued_offer_that_expired_before_it_could_go_is_skipped(app, client, clock):
    maria = await add_account(app)
    offer = await add_offer(app, maria)
    await queue(app, offer)
    clock.set(at(date(2026, 12, 10), 12))
    await plan(app)
    assert (await deliver(app)).skipped == 1
    assert texts(app) == []
    (row,) = await rows(app, Outreach)
    assert row.detail["reason"] == "offer_not_open"


# --------------------------------------------------------------------------- several workers


async def test_two_deliveries_in_parallel_send_each_message_once(app, client, settings):
    count = 12
    offers = []
    for n in range(count):
        account = await add_account(app, ref=f"ACC-{2000 + n}", phone=f"+1555555{2000 + n:04d}",
                                    email=f"customer{n}@example.com", methods=())
        offers.append(await add_offer(app, account))
    for offer in offers:
        await queue(app, offer, "both")
    databases = [Database(settings.database_url), Database(settings.database_url)]
    try:
        first, second = await asyncio.gather(
            *(deliver(app, database=database) for database in databases)
        )
    finally:
        for database in databases:
            await database.close()
    assert first.sent + second.sent == count
    if BACKEND == "services":
        assert first.sent and second.sent  # SKIP LOCKED: both took a share
    sms_to = [m.to for m in app[appkeys.PROVIDERS].sms.outbox]
    email_to = [m.to for m in emails(app)]
    assert len(sms_to) == len(set(sms_to)) == count
    assert len(email_to) == len(set(email_to)) == count
    assert {r.status for r in await rows(app, Outreach)} == {"sent"}
    assert len(await rows(app, Link)) == 2 * count


# --------------------------------------------------------------------------- frequency cap


async def test_the_sixth_message_in_seven_days_waits_until_the_window_allows(
    app, client, clock
):
    maria = await add_account(app)
    sent: list[datetime] = []
    for n in range(5):
        clock.set(at(date(2026, 11, 25) + timedelta(days=n), 10))
        await queue(app, await add_offer(app, maria, kind="settlement", total=80000 + n))
        assert (await deliver(app)).sent == 1
        sent.append(clock.now())
    clock.set(at(date(2026, 11, 30), 12))
    await queue(app, await add_offer(app, maria, kind="settlement", total=70000))
    report = await deliver(app)
    assert (report.sent, report.held) == (0, 1)
    (sixth,) = await rows(app, Outreach, Outreach.status == "held")
    assert sixth.not_before == sent[0] + timedelta(days=7)  # Dec 2, 10 a.m.
    assert sixth.detail["held"] == "frequency_cap"

    clock.set(sent[0] + timedelta(days=7) - timedelta(minutes=1))
    assert (await deliver(app)).sent == 0
    clock.set(sent[0] + timedelta(days=7))
    assert (await deliver(app)).sent == 1
    assert len(texts(app)) == 6


async def test_a_message_by_text_and_email_counts_once_against_the_cap(app, client, clock):
    maria = await add_account(app, creditor_settings={"max_proactive_per_week": 2})
    for n in range(2):
        await queue(app, await add_offer(app, maria, kind="settlement", total=80000 + n), "both")
    assert (await deliver(app)).sent == 2
    await queue(app, await add_offer(app, maria, kind="settlement", total=70000), "both")
    assert (await deliver(app)).held == 1


# --------------------------------------------------------------------------- the worker


async def test_the_worker_pass_plans_and_delivers_outreach_through_the_sms_limiter(
    app, client, clock
):
    maria = await add_account(app)
    await queue(app, await add_offer(app, maria), "both")
    providers = app[appkeys.PROVIDERS]
    settings = app[appkeys.SETTINGS]
    sms_limiter = CountingLimiter()
    worker = Worker(
        database=app[appkeys.DATABASE], gateway=providers.payments,
        notifier=Notifier(sms=providers.sms, email=providers.email, brand=settings.brand),
        settings=settings, clock=clock, config=WorkerConfig(), limiter=CountingLimiter(),
        sms_limiter=sms_limiter,
    )
    report = await worker.run_once()
    assert report.outreach_sent == 1 and report.errors == 0
    assert "outreach sent 1" in report.summary
    assert sms_limiter.permits == 1 and len(texts(app)) == 1
    report = await worker.run_once()
    assert report.outreach_queued == 3 and "outreach queued 3" in report.summary
    clock.set(at(date(2026, 12, 10), 9))
    report = await worker.run_once()
    assert (report.offers_expired, report.outreach_sent, report.outreach_skipped) == (1, 1, 3)


def test_worker_config_checks_the_sms_rate():
    with pytest.raises(ValueError):
        WorkerConfig(sms_rate=0)
    assert WorkerConfig().sms_rate == 1.0


# --------------------------------------------------------------------------- the texts

LONG = {
    "brand": "Northwind Recovery Services of America",
    "first_name": "Maximiliana-Josefina",
    "support_contact": "support@northwind-recovery.example or 1-800-555-0199",
    "link_url": "https://pay.northwind-recovery.example/p/AbCdEfGhIjKlMnOpQrStUvWx",
    "sms_signing": True,
    "offer_kind": "plan",
    "total_cents": 9_999_999_99,
    "installment_count": 24,
    "installment_cents": 416_666_67,
    "odd_cents": 416_666_58,
    "odd_position": "last",
    "first_on": date(2027, 12, 15),
    "frequency": "monthly",
    "schedule": [],
    "expires_on": date(2027, 12, 31),
    "expires": "Dec 31, 2027 at 11:59 PM EST",
    "days_left": 7,
}


@pytest.mark.parametrize("kind", ["offer", "reminder", "expired"])
@pytest.mark.parametrize("offer_kind", ["plan", "settlement"])
def test_every_outreach_text_is_gsm7_short_and_says_how_to_stop(kind, offer_kind):
    renderer = SmsRenderer()
    context = {**LONG, "offer_kind": offer_kind}
    for days_left in (1, 3, 0):
        without = compose_sms(renderer, kind, {**context, "days_left": days_left}, disclosure="")
        first = compose_sms(renderer, kind, {**context, "days_left": days_left},
                            disclosure=DISCLOSURE)
        for text in (without, first):
            assert is_gsm7(text) and "  " not in text, text
            assert text.endswith("Reply STOP to opt out."), text
        assert segment_count(without) <= 2, (len(without), without)
        assert segment_count(first) <= 3 and DISCLOSURE in first
        assert ("reply PLAN" in without) == (kind != "expired" and offer_kind == "plan")


async def test_a_creditor_without_a_disclosure_gets_the_default_one(app, client):
    maria = await add_account(app)
    async with app[appkeys.DATABASE].session() as session:
        (await session.get(Creditor, "northwind")).disclosure = ""  # type: ignore[union-attr]
        await session.commit()
    await queue(app, await add_offer(app, maria), "sms")
    await deliver(app)
    assert "This is a communication from a debt collector." in texts(app)[0]


async def test_transactional_records_neither_count_nor_are_sent_by_the_worker(app, client, clock):
    maria = await add_account(app, creditor_settings={"max_proactive_per_week": 1})
    async with app[appkeys.DATABASE].session() as session:
        copy = await enqueue(session, dedupe_key="agreement_copy:1", account_id=maria.id,
                             kind="agreement_copy", channel="email", at=clock.now(),
                             detail={"transactional": True})
        copy.status, copy.sent_at = "sent", clock.now()
        await enqueue(session, dedupe_key="someone-elses:1", account_id=maria.id,
                      kind="something_else", channel="sms", at=clock.now())
        await session.commit()
    await queue(app, await add_offer(app, maria), "sms")
    assert (await deliver(app)).sent == 1
    (other,) = await rows(app, Outreach, Outreach.kind == "something_else")
    assert other.status == "held"


async def test_two_scheduling_passes_in_parallel_queue_each_message_once(app, client, clock,
                                                                        settings):
    maria = await add_account(app)
    ending = await send_offer(app, maria, expires_at=end_of_day(date(2026, 11, 30)))
    open_offer = await send_offer(app, maria, kind="settlement", total=80000,
                                  expires_at=end_of_day(date(2026, 12, 20)))
    clock.set(at(date(2026, 12, 1), 12))
    databases = [Database(settings.database_url), Database(settings.database_url)]
    try:
        reports = await asyncio.gather(*(
            plan_outreach(database=database, settings=settings, clock=clock)
            for database in databases
        ))
    finally:
        for database in databases:
            await database.close()
    assert sum(r.expired for r in reports) == 1
    assert len(await rows(app, Outreach, Outreach.kind == "expired")) == 1
    assert len(await reminders(app, open_offer)) == 3
    assert (await fetch(app, Offer, ending.id)).status == "expired"


async def test_paybot_worker_once_delivers_a_queued_offer(app, client, settings):
    maria = await add_account(app)
    await queue(app, await add_offer(app, maria), "sms")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STRIPE_", "TWILIO_", "SENDGRID_", "DATABASE_URL", "REDIS_URL"))}
    env.update(DATABASE_URL=settings.database_url, PAYBOT_DATA_DIR=str(settings.data_dir))
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url

    async def worker(*args: str) -> tuple[int | None, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "worker", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        async with asyncio.timeout(60):
            out, err = await process.communicate()
        return process.returncode, out.decode(), err.decode()

    code, _, err = await worker("--once", "--sms-rate", "0")
    assert code == 2 and "SMS rate must be a positive number" in err
    # 11 p.m. in New York: quiet hours, held; 8 a.m. the next day: sent.
    code, out, err = await worker("--once", "--at", "2026-11-25T23:00-05:00")
    assert (code, out.strip()) == (0, "worker pass: outreach held 1"), err
    code, out, err = await worker("--once", "--sms-rate", "5", "--at", "2026-11-26T08:00-05:00")
    assert (code, out.strip()) == (0, "worker pass: outreach sent 1"), err
    (line,) = (settings.outbox_dir / "sms.jsonl").read_text().splitlines()
    sent = json.loads(line)
    assert sent["to"] == maria.phone and "Complete Payment Agreement: " in sent["body"]
    code, out, err = await worker("--once", "--no-outreach", "--at", "2026-11-26T09:00-05:00")
    assert (code, out.strip()) == (0, "worker pass: nothing due"), err
