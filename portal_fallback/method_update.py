"""Updating the payment method after a decline: the page the decline notice's link opens.

``GET /portal/method`` shows what did not go through (the account's last declined payment, in
plain words), the payments still to come, and the saved methods to choose from or a card to add.
Choosing one (``POST /portal/method``) or adding one (``POST /portal/method/new``) hands it to
``bot.plans.signing.switch_method``, which makes it the method of the account's active plans
and of every scheduled payment (a scheduled retry of the declined one included) in one transaction.
``GET /portal/method/updated`` confirms what the method will be used for, with a way to pay the
missed amount now through the normal payment flow.

A session that belongs to an account may use these pages (the link, or a look-up that verified
the customer with a code), but not one proved by knowledge answers only (SSN last 4 and date of
birth): those pay once and change no saved method. The method posted is always checked to be the
account's own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import appkeys
from bot.accounts.loading import record_saved_method
from bot.ledger.models import Account, Payment, PaymentMethod, Plan
from bot.plans.signing import PlanError, switch_method
from bot.providers.payments import MethodRejected, PaymentError, polite_decline_message
from bot.text.i18n import N_, gettext
from portal_fallback.app import page
from portal_fallback.link_scope import knowledge_only
from portal_fallback.method_entry import (
    METHOD_REF_PREFIXES,
    MethodNotTaken,
    method_entry_context,
    save_entered_method,
)
from portal_fallback.sessions import SESSION
from portal_fallback.signing import method_label, methods_of, methods_taken

log = logging.getLogger(__name__)

DISPLAY_ZONE = "America/New_York"  # where an account's zone is unknown (as in the conversation)
METHOD_MISSING = "payment_method_missing"  # bot.worker's code for a method no longer on file

NOTICES = {
    "choose_method": N_("Please choose how you will pay."),
    "method_failed": N_(
        "That card or account could not be saved. Please check it or use another one."
    ),
}


def add_routes(portal: web.Application) -> None:
    portal.router.add_get("/method", show)
    portal.router.add_post("/method", method_chosen)
    portal.router.add_post("/method/new", save_new_method)
    portal.router.add_get("/method/updated", updated)


# ---------------------------------------------------------------- what the page shows


@dataclass(frozen=True)
class Missed:
    payment: Payment
    method: PaymentMethod | None
    declined_on: date
    reason: str
    retry: Payment | None  # the scheduled retry of it, when the retry rule made one


@dataclass(frozen=True)
class Upcoming:
    payment: Payment
    what: str
    method: PaymentMethod | None


def zone_of(account: Account) -> ZoneInfo:
    try:
        return ZoneInfo(account.timezone or DISPLAY_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DISPLAY_ZONE)


def plain_reason(failure_code: str | None) -> str:
    if failure_code == METHOD_MISSING:
        return gettext("The payment method on file is no longer available.")
    return polite_decline_message(failure_code)


async def load_account(request: web.Request, db: AsyncSession) -> Account:
    row = request.get(SESSION)
    if row is None or row.account_id is None:
        raise web.HTTPSeeOther("/portal/")
    if knowledge_only(row):
        # Knowledge answers are a look-up, not proof: they may not move what is scheduled.
        refusal = page(request, "needs_code.html", 403, title=N_("Verify with a code"))
        headers = {k: v for k, v in refusal.headers.items() if k.lower() != "content-type"}
        raise web.HTTPForbidden(text=refusal.text, content_type="text/html", headers=headers)
    account = await db.get(Account, row.account_id)
    if account is None:
        raise web.HTTPSeeOther("/portal/")
    return account


async def last_missed(db: AsyncSession, account: Account) -> Missed | None:
    payment = await db.scalar(
        select(Payment)
        .where(Payment.account_id == account.id, Payment.status == "declined")
        .order_by(Payment.updated_at.desc(), Payment.id.desc())
        .limit(1)
    )
    if payment is None:
        return None
    # The worker's retries of a declined payment carry its key plus "~r<n>".
    base = payment.idempotency_key.rsplit("~r", 1)[0]
    retries = list(
        await db.scalars(
            select(Payment)
            .where(
                Payment.account_id == account.id,
                Payment.idempotency_key.startswith(f"{base}~r", autoescape=True),
            )
            .order_by(Payment.scheduled_for, Payment.id)
        )
    )
    if any(r.status in ("paid", "pending", "processing") for r in retries):
        return None  # a retry went through (or is on its way): nothing is missed any more
    retry = next((r for r in retries if r.status == "scheduled"), None)
    method = await db.get(PaymentMethod, payment.method_id) if payment.method_id else None
    return Missed(
        payment=payment,
        method=method,
        declined_on=payment.updated_at.astimezone(zone_of(account)).date(),
        reason=plain_reason(payment.failure_code),
        retry=retry,
    )


async def upcoming(db: AsyncSession, account: Account, missed: Missed | None) -> list[Upcoming]:
    """Every scheduled payment of the account: the active plans' installments and the rest."""
    rows = list(
        await db.scalars(
            select(Payment)
            .where(Payment.account_id == account.id, Payment.status == "scheduled")
            .order_by(Payment.scheduled_for, Payment.id)
        )
    )
    plan_ids = {p.plan_id for p in rows if p.plan_id is not None}
    plans = (
        {plan.id: plan for plan in await db.scalars(select(Plan).where(Plan.id.in_(plan_ids)))}
        if plan_ids
        else {}
    )
    methods = {m.id: m for m in await methods_of(db, account.id)}
    found = []
    for payment in rows:
        plan = plans.get(payment.plan_id) if payment.plan_id is not None else None
        if missed is not None and missed.retry is not None and payment.id == missed.retry.id:
            what = gettext("Retry of the missed payment")
        elif plan is not None and payment.installment_number:
            what = gettext("Plan payment %(number)d of %(count)d") % {
                "number": payment.installment_number, "count": plan.installment_count
            }
        else:
            what = gettext("Scheduled payment")
        found.append(Upcoming(payment, what, methods.get(payment.method_id or -1)))
    return found


