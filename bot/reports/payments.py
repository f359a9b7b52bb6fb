"""Payments across accounts: filters (status, a date range on the scheduled date or on when the
payment was made, creditor, channel), a page at a time, and a CSV export of everything that
matches.

Dates are UTC calendar days: ``created_at`` is kept in UTC and a range of days is read as
00:00 UTC of the first to 24:00 UTC of the last; ``scheduled_for`` is the day the payment is
due, as the customer chose it. The CSV holds amounts as dollars with two decimals (``1250.00``,
from integer cents, never a float), the method as brand and last 4 at most, and no SSN, date of
birth or contact detail. A cell a spreadsheet would run as a formula is quoted with ``'``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger.models import Account, Payment, PaymentMethod
from bot.payments.service import STATUS_LABELS

STATUSES = tuple(STATUS_LABELS)
CHANNELS = ("sms", "web")  # Payment.channel: where the customer authorized it
DATE_FIELDS = ("scheduled_for", "created_at")
MAX_PER_PAGE = 500
CSV_COLUMNS = (
    "reference", "account_id", "customer", "creditor", "channel", "status", "amount", "fee",
    "refunded", "scheduled_for", "created_at_utc", "method", "plan", "installment",
)


class ReportError(ValueError):
    """A filter that cannot be read; ``str()`` names it and says what is accepted."""


@dataclass(frozen=True)
class PaymentFilter:
    status: str | None = None
    creditor: str | None = None
    channel: str | None = None
    date_from: date | None = None  # inclusive, UTC day
    date_to: date | None = None  # inclusive, UTC day
    date_field: str = "scheduled_for"  # or "created_at"

    def checked(self) -> PaymentFilter:
        if self.status is not None and self.status not in STATUSES:
            raise ReportError(f"status {self.status!r}: one of {', '.join(STATUSES)}")
        if self.channel is not None and self.channel not in CHANNELS:
            raise ReportError(f"channel {self.channel!r}: one of {', '.join(CHANNELS)}")
        if self.date_field not in DATE_FIELDS:
            raise ReportError(f"date field {self.date_field!r}: one of {', '.join(DATE_FIELDS)}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ReportError(f"the range starts ({self.date_from}) after it ends "
                              f"({self.date_to})")
        return self


@dataclass(frozen=True)
class PaymentRow:
    reference: str
    account_ref: str
    customer: str  # first and last name
    creditor: str | None
    channel: str
    status: str
    amount_cents: int
    fee_cents: int
    refunded_cents: int
    scheduled_for: date
    created_at: datetime  # UTC
    method: str  # "Visa ending 4242", "" when none
    plan_id: int | None
    installment_number: int | None

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)


@dataclass(frozen=True)
class PaymentPage:
    rows: list[PaymentRow]
    total: int  # rows matching, on every page
    page: int  # 1-based
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _filtered(query: Select[Any], filters: PaymentFilter) -> Select[Any]:
    if filters.status:
        query = query.where(Payment.status == filters.status)
    if filters.channel:
        query = query.where(Payment.channel == filters.channel)
    if filters.creditor:
        query = query.where(Account.creditor_code == filters.creditor)
    if filters.date_field == "scheduled_for":
        if filters.date_from:
            query = query.where(Payment.scheduled_for >= filters.date_from)
        if filters.date_to:
            query = query.where(Payment.scheduled_for <= filters.date_to)
    else:
        if filters.date_from:
            query = query.where(Payment.created_at >= _midnight(filters.date_from))
        if filters.date_to:
            query = query.where(Payment.created_at < _midnight(filters.date_to + timedelta(1)))
    return query


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


_ROW = (
    select(Payment, Account.account_ref, Account.first_name, Account.last_name,
           Account.creditor_code, PaymentMethod)
    .join(Account, Account.id == Payment.account_id)
    .outerjoin(PaymentMethod, PaymentMethod.id == Payment.method_id)
)


def _ordered(query: Select[Any], filters: PaymentFilter) -> Select[Any]:
    field = Payment.scheduled_for if filters.date_field == "scheduled_for" else Payment.created_at
    return query.order_by(field.desc(), Payment.id.desc())


def _row(found: Any) -> PaymentRow:
    payment, account_ref, first, last, creditor, method = found
    return PaymentRow(
        reference=payment.reference,
        account_ref=account_ref,
        customer=f"{first} {last}".strip(),
        creditor=creditor,
        channel=payment.channel,
        status=payment.status,
        amount_cents=payment.amount_cents,
        fee_cents=payment.fee_cents,
        refunded_cents=payment.refunded_cents,
        scheduled_for=payment.scheduled_for,
        created_at=payment.created_at,
        method=method.description if method is not None else "",
        plan_id=payment.plan_id,
        installment_number=payment.installment_number,
    )


async def list_payments(
    session: AsyncSession, filters: PaymentFilter | None = None, *, page: int = 1,
    per_page: int = 50,
) -> PaymentPage:
    """One page of the payments that match, newest first (by the filter's date field)."""
    filters = (filters or PaymentFilter()).checked()
    if not 1 <= page <= MAX_PAGE:
        raise ReportError(f"page {page}: pages run from 1 to {MAX_PAGE:,}")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ReportError(f"{per_page} a page: from 1 to {MAX_PER_PAGE}")
    counted = _filtered(
        select(func.count()).select_from(Payment).join(Account, Account.id == Payment.account_id),
        filters,
    )
    total = int(await session.scalar(counted) or 0)
    found = await session.execute(
        _ordered(_filtered(_ROW, filters), filters).limit(per_page).offset((page - 1) * per_page)
    )
    return PaymentPage([_row(r) for r in found], total, page, per_page)


# Far beyond any ledger's pages, and far below what a database's OFFSET takes (a 64-bit integer).
MAX_PAGE = 1_000_000


def dollars(cents: int) -> str:
    """Integer cents as a plain dollar figure for a spreadsheet: 125000 -> "1250.00"."""
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(cents), 100)
    return f"{sign}{whole}.{rest:02d}"


def _cell(value: str) -> str:
    # A name such as "=HYPERLINK(...)" must stay text when the file is opened in a spreadsheet.
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


async def payments_csv(session: AsyncSession, filters: PaymentFilter | None = None) -> str:
    """Every payment that matches, as CSV (header first), in the list's order."""
    filters = (filters or PaymentFilter()).checked()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    found = await session.execute(_ordered(_filtered(_ROW, filters), filters))
    for raw in found:
        row = _row(raw)
        writer.writerow((
            row.reference, _cell(row.account_ref), _cell(row.customer), _cell(row.creditor or ""),
            row.channel, row.status_label, dollars(row.amount_cents), dollars(row.fee_cents),
            dollars(row.refunded_cents), row.scheduled_for.isoformat(),
            row.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), _cell(row.method),
            row.plan_id or "", row.installment_number or "",
        ))
    return out.getvalue()
