"""The offers resource: make a plan or settlement offer for an account, list its offers, read
one, withdraw one.

A body is read by OfferInput alone (its 422s name the field) and becomes the domain's
OfferRequest; the domain's rules (bot/plans/offers.py: the balance, today's date, the creditor's
limits, which fields go together) then judge it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from bot import appkeys
from bot.api.documents import OfferList, answer_body, offer_view
from bot.api.models import OfferInput, WithdrawOfferInput
from bot.api.problems import path_account, problem, request_model, row_id
from bot.ledger.models import Account, Offer, Plan
from bot.plans import offers
from bot.plans import signing as plans


async def post_offer(request: web.Request) -> web.Response:
    """A plan or settlement offer for one account, checked against the creditor's limits; with
    send_via, its message is queued for the worker to send."""
    checked = await request_model(request, OfferInput)
    if isinstance(checked, web.Response):
        return checked
    wanted = checked.to_request()
    settings = request.config_dict[appkeys.SETTINGS]
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as session:
        account = await path_account(session, request)
        if isinstance(account, web.Response):
            return account
        try:
            # The terms against the account's balance before create_offer measures what is
            # still open: what is wrong with the terms is said before a payment on its way.
            offers.offer_terms(
                wanted,
                balance_cents=account.balance_cents,
                flow=await offers.flow_settings_for(session, account, settings.flow),
                now=now,
                zone=offers.account_zone(account),
            )
            offer = await offers.create_offer(session, account, wanted, flow=settings.flow, at=now)
        except offers.InvalidOffer as exc:
            return problem(422, str(exc))
        return web.json_response(answer_body(offer_view(offer, account, now=now)), status=201)


async def list_offers(request: web.Request) -> web.Response:
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as session:
        account = await path_account(session, request)
        if isinstance(account, web.Response):
            return account
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
