"""The notice a customer gets when a payment is declined, and the personal link in it to change
the method: one wording and one link rule for the Stripe webhook and the worker.

May import: bot.ledger, bot.payments (the outcome and its labels), bot.providers.payments (the
polite decline wording), bot.outreach.notifications.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger import queries as ledger
from bot.ledger.models import Account
from bot.outreach.email_texts import account_label, disclosure_words, method_words, render_email
from bot.outreach.notifications import Notifier
from bot.payments.service import PaymentOutcome
from bot.providers.payments import polite_decline_message
from bot.text import i18n
from bot.text.i18n import N_

UPDATE_METHOD_LINK_LIFETIME = timedelta(days=7)
NOT_RETRIED = N_("We will not try this payment again automatically.")


@dataclass(frozen=True)
class Notice:
    """An email to send once the transaction is committed."""

    kind: str  # "receipt" | "decline"
    account: Account
    outcome: PaymentOutcome
    creditor_name: str | None = None  # the brand the customer knows; else settings.brand
    disclosure: str = ""
    update_url: str | None = None  # decline: the personalized link to update the method


async def update_method_link(
    session: AsyncSession,
    *,
    account: Account,
    at: datetime,
    public_base_url: str,
    retry_on: date | None = None,
) -> str:
    """Mint the decline notice's link (the caller commits): a week, or through the day of the
    retry when that is later, so the customer can still switch before the retry is charged."""
    lifetime = UPDATE_METHOD_LINK_LIFETIME
    if retry_on is not None:
        try:
            zone = ZoneInfo(account.timezone or "America/New_York")
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("America/New_York")
        end_of_retry_day = datetime.combine(retry_on + timedelta(days=1), time(), tzinfo=zone)
        lifetime = max(lifetime, end_of_retry_day - at)
    token = await ledger.create_link(
        session, account_id=account.id, at=at, lifetime=lifetime, purpose="update_method"
    )
    return f"{public_base_url}/p/{token}"


def decline_email(notifier: Notifier, notice: Notice, *, brand: str) -> dict[str, Any]:
    """The decline notice, built like ``Notifier.receipt`` (to, subject, text, html), in the
    account's language, with the creditor's disclosure (else the default: FDCPA 807(11))."""
    account = notice.account
    with i18n.using(account.language):
        context = {
            "account": account,
            "account_label": account_label(account),
            "brand": brand,
            "reference": notice.outcome.reference,
            "amount_cents": notice.outcome.amount_cents,
            "method_label": method_words(notice.outcome.method_label),
            # The processor's wording is English; a marked one reads in the customer's language.
            "reason": i18n.gettext(notice.outcome.failure_message or polite_decline_message(None)),
            "disclosure": disclosure_words(notice.disclosure),
            "update_url": notice.update_url,
        }
    return {
        "to": account.email,
        **render_email(notifier.env, "decline", context, language=account.language),
        # About a payment the customer authorized: it goes even after a marketing unsubscribe.
        "transactional": True,
    }
