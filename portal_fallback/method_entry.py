"""Adding a payment method on any portal page: the sandbox's test methods, or Stripe.js entry
(a card SetupIntent, and a us_bank_account one where the creditor takes bank debits and the
processor offers them), and PayPal's button where the creditor takes PayPal (a vault setup token
made for the page, approved in PayPal's window, posted back as ``paypal-setup:<id>``). The
templates are _card_entry.html, _bank_entry.html and _paypal_entry.html."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from bot import appkeys
from bot.accounts.loading import ensure_processor_customer
from bot.config.settings import FlowSettings
from bot.ledger.models import Account
from bot.providers.payments import MethodRejected, PaymentError, SavedMethod
from bot.providers.paypal_gateway import PAYPAL_SETUP_PREFIX
from bot.providers.sandbox_gateway import SandboxGateway

log = logging.getLogger(__name__)

# Test methods the sandbox gateway knows, offered only when no real processor is configured
# (and only of the kinds the creditor takes).
SANDBOX_METHODS = [
    ("pm_card_visa", "Test Visa ending 4242", "card"),
    ("pm_card_chargeCustomerFail", "Test Visa ending 0341 (declines)", "card"),
    ("pm_usBankAccount", "Test bank account ending 6789 (settles later)", "us_bank_account"),
]


# What a page may post as a new method: a Stripe payment method, or a PayPal approval.
METHOD_REF_PREFIXES = ("pm_", PAYPAL_SETUP_PREFIX)
# PayPal's setup token belongs to no customer of ours: which account's page it was made for is
# kept here, so that only that account can save the PayPal account approved with it.
PAYPAL_SETUP_SECONDS = 6 * 3600


def _paypal_setup_key(token: str) -> str:
    return f"paybot:paypal_setup:{token}"


class MethodNotTaken(Exception):
    """A method of a kind the account's creditor does not take; ``notice`` says what is."""

    def __init__(self, flow: FlowSettings):
        self.notice = f"We can take only a {flow.method_words} for this account."
        super().__init__(self.notice)


async def flow_of(request: web.Request, db: AsyncSession, account: Account) -> FlowSettings:
    return await request.config_dict[appkeys.ENGINE].flow_settings(db, account)


async def save_entered_method(
    request: web.Request, db: AsyncSession, account: Account, method_ref: str
) -> SavedMethod:
    """Keep a method entered on a page at the processor (its customer made and committed first,
    so a retry makes no second one). Raises MethodRejected or PaymentError when it cannot be
    saved, MethodNotTaken when the creditor does not take its kind: the ledger keeps nothing
    of it then, so no page or text can offer it and no payment can use it."""
    gateway = request.config_dict[appkeys.PROVIDERS].charging  # a PayPal approval to PayPal
    flow = await flow_of(request, db, account)
    if method_ref.startswith(PAYPAL_SETUP_PREFIX) and "paypal" in flow.methods_enabled:
        redis = request.config_dict[appkeys.COORDINATOR].redis
        made_for = await redis.get(_paypal_setup_key(method_ref.removeprefix(PAYPAL_SETUP_PREFIX)))
        if made_for is None or int(made_for) != account.id:
            log.warning("a PayPal approval not made for this account's page was refused")
            raise MethodRejected("not this account's PayPal approval", code="resource_missing")
    customer_id = await ensure_processor_customer(gateway, account)
    await db.commit()
    saved = await gateway.save_method(customer_id=customer_id, method_ref=method_ref)
    if saved.kind not in flow.methods_enabled:
        log.info("a %s was entered for a creditor that does not take it", saved.kind)
        raise MethodNotTaken(flow)
    return saved


async def method_entry_context(
    request: web.Request, db: AsyncSession, account: Account
) -> dict[str, Any]:
    """What the add-a-method forms need (commits the processor's customer id if new): only
    the kinds of method the account's creditor takes."""
    settings = request.config_dict[appkeys.SETTINGS]
    gateway = request.config_dict[appkeys.PROVIDERS].payments
    flow = await flow_of(request, db, account)
    kinds_taken = flow.methods_enabled
    takes_cards = "card" in kinds_taken
    kinds: dict[str, Any] = {
        "card_enabled": takes_cards,
        "new_method_noun": "card" if takes_cards else (
            "bank account" if "us_bank_account" in kinds_taken else "PayPal account"),
    }
    kinds.update(await _paypal_entry(request, db, account, kinds_taken))
    if isinstance(gateway, SandboxGateway):
        offered = [(ref, label) for ref, label, kind in SANDBOX_METHODS if kind in kinds_taken]
        return {"sandbox_methods": offered, **kinds}
    try:
        customer_id = await ensure_processor_customer(gateway, account)
        await db.commit()
        card_secret = None
        if takes_cards:
            _, card_secret = await gateway.create_setup_intent(customer_id=customer_id)
    except PaymentError:
        log.warning("could not prepare card entry")
        return {"card_unavailable": True, **kinds}
    bank_secret = None
    if "us_bank_account" in flow.methods_enabled:
        try:  # where the processor offers ACH (Stripe does; localstripe does not)
            _, bank_secret = await gateway.create_setup_intent(
                customer_id=customer_id, kind="us_bank_account"
            )
        except PaymentError:
            log.info("bank account entry is not available from this processor")
    return {
        **kinds,
        "stripe_js_url": settings.stripe_js_url,
        "stripe_publishable_key": settings.stripe_publishable_key or "pk_test_paybot",
        "setup_client_secret": card_secret,
        "bank_client_secret": bank_secret,
        # ACH needs the account holder's full name; the email only where there is one.
        "holder_name": f"{account.first_name} {account.last_name}".strip(),
        "account_email": account.email or "",
    }


async def _paypal_entry(
    request: web.Request, db: AsyncSession, account: Account, kinds_taken: tuple[str, ...]
) -> dict[str, Any]:
    """PayPal's button, where the creditor takes PayPal and PayPal is configured: a setup token
    for this page (the button's ``createVaultSetupToken`` hands it to PayPal) and the JS SDK's
    address (PayPal's own, or a stand-in in tests and the demo)."""
    settings = request.config_dict[appkeys.SETTINGS]
    providers = request.config_dict[appkeys.PROVIDERS]
    if "paypal" not in kinds_taken or providers.paypal is None:
        return {}
    try:
        customer_id = await ensure_processor_customer(providers.charging, account)
        await db.commit()
        token, _ = await providers.paypal.create_setup_intent(customer_id=customer_id,
                                                              kind="paypal")
    except PaymentError:
        log.warning("could not prepare PayPal entry")
        return {"paypal_unavailable": True}
    redis = request.config_dict[appkeys.COORDINATOR].redis
    await redis.set(_paypal_setup_key(token), str(account.id), ex=PAYPAL_SETUP_SECONDS)
    client_id = settings.paypal_client_id or "sandbox"
    return {
        "paypal_setup_token": token,
        "paypal_js_url": f"{settings.paypal_js_url}?{urlencode({'client-id': client_id})}",
    }
