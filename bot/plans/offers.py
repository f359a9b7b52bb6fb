"""Offers made for one account by an agent or an operator: a payment plan with its exact schedule,
or a settlement for less than the balance. Each has an expiry and may be sent at once.

The terms are worked out and checked first, with no I/O (`offer_terms`); only terms that pass every
rule are written, so a refused offer leaves the ledger as it was. The limits come from the
account's creditor (its flow settings over the defaults). Dates are the customer's: "today" is
the date in the account's time zone.

Schedules split the total the way the standing offers show it to customers: every installment
but the last is the same amount (the total divided by the count, rounded up to the cent) and the
last takes what remains, so it is never larger than the others and the sum is the total exactly.
The last installment may be below the creditor's minimum payment: it is the remainder, not a
payment the customer chose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.settings import FlowSettings
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Link, Offer
from bot.money import format_cents
from bot.outreach import queue as outreach
from bot.payments.collectable import collectable
from bot.payments.service import FREQUENCY_STEP
from bot.plans.signing import PlanError
from bot.text.rendering import format_day

FREQUENCIES = tuple(FREQUENCY_STEP)  # weekly, biweekly (every two weeks), monthly
KINDS = ("plan", "settlement")
MAX_LIFETIME_DAYS = 365
RULE_SETTINGS = {"skips_allowed": "plan_skips_allowed", "move_max_days": "plan_move_max_days"}


class InvalidOffer(PlanError):
    """Terms that break a rule; `field` names the input to fix."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


class OfferNotFound(PlanError):
    pass


@dataclass(frozen=True)
class OfferRequest:
    """What an agent or operator asks for; amounts in cents, dates as the customer's dates.

    A plan is either `frequency` + `start` + (`count` and/or `installment_cents`), or a custom
    `schedule`. A settlement is `settlement_cents` or `discount_bps` (2500 = 25 % off). The expiry
    is at most one of `expires_at`, `expires_on` (the end of that day, customer's time) and
    `expires_in_days`; none: the creditor's offer lifetime.
    """

    kind: str
    created_by: str
    total_cents: int | None = None  # a plan's total; None: the whole balance
    frequency: str | None = None
    start: date | None = None
    count: int | None = None
    installment_cents: int | None = None
    schedule: tuple[tuple[date, int], ...] | None = None
    rules: dict[str, Any] | None = None
    settlement_cents: int | None = None
    discount_bps: int | None = None
    expires_at: datetime | None = None
    expires_on: date | None = None
    expires_in_days: int | None = None
    send_via: str | None = None  # sms | email | both | None (not sent now)


@dataclass(frozen=True)
class OfferTerms:
    kind: str
    total_cents: int
    schedule: list[tuple[date, int]] | None
    frequency: str | None
    discount_bps: int | None
    rules: dict[str, Any] | None
    expires_at: datetime
    installment_count: int = field(default=1)


def percent_to_bps(text: str) -> int:
    """ "36" or "12.5" (percent) -> basis points; at most two decimals."""
    try:
        value = Decimal(text.strip().rstrip("%").strip())
    except (InvalidOperation, AttributeError) as exc:
        raise InvalidOffer("percent_off", "must be a number such as 25 or 12.5") from exc
    if not value.is_finite() or value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise InvalidOffer("percent_off", "must be a number with at most two decimals")
    if not 0 < value < 100:  # compared as a Decimal: "1e999999999" never becomes an int
        raise InvalidOffer("percent_off", "must be more than 0 and less than 100")
    return int(value * 100)


def is_short_name(value: object) -> bool:
    """Who made or changed something (``agent:jsmith``): short, one printable line."""
    return isinstance(value, str) and 0 < len(value.strip()) <= 40 and value.isprintable()


def end_of_day(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=zone).astimezone(UTC)


