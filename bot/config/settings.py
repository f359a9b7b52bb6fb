"""Configuration: read once from the environment by the CLI, passed down explicitly.

Nothing here is read at import time; `Settings.from_env` takes the mapping to read.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

# Per-creditor flow settings live in their own module (checked when written, read key by key).
from bot.config.flow import FlowSettings

DEFAULT_DATA_DIR = Path("var")


class ConfigError(ValueError):
    pass


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


ProxyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(name: str, value: str | None) -> tuple[ProxyNetwork, ...]:
    """Comma-separated CIDRs (a bare address is its own /32 or /128). A network written with
    host bits set (10.0.0.1/8) is refused: it is more likely a typo than what was meant."""
    if value is None:
        return ()
    networks = []
    for part in value.split(","):
        try:
            networks.append(ipaddress.ip_network(part.strip()))
        except ValueError:
            raise ConfigError(
                f"{name}: {part.strip()!r} is not a network; write CIDRs separated by commas, "
                "such as 10.0.0.0/8,192.0.2.7"
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

    # Proxies whose X-Forwarded-For is believed (portal_fallback.sessions.client_ip); none by
    # default: a client may write anything in that header.
    trusted_proxies: tuple[ProxyNetwork, ...] = ()
    link_lifetime_hours: int = 72
    # Inbound SMS turns one web process works on at once; the rest wait their turn in order.
    # A few in flight keep the database busy; many only slow every one of them down.
    sms_turns_in_flight: int = 8
    flow: FlowSettings = field(default_factory=FlowSettings)

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
            "trusted_proxies": _networks(
                "PAYBOT_TRUSTED_PROXIES", get("PAYBOT_TRUSTED_PROXIES")
            ),
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
        problem = _base_url_problem(self.public_base_url)
        if problem:
            raise ConfigError(f"PUBLIC_BASE_URL {problem}")

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
