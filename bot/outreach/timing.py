"""When a proactive message may go: the first moment outside the customer's quiet hours, a
reminder's due time in the customer's wall-clock time, the customer's local date."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.config.settings import FlowSettings
from bot.outreach.compliance import in_quiet_hours, zone_or_none

REMINDER_HOUR = 10  # reminders go out at 10 a.m. in the customer's zone


def window_opens(now: datetime, timezone: str | None, flow: FlowSettings) -> datetime:
    """The first moment from ``now`` outside quiet hours in the customer's zone (``now`` itself
    when it is not quiet). An unreadable zone counts as every US zone, as in compliance.py: the
    first top of an hour at which it is daytime in all of them."""
    if not in_quiet_hours(now, timezone, flow):
        return now
    zone = zone_or_none(timezone)
    if zone is not None:
        local = now.astimezone(zone)
        opens = datetime.combine(local.date(), time(flow.quiet_hours_end), tzinfo=zone)
        if opens <= local:
            opens = datetime.combine(
                local.date() + timedelta(days=1), time(flow.quiet_hours_end), tzinfo=zone
            )
        candidate = opens.astimezone(UTC)
        if not in_quiet_hours(candidate, timezone, flow):
            return candidate
    candidate = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    for _ in range(72):
        candidate += timedelta(hours=1)
        if not in_quiet_hours(candidate, timezone, flow):
            return candidate
    return now + timedelta(days=1)  # quiet around the clock: look again tomorrow


def reminder_due(expires_at: datetime, days: int, timezone: str | None) -> datetime:
    """``days`` calendar days before the offer's last day, at REMINDER_HOUR (10 a.m.) local time:
    the same local hour whatever DST does in between. With an unreadable zone: that many days
    before the expiry itself (quiet hours then hold it until it is daytime everywhere)."""
    zone = zone_or_none(timezone)
    if zone is None:
        return expires_at - timedelta(days=days)
    last_day = expires_at.astimezone(zone).date()
    due = datetime.combine(last_day - timedelta(days=days), time(REMINDER_HOUR), tzinfo=zone)
    return due.astimezone(UTC)


def local_date(at: datetime, timezone: str | None) -> date:
    return at.astimezone(zone_or_none(timezone) or ZoneInfo("UTC")).date()
