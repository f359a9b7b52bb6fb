"""Loading accounts: one validation and one upsert shared by the CSV import and the REST API."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import ledger
from bot.models import Account, Creditor
from bot.money import InvalidAmount, dollars_to_cents
from bot.phones import InvalidPhone, normalize_phone
from bot.security import ssn_digest

REQUIRED = ("account_id", "first_name", "last_name", "phone", "email", "balance")
OPTIONAL = ("ssn", "dob", "zip", "timezone", "creditor", "description")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class InvalidAccount(ValueError):
    pass


@dataclass(frozen=True)
class AccountInput:
    account_ref: str
    first_name: str
    last_name: str
    phone: str | None
    email: str | None
    balance_cents: int
    ssn: str | None = None
    dob: date | None = None
    zip_code: str | None = None
    timezone: str | None = None
    creditor: str | None = None
    description: str | None = None


def parse_account(row: Mapping[str, Any]) -> AccountInput:
    """Validate one record (a CSV row or an API body); raise InvalidAccount with the reason."""

    def text(name: str, limit: int = 120) -> str | None:
        value = row.get(name)
        if value is None:
            return None
        value = str(value).strip()
        if len(value) > limit:
            raise InvalidAccount(f"{name} is longer than {limit} characters")
        return value or None

    account_ref = text("account_id", 64)
    if not account_ref or not _ACCOUNT_ID.match(account_ref):
        raise InvalidAccount("account_id is missing or has characters other than letters, digits, . _ -")
    first, last = text("first_name", 80), text("last_name", 80)
    if not first or not last:
        raise InvalidAccount("first_name and last_name are required")
    phone = email = None
    if raw_phone := text("phone", 30):
        try:
            phone = normalize_phone(raw_phone)
        except InvalidPhone as exc:
            raise InvalidAccount(f"phone {raw_phone!r} is not a phone number") from exc
    if raw_email := text("email", 254):
        if not _EMAIL.match(raw_email):
            raise InvalidAccount(f"email {raw_email!r} is not an email address")
        email = raw_email.lower()
    raw_balance = row.get("balance")
    if raw_balance is None or str(raw_balance).strip() == "":
        raise InvalidAccount("balance is required (dollars, e.g. 1250.00)")
    try:
        balance = dollars_to_cents(str(raw_balance))
    except InvalidAmount as exc:
        raise InvalidAccount(f"balance {raw_balance!r} is not an amount in dollars") from exc
    if balance < 0:
        raise InvalidAccount("balance cannot be negative")
    if balance > 100_000_000_00:
        raise InvalidAccount("balance is implausibly large")
    ssn = None
    if raw_ssn := text("ssn", 20):
        digits = re.sub(r"[\s-]", "", raw_ssn)
        if not re.fullmatch(r"\d{9}", digits):
            raise InvalidAccount("ssn must have 9 digits")  # the value itself is never echoed
        ssn = digits
    dob = None
    if raw_dob := text("dob", 20):
        dob = _parse_date(raw_dob)
        if dob is None or dob.year < 1900 or dob > date.today():
            raise InvalidAccount(f"dob {raw_dob!r} is not a date (YYYY-MM-DD or MM/DD/YYYY)")
    zone = text("timezone", 64)
    if zone:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidAccount(f"timezone {zone!r} is not a time zone such as America/Chicago") from exc
    zip_code = text("zip", 10)
    if zip_code and not re.fullmatch(r"\d{5}(-\d{4})?", zip_code):
        raise InvalidAccount(f"zip {zip_code!r} is not a ZIP code")
    if not phone and not email:
        raise InvalidAccount("a phone or an email is required")
    return AccountInput(
        account_ref=account_ref, first_name=first, last_name=last, phone=phone, email=email,
        balance_cents=balance, ssn=ssn, dob=dob, zip_code=zip_code, timezone=zone,
        creditor=text("creditor", 40), description=text("description", 120),
    )


def _parse_date(value: str) -> date | None:
    for fmt in ("%Y-%m-%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    return None


async def upsert_account(
    session: AsyncSession, data: AccountInput, *, secret_key: str, at: datetime, actor: str
) -> tuple[Account, bool]:
    """Insert or update by account_id; returns (account, created). The caller commits."""
    account = await session.scalar(select(Account).where(Account.account_ref == data.account_ref))
    created = account is None
    if data.creditor:
        code = data.creditor[:40]
        if await session.get(Creditor, code) is None:
            session.add(Creditor(code=code, name=data.creditor, disclosure="", settings={}))
    if account is None:
        account = Account(account_ref=data.account_ref, created_at=at, balance_cents=0,
                          first_name=data.first_name, last_name=data.last_name)
        session.add(account)
    account.first_name, account.last_name = data.first_name, data.last_name
    account.phone, account.email = data.phone, data.email
    account.balance_cents = data.balance_cents
    if data.ssn:
        account.ssn_hash, account.ssn_last4 = ssn_digest(secret_key, data.ssn), data.ssn[-4:]
    if data.dob:
        account.dob = data.dob
    if data.zip_code:
        account.zip_code = data.zip_code
    account.timezone = data.timezone or account.timezone or "America/New_York"
    if data.creditor:
        account.creditor_code = data.creditor[:40]
    if data.description:
        account.description = data.description
    account.updated_at = at
    await session.flush()
    await ledger.audit(session, "account_created" if created else "account_updated", at=at,
                       actor=actor, account_id=account.id)
    return account, created


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return (f"{self.created} created, {self.updated} updated, "
                f"{len(self.errors)} rejected")


def read_csv_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """The header and the rows with their line numbers (line 1 is the header)."""
    handle = path.open(newline="", encoding="utf-8-sig")
    reader = csv.DictReader(handle)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        handle.close()
        raise InvalidAccount(f"the header lacks: {', '.join(missing)}")
    reader.fieldnames = header

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        with handle:
            for row in reader:
                if None in row:
                    yield reader.line_num, {"__error__": "more fields than the header has"}
                    continue
                if not any((v or "").strip() for v in row.values()):
                    continue
                yield reader.line_num, row

    return header, rows()


async def import_csv(
    sessions: Callable[[], Any],
    path: Path,
    *,
    secret_key: str,
    clock: Any,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 500,
) -> ImportReport:
    """Upsert every good row, report every bad one by line; re-running changes nothing new."""
    _, rows = read_csv_rows(path)
    report = ImportReport()
    seen: dict[str, int] = {}
    batch: list[tuple[int, AccountInput]] = []

    async def flush() -> None:
        async with sessions() as session:
            for _line, data in batch:
                _, created = await upsert_account(session, data, secret_key=secret_key,
                                                  at=clock.now(), actor="import")
                report.created += created
                report.updated += not created
            await session.commit()
        if progress:
            progress(len(batch))
        batch.clear()

    for line, row in rows:
        if "__error__" in row:
            report.errors.append((line, row["__error__"]))
            continue
        try:
            data = parse_account(row)
        except InvalidAccount as exc:
            report.errors.append((line, str(exc)))
            continue
        if data.account_ref in seen:
            report.errors.append((line, f"account_id {data.account_ref} repeats line {seen[data.account_ref]}"))
            continue
        seen[data.account_ref] = line
        batch.append((line, data))
        if len(batch) >= batch_size:
            await flush()
    if batch:
        await flush()
    return report
