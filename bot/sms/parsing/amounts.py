"""Amounts: "$50", "50.00", "fifty", "1.2k", "the full balance"; read as integer cents.

Choices worth knowing (each is pinned by tests/test_parsing.py):

* Number words go through text2num ("fifty", "twenty-five dollars", "one hundred");
  amounts are read with ``Decimal`` and returned as int cents. Several different numbers
  are ``ambiguous``; dates, ordinals and clock times in an amount reply are ignored
  ("50 on the 15th" is $50.00).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from bot.sms.parsing.answers import only_no
from bot.sms.parsing.meaning import Meaning, invalid
from bot.sms.parsing.words import (
    fold,
    nfkc,
    reply_words,
    spanish_words_to_digits,
    words_to_digits,
)

MAX_CENTS = 100_000_000  # $1,000,000.00: anything above is a typo (or a phone number)

_FULL_CORE = frozenset(
    {"full", "all", "everything", "whole", "entire", "total", "rest", "remaining", "payoff",
     "todo", "completo"}
)
_FULL_FILLERS = frozenset(
    {
        "i", "ill", "will", "can", "could", "want", "wanna", "to", "pay", "the", "it", "of",
        "please", "pls", "id", "like", "do", "lets", "just", "thing", "balance", "amount", "in",
        "my", "off", "that", "ok", "okay", "yes", "go", "with", "would", "thanks", "thank",
        "you", "lo", "pagar", "quiero", "el", "saldo", "at", "once", "one", "shot",
    }
)
_NEGATIONS = frozenset(
    {"not", "no", "cant", "cannot", "dont", "wont", "couldnt", "never", "nunca", "unable"}
)
_NEGATIVE = re.compile(r"(?:^|[^\w.,])[-\u2212\u2013]\s*\$?\s*[0-9]|\$\s*[-\u2212\u2013]\s*[0-9]")
_NEGATIVE_WORDS = re.compile(r"\b(?:minus|negative|menos)\b")
# Things with digits that are not amounts: dates, ordinals, clock times.
_NOT_AMOUNT = re.compile(
    r"\b[0-9]{1,2}/[0-9]{1,2}(?:/[0-9]{2,4})?\b"
    r"|\b[0-9]{1,2}(?:st|nd|rd|th)\b"
    r"|\b[0-9]{1,2}(?::[0-9]{2})?\s*(?:am|pm|a\.m\.|p\.m\.)"
    r"|\b[0-9]{1,2}:[0-9]{2}\b",
    re.IGNORECASE,
)
_DOLLARS_AND_CENTS = re.compile(
    r"([0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)\s*(?:(?:dollars?|bucks|usd|dolares)\s*(?:and|&|y|,)?|"
    r"and|&)\s*([0-9]{1,2})\s*(?:cents?|centavos|\u00a2)(?![a-z])",
    re.IGNORECASE,
)
_CENTS_ONLY = re.compile(r"(?<![0-9.,])([0-9]{1,2})\s*(?:cents?|centavos|\u00a2)(?![a-z])", re.I)
_NUMBER = re.compile(
    r"(?<![0-9])(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?(?![0-9])|(?<![0-9])\.[0-9]+"
)
_THOUSANDS_SUFFIX = re.compile(r"k(?![a-z])", re.IGNORECASE)


def _is_full(tokens: list[str]) -> bool:
    if not tokens or any(t in _NEGATIONS for t in tokens):
        return False
    if not all(t in _FULL_CORE or t in _FULL_FILLERS for t in tokens):
        return False
    has = set(tokens)
    return bool(has & _FULL_CORE) or ("pay" in has and ("off" in has or "balance" in has))


def parse_amount(text: str) -> Meaning:
    tokens = reply_words(text)
    if _is_full(tokens):
        return Meaning("full")
    if not any(c.isdigit() for c in text) and only_no(tokens):
        return Meaning("no")

    t = nfkc(text)
    t = words_to_digits(t, "en")
    if not re.search(r"[0-9]", t):
        t = spanish_words_to_digits(t)  # "un pago" is a payment, not $1
    if _NEGATIVE.search(t) or _NEGATIVE_WORDS.search(fold(t)):
        return invalid("not_positive")

    values: list[Decimal] = []

    def take_cents(m: re.Match[str]) -> str:
        dollars = Decimal(m.group(1).replace(",", ""))
        values.append(dollars + Decimal(m.group(2)) / 100)
        return " "

    t = _DOLLARS_AND_CENTS.sub(take_cents, t)
    def take_cents_only(m: re.Match[str]) -> str:
        values.append(Decimal(m.group(1)) / 100)
        return " "

    t = _CENTS_ONLY.sub(take_cents_only, t)
    t = _NOT_AMOUNT.sub(" ", t)
    for m in _NUMBER.finditer(t):
        try:
            value = Decimal(m.group(0).replace(",", ""))
        except InvalidOperation:  # pragma: no cover - the pattern only matches numbers
            continue
        if _THOUSANDS_SUFFIX.match(t, m.end()):
            value *= 1000
        values.append(value)

    if not values:
        return invalid("not_understood")
    if len(set(values)) > 1:
        return invalid("ambiguous")
    value = values[0]
    if value <= 0:
        return invalid("not_positive")
    if value * 100 > MAX_CENTS:  # checked first: quantize() fails on huge numbers
        return invalid("too_large")
    if value != value.quantize(Decimal("0.01")):
        return invalid("too_many_decimals")
    return Meaning("amount", int(value * 100))
