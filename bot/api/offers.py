"""The offers resource: make a plan or settlement offer for an account, list its offers, read
one, withdraw one.

A body becomes the domain's OfferRequest here (its messages name the field), the domain's rules
(bot/plans/offers.py: the balance, today's date, the creditor's limits) judge it, and then it is
held to OfferInput, its schema in the document.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from sqlalchemy import select

from bot import appkeys
from bot.api.documents import OfferList, answer_body, offer_view
from bot.api.models import OFFER_FIELDS, OfferInput, WithdrawOfferInput
from bot.api.problems import (
    is_account_ref,
    json_object,
    problem,
    request_model,
    row_id,
    validated,
)
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Offer, Plan
from bot.money import InvalidAmount, dollars_to_cents
from bot.plans import offers
from bot.plans import signing as plans


def offer_request(body: dict[str, Any]) -> offers.OfferRequest:
    """The JSON body as the domain's request: amounts in dollars become cents, dates become
    dates; a value of the wrong kind is an InvalidOffer naming the field."""
    unknown = sorted(str(name) for name in body if name not in OFFER_FIELDS)
    if unknown:
        raise offers.InvalidOffer(
            "body", f"unknown field(s): {', '.join(n[:40] for n in unknown[:10])}"
        )

    def cents(name: str) -> int | None:
        return None if body.get(name) is None else to_cents(name, body[name])

    def to_cents(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
            raise offers.InvalidOffer(name, 'must be an amount in dollars, e.g. "50.00"')
        try:
            if len(str(value)) > 30:
                raise InvalidAmount("too long")
            return dollars_to_cents(str(value))
        except InvalidAmount as exc:
            raise offers.InvalidOffer(name, 'must be an amount in dollars, e.g. "50.00"') from exc

    def day(name: str, value: Any) -> date:
        try:
            if not isinstance(value, str) or len(value) != 10:
                raise ValueError(value)
            return date.fromisoformat(value)
        except ValueError as exc:
            raise offers.InvalidOffer(name, "must be a date, YYYY-MM-DD") from exc

    def whole(name: str) -> int | None:
        value = body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 10**6:
            raise offers.InvalidOffer(name, "must be a whole number")
        return value

    def text(name: str, default: str | None) -> str | None:
        value = body.get(name, default)
        if value is not None and not isinstance(value, str):
            raise offers.InvalidOffer(name, "must be text")
        return value

    kind = text("kind", None)
    if kind not in offers.KINDS:
        raise offers.InvalidOffer("kind", "must be plan or settlement")
    schedule = None
    if body.get("schedule") is not None:
        raw = body["schedule"]
        if not isinstance(raw, list):
            raise offers.InvalidOffer("schedule", 'must be a list of {"date", "amount"}')
        schedule = []
        for item in raw[:1000]:
            if isinstance(item, dict) and set(item) == {"date", "amount"}:
                when, amount = item["date"], item["amount"]
            elif isinstance(item, list) and len(item) == 2:
                when, amount = item
            else:
                raise offers.InvalidOffer("schedule", 'each installment is {"date", "amount"}')
            schedule.append((day("schedule", when), to_cents("schedule", amount)))
    start = body.get("start_date")
    percent = body.get("percent_off")
    if percent is not None and (
        isinstance(percent, bool) or not isinstance(percent, str | int | Decimal)
    ):
        raise offers.InvalidOffer("percent_off", "must be a number such as 25 or 12.5")
    expires_at, expires_on = None, None
    raw_expiry = text("expires_at", None)
    if raw_expiry is not None:
        if len(raw_expiry) == 10:
            expires_on = day("expires_at", raw_expiry)
        else:
            try:
                expires_at = datetime.fromisoformat(raw_expiry[:40])
            except ValueError as exc:
                raise offers.InvalidOffer(
                    "expires_at", "must be a date (YYYY-MM-DD) or a date and time with offset"
                ) from exc
            if expires_at.tzinfo is None:
                raise offers.InvalidOffer(
                    "expires_at", "needs a UTC offset, e.g. 2026-12-31T23:00:00-05:00"
                )
    rules = body.get("rules")
    if rules is not None and not isinstance(rules, dict):
        raise offers.InvalidOffer("rules", 'must be an object, e.g. {"skips_allowed": 1}')
    return offers.OfferRequest(
        kind=kind,
        created_by=text("created_by", "api") or "",
        total_cents=cents("total"),
        frequency=text("frequency", None),
        start=day("start_date", start) if start is not None else None,
        count=whole("count"),
        installment_cents=cents("installment_amount"),
        schedule=tuple(schedule) if schedule is not None else None,
        rules=rules,
        settlement_cents=cents("settlement_amount"),
        discount_bps=offers.percent_to_bps(str(percent)) if percent is not None else None,
        expires_at=expires_at,
        expires_on=expires_on,
        expires_in_days=whole("expires_in_days"),
        send_via=text("send_via", None),
    )


async def post_offer(request: web.Request) -> web.Response:
    """A plan or settlement offer for one account, checked against the creditor's limits; with
    send_via, its message is queued for the worker to send."""
    body = await json_object(request)
    if isinstance(body, web.Response):
        return body
    try:
        wanted = offer_request(body)
    except offers.InvalidOffer as exc:
        return problem(422, str(exc))
    settings = request.config_dict[appkeys.SETTINGS]
    now = request.config_dict[appkeys.CLOCK].now()
    ref = request.match_info["account_id"]
    async with request.config_dict[appkeys.DATABASE].session() as session:
        account = await ledger.account_by_ref(session, ref) if is_account_ref(ref) else None
        if account is None:
            return problem(404, "no account with that account_id")
        try:
            # The domain's rules first (their messages name the rule), then the document's.
            offers.offer_terms(
                wanted,
                balance_cents=account.balance_cents,
                flow=await offers.flow_settings_for(session, account, settings.flow),
                now=now,
                zone=offers.account_zone(account),
            )
            checked = validated(OfferInput, body)
            if isinstance(checked, str):
                return problem(422, checked)
            offer = await offers.create_offer(session, account, wanted, flow=settings.flow, at=now)
        except offers.InvalidOffer as exc:
            return problem(422, str(exc))
        return web.json_response(answer_body(offer_view(offer, account, now=now)), status=201)


async def list_offers(request: web.Request) -> web.Response:
    ref = request.match_info["account_id"]
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as session:
        account = await ledger.account_by_ref(session, ref) if is_account_ref(ref) else None
        if account is None:
            return problem(404, "no account with that account_id")
        found = await offers.offers_for(session, account.id)
        rows = await session.execute(
            select(Plan.offer_id, Plan.id).where(Plan.account_id == account.id)
        )
        plan_ids = {offer_id: plan_id for offer_id, plan_id in rows.all()}
        listed = OfferList(
            account_id=account.account_ref,
            offers=[offer_view(o, account, now=now, plan_id=plan_ids.get(o.id)) for o in found],
        )
        return web.json_response(answer_body(listed))


async def _offer_and_account(
    session: Any, request: web.Request
) -> tuple[Offer, Account] | web.Response:
    offer_id = row_id(request.match_info["offer_id"])
    offer = await session.get(Offer, offer_id) if offer_id is not None else None
    if offer is None:
        return problem(404, "no offer with that id")
    return offer, await session.get(Account, offer.account_id)


async def get_offer(request: web.Request) -> web.Response:
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as session:
        found = await _offer_and_account(session, request)
        if isinstance(found, web.Response):
            return found
        offer, account = found
        plan = await plans.plan_for_offer(session, offer.id)
        view = offer_view(offer, account, now=now, plan_id=plan.id if plan else None)
        return web.json_response(answer_body(view))


async def withdraw_offer(request: web.Request) -> web.Response:
    """Withdraw an open offer: it can no longer be signed and its links stop working."""
    checked = await request_model(request, WithdrawOfferInput, optional=True)
    if isinstance(checked, web.Response):
        return checked
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as session:
        found = await _offer_and_account(session, request)
        if isinstance(found, web.Response):
            return found
        offer, account = found
        try:
            offer = await offers.withdraw_offer(
                session, offer.id, actor=checked.actor.strip(), at=now
            )
        except offers.OfferNotFound:
            return problem(404, "no offer with that id")
        except plans.PlanError as exc:
            return problem(409, str(exc))
        return web.json_response(answer_body(offer_view(offer, account, now=now)))
