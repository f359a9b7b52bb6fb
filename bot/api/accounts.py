"""The accounts resource: read one account (masked contacts, payments, plans) and the upsert.

The upsert's body is read by AccountInput (bot/api/models.py), which reads it as the CSV import
reads a row and holds it to its schema in the document.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot import appkeys
from bot.accounts.loading import upsert_account
from bot.api.documents import account_view, answer_body
from bot.api.models import AccountInput
from bot.api.problems import path_account, request_model
from bot.ledger.models import Payment, PaymentMethod, Plan


async def get_account(request: web.Request) -> web.Response:
    async with request.config_dict[appkeys.DATABASE].session() as session:
        account = await path_account(session, request)
        if isinstance(account, web.Response):
            return account
        rows = await session.execute(
            select(Payment, PaymentMethod)
            .outerjoin(PaymentMethod, Payment.method_id == PaymentMethod.id)
            .where(Payment.account_id == account.id)
            .order_by(Payment.scheduled_for, Payment.id)
        )
        account_plans = list(
            await session.scalars(
                select(Plan).where(Plan.account_id == account.id).order_by(Plan.id)
            )
        )
        view = account_view(account, [(p, m) for p, m in rows.all()], account_plans)
        return web.json_response(answer_body(view))


async def upsert(request: web.Request) -> web.Response:
    clock = request.config_dict[appkeys.CLOCK]
    checked = await request_model(request, AccountInput, context={"today": clock.now().date()})
    if isinstance(checked, web.Response):
        return checked
    data = checked.record
    settings = request.config_dict[appkeys.SETTINGS]
    database = request.config_dict[appkeys.DATABASE]
    for attempt in (1, 2):
        async with database.session() as session:
            try:
                account, created = await upsert_account(
                    session, data, secret_key=settings.secret_key, at=clock.now(), actor="api"
                )
                await session.commit()
            except IntegrityError:
                # Another request created the same account (or creditor) meanwhile: update it.
                await session.rollback()
                if attempt == 2:
                    raise
                continue
            view = account_view(account, [])
            break
    return web.json_response(
        answer_body(view, exclude={"payments", "plans"}), status=201 if created else 200
    )
