"""What each creditor decides for its payments (quiet hours, brand, disclosure, the decline retry
rule), read once a pass, and the customer's local date every due-date rule is measured in."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.config.settings import FlowSettings, Settings
from bot.ledger.models import Creditor
from bot.outreach.compliance import DEFAULT_DISCLOSURE, in_quiet_hours
from bot.worker.config import WorkerConfig

log = logging.getLogger(__name__)

# Where an account's zone cannot be read, a date is due only once it has begun everywhere in the
# US (the last place to reach a date is Hawaii).
_LATEST_US_ZONE = ZoneInfo("Pacific/Honolulu")


@dataclass(frozen=True)
class Rules:
    """What a creditor decides for its payments (cached for one pass)."""

    flow: FlowSettings
    brand: str
    disclosure: str
    retry_days: int | None
    max_retries: int


class CreditorRules:
    """Each creditor's ``Rules``, read at most once between two calls of ``clear`` (one pass):
    the worker's defaults with the creditor's overrides."""

    def __init__(self, settings: Settings, config: WorkerConfig) -> None:
        self.settings = settings
        self.config = config
        self._rules_cache: dict[str | None, Rules] = {}

    def clear(self) -> None:
        self._rules_cache = {}

    async def of(self, session: Any, creditor_code: str | None) -> Rules:
        cached = self._rules_cache.get(creditor_code)
        if cached is not None:
            return cached
        creditor = await session.get(Creditor, creditor_code) if creditor_code else None
        overrides = dict(creditor.settings or {}) if creditor is not None else {}
        retry_days, max_retries = self.config.retry_declined_after_days, \
            self.config.max_decline_retries
        if "decline_retry_days" in overrides:
            value = overrides["decline_retry_days"]
            if value is None or (_whole(value) and value >= 1):
                retry_days = value
            else:
                log.error("creditor %s: decline_retry_days must be a whole number of days >= 1 "
                          "or null; ignored", creditor_code)
        if "decline_max_retries" in overrides:
            value = overrides["decline_max_retries"]
            if _whole(value) and value >= 0:
                max_retries = value
            else:
                log.error("creditor %s: decline_max_retries must be a whole number; ignored",
                          creditor_code)
        rules = Rules(
            flow=self.settings.flow.for_creditor(creditor),
            brand=(creditor.shown_name if creditor is not None else "") or self.settings.brand,
            # Every notice from a debt collector says so (FDCPA 807(11)), as outreach does.
            disclosure=(creditor.disclosure if creditor is not None else "") or DEFAULT_DISCLOSURE,
            retry_days=retry_days,
            max_retries=max_retries,
        )
        self._rules_cache[creditor_code] = rules
        return rules

    def held(self, now: datetime, timezone: str | None, rules: Rules) -> bool:
        """Quiet hours in the customer's zone: a receipt or a notice would follow the charge."""
        return self.config.respect_quiet_hours and in_quiet_hours(now, timezone, rules.flow)


def local_today(now: datetime, timezone: str | None) -> date:
    """The customer's date; an unreadable zone counts as the last US zone to reach a date."""
    try:
        zone = ZoneInfo(timezone) if timezone else _LATEST_US_ZONE
    except (ZoneInfoNotFoundError, ValueError, OSError):
        zone = _LATEST_US_ZONE
    return now.astimezone(zone).date()


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
