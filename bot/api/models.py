"""What the REST API accepts, stated once as pydantic models: each request body's model both
checks the body and is its schema in /api/v1/openapi.json (bot/api/openapi.py).

The domain's own parsers keep the words operators know (bot/accounts/loading.py for accounts, the
money parser for amounts, bot/plans/offers.py for offers); a field marked `Says(...)` answers
with that sentence when its value breaks the field's type, and every other break is a 422 that
names the field (bot/api/problems.py). The models are written no wider than what the domain
accepts: schemathesis holds both directions (tests/test_api_schemathesis.py).
"""

import zoneinfo
from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bot.accounts.loading import (
    FIELDS,
    REQUIRED,
    ZONE_ALIASES,
    InvalidAccount,
    parse_account,
)
from bot.accounts.loading import AccountInput as AccountRecord
from bot.api.fields import (
    ACCOUNT_ID_PATTERN,
    BALANCE_PATTERN,
    DATE_TIME_PATTERN,
    DAY_PATTERN,
    EMAIL_PATTERN,
    MAX_DOLLARS,
    PERCENT_PATTERN,
    PHONE_PATTERN,
    SSN_PATTERN,
    ZIP_PATTERN,
    Bool,
    Day,
    Int,
    Says,
    SchemaExtra,
    ShortName,
    Str,
    day_or_instant,
    dollars,
    money,
    refused,
    short_name,
    text,
)
from bot.money import dollars_to_cents


def _days_up_to(last: date) -> str:
    """A pattern for every YYYY-MM-DD from 1900-01-01 to `last` (format "date" drops the days
    a month does not have)."""
    any_day = "(?:0[1-9]|[12][0-9]|3[01])"
    years = "|".join(str(year) for year in range(1900, last.year))
    months = "|".join(f"{m:02d}" for m in range(1, last.month))
    days = "|".join(f"{d:02d}" for d in range(1, last.day + 1))
    branches = [f"(?:{years})-(?:0[1-9]|1[0-2])-{any_day}"]
    if months:
        branches.append(f"{last.year}-(?:{months})-{any_day}")
    branches.append(f"{last.year}-{last.month:02d}-(?:{days})")
    return "^(?:" + "|".join(branches) + ")$"


def dob_pattern(today: date) -> str:
    """The upsert's date of birth reaches yesterday at the latest: the server refuses a date of
    birth after today, and the document is built for the day it is served."""
    return _days_up_to(today - timedelta(days=1))


def _born_by_yesterday(value: str, info: ValidationInfo) -> str:
    today: date = (info.context or {})["today"]
    day = date.fromisoformat(value)
    if not date(1900, 1, 1) <= day < today:
        raise ValueError("from 1900 to yesterday")
    return value


def _known_zone(value: str) -> str:
    if value not in ZONES:
        raise ValueError("not a zone")
    return value


ZONES = sorted(zoneinfo.available_timezones() | set(ZONE_ALIASES))


