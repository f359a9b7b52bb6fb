"""Dates: "12/15", "dec 15", "next friday", "the 15th", "in two weeks", "now"; in the customer's
local calendar, with ``today`` passed in (no clock is read here).

Choices worth knowing (each is pinned by tests/test_parsing.py):

* Weekdays (read in the customer's week, Monday first). "friday" is the next Friday
  after today (1 to 7 days ahead); "this friday" is the coming Friday, today included;
  "next friday" is the Friday of NEXT calendar week: on Wednesday 2026-11-25 "friday"
  and "this friday" are 2026-11-27 and "next friday" is 2026-12-04, while "next monday"
  is 2026-11-30 (the Monday of next week is also the coming Monday). "friday after
  next" is one week after "next friday"; "last friday" is in the past (refused).
* A date equal to ``today`` reads as ``now`` ("today", "11/25" on 11/25, "this wednesday"
  on a Wednesday).
* M/D without a year: this year if it is today or later; if it was at most
  ``PAST_GRACE_DAYS`` days ago it is a past date (refused, the customer most likely
  mistyped); otherwise next year ("1/5" in November is next January).
* Day-of-month phrases ("the 15th", "on the 1st", a bare "15" in the date step): the
  next such day on or after today, skipping months too short for it.
* dateparser is only a fallback for periods ("in a fortnight"); the usual forms are read
  by the rules below, which are faster and stricter (dateparser reads "1" as a date).
"""

from __future__ import annotations

import calendar
import datetime
import functools
import re
import warnings
from collections.abc import Iterable

from bot.sms.parsing.answers import only_no
from bot.sms.parsing.meaning import Meaning, invalid
from bot.sms.parsing.words import fold, reply_words, spanish_words_to_digits, words_to_digits

PAST_GRACE_DAYS = 60  # M/D up to this many days ago is a past date, beyond it next year

MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4,
    "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8,
    "september": 9, "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11, "nov": 11,
    "december": 12, "dec": 12,
    "enero": 1, "ene": 1, "febrero": 2, "marzo": 3, "abril": 4, "abr": 4, "mayo": 5,
    "junio": 6, "julio": 7, "agosto": 8, "ago": 8, "septiembre": 9, "setiembre": 9,
    "octubre": 10, "noviembre": 11, "diciembre": 12, "dic": 12,
}
_WEEKDAYS = {
    "monday": 0, "mon": 0, "tuesday": 1, "tues": 1, "tue": 1, "wednesday": 2, "weds": 2,
    "wed": 2, "thursday": 3, "thurs": 3, "thur": 3, "thu": 3, "friday": 4, "fri": 4,
    "saturday": 5, "sat": 5, "sunday": 6, "sun": 6,
    "lunes": 0, "martes": 1, "miercoles": 2, "jueves": 3, "viernes": 4, "sabado": 5,
    "domingo": 6,
}


def _alternation(words: Iterable[str]) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


MONTH_RX = _alternation(MONTHS)
_WEEKDAY_RX = _alternation(_WEEKDAYS)
ORD = r"(?:st|nd|rd|th|o|a)?"

