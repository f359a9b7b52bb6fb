"""Configuration: read once from the environment by the CLI, passed down explicitly.

Nothing here is read at import time; `Settings.from_env` takes the mapping to read.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA_DIR = Path("var")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class FlowSettings:
    """Per creditor (or portfolio) switches of the payment journey."""

    contact_review: bool = True
    virtual_collection: bool = True
    allow_skip_offer: bool = True
    schedule_payment: bool = True
    min_payment_cents: int = 2500
    furthest_schedule_days: int = 90
    methods_enabled: tuple[str, ...] = ("card", "us_bank_account")
    quiet_hours_start: int = 21  # no proactive message from 9 p.m. ...
    quiet_hours_end: int = 8  # ... to 8 a.m., customer's local time
    session_timeout_minutes: int = 30
    terms_version: str = "2026-11"
    max_invalid_replies: int = 3
    # Plans and offers (journeys 3 to 5)
    sms_plan_signing: bool = True  # the terms allow a plan to be signed by replying AGREE
    offer_lifetime_days: int = 14  # an offer's default expiry
    reminder_days_before: tuple[int, ...] = (7, 3, 1)  # at most three, before an offer expires
    plan_max_installments: int = 24
    plan_start_horizon_days: int = 30  # the first installment at most this far ahead
    plan_skips_allowed: int = 1  # installments a customer may skip (pushed to the end) by text
    plan_move_max_days: int = 14  # how far a customer may move the next installment by text
    max_proactive_per_week: int = 5  # per customer, receipts and replies aside

    @classmethod
    def from_mapping(cls, data: Mapping[str, object] | None) -> FlowSettings:
        """Settings as stored per creditor; a value of the wrong type is an error, not a crash
        later in the middle of a customer's conversation."""
        if not data:
            return cls()
        defaults = cls()
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value, default = data[f.name], getattr(defaults, f.name)
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ConfigError(f"flow setting {f.name} must be true or false")
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ConfigError(f"flow setting {f.name} must be a whole number")
            elif isinstance(default, tuple) and default and isinstance(default[0], int):
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
                ):
                    raise ConfigError(f"flow setting {f.name} must be a list of whole numbers")
                value = tuple(value)
            elif isinstance(default, tuple):
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, str) for v in value
                ):
                    raise ConfigError(f"flow setting {f.name} must be a list of names")
                value = tuple(value)
            elif not isinstance(value, str):
                raise ConfigError(f"flow setting {f.name} must be text")
            values[f.name] = value
        settings = cls(**values)  # type: ignore[arg-type]
        if not (0 <= settings.quiet_hours_end <= 23 and 0 <= settings.quiet_hours_start <= 24):
            raise ConfigError("quiet hours must be hours of the day")
        if len(settings.reminder_days_before) > 3:
            raise ConfigError("at most three reminders before an offer expires")
        return settings

    def merged(self, overrides: Mapping[str, object] | None) -> FlowSettings:
        """These settings with a creditor's overrides; a broken override set is logged and
        ignored, so a typo in one creditor's settings never breaks a customer's conversation."""
        if not overrides:
            return self
        try:
            return FlowSettings.from_mapping({**self.to_mapping(), **overrides})
        except (ConfigError, TypeError):
            logging.getLogger(__name__).error("ignoring invalid creditor flow settings")
            return self

    def to_mapping(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["methods_enabled"] = list(self.methods_enabled)
        data["reminder_days_before"] = list(self.reminder_days_before)
        return data


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _positive_int(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1")
    return number


@dataclass(frozen=True)
class Settings:
    database_url: str = f"sqlite:///{DEFAULT_DATA_DIR / 'paybot.sqlite3'}"
    redis_url: str | None = None  # None: an in-process Redis (fakeredis)
    public_base_url: str = "http://127.0.0.1:8080"
    secret_key: str = "insecure-development-key"
    data_dir: Path = DEFAULT_DATA_DIR
    api_key: str | None = None
    brand: str = "PayBot"
    support_contact: str = "support@paybot.example"
    migrate_on_start: bool = True

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base: str | None = None

    stripe_secret_key: str | None = None
    stripe_publishable_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    stripe_js_url: str = "https://js.stripe.com/v3/"

    sendgrid_api_key: str | None = None
    sendgrid_from_email: str = "receipts@paybot.example"
    sendgrid_host: str | None = None
    # The Event Webhook's verification key as SendGrid shows it (base64 DER, or the same in PEM
    # armour); webhooks/sendgrid.py reads either. Unset: POST /webhooks/sendgrid refuses (400).
    sendgrid_webhook_public_key: str | None = None

    link_lifetime_hours: int = 72
    verification_lock_minutes: int = 30
    # Inbound SMS turns one web process works on at once; the rest wait their turn in order.
    # A few in flight keep the database busy; many only slow every one of them down.
    sms_turns_in_flight: int = 8
    flow: FlowSettings = field(default_factory=FlowSettings)

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def twilio_configured(self) -> bool:
        return bool(
            self.twilio_account_sid
            and self.twilio_auth_token
            and (self.twilio_from_number or self.twilio_messaging_service_sid)
        )

    @property
    def stripe_configured(self) -> bool:
        return bool(self.stripe_secret_key)

    @property
    def sendgrid_configured(self) -> bool:
        return bool(self.sendgrid_api_key)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else None

        data_dir = Path(get("PAYBOT_DATA_DIR") or DEFAULT_DATA_DIR)
        values: dict[str, object] = {
            "data_dir": data_dir,
            "database_url": get("DATABASE_URL") or f"sqlite:///{data_dir / 'paybot.sqlite3'}",
            "redis_url": get("REDIS_URL"),
            "public_base_url": (get("PUBLIC_BASE_URL") or cls.public_base_url).rstrip("/"),
            "secret_key": get("SECRET_KEY") or cls.secret_key,
            "api_key": get("PAYBOT_API_KEY"),
            "brand": get("PAYBOT_BRAND") or cls.brand,
            "support_contact": get("PAYBOT_SUPPORT_CONTACT") or cls.support_contact,
            "migrate_on_start": _bool(get("PAYBOT_MIGRATE_ON_START"), True),
            "twilio_account_sid": get("TWILIO_ACCOUNT_SID"),
            "twilio_auth_token": get("TWILIO_AUTH_TOKEN"),
            "twilio_from_number": get("TWILIO_FROM_NUMBER"),
            "twilio_messaging_service_sid": get("TWILIO_MESSAGING_SERVICE_SID"),
            "twilio_api_base": get("TWILIO_API_BASE"),
            "stripe_secret_key": get("STRIPE_SECRET_KEY"),
            "stripe_publishable_key": get("STRIPE_PUBLISHABLE_KEY"),
            "stripe_webhook_secret": get("STRIPE_WEBHOOK_SECRET"),
            "stripe_api_base": get("STRIPE_API_BASE"),
            "stripe_js_url": get("STRIPE_JS_URL") or cls.stripe_js_url,
            "sendgrid_api_key": get("SENDGRID_API_KEY"),
            "sendgrid_from_email": get("SENDGRID_FROM_EMAIL") or cls.sendgrid_from_email,
            "sendgrid_host": get("SENDGRID_HOST"),
            "sendgrid_webhook_public_key": get("SENDGRID_WEBHOOK_PUBLIC_KEY"),
            "sms_turns_in_flight": _positive_int(
                "PAYBOT_SMS_TURNS_IN_FLIGHT", get("PAYBOT_SMS_TURNS_IN_FLIGHT"), 8
            ),
        }
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if not (
            self.database_url.startswith("sqlite:///")
            or self.database_url.startswith("postgresql://")
            or self.database_url.startswith("postgres://")
        ):
            raise ConfigError("DATABASE_URL must be sqlite:///PATH or postgresql://...")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://")):
            raise ConfigError("REDIS_URL must be redis://... (or unset for in-process Redis)")
        if not self.public_base_url.startswith(("http://", "https://")):
            raise ConfigError("PUBLIC_BASE_URL must start with http:// or https://")

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
