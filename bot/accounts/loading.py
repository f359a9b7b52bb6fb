"""Loading accounts: one validation and one upsert shared by the CSV import and the REST API."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger import queries as ledger
from bot.ledger.models import Account, Creditor, Offer, PaymentMethod, WrongNumber
from bot.money import InvalidAmount, dollars_to_cents
from bot.payments import collectable
from bot.phones import InvalidPhone, normalize_phone
from bot.providers.payments import PaymentGateway, SavedMethod
from bot.security import ssn_digest

REQUIRED = ("account_id", "first_name", "last_name", "phone", "email", "balance")
OPTIONAL = ("ssn", "dob", "zip", "timezone", "creditor", "description", "language")
FIELDS = REQUIRED + OPTIONAL
MAX_BALANCE_CENTS = 100_000_000_00

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Control characters (NUL, BEL...) and lone surrogates: no name or address has them, PostgreSQL
# refuses NUL and no driver can encode a lone surrogate. (Whitespace is collapsed before.)
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Dollars as operators write them: 1250, 1250.5, 1,250.00, $1,250.00
# (no exponent, no decimal comma: "12,50" is not $1,250.00).
_DOLLARS = re.compile(r"^\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d{1,2})?$")
# Nine digits the way an SSN is written: never echoed back, whatever column it sits in.
_SSN_LIKE = re.compile(r"(?<!\d)\d{3}[\s.-]?\d{2}[\s.-]?\d{4}(?!\d)")
# US time zones as operators name them; the abbreviations map to the zone that observes DST
# (zoneinfo's own "EST" is UTC-5 all year, which would put 9 p.m. EDT at 8 p.m.).
ZONE_ALIASES = {
    **dict.fromkeys(("eastern", "et", "est", "edt"), "America/New_York"),
    **dict.fromkeys(("central", "ct", "cst", "cdt"), "America/Chicago"),
    **dict.fromkeys(("mountain", "mt", "mst", "mdt"), "America/Denver"),
    "arizona": "America/Phoenix",
    **dict.fromkeys(("pacific", "pt", "pst", "pdt"), "America/Los_Angeles"),
    **dict.fromkeys(("alaska", "akst", "akdt"), "America/Anchorage"),
    **dict.fromkeys(("hawaii", "hst"), "Pacific/Honolulu"),
}


class InvalidAccount(ValueError):
    """One record is not a valid account; the message says why and never shows an SSN."""


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (encoding, empty, header); nothing was written."""


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
    language: str | None = None  # of texts, pages, emails: en | es; None keeps what is stored


def _show(value: str, limit: int = 40) -> str:
    """A value quoted for an error message: SSN-like digits hidden, long values cut."""
    shown = _SSN_LIKE.sub("***-**-****", value)
    if len(shown) > limit:
        shown = shown[:limit] + "..."
    return repr(shown)


def parse_account(row: Mapping[str, Any]) -> AccountInput:
    """Validate one record (a CSV row or an API body); raise InvalidAccount with the reason."""

    def text(name: str, limit: int = 120) -> str | None:
        value = row.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidAccount(f"{name} must be text (a JSON string)")
        value = " ".join(value.split())  # line breaks and tabs (a multi-line CSV cell): a space
        if _FORBIDDEN.search(value):
            raise InvalidAccount(f"{name} contains a control character")
        if len(value) > limit:
            raise InvalidAccount(f"{name} is longer than {limit} characters")
        return value or None

    account_ref = text("account_id", 64)
    if not account_ref or not _ACCOUNT_ID.match(account_ref):
        raise InvalidAccount(
            "account_id is missing or has characters other than letters, digits, . _ -"
        )
    first, last = text("first_name", 80), text("last_name", 80)
    if not first or not last:
        raise InvalidAccount("first_name and last_name are required")
    for name in ("phone", "email", "ssn"):
        if isinstance(row.get(name), str) and "*" in row[name]:
            # What GET shows ("z***@example.com", "***-***-0142"): posting the document back
            # must never overwrite the real value with its mask.
            raise InvalidAccount(f"{name} is masked (as the API shows it): send the full value")
    phone = email = None
    if raw_phone := text("phone", 30):
        try:
            phone = normalize_phone(raw_phone)
        except InvalidPhone as exc:
            raise InvalidAccount(f"phone {_show(raw_phone)} is not a phone number") from exc
    if raw_email := text("email", 254):
        if not _EMAIL.match(raw_email):
            raise InvalidAccount(f"email {_show(raw_email)} is not an email address")
        email = raw_email.lower()
    balance = _parse_balance(row.get("balance"))
    ssn = None
    if raw_ssn := text("ssn", 20):
        digits = re.sub(r"[\s.-]", "", raw_ssn)
        if not re.fullmatch(r"\d{9}", digits):
            raise InvalidAccount("ssn must have 9 digits")  # the value itself is never echoed
        ssn = digits
    dob = None
    if raw_dob := text("dob", 20):
        dob = _parse_date(raw_dob)
        if dob is None or dob.year < 1900 or dob > date.today():
            raise InvalidAccount(
                f"dob {_show(raw_dob)} is not a date of birth (YYYY-MM-DD or MM/DD/YYYY)"
            )
    zone = _parse_timezone(text("timezone", 64))
    if (language := (text("language", 20) or "").lower() or None) not in (None, "en", "es"):
        raise InvalidAccount(f"language {_show(language or '')} is not en or es")
    zip_code = text("zip", 10)
    if zip_code and not re.fullmatch(r"\d{5}(-\d{4})?", zip_code):
        raise InvalidAccount(f"zip {_show(zip_code)} is not a ZIP code")
    if not phone and not email:
        raise InvalidAccount("a phone or an email is required")
    return AccountInput(
        account_ref=account_ref,
        first_name=first,
        last_name=last,
        phone=phone,
        email=email,
        balance_cents=balance,
        ssn=ssn,
        dob=dob,
        zip_code=zip_code,
        timezone=zone,
        creditor=text("creditor", 40),
        description=text("description", 120),
        language=language,
    )