_ISO_DATE = re.compile(r"\b([0-9]{4})[-/.]([0-9]{1,2})[-/.]([0-9]{1,2})\b")
_US_DATE = re.compile(
    r"(?<![0-9/.-])([0-9]{1,2})[/.-]([0-9]{1,2})(?:[/.-]([0-9]{4}|[0-9]{2}))?(?![0-9])(?![/.-][0-9])"
)
_MONTH_DAY = re.compile(
    rf"\b({MONTH_RX})\.?\s+(?:the\s+)?([0-9]{{1,2}}){ORD}\b(?:\s+(?:of\s+|de\s+)?([0-9]{{4}})\b)?"
)
_DAY_MONTH = re.compile(
    rf"\b([0-9]{{1,2}}){ORD}\s+(?:of\s+|de\s+)?({MONTH_RX})\b\.?(?:\s+(?:of\s+|de\s+|del\s+)?"
    rf"([0-9]{{4}})\b)?"
)
_DAY_OF_NEXT_MONTH = re.compile(
    r"\b(?:the\s+)?([0-9]{1,2})(?:st|nd|rd|th)?\s+of\s+next\s+month\b"
    r"|\b(?:beginning|start)\s+of\s+next\s+month\b"
)
_DAY_OF_MONTH = re.compile(
    r"\b(?:(?:on\s+)?the\s+|el\s+(?:dia\s+)?)?([0-9]{1,2})(?:st|nd|rd|th)\b"
    r"|\b(?:on\s+)?the\s+([0-9]{1,2})\b(?!\s*(?:[0-9]|days?|weeks?|months?|dollars?))"
    r"|\bel\s+(?:dia\s+)?([0-9]{1,2})\b(?!\s*(?:[0-9]|de))"
)
_WEEKDAY = re.compile(
    r"\b(?:(this coming|this|coming|next week on|next week|next|last|past|previous|este|"
    r"el proximo|proximo|el pasado|on|el)\s+)?"
    rf"({_WEEKDAY_RX})\b"
    r"(?:\s+(after next|next week|de la proxima semana|de la semana que viene|que viene|"
    r"pasado|last week))?"
)
_IN_PERIOD = re.compile(
    r"\b(?:in|en|within)\s+(a|an|un|una|[0-9]{1,3})\s+"
    r"(days?|weeks?|wks?|months?|dias?|semanas?|mes|meses)\b"
    r"|\b(a|an|[0-9]{1,3})\s+(days?|weeks?|wks?|months?)\s+from\s+(?:now|today)\b"
)
_PERIOD_FROM_WEEKDAY = re.compile(
    rf"\b(a|an|[0-9]{{1,3}})\s+(days?|weeks?)\s+from\s+(?:this\s+|next\s+)?({_WEEKDAY_RX})\b"
)
_DAY_AFTER_TOMORROW = re.compile(r"\b(?:the\s+)?day\s+after\s+tomorrow\b|\bpasado\s+manana\b")
_TOMORROW = re.compile(
    r"\b(?:tomorrow|tmrw|tmr|tmw|tmrow|tomorow|tommorow|tommorrow|tomorrrow|2morrow|2moro|"
    r"manana)\b"
)
_YESTERDAY = re.compile(r"\b(?:yesterday|ayer)\b")
_NEXT_WEEK = re.compile(
    r"\bnext\s+week\b|\bla\s+proxima\s+semana\b|\bla\s+semana\s+que\s+viene\b"
)
_NEXT_MONTH = re.compile(r"\bnext\s+month\b|\bel\s+proximo\s+mes\b|\bel\s+mes\s+que\s+viene\b")
_END_OF_NEXT_MONTH = re.compile(r"\bend\s+of\s+next\s+month\b")
_END_OF_MONTH = re.compile(
    r"\b(?:the\s+)?end\s+of\s+(?:the\s+|this\s+)?month\b|\bfin\s+de\s+mes\b|\bmonth\s+end\b"
)
_WEEKEND = re.compile(r"\b(next\s+|this\s+)?weekend\b")
_NEGATED_NOW = re.compile(
    r"\b(?:not|cant|cannot|dont|wont|couldnt|no)\s+(?:[a-z]+\s+){0,2}?(?:right\s+)?"
    r"(?:now|today|tonight|ahora|hoy)\b"
)
_NOW = re.compile(
    r"\b(?:right\s+now|now|today|tonight|asap|immediately|right\s+away|ahora|ahorita|hoy|"
    r"ahora\s+mismo)\b"
)
_DATEPARSER_GATE = re.compile(
    r"\b(?:day|days|week|weeks|month|months|year|years|fortnight|dia|dias|semana|semanas|"
    r"mes|meses)\b"
)
_DATEPARSER_LEAD = re.compile(
    r"^(?:(?:i|we)\s+(?:can|could|will|would|ll)\s+(?:pay|do)\s+(?:it\s+)?|pay\s+(?:it\s+)?|"
    r"lets\s+(?:do|say)\s+|how\s+about\s+|maybe\s+|on\s+|by\s+)+"
)
_BARE_DAY_FILLERS = frozenset({"the", "on", "el", "dia", "day", "pay", "by", "please"})

_NOW_MARK = "now"


def _add_months(day: datetime.date, months: int) -> datetime.date:
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    return datetime.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _last_of_month(year: int, month: int) -> datetime.date:
    return datetime.date(year, month, calendar.monthrange(year, month)[1])


def _next_day_of_month(day: int, today: datetime.date) -> datetime.date | None:
    """The next `day`-th of a month on or after today (months too short are skipped)."""
    if not 1 <= day <= 31:
        return None
    year, month = today.year, today.month
    for _ in range(13):
        if day <= calendar.monthrange(year, month)[1]:
            candidate = datetime.date(year, month, day)
            if candidate >= today:
                return candidate
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return None  # pragma: no cover - some month in the next year always has days 1..31


