"""REST API for operators: /api/v1, bearer API key, OpenAPI document at /api/v1/openapi.json."""

from __future__ import annotations

import hmac
import json
from typing import Any

from aiohttp import web
from sqlalchemy import select

from bot import appkeys, ledger
from bot.accounts import InvalidAccount, parse_account, upsert_account
from bot.models import Account, Conversation, Payment, PaymentMethod
from bot.payments import STATUS_LABELS
from bot.phones import InvalidPhone, normalize_phone
from bot.security import mask_email, mask_phone

PUBLIC_PATHS = {"/api/v1/openapi.json"}


def create_app() -> web.Application:
    app = web.Application(middlewares=[json_errors, require_api_key])
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/accounts/{account_id}", get_account)
    app.router.add_post("/accounts", upsert)
    app.router.add_post("/conversations/{phone}/handback", hand_back)
    return app


def problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return problem(exc.status, exc.reason)
        raise


@web.middleware
async def require_api_key(request: web.Request, handler):  # type: ignore[no-untyped-def]
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    expected = request.config_dict[appkeys.SETTINGS].api_key
    if not expected:
        return problem(503, "the REST API is disabled: set PAYBOT_API_KEY")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
        return web.json_response({"error": "a valid bearer API key is required"}, status=401,
                                 headers={"WWW-Authenticate": "Bearer"})
    return await handler(request)


def account_document(account: Account, payments: list[tuple[Payment, PaymentMethod | None]]) -> dict[str, Any]:
    return {
        "account_id": account.account_ref,
        "first_name": account.first_name,
        "last_name": account.last_name,
        "description": account.description,
        "balance_cents": account.balance_cents,
        "balance": _dollars(account.balance_cents),
        "phone": mask_phone(account.phone),
        "email": mask_email(account.email),
        "timezone": account.timezone,
        "creditor": account.creditor_code,
        "payments": [
            {
                "reference": p.reference,
                "amount_cents": p.amount_cents,
                "scheduled_for": p.scheduled_for.isoformat(),
                "status": STATUS_LABELS.get(p.status, p.status),
                "method": f"{m.brand} ending {m.last4}" if m else None,
                "channel": p.channel,
                "plan_id": p.plan_id,
                "installment_number": p.installment_number,
                "created_at": p.created_at.isoformat(),
            }
            for p, m in payments
        ],
    }


def _dollars(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


async def get_account(request: web.Request) -> web.Response:
    async with request.config_dict[appkeys.DATABASE].session() as session:
        account = await ledger.account_by_ref(session, request.match_info["account_id"])
        if account is None:
            return problem(404, "no account with that account_id")
        rows = await session.execute(
            select(Payment, PaymentMethod)
            .outerjoin(PaymentMethod, Payment.method_id == PaymentMethod.id)
            .where(Payment.account_id == account.id)
            .order_by(Payment.scheduled_for, Payment.id)
        )
        return web.json_response(account_document(account, [(p, m) for p, m in rows.all()]))


async def upsert(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return problem(400, "the body must be a JSON object")
    if not isinstance(body, dict):
        return problem(400, "the body must be a JSON object")
    try:
        data = parse_account(body)
    except InvalidAccount as exc:
        return problem(422, str(exc))
    settings = request.config_dict[appkeys.SETTINGS]
    clock = request.config_dict[appkeys.CLOCK]
    async with request.config_dict[appkeys.DATABASE].session() as session:
        account, created = await upsert_account(session, data, secret_key=settings.secret_key,
                                                at=clock.now(), actor="api")
        await session.commit()
        document = account_document(account, [])
    del document["payments"]
    return web.json_response(document, status=201 if created else 200)


async def hand_back(request: web.Request) -> web.Response:
    """An agent hands a conversation back to the bot; it starts again from the main menu."""
    try:
        phone = normalize_phone(request.match_info["phone"])
    except InvalidPhone:
        return problem(400, "not a phone number")
    clock = request.config_dict[appkeys.CLOCK]
    async with request.config_dict[appkeys.DATABASE].session() as session:
        conversation = await session.scalar(select(Conversation).where(Conversation.phone == phone))
        if conversation is None:
            return problem(404, "no conversation with that number")
        conversation.handled_by = "bot"
        if conversation.account_id is not None:
            conversation.flow, conversation.state, conversation.context = "payment", "idle", {}
        conversation.updated_at = clock.now()
        await ledger.audit(session, "handed_back", at=clock.now(), actor="agent", phone=phone,
                           account_id=conversation.account_id)
        await session.commit()
    return web.json_response({"phone": phone, "handled_by": "bot"})


ACCOUNT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["account_id", "first_name", "last_name", "balance"],
    "properties": {
        "account_id": {"type": "string", "maxLength": 64},
        "first_name": {"type": "string"},
        "last_name": {"type": "string"},
        "phone": {"type": "string", "description": "E.164 or a 10-digit US number"},
        "email": {"type": "string", "format": "email"},
        "balance": {"type": "string", "description": "dollars, e.g. \"1250.00\""},
        "ssn": {"type": "string", "description": "kept only as a keyed hash and last 4"},
        "dob": {"type": "string", "format": "date"},
        "zip": {"type": "string"},
        "timezone": {"type": "string", "example": "America/Chicago"},
        "creditor": {"type": "string"},
        "description": {"type": "string", "example": "Acme Card ending 4821"},
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "PayBot API", "version": "1"},
    "servers": [{"url": "/api/v1"}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "AccountInput": ACCOUNT_SCHEMA,
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/accounts": {
            "post": {
                "summary": "Create or update an account (upsert by account_id)",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/AccountInput"}}}},
                "responses": {"200": {"description": "updated"}, "201": {"description": "created"},
                              "401": {"description": "no or wrong API key"},
                              "422": {"description": "invalid account"}},
            }
        },
        "/accounts/{account_id}": {
            "get": {
                "summary": "Balance, masked contacts and payments with their status",
                "parameters": [{"name": "account_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the account"},
                              "404": {"description": "unknown account"}},
            }
        },
        "/conversations/{phone}/handback": {
            "post": {
                "summary": "Hand a conversation taken by an agent back to the bot",
                "parameters": [{"name": "phone", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "handed back"},
                              "404": {"description": "no such conversation"}},
            }
        },
    },
}


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(OPENAPI)
