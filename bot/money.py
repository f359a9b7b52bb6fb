"""Money is integer cents everywhere; these helpers only format and convert at the edges."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation


class InvalidAmount(ValueError):
    pass


def format_cents(cents: int) -> str:
    """12500 -> "$125.00", 125000 -> "$1,250.00"."""
    sign = "-" if cents < 0 else ""
    dollars, rest = divmod(abs(cents), 100)
    return f"{sign}${dollars:,}.{rest:02d}"


# ASCII digits only: \d would take "５" or "٥" as 5.
_DOLLARS = re.compile(r"^-?\$?([0-9]{1,3}(,[0-9]{3})+|[0-9]+)(\.[0-9]+)?$")


def dollars_to_cents(text: str) -> int:
    """Parse an operator-supplied dollar figure such as "1250.00" or "$1,250" (CSV, API).
    Commas only as thousands separators ("12,50" is refused), no exponents."""
    stripped = text.strip()
    if not _DOLLARS.match(stripped):
        raise InvalidAmount(f"not an amount in dollars: {text!r}")
    cleaned = stripped.replace(",", "").replace("$", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation as exc:
        raise InvalidAmount(f"not an amount: {text!r}") from exc
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise InvalidAmount(f"more than two decimals: {text!r}")
    try:
        return int((value * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation as exc:  # more digits than Decimal's context holds
        raise InvalidAmount(f"not an amount: {text!r}") from exc