def _month_day(
    month: int, day: int, year: int | None, today: datetime.date
) -> datetime.date | None:
    """Resolve M/D[/Y]. Without a year see PAST_GRACE_DAYS."""
    if year is not None:
        if year < 100:
            year += 2000
        try:
            return datetime.date(year, month, day)
        except ValueError:
            return None
    try:
        candidate: datetime.date | None = datetime.date(today.year, month, day)
    except ValueError:
        candidate = None
    if candidate is not None and (
        candidate >= today or (today - candidate).days <= PAST_GRACE_DAYS
    ):
        return candidate
    for y in range(today.year + 1, today.year + 5):  # Feb 29 waits for a leap year
        try:
            return datetime.date(y, month, day)
        except ValueError:
            continue
    return None


def _weekday_date(weekday: int, prefix: str | None, suffix: str | None, today: datetime.date):
    ahead = (weekday - today.weekday()) % 7  # 0..6, 0 = today
    prefix = (prefix or "").strip()
    suffix = (suffix or "").strip()
    if prefix in {"last", "past", "previous", "el pasado"} or suffix in {"pasado", "last week"}:
        behind = (today.weekday() - weekday) % 7 or 7
        return today - datetime.timedelta(days=behind)
    if prefix in {"next", "next week", "next week on", "el proximo", "proximo"} or suffix in {
        "next week", "de la proxima semana", "de la semana que viene", "que viene", "after next",
    }:
        next_monday = today + datetime.timedelta(days=7 - today.weekday())
        result = next_monday + datetime.timedelta(days=weekday)
        if suffix == "after next":
            result += datetime.timedelta(days=7)
        return result
    if suffix == "after next":  # "friday after next" (no prefix): see above
        next_monday = today + datetime.timedelta(days=7 - today.weekday())
        return next_monday + datetime.timedelta(days=weekday + 7)
    if prefix in {"this", "this coming", "coming", "este"}:
        return today + datetime.timedelta(days=ahead)
    return today + datetime.timedelta(days=ahead or 7)


def _period(count: str, unit: str, base: datetime.date) -> datetime.date:
    n = 1 if count in {"a", "an", "un", "una"} else int(count)
    n = min(n, 1200)
    if unit.startswith(("day", "dia")):
        return base + datetime.timedelta(days=n)
    if unit.startswith(("week", "wk", "semana")):
        return base + datetime.timedelta(weeks=n)
    return _add_months(base, n)


@functools.lru_cache(maxsize=32)
def _date_data_parser(today: datetime.date):
    """dateparser, set up once per local day (building its settings is the slow part)."""
    from dateparser.date import DateDataParser

    return DateDataParser(
        languages=["en", "es"],
        settings={
            "PREFER_DATES_FROM": "future",
            "RELATIVE_BASE": datetime.datetime.combine(today, datetime.time(12, 0)),
            "DATE_ORDER": "MDY",
            "RETURN_AS_TIMEZONE_AWARE": False,
        },
    )


def _dateparser(text: str, today: datetime.date) -> datetime.date | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dateparser warns about its own internals
            data = _date_data_parser(today).get_date_data(text)
    except Exception:  # dateparser can fail on odd input; an unread date is just unread
        return None
    return data.date_obj.date() if data and data.date_obj else None


def _check_date(value: datetime.date, today: datetime.date, horizon: datetime.date | None):
    if value < today:
        return invalid("past_date")
    if value == today:
        return Meaning("now")
    if horizon is not None and value > horizon:
        return invalid("beyond_horizon")
    return Meaning("date", value)


