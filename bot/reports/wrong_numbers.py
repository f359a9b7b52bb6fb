"""Numbers marked as not the account holder's (``wrong_numbers``: by the customer or an agent),
newest first, for the supervisors' report. Only the phone's last 4 digits leave this module: the
report says which account lost which number, not the number itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger.models import Account, WrongNumber


@dataclass(frozen=True)
class WrongNumberRow:
    phone_last4: str
    account_ref: str
    customer: str
    creditor: str | None
    reported_by: str  # customer | agent:NAME
    reported_at: datetime  # UTC


@dataclass(frozen=True)
class WrongNumberPage:
    rows: list[WrongNumberRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


async def list_wrong_numbers(
    session: AsyncSession, *, page: int = 1, per_page: int = 50
) -> WrongNumberPage:
    page, per_page = max(1, page), min(max(1, per_page), 500)
    total = int(await session.scalar(select(func.count()).select_from(WrongNumber)) or 0)
    found = await session.execute(
        select(WrongNumber.phone, Account.account_ref, Account.first_name, Account.last_name,
               Account.creditor_code, WrongNumber.reported_by, WrongNumber.reported_at)
        .join(Account, Account.id == WrongNumber.account_id)
        .order_by(WrongNumber.reported_at.desc(), WrongNumber.id.desc())
        .limit(per_page).offset((page - 1) * per_page)
    )
    rows = [
        WrongNumberRow(phone_last4=phone[-4:], account_ref=ref,
                       customer=f"{first} {last}".strip(), creditor=creditor,
                       reported_by=by, reported_at=at)
        for phone, ref, first, last, creditor, by, at in found
    ]
    return WrongNumberPage(rows, total, page, per_page)