# The upsert's body, read first as the CSV import reads a row (bot/accounts/loading.py: the
# messages operators know), then held to this schema; `record` is the domain's reading.
# Validate with context={"today": the server's date} (the date of birth's last day). Its
# description is the document's (one line, so no docstring).
class AccountInput(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "description": (
                "Create or update by account_id. The names and the balance are always given, "
                "and a phone or an email (or both). Any other field left out keeps its stored "
                "value, and so does the phone or the email when only the other is given. null "
                "is never a value (422): leave a field out to keep it. Masked values as GET "
                "shows them (z***@example.com, ***-***-0142, ***-**-6789) are refused (422)."
            ),
            "anyOf": [{"required": ["phone"]}, {"required": ["email"]}],
        },
    )

    account_id: Annotated[Str, Field(pattern=ACCOUNT_ID_PATTERN, max_length=64)]
    first_name: text(80)
    last_name: text(80)
    phone: Annotated[
        Str,
        Field(max_length=30, pattern=PHONE_PATTERN, examples=["(555) 555-0142"],
              description="E.164 (+ and 8 to 15 digits) or a 10-digit US number"),
    ] = None
    email: Annotated[Str, Field(max_length=254, pattern=EMAIL_PATTERN,
                                examples=["maria@example.com"])] = None
    balance: Annotated[
        Annotated[Str, Field(pattern=BALANCE_PATTERN)]
        | Annotated[Int, Field(ge=0, le=MAX_DOLLARS)],
        Field(description='dollars as text, e.g. "1,250.00" (at most 2 decimals, not '
              "negative, at most 100,000,000), or whole dollars as a JSON number",
              examples=["1250.00"]),
    ]
    ssn: Annotated[Str, Field(pattern=SSN_PATTERN,
                              description="9 digits; kept only as a keyed hash and the last 4")
                   ] = None
    # The pattern is the day's: see dob_pattern and bot/api/openapi.py.
    dob: Annotated[Str, AfterValidator(_born_by_yesterday), SchemaExtra(format="date"),
                   Field(description="YYYY-MM-DD, from 1900 to yesterday")] = None
    zip: Annotated[Str, Field(pattern=ZIP_PATTERN)] = None
    timezone: Annotated[
        Str, AfterValidator(_known_zone), SchemaExtra(enum=ZONES),
        Field(description="an IANA zone or a US alias (eastern, central, pacific...)",
              examples=["America/Chicago"]),
    ] = None
    creditor: text(40) = None
    description: text(120, examples=["Acme Card ending 4821"]) = None

    _record: AccountRecord = PrivateAttr()

    @model_validator(mode="wrap")
    @classmethod
    def _read_as_the_ledger_reads(cls, data: Any, handler: Any) -> "AccountInput":
        record = None
        if isinstance(data, dict):
            unknown = sorted(str(name) for name in data if name not in FIELDS)
            if unknown:
                shown = ", ".join(name[:40] for name in unknown[:10])
                raise refused(f"unknown field(s): {shown}; the fields are {', '.join(FIELDS)}")
            if problem := _values_problem(data):
                raise refused(problem)
            try:
                record = parse_account(data)
            except InvalidAccount as exc:
                raise refused(str(exc)) from exc
        model = handler(data)
        model._record = record
        return model

    @property
    def record(self) -> AccountRecord:
        return self._record

    @model_validator(mode="after")
    def _a_way_to_reach(self) -> "AccountInput":
        if self.phone is None and self.email is None:
            raise PydanticCustomError("contact", "a phone or an email")
        return self


assert tuple(AccountInput.model_fields) == FIELDS, "the API takes the fields the CSV takes"


def _values_problem(body: dict[str, Any]) -> str | None:
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


class LinkInput(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "description": "a fixed amount (allow_amount_change false) needs an amount",
            "if": {
                "required": ["allow_amount_change"],
                "properties": {"allow_amount_change": {"const": False}},
            },
            "then": {"required": ["amount"]},
        },
    )

    amount: Annotated[
        dollars("the preset amount (omit: the customer chooses); at most the balance"),
        BeforeValidator(money),
    ] = None
    allow_amount_change: Annotated[Bool, Says("allow_amount_change must be true or false")] = True
    fee: Annotated[dollars("a convenience fee"), BeforeValidator(money)] = None
    due_on: Annotated[Day, Says("due_on must be a date, YYYY-MM-DD", null=False)] = None
    expires_in_hours: Annotated[
        Int, Field(ge=1, le=2160), Says("expires_in_hours must be a whole number from 1 to 2160")
    ] = None
    purpose: Annotated[
        Literal["payment", "campaign"], Says("purpose must be payment or campaign")
    ] = None

    @model_validator(mode="after")
    def _fixed_needs_amount(self) -> "LinkInput":
        if not self.allow_amount_change and self.amount is None:
            raise refused("a fixed amount needs an amount")
        return self

    def terms(self, default_hours: int) -> dict[str, Any]:
        return {
            "amount_cents": self.cents(self.amount),
            "allow_amount_change": self.allow_amount_change,
            "fee_cents": self.cents(self.fee) or 0,
            "due_on": date.fromisoformat(self.due_on) if self.due_on else None,
            "expires_in_hours": self.expires_in_hours or default_hours,
            "purpose": self.purpose or "payment",
        }

    @staticmethod
    def cents(value: str | int | None) -> int | None:
        return None if value is None else dollars_to_cents(str(value))


class CancelPlanInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[
        Str,
        Field(max_length=500, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$",
              description="why, for the record (line breaks allowed)"),
        Says("reason must be text", unless=("string_too_long",), null=False),
    ] = None
    actor: short_name("actor must be a short name (for example agent:jsmith)") = "api"


class WithdrawOfferInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: short_name("actor must be a short name (for example agent:jsmith)") = "api"


class ScheduleEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: Day
    amount: dollars("the installment")


