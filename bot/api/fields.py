"""The pieces the API's request models are made of (bot/api/models.py): the patterns, the
strict JSON types, money, days and short names, and the two marks a field may carry: `Says`
(the sentence a 422 says when the value breaks the field's type) and `SchemaExtra` (keywords
the generated schema adds), and `worded` (a `Says` for a value inside a field's value).

Where the domain names a rule better than a schema can (a day in the past, an amount that is not
more than 0, a count over the creditor's limit), a field validates wider than its schema says
(`SchemaExtra` narrows the document) and the domain's 422 answers what the document forbids.

Patterns use ASCII classes ([0-9], not \\d) and mean the same in Python, Rust (pydantic-core)
and ECMA-262.
"""

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from bot.money import InvalidAmount, dollars_to_cents
from bot.plans import offers

# One printable line: no control characters (C0, DEL, C1) and at least one character that is
# not a space (a blank value is never read as "no value"). (Lone surrogates, which no generator
# can write as a pattern, are refused by the domain's own check.)
_PRINTABLE = r"[^\x00-\x1f\x7f-\x9f]"
_VISIBLE = r"[^\s\x00-\x1f\x7f-\x9f]"
TEXT_PATTERN = f"^{_PRINTABLE}*{_VISIBLE}{_PRINTABLE}*$"
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# +country and 8 to 15 digits, or a US number (10 digits, optionally after a 1), with the
# usual separators. A masked number ("***-***-0142") never matches.
PHONE_PATTERN = (
    r"^(?:\+(?:[ ().-]*[0-9]){8,15}|(?:[ ().-]*1)?(?:[ ().-]*[0-9]){10})[ ().-]*$"
)
_EMAIL_PART = r"[^@\s*\x00-\x1f\x7f-\x9f]+"
EMAIL_PATTERN = f"^{_EMAIL_PART}@{_EMAIL_PART}\\.{_EMAIL_PART}$"
# Dollars up to the largest balance the ledger takes ($100,000,000.00), at most 2 decimals.
BALANCE_PATTERN = (
    r"^\$?(?:(?:[0-9]{1,8}|[0-9]{1,3},[0-9]{3}|[0-9]{1,2},[0-9]{3},[0-9]{3})(?:\.[0-9]{1,2})?"
    r"|100000000(?:\.00?)?|100,000,000(?:\.00?)?)$"
)
# Amounts of links and offers: dollars, at most 2 decimals, more than zero.
AMOUNT_PATTERN = r"^\$?(?:[0-9]{1,9}|[0-9]{1,3}(?:,[0-9]{3}){1,2})(?:\.[0-9]{1,2})?$"
ZERO_PATTERN = r"^\$?[0,]*(?:\.0{1,2})?$"
# The same figures with a sign and zero allowed: what the domain refuses in its own words ("must
# be more than 0"). The money parser reads "-$5" and "$5", never "$-5".
SIGNED_AMOUNT_PATTERN = "^-?" + AMOUNT_PATTERN.removeprefix("^")
MAX_AMOUNT_DOLLARS = 999_999_999
SSN_PATTERN = r"^[0-9]{3}[ .-]?[0-9]{2}[ .-]?[0-9]{4}$"
ZIP_PATTERN = r"^[0-9]{5}(?:-[0-9]{4})?$"
DAY_PATTERN = r"^[1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])$"
DATE_TIME_PATTERN = (
    r"^[1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
# Any year: how far a day may be is the domain's rule (an offer's "must not be in the past").
ANY_DAY_PATTERN = "^[0-9]{4}" + DAY_PATTERN.removeprefix("^[1-9][0-9]{3}")
# A date-time of any year, with or without its offset (the domain: "needs a UTC offset").
ANY_DATE_TIME_PATTERN = (
    ANY_DAY_PATTERN.removesuffix("$")
    + r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?$"
)
SHORT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._:@+-]{0,39}$"
PERCENT_PATTERN = r"^(?:[1-9][0-9]?(?:\.[0-9]{1,2})?|0\.(?:[1-9][0-9]?|0[1-9]))$"
MAX_DOLLARS = 100_000_000

# The error type of a value the domain refused in its own words (bot/api/problems.py).
DOMAIN_ERROR = "paybot_domain"


def refused(message: str) -> PydanticCustomError:
    return PydanticCustomError(DOMAIN_ERROR, "{message}", {"message": message})


@dataclass(frozen=True)
class Says:
    """On a field: the sentence a 422 says when the value breaks the field's type or pattern."""

    message: str
    unless: tuple[str, ...] = ()  # error types that keep the generic answer
    null: bool = True  # False: a null keeps the generic answer