async def brand_of(request: web.Request, db: AsyncSession, account: Account) -> str:
    return await request.config_dict[appkeys.ENGINE].brand_for(db, account)


# ---------------------------------------------------------------- the pages


async def show(
    request: web.Request, *, notice: str | None = None, status: int = 200
) -> web.Response:
    async with request.config_dict[appkeys.DATABASE].session() as db:
        account = await load_account(request, db)
        missed = await last_missed(db, account)
        methods = await methods_taken(request, db, account)
        default = next((m for m in methods if m.is_default), None)
        context: dict[str, Any] = {
            "title": N_("Update your payment method"),
            "account": account,
            "brand": await brand_of(request, db, account),
            "missed": missed,
            "upcoming": await upcoming(db, account, missed),
            "methods": methods,
            "selected": default.id if default else None,
            "notice": gettext(NOTICES.get(notice, notice)) if notice else None,
        }
        context.update(await method_entry_context(request, db, account))
    return page(request, "method_update.html", status, **context)


async def method_chosen(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        account = await load_account(request, db)
        choice = _text(form, "method")
        method = await db.get(PaymentMethod, int(choice)) if choice.isdigit() else None
        # Another account's method is answered like one that does not exist: ids reveal nothing.
        if method is None or method not in await methods_taken(request, db, account):
            return await show(request, notice="choose_method", status=422)
        return await _switch_to(request, db, account, method, at=now)


async def save_new_method(request: web.Request) -> web.StreamResponse:
    """A card saved with Stripe.js (or a sandbox test method): keep it, switch to it."""
    form = await request.post()
    method_ref = _text(form, "payment_method")
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        account = await load_account(request, db)
        if not method_ref.startswith(METHOD_REF_PREFIXES) or len(method_ref) > 64:
            return await show(request, notice="method_failed", status=422)
        try:
            saved = await save_entered_method(request, db, account, method_ref)
        except (MethodRejected, PaymentError):
            return await show(request, notice="method_failed", status=422)
        except MethodNotTaken as refused:
            return await show(request, notice=refused.notice, status=422)
        method = await record_saved_method(db, account, saved, at=now, default=True, channel="web")
        await db.flush()
        return await _switch_to(request, db, account, method, at=now)


async def _switch_to(
    request: web.Request, db: AsyncSession, account: Account, method: PaymentMethod, *, at: datetime
) -> web.StreamResponse:
    """What is still to pay moves to `method`; a refusal (the plan closed meanwhile) is shown."""
    try:
        await switch_method(db, account, method, at=at, actor="customer:web")
    except PlanError as exc:
        await db.rollback()
        return await show(request, notice=str(exc), status=422)
    raise web.HTTPSeeOther("/portal/method/updated")


async def updated(request: web.Request) -> web.Response:
    async with request.config_dict[appkeys.DATABASE].session() as db:
        account = await load_account(request, db)
        methods = await methods_of(db, account.id)
        default = next((m for m in methods if m.is_default), None)
        if default is None:
            raise web.HTTPSeeOther("/portal/method")
        missed = await last_missed(db, account)
        coming = [
            u for u in await upcoming(db, account, missed) if u.payment.method_id == default.id
        ]
        return page(
            request,
            "method_updated.html",
            title=N_("Payment method updated"),
            account=account,
            brand=await brand_of(request, db, account),
            method_label=method_label(default),
            upcoming=coming,
            missed=missed,
        )


def _text(form: MultiDictProxy[Any], name: str, *, limit: int = 300) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""
