"""What the harness hands to the seed, the simulated customers and the invariant checks: where
every part of the running system is, and what the peers recorded.

Imports only the standard library and tests.fakes (typing only)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tests.fakes.sendgrid_api import SendGridFake
    from tests.fakes.twilio_api import TwilioFake

# PUBLIC_BASE_URL of every web process: links in texts start with it; a customer opening one
# swaps it for the address of a live web process (the load balancer's job in production).
PUBLIC_BASE_URL = "http://paybot.chaos"
TWILIO_AUTH_TOKEN = "chaos-twilio-auth-token"
SECRET_KEY = "chaos-secret-key"
STRIPE_KEY = "sk_test_paybot"
STRIPE_WEBHOOK_SECRET = "whsec_chaos"
TO_NUMBER = "+15005550006"
# Twilio gives up on a webhook after 15 s and (when asked to) sends it again.
TWILIO_TIMEOUT_SECONDS = 15.0


@dataclass
class ChargeRecord:
    """A PaymentIntent localstripe created, as the fault proxy saw it go through."""

    idempotency_key: str
    intent_id: str
    status: str  # as localstripe answered: succeeded, processing, requires_payment_method...
    amount_cents: int
    customer: str
    # The proxy answered the caller with this HTTP status (0: the caller was left hanging or
    # cut off, so PayBot does not know the outcome and must find it again with the same key).
    answered: int


class WebFleet(Protocol):
    def live_urls(self) -> list[str]:
        """Base URLs ("http://127.0.0.1:PORT") of the web processes running now (may be none
        for a moment while one restarts); a request to one may still fail: it may die mid-way."""
        ...


@dataclass
class Stage:
    database_url: str  # PayBot's database (the harness's own PostgreSQL); read-only for checks
    redis_url: str
    web: WebFleet
    localstripe_url: str  # localstripe itself, no faults: for seeding and the final checks
    stripe_api_url: str  # the fault proxy PayBot talks to
    twilio: TwilioFake  # every text PayBot sent (outbound API), in `messages`
    sendgrid: SendGridFake  # every email accepted, in `messages` (bodies; `requests` all tries)
    charges: list[ChargeRecord] = field(default_factory=list)  # filled by the proxy
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def pick_web(self) -> str | None:
        urls = self.web.live_urls()
        return self.rng.choice(urls) if urls else None


def signed_sms(phone: str, body: str, sid: str) -> tuple[dict[str, str], dict[str, str]]:
    """The form Twilio posts for an inbound text, and its X-Twilio-Signature made by the SDK's
    own RequestValidator over PUBLIC_BASE_URL + path (what PayBot checks)."""
    from twilio.request_validator import RequestValidator

    form = {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "c" * 32,
        "From": phone,
        "To": TO_NUMBER,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(
        PUBLIC_BASE_URL + SMS_PATH, form)
    return form, {"X-Twilio-Signature": signature}


SMS_PATH = "/webhooks/twilio/sms"