def split_evenly(total_cents: int, count: int) -> list[int]:
    """`count` amounts adding up to the total: equal, rounded up, the last takes the rest."""
    each = -(-total_cents // count)
    return [each] * (count - 1) + [total_cents - each * (count - 1)]


def dated(start: date, frequency: str, amounts: list[int]) -> list[tuple[date, int]]:
    # start + step * n (not repeated steps) keeps month ends: Jan 31 -> Feb 28 -> Mar 31.
    step = FREQUENCY_STEP[frequency]
    return [(start + step * n, amount) for n, amount in enumerate(amounts)]


def offer_terms(
    request: OfferRequest, *, balance_cents: int, flow: FlowSettings, now: datetime, zone: ZoneInfo
) -> OfferTerms:
    """The offer's exact terms, or InvalidOffer naming the first input that breaks a rule."""
    if request.kind not in KINDS:
        raise InvalidOffer("kind", "must be plan or settlement")
    if not is_short_name(request.created_by):
        raise InvalidOffer("created_by", "must be a short name (at most 40 characters)")
    if request.send_via is not None and request.send_via not in outreach.CHANNELS:
        raise InvalidOffer("send_via", "must be sms, email or both")
    if balance_cents <= 0:
        raise InvalidOffer("account", "the balance is zero: there is nothing to offer")
    today = now.astimezone(zone).date()
    if request.kind == "settlement":
        total, bps = _settlement_total(request, balance_cents)
        expires_at = _expiry(request, flow=flow, now=now, zone=zone, today=today, latest=None)
        return OfferTerms("settlement", total, None, None, bps, None, expires_at)
    schedule, frequency = _plan_schedule(request, balance_cents, flow=flow, today=today)
    rules = _rules(request.rules, flow)
    expires_at = _expiry(request, flow=flow, now=now, zone=zone, today=today, latest=schedule[0][0])
    return OfferTerms(
        "plan",
        sum(amount for _, amount in schedule),
        schedule,
        frequency,
        None,
        rules,
        expires_at,
        installment_count=len(schedule),
    )


def _settlement_total(request: OfferRequest, balance_cents: int) -> tuple[int, int | None]:
    if _given(
        request.frequency,
        request.start,
        request.count,
        request.installment_cents,
        request.schedule,
        request.total_cents,
        request.rules,
    ):
        raise InvalidOffer("kind", "a settlement has an amount or a percentage off, no schedule")
    if (request.settlement_cents is None) == (request.discount_bps is None):
        raise InvalidOffer("settlement_amount", "give either an amount or a percentage off")
    if request.discount_bps is not None:
        if not 0 < request.discount_bps < 10000:
            raise InvalidOffer("percent_off", "must be more than 0 and less than 100")
        # Whole cents: the discount is rounded down, never more than the percentage agreed.
        total = balance_cents - balance_cents * request.discount_bps // 10000
        if total >= balance_cents:
            raise InvalidOffer("percent_off", "is too small to take a cent off this balance")
        return total, request.discount_bps
    total = request.settlement_cents
    assert total is not None
    if total <= 0:
        raise InvalidOffer("settlement_amount", "must be more than 0")
    if total >= balance_cents:
        raise InvalidOffer(
            "settlement_amount", f"must be less than the balance ({format_cents(balance_cents)})"
        )
    return total, None


def _plan_schedule(
    request: OfferRequest, balance_cents: int, *, flow: FlowSettings, today: date
) -> tuple[list[tuple[date, int]], str | None]:
    if _given(request.settlement_cents, request.discount_bps):
        raise InvalidOffer("kind", "a plan has installments, not a settlement amount")
    if request.schedule is not None:
        if _given(request.frequency, request.start, request.count, request.installment_cents):
            raise InvalidOffer(
                "schedule", "give either a schedule or a frequency with a start date, not both"
            )
        schedule = list(request.schedule)
        _check_schedule(
            schedule, request.total_cents, balance_cents, flow=flow, today=today, custom=True
        )
        return schedule, None

    total = balance_cents if request.total_cents is None else request.total_cents
    if total <= 0:
        raise InvalidOffer("total", "must be more than 0")
    if total > balance_cents:
        raise InvalidOffer(
            "total", f"must not be more than the balance ({format_cents(balance_cents)})"
        )
    if request.frequency not in FREQUENCIES:
        raise InvalidOffer("frequency", "must be weekly, biweekly or monthly")
    if request.start is None:
        raise InvalidOffer("start_date", "is required (YYYY-MM-DD)")
    count, each = request.count, request.installment_cents
    if count is None and each is None:
        raise InvalidOffer("count", "give the number of installments or the installment amount")
    if count is not None and count < 1:
        raise InvalidOffer("count", "must be at least 1")
    if each is not None and each <= 0:
        raise InvalidOffer("installment_amount", "must be more than 0")
    if count is None:
        assert each is not None
        count = -(-total // each)
    if count > flow.plan_max_installments:
        raise InvalidOffer("count", f"must be at most {flow.plan_max_installments} installments")
    if each is None:
        amounts = split_evenly(total, count)
    else:
        rest = total - each * (count - 1)
        if not 0 < rest <= each:
            raise InvalidOffer(
                "installment_amount",
                f"{count} installments of {format_cents(each)} do not add up to "
                f"{format_cents(total)}",
            )
        amounts = [each] * (count - 1) + [rest]
    _check_first_date(request.start, "start_date", flow=flow, today=today)
    schedule = dated(request.start, request.frequency, amounts)
    _check_schedule(schedule, total, balance_cents, flow=flow, today=today, custom=False)
    return schedule, request.frequency


def _check_schedule(
    schedule: list[tuple[date, int]],
    total_cents: int | None,
    balance_cents: int,
    *,
    flow: FlowSettings,
    today: date,
    custom: bool,
) -> None:
    # A custom schedule's errors point at the schedule; a computed one's at what it came from.
    start_field, count_field, amount_field = (
        ("schedule",) * 3 if custom else ("start_date", "count", "installment_amount")
    )
    if not schedule:
        raise InvalidOffer("schedule", "needs at least one installment")
    if len(schedule) > flow.plan_max_installments:
        raise InvalidOffer(
            count_field,
            f"must be at most {flow.plan_max_installments} installments",
        )
    _check_first_date(schedule[0][0], start_field, flow=flow, today=today)
    for (before, _), (after, _) in zip(schedule, schedule[1:], strict=False):
        if after <= before:
            raise InvalidOffer("schedule", "dates must be in order, one installment a day at most")
    for n, (day, amount) in enumerate(schedule, start=1):
        if amount <= 0:
            raise InvalidOffer(
                "schedule", f"installment {n} ({day.isoformat()}) must be more than 0"
            )
        if n < len(schedule) and amount < flow.min_payment_cents:
            raise InvalidOffer(
                amount_field,
                f"installment {n} is below the minimum payment of "
                f"{format_cents(flow.min_payment_cents)}",
            )
    total = sum(amount for _, amount in schedule)
    if total_cents is not None and total != total_cents:
        raise InvalidOffer(
            "schedule",
            f"the installments add up to {format_cents(total)}, not {format_cents(total_cents)}",
        )
    if total > balance_cents:
        raise InvalidOffer(
            "total", f"must not be more than the balance ({format_cents(balance_cents)})"
        )


def _check_first_date(first: date, field_name: str, *, flow: FlowSettings, today: date) -> None:
    if first < today:
        raise InvalidOffer(field_name, f"must not be in the past (today is {today.isoformat()})")
    horizon = today + timedelta(days=flow.plan_start_horizon_days)
    if first > horizon:
        raise InvalidOffer(
            field_name,
            f"the first installment must be within {flow.plan_start_horizon_days} days "
            f"(by {horizon.isoformat()})",
        )


def _rules(given: dict[str, Any] | None, flow: FlowSettings) -> dict[str, Any]:
    rules: dict[str, Any] = {
        name: getattr(flow, setting) for name, setting in RULE_SETTINGS.items()
    }
    for name, value in (given or {}).items():
        if name not in RULE_SETTINGS:
            raise InvalidOffer(
                "rules",
                f"unknown rule {str(name)[:40]!r}; the rules are {', '.join(RULE_SETTINGS)}",
            )
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 365:
            raise InvalidOffer("rules", f"{name} must be a whole number from 0 to 365")
        rules[name] = value
    return rules


def _expiry(
    request: OfferRequest,
    *,
    flow: FlowSettings,
    now: datetime,
    zone: ZoneInfo,
    today: date,
    latest: date | None,
) -> datetime:
    """When the offer lapses. A plan offer lapses at the latest at the end of its first
    installment's day: signed later, that installment would already be overdue."""
    given = _given(request.expires_at, request.expires_on, request.expires_in_days)
    if given > 1:
        raise InvalidOffer("expires_at", "give expires_at or expires_in_days, not both")
    if request.expires_at is not None:
        if request.expires_at.tzinfo is None:
            raise InvalidOffer("expires_at", "needs a UTC offset, e.g. 2026-12-31T23:00:00-05:00")
        try:
            expires = request.expires_at.astimezone(UTC)
        except OverflowError as exc:  # year 1 or 9999 with an offset
            raise InvalidOffer("expires_at", f"must be within {MAX_LIFETIME_DAYS} days") from exc
    elif request.expires_on is not None:
        if not today <= request.expires_on <= today + timedelta(days=MAX_LIFETIME_DAYS):
            raise InvalidOffer("expires_at", f"must be a day within {MAX_LIFETIME_DAYS} days")
        expires = end_of_day(request.expires_on, zone)
    elif request.expires_in_days is not None:
        if not 1 <= request.expires_in_days <= MAX_LIFETIME_DAYS:
            raise InvalidOffer("expires_in_days", f"must be from 1 to {MAX_LIFETIME_DAYS}")
        expires = end_of_day(today + timedelta(days=request.expires_in_days), zone)
    else:
        expires = end_of_day(today + timedelta(days=flow.offer_lifetime_days), zone)
        if latest is not None:
            expires = min(expires, end_of_day(latest, zone))
        return expires
    if expires <= now:
        raise InvalidOffer("expires_at", "must be in the future")
    if expires > now + timedelta(days=MAX_LIFETIME_DAYS + 1):
        raise InvalidOffer("expires_at", f"must be within {MAX_LIFETIME_DAYS} days")
    if latest is not None and expires > end_of_day(latest, zone):
        raise InvalidOffer(
            "expires_at", f"must not be after the first installment ({latest.isoformat()})"
        )
    return expires


def _given(*values: object) -> int:
    return sum(value is not None for value in values)


async def flow_settings_for(
    session: AsyncSession, account: Account, base: FlowSettings
) -> FlowSettings:
    creditor = await ledger.creditor_of(session, account)
    return base.for_creditor(creditor)


def account_zone(account: Account) -> ZoneInfo:
    return ZoneInfo(account.timezone or "America/New_York")


async def create_offer(
    session: AsyncSession,
    account: Account,
    request: OfferRequest,
    *,
    flow: FlowSettings,
    at: datetime,
) -> Offer:
    """Check the terms against the creditor's limits, write the offer and commit. With
    `send_via`, the message ("Complete Payment Agreement" and the link) is queued for the
    worker, which sends it when it may (opt-outs, quiet hours). Invalid terms raise
    InvalidOffer and write nothing."""
    limits = await flow_settings_for(session, account, flow)
    # Offers are measured against what is open (bot/payments/collectable.py), not the bare
    # balance: a plan never promises, nor a settlement "saves", what is already scheduled or on
    # its way.
    state = await collectable(session, account.id, balance_cents=account.balance_cents)
    if account.balance_cents > 0 and state.open_cents <= 0:
        raise InvalidOffer("account", state.explanation())
    terms = offer_terms(
        request,
        balance_cents=state.open_cents,
        flow=limits,
        now=at,
        zone=account_zone(account),
    )
    if request.send_via == "sms" and not account.phone:
        raise InvalidOffer("send_via", "the account has no phone number")
    if request.send_via == "email" and not account.email:
        raise InvalidOffer("send_via", "the account has no email address")
    if request.send_via == "both" and not (account.phone or account.email):
        raise InvalidOffer("send_via", "the account has no phone number or email address")
    offer = Offer(
        account_id=account.id,
        kind=terms.kind,
        total_cents=terms.total_cents,
        installment_count=terms.installment_count,
        frequency=terms.frequency,
        expires_at=terms.expires_at,
        status="open",
        created_at=at,
        schedule=(
            [[day.isoformat(), amount] for day, amount in terms.schedule]
            if terms.schedule is not None
            else None
        ),
        discount_bps=terms.discount_bps,
        rules=terms.rules,
        created_by=request.created_by.strip(),
    )
    session.add(offer)
    await session.flush()
    if request.send_via is not None:
        await outreach.enqueue(
            session,
            dedupe_key=f"offer:{offer.id}",
            account_id=account.id,
            kind="offer",
            channel=request.send_via,
            offer_id=offer.id,
            at=at,
        )
    await ledger.audit(
        session,
        "offer_created",
        at=at,
        actor=offer.created_by or "api",
        account_id=account.id,
        offer_id=offer.id,
        offer_kind=offer.kind,
        total_cents=offer.total_cents,
        installments=offer.installment_count,
        send_via=request.send_via,
    )
    await session.commit()
    return offer


async def withdraw_offer(
    session: AsyncSession, offer_id: int, *, actor: str, at: datetime
) -> Offer:
    """Withdraw an open offer and commit: it can no longer be signed and its links stop working
    (a message still queued for it is dropped by the worker, as the offer is not open)."""
    # One conditional UPDATE decides, on either backend: of two withdrawals at once only one
    # changes the offer, and an offer no longer open is left as it is.
    changed = await session.execute(
        update(Offer)
        .where(Offer.id == offer_id, Offer.status == "open")
        .values(status="withdrawn")
        .execution_options(synchronize_session=False)
    )
    offer = await session.get(Offer, offer_id, populate_existing=True)
    if offer is None:
        raise OfferNotFound("No offer with that id.")
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        status = offer.status
        await session.rollback()
        if status == "accepted":
            raise PlanError("The offer was already signed: cancel the plan instead.")
        raise PlanError(f"The offer is already {status}.")
    await session.execute(
        update(Link)
        .where(Link.offer_id == offer.id, Link.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    await ledger.audit(
        session,
        "offer_withdrawn",
        at=at,
        actor=actor[:40],
        account_id=offer.account_id,
        offer_id=offer.id,
    )
    await session.commit()
    return offer


async def offers_for(session: AsyncSession, account_id: int) -> list[Offer]:
    return list(
        await session.scalars(
            select(Offer).where(Offer.account_id == account_id).order_by(Offer.id)
        )
    )


def offer_schedule(offer: Offer) -> list[tuple[date, int]]:
    return [(date.fromisoformat(day), int(cents)) for day, cents in offer.schedule or []]


def offer_status(offer: Offer, now: datetime) -> str:
    """The status a person should read: an open offer past its expiry is expired, whether or not
    the worker has marked it yet."""
    if offer.status == "open" and offer.expires_at is not None and offer.expires_at <= now:
        return "expired"
    return offer.status


def describe_offer(offer: Offer, zone: ZoneInfo, *, now: datetime, to: str = "") -> list[str]:
    """The offer in the customer's terms, one line each (the CLI prints these)."""
    title = f"Offer {offer.id} ({offer_status(offer, now)}){' to ' + to if to else ''}"
    expires = (
        f", expires {format_day(offer.expires_at.astimezone(zone).date())}"
        if offer.expires_at
        else ""
    )
    if offer.kind == "settlement":
        off = f" ({offer.discount_bps / 100:g}% off)" if offer.discount_bps is not None else ""
        return [f"{title}: settle for {format_cents(offer.total_cents)}{off}{expires}"]
    schedule = offer_schedule(offer)
    how_often = {"biweekly": "every-2-weeks"}.get(offer.frequency or "", offer.frequency or "")
    count = len(schedule) or offer.installment_count
    lines = [
        f"{title}: {count} {how_often + ' ' if how_often else ''}payments, "
        f"{format_cents(offer.total_cents)} in all{expires}"
    ]
    if not schedule:  # a standing offer: the customer picks the first date
        lines.append("  (the customer chooses the first date)")
    lines += [
        f"  {n}. {format_day(day)}  {format_cents(amount)}"
        for n, (day, amount) in enumerate(schedule, start=1)
    ]
    return lines
