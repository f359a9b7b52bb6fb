"""Adding a payment method on any portal page: the sandbox's test methods, or Stripe.js entry
(a card SetupIntent, and a us_bank_account one where the creditor takes bank debits and the
processor offers them). The templates are _card_entry.html and _bank_entry.html."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from bot import appkeys
from bot.accounts import ensure_processor_customer
from bot.models import Account
from bot.providers.payments import PaymentError, SandboxGateway

log = logging.getLogger(__name__)

# Test methods the sandbox gateway knows, offered only when no real processor is configured.
SANDBOX_METHODS = [
    ("pm_card_visa", "Test Visa ending 4242"),
    ("pm_card_chargeCustomerFail", "Test Visa ending 0341 (declines)"),
    ("pm_usBankAccount", "Test bank account ending 6789 (settles later)"),
]


async def method_entry_context(
    request: web.Request, db: AsyncSession, account: Account
) -> dict[str, Any]:
    """What the add-a-method forms need (commits the processor's customer id if new)."""
    settings = request.config_dict[appkeys.SETTINGS]
    gateway = request.config_dict[appkeys.PROVIDERS].payments
    if isinstance(gateway, SandboxGateway):
        return {"sandbox_methods": SANDBOX_METHODS}
    flow = await request.config_dict[appkeys.ENGINE].flow_settings(db, account)
    try:
        customer_id = await ensure_processor_customer(gateway, account)
        await db.commit()
        _, card_secret = await gateway.create_setup_intent(customer_id=customer_id)
    except PaymentError:
        log.warning("could not prepare card entry")
        return {"card_unavailable": True}
    bank_secret = None
    if "us_bank_account" in flow.methods_enabled:
        try:  # where the processor offers ACH (Stripe does; localstripe does not)
            _, bank_secret = await gateway.create_setup_intent(
                customer_id=customer_id, kind="us_bank_account"
            )
        except PaymentError:
            log.info("bank account entry is not available from this processor")
    return {
        "stripe_js_url": settings.stripe_js_url,
        "stripe_publishable_key": settings.stripe_publishable_key or "pk_test_paybot",
        "setup_client_secret": card_secret,
        "bank_client_secret": bank_secret,
        # ACH needs the account holder's full name; the email only where there is one.
        "holder_name": f"{account.first_name} {account.last_name}".strip(),
        "account_email": account.email or "",
    }
