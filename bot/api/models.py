"""What the REST API accepts, stated once as pydantic models: each request body's model both
checks the body and is its schema in /api/v1/openapi.json (bot/api/openapi.py).

The domain's own parsers keep the words operators know (bot/accounts/loading.py for accounts, the
money parser for amounts, bot/plans/offers.py for offers); a field marked `Says(...)` answers
with that sentence when its value breaks the field's type, and every other break is a 422 that
names the field (bot/api/problems.py). The models are written no wider than what the domain
accepts: schemathesis holds both directions (tests/test_api_schemathesis.py). An offer's fields
validate a little wider than their schema where the domain's rules (bot/plans/offers.py) name
the problem better; what passes the model but not the document, the domain refuses.
"""

import zoneinfo
from datetime import date, datetime, timedelta
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
    WrapValidator,
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
    JudgedDay,
    Says,
    SchemaExtra,
    Str,
    cents,
    dollars,
    is_date_time,
    is_day,
    judged_dollars,
    money,
    refused,
    short_name,
    text,
    unknown_fields,
    worded,
)
from bot.outreach import queue as outreach
from bot.plans import offers


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
    language: Annotated[
        Str, SchemaExtra(enum=["en", "es"]),
        Field(description="the language of the customer's texts, pages and emails: en (the "
              "default for a new account) or es", examples=["es"]),
    ] = None

    _record: AccountRecord = PrivateAttr()

    @model_validator(mode="wrap")
    @classmethod
    def _read_as_the_ledger_reads(cls, data: Any, handler: Any) -> "AccountInput":
        record = None
        if isinstance(data, dict):
            if unknown := unknown_fields(data, FIELDS):
                raise refused(f"{unknown}; the fields are {', '.join(FIELDS)}")
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
            "amount_cents": cents(self.amount),
            "allow_amount_change": self.allow_amount_change,
            "fee_cents": cents(self.fee) or 0,
            "due_on": date.fromisoformat(self.due_on) if self.due_on else None,
            "expires_in_hours": self.expires_in_hours or default_hours,
            "purpose": self.purpose or "payment",
        }


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


def _not_an_amount(name: str) -> str:
    return f'{name}: must be an amount in dollars, e.g. "50.00"'


def _amount(name: str, description: str) -> Any:
    return Annotated[judged_dollars(description), Says(_not_an_amount(name), null=False)]


ScheduleDay = Annotated[JudgedDay, worded("schedule: must be a date, YYYY-MM-DD")]
ScheduleAmount = Annotated[judged_dollars("the installment"), worded(_not_an_amount("schedule"))]


class ScheduleEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: ScheduleDay
    amount: ScheduleAmount


def _installments(value: Any) -> Any:
    """A schedule's shape, in the words that say what an installment is."""
    if value is None:
        return value  # never a value: the schema's answer
    if not isinstance(value, list):
        raise refused('schedule: must be a list of {"date", "amount"}')
    for item in value:
        if not (isinstance(item, dict) and set(item) == {"date", "amount"}
                or isinstance(item, list) and len(item) == 2):
            raise refused('schedule: each installment is {"date", "amount"}')
    return value


class OfferRules(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "description": "what the customer may change by text; default from the settings"
        },
    )

    skips_allowed: Annotated[Int, Field(ge=0, le=365)] = None
    move_max_days: Annotated[Int, Field(ge=0, le=365)] = None


def _an_object(value: Any, handler: Any) -> Any:
    """Any object passes as it is: the domain names the rule and the range (offers._rules)."""
    if value is None:
        return handler(value)  # never a value: the schema's answer
    if not isinstance(value, dict):
        raise refused('rules: must be an object, e.g. {"skips_allowed": 1}')
    return value


def _percentage(value: Any) -> Any:
    """The domain's reading of a percentage first, in its words (a JSON number with a fraction
    reads, but the schema still refuses it: it could not be read exactly everywhere)."""
    if value is not None:
        try:
            offers.percent_to_bps(str(value))
        except offers.InvalidOffer as exc:
            raise refused(str(exc)) from exc
    return value


