"""When a person answers: a creditor's agent hours, read and checked, and when agents are next in.

Written as windows separated by ``;``, each days and a time range in the creditor's
``agent_timezone``: ``mon-fri 08:00-20:00`` (the default), ``mon-fri 08:00-20:00; sat
09:00-13:00``, ``mon,wed 10:00-16:00``, ``daily 00:00-24:00``, or ``always``. Times are 24-hour;
``24:00`` ends a window at midnight. A bad value is refused with the reason, like every other
flow setting (bot/config/flow.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ALIASES = {"weekdays": (0, 1, 2, 3, 4), "weekends": (5, 6), "daily": tuple(range(7))}
_WINDOW = re.compile(r"^([a-z,\- ]+?)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class AgentHours:
    """Minutes of the day agents answer, per weekday (0 = Monday): ((start, end), ...)."""

    windows: tuple[tuple[tuple[int, int], ...], ...]

    def is_open(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.windows[local.weekday()])

    def next_opening(self, at: datetime, zone: ZoneInfo) -> datetime | None:
        """None when agents are in at ``at``; else when they are next (aware, in ``zone``);
        None too when no window is set at all (never reached: parse refuses it)."""
        local = at.astimezone(zone)
        if self.is_open(local):
            return None
        minute = local.hour * 60 + local.minute
        for ahead in range(8):
            day = local.date() + timedelta(days=ahead)
            for start, _end in sorted(self.windows[day.weekday()]):
                if ahead == 0 and start <= minute:
                    continue
                opens = datetime.combine(day, time(start // 60, start % 60), tzinfo=zone)
                return opens
        return None


def parse_agent_hours(spec: str) -> AgentHours:
    """The hours a spec says; ValueError naming what is wrong."""
    text = " ".join(spec.lower().split())
    if text in {"always", "24/7", "24x7"}:
        return AgentHours(tuple(((0, 24 * 60),) for _ in DAYS))
    windows: list[list[tuple[int, int]]] = [[] for _ in DAYS]
    parts = [p.strip() for p in text.split(";") if p.strip()]
    if not parts:
        raise ValueError("must say when agents answer, e.g. 'mon-fri 08:00-20:00' or 'always'")
    for part in parts:
        match = _WINDOW.match(part)
        if match is None:
            raise ValueError(f"{part!r} is not like 'mon-fri 08:00-20:00'")
        days = _days(match.group(1))
        start = _minutes(int(match.group(2)), int(match.group(3)))
        end = _minutes(int(match.group(4)), int(match.group(5)))
        if end <= start:
            raise ValueError(f"{part!r}: the window must end after it starts")
        for day in days:
            windows[day].append((start, end))
    return AgentHours(tuple(tuple(w) for w in windows))


def _days(text: str) -> tuple[int, ...]:
    found: list[int] = []
    for item in (i.strip() for i in text.split(",")):
        if item in _ALIASES:
            found.extend(_ALIASES[item])
        elif "-" in item:
            first, _, last = (s.strip() for s in item.partition("-"))
            a, b = _day(first), _day(last)
            found.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        else:
            found.append(_day(item))
    return tuple(dict.fromkeys(found))


def _day(word: str) -> int:
    key = word[:3]
    if key not in DAYS or not word.startswith(key):
        raise ValueError(f"{word!r} is not a day (mon, tue, ... sun, weekdays, daily)")
    return DAYS.index(key)


def _minutes(hour: int, minute: int) -> int:
    if not (0 <= hour <= 24 and 0 <= minute < 60) or (hour == 24 and minute):
        raise ValueError(f"{hour:02d}:{minute:02d} is not a time of day")
    return hour * 60 + minute


def check_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError) as error:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"{name!r} is not a time zone (e.g. America/New_York)") from error


def when_back(opens: datetime, now: datetime, zone: ZoneInfo) -> str:
    """Agents' return as a customer reads it, in ``zone``: "today at 8:00 AM EST", "tomorrow
    at 8:00 AM EST", "Monday at 8:00 AM EST"."""
    local, today = opens.astimezone(zone), now.astimezone(zone).date()
    if local.date() == today:
        day = "today"
    elif local.date() == today + timedelta(days=1):
        day = "tomorrow"
    else:
        day = f"{local:%A}"
    hour = local.hour % 12 or 12
    return f"{day} at {hour}:{local:%M} {'AM' if local.hour < 12 else 'PM'} {local:%Z}"
