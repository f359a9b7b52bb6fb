"""Messages that leave outside a conversation's reply: receipts, one-time codes, agreement text."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from jinja2 import Environment

from bot.models import Account
from bot.payments import STATUS_LABELS, PaymentOutcome
from bot.providers.email import EmailError, EmailSender
from bot.providers.sms import SmsError, SmsSender
from bot.rendering import build_environment

log = logging.getLogger(__name__)


class Notifier:
    def __init__(
        self, *, sms: SmsSender, email: EmailSender, brand: str, env: Environment | None = None
    ) -> None:
        self.sms = sms
        self.email = email
        self.brand = brand
        self.env = env or build_environment()

    def agreement_text(
        self,
        *,
        account: Account,
        amount_cents: int,
        pay_on: date | None,
        method_label: str,
        offer: Any,
        method_kind: str | None = None,
        fee_cents: int = 0,
        terms_version: str,
        brand: str,
    ) -> str:
        """The exact text the customer authorizes; its hash is kept with the agreement."""
        return (
            self.env.get_template("legal/payment_authorization.txt")
            .render(
                account=account,
                amount_cents=amount_cents,
                pay_on=pay_on,
                method_label=method_label,
                method_kind=method_kind,
                fee_cents=fee_cents,
                offer=offer,
                terms_version=terms_version,
                brand=brand,
            )
            .strip()
        )

    def receipt(self, account: Account, outcome: PaymentOutcome, *, brand: str) -> dict[str, Any]:
        context = {
            "account": account,
            "outcome": outcome,
            "brand": brand,
            "status_label": STATUS_LABELS.get(outcome.status, outcome.status),
        }
        return {
            "to": account.email,
            "subject": f"Your payment receipt {outcome.reference}",
            "text": self.env.get_template("email/receipt.txt").render(context),
            "html": self.env.get_template("email/receipt.html").render(context),
        }

    async def send_email(self, *, to: str, subject: str, text: str, html: str) -> None:
        try:
            await self.email.send(to=to, subject=subject, text=text, html=html)
        except EmailError:
            # The payment stands whatever the mailer says; the failure is logged, never the body.
            log.warning("email not sent (subject %r)", subject)

    async def send_code(self, account: Account, code: str, *, brand: str, by_sms: bool) -> None:
        """By text to the phone on file unless it opted out; else by email."""
        body = self.env.get_template("sms/verification_code.txt").render(brand=brand, code=code)
        body = " ".join(body.split())
        if by_sms and account.phone:
            try:
                await self.sms.send(to=account.phone, body=body)
                return
            except SmsError:
                log.warning("verification code SMS not sent; trying email")
        if account.email:
            await self.send_email(
                to=account.email,
                subject=f"{brand}: your verification code",
                text=body,
                html=f"<p>{body}</p>",
            )
