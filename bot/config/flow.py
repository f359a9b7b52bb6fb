"""A creditor's flow settings: what they may hold, checked when written, read key by key.

Stored as a creditor's JSON overrides of the defaults (``Creditor.settings``). Writing checks
every key and names each bad one with the reason (``check_creditor_settings``). Reading
(``FlowSettings.merged``) takes each key on its own: one bad key that is already in the
database falls back to its own default, with a warning naming the creditor and the key, and
never voids the creditor's other settings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from bot.config.agent_hours import check_zone, parse_agent_hours, when_back

if TYPE_CHECKING:
    from bot.ledger.models import Creditor

log = logging.getLogger(__name__)

# The kinds of payment method PayBot can take (PaymentMethod.kind), and a customer's words.
METHOD_KINDS = ("card", "us_bank_account", "paypal")
METHOD_WORDS = {"card": "card", "us_bank_account": "bank account", "paypal": "PayPal account"}
# PayPal is offered only where a creditor lists it (it needs PayPal credentials in production).
DEFAULT_METHODS = ("card", "us_bank_account")

Whole = Annotated[int, Field(ge=0)]


def Upto(most: int) -> Any:  # noqa: N802 (reads as a type)
    """A whole number up to ``most``: every setting has a ceiling a real creditor never needs,
    so no stored value can overflow a date or a sum computed from it."""
    return Annotated[int, Field(ge=0, le=most)]


class InvalidCreditorSettings(ValueError):
    """Settings that may not be stored; ``problems`` maps each bad key to why."""

    def __init__(self, problems: dict[str, str]):
        self.problems = problems
        super().__init__(
            "invalid creditor settings: " + "; ".join(f"{k}: {v}" for k, v in problems.items())
        )


class FlowSettings(BaseModel):
    """Per creditor (or portfolio) switches of the payment journey."""

    # Strict: "5" is not 5 and 1 is not true; a stored value of the wrong type is named, not
    # guessed at in the middle of a customer's conversation.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    contact_review: bool = True
    virtual_collection: bool = True
    allow_skip_offer: bool = True
    schedule_payment: bool = True
    min_payment_cents: Upto(1_000_000_000) = 2500
    furthest_schedule_days: Upto(730) = 90
    methods_enabled: tuple[str, ...] = DEFAULT_METHODS
    quiet_hours_start: Annotated[int, Field(ge=0, le=24)] = 21  # no proactive message from 9 p.m.
    quiet_hours_end: Annotated[int, Field(ge=0, le=23)] = 8  # ... to 8 a.m., customer's local time
    session_timeout_minutes: Upto(10_080) = 30
    terms_version: Annotated[str, Field(min_length=1, max_length=20)] = "2026-11"  # its column
    max_invalid_replies: Upto(20) = 3
    # Plans and offers (journeys 3 to 5)
    sms_plan_signing: bool = True  # the terms allow a plan to be signed by replying AGREE
    offer_lifetime_days: Upto(365) = 14  # an offer's default expiry
    # at most three, before an offer expires
    reminder_days_before: Annotated[tuple[Upto(365), ...], Field(max_length=3)] = (7, 3, 1)
    plan_max_installments: Upto(120) = 24
    plan_start_horizon_days: Upto(365) = 30  # the first installment at most this far ahead
    plan_skips_allowed: Upto(12) = 1  # installments a customer may skip (pushed to the end) by text
    plan_move_max_days: Upto(90) = 14  # how far a customer may move the next installment by text
    max_proactive_per_week: Upto(50) = 5  # per customer, receipts and replies aside
    # When a person answers a handed-over conversation (bot/config/agent_hours.py), in which
    # zone (creditors have no zone of their own), and how long an unclaimed request waits
    # before the customer is told and the bot answers again.
    agent_hours: Annotated[str, Field(max_length=200)] = "mon-fri 08:00-20:00"
    agent_timezone: str = "America/New_York"
    agent_wait_minutes: Annotated[int, Field(ge=1, le=1440)] = 15

    @field_validator("methods_enabled", "reminder_days_before", mode="before")
    @classmethod
    def _list_is_a_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value  # JSON has lists only

    @field_validator("methods_enabled")
    @classmethod
    def _known_kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value) or not set(value) <= set(METHOD_KINDS):
            raise ValueError(f"must list one or more of {', '.join(METHOD_KINDS)}, once each")
        return value

    @field_validator("agent_hours")
    @classmethod
    def _readable_hours(cls, value: str) -> str:
        parse_agent_hours(value)
        return value

    @field_validator("agent_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        check_zone(value)
        return value

    def agents_back(self, at: datetime) -> datetime | None:
        """None while agents answer at ``at``; else when they are next in."""
        zone = ZoneInfo(self.agent_timezone)
        return parse_agent_hours(self.agent_hours).next_opening(at, zone)

    def agent_wait(self, at: datetime, customer_zone: str | None) -> dict[str, object]:
        """What a handoff reply says of the wait (the templates' ``wait``): ``open`` (agents
        in now), ``minutes`` (the wait limit), ``back`` (when they are back, in the customer's
        zone when known, else the agents')."""
        opens = self.agents_back(at)
        zone = ZoneInfo(customer_zone or self.agent_timezone)
        return {
            "open": opens is None,
            "minutes": self.agent_wait_minutes,
            "back": when_back(opens, at, zone) if opens is not None else "",
            # The same moment for the templates to say in Spanish (bot/text/i18n.when_back).
            "opens": opens.astimezone(zone) if opens is not None else None,
            "today": at.astimezone(zone).date(),
        }

    @classmethod
    def from_mapping(cls, data: Mapping[str, object] | None) -> FlowSettings:
        """Settings from a whole mapping; raises InvalidCreditorSettings naming each bad key."""
        overrides = dict(data or {})
        problems = _flow_problems(overrides)
        if problems:
            raise InvalidCreditorSettings(problems)
        return cls.model_validate(overrides)

    def merged(
        self, overrides: Mapping[str, object] | None, *, creditor: str | None = None
    ) -> FlowSettings:
        """These settings with a creditor's stored overrides, key by key: a key that is bad
        (or unknown) keeps its default here and is logged, naming ``creditor`` and the key."""
        if not overrides:
            return self
        good: dict[str, object] = {}
        for key, value in overrides.items():
            if key in WORKER_KEYS:
                continue  # the worker's own (decline retries), read there
            problem = _flow_problem(key, value)
            if problem is None:
                good[key] = value
            else:
                log.warning(
                    "creditor %s: flow setting %s ignored (%s); its default applies",
                    creditor or "?",
                    key,
                    problem,
                )
        if not good:
            return self
        return type(self).model_validate({**self.to_mapping(), **good})

    @property
    def method_words(self) -> str:
        """What a customer may add, in words: "card", "card or bank account", "card, bank
        account or PayPal account"..."""
        words = [METHOD_WORDS[k] for k in METHOD_KINDS if k in self.methods_enabled]
        return " or ".join(words) if len(words) < 3 else f"{', '.join(words[:-1])} or {words[-1]}"

    def for_creditor(self, creditor: Creditor | None) -> FlowSettings:
        """The settings a creditor's accounts run under (these, where there is no creditor)."""
        if creditor is None:
            return self
        return self.merged(creditor.settings, creditor=creditor.code)

    def to_mapping(self) -> dict[str, object]:
        """As stored in JSON (lists, not tuples)."""
        return self.model_dump(mode="json")


# Creditor settings the worker reads itself (bot.worker): days between retries of a declined
# payment (null: never retried) and how many retries at most.
WORKER_KEYS: dict[str, TypeAdapter[Any]] = {
    "decline_retry_days": TypeAdapter(
        Annotated[int, Field(ge=1, le=90, strict=True)] | None
    ),
    "decline_max_retries": TypeAdapter(Annotated[int, Field(ge=0, le=10, strict=True)]),
}


def _reason(error: ValidationError) -> str:
    return "; ".join(e["msg"] for e in error.errors()).replace("Value error, ", "")


def _flow_problem(key: str, value: object) -> str | None:
    if key not in FlowSettings.model_fields:
        return "not a creditor setting"
    try:
        FlowSettings.model_validate({key: value})
    except ValidationError as error:
        return _reason(error)
    return None


def _flow_problems(data: Mapping[str, object]) -> dict[str, str]:
    problems = {}
    for key, value in data.items():
        problem = _flow_problem(key, value)
        if problem is not None:
            problems[key] = problem
    return problems


def check_creditor_settings(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings to store for a creditor, checked: raises InvalidCreditorSettings naming
    every bad key and why. Keys are the flow settings' and the worker's ``WORKER_KEYS``."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidCreditorSettings({"settings": "must be an object of settings"})
    problems: dict[str, str] = {}
    for key, value in data.items():
        if key in WORKER_KEYS:
            try:
                WORKER_KEYS[key].validate_python(value)
            except ValidationError as error:
                problems[key] = _reason(error)
            continue
        problem = _flow_problem(key, value)
        if problem is not None:
            problems[key] = problem
    if problems:
        raise InvalidCreditorSettings(problems)
    return dict(data)
