"""Offers made for one account (bot/plans/offers.py): exact schedules that add up to the cent, the
creditor's limits, settlements by amount or percentage, the queued message, withdrawal.

The clock is the suite's: Wednesday 2026-11-25, 10:00 in New York."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot import appkeys
from bot.config.settings import FlowSettings
from bot.ledger.models import AuditEvent, Link, Offer, Outreach
from bot.plans import offers
from bot.plans.offers import InvalidOffer, OfferRequest, offer_terms
from bot.plans.signing import PlanError
from tests.conftest import START
from tests.seed import add_account

NY = ZoneInfo("America/New_York")
FLOW = FlowSettings()


def terms(balance: int = 125000, flow: FlowSettings = FLOW, now: datetime = START,
          zone: ZoneInfo = NY, **request):  # type: ignore[no-untyped-def]
    request.setdefault("created_by", "agent:jsmith")
    return offer_terms(OfferRequest(**request), balance_cents=balance, flow=flow, now=now,
                       zone=zone)


def plan(**request):  # type: ignore[no-untyped-def]
    return terms(kind="plan", **request)


# --- schedules: exact, to the cent ---

def test_six_monthly_payments_of_the_balance_as_the_customer_sees_them():
    offer = plan(frequency="monthly", start=date(2026, 12, 15), count=6)
    assert offer.schedule == [
        (date(2026, 12, 15), 20834), (date(2027, 1, 15), 20834), (date(2027, 2, 15), 20834),
        (date(2027, 3, 15), 20834), (date(2027, 4, 15), 20834), (date(2027, 5, 15), 20830),
    ]
    assert offer.total_cents == 125000 and offer.installment_count == 6
    assert offer.frequency == "monthly"
    assert offer.rules == {"skips_allowed": 1, "move_max_days": 14}


@pytest.mark.parametrize(("frequency", "days"), [("weekly", 7), ("biweekly", 14)])
def test_weekly_and_every_two_weeks(frequency, days):
    offer = plan(frequency=frequency, start=date(2026, 11, 27), count=7, total_cents=100000)
    dates = [day for day, _ in offer.schedule]
    assert dates == [date(2026, 11, 27) + timedelta(days=days * n) for n in range(7)]
    assert [amount for _, amount in offer.schedule] == [14286] * 6 + [14284]
    assert sum(amount for _, amount in offer.schedule) == 100000


def test_monthly_from_a_month_end_keeps_to_month_ends():
    clock_now = datetime(2027, 1, 20, 15, tzinfo=UTC)
    offer = plan(frequency="monthly", start=date(2027, 1, 31), count=4, total_cents=40001,
                 now=clock_now)
    assert [day for day, _ in offer.schedule] == [
        date(2027, 1, 31), date(2027, 2, 28), date(2027, 3, 31), date(2027, 4, 30)]
    assert [amount for _, amount in offer.schedule] == [10001, 10001, 10001, 9998]


def test_an_installment_amount_sets_the_count_and_the_last_takes_the_rest():
    offer = plan(frequency="monthly", start=date(2026, 12, 1), installment_cents=50000)
    assert offer.schedule == [
        (date(2026, 12, 1), 50000), (date(2027, 1, 1), 50000), (date(2027, 2, 1), 25000)]
    # Count and amount together: the amounts must add up, the last taking the rest.
    offer = plan(frequency="monthly", start=date(2026, 12, 15), count=6, installment_cents=20834)
    assert [amount for _, amount in offer.schedule] == [20834] * 5 + [20830]
    with pytest.raises(InvalidOffer, match="6 installments of \\$100.00 do not add up"):
        plan(frequency="monthly", start=date(2026, 12, 15), count=6, installment_cents=10000)


def test_a_custom_schedule_is_kept_as_given():
    schedule = ((date(2026, 11, 25), 5000), (date(2026, 12, 3), 70000), (date(2027, 2, 1), 50000))
    offer = plan(schedule=schedule)
    assert offer.schedule == list(schedule) and offer.total_cents == 125000
    assert offer.frequency is None and offer.installment_count == 3
    assert plan(schedule=schedule, total_cents=125000).total_cents == 125000


def test_a_part_of_the_balance_can_be_planned():
    offer = plan(frequency="weekly", start=date(2026, 11, 30), count=4, total_cents=30000)
    assert [amount for _, amount in offer.schedule] == [7500] * 4


# --- the limits ---

REFUSED = [
    ({"frequency": "monthly", "start": date(2026, 11, 24), "count": 6}, "start_date",
     "must not be in the past"),
    ({"frequency": "monthly", "start": date(2026, 12, 26), "count": 6}, "start_date",
     "within 30 days"),
    ({"frequency": "monthly", "start": date(2026, 12, 1), "count": 25}, "count", "at most 24"),
    ({"frequency": "monthly", "start": date(2026, 12, 1), "count": 0}, "count", "at least 1"),
    ({"frequency": "monthly", "start": date(2026, 12, 1)}, "count", "number of installments"),
    ({"frequency": "daily", "start": date(2026, 12, 1), "count": 6}, "frequency", "weekly"),
    ({"frequency": "monthly", "count": 6}, "start_date", "is required"),
    ({"frequency": "monthly", "start": date(2026, 12, 1), "installment_cents": 2000}, "count",
     "at most 24"),
    ({"frequency": "weekly", "start": date(2026, 12, 1), "count": 10, "total_cents": 20000},
     "installment_amount", "below the minimum payment of $25.00"),
    ({"frequency": "monthly", "start": date(2026, 12, 1), "count": 2, "total_cents": 125001},
     "total", "more than the balance"),
    ({"frequency": "monthly", "start": date(2026, 12, 1), "count": 2, "total_cents": 0},
     "total", "more than 0"),
    ({"frequency": "monthly", "start": date(2026, 12, 1), "installment_cents": -5},
     "installment_amount", "more than 0"),
    ({"schedule": ((date(2026, 12, 1), 5000), (date(2026, 12, 1), 5000))}, "schedule",
     "in order"),
    ({"schedule": ((date(2026, 12, 9), 5000), (date(2026, 12, 1), 5000))}, "schedule",
     "in order"),
    ({"schedule": ((date(2026, 11, 20), 5000), (date(2026, 12, 1), 5000))}, "schedule",
     "in the past"),
    ({"schedule": ((date(2026, 12, 1), 5000), (date(2026, 12, 9), 0))}, "schedule",
     "more than 0"),
    ({"schedule": ((date(2026, 12, 1), 5000), (date(2026, 12, 9), 5000)), "total_cents": 12000},
     "schedule", "add up to $100.00, not $120.00"),
    ({"schedule": ((date(2026, 12, 1), 100000), (date(2026, 12, 9), 50000))}, "total",
     "more than the balance"),
    ({"schedule": ()}, "schedule", "at least one"),
    ({"schedule": ((date(2026, 12, 1), 5000),), "frequency": "weekly"}, "schedule", "not both"),
    ({"frequency": "monthly", "start": date(2026, 12, 1), "count": 6, "settlement_cents": 100},
     "kind", "not a settlement"),
    ({"frequency": "monthly", "start": date(2026, 12, 1), "count": 6,
      "rules": {"skips_allowed": -1}}, "rules", "whole number"),
    ({"frequency": "monthly", "start": date(2026, 12, 1), "count": 6, "rules": {"pause": 2}},
     "rules", "unknown rule"),
    ({"frequency": "monthly", "start": date(2026, 12, 1), "count": 6, "created_by": ""},
     "created_by", "short name"),
    ({"frequency": "monthly", "start": date(2026, 12, 1), "count": 6, "send_via": "fax"},
     "send_via", "sms, email or both"),
    ({"frequency": "monthly", "start": date(2026, 12, 1), "count": 6, "expires_in_days": 0},
     "expires_in_days", "from 1 to 365"),
    ({"frequency": "monthly", "start": date(2026, 12, 1), "count": 6,
      "expires_on": date(2026, 12, 2)}, "expires_at", "not be after the first installment"),
    ({"frequency": "monthly", "start": date(2026, 12, 1), "count": 6,
      "expires_at": datetime(2026, 11, 25, 14, tzinfo=UTC)}, "expires_at", "in the future"),
    ({"frequency": "monthly", "start": date(2026, 12, 1), "count": 6, "expires_in_days": 2,
      "expires_on": date(2026, 11, 30)}, "expires_at", "not both"),
]


@pytest.mark.parametrize(("request_", "field", "reason"), REFUSED,
                         ids=[str(n) for n in range(len(REFUSED))])
def test_terms_that_break_a_rule_are_refused_naming_the_field(request_, field, reason):
    with pytest.raises(InvalidOffer) as refused:
        plan(**request_)
    assert refused.value.field == field
    assert reason in str(refused.value)
    assert str(refused.value).startswith(f"{field}: ")


def test_today_is_the_customers_date():
    # 05:30 UTC on Nov 26 is still Nov 25 in Los Angeles: a plan may start on the 25th there...
    late = datetime(2026, 11, 26, 5, 30, tzinfo=UTC)
    la = ZoneInfo("America/Los_Angeles")
    offer = plan(frequency="weekly", start=date(2026, 11, 25), count=4, now=late, zone=la)
    assert offer.schedule[0][0] == date(2026, 11, 25)
    # ... the offer lapses at the end of that day, Los Angeles time ...
    assert offer.expires_at == datetime(2026, 11, 25, 23, 59, 59, tzinfo=la).astimezone(UTC)
    # ... but not in New York, where it is already the 26th.
    with pytest.raises(InvalidOffer, match="in the past"):
        plan(frequency="weekly", start=date(2026, 11, 25), count=4, now=late, zone=NY)


def test_the_creditors_limits_apply():
    strict = FLOW.merged({"plan_max_installments": 3, "plan_start_horizon_days": 5,
                          "min_payment_cents": 30000, "plan_skips_allowed": 0})
    with pytest.raises(InvalidOffer, match="at most 3 installments"):
        plan(flow=strict, frequency="monthly", start=date(2026, 11, 28), count=4)
    with pytest.raises(InvalidOffer, match="within 5 days"):
        plan(flow=strict, frequency="monthly", start=date(2026, 12, 1), count=3)
    with pytest.raises(InvalidOffer, match="minimum payment of \\$300.00"):
        plan(flow=strict, frequency="monthly", start=date(2026, 11, 28), count=3,
             total_cents=60000)
    offer = plan(flow=strict, frequency="monthly", start=date(2026, 11, 30), count=3,
                 rules={"move_max_days": 3})
    assert offer.rules == {"skips_allowed": 0, "move_max_days": 3}


def test_the_default_expiry_is_the_offer_lifetime_but_never_after_the_first_installment():
    far = plan(frequency="monthly", start=date(2026, 12, 20), count=6)
    assert far.expires_at == datetime(2026, 12, 9, 23, 59, 59, tzinfo=NY).astimezone(UTC)
    near = plan(frequency="monthly", start=date(2026, 11, 28), count=6)
    assert near.expires_at == datetime(2026, 11, 28, 23, 59, 59, tzinfo=NY).astimezone(UTC)
    given = plan(frequency="monthly", start=date(2026, 12, 20), count=6, expires_in_days=3)
    assert given.expires_at == datetime(2026, 11, 28, 23, 59, 59, tzinfo=NY).astimezone(UTC)


# --- settlements ---

def test_a_settlement_by_amount_or_by_percentage_off():
    by_amount = terms(kind="settlement", settlement_cents=80000)
    assert (by_amount.total_cents, by_amount.discount_bps, by_amount.schedule) == (80000, None,
                                                                                   None)
    by_percent = terms(kind="settlement", discount_bps=3600)
    assert (by_percent.total_cents, by_percent.discount_bps) == (80000, 3600)
    # The discount is rounded down: 12.5 % off $99.99 is $12.49 off (never more than agreed).
    odd = terms(kind="settlement", balance=9999, discount_bps=offers.percent_to_bps("12.5"))
    assert odd.total_cents == 8750
    assert by_amount.expires_at == datetime(2026, 12, 9, 23, 59, 59, tzinfo=NY).astimezone(UTC)


@pytest.mark.parametrize(("request_", "reason"), [
    ({"settlement_cents": 125000}, "settlement_amount: must be less than the balance ($1,250.00)"),
    ({"settlement_cents": 0}, "settlement_amount: must be more than 0"),
    ({}, "settlement_amount: give either an amount or a percentage off"),
    ({"settlement_cents": 80000, "discount_bps": 100}, "settlement_amount: give either"),
    ({"discount_bps": 10000}, "percent_off: must be more than 0 and less than 100"),
    ({"settlement_cents": 80000, "count": 2}, "kind: a settlement has an amount"),
])
def test_settlements_that_break_a_rule(request_, reason):
    with pytest.raises(InvalidOffer) as refused:
        terms(kind="settlement", **request_)
    assert str(refused.value).startswith(reason)


@pytest.mark.parametrize("text", ["0", "100", "-5", "12.345", "abc", "nan", "inf", "",
                                  "1e999999999", "-1e999999999", "1e-999999999", "0.001"])
def test_percentages_that_are_not_one(text):
    with pytest.raises(InvalidOffer, match="percent_off"):
        offers.percent_to_bps(text)


def test_percentages():
    assert [offers.percent_to_bps(t) for t in ("36", "12.5", "0.01", "99.99", " 25% ")] == [
        3600, 1250, 1, 9999, 2500]


# --- writing: the offer, its message, nothing when refused ---

async def counts(app) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return (
            await session.scalar(select(func.count()).select_from(Offer)) or 0,
            await session.scalar(select(func.count()).select_from(Outreach)) or 0,
            await session.scalar(
                select(func.count()).select_from(AuditEvent).where(
                    AuditEvent.kind == "offer_created")) or 0,
        )


async def create(app, account, request: OfferRequest) -> Offer:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return await offers.create_offer(
            session, account, request, flow=app[appkeys.SETTINGS].flow,
            at=app[appkeys.CLOCK].now())


async def test_an_offer_sent_by_sms_is_written_and_its_message_queued(app, client):
    account = await add_account(app)
    offer = await create(app, account, OfferRequest(
        kind="plan", created_by="agent:jsmith", frequency="monthly", start=date(2026, 12, 15),
        count=6, send_via="sms"))
    async with app[appkeys.DATABASE].session() as session:
        stored = await session.get(Offer, offer.id)
        (queued,) = await session.scalars(select(Outreach))
    assert stored is not None and stored.status == "open" and stored.kind == "plan"
    assert stored.schedule == [["2026-12-15", 20834], ["2027-01-15", 20834],
                               ["2027-02-15", 20834], ["2027-03-15", 20834],
                               ["2027-04-15", 20834], ["2027-05-15", 20830]]
    assert stored.total_cents == 125000 and stored.installment_count == 6
    assert stored.created_by == "agent:jsmith" and stored.sent_at is None
    assert stored.expires_at == datetime(2026, 12, 9, 23, 59, 59, tzinfo=NY).astimezone(UTC)
    assert (queued.dedupe_key, queued.kind, queued.channel, queued.status) == (
        f"offer:{offer.id}", "offer", "sms", "held")
    assert queued.offer_id == offer.id and queued.account_id == account.id
    assert queued.not_before == START
    assert await counts(app) == (1, 1, 1)


async def test_an_offer_not_sent_queues_nothing(app, client):
    account = await add_account(app)
    await create(app, account, OfferRequest(kind="settlement", created_by="api",
                                            discount_bps=3600))
    assert await counts(app) == (1, 0, 1)


async def test_the_creditors_settings_are_the_limits(app, client):
    account = await add_account(app, creditor_settings={"plan_max_installments": 3,
                                                        "offer_lifetime_days": 2})
    with pytest.raises(InvalidOffer, match="count: must be at most 3"):
        await create(app, account, OfferRequest(kind="plan", created_by="api",
                                                frequency="monthly", start=date(2026, 12, 1),
                                                count=4))
    offer = await create(app, account, OfferRequest(kind="settlement", created_by="api",
                                                    settlement_cents=90000))
    assert offer.expires_at == datetime(2026, 11, 27, 23, 59, 59, tzinfo=NY).astimezone(UTC)


@pytest.mark.parametrize(("request_", "reason"), [
    ({"kind": "plan", "frequency": "monthly", "start": date(2026, 11, 1), "count": 6},
     "start_date: must not be in the past"),
    ({"kind": "settlement", "settlement_cents": 200000}, "settlement_amount"),
    ({"kind": "settlement", "settlement_cents": 80000, "send_via": "email"},
     "send_via: the account has no email address"),
])
async def test_a_refused_offer_writes_nothing(app, client, request_, reason):
    account = await add_account(app, email=None)
    with pytest.raises(InvalidOffer, match=reason):
        await create(app, account, OfferRequest(created_by="api", **request_))
    assert await counts(app) == (0, 0, 0)


async def test_sms_needs_a_phone_and_both_needs_one_of_them(app, client):
    account = await add_account(app, phone=None)
    with pytest.raises(InvalidOffer, match="send_via: the account has no phone number"):
        await create(app, account, OfferRequest(kind="settlement", created_by="api",
                                                settlement_cents=80000, send_via="sms"))
    await create(app, account, OfferRequest(kind="settlement", created_by="api",
                                            settlement_cents=80000, send_via="both"))
    assert await counts(app) == (1, 1, 1)


# --- withdrawal ---

async def test_withdrawing_an_offer_revokes_its_links(app, client):
    account = await add_account(app)
    offer = await create(app, account, OfferRequest(kind="settlement", created_by="api",
                                                    settlement_cents=80000, send_via="sms"))
    now = app[appkeys.CLOCK].now()
    async with app[appkeys.DATABASE].session() as session:
        for n, offer_id in enumerate((offer.id, None)):
            session.add(Link(token_sha256=f"{n:064d}", account_id=account.id, offer_id=offer_id,
                             purpose="plan_offer", expires_at=now + timedelta(days=3),
                             created_at=now))
        await session.commit()
    app[appkeys.CLOCK].advance(timedelta(hours=1))
    async with app[appkeys.DATABASE].session() as session:
        withdrawn = await offers.withdraw_offer(session, offer.id, actor="agent:jsmith",
                                                at=app[appkeys.CLOCK].now())
    assert withdrawn.status == "withdrawn"
    async with app[appkeys.DATABASE].session() as session:
        links = {link.offer_id: link.revoked_at for link in await session.scalars(select(Link))}
        audit = await session.scalar(
            select(AuditEvent).where(AuditEvent.kind == "offer_withdrawn"))
    assert links == {offer.id: START + timedelta(hours=1), None: None}
    assert audit is not None and audit.actor == "agent:jsmith"
    async with app[appkeys.DATABASE].session() as session:
        with pytest.raises(PlanError, match="already withdrawn"):
            await offers.withdraw_offer(session, offer.id, actor="api", at=START)
        with pytest.raises(offers.OfferNotFound):
            await offers.withdraw_offer(session, offer.id + 100, actor="api", at=START)
