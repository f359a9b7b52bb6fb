"""Payments across accounts for supervisors: filters (status, a date range on the due date or
on when it was made, creditor, channel), pages, the CSV export of everything that matches
(bot/reports/payments.py), and one payment with its refunds and the two actions: cancel a
scheduled one-off payment (bot/payments/cancellation.py: the customer is emailed) and refund a
Paid one in full or in part (bot/payments/refunds.py, through the processor's Refunds API).

A refund form carries a key minted when the page was drawn: a double click or a resubmitted
form sends the same key, and the refund's own idempotency finds the first request instead of
refunding twice. Refusals are shown on the page in the domain's words (never a 500); a processor
out of reach says the refund is not confirmed and that asking again is safe.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select

from agent_console.app import HEADERS, page, require_role
from agent_console.supervisor import actor
from bot import appkeys
from bot.ledger.models import Account, Creditor, Payment, Refund
from bot.money import InvalidAmount, dollars_to_cents, format_cents
from bot.payments.cancellation import cancel_scheduled_payment
from bot.payments.refunds import (
    MoneyOperationError,
    NoSuchPayment,
    RefundNotConfirmed,
    payment_by_reference,
    refund_payment,
    refunds_of,
)
from bot.payments.service import STATUS_LABELS
from bot.reports.payments import (
    CHANNELS,
    DATE_FIELDS,
    PaymentFilter,
    ReportError,
    list_payments,
    payments_csv,
)

PER_PAGE = 25
FILTER_KEYS = ("status", "creditor", "channel", "from", "to", "date_field")


def add_routes(console: web.Application) -> None:
    console.router.add_get("/supervisor/payments", payments)
    console.router.add_get("/supervisor/payments.csv", export)
    console.router.add_get("/supervisor/payments/{reference}", one)
    console.router.add_post("/supervisor/payments/{reference}/refund", refund)
    console.router.add_post("/supervisor/payments/{reference}/cancel", cancel)


def _day(query: Any, key: str, label: str) -> date | None:
    text = (query.get(key) or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ReportError(f"{label} {text[:20]!r} is not a date (YYYY-MM-DD)") from None


def filters_from(query: Any) -> PaymentFilter:
    """The filter the query asks for, checked; raises ReportError naming what is wrong."""
    return PaymentFilter(
        status=(query.get("status") or None),
        creditor=(query.get("creditor") or "").strip()[:40] or None,
        channel=(query.get("channel") or None),
        date_from=_day(query, "from", "from"),
        date_to=_day(query, "to", "to"),
        date_field=query.get("date_field") or "scheduled_for",
    ).checked()


def _query_of(request: web.Request, **changed: Any) -> str:
    kept = {k: request.query[k] for k in FILTER_KEYS if request.query.get(k)}
    kept.update({k: str(v) for k, v in changed.items()})
    return urlencode(kept)


@require_role("supervisor")
async def payments(request: web.Request) -> web.StreamResponse:
    error = None
    try:
        filters = filters_from(request.query)
        number = int(request.query.get("page") or 1)
    except (ReportError, ValueError) as exc:
        error = str(exc) if isinstance(exc, ReportError) else "page: a whole number from 1"
        filters, number = PaymentFilter(), 1
    async with request.config_dict[appkeys.DATABASE].session() as db:
        creditors = list(await db.scalars(select(Creditor.code).order_by(Creditor.code)))
        try:
            found = await list_payments(db, filters, page=max(1, number), per_page=PER_PAGE)
        except ReportError as exc:
            error, found = str(exc), await list_payments(db, PaymentFilter(), per_page=PER_PAGE)
    return page(
        request, "supervisor_payments.html", 422 if error else 200, title="Payments",
        found=found, error=error, q=request.query, statuses=STATUS_LABELS, channels=CHANNELS,
        date_fields=DATE_FIELDS, creditors=creditors, query_of=lambda **c: _query_of(request, **c),
    )


@require_role("supervisor")
async def export(request: web.Request) -> web.StreamResponse:
    try:
        filters = filters_from(request.query)
    except ReportError as exc:
        return page(request, "supervisor_payments.html", 422, title="Payments", found=None,
                    error=str(exc), q=request.query, statuses=STATUS_LABELS, channels=CHANNELS,
                    date_fields=DATE_FIELDS, creditors=[], query_of=lambda **c: "")
    async with request.config_dict[appkeys.DATABASE].session() as db:
        text = await payments_csv(db, filters)
    stamp = request.config_dict[appkeys.CLOCK].now().strftime("%Y%m%d-%H%M%S")
    return web.Response(
        text=text, content_type="text/csv", charset="utf-8",
        headers={**HEADERS, "Content-Disposition": f'attachment; filename="payments-{stamp}.csv"'},
    )


async def _render_one(request: web.Request, *, status: int = 200, error: str | None = None,
                      done: str | None = None, amount: str = "", key: str = ""
                      ) -> web.StreamResponse:
    reference = request.match_info["reference"]
    async with request.config_dict[appkeys.DATABASE].session() as db:
        try:
            payment = await payment_by_reference(db, reference)
        except NoSuchPayment:
            raise web.HTTPNotFound() from None
        account = await db.get(Account, payment.account_id)
        refunds = await refunds_of(db, payment.id)
    assert account is not None
    said = _DONE.get(done or "")
    if done in ("refunded", "repeated"):
        shown = next((r for r in refunds if str(r.id) == request.query.get("refund")), None)
        said = _refund_said(done, shown, payment, account) if shown is not None else None
    return page(
        request, "supervisor_payment.html", status, title=f"Payment {payment.reference}",
        p=payment, account=account, refunds=refunds, status_label=STATUS_LABELS,
        refundable=max(0, payment.amount_cents - payment.refunded_cents),
        cancelable=payment.status == "scheduled" and payment.plan_id is None,
        error=error, done=said, amount=amount,
        # The same form sent again (a refusal shown, the processor out of reach) keeps its key.
        refund_key=key or f"console:{secrets.token_urlsafe(18)}",
    )


@require_role("supervisor")
async def one(request: web.Request) -> web.StreamResponse:
    return await _render_one(request, done=request.query.get("done", ""))


_DONE = {
    "canceled": "Canceled: it will not be charged, and the customer was emailed.",
    "canceled_quiet": "Canceled: it will not be charged (no email on file: the customer was "
                      "not told).",
}


def _back(request: web.Request, done: str, **more: object) -> web.HTTPSeeOther:
    reference = request.match_info["reference"]
    query = urlencode({"done": done, **more})
    return web.HTTPSeeOther(f"/agent/supervisor/payments/{reference}?{query}", headers=HEADERS)


def _refund_said(done: str, refund: Refund, payment: Payment, account: Account) -> str:
    amount = format_cents(refund.amount_cents)
    if done == "repeated":
        return (f"Already done: {amount} was refunded ({refund.status}); nothing more was "
                "refunded.")
    return (f"Refunded {amount} ({refund.status}). Refunded in all "
            f"{format_cents(payment.refunded_cents)} of {format_cents(payment.amount_cents)}; "
            f"the balance is now {format_cents(account.balance_cents)}.")


async def _key_used(request: web.Request, key: str) -> bool:
    if not key:
        return False
    async with request.config_dict[appkeys.DATABASE].session() as db:
        return await db.scalar(select(Refund.id).where(Refund.idempotency_key == key)) is not None


def _text(form: Any, key: str, limit: int) -> str:
    value = form.get(key)
    return value.strip()[:limit] if isinstance(value, str) else ""


@require_role("supervisor")
async def refund(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    whole = _text(form, "whole", 10) == "1"
    amount_text = _text(form, "amount", 40)
    amount_cents: int | None = None
    if not whole:
        try:
            amount_cents = dollars_to_cents(amount_text)
        except InvalidAmount:
            return await _render_one(
                request, status=422, amount=amount_text, key=_text(form, "key", 80),
                error=f"Amount: {amount_text!r} is not an amount in dollars, e.g. 12.34."
                if amount_text else "Amount: say how much to refund, or choose the full amount.",
            )
        if amount_cents <= 0:
            return await _render_one(request, status=422, amount=amount_text,
                                     key=_text(form, "key", 80),
                                     error="Amount: a refund is more than $0.00.")
    key = _text(form, "key", 80)
    engine = request.config_dict[appkeys.ENGINE]
    try:
        done = await refund_payment(
            request.config_dict[appkeys.DATABASE], request.config_dict[appkeys.PROVIDERS].charging,
            reference=request.match_info["reference"], actor=actor(request),
            clock=request.config_dict[appkeys.CLOCK], amount_cents=amount_cents,
            reason=_text(form, "reason", 200) or None,
            idempotency_key=key or None, notifier=engine.notifier,
        )
    except NoSuchPayment:
        raise web.HTTPNotFound() from None
    except RefundNotConfirmed as exc:
        return await _render_one(request, status=502, error=str(exc), amount=amount_text,
                                 key=key)
    except MoneyOperationError as exc:
        # Refused before any row was written (the key is still free), or by the processor (a
        # failed row holds the key: a fresh form, so trying again is a new request).
        return await _render_one(request, status=409, error=str(exc), amount=amount_text,
                                 key="" if await _key_used(request, key) else key)
    if done.status == "failed":  # this form's request was refused by the processor before
        return await _render_one(
            request, status=409, amount=amount_text,
            error="The processor refused this refund earlier: nothing was refunded. The form "
                  "is fresh: send it again to make a new request.")
    # The page says it from the ledger's row (nothing a request wrote is shown back).
    raise _back(request, "repeated" if done.repeated else "refunded", refund=done.refund_id)


@require_role("supervisor")
async def cancel(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    engine = request.config_dict[appkeys.ENGINE]
    try:
        done = await cancel_scheduled_payment(
            request.config_dict[appkeys.DATABASE], reference=request.match_info["reference"],
            actor=actor(request), clock=request.config_dict[appkeys.CLOCK],
            reason=_text(form, "reason", 200) or None, notifier=engine.notifier,
        )
    except NoSuchPayment:
        raise web.HTTPNotFound() from None
    except MoneyOperationError as exc:
        return await _render_one(request, status=409, error=str(exc))
    raise _back(request, "canceled" if done.email_id is not None else "canceled_quiet")

