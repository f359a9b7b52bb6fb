"""What the REST API accepts, stated once: the request schemas of the OpenAPI document, and the
check that holds every request body to them.

The handlers still parse with the domain's validators (their messages are the ones operators
know); after that, a body the domain accepted must also be valid against the schema published
at /api/v1/openapi.json, or it is refused with 422 naming the field. So the server never accepts
what the document forbids, and each schema is written no wider than what the domain accepts
(schemathesis holds both directions: tests/test_api_schemathesis.py).

Patterns use ASCII classes ([0-9], not \\d) and mean the same in Python and ECMA-262.
"""

from __future__ import annotations

import zoneinfo
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from bot.accounts.loading import ZONE_ALIASES

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
SSN_PATTERN = r"^[0-9]{3}[ .-]?[0-9]{2}[ .-]?[0-9]{4}$"
ZIP_PATTERN = r"^[0-9]{5}(?:-[0-9]{4})?$"
DAY_PATTERN = r"^[1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])$"
SHORT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._:@+-]{0,39}$"
MAX_DOLLARS = 100_000_000


def text(limit: int, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": limit, "pattern": TEXT_PATTERN,
            **extra}


def amount(description: str) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "string", "pattern": AMOUNT_PATTERN, "not": {"pattern": ZERO_PATTERN}},
            {"type": "integer", "minimum": 1, "maximum": 999_999_999},
        ],
        "description": f"{description}: dollars, more than 0, at most 2 decimals "
        '(e.g. "50.00"); a JSON number must be whole dollars',
        "examples": ["50.00"],
    }


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


@lru_cache(maxsize=4)
def account_input_schema(today: date) -> dict[str, Any]:
    """The upsert's body. Its date of birth reaches yesterday at the latest: the server refuses
    a date of birth after today, and the document is built for the day it is served."""
    zones = sorted(zoneinfo.available_timezones() | set(ZONE_ALIASES))
    return {
        "type": "object",
        "required": ["account_id", "first_name", "last_name", "balance"],
        "anyOf": [{"required": ["phone"]}, {"required": ["email"]}],
        "additionalProperties": False,
        "description": (
            "Create or update by account_id. The names and the balance are always given, and a "
            "phone or an email (or both). Any other field left out keeps its stored value, and "
            "so does the phone or the email when only the other is given. null is never a "
            "value (422): leave a field out to keep it. Masked values as GET shows them "
            "(z***@example.com, ***-***-0142, ***-**-6789) are refused (422)."
        ),
        "properties": {
            "account_id": {"type": "string", "pattern": ACCOUNT_ID_PATTERN, "maxLength": 64},
            "first_name": text(80),
            "last_name": text(80),
            "phone": {
                "type": "string",
                "maxLength": 30,
                "pattern": PHONE_PATTERN,
                "description": "E.164 (+ and 8 to 15 digits) or a 10-digit US number",
                "examples": ["(555) 555-0142"],
            },
            "email": {"type": "string", "maxLength": 254, "pattern": EMAIL_PATTERN,
                      "examples": ["maria@example.com"]},
            "balance": {
                "anyOf": [
                    {"type": "string", "pattern": BALANCE_PATTERN},
                    {"type": "integer", "minimum": 0, "maximum": MAX_DOLLARS},
                ],
                "description": 'dollars as text, e.g. "1,250.00" (at most 2 decimals, not '
                "negative, at most 100,000,000), or whole dollars as a JSON number",
                "examples": ["1250.00"],
            },
            "ssn": {
                "type": "string",
                "pattern": SSN_PATTERN,
                "description": "9 digits; kept only as a keyed hash and the last 4",
            },
            "dob": {
                "type": "string",
                "format": "date",
                "pattern": _days_up_to(today - timedelta(days=1)),
                "description": "YYYY-MM-DD, from 1900 to yesterday",
            },
            "zip": {"type": "string", "pattern": ZIP_PATTERN},
            "timezone": {
                "type": "string",
                "enum": zones,
                "description": "an IANA zone or a US alias (eastern, central, pacific...)",
                "examples": ["America/Chicago"],
            },
            "creditor": text(40),
            "description": text(120, examples=["Acme Card ending 4821"]),
        },
    }


LINK_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "a fixed amount (allow_amount_change false) needs an amount",
    "if": {
        "required": ["allow_amount_change"],
        "properties": {"allow_amount_change": {"const": False}},
    },
    "then": {"required": ["amount"]},
    "properties": {
        "amount": amount("the preset amount (omit: the customer chooses); at most the balance"),
        "allow_amount_change": {"type": "boolean", "default": True},
        "fee": amount("a convenience fee"),
        "due_on": {"type": "string", "format": "date", "pattern": DAY_PATTERN},
        "expires_in_hours": {"type": "integer", "minimum": 1, "maximum": 2160},
        "purpose": {"type": "string", "enum": ["payment", "campaign"]},
    },
}

SHORT_NAME: dict[str, Any] = {
    "type": "string",
    "pattern": SHORT_NAME_PATTERN,
    "description": "who acts: letters, digits and . _ : @ + - (e.g. agent:jsmith)",
    "examples": ["agent:jsmith"],
}

CANCEL_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "reason": {
            "type": "string",
            "maxLength": 500,
            "pattern": r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$",
            "description": "why, for the record (line breaks allowed)",
        },
        "actor": SHORT_NAME,
    },
}

WITHDRAW_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"actor": SHORT_NAME},
}


def for_schema(value: Any) -> Any:
    """The body as a JSON Schema validator reads it: our Decimals (JSON numbers with a
    fraction, parsed exactly) become ints when whole ("12.0" is an integer in JSON Schema)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: for_schema(item) for key, item in value.items()}
    if isinstance(value, list):
        return [for_schema(item) for item in value]
    return value


def body_problem(schema: dict[str, Any], body: dict[str, Any]) -> str | None:
    """None when the body is valid, else a message naming the field (never its value: it may
    be an SSN)."""
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(for_schema(body)), key=lambda e: list(e.path))
    if not errors:
        return None
    error = errors[0]
    if error.path:
        field = str(error.path[0])[:40]
        return f"{field} is not valid here: see its schema in /api/v1/openapi.json"
    if error.validator == "required":
        missing = [str(name) for name in error.validator_value if name not in body]
        return f"{', '.join(missing)} is required"
    if error.validator == "additionalProperties":
        unknown = sorted(str(name)[:40] for name in body if name not in schema["properties"])
        return f"unknown field(s): {', '.join(unknown[:10])}"
    if error.validator == "anyOf":
        return f"the body does not match the schema: {schema.get('description', '')}"
    return "the body does not match its schema in /api/v1/openapi.json"
