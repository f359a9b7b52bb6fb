"""REST API for operators: /api/v1, bearer API key, OpenAPI document at /api/v1/openapi.json.

Whatever a client sends gets a JSON answer with a status that says what to fix: 400 for a
body that is not a JSON object, 401/503 for the key, 404, 413 for a body over the server's
limit, 422 (with the reason) for an account that does not validate; never a 500 for bad input.
Each body is read by the domain's validators, then held to its schema in the document
(bot/api/contract.py), so the server never accepts what the document forbids.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot import appkeys
from bot.accounts.loading import FIELDS, REQUIRED, InvalidAccount, parse_account, upsert_account
from bot.api import contract as api_contract
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Conversation, Offer, Payment, PaymentMethod, Plan
from bot.money import InvalidAmount, dollars_to_cents
from bot.outreach import email_outbox
from bot.payments.collectable import collectable
from bot.payments.service import STATUS_LABELS
from bot.phones import InvalidPhone, normalize_phone
from bot.plans import offers
from bot.plans import signing as plans
from bot.security import mask_email, mask_phone

log = logging.getLogger(__name__)

PUBLIC_PATHS = {"/api/v1/openapi.json"}
_ACCOUNT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
# Control characters other than tab and line breaks (PostgreSQL refuses NUL in text).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def create_app() -> web.Application:
    app = web.Application(middlewares=[json_errors, require_api_key])
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/accounts/{account_id}", get_account)
    app.router.add_post("/accounts", upsert)
    app.router.add_post("/accounts/{account_id}/links", create_link)
    app.router.add_post("/conversations/{phone}/handback", hand_back)
    app.router.add_post("/plans/{plan_id}/cancel", cancel_plan)
    app.router.add_post("/accounts/{account_id}/offers", post_offer)
    app.router.add_get("/accounts/{account_id}/offers", list_offers)
    app.router.add_get("/offers/{offer_id}", get_offer)
    app.router.add_post("/offers/{offer_id}/withdraw", withdraw_offer)
    return app


# Row ids are the databases' 32-bit integers: a larger one names nothing (PostgreSQL would refuse
# to compare it), and only ASCII digits are digits here.
MAX_ROW_ID = 2**31 - 1
_ROW_ID = re.compile(r"^[0-9]{1,10}$")


def _row_id(raw: str) -> int | None:
    if not _ROW_ID.match(raw) or int(raw) > MAX_ROW_ID:
        return None
    return int(raw)


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
    account: Account,
    payments: list[tuple[Payment, PaymentMethod | None]],
    account_plans: list[Plan] | None = None,
) -> dict[str, Any]:
    installments: dict[int, list[Payment]] = defaultdict(list)
    for payment, _ in payments:
        if payment.plan_id is not None:
            installments[payment.plan_id].append(payment)
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
        "plans": [plan_document(plan, installments[plan.id]) for plan in account_plans or []],
    }


def plan_document(plan: Plan, installments: list[Payment]) -> dict[str, Any]:
    return {
        "id": plan.id,
        "offer_id": plan.offer_id,
        "status": plan.status,
        "frequency": plan.frequency,
        "total_cents": plan.total_cents,
        "total": _dollars(plan.total_cents),
        "installment_count": plan.installment_count,
        "created_at": plan.created_at.isoformat(),
        "canceled_at": plan.canceled_at.isoformat() if plan.canceled_at else None,
        "installments": [
            {
                "number": p.installment_number,
                "reference": p.reference,
                "scheduled_for": p.scheduled_for.isoformat(),
                "amount_cents": p.amount_cents,
                "amount": _dollars(p.amount_cents),
                "status": STATUS_LABELS.get(p.status, p.status),
            }
            for p in sorted(installments, key=lambda p: (p.installment_number or 0, p.id))
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
        account_plans = list(
            await session.scalars(
                select(Plan).where(Plan.account_id == account.id).order_by(Plan.id)
            )
        )
        return web.json_response(
            account_document(account, [(p, m) for p, m in rows.all()], account_plans)
        )


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
    return _whole_numbers(body)


def _whole_numbers(value: Any) -> Any:
    """JSON numbers with no fraction ("527.0") as the integers JSON Schema says they are; the
    size guard keeps "1E+999999999" from becoming a billion-digit int."""
    if isinstance(value, Decimal):
        if value.is_finite() and value.adjusted() <= 18 and value == value.to_integral_value():
            return int(value)
        return value
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


async def upsert(request: web.Request) -> web.Response:
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    unknown = sorted(str(name) for name in body if name not in FIELDS)
    if unknown:
        shown = ", ".join(name[:40] for name in unknown[:10])
        return problem(422, f"unknown field(s): {shown}; the fields are {', '.join(FIELDS)}")
    refused = _upsert_values_problem(body)
    if refused:
        return problem(422, refused)
    try:
        data = parse_account(body)
    except InvalidAccount as exc:
        return problem(422, str(exc))
    clock = request.config_dict[appkeys.CLOCK]
    refused = api_contract.body_problem(
        api_contract.account_input_schema(clock.now().date()), body
    )
    if refused:
        return problem(422, refused)
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
            document = account_document(account, [])
            break
    del document["payments"], document["plans"]
    return web.json_response(document, status=201 if created else 200)


def _upsert_values_problem(body: dict[str, Any]) -> str | None:
    """Values the upsert refuses before reading the record. An update keeps what it is not
    sent, so a null or blank value has no meaning: it is refused rather than read as "delete"
    (a contact dropped by a null is how an account loses its way to be reached). A balance as a
    JSON number is whole dollars, as the document says."""
    for name in FIELDS:
        if name not in body or name in REQUIRED and name not in ("phone", "email"):
            continue
        value = body[name]
        if value is None:
            return f"{name} cannot be null: leave it out to keep the stored value"
        if isinstance(value, str) and not value.strip():
            return f"{name} is empty: leave it out to keep the stored value"
    balance = body.get("balance")
    if isinstance(balance, Decimal) and balance != balance.to_integral_value():
        return 'balance as a JSON number is whole dollars: send cents as text, e.g. "12.50"'
    return None


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
    refused = api_contract.body_problem(api_contract.LINK_INPUT_SCHEMA, body)
    if refused:
        return problem(422, refused)
    settings = request.config_dict[appkeys.SETTINGS]
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as session:
        ref = request.match_info["account_id"]
        account = await ledger.account_by_ref(session, ref) if _ACCOUNT_REF.match(ref) else None
        if account is None:
            return problem(404, "no account with that account_id")
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
    plan_id = _row_id(request.match_info["plan_id"])
    if plan_id is None:
        return problem(404, "no plan with that id")
    body: dict[str, Any] = {}
    if request.can_read_body:
        parsed = await _json_object(request)
        if isinstance(parsed, web.Response):
            return parsed
        body = parsed
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or _CONTROL.search(reason)):
        return problem(400, "reason must be text")
    actor = body.get("actor", "api")
    if not offers.is_short_name(actor):
        return problem(400, "actor must be a short name (for example agent:jsmith)")
    refused = api_contract.body_problem(api_contract.CANCEL_INPUT_SCHEMA, body)
    if refused:
        return problem(400, refused)
    now = request.config_dict[appkeys.CLOCK].now()
    engine = request.config_dict[appkeys.ENGINE]
    async with request.config_dict[appkeys.DATABASE].session() as session:
        # Only the status is read here: cancel_plan then loads the plan fresh under its row
        # lock, so of two cancellations at once only one cancels (and emails).
        status = await session.scalar(select(Plan.status).where(Plan.id == plan_id))
        if status is None:
            return problem(404, "no plan with that id")
        if status == "canceled":
            return problem(409, "the plan is already canceled")
        try:
            result = await plans.cancel_plan(
                session, plan_id, actor=actor.strip(), reason=reason, at=now
            )
        except plans.PlanError as exc:
            return problem(409, str(exc))
        brand = await engine.brand_for(session, result.account)
    await notify_cancellation(engine, result, brand)
    return web.json_response(
        {
            "plan_id": result.plan.id,
            "status": "canceled",
            "installments_canceled": len(result.canceled),
        }
    )


async def notify_cancellation(engine: Any, result: plans.Cancellation, brand: str) -> None:
    """The customer is told by email that nothing more will be debited."""
    if not result.account.email:
        return
    env = engine.notifier.env
    context = result.email_context(brand)
    email = {
        "to": result.account.email,
        "subject": f"{brand}: your payment plan is canceled",
        "text": env.get_template("email/plan_canceled.txt").render(context),
        "html": env.get_template("email/plan_canceled.html").render(context),
        "transactional": True,
    }
    await email_outbox.send_now(engine.db, engine.notifier, email, kind="plan_canceled",
                                account_id=result.account.id, clock=engine.clock)


OFFER_FIELDS = (
    "kind",
    "total",
    "frequency",
    "count",
    "installment_amount",
    "start_date",
    "schedule",
    "settlement_amount",
    "percent_off",
    "expires_at",
    "expires_in_days",
    "send_via",
    "created_by",
    "rules",
)


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


def offer_document(
    offer: Offer, account: Account, *, now: datetime, plan_id: int | None = None
) -> dict[str, Any]:
    return {
        "id": offer.id,
        "account_id": account.account_ref,
        "kind": offer.kind,
        "status": offers.offer_status(offer, now),
        "total_cents": offer.total_cents,
        "total": _dollars(offer.total_cents),
        "installment_count": offer.installment_count,
        "frequency": offer.frequency,
        "schedule": [
            {"date": day.isoformat(), "amount": _dollars(amount), "amount_cents": amount}
            for day, amount in offers.offer_schedule(offer)
        ],
        "discount_bps": offer.discount_bps,
        "savings": _dollars(max(0, account.balance_cents - offer.total_cents))
        if offer.kind == "settlement"
        else None,
        "rules": offer.rules,
        "expires_at": offer.expires_at.isoformat() if offer.expires_at else None,
        "created_at": offer.created_at.isoformat(),
        "created_by": offer.created_by,
        "sent_at": offer.sent_at.isoformat() if offer.sent_at else None,
        "accepted_at": offer.accepted_at.isoformat() if offer.accepted_at else None,
        "plan_id": plan_id,
    }


async def post_offer(request: web.Request) -> web.Response:
    """A plan or settlement offer for one account, checked against the creditor's limits; with
    send_via, its message is queued for the worker to send."""
    body = await _json_object(request)
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
        account = await ledger.account_by_ref(session, ref) if _ACCOUNT_REF.match(ref) else None
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
            refused = api_contract.body_problem(OFFER_INPUT_SCHEMA, body)
            if refused:
                return problem(422, refused)
            offer = await offers.create_offer(session, account, wanted, flow=settings.flow, at=now)
        except offers.InvalidOffer as exc:
            return problem(422, str(exc))
        return web.json_response(offer_document(offer, account, now=now), status=201)


async def list_offers(request: web.Request) -> web.Response:
    ref = request.match_info["account_id"]
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as session:
        account = await ledger.account_by_ref(session, ref) if _ACCOUNT_REF.match(ref) else None
        if account is None:
            return problem(404, "no account with that account_id")
        found = await offers.offers_for(session, account.id)
        rows = await session.execute(
            select(Plan.offer_id, Plan.id).where(Plan.account_id == account.id)
        )
        plan_ids = {offer_id: plan_id for offer_id, plan_id in rows.all()}
        return web.json_response(
            {
                "account_id": account.account_ref,
                "offers": [
                    offer_document(o, account, now=now, plan_id=plan_ids.get(o.id)) for o in found
                ],
            }
        )


async def _offer_and_account(session: Any, raw: str) -> tuple[Offer, Account] | None:
    offer_id = _row_id(raw)
    if offer_id is None:
        return None
    offer = await session.get(Offer, offer_id)
    if offer is None:
        return None
    return offer, await session.get(Account, offer.account_id)


async def get_offer(request: web.Request) -> web.Response:
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as session:
        found = await _offer_and_account(session, request.match_info["offer_id"])
        if found is None:
            return problem(404, "no offer with that id")
        offer, account = found
        plan = await plans.plan_for_offer(session, offer.id)
        return web.json_response(
            offer_document(offer, account, now=now, plan_id=plan.id if plan else None)
        )


async def withdraw_offer(request: web.Request) -> web.Response:
    """Withdraw an open offer: it can no longer be signed and its links stop working."""
    body: dict[str, Any] = {}
    if request.can_read_body:
        parsed = await _json_object(request)
        if isinstance(parsed, web.Response):
            return parsed
        body = parsed
    actor = body.get("actor", "api")
    if not offers.is_short_name(actor):
        return problem(422, "actor must be a short name (for example agent:jsmith)")
    refused = api_contract.body_problem(api_contract.WITHDRAW_INPUT_SCHEMA, body)
    if refused:
        return problem(422, refused)
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as session:
        found = await _offer_and_account(session, request.match_info["offer_id"])
        if found is None:
            return problem(404, "no offer with that id")
        offer, account = found
        try:
            offer = await offers.withdraw_offer(session, offer.id, actor=actor.strip(), at=now)
        except offers.OfferNotFound:
            return problem(404, "no offer with that id")
        except plans.PlanError as exc:
            return problem(409, str(exc))
        return web.json_response(offer_document(offer, account, now=now))


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
        "timezone": {
            "type": ["string", "null"],
            "description": "null: not known (quiet hours then hold in every US zone)",
        },
        "creditor": {"type": ["string", "null"]},
        "payments": {"type": "array", "items": {"$ref": "#/components/schemas/Payment"}},
        "plans": {"type": "array", "items": {"$ref": "#/components/schemas/Plan"}},
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


_MONEY = {"type": "string", "description": "dollars", "examples": ["208.34"]}
_DATE = {"type": "string", "format": "date"}

_DAY = {"type": "string", "format": "date", "pattern": api_contract.DAY_PATTERN}

OFFER_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["kind"],
    "additionalProperties": False,
    "description": (
        "A plan: frequency + start_date + count and/or installment_amount (every installment but "
        "the last is the same; the last takes the rest), or a custom schedule. A settlement: "
        "settlement_amount or percent_off. Limits come from the balance, today's date and the "
        "creditor's flow settings: breaking one is a 422 that names the field."
    ),
    "allOf": [
        {
            "if": {"required": ["kind"], "properties": {"kind": {"const": "settlement"}}},
            # A settlement: an amount or a percentage off, nothing of a plan's.
            "then": {
                "properties": dict.fromkeys(
                    ("frequency", "start_date", "count", "installment_amount", "schedule",
                     "total", "rules"),
                    False,
                ),
                "anyOf": [
                    {"required": ["settlement_amount"], "properties": {"percent_off": False}},
                    {"required": ["percent_off"], "properties": {"settlement_amount": False}},
                ],
            },
            # A plan: a custom schedule, or a frequency and a start with a count or an amount.
            "else": {
                "properties": {"settlement_amount": False, "percent_off": False},
                "anyOf": [
                    {
                        "required": ["schedule"],
                        "properties": dict.fromkeys(
                            ("frequency", "start_date", "count", "installment_amount"), False
                        ),
                    },
                    {
                        "required": ["frequency", "start_date"],
                        "properties": {"schedule": False},
                        "anyOf": [{"required": ["count"]}, {"required": ["installment_amount"]}],
                    },
                ],
            },
        },
        {
            "anyOf": [
                {"properties": {"expires_at": False}},
                {"properties": {"expires_in_days": False}},
            ]
        },
    ],
    "properties": {
        "kind": {"type": "string", "enum": ["plan", "settlement"]},
        "total": api_contract.amount("a plan's total; default: the balance"),
        "frequency": {"type": "string", "enum": ["weekly", "biweekly", "monthly"]},
        "count": {
            "type": "integer",
            "minimum": 1,
            "maximum": 1_000_000,
            "description": "number of installments",
        },
        "installment_amount": api_contract.amount("each installment"),
        "start_date": {**_DAY, "description": "the first installment, customer's date"},
        "schedule": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "description": "a custom schedule: dates strictly increasing; each installment "
            '{"date", "amount"} or [date, amount]',
            "items": {
                "anyOf": [
                    {
                        "type": "object",
                        "required": ["date", "amount"],
                        "additionalProperties": False,
                        "properties": {
                            "date": _DAY,
                            "amount": api_contract.amount("the installment"),
                        },
                    },
                    {
                        "type": "array",
                        "prefixItems": [_DAY, api_contract.amount("the installment")],
                        "minItems": 2,
                        "maxItems": 2,
                    },
                ]
            },
        },
        "settlement_amount": api_contract.amount("the settlement, less than the balance"),
        "percent_off": {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": r"^(?:[1-9][0-9]?(?:\.[0-9]{1,2})?|0\.(?:[1-9][0-9]?|0[1-9]))$",
                },
                {"type": "integer", "minimum": 1, "maximum": 99},
            ],
            "description": 'share off the balance, e.g. 36 or "12.5": more than 0, less than '
            "100, at most 2 decimals (a JSON number is a whole percentage)",
        },
        "expires_at": {
            "type": "string",
            "anyOf": [
                {"format": "date", "pattern": api_contract.DAY_PATTERN},
                {
                    "format": "date-time",
                    "pattern": r"^[1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
                    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
                    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$",
                },
            ],
            "description": "YYYY-MM-DD (the end of that day, customer's time) or a date-time "
            "with offset; default: the creditor's offer lifetime (a plan: at the latest the "
            "first installment's day)",
        },
        "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 365},
        "send_via": {"type": "string", "enum": ["sms", "email", "both"]},
        "created_by": api_contract.SHORT_NAME,
        "rules": {
            "type": "object",
            "description": "what the customer may change by text; default from the settings",
            "properties": {
                "skips_allowed": {"type": "integer", "minimum": 0, "maximum": 365},
                "move_max_days": {"type": "integer", "minimum": 0, "maximum": 365},
            },
            "additionalProperties": False,
        },
    },
}

OFFER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "account_id": {"type": "string"},
        "kind": {"type": "string", "enum": ["plan", "settlement"]},
        "status": {"type": "string", "enum": ["open", "accepted", "expired", "withdrawn"]},
        "total_cents": {"type": "integer"},
        "total": _MONEY,
        "installment_count": {"type": "integer"},
        "frequency": {"type": ["string", "null"]},
        "schedule": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "date": _DATE,
                    "amount": _MONEY,
                    "amount_cents": {"type": "integer"},
                },
            },
        },
        "discount_bps": {"type": ["integer", "null"], "description": "2500 = 25 % off"},
        "savings": {"type": ["string", "null"], "description": "a settlement's saving, dollars"},
        "rules": {"type": ["object", "null"]},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "created_at": {"type": "string", "format": "date-time"},
        "created_by": {"type": ["string", "null"]},
        "sent_at": {"type": ["string", "null"], "format": "date-time"},
        "accepted_at": {"type": ["string", "null"], "format": "date-time"},
        "plan_id": {"type": ["integer", "null"], "description": "the plan, once signed"},
    },
}

PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "offer_id": {"type": ["integer", "null"]},
        "status": {"type": "string", "enum": ["active", "completed", "canceled"]},
        "frequency": {"type": "string"},
        "total_cents": {"type": "integer"},
        "total": _MONEY,
        "installment_count": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
        "canceled_at": {"type": ["string", "null"], "format": "date-time"},
        "installments": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "number": {"type": ["integer", "null"]},
                    "reference": {"type": "string"},
                    "scheduled_for": _DATE,
                    "amount_cents": {"type": "integer"},
                    "amount": _MONEY,
                    "status": {"type": "string", "enum": sorted(set(STATUS_LABELS.values()))},
                },
            },
        },
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _offer(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Offer"}}},
    }


def _path_parameter(name: str, kind: str = "string") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind, "minimum": 1, "maximum": MAX_ROW_ID}
    if kind == "string":
        schema = {"type": kind, "pattern": api_contract.ACCOUNT_ID_PATTERN, "maxLength": 64}
    return {"name": name, "in": "path", "required": True, "schema": schema}


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
        "description": (
            "Operators' API: accounts, offers, plans and conversations. "
            'Errors are {"error": "..."}.'
        ),
    },
    "servers": [{"url": "/api/v1"}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "AccountInput": {},  # built for the day it is served: see openapi()
            "LinkInput": api_contract.LINK_INPUT_SCHEMA,
            "CancelPlanInput": api_contract.CANCEL_INPUT_SCHEMA,
            "WithdrawOfferInput": api_contract.WITHDRAW_INPUT_SCHEMA,
            "Account": ACCOUNT_SCHEMA,
            "Payment": PAYMENT_SCHEMA,
            "Plan": PLAN_SCHEMA,
            "OfferInput": OFFER_INPUT_SCHEMA,
            "Offer": OFFER_SCHEMA,
            "Link": {
                "type": "object",
                "required": [
                    "url", "expires_at", "amount_cents", "allow_amount_change", "fee_cents",
                    "due_on",
                ],
                "additionalProperties": False,
                "properties": {
                    "url": {"type": "string", "format": "uri"},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "amount_cents": {"type": ["integer", "null"]},
                    "allow_amount_change": {"type": "boolean"},
                    "fee_cents": {"type": "integer"},
                    "due_on": {"type": ["string", "null"], "format": "date"},
                },
            },
            "Error": {
                "type": "object",
                "description": "every 4xx answer: what to fix, in one sentence",
                "required": ["error"],
                "additionalProperties": False,
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
                "parameters": [_path_parameter("account_id")],
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
                "parameters": [_path_parameter("account_id")],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/LinkInput"}}
                    },
                },
                "responses": {
                    "201": {
                        "description": "the link (shown once: only its hash is kept)",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Link"}}
                        },
                    },
                    "400": _error("the body is not a JSON object"),
                    **_AUTH_ERRORS,
                    "404": _error("unknown account"),
                    "413": _error("the body is too large"),
                    "422": _error(
                        "the terms are not valid, or the amount is more than the balance; "
                        "the message says why"
                    ),
                },
            }
        },
        "/plans/{plan_id}/cancel": {
            "post": {
                "operationId": "cancelPlan",
                "summary": "Cancel a plan: nothing more is debited, the customer is emailed",
                "parameters": [_path_parameter("plan_id", "integer")],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/CancelPlanInput"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "canceled",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["plan_id", "status", "installments_canceled"],
                                    "properties": {
                                        "plan_id": {"type": "integer"},
                                        "status": {"const": "canceled"},
                                        "installments_canceled": {"type": "integer"},
                                    },
                                }
                            }
                        },
                    },
                    "400": _error("the body is not a JSON object, or reason/actor is not valid"),
                    **_AUTH_ERRORS,
                    "413": _error("the body is too large"),
                    "404": _error("no such plan"),
                    "409": _error("already canceled"),
                },
            }
        },
        "/accounts/{account_id}/offers": {
            "post": {
                "operationId": "createOffer",
                "summary": "Make a plan or settlement offer (with send_via: sent by the worker)",
                "parameters": [_path_parameter("account_id")],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/OfferInput"}}
                    },
                },
                "responses": {
                    "201": _offer("the offer, with its exact schedule"),
                    "400": _error("the body is not a JSON object"),
                    **_AUTH_ERRORS,
                    "404": _error("unknown account"),
                    "413": _error("the body is too large"),
                    "422": _error("the terms break a rule; the message names the field"),
                },
            },
            "get": {
                "operationId": "listOffers",
                "summary": "The account's offers, oldest first",
                "parameters": [_path_parameter("account_id")],
                "responses": {
                    "200": {
                        "description": "the offers",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "account_id": {"type": "string"},
                                        "offers": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Offer"},
                                        },
                                    },
                                }
                            }
                        },
                    },
                    **_AUTH_ERRORS,
                    "404": _error("unknown account"),
                },
            },
        },
        "/offers/{offer_id}": {
            "get": {
                "operationId": "getOffer",
                "summary": "One offer: terms, schedule, status and the plan once signed",
                "parameters": [_path_parameter("offer_id", "integer")],
                "responses": {
                    "200": _offer("the offer"),
                    **_AUTH_ERRORS,
                    "404": _error("no such offer"),
                },
            }
        },
        "/offers/{offer_id}/withdraw": {
            "post": {
                "operationId": "withdrawOffer",
                "summary": "Withdraw an open offer: it can no longer be signed, its links stop",
                "parameters": [_path_parameter("offer_id", "integer")],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/WithdrawOfferInput"}
                        }
                    },
                },
                "responses": {
                    "200": _offer("withdrawn"),
                    "400": _error("the body is not a JSON object"),
                    **_AUTH_ERRORS,
                    "404": _error("no such offer"),
                    "409": _error("the offer is not open (signed, expired or withdrawn)"),
                    "413": _error("the body is too large"),
                    "422": _error("the actor is not a short name"),
                },
            }
        },
        "/conversations/{phone}/handback": {
            "post": {
                "operationId": "handBackConversation",
                "summary": "Hand a conversation taken by an agent back to the bot",
                "parameters": [
                    {
                        "name": "phone",
                        "in": "path",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "maxLength": 30,
                            "pattern": api_contract.PHONE_PATTERN,
                        },
                    }
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


async def openapi(request: web.Request) -> web.Response:
    today = request.config_dict[appkeys.CLOCK].now().date()
    schemas = {
        **OPENAPI["components"]["schemas"],
        "AccountInput": api_contract.account_input_schema(today),
    }
    document = {**OPENAPI, "components": {**OPENAPI["components"], "schemas": schemas}}
    return web.json_response(document)
