"""The links resource: a personalized payment link for an operator to send anywhere (open or
preset amount, fixed or changeable, an optional convenience fee, a due date and an expiry).

The body is read by LinkInput alone; the balance and what is still open are checked here.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from bot import appkeys
from bot.api.documents import Link, answer_body
from bot.api.models import LinkInput
from bot.api.problems import path_account, problem, request_model
from bot.ledger import queries as ledger
from bot.payments.collectable import collectable


async def create_link(request: web.Request) -> web.Response:
    checked = await request_model(request, LinkInput)
    if isinstance(checked, web.Response):
        return checked
    settings = request.config_dict[appkeys.SETTINGS]
    terms = checked.terms(settings.link_lifetime_hours)
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as session:
        account = await path_account(session, request)
        if isinstance(account, web.Response):
            return account
        if terms["amount_cents"] and terms["amount_cents"] > account.balance_cents:
            return problem(422, "amount is more than the balance")
        if terms["amount_cents"]:
            # The rule of bot/payments/collectable.py: a preset never asks for more than is open.
            state = await collectable(session, account.id, balance_cents=account.balance_cents)
            if terms["amount_cents"] > state.open_cents:
                return problem(409, state.explanation())
        token = await ledger.create_link(
            session,
            account_id=account.id,
            at=now,
            purpose=terms["purpose"],
            lifetime=timedelta(hours=terms["expires_in_hours"]),
            amount_cents=terms["amount_cents"],
            allow_amount_change=terms["allow_amount_change"],
            fee_cents=terms["fee_cents"],
            due_on=terms["due_on"],
        )
        await ledger.audit(
            session,
            "link_created",
            at=now,
            actor="api",
            account_id=account.id,
            purpose=terms["purpose"],
        )
        await session.commit()
    link = Link(
        url=f"{settings.public_base_url}/p/{token}",
        expires_at=now + timedelta(hours=terms["expires_in_hours"]),
        amount_cents=terms["amount_cents"],
        allow_amount_change=terms["allow_amount_change"],
        fee_cents=terms["fee_cents"],
        due_on=terms["due_on"],
    )
    return web.json_response(answer_body(link), status=201)