def _parse_balance(raw: Any) -> int:
    """Dollars as text ("1,250.00") or, from JSON, a number; integer cents out, never a float."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InvalidAccount("balance is required (dollars, e.g. 1250.00)")
    if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
        raise InvalidAccount('balance must be an amount in dollars, e.g. "1250.00"')
    if isinstance(raw, float | Decimal):
        number = Decimal(repr(raw)) if isinstance(raw, float) else raw
        # (bounds first: formatting 1E+999999999 would write a billion digits)
        if not number.is_finite() or number.adjusted() > 12 or number.as_tuple().exponent < -12:
            raise InvalidAccount("balance is not an amount in dollars")
        value = format(number, "f")
    else:
        value = str(raw).strip()
    if len(value) > 30:
        raise InvalidAccount("balance is not an amount in dollars")
    if value.startswith("-") or value.startswith("$-"):
        raise InvalidAccount("balance cannot be negative")
    if not _DOLLARS.match(value):
        raise InvalidAccount(
            f"balance {_show(value)} is not an amount in dollars (e.g. 1250.00, at most 2 decimals)"
        )
    try:
        cents = dollars_to_cents(value)
    except (InvalidAmount, ArithmeticError) as exc:
        raise InvalidAccount(f"balance {_show(value)} is not an amount in dollars") from exc
    if cents > MAX_BALANCE_CENTS:
        raise InvalidAccount("balance is implausibly large")
    return cents


def _parse_date(value: str) -> date | None:
    for fmt in ("%Y-%m-%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    return None


def _parse_timezone(zone: str | None) -> str | None:
    if not zone:
        return None
    zone = ZONE_ALIASES.get(zone.lower(), zone)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidAccount(
            f"timezone {_show(zone)} is not a time zone such as America/Chicago"
        ) from exc
    return zone


async def find_account(session: AsyncSession, account_ref: str) -> Account | None:
    """By account_id: an exact match first, else one that differs only in case."""
    account = await session.scalar(select(Account).where(Account.account_ref == account_ref))
    if account is None:
        account = await session.scalar(
            select(Account)
            .where(func.lower(Account.account_ref) == account_ref.lower())
            .order_by(Account.id)
            .limit(1)
        )
    return account


async def upsert_account(
    session: AsyncSession, data: AccountInput, *, secret_key: str, at: datetime, actor: str
) -> tuple[Account, bool]:
    """Insert or update by account_id; returns (account, created). The caller commits."""
    refused: list[str] = []
    account, created, changed = await _upsert(
        session, data, await find_account(session, data.account_ref), secret_key=secret_key,
        at=at, refused=refused,
    )
    if refused:  # the rest is loaded; the refusal is on the record
        await ledger.audit(session, "wrong_number_refused", at=at, actor=actor,
                           account_id=account.id)
    if changed:
        await session.flush()
        await ledger.audit(
            session,
            "account_created" if created else "account_updated",
            at=at,
            actor=actor,
            account_id=account.id,
        )
    return account, created


async def _upsert(
    session: AsyncSession,
    data: AccountInput,
    account: Account | None,
    *,
    secret_key: str,
    at: datetime,
    known_creditors: set[str] | None = None,
    refused: list[str],
) -> tuple[Account, bool, bool]:
    """(account, created, changed); the caller flushes and audits. A record that changes
    nothing touches nothing (not even updated_at). A phone reported as a wrong number for the
    account (bot/inbox/wrong_numbers.py) never goes back on it: it is named in ``refused``."""
    if data.creditor:
        code = data.creditor
        if known_creditors is None or code not in known_creditors:
            if await session.get(Creditor, code) is None:
                session.add(Creditor(code=code, name=data.creditor, disclosure="", settings={}))
                await session.flush()
            if known_creditors is not None:
                known_creditors.add(code)
    created = account is None
    if account is None:
        account = Account(
            account_ref=data.account_ref,
            created_at=at,
            updated_at=at,
            balance_cents=data.balance_cents,
            first_name=data.first_name,
            last_name=data.last_name,
            description="",
        )
        session.add(account)
        account.balance_loaded_at = at
    balance = await _balance_to_keep(session, account, data.balance_cents, created, at=at)
    changes: dict[str, Any] = {
        "first_name": data.first_name,
        "last_name": data.last_name,
        "balance_cents": balance,
    }
    # A contact that is not given keeps its stored value: a record that names only the email
    # never drops the phone (parse_account makes sure at least one of them is given).
    if data.phone and not created and account.phone != data.phone and await session.scalar(
        select(WrongNumber.id).where(WrongNumber.phone == data.phone,
                                     WrongNumber.account_id == account.id)
    ):  # someone at this number said it is not this account holder's (TCPA reassigned)
        refused.append("phone")
    elif data.phone:
        changes["phone"] = data.phone
    if data.email:
        changes["email"] = data.email
    if data.ssn:
        changes["ssn_hash"] = ssn_digest(secret_key, data.ssn)
        changes["ssn_last4"] = data.ssn[-4:]
    if data.dob:
        changes["dob"] = data.dob
    optional = {"zip_code": data.zip_code, "timezone": data.timezone, "creditor_code":
                data.creditor, "description": data.description, "language": data.language}
    changes.update((name, value) for name, value in optional.items() if value)
    changed = created
    for name, value in changes.items():
        if getattr(account, name) != value:
            setattr(account, name, value)
            changed = True
    if changed:
        account.updated_at = at
    return account, created, changed


async def _balance_to_keep(
    session: AsyncSession, account: Account, given_cents: int, created: bool, *, at: datetime
) -> int:
    """The balance a creditor's figure leaves on the account. The figure may not show yet what
    PayBot collected since the last figure that matched the ledger: loaded as it stands, it
    would put back money already paid, to be taken again (Reg F 1006.22(b)). So what was Paid
    since then is taken off (a settlement Paid since settles it), unless the figure is the
    ledger's own balance to the cent: then it shows those payments, and the window moves on.
    A file that states as of when its balances hold would make this exact; see docs/plans.md."""
    if created:
        return given_cents
    since = account.balance_loaded_at or account.created_at
    paid, settled = await collectable.paid_since(session, account.id, since)
    if not paid and not settled:
        return given_cents
    if not settled and given_cents == account.balance_cents:
        account.balance_loaded_at = at
        return given_cents
    balance = collectable.loaded_balance(given_cents, paid_since_cents=paid, settled=settled)
    await ledger.audit(
        session, "balance_loaded_less_paid", at=at, account_id=account.id,
        given_cents=given_cents, paid_since_cents=paid, settled=settled, balance_cents=balance,
    )
    return balance


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0  # among `updated`: rows that matched the ledger already
    errors: list[tuple[int, str]] = field(default_factory=list)
    # Rows loaded but for a field that was refused (a phone reported as a wrong number).
    refused: list[tuple[int, str]] = field(default_factory=list)

    @property
    def summary(self) -> str:
        text = f"{self.created} created, {self.updated} updated, {len(self.errors)} rejected"
        if self.unchanged:
            text += f" ({self.unchanged} of the updated were already up to date)"
        if self.refused:
            text += f"; {len(self.refused)} kept without a field that was refused"
        return text


def _normal_header(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower())


def scan_file(path: Path) -> int:
    """Check the file is UTF-8 text before anything is written; return its number of lines."""
    with path.open("rb") as handle:
        start = handle.read(4)
    if start.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ImportFileError(f"{path}: the file is UTF-16 text; save it as CSV UTF-8")
    lines = 0
    escaped = re.compile("[\udc80-\udcff]")
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        for lines, line in enumerate(handle, start=1):  # noqa: B007 (the count is the result)
            if escaped.search(line):
                raise ImportFileError(
                    f'{path}:{lines}: the file is not UTF-8 text (Excel: save as "CSV UTF-8")'
                )
    if lines == 0:
        raise ImportFileError(
            f"{path}: the file is empty; it needs a header row with {', '.join(REQUIRED)}"
        )
    return lines


def read_csv_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """The header and the rows, each with the file line it starts on (line 1 is the header).

    A row that cannot be used whole comes as ``{"__error__": reason}``. Call ``scan_file``
    first: this reads the file as UTF-8 and stops at the first byte that is not.
    """
    handle = path.open(newline="", encoding="utf-8-sig")
    reader = csv.reader(handle)
    header: list[str] = []
    try:
        for raw_header in reader:
            if any(cell.strip() for cell in raw_header):
                header = [_normal_header(cell) for cell in raw_header]
                break
    except csv.Error as exc:
        handle.close()
        raise ImportFileError(
            f"{path}:{reader.line_num}: the header row is not CSV: {exc}"
        ) from exc
    if not header:
        handle.close()
        raise ImportFileError(f"{path}: no header row; it needs {', '.join(REQUIRED)}")
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        handle.close()
        raise ImportFileError(
            f"{path}: the header lacks {', '.join(missing)} (it needs {', '.join(REQUIRED)}; "
            f"optional: {', '.join(OPTIONAL)})"
        )
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        handle.close()
        raise ImportFileError(f"{path}: the header names {', '.join(repeated)} more than once")
    width = len(header)

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        with handle:
            while True:
                line = reader.line_num + 1  # where the next record starts
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield line, {"__error__": f"not readable as CSV: {exc}"}
                    continue
                if not any(value.strip() for value in values):
                    continue  # a blank line
                if len(values) > width and any(v.strip() for v in values[width:]):
                    yield line, {"__error__": f"{len(values)} fields, but the header has {width}"}
                    continue
                yield (
                    line,
                    {
                        name: value
                        for name, value in zip(header, values, strict=False)
                        if name in FIELDS
                    },
                )

    return header, rows()


async def import_csv(
    sessions: Callable[[], Any],
    path: Path,
    *,
    secret_key: str,
    clock: Any,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    batch_size: int = 500,
) -> ImportReport:
    """Upsert every good row, report every bad one by line; re-running changes nothing new.

    ``on_total`` is told the number of data lines first, then ``progress`` how many lines were
    done, batch by batch. Raises ImportFileError, before writing anything, for a file that
    cannot be read as a whole.
    """
    lines = scan_file(path)
    _, rows = read_csv_rows(path)
    if on_total:
        on_total(max(lines - 1, 0))
    report = ImportReport()
    seen: dict[str, int] = {}
    batch: list[tuple[int, AccountInput]] = []
    creditors: set[str] = set()
    done = 1  # lines accounted for (the header)

    async def write(session: AsyncSession, records: list[tuple[int, AccountInput]]) -> None:
        refs = {data.account_ref.lower() for _, data in records}
        existing: dict[str, Account] = {}
        found = await session.scalars(
            select(Account).where(func.lower(Account.account_ref).in_(refs)).order_by(Account.id)
        )
        for account in found:
            existing.setdefault(account.account_ref.lower(), account)
            if account.account_ref in {data.account_ref for _, data in records}:
                existing[account.account_ref.lower()] = account  # an exact match wins
        written: list[tuple[Account, bool]] = []
        at = clock.now()
        for line, data in records:
            refused: list[str] = []
            account, created, changed = await _upsert(
                session,
                data,
                existing.get(data.account_ref.lower()),
                secret_key=secret_key,
                at=at,
                known_creditors=creditors,
                refused=refused,
            )
            if refused:
                report.refused.append((line, "phone not loaded: it was reported as a wrong "
                                             "number for this account"))
                await ledger.audit(session, "wrong_number_refused", at=at, actor="import",
                                   account_id=account.id, line=line)
            report.created += created
            report.updated += not created
            report.unchanged += not changed
            if changed:
                written.append((account, created))
        await session.flush()  # one round of INSERT/UPDATE for the batch: the ids for the audit
        for account, created in written:
            await ledger.audit(
                session,
                "account_created" if created else "account_updated",
                at=at,
                actor="import",
                account_id=account.id,
            )

    async def flush(upto: int) -> None:
        nonlocal done
        if not batch:
            if progress and upto > done:
                progress(upto - done)
            done = upto
            return
        before = (report.created, report.updated, report.unchanged)
        refused_before = len(report.refused)
        try:
            async with sessions() as session:
                await write(session, batch)
                await session.commit()
        except SQLAlchemyError:
            # One row the database refused: redo the batch row by row to find and report it.
            report.created, report.updated, report.unchanged = before
            del report.refused[refused_before:]
            creditors.clear()
            for line, data in batch:
                before = (report.created, report.updated, report.unchanged)
                try:
                    async with sessions() as session:
                        await write(session, [(line, data)])
                        await session.commit()
                except SQLAlchemyError as exc:
                    report.created, report.updated, report.unchanged = before
                    creditors.clear()
                    cause = getattr(exc, "orig", None) or exc  # its name only: no values echoed
                    report.errors.append(
                        (line, f"the database refused the row ({type(cause).__name__})")
                    )
        batch.clear()
        if progress:
            progress(upto - done)
        done = upto

    for line, row in rows:
        if "__error__" in row:
            report.errors.append((line, row["__error__"]))
            continue
        try:
            data = parse_account(row)
        except InvalidAccount as exc:
            report.errors.append((line, str(exc)))
            continue
        key = data.account_ref.lower()
        if key in seen:
            report.errors.append(
                (line, f"account_id {data.account_ref} repeats the one on line {seen[key]}")
            )
            continue
        seen[key] = line
        batch.append((line, data))
        if len(batch) >= batch_size:
            await flush(line)
    await flush(lines)
    report.errors.sort()
    return report


async def save_method_at_processor(
    session: AsyncSession,
    gateway: PaymentGateway,
    account: Account,
    method_ref: str,
    *,
    at: datetime,
    default: bool = True,
) -> PaymentMethod:
    """Attach a method at the processor (making the customer there first if need be) and keep
    its reference, brand and last 4 in the ledger. The caller commits."""
    customer_id = await ensure_processor_customer(gateway, account)
    saved = await gateway.save_method(customer_id=customer_id, method_ref=method_ref)
    return await record_saved_method(session, account, saved, at=at, default=default)


async def ensure_processor_customer(gateway: PaymentGateway, account: Account) -> str:
    """The account's customer at the processor, made there on first use. The caller commits
    (before anything else can fail, so a retry does not make a second customer)."""
    account.processor_customer_id = await gateway.ensure_customer(
        account_ref=account.account_ref,
        name=f"{account.first_name} {account.last_name}",
        email=account.email,
        existing_id=account.processor_customer_id,
    )
    return account.processor_customer_id


async def record_saved_method(
    session: AsyncSession,
    account: Account,
    saved: SavedMethod,
    *,
    at: datetime,
    default: bool | None,
    channel: str | None = None,
    single_use: bool = False,
) -> PaymentMethod:
    """Keep a method the processor saved (once, however often it is saved again). `default`:
    True makes it the account's default, None only when it is the first; with a `channel` the
    saving is audited. `single_use`: saved by a session proved only by knowledge answers, it
    pays one payment now and is never listed afterwards; saved again by anyone else, it is an
    ordinary method. The caller commits."""
    method = await session.scalar(
        select(PaymentMethod).where(
            PaymentMethod.account_id == account.id,
            PaymentMethod.processor_ref == saved.processor_ref,
        )
    )
    others = [m for m in await ledger.payment_methods(session, account.id) if m is not method]
    if method is None:
        method = PaymentMethod(
            account_id=account.id,
            processor_ref=saved.processor_ref,
            kind=saved.kind,
            brand=saved.brand,
            last4=saved.last4, label=saved.label,  # label: a PayPal account's masked email
            is_default=False,
            single_use=single_use,
            created_at=at,
        )
        session.add(method)
    elif not single_use:
        method.single_use = False
    if method.single_use:
        default = False  # never what a plan or a scheduled payment falls back on
    if default or (default is None and not others):
        for other in others:
            other.is_default = False
        method.is_default = True
    if channel is not None:
        await ledger.audit(
            session,
            "method_saved",
            at=at,
            account_id=account.id,
            method_kind=saved.kind,
            last4=saved.last4,
            channel=channel,
        )
    return method


def add_offers(
    session: AsyncSession,
    account: Account,
    *,
    settlement_cents: int,
    settlement_expires_at: datetime | None,
    plan_installments: int,
    at: datetime,
) -> None:
    """A settlement offer and a monthly plan for the whole balance (the design's example)."""
    session.add(
        Offer(
            account_id=account.id,
            kind="settlement",
            total_cents=settlement_cents,
            expires_at=settlement_expires_at,
            created_at=at,
        )
    )
    session.add(
        Offer(
            account_id=account.id,
            kind="plan",
            total_cents=account.balance_cents,
            installment_count=plan_installments,
            frequency="monthly",
            created_at=at,
        )
    )
