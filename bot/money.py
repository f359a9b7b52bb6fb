"""Money is integer cents everywhere; these helpers only format and convert at the edges."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation


class InvalidAmount(ValueError):
    pass


def format_cents(cents: int) -> str:
    """12500 -> "$125.00", 125000 -> "$1,250.00"."""
    sign = "-" if cents < 0 else ""
    dollars, rest = divmod(abs(cents), 100)
    return f"{sign}${dollars:,}.{rest:02d}"


def dollars_to_cents(text: str) -> int:
    """Parse an operator-supplied dollar figure such as "1250.00" or "$1,250" (CSV, API)."""
    cleaned = text.strip().replace(",", "").removeprefix("$")
    try:
        value = Decimal(cleaned)
    except InvalidOperation as exc:
        raise InvalidAmount(f"not an amount: {text!r}") from exc
    if not value.is_finite():
        raise InvalidAmount(f"not an amount: {text!r}")
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise InvalidAmount(f"more than two decimals: {text!r}")
    return int((value * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