def worded(message: str) -> WrapValidator:
    """A `Says` for a value inside a field's value (an installment's date): any break of its type
    answers with `message`."""

    def check(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            raise refused(message) from exc

    return WrapValidator(check)


class SchemaExtra(dict[str, Any]):
    """Keywords added to a type's generated schema (where Field has no name for them)."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        schema.update(self)
        return schema

    def __hash__(self) -> int:  # typing hashes Annotated's metadata
        return id(self)


def _iso_day(value: str) -> str:
    date.fromisoformat(value)  # a ValueError for a day the month does not have
    return value


def _not_zero(value: str) -> str:
    if _matches(ZERO_PATTERN, value):
        raise ValueError("more than 0")
    return value


Str = Annotated[str, Strict()]
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
Day = Annotated[
    Str, Field(pattern=DAY_PATTERN), AfterValidator(_iso_day), SchemaExtra(format="date")
]
# A day as Day documents it, of any year: the domain says how far it may be.
JudgedDay = Annotated[
    Str, Field(pattern=ANY_DAY_PATTERN), AfterValidator(_iso_day),
    SchemaExtra(format="date", pattern=DAY_PATTERN),
]


def text(limit: int, **extra: Any) -> Any:
    return Annotated[Str, Field(min_length=1, max_length=limit, pattern=TEXT_PATTERN, **extra)]


_POSITIVE_DOLLARS = SchemaExtra({"pattern": AMOUNT_PATTERN, "not": {"pattern": ZERO_PATTERN}})


def _dollars_field(description: str) -> Any:
    return Field(
        description=f"{description}: dollars, more than 0, at most 2 decimals "
        '(e.g. "50.00"); a JSON number must be whole dollars',
        examples=["50.00"],
    )


def dollars(description: str) -> Any:
    """Dollars, more than zero: "50.00" or a whole number of dollars."""
    return Annotated[
        Annotated[Str, Field(pattern=AMOUNT_PATTERN), AfterValidator(_not_zero),
                  _POSITIVE_DOLLARS]
        | Annotated[Int, Field(ge=1, le=MAX_AMOUNT_DOLLARS)],
        _dollars_field(description),
    ]


def judged_dollars(description: str) -> Any:
    """Dollars as `dollars` documents them, but zero and negative figures pass on, for the
    domain to refuse in its own words ("must be more than 0")."""
    return Annotated[
        Annotated[Str, Field(pattern=SIGNED_AMOUNT_PATTERN), _POSITIVE_DOLLARS]
        | Annotated[Int, Field(ge=-MAX_AMOUNT_DOLLARS, le=MAX_AMOUNT_DOLLARS),
                    SchemaExtra(minimum=1)],
        _dollars_field(description),
    ]


def cents(value: str | int | None) -> int | None:
    return None if value is None else dollars_to_cents(str(value))


ShortName = Annotated[
    Str,
    Field(pattern=SHORT_NAME_PATTERN, examples=["agent:jsmith"],
          description="who acts: letters, digits and . _ : @ + - (e.g. agent:jsmith)"),
]


def money(value: Any, info: ValidationInfo) -> Any:
    """The money parser's verdict first, in its words (a link's amount and fee)."""
    name = info.field_name
    if value is None:
        return value  # not an amount at all: the generic answer
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise refused(f'{name} must be an amount in dollars, e.g. "50.00"')
    try:
        cents = dollars_to_cents(str(value))
    except InvalidAmount as exc:
        raise refused(f'{name} must be an amount in dollars, e.g. "50.00"') from exc
    if cents <= 0:
        raise refused(f"{name} must be more than 0")
    return value


def short_name(message: str) -> Any:
    def check(value: Any) -> Any:
        if not offers.is_short_name(value):
            raise refused(message)
        return value

    return Annotated[ShortName, BeforeValidator(check)]


def is_day(value: str) -> bool:
    """YYYY-MM-DD of any year, a day the month has."""
    return _matches(ANY_DAY_PATTERN, value) and _parses(date.fromisoformat, value)


def is_date_time(value: str) -> bool:
    """A date and time of any year, with or without its offset."""
    return _matches(ANY_DATE_TIME_PATTERN, value) and _parses(datetime.fromisoformat, value)


def _parses(parse: Any, value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


def unknown_fields(data: Any, known: tuple[str, ...]) -> str | None:
    """The fields of a body nobody knows, as a 422 names them (at most ten, 40 characters)."""
    if not isinstance(data, dict):
        return None
    unknown = sorted(str(name) for name in data if name not in known)
    if not unknown:
        return None
    return f"unknown field(s): {', '.join(name[:40] for name in unknown[:10])}"


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern.removeprefix("^").removesuffix("$"), value) is not None


def says(model: type[BaseModel], field_name: str, error: Any) -> str | None:
    """The sentence a field declares for this error (pydantic's), if it declares one."""
    info = model.model_fields.get(field_name)
    for mark in info.metadata if info else ():
        if isinstance(mark, Says) and error["type"] not in mark.unless and (
            mark.null or error.get("input") is not None
        ):
            return mark.message
    return None
