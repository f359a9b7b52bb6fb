"""Configuration from the environment: each key's variable, type, default and check declared once,
on a field of `Settings` (pydantic v2); read once by the CLI and passed down explicitly.

Nothing here is read at import time; `Settings.from_env` takes the mapping to read. Every error is
a `ConfigError` that names the environment variable, however the settings were made.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

# Per-creditor flow settings live in their own module (checked when written, read key by key).
from bot.config.flow import FlowSettings

__all__ = ["ConfigError", "FlowSettings", "ProxyNetwork", "Settings"]

DEFAULT_DATA_DIR = Path("var")
# PayPal's own API hosts (live and sandbox): a base URL elsewhere is a stand-in.
PAYPAL_API_HOSTS = frozenset({"api-m.paypal.com", "api-m.sandbox.paypal.com",
                              "api.paypal.com", "api.sandbox.paypal.com"})
LOG_FORMATS = ("console", "json")
ProxyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    pass


def _env(key: str, default: Any = None, **field: Any) -> Any:
    """A setting read from the environment variable `key` (unset or empty: the default)."""
    if "default_factory" not in field:
        field["default"] = default
    return Field(validation_alias=key, **field)


def _key(info: ValidationInfo) -> str:
    """The environment variable of the field being checked: what an error names."""
    name = info.field_name or "settings"
    return _FIELD_KEYS.get(name, name)


def _flag(value: Any) -> Any:
    # Anything but a word for yes is no: the switches default to the safe side when misspelt.
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return value


def _at_least_1(value: Any, info: ValidationInfo) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ConfigError(f"{_key(info)} must be a whole number of at least 1")
    return number


def _networks(value: Any, info: ValidationInfo) -> Any:
    """Comma-separated CIDRs (a bare address is its own /32 or /128). A network written with
    host bits set (10.0.0.1/8) is refused: it is more likely a typo than what was meant."""
    if not isinstance(value, str):
        return value
    networks = []
    for part in value.split(","):
        try:
            networks.append(ipaddress.ip_network(part.strip()))
        except ValueError:
            raise ConfigError(
                f"{_key(info)}: {part.strip()!r} is not a network; write CIDRs separated by "
                "commas, such as 10.0.0.0/8,192.0.2.7"
            ) from None
    return tuple(networks)


def _base_url_problem(url: str) -> str | None:
    """Why this is not an absolute http(s) address that links and Twilio's signed URLs can be
    built on (PUBLIC_BASE_URL + path), or None. Its value is not secret: it may be named."""
    if not url.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError:
        return "is not a valid URL"
    if not parts.hostname:
        return "must name a host, e.g. https://pay.example.com"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not have a query or fragment: paths are appended to it"
    return None


def _sqlite_in(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'paybot.sqlite3'}"


Flag = Annotated[bool, BeforeValidator(_flag)]
AtLeast1 = Annotated[int, BeforeValidator(_at_least_1)]
Networks = Annotated[tuple[ProxyNetwork, ...], BeforeValidator(_networks)]


class Settings(BaseModel):
    """The deployment's settings. Made from the environment (`from_env`), or directly by name
    (tests, benchmarks); either way every value is checked and a bad one named by its variable."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )

    data_dir: Path = _env("PAYBOT_DATA_DIR", DEFAULT_DATA_DIR)
    database_url: str = _env(  # by default a SQLite file in the data directory
        "DATABASE_URL", default_factory=lambda given: _sqlite_in(given["data_dir"])
    )
    redis_url: str | None = _env("REDIS_URL")  # None: an in-process Redis (fakeredis)
    public_base_url: str = _env("PUBLIC_BASE_URL", "http://127.0.0.1:8080")
    secret_key: str = _env("SECRET_KEY", "insecure-development-key")
    api_key: str | None = _env("PAYBOT_API_KEY")
    brand: str = _env("PAYBOT_BRAND", "PayBot")
    support_contact: str = _env("PAYBOT_SUPPORT_CONTACT", "support@paybot.example")
    migrate_on_start: Flag = _env("PAYBOT_MIGRATE_ON_START", True)

    twilio_account_sid: str | None = _env("TWILIO_ACCOUNT_SID")
    twilio_auth_token: str | None = _env("TWILIO_AUTH_TOKEN")
    twilio_from_number: str | None = _env("TWILIO_FROM_NUMBER")
    twilio_messaging_service_sid: str | None = _env("TWILIO_MESSAGING_SERVICE_SID")
    twilio_api_base: str | None = _env("TWILIO_API_BASE")

    stripe_secret_key: str | None = _env("STRIPE_SECRET_KEY")
    stripe_publishable_key: str | None = _env("STRIPE_PUBLISHABLE_KEY")
    stripe_webhook_secret: str | None = _env("STRIPE_WEBHOOK_SECRET")
    stripe_api_base: str | None = _env("STRIPE_API_BASE")
    stripe_js_url: str = _env("STRIPE_JS_URL", "https://js.stripe.com/v3/")

    # PayPal (bot/providers/paypal_gateway.py). PAYPAL_BASE_URL unset: PayPal's live API in
    # production, its sandbox otherwise; set: that address (a local fake in tests).
    paypal_client_id: str | None = _env("PAYPAL_CLIENT_ID")
    paypal_client_secret: str | None = _env("PAYPAL_CLIENT_SECRET")
    paypal_webhook_id: str | None = _env("PAYPAL_WEBHOOK_ID")
    paypal_base_url: str | None = _env("PAYPAL_BASE_URL")

    sendgrid_api_key: str | None = _env("SENDGRID_API_KEY")
    sendgrid_from_email: str = _env("SENDGRID_FROM_EMAIL", "receipts@paybot.example")
    sendgrid_host: str | None = _env("SENDGRID_HOST")
    # The Event Webhook's verification key as SendGrid shows it (base64 DER, or the same in PEM
    # armour); webhooks/sendgrid.py reads either. Unset: POST /webhooks/sendgrid refuses (400).
    sendgrid_webhook_public_key: str | None = _env("SENDGRID_WEBHOOK_PUBLIC_KEY")

    # The agents' own desk (Flex, Zendesk, Chatwoot...): needs_agent, customer_message and
    # resolved are POSTed there, signed with the secret (bot/inbox/agent_webhook.py). Unset: no
    # event is queued at all.
    agent_webhook_url: str | None = _env("PAYBOT_AGENT_WEBHOOK_URL")
    agent_webhook_secret: str | None = _env("PAYBOT_AGENT_WEBHOOK_SECRET")

    # Proxies whose X-Forwarded-For is believed (portal_fallback.sessions.client_ip); none by
    # default: a client may write anything in that header.
    trusted_proxies: Networks = _env("PAYBOT_TRUSTED_PROXIES", ())
    # GET /metrics answers the loopback address, and anyone presenting this bearer token
    # (bot/operations/scrape.py); unset: the loopback address only.
    metrics_token: str | None = _env("PAYBOT_METRICS_TOKEN")
    # Inbound SMS turns one web process works on at once; the rest wait their turn in order.
    # A few in flight keep the database busy; many only slow every one of them down.
    sms_turns_in_flight: AtLeast1 = _env("PAYBOT_SMS_TURNS_IN_FLIGHT", 8)
    # A console session (agent_console) ends after this many minutes without a request.
    staff_idle_minutes: AtLeast1 = _env("PAYBOT_STAFF_IDLE_MINUTES", 30)
    # On SIGTERM, `paybot serve` and `paybot worker` finish what is in flight for at most this
    # many seconds, then stop (docs/operations.md); keep it under the supervisor's stop timeout.
    shutdown_grace_seconds: AtLeast1 = _env("PAYBOT_SHUTDOWN_GRACE_SECONDS", 20)
    # Logs (bot/logs.py): readable lines by default, one JSON object a line with `json`;
    # aiohttp's access line per request only when asked for.
    log_format: str = _env("PAYBOT_LOG_FORMAT", "console")
    access_log: Flag = _env("PAYBOT_ACCESS_LOG", False)

    # Not from the environment.
    link_lifetime_hours: int = 72
    flow: FlowSettings = Field(default_factory=FlowSettings)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise ConfigError(_described(error)) from None

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str, info: ValidationInfo) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ConfigError(f"{_key(info)} must be sqlite:///PATH or postgresql://...")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://")):
            raise ConfigError(f"{_key(info)} must be redis://... (or unset for in-process Redis)")
        return value

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str, info: ValidationInfo) -> str:
        if value.strip().lower() not in LOG_FORMATS:
            raise ConfigError(f"{_key(info)} must be json or console")
        return value.strip().lower()

    @field_validator("agent_webhook_url")
    @classmethod
    def _agent_webhook_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ConfigError(f"{_key(info)} must be an http:// or https:// URL (or unset)")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _public_base_url(cls, value: str, info: ValidationInfo) -> str:
        value = value.rstrip("/")  # paths are appended to it
        problem = _base_url_problem(value)
        if problem:
            raise ConfigError(f"{_key(info)} {problem}")
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """The settings the environment `env` gives: each variable that is set and not empty."""
        given = {key: env[key] for key in _ENV_KEYS if env.get(key) not in (None, "")}
        return cls(**given)

    def validate(self) -> None:  # type: ignore[override]
        """Raise ConfigError naming a bad value (making the settings has already checked them:
        kept for callers that check explicitly)."""
        self.replace()

    def replace(self, **changes: object) -> Settings:
        """These settings with some values changed, checked as when they were made."""
        return type(self)(**{**dict(self), **changes})

    def is_default(self, name: str) -> bool:
        """Whether setting `name` was left at its declared default (e.g. the development key)."""
        return getattr(self, name) == type(self).model_fields[name].default

    @property
    def api_keys(self) -> tuple[str, ...]:
        """PAYBOT_API_KEY's keys (comma-separated), the current one first. During a rotation the
        new key is put first and the old one kept after it until every client has moved over,
        so none is refused meanwhile (docs/operations.md)."""
        parts = (part.strip() for part in (self.api_key or "").split(","))
        return tuple(part for part in parts if part)

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def production(self) -> bool:
        """A public https address is production: there every secret and provider credential is
        required and no sandbox runs (bot/config/check.py)."""
        return self.public_base_url.startswith("https://")

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
    def paypal_configured(self) -> bool:
        return bool(self.paypal_client_id and self.paypal_client_secret)

    @property
    def paypal_js_url(self) -> str:
        """Where the portal loads PayPal's JS SDK from: PayPal's own with real credentials, the
        local fake's stand-in beside a fake API, our sandbox stand-in without credentials."""
        if not self.paypal_configured:
            return "/static/paypal_standin.js"
        base = (self.paypal_base_url or "").rstrip("/")
        if not base or urlsplit(base).hostname in PAYPAL_API_HOSTS:
            return "https://www.paypal.com/sdk/js"
        return f"{base}/sdk/js"

    @property
    def sendgrid_configured(self) -> bool:
        return bool(self.sendgrid_api_key)


# The environment variables Settings reads, in the order its fields declare them.
_ENV_KEYS = tuple(
    field.validation_alias
    for field in Settings.model_fields.values()
    if isinstance(field.validation_alias, str)
)
_FIELD_KEYS = {
    name: field.validation_alias
    for name, field in Settings.model_fields.items()
    if isinstance(field.validation_alias, str)
}


def _described(error: ValidationError) -> str:
    """Each problem, naming the environment variable (the field's name where it has none)."""
    problems = []
    for item in error.errors():
        if item["type"] == "default_factory_not_called":
            continue  # a default made from another setting that is itself named as bad
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError):
            problems.append(str(cause))
            continue
        name = str(item["loc"][0]) if item["loc"] else "settings"
        problems.append(f"{_FIELD_KEYS.get(name, name)}: {item['msg']}")
    return "; ".join(problems)
