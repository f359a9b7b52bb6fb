"""What a deployment lacks: one review of the settings for `paybot check-config`, the refusal of
`serve` and `worker` in production and the warnings outside it.

Production is a PUBLIC_BASE_URL that starts with https://. There nothing may fall back: a missing
TWILIO_AUTH_TOKEN would accept forged webhooks, the development SECRET_KEY makes SSN hashes
brute-forceable and cookies forgeable, and a missing provider key would run a sandbox that marks
payments Paid. So every one of them is required, and each one missing is named.

A value is never shown, not even partly: the review only says whether a setting is there and
whether it has the form its provider gives it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.config.settings import ConfigError, Settings

MIN_SECRET_KEY_BYTES = 32
MIN_API_KEY_BYTES = 32  # e.g. secrets.token_urlsafe(32): 43 characters
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Item:
    name: str
    state: str  # "ok", "missing", "invalid", "optional" (unset, nothing depends on it) or "sandbox"
    why: str

    def line(self) -> str:
        return f"  {self.state:<8} {self.name}: {self.why}"


@dataclass(frozen=True)
class Review:
    production: bool
    items: tuple[Item, ...]

    @property
    def problems(self) -> tuple[Item, ...]:
        """What blocks a start in production: each missing or invalid setting."""
        if not self.production:
            return ()
        return tuple(item for item in self.items if item.state in ("missing", "invalid"))

    def refusal(self) -> str:
        """Why production cannot start: each missing or invalid setting on a line of its own."""
        return "\n".join([
            "refusing to run in production (PUBLIC_BASE_URL starts with https://) while these "
            "are missing or invalid:",
            *(item.line() for item in self.problems),
            "(paybot check-config shows every setting)",
        ])

    def warnings(self) -> list[str]:
        """Outside production: what runs open or on a sandbox, said at start-up."""
        if self.production:
            return []
        return [
            f"{item.name}: {item.why}"
            for item in self.items
            if item.name in ("SECRET_KEY", "TWILIO_AUTH_TOKEN") and item.state != "ok"
        ] + [f"{item.name}: {item.why}" for item in self.items if item.state == "sandbox"]

    def report(self) -> str:
        if self.production:
            head = "Production (PUBLIC_BASE_URL starts with https://): every setting is required."
        else:
            head = ("Not production (PUBLIC_BASE_URL does not start with https://): sandboxes "
                    "stand in for what is not configured. Never use this mode with real customers.")
        lines = [head, *(item.line() for item in self.items)]
        if self.problems:
            lines.append(f"{len(self.problems)} setting(s) to fix: "
                         + ", ".join(item.name for item in self.problems)
                         + ". paybot serve and paybot worker refuse to start until then.")
        elif self.production:
            lines.append("Everything production needs is set.")
        return "\n".join(lines)


def review(settings: Settings) -> Review:
    production = settings.production
    items: list[Item] = [Item("PUBLIC_BASE_URL", "ok", "an absolute URL"
                              + (" (https: production)" if production else ""))]
    items.append(_secret_key(settings))
    items.extend(_twilio(settings, production))
    items.extend(_stripe(settings, production))
    items.extend(_paypal(settings, production))
    items.extend(_sendgrid(settings, production))
    items.append(_api_keys(settings, production))
    items.extend(_agent_webhook(settings, production))
    items.append(_shutdown_grace(settings))
    return Review(production=production, items=tuple(items))


def _agent_webhook(settings: Settings, production: bool) -> list[Item]:
    """Events about customers leave for another desk: signed, and over https in production."""
    if not settings.agent_webhook_url:
        return [Item("PAYBOT_AGENT_WEBHOOK_URL", "optional",
                     "not set: no agents' webhook events are queued or sent")]
    items = _https_override("PAYBOT_AGENT_WEBHOOK_URL", settings.agent_webhook_url, production)
    if not settings.agent_webhook_secret:
        items.append(Item("PAYBOT_AGENT_WEBHOOK_SECRET", "missing" if production else "optional",
                          "not set: agents' webhook events go unsigned (the receiver cannot "
                          "tell them from forgeries)"))
    elif len(settings.agent_webhook_secret.encode()) < 16:
        items.append(Item("PAYBOT_AGENT_WEBHOOK_SECRET", "invalid", "shorter than 16 bytes"))
    else:
        items.append(Item("PAYBOT_AGENT_WEBHOOK_SECRET", "ok", "set"))
    return items


def _shutdown_grace(settings: Settings) -> Item:
    """Not a secret: how long a stopping process finishes what is in flight."""
    seconds = settings.shutdown_grace_seconds
    return Item("PAYBOT_SHUTDOWN_GRACE_SECONDS", "ok",
                f"{seconds} s to finish requests and charges in flight on SIGTERM"
                + ("" if settings.is_default("shutdown_grace_seconds") else " (set)"))


def require_production_ready(settings: Settings) -> None:
    """Raise ConfigError naming every missing or invalid setting, in production only."""
    found = review(settings)
    if found.problems:
        raise ConfigError(found.refusal())


def _secret_key(settings: Settings) -> Item:
    if settings.is_default("secret_key"):
        return Item("SECRET_KEY", "missing",
                    "not set: the known development key is in use, so SSN hashes can be "
                    f"brute-forced and cookies and sealed emails forged; set {MIN_SECRET_KEY_BYTES}"
                    " or more random bytes")
    size = len(settings.secret_key.encode("utf-8"))
    if size < MIN_SECRET_KEY_BYTES:
        return Item("SECRET_KEY", "invalid",
                    f"{size} bytes long; at least {MIN_SECRET_KEY_BYTES} are needed")
    return Item("SECRET_KEY", "ok", f"set, at least {MIN_SECRET_KEY_BYTES} bytes")


def _api_keys(settings: Settings, production: bool) -> Item:
    """One key, or during a rotation several (comma-separated, the current one first): each one
    long enough not to be guessed."""
    name, keys = "PAYBOT_API_KEY", settings.api_keys
    if not settings.api_key:
        return Item(name, "missing" if production else "optional",
                    "the REST API's bearer key; without it the API answers nothing")
    if not keys:
        return Item(name, "invalid", "no key in it, only commas or spaces")
    short = [(n, len(key.encode("utf-8"))) for n, key in enumerate(keys, start=1)
             if len(key.encode("utf-8")) < MIN_API_KEY_BYTES]
    if short:
        return Item(name, "invalid", "; ".join(
            f"key {n} of {len(keys)} is {size} bytes long" for n, size in short
        ) + f"; at least {MIN_API_KEY_BYTES} are needed")
    if len(keys) > 1:
        return Item(name, "ok", f"{len(keys)} keys, each at least {MIN_API_KEY_BYTES} bytes: the "
                    "first is the current one; remove the others once every client uses it")
    return Item(name, "ok", f"set, at least {MIN_API_KEY_BYTES} bytes")


def _required(name: str, value: str | None, production: bool, *, purpose: str,
              prefix: str | tuple[str, ...] | None = None, form: str = "") -> Item:
    if not value:
        return Item(name, "missing" if production else "optional", f"not set: {purpose}")
    if prefix is not None and not value.startswith(prefix):
        return Item(name, "invalid", f"not {form}")
    return Item(name, "ok", "set")


def _https_override(name: str, value: str | None, production: bool) -> list[Item]:
    """STRIPE_API_BASE and the like point tests and the demo at local fakes: in production such
    an address would be a sandbox by another name."""
    if value is None:
        return []
    if production and urlsplit(value).scheme != "https":
        return [Item(name, "invalid", "production talks to the provider over https:// only")]
    return [Item(name, "ok", "set")]


def _twilio(settings: Settings, production: bool) -> list[Item]:
    items = [
        _required("TWILIO_AUTH_TOKEN", settings.twilio_auth_token, production,
                  purpose="inbound Twilio webhooks are accepted unsigned (anyone can text as any "
                          "number or fake a status callback)"),
        _required("TWILIO_ACCOUNT_SID", settings.twilio_account_sid, production,
                  purpose="texts are not sent", prefix="AC", form="a Twilio account SID (AC...)"),
    ]
    sender = "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"
    if settings.twilio_messaging_service_sid:
        items.append(
            Item(sender, "ok", "a messaging service is set")
            if settings.twilio_messaging_service_sid.startswith("MG")
            else Item(sender, "invalid",
                      "TWILIO_MESSAGING_SERVICE_SID is not a service SID (MG...)")
        )
    elif settings.twilio_from_number:
        items.append(
            Item(sender, "ok", "a sending number is set")
            if _E164.match(settings.twilio_from_number)
            else Item(sender, "invalid", "TWILIO_FROM_NUMBER is not an E.164 number (+1...)")
        )
    else:
        items.append(Item(sender, "missing" if production else "optional",
                          "not set: texts have no sender"))
    items.extend(_https_override("TWILIO_API_BASE", settings.twilio_api_base, production))
    if not production and not settings.twilio_configured:
        items.append(Item("SMS", "sandbox", f"texts are written to {settings.outbox_dir}/sms.jsonl,"
                                            " never sent"))
    return items


def _stripe(settings: Settings, production: bool) -> list[Item]:
    items = [
        _required("STRIPE_SECRET_KEY", settings.stripe_secret_key, production,
                  purpose="no payment processor", prefix=("sk_", "rk_"),
                  form="a Stripe secret or restricted key (sk_... or rk_...)"),
        _required("STRIPE_PUBLISHABLE_KEY", settings.stripe_publishable_key, production,
                  purpose="Stripe.js cannot take a card or bank account on the web",
                  prefix="pk_", form="a Stripe publishable key (pk_...)"),
        _required("STRIPE_WEBHOOK_SECRET", settings.stripe_webhook_secret, production,
                  purpose="Stripe events are refused, so bank payments never settle",
                  prefix="whsec_", form="a webhook signing secret (whsec_...)"),
    ]
    items.extend(_https_override("STRIPE_API_BASE", settings.stripe_api_base, production))
    if production or not settings.is_default("stripe_js_url"):
        items.extend(_https_override("STRIPE_JS_URL", settings.stripe_js_url, production))
    if not production and not settings.stripe_configured:
        items.append(Item("payments", "sandbox", "in memory with test methods: a payment is "
                                                 "marked Paid and no money moves"))
    return items


def _paypal(settings: Settings, production: bool) -> list[Item]:
    """PayPal is optional: without PAYPAL_CLIENT_ID no creditor is offered it in production (a
    sandbox stands in elsewhere). Once the client id is set, what it needs is required too."""
    if not settings.paypal_client_id:
        if production:
            return [Item("PAYPAL_CLIENT_ID", "optional", "not set: PayPal is not offered")]
        return [Item("PayPal", "sandbox", "in memory: a PayPal payment is marked Paid and no "
                                          "money moves")]
    wanted = production  # the client id says PayPal is meant to run: the rest must be there
    items = [
        Item("PAYPAL_CLIENT_ID", "ok", "set"),
        _required("PAYPAL_CLIENT_SECRET", settings.paypal_client_secret, wanted,
                  purpose="PayPal cannot be called"),
        _required("PAYPAL_WEBHOOK_ID", settings.paypal_webhook_id, wanted,
                  purpose="PayPal events are refused (their signature names the webhook id)"),
    ]
    items.extend(_https_override("PAYPAL_BASE_URL", settings.paypal_base_url, production))
    return items


def _sendgrid(settings: Settings, production: bool) -> list[Item]:
    items = [
        _required("SENDGRID_API_KEY", settings.sendgrid_api_key, production,
                  purpose="emails (receipts, codes, agreements) are not sent",
                  prefix="SG.", form="a SendGrid API key (SG....)"),
    ]
    sender = settings.sendgrid_from_email
    if settings.is_default("sendgrid_from_email"):
        items.append(Item("SENDGRID_FROM_EMAIL", "missing" if production else "optional",
                          "not set: emails would come from a placeholder address"))
    elif not _EMAIL.match(sender):
        items.append(Item("SENDGRID_FROM_EMAIL", "invalid", "not an email address"))
    else:
        items.append(Item("SENDGRID_FROM_EMAIL", "ok", "set"))
    items.extend(_https_override("SENDGRID_HOST", settings.sendgrid_host, production))
    if not settings.sendgrid_webhook_public_key:
        items.append(Item("SENDGRID_WEBHOOK_PUBLIC_KEY", "optional",
                          "not set: /webhooks/sendgrid refuses events, so unsubscribes and "
                          "bounces there are not recorded"))
    else:
        items.append(Item("SENDGRID_WEBHOOK_PUBLIC_KEY", "ok", "set"))
    if not production and not settings.sendgrid_configured:
        items.append(Item("email", "sandbox", f"emails are written to {settings.outbox_dir}/email/,"
                                              " never sent"))
    return items