class OfferRules(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "description": "what the customer may change by text; default from the settings"
        },
    )

    skips_allowed: Annotated[Int, Field(ge=0, le=365)] = None
    move_max_days: Annotated[Int, Field(ge=0, le=365)] = None


_PLAN_ONLY = ("frequency", "start_date", "count", "installment_amount", "schedule", "total",
              "rules")
_REGULAR = ("frequency", "start_date", "count", "installment_amount")
_SETTLEMENT_ONLY = ("settlement_amount", "percent_off")


def _absent(*names: str) -> dict[str, Any]:
    return {"properties": dict.fromkeys(names, False)}


# Which fields go together, as the document states it; OfferInput._fields_go_together holds a
# body to the same.
_TOGETHER: list[dict[str, Any]] = [
    {
        "if": {"required": ["kind"], "properties": {"kind": {"const": "settlement"}}},
        # A settlement: an amount or a percentage off, nothing of a plan's.
        "then": {
            **_absent(*_PLAN_ONLY),
            "anyOf": [
                {"required": ["settlement_amount"], **_absent("percent_off")},
                {"required": ["percent_off"], **_absent("settlement_amount")},
            ],
        },
        # A plan: a custom schedule, or a frequency and a start with a count or an amount.
        "else": {
            **_absent(*_SETTLEMENT_ONLY),
            "anyOf": [
                {"required": ["schedule"], **_absent(*_REGULAR)},
                {
                    "required": ["frequency", "start_date"],
                    **_absent("schedule"),
                    "anyOf": [{"required": ["count"]}, {"required": ["installment_amount"]}],
                },
            ],
        },
    },
    {"anyOf": [_absent("expires_at"), _absent("expires_in_days")]},
]


class OfferInput(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "description": (
                "A plan: frequency + start_date + count and/or installment_amount (every "
                "installment but the last is the same; the last takes the rest), or a custom "
                "schedule. A settlement: settlement_amount or percent_off. Limits come from the "
                "balance, today's date and the creditor's flow settings: breaking one is a 422 "
                "that names the field."
            ),
            "allOf": _TOGETHER,
        },
    )

    kind: Literal["plan", "settlement"]
    total: dollars("a plan's total; default: the balance") = None
    frequency: Literal["weekly", "biweekly", "monthly"] = None
    count: Annotated[Int, Field(ge=1, le=1_000_000, description="number of installments")] = None
    installment_amount: dollars("each installment") = None
    start_date: Annotated[Day, Field(description="the first installment, customer's date")] = None
    schedule: Annotated[
        list[ScheduleEntry | tuple[Day, dollars("the installment")]],
        Field(min_length=1, max_length=1000,
              description="a custom schedule: dates strictly increasing; each installment "
              '{"date", "amount"} or [date, amount]'),
    ] = None
    settlement_amount: dollars("the settlement, less than the balance") = None
    percent_off: Annotated[
        Annotated[Str, Field(pattern=PERCENT_PATTERN)] | Annotated[Int, Field(ge=1, le=99)],
        Field(description='share off the balance, e.g. 36 or "12.5": more than 0, less than '
              "100, at most 2 decimals (a JSON number is a whole percentage)"),
    ] = None
    expires_at: Annotated[
        Str,
        AfterValidator(day_or_instant),
        SchemaExtra(anyOf=[{"format": "date", "pattern": DAY_PATTERN},
                           {"format": "date-time", "pattern": DATE_TIME_PATTERN}]),
        Field(description="YYYY-MM-DD (the end of that day, customer's time) or a date-time "
              "with offset; default: the creditor's offer lifetime (a plan: at the latest the "
              "first installment's day)"),
    ] = None
    expires_in_days: Annotated[Int, Field(ge=1, le=365)] = None
    send_via: Literal["sms", "email", "both"] = None
    created_by: ShortName = None
    rules: OfferRules = None

    @model_validator(mode="after")
    def _fields_go_together(self) -> "OfferInput":
        given = self.model_fields_set
        if self.kind == "settlement":
            fits = not given & set(_PLAN_ONLY) and len(given & set(_SETTLEMENT_ONLY)) == 1
        else:
            fits = not given & set(_SETTLEMENT_ONLY) and (
                "schedule" in given and not given & set(_REGULAR)
                or {"frequency", "start_date"} <= given and "schedule" not in given
                and bool(given & {"count", "installment_amount"})
            )
        if not fits or {"expires_at", "expires_in_days"} <= given:
            raise PydanticCustomError("together", "these fields do not go together")
        return self


OFFER_FIELDS = tuple(OfferInput.model_fields)