def _text(name: str) -> Any:
    """Text first, in those words (before a check that reads the text)."""

    def check(value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise refused(f"{name}: must be text")
        return value

    return check


def _a_kind(value: str) -> str:
    if value not in offers.KINDS:
        raise refused("kind: must be plan or settlement")
    return value


def _day_or_instant(value: str) -> str:
    """An expiry: a day, or a date-time (its offset is the domain's to ask for)."""
    if len(value) == 10:
        if not is_day(value):
            raise refused("expires_at: must be a date, YYYY-MM-DD")
    elif not is_date_time(value):
        raise refused("expires_at: must be a date (YYYY-MM-DD) or a date and time with offset")
    return value


def _whole(name: str, low: int, high: int, description: str | None = None) -> Any:
    """A whole number as documented (`low` to `high`); any other up to a million in size passes on
    for the domain to name its limit."""
    return Annotated[
        Int,
        Field(ge=-1_000_000, le=1_000_000, description=description),
        SchemaExtra(minimum=low, maximum=high),
        Says(f"{name}: must be a whole number", null=False),
    ]


_PLAN_ONLY = ("frequency", "start_date", "count", "installment_amount", "schedule", "total",
              "rules")
_REGULAR = ("frequency", "start_date", "count", "installment_amount")
_SETTLEMENT_ONLY = ("settlement_amount", "percent_off")


def _absent(*names: str) -> dict[str, Any]:
    return {"properties": dict.fromkeys(names, False)}


# Which fields go together, as the document states it. The domain's rules (offers.offer_terms)
# refuse every body this forbids, naming the field, so the model does not check it again.
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


# The body of an offer, checked field by field in the words operators know; `to_request` is the
# domain's request, which offers.offer_terms then judges (the balance, today's date, the
# creditor's limits, which fields go together). Its description is the document's.
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

    kind: Annotated[
        Str,
        AfterValidator(_a_kind),
        BeforeValidator(_text("kind")),
        SchemaExtra(enum=list(offers.KINDS)),
        Says("kind: must be plan or settlement"),
    ]
    total: _amount("total", "a plan's total; default: the balance") = None
    frequency: Annotated[
        Str,
        BeforeValidator(_text("frequency")),
        SchemaExtra(enum=list(offers.FREQUENCIES)),
        Says("frequency: must be weekly, biweekly or monthly"),
    ] = None
    count: _whole("count", 1, 1_000_000, "number of installments") = None
    installment_amount: _amount("installment_amount", "each installment") = None
    start_date: Annotated[
        JudgedDay,
        Field(description="the first installment, customer's date"),
        Says("start_date: must be a date, YYYY-MM-DD"),
    ] = None
    schedule: Annotated[
        list[ScheduleEntry | tuple[ScheduleDay, ScheduleAmount]],
        BeforeValidator(_installments),
        Field(max_length=1000, json_schema_extra={"minItems": 1},
              description="a custom schedule: dates strictly increasing; each installment "
              '{"date", "amount"} or [date, amount]'),
    ] = None
    settlement_amount: _amount("settlement_amount", "the settlement, less than the balance") = None
    percent_off: Annotated[
        Annotated[Str, Field(pattern=PERCENT_PATTERN)] | Annotated[Int, Field(ge=1, le=99)],
        BeforeValidator(_percentage),
        Field(description='share off the balance, e.g. 36 or "12.5": more than 0, less than '
              "100, at most 2 decimals (a JSON number is a whole percentage)"),
    ] = None
    expires_at: Annotated[
        Str,
        AfterValidator(_day_or_instant),
        BeforeValidator(_text("expires_at")),
        SchemaExtra(anyOf=[{"format": "date", "pattern": DAY_PATTERN},
                           {"format": "date-time", "pattern": DATE_TIME_PATTERN}]),
        Field(description="YYYY-MM-DD (the end of that day, customer's time) or a date-time "
              "with offset; default: the creditor's offer lifetime (a plan: at the latest the "
              "first installment's day)"),
    ] = None
    expires_in_days: _whole("expires_in_days", 1, offers.MAX_LIFETIME_DAYS) = None
    send_via: Annotated[
        Str, BeforeValidator(_text("send_via")), SchemaExtra(enum=list(outreach.CHANNELS))
    ] = None
    created_by: Annotated[
        short_name("created_by: must be a short name (at most 40 characters)"),
        BeforeValidator(_text("created_by")),
    ] = None
    rules: Annotated[OfferRules, WrapValidator(_an_object)] = None

    @model_validator(mode="wrap")
    @classmethod
    def _known_fields(cls, data: Any, handler: Any) -> "OfferInput":
        if unknown := unknown_fields(data, tuple(cls.model_fields)):
            raise refused(f"body: {unknown}")
        return handler(data)

    def to_request(self) -> offers.OfferRequest:
        """The domain's request: amounts in cents, dates as dates (not yet judged)."""
        schedule = None
        if self.schedule is not None:
            pairs = [(e.date, e.amount) if isinstance(e, ScheduleEntry) else e
                     for e in self.schedule]
            schedule = tuple((date.fromisoformat(day), cents(amount)) for day, amount in pairs)
        expiry = self.expires_at
        return offers.OfferRequest(
            kind=self.kind,
            created_by=self.created_by or "api",
            total_cents=cents(self.total),
            frequency=self.frequency,
            start=date.fromisoformat(self.start_date) if self.start_date else None,
            count=self.count,
            installment_cents=cents(self.installment_amount),
            schedule=schedule,
            rules=self.rules,  # the object as sent (see _an_object)
            settlement_cents=cents(self.settlement_amount),
            discount_bps=(
                offers.percent_to_bps(str(self.percent_off))
                if self.percent_off is not None else None
            ),
            expires_at=datetime.fromisoformat(expiry) if expiry and "T" in expiry else None,
            expires_on=date.fromisoformat(expiry) if expiry and "T" not in expiry else None,
            expires_in_days=self.expires_in_days,
            send_via=self.send_via,
        )


OFFER_FIELDS = tuple(OfferInput.model_fields)


# --- conversations (the agents' REST) ---

# A conversation's number in a path, as the API writes it (E.164), or a US number's 10 digits
# (11 with the leading 1). Separators are for forms, not paths.
PHONE_PATH_PATTERN = r"^(?:\+[0-9]{8,15}|1?[0-9]{10})$"

# An agent's NAME: it is written as "agent:NAME" on the messages and the audit trail (40).
AGENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._@+-]{0,33}$"
Agent = Annotated[
    Str,
    Field(pattern=AGENT_PATTERN, examples=["jsmith"],
          description="the agent's name: letters, digits and . _ @ + - and spaces, at most 34"),
    Says("agent must be a name of 1 to 34 letters, digits and . _ @ + - (e.g. jsmith)",
         unless=("missing",)),
]
# Lines of printable text with at least one visible character.
_LINE = r"[^\x00-\x09\x0b-\x1f\x7f-\x9f]"
MESSAGE_PATTERN = f"^{_LINE}*[^\\s\\x00-\\x1f\\x7f-\\x9f]{_LINE}*$"


class ClaimInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: Agent


class AgentMessageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: Agent
    body: Annotated[
        Str,
        Field(min_length=1, max_length=306, pattern=MESSAGE_PATTERN,
              description="the text (line breaks allowed): at most 2 SMS segments, that is 306 "
                          "GSM-7 characters, or 134 once one character needs UCS-2 (an emoji); "
                          "curly quotes, dashes and accents GSM-7 lacks are sent as their "
                          "GSM-7 look-alikes"),
        Says("body must be text of 1 to 306 characters", null=False),
    ]


class HandBackInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: Annotated[Agent, Field(description="who hands back (recorded as agent:NAME); "
                                              "left out: api")] = "api"
