"""Rules every proactive message obeys (Reg F quiet hours; opt-outs live in the ledger)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from bot.config import FlowSettings


def in_quiet_hours(now: datetime, timezone: str, settings: FlowSettings) -> bool:
    """True from quiet_hours_start (9 p.m.) to quiet_hours_end (8 a.m.) in the customer's zone."""
    local = now.astimezone(ZoneInfo(timezone or "America/New_York"))
    return local.hour >= settings.quiet_hours_start or local.hour < settings.quiet_hours_end
