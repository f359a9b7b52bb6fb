"""The outside services behind small interfaces: the only code that talks to Twilio (sms),
Stripe (payments, stripe_gateway), PayPal (paypal_gateway) and SendGrid (email), each with a
sandbox that needs no network; built here from the settings. ``Providers.charging`` is the one
gateway payments go through (routing.py: PayPal's methods to PayPal, the rest to Stripe).

May import: bot.config, bot.text (GSM-7). Nothing else in bot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.config.check import require_production_ready
from bot.config.settings import Settings
from bot.providers.email import EmailSender, SandboxEmail, SendGridEmail
from bot.providers.payments import PaymentGateway
from bot.providers.paypal_gateway import PayPalGateway
from bot.providers.paypal_sandbox import SandboxPayPal
from bot.providers.routing import MethodRouter
from bot.providers.sandbox_gateway import SandboxGateway
from bot.providers.sms import SandboxSms, SmsSender, TwilioSms
from bot.providers.stripe_gateway import StripeGateway


@dataclass
class Providers:
    sms: SmsSender
    email: EmailSender
    payments: PaymentGateway
    # None: PayPal is not offered (production without PAYPAL_CLIENT_ID).
    paypal: PaymentGateway | None = None
    _router: MethodRouter | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def charging(self) -> MethodRouter:
        """The gateway every payment is charged through: each method to its own processor."""
        if self._router is None:
            self._router = MethodRouter(self)
        return self._router

    async def close(self) -> None:
        for provider in (self.sms, self.email, self.payments, self.paypal):
            if provider is not None:
                await provider.close()


def build_providers(settings: Settings, *, processor_timeout: float = 30.0) -> Providers:
    """Real providers where credentials are complete; a sandbox (no network) otherwise, but
    never in production: there a missing credential is a ConfigError that names it.

    `processor_timeout`: how long a charge may take before its outcome counts as unknown (the
    worker asks again with the same idempotency key). The web processes pass less than Twilio's
    15 s, so a turn that charges still answers before Twilio gives up on it."""
    require_production_ready(settings)
    if settings.twilio_configured:
        sms: SmsSender = TwilioSms(
            account_sid=settings.twilio_account_sid or "",
            auth_token=settings.twilio_auth_token or "",
            from_number=settings.twilio_from_number,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            api_base=settings.twilio_api_base,
        )
    else:
        sms = SandboxSms(settings.outbox_dir / "sms.jsonl")
    if settings.sendgrid_configured:
        email: EmailSender = SendGridEmail(
            api_key=settings.sendgrid_api_key or "",
            from_email=settings.sendgrid_from_email,
            from_name=settings.brand,
            host=settings.sendgrid_host,
        )
    else:
        email = SandboxEmail(
            settings.outbox_dir / "email",
            from_email=settings.sendgrid_from_email,
            from_name=settings.brand,
        )
    if settings.stripe_configured:
        payments: PaymentGateway = StripeGateway(
            settings.stripe_secret_key or "", api_base=settings.stripe_api_base,
            timeout=processor_timeout,
        )
    else:
        payments = SandboxGateway()
    paypal: PaymentGateway | None = None
    if settings.paypal_configured:
        paypal = PayPalGateway(
            settings.paypal_client_id or "",
            settings.paypal_client_secret or "",
            base_url=settings.paypal_base_url,
            live=settings.production,
            return_url=f"{settings.public_base_url}/portal/",
        )
    elif not settings.production:
        paypal = SandboxPayPal()
    return Providers(sms=sms, email=email, payments=payments, paypal=paypal)