def scan_dates(
    text: str, today: datetime.date, *, spanish: bool = False
) -> tuple[list[datetime.date | str | None], str, bool]:
    """Every date phrase of `text` by the rules below: what each read as (a date, ``"now"``,
    or None when unreadable), the folded text with those phrases blanked out (what is left
    for other readers, as the slot-filled intents' amounts), and whether "now" was negated.
    ``spanish``: Spanish number words are read too ("el quince")."""
    t = fold(text)
    t = words_to_digits(t, "en")
    if spanish:
        t = spanish_words_to_digits(t)
    t = re.sub(r"[,;!?()\"]", " ", t)
    t = re.sub(r"\s+", " ", t).strip()
    found: list[datetime.date | str | None] = []  # a date, _NOW_MARK, or None (unreadable)

    def scan(rx: re.Pattern[str], resolve) -> None:
        nonlocal t

        def repl(m: re.Match[str]) -> str:
            found.append(resolve(m))
            return " " * len(m.group(0))

        t = rx.sub(repl, t)

    negated = bool(_NEGATED_NOW.search(t))
    t = _NEGATED_NOW.sub(" ", t)
    scan(_ISO_DATE, lambda m: _month_day(int(m[2]), int(m[3]), int(m[1]), today))
    scan(
        _US_DATE,
        lambda m: _month_day(int(m[1]), int(m[2]), int(m[3]) if m[3] else None, today),
    )
    scan(_MONTH_DAY, lambda m: _month_day(MONTHS[m[1]], int(m[2]), _int(m[3]), today))
    scan(_DAY_MONTH, lambda m: _month_day(MONTHS[m[2]], int(m[1]), _int(m[3]), today))
    scan(_END_OF_NEXT_MONTH, lambda m: _last_of_month_offset(today, 1))
    scan(_END_OF_MONTH, lambda m: _last_of_month_offset(today, 0))
    scan(_DAY_OF_NEXT_MONTH, lambda m: _day_of_next_month(m[1], today))
    scan(_PERIOD_FROM_WEEKDAY, lambda m: _period(m[1], m[2], _weekday_date(
        _WEEKDAYS[m[3]], None, None, today)))
    scan(_IN_PERIOD, lambda m: _period(m[1] or m[3], m[2] or m[4], today))
    scan(_DAY_AFTER_TOMORROW, lambda m: today + datetime.timedelta(days=2))
    scan(_TOMORROW, lambda m: today + datetime.timedelta(days=1))
    scan(_YESTERDAY, lambda m: today - datetime.timedelta(days=1))
    scan(_WEEKDAY, lambda m: _weekday_date(_WEEKDAYS[m[2]], m[1], m[3], today))
    scan(_NEXT_WEEK, lambda m: today + datetime.timedelta(days=7))
    scan(_NEXT_MONTH, lambda m: _add_months(today, 1))
    scan(_WEEKEND, lambda m: _weekend(m[1], today))
    scan(_DAY_OF_MONTH, lambda m: _next_day_of_month(int(m[1] or m[2] or m[3]), today))
    scan(_NOW, lambda m: _NOW_MARK)
    return found, t, negated


def decide_date(
    found: list[datetime.date | str | None], today: datetime.date, horizon: datetime.date | None
) -> Meaning:
    """One date (or now) from what `scan_dates` found, checked against today and the horizon."""
    if not found:
        return invalid("not_understood")
    readable = {f for f in found if f is not None}
    # "now" and a date equal to today are the same answer.
    readable = {_NOW_MARK if f == today else f for f in readable}
    if len(readable) > 1:
        return invalid("ambiguous")
    if not readable:
        return invalid("not_understood")
    value = readable.pop()
    if value == _NOW_MARK:
        return Meaning("now")
    assert isinstance(value, datetime.date)
    return _check_date(value, today, horizon)


def parse_date(text: str, today: datetime.date, horizon: datetime.date | None) -> Meaning:
    tokens = reply_words(text)
    if only_no(tokens) and not any(c.isdigit() for c in text):
        return Meaning("no")
    found, t, negated = scan_dates(text, today)

    if not found:
        rest = [w for w in tokens if w not in _BARE_DAY_FILLERS]
        if len(rest) == 1 and rest[0].isdigit() and len(rest[0]) <= 2:
            found.append(_next_day_of_month(int(rest[0]), today))
        elif not negated and _DATEPARSER_GATE.search(t) and len(t) <= 60:
            found.append(_dateparser(_DATEPARSER_LEAD.sub("", t.strip()), today))

    return decide_date(found, today, horizon)


def _int(s: str | None) -> int | None:
    return int(s) if s else None


def _last_of_month_offset(today: datetime.date, months: int) -> datetime.date:
    first = _add_months(today.replace(day=1), months)
    return _last_of_month(first.year, first.month)


def _day_of_next_month(day: str | None, today: datetime.date) -> datetime.date | None:
    first = _add_months(today.replace(day=1), 1)
    d = int(day) if day else 1
    if not 1 <= d <= calendar.monthrange(first.year, first.month)[1]:
        return None
    return first.replace(day=d)


def _weekend(prefix: str | None, today: datetime.date) -> datetime.date:
    return _weekday_date(5, "next" if prefix and prefix.strip() == "next" else "this", None, today)
