"""Rules every proactive message obeys (Reg F quiet hours; opt-outs live in the ledger)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.config.settings import FlowSettings

# Reg F: the first message says it comes from a debt collector. A creditor sets its own wording;
# this is what is said when it has none.
DEFAULT_DISCLOSURE = "This is a communication from a debt collector."

# Where a customer's zone is unknown, a time is convenient only if it is so in every one of these
# (Reg F 1006.6(b)(1)(i): without better knowledge, all the locations the consumer may be in).
US_ZONES = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Phoenix",
    "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu",
)


def zone_or_none(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _quiet(hour: int, start: int, end: int) -> bool:
    if start == end:
        return False  # no quiet hours configured
    if start > end:  # the usual case: 21 -> 8 wraps midnight
        return hour >= start or hour < end
    return start <= hour < end


def in_quiet_hours(now: datetime, timezone: str | None, settings: FlowSettings) -> bool:
    """True from quiet_hours_start (9 p.m.) to quiet_hours_end (8 a.m.) in the customer's zone.

    An unknown or unreadable zone is treated as "could be anywhere in the US": quiet whenever it
    is quiet in any US zone.
    """
    zone = zone_or_none(timezone)
    zones = [zone] if zone is not None else [ZoneInfo(name) for name in US_ZONES]
    return any(
        _quiet(now.astimezone(z).hour, settings.quiet_hours_start, settings.quiet_hours_end)
        for z in zones
    )
