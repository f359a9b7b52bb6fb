"""Messages that leave outside a conversation's reply: receipts, one-time codes, agreement text."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from jinja2 import Environment

from bot.ledger.models import Account
from bot.outreach.compliance import zone_or_none
from bot.outreach.email_texts import (
    DEFAULT_ZONE,
    account_label,
    disclosure_words,
    method_words,
    render_email,
)
from bot.payments.service import PaymentOutcome
from bot.providers.email import Attachment, EmailError, EmailSender
from bot.providers.sms import SmsError, SmsSender
from bot.text import i18n
from bot.text.gsm7 import to_gsm7
from bot.text.rendering import build_environment

if TYPE_CHECKING:
    from bot.ledger.db import Database

log = logging.getLogger(__name__)

# Whether an address opted out of email (the ledger's email_opt_outs, fed by SendGrid's events).
EmailOptOutLookup = Callable[[str], Awaitable[bool]]


def ledger_email_opt_outs(database: Database) -> EmailOptOutLookup:
    """The lookup a ``Notifier`` needs, on a session of its own (the caller's may be closed)."""
    from bot.ledger import queries as ledger

    async def opted_out(address: str) -> bool:
        async with database.session() as session:
            return await ledger.is_email_opted_out(session, address)

    return opted_out


@dataclass(frozen=True)
class Dispatch:
    status: str  # sent | opted_out | failed
    message_id: str | None = None  # the provider's, when sent

    def __bool__(self) -> bool:
        return self.status == "sent"


class Notifier:
    def __init__(
        self,
        *,
        sms: SmsSender,
        email: EmailSender,
        brand: str,
        env: Environment | None = None,
        email_opted_out: EmailOptOutLookup | None = None,
    ) -> None:
        """``email_opted_out`` (e.g. ``ledger_email_opt_outs(database)``): without it no address
        counts as opted out, and every email goes."""
        self.sms = sms
        self.email = email
        self.brand = brand
        self.env = env or build_environment()
        self.email_opted_out = email_opted_out

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
        """The exact text the customer authorizes, in the language of the moment (the caller's
        ``i18n.using``); its hash is kept with the agreement."""
        return (
            self.env.get_template("legal/payment_authorization.txt")
            .render(
                account=account,
                amount_cents=amount_cents,
                pay_on=pay_on,
                method_label=method_words(method_label),
                method_kind=method_kind,
                fee_cents=fee_cents,
                offer=offer,
                terms_version=terms_version,
                brand=brand,
            )
            .strip()
        )

    def receipt(
        self, account: Account, outcome: PaymentOutcome, *, brand: str, at: datetime,
        disclosure: str | None = None,
    ) -> dict[str, Any]:
        """The receipt of a paid, pending or scheduled payment, in the account's language: what
        was paid (or will be, and when), with what, on which day, what is left to pay, the
        reference and the creditor's debt-collector disclosure (else the default). ``at``: when
        it was recorded (the day of a payment made now, in the customer's zone)."""
        zone = zone_or_none(account.timezone) or DEFAULT_ZONE
        if outcome.status == "paid":
            left = account.balance_cents  # the balance is lowered with the payment
        elif outcome.settles:
            left = 0
        else:
            left = max(0, account.balance_cents - outcome.amount_cents)
        with i18n.using(account.language):
            context = {
                "brand": brand,
                "account": account,
                "account_label": account_label(account),
                "reference": outcome.reference,
                "status": outcome.status,
                "amount_cents": outcome.amount_cents,
                "fee_cents": outcome.fee_cents,
                "total_cents": outcome.amount_cents + outcome.fee_cents,
                "method_label": method_words(outcome.method_label),
                "day": outcome.pay_on or at.astimezone(zone).date(),
                "remaining_cents": left,
                "settles": outcome.settles,
                "installments": outcome.installments,
                "disclosure": disclosure_words(disclosure),
            }
        return {
            "to": account.email,
            **render_email(self.env, "receipt", context, language=account.language),
            "transactional": True,  # the record of a payment goes even after an unsubscribe
        }

    async def send_email(
        self,
        *,
        to: str,
        subject: str,
        text: str,
        html: str,
        transactional: bool = False,
        attachments: tuple[Attachment, ...] = (),
        from_name: str | None = None,
    ) -> Dispatch:
        """Send, or say why not (``opted_out``, ``failed``); never raises for the mailer. The
        answer is true when the mailer took the email.

        An email that is not ``transactional`` (a campaign, a reminder, anything the customer
        did not ask for) is not sent to an address that opted out of email; a receipt, a
        one-time code or a copy of a signed agreement is (``transactional=True``). When the
        opt-out cannot be looked up, a non-transactional email is held back. ``from_name``:
        the creditor's shown name, the sender the customer knows (else the mailer's own)."""
        if not transactional and await self._opted_out(to):
            log.info("email not sent: the recipient opted out of email (subject %r)", subject)
            return Dispatch("opted_out")
        try:
            extra: dict[str, Any] = {}
            if attachments:
                extra["attachments"] = attachments
            if from_name:
                extra["from_name"] = from_name
            sent = await self.email.send(to=to, subject=subject, text=text, html=html, **extra)
        except EmailError:
            # The payment stands whatever the mailer says; the failure is logged, never the body.
            log.warning("email not sent (subject %r)", subject)
            return Dispatch("failed")
        return Dispatch("sent", sent.message_id)

    async def _opted_out(self, address: str) -> bool:
        if self.email_opted_out is None:
            return False
        try:
            return await self.email_opted_out(address)
        except Exception:
            log.warning("email opt-outs could not be read: the email is held back", exc_info=True)
            return True

    async def send_code(self, account: Account, code: str, *, brand: str, by_sms: bool) -> None:
        """By text to the phone on file unless it opted out; else by email. In the account's
        language (it is sent after the turn, outside its language)."""
        with i18n.using(account.language):
            await self._send_code(account, code, brand=brand, by_sms=by_sms)

    async def _send_code(self, account: Account, code: str, *, brand: str, by_sms: bool) -> None:
        context = {"brand": brand, "code": code}
        body = to_gsm7(
            " ".join(self.env.get_template("sms/verification_code.txt").render(context).split())
        )
        if by_sms and account.phone:
            try:
                await self.sms.send(to=account.phone, body=body)
                return
            except SmsError:
                log.warning("verification code SMS not sent; trying email")
        if account.email:
            with i18n.using(account.language):
                subject = " ".join(self.env.get_template("email/verification_code_subject.txt")
                                   .render(context).split())
                html = self.env.get_template("email/verification_code.html").render(context)
            await self.send_email(
                to=account.email,
                subject=subject,
                text=body,
                html=html.strip(),
                transactional=True,  # asked for, this minute, by the customer
                from_name=brand,
            )
