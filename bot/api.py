"""REST API for operators: /api/v1, bearer API key, OpenAPI document at /api/v1/openapi.json.

Whatever a client sends gets a JSON answer with a status that says what to fix: 400 for a
body that is not a JSON object, 401/503 for the key, 404, 413 for a body over the server's
limit, 422 (with the reason) for an account that does not validate; never a 500 for bad input.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot import appkeys, ledger, plans
from bot.accounts import FIELDS, InvalidAccount, parse_account, upsert_account
from bot.models import Account, Conversation, Payment, PaymentMethod, Plan
from bot.money import InvalidAmount, dollars_to_cents
from bot.payments import STATUS_LABELS
from bot.phones import InvalidPhone, normalize_phone
from bot.security import mask_email, mask_phone

log = logging.getLogger(__name__)

PUBLIC_PATHS = {"/api/v1/openapi.json"}
_ACCOUNT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def create_app() -> web.Application:
    app = web.Application(middlewares=[json_errors, require_api_key])
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/accounts/{account_id}", get_account)
    app.router.add_post("/accounts", upsert)
    app.router.add_post("/accounts/{account_id}/links", create_link)
    app.router.add_post("/conversations/{phone}/handback", hand_back)
    app.router.add_post("/plans/{plan_id}/cancel", cancel_plan)
    return app


def problem(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


@web.middleware
async def json_errors(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return problem(413, f"the body is larger than the {request.client_max_size} bytes allowed")
    except web.HTTPException as exc:
        if exc.status >= 400:
            extra = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
            return problem(exc.status, exc.reason, **extra)
        raise
    except Exception:
        log.exception("API request %s %s failed", request.method, request.path)
        return problem(500, "internal error; nothing was changed by a failed request")


@web.middleware
async def require_api_key(request: web.Request, handler):  # type: ignore[no-untyped-def]
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    expected = request.config_dict[appkeys.SETTINGS].api_key
    if not expected:
        return problem(503, "the REST API is disabled: set PAYBOT_API_KEY")
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), expected.encode()
    ):
        return problem(
            401,
            "a valid bearer API key is required (Authorization: Bearer KEY)",
            **{"WWW-Authenticate": "Bearer"},
        )
    return await handler(request)


def account_document(
    account: Account, payments: list[tuple[Payment, PaymentMethod | None]]
) -> dict[str, Any]:
    return {
        "account_id": account.account_ref,
        "first_name": account.first_name,
        "last_name": account.last_name,
        "description": account.description,
        "balance_cents": account.balance_cents,
        "balance": _dollars(account.balance_cents),
        "phone": mask_phone(account.phone),
        "email": mask_email(account.email),
        "ssn": f"***-**-{account.ssn_last4}" if account.ssn_last4 else None,
        "timezone": account.timezone,
        "creditor": account.creditor_code,
        "payments": [
            {
                "reference": p.reference,
                "amount_cents": p.amount_cents,
                "amount": _dollars(p.amount_cents),
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
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


async def get_account(request: web.Request) -> web.Response:
    ref = request.match_info["account_id"]
    if not _ACCOUNT_REF.match(ref):
        return problem(404, "no account with that account_id")
    async with request.config_dict[appkeys.DATABASE].session() as session:
        account = await ledger.account_by_ref(session, ref)
        if account is None:
            return problem(404, "no account with that account_id")
        rows = await session.execute(
            select(Payment, PaymentMethod)
            .outerjoin(PaymentMethod, Payment.method_id == PaymentMethod.id)
            .where(Payment.account_id == account.id)
            .order_by(Payment.scheduled_for, Payment.id)
        )
        return web.json_response(account_document(account, [(p, m) for p, m in rows.all()]))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    raw = await request.read()  # over client_max_size: HTTPRequestEntityTooLarge -> 413
    try:
        body = json.loads(
            raw.decode("utf-8-sig"), parse_float=Decimal, parse_constant=_reject_constant
        )
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return problem(400, "the body must be a JSON object (UTF-8)")
    if not isinstance(body, dict):
        return problem(400, "the body must be a JSON object")
    return body


async def upsert(request: web.Request) -> web.Response:
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    unknown = sorted(str(name) for name in body if name not in FIELDS)
    if unknown:
        shown = ", ".join(name[:40] for name in unknown[:10])
        return problem(422, f"unknown field(s): {shown}; the fields are {', '.join(FIELDS)}")
    try:
        data = parse_account(body)
    except InvalidAccount as exc:
        return problem(422, str(exc))
    settings = request.config_dict[appkeys.SETTINGS]
    clock = request.config_dict[appkeys.CLOCK]
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
            document = account_document(account, [])
            break
    del document["payments"]
    return web.json_response(document, status=201 if created else 200)


LINK_FIELDS = ("amount", "allow_amount_change", "fee", "due_on", "expires_in_hours", "purpose")


async def create_link(request: web.Request) -> web.Response:
    """A personalized link for an operator to send anywhere: open or preset amount (fixed or
    changeable), an optional convenience fee, a due date and an expiry."""
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    unknown = sorted(str(name) for name in body if name not in LINK_FIELDS)
    if unknown:
        return problem(422, f"unknown field(s): {', '.join(n[:40] for n in unknown[:10])}")
    try:
        terms = _link_terms(body, request.config_dict[appkeys.SETTINGS].link_lifetime_hours)
    except ValueError as exc:
        return problem(422, str(exc))
    settings = request.config_dict[appkeys.SETTINGS]
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as session:
        account = await ledger.account_by_ref(session, request.match_info["account_id"][:64])
        if account is None:
            return problem(404, "no account with that account_id")
        if terms["amount_cents"] and terms["amount_cents"] > account.balance_cents:
            return problem(422, "amount is more than the balance")
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
    expires = now + timedelta(hours=terms["expires_in_hours"])
    return web.json_response(
        {
            "url": f"{settings.public_base_url}/p/{token}",
            "expires_at": expires.isoformat(),
            "amount_cents": terms["amount_cents"],
            "allow_amount_change": terms["allow_amount_change"],
            "fee_cents": terms["fee_cents"],
            "due_on": terms["due_on"].isoformat() if terms["due_on"] else None,
        },
        status=201,
    )


def _link_terms(body: dict[str, Any], default_hours: int) -> dict[str, Any]:
    def cents(name: str) -> int | None:
        value = body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
            raise ValueError(f'{name} must be an amount in dollars, e.g. "50.00"')
        try:
            amount = dollars_to_cents(str(value))
        except InvalidAmount as exc:
            raise ValueError(f'{name} must be an amount in dollars, e.g. "50.00"') from exc
        if amount <= 0:
            raise ValueError(f"{name} must be more than 0")
        return amount

    amount, fee = cents("amount"), cents("fee") or 0
    allow = body.get("allow_amount_change", True)
    if not isinstance(allow, bool):
        raise ValueError("allow_amount_change must be true or false")
    if not allow and amount is None:
        raise ValueError("a fixed amount needs an amount")
    hours = body.get("expires_in_hours", default_hours)
    if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= 24 * 90:
        raise ValueError("expires_in_hours must be a whole number from 1 to 2160")
    due_on = None
    if body.get("due_on") is not None:
        try:
            due_on = date.fromisoformat(str(body["due_on"]))
        except ValueError as exc:
            raise ValueError("due_on must be a date, YYYY-MM-DD") from exc
    purpose = body.get("purpose", "payment")
    if purpose not in ("payment", "campaign"):
        raise ValueError("purpose must be payment or campaign")
    return {
        "amount_cents": amount,
        "allow_amount_change": allow,
        "fee_cents": fee,
        "due_on": due_on,
        "expires_in_hours": hours,
        "purpose": purpose,
    }


async def cancel_plan(request: web.Request) -> web.Response:
    """Cancel a plan: every installment not yet charged is canceled (the worker never takes a
    canceled row), and the customer is emailed. Payments already made stand."""
    raw = request.match_info["plan_id"]
    if not raw.isdigit() or len(raw) > 12:
        return problem(404, "no plan with that id")
    body: dict[str, Any] = {}
    if request.can_read_body:
        parsed = await _json_object(request)
        if isinstance(parsed, web.Response):
            return parsed
        body = parsed
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        return problem(400, "reason must be text")
    actor = body.get("actor", "api")
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 40:
        return problem(400, "actor must be a short name (for example agent:jsmith)")
    now = request.config_dict[appkeys.CLOCK].now()
    engine = request.config_dict[appkeys.ENGINE]
    async with request.config_dict[appkeys.DATABASE].session() as session:
        plan = await session.get(Plan, int(raw))
        if plan is None:
            return problem(404, "no plan with that id")
        if plan.status == "canceled":
            return problem(409, "the plan is already canceled")
        try:
            result = await plans.cancel_plan(
                session, plan.id, actor=actor.strip(), reason=reason, at=now
            )
        except plans.PlanError as exc:
            return problem(409, str(exc))
        brand = await engine.brand_for(session, result.account)
    await notify_cancellation(engine, result, brand)
    return web.json_response(
        {"plan_id": plan.id, "status": "canceled", "installments_canceled": len(result.canceled)}
    )


async def notify_cancellation(engine: Any, result: plans.Cancellation, brand: str) -> None:
    """The customer is told by email that nothing more will be debited."""
    if not result.account.email:
        return
    env = engine.notifier.env
    context = result.email_context(brand)
    await engine.notifier.send_email(
        to=result.account.email,
        subject=f"{brand}: your payment plan is canceled",
        text=env.get_template("email/plan_canceled.txt").render(context),
        html=env.get_template("email/plan_canceled.html").render(context),
        transactional=True,
    )


async def hand_back(request: web.Request) -> web.Response:
    """An agent hands a conversation back to the bot; it starts again from the main menu."""
    raw = request.match_info["phone"]
    try:
        if len(raw) > 30:
            raise InvalidPhone(raw)
        phone = normalize_phone(raw)
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
        await ledger.audit(
            session,
            "handed_back",
            at=clock.now(),
            actor="agent",
            phone=phone,
            account_id=conversation.account_id,
        )
        await session.commit()
    return web.json_response({"phone": phone, "handled_by": "bot"})


ACCOUNT_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["account_id", "first_name", "last_name", "balance"],
    "additionalProperties": False,
    "description": "phone or email (or both) is required",
    "properties": {
        "account_id": {"type": "string", "pattern": _ACCOUNT_REF.pattern, "maxLength": 64},
        "first_name": {"type": "string", "maxLength": 80},
        "last_name": {"type": "string", "maxLength": 80},
        "phone": {"type": ["string", "null"], "description": "E.164 or a 10-digit US number"},
        "email": {"type": ["string", "null"], "format": "email", "maxLength": 254},
        "balance": {
            "type": ["string", "number"],
            "description": 'dollars, e.g. "1250.00" (at most 2 decimals, not negative)',
            "examples": ["1250.00"],
        },
        "ssn": {
            "type": ["string", "null"],
            "description": "9 digits; kept only as a keyed hash and the last 4",
        },
        "dob": {"type": ["string", "null"], "description": "YYYY-MM-DD or MM/DD/YYYY"},
        "zip": {"type": ["string", "null"], "pattern": r"^\d{5}(-\d{4})?$"},
        "timezone": {"type": ["string", "null"], "examples": ["America/Chicago"]},
        "creditor": {"type": ["string", "null"], "maxLength": 40},
        "description": {
            "type": ["string", "null"],
            "maxLength": 120,
            "examples": ["Acme Card ending 4821"],
        },
    },
}

ACCOUNT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "contacts are masked: the full phone, email or SSN never leaves the ledger",
    "properties": {
        "account_id": {"type": "string"},
        "first_name": {"type": "string"},
        "last_name": {"type": "string"},
        "description": {"type": "string"},
        "balance_cents": {"type": "integer"},
        "balance": {"type": "string", "examples": ["1250.00"]},
        "phone": {"type": ["string", "null"], "examples": ["***-***-0100"]},
        "email": {"type": ["string", "null"], "examples": ["m***@example.com"]},
        "ssn": {"type": ["string", "null"], "examples": ["***-**-6789"]},
        "timezone": {"type": "string"},
        "creditor": {"type": ["string", "null"]},
        "payments": {"type": "array", "items": {"$ref": "#/components/schemas/Payment"}},
    },
}

PAYMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reference": {"type": "string"},
        "amount_cents": {"type": "integer"},
        "amount": {"type": "string"},
        "scheduled_for": {"type": "string", "format": "date"},
        "status": {"type": "string", "enum": sorted(set(STATUS_LABELS.values()))},
        "method": {"type": ["string", "null"], "examples": ["Visa ending 4242"]},
        "channel": {"type": "string"},
        "plan_id": {"type": ["integer", "null"]},
        "installment_number": {"type": ["integer", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _account(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Account"}}},
    }


_AUTH_ERRORS = {
    "401": _error("no or wrong API key"),
    "503": _error("the API is disabled: no API key is configured"),
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "PayBot API",
        "version": "1",
        "description": 'Operators\' API: accounts and conversations. Errors are {"error": "..."}.',
    },
    "servers": [{"url": "/api/v1"}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "AccountInput": ACCOUNT_INPUT_SCHEMA,
            "Account": ACCOUNT_SCHEMA,
            "Payment": PAYMENT_SCHEMA,
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document (no key needed)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "the OpenAPI document",
                        "content": {"application/json": {}},
                    }
                },
            }
        },
        "/accounts": {
            "post": {
                "operationId": "upsertAccount",
                "summary": "Create or update an account (upsert by account_id)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/AccountInput"}
                        }
                    },
                },
                "responses": {
                    "200": _account("updated (contacts masked, no payments)"),
                    "201": _account("created (contacts masked, no payments)"),
                    "400": _error("the body is not a JSON object"),
                    **_AUTH_ERRORS,
                    "413": _error("the body is too large"),
                    "422": _error("the account is not valid; the message says why"),
                },
            }
        },
        "/accounts/{account_id}": {
            "get": {
                "operationId": "getAccount",
                "summary": "Balance, masked contacts and payments with their status",
                "parameters": [
                    {
                        "name": "account_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _account("the account"),
                    **_AUTH_ERRORS,
                    "404": _error("unknown account"),
                },
            }
        },
        "/accounts/{account_id}/links": {
            "post": {
                "operationId": "createLink",
                "summary": "A personalized payment link (preset or open amount, fee, due date)",
                "parameters": [
                    {
                        "name": "account_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "amount": {
                                        "type": "string",
                                        "description": "dollars; omit: open",
                                    },
                                    "allow_amount_change": {"type": "boolean", "default": True},
                                    "fee": {
                                        "type": "string",
                                        "description": "convenience fee, dollars",
                                    },
                                    "due_on": {"type": "string", "format": "date"},
                                    "expires_in_hours": {
                                        "type": "integer",
                                        "minimum": 1,
                                        "maximum": 2160,
                                    },
                                    "purpose": {"type": "string", "enum": ["payment", "campaign"]},
                                },
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "responses": {
                    "201": {
                        "description": "the link (shown once: only its hash is kept)",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "400": _error("the body is not a JSON object"),
                    **_AUTH_ERRORS,
                    "404": _error("unknown account"),
                    "422": _error("the terms are not valid; the message says why"),
                },
            }
        },
        "/plans/{plan_id}/cancel": {
            "post": {
                "operationId": "cancelPlan",
                "summary": "Cancel a plan: nothing more is debited, the customer is emailed",
                "parameters": [{"name": "plan_id", "in": "path", "required": True,
                                "schema": {"type": "integer"}}],
                "responses": {
                    "200": {"description": "canceled", "content": {"application/json": {
                        "schema": {"type": "object"}}}},
                    **_AUTH_ERRORS,
                    "404": _error("no such plan"),
                    "409": _error("already canceled"),
                },
            }
        },
        "/conversations/{phone}/handback": {
            "post": {
                "operationId": "handBackConversation",
                "summary": "Hand a conversation taken by an agent back to the bot",
                "parameters": [
                    {"name": "phone", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "handed back",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "phone": {"type": "string"},
                                        "handled_by": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "400": _error("not a phone number"),
                    **_AUTH_ERRORS,
                    "404": _error("no such conversation"),
                },
            }
        },
    },
}


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(OPENAPI)
