"""Phone numbers are kept in E.164; operators and customers write them in many ways."""

from __future__ import annotations

import re


class InvalidPhone(ValueError):
    pass


def normalize_phone(raw: str, default_country: str = "1") -> str:
    text = raw.strip()
    digits = re.sub(r"\D", "", text)
    if text.startswith("+"):
        if not 8 <= len(digits) <= 15:
            raise InvalidPhone(f"not a phone number: {raw!r}")
        return "+" + digits
    if len(digits) == 10:
        return f"+{default_country}{digits}"
    if len(digits) == 11 and digits.startswith(default_country):
        return "+" + digits
    raise InvalidPhone(f"not a phone number: {raw!r}")
