"""PayPal: the only code that talks to PayPal's official server SDK (``paypal-server-sdk``), and
turns its answers and errors into ours (:mod:`bot.providers.payments`).

A PayPal account is saved once with the Vault v3 API: a setup token made for the page, approved
by the payer in PayPal's window (the JS SDK's ``createVaultSetupToken`` / ``onApprove``), then
exchanged for a payment token, the *vault id* we keep as the method's ``processor_ref``. Every
later payment (now, on a date, a plan's installment charged by the worker) is one Orders v2 call,
``intent=CAPTURE`` with ``payment_source.paypal.vault_id``: PayPal captures it at once, no payer
present. Our idempotency key goes as ``PayPal-Request-Id``, so a retry after a crash gets the
first order back instead of a second charge (PayPal keeps the key for 6 hours; the ledger guard
of bot/payments/service.py covers the rest, as it does for Stripe).

The SDK is synchronous (requests): each call runs in a worker thread. It is pointed at another
address (a local fake in tests) by a Configuration subclass with its own ``environments``.
Results are the same types Stripe's gateway returns; a decline is a ``ChargeResult``; PayPal's
errors become ``GatewayUnavailable`` (network, 5xx, 429, credentials: retry with the same key),
``MethodRejected`` (a setup token that cannot be saved) or ``PaymentError``. No secret, token or
full email reaches a log line or an exception.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from paypalserversdk.configuration import Configuration, Environment, Server
from paypalserversdk.exceptions.api_exception import ApiException
from paypalserversdk.http.auth.o_auth_2 import ClientCredentialsAuthCredentials
from paypalserversdk.paypal_serversdk_client import PaypalServersdkClient

from bot.providers.payments import (
    ChargeResult,
    GatewayUnavailable,
    MethodRejected,
    PaymentError,
    RefundResult,
    SavedMethod,
    check_amount,
    check_idempotency_key,
)

log = logging.getLogger(__name__)

__all__ = ["PAYPAL_SETUP_PREFIX", "PayPalGateway", "cents_from_value", "mask_email",
           "value_from_cents"]

# A method ref posted by the portal for a PayPal approval: the setup token to exchange.
PAYPAL_SETUP_PREFIX = "paypal-setup:"
T = TypeVar("T")

# Orders v2 issues that mean "the payer's PayPal declined it": a result, not an error.
DECLINE_ISSUES = {
    "INSTRUMENT_DECLINED": "paypal_declined",
    "TRANSACTION_REFUSED": "paypal_declined",
    "PAYER_CANNOT_PAY": "paypal_declined",
    "PAYER_ACCOUNT_RESTRICTED": "paypal_declined",
    "PAYER_ACCOUNT_LOCKED_OR_CLOSED": "paypal_declined",
    "MAX_NUMBER_OF_PAYMENT_ATTEMPTS_EXCEEDED": "paypal_declined",
    "PAYER_ACTION_REQUIRED": "authentication_required",
}
# PayPal's statuses of an error the caller should retry later, with the same key.
_UNAVAILABLE_STATUSES = {401, 403, 408, 429}


def value_from_cents(cents: int) -> str:
    """PayPal's money is a decimal string: 5000 -> "50.00"."""
    return f"{cents // 100}.{cents % 100:02d}"


def cents_from_value(value: object) -> int | None:
    """"50.00" -> 5000; None for anything that is not such an amount."""
    if not isinstance(value, str) or not value.replace(".", "", 1).isdigit():
        return None
    whole, _, part = value.partition(".")
    if len(part) > 2:
        return None
    return int(whole or "0") * 100 + int((part + "00")[:2])


def mask_email(email: str | None) -> str | None:
    """m***@example.com: enough for the payer to know the account, too little to be a lead."""
    if not email or "@" not in email:
        return None
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"[:120]


def _configuration_for(base_url: str | None) -> type[Configuration]:
    """The SDK reads its address from the class attribute ``environments``: a subclass with its
    own points the real SDK at another address (a local fake) and changes nothing else."""
    if not base_url:
        return Configuration
    address = base_url.rstrip("/")
    return type(
        "LocalPayPalConfiguration",
        (Configuration,),
        {"environments": {env: {Server.DEFAULT: address} for env in Environment}},
    )


class _Failure(Exception):
    """An SDK error, read once: HTTP status, PayPal's name, its first issue, its debug id."""

    def __init__(self, status: int | None, name: str | None, issue: str | None,
                 debug_id: str | None) -> None:
        super().__init__(name or issue or "error")
        self.status, self.name, self.issue, self.debug_id = status, name, issue, debug_id

    def summary(self) -> str:
        parts = [f"http {self.status}" if self.status else "no response"]
        parts += [x for x in (self.name, self.issue) if x]
        if self.debug_id:
            parts.append(f"debug_id {self.debug_id}")
        return ", ".join(parts)

    @property
    def unavailable(self) -> bool:
        return self.status is None or self.status >= 500 or self.status in _UNAVAILABLE_STATUSES

    @property
    def code(self) -> str:
        return (self.issue or self.name or "paypal_error").lower()[:64]


def _failure(exc: Exception) -> _Failure:
    if not isinstance(exc, ApiException):
        # requests' connection errors, the SDK's own auth errors (no token): nothing was done.
        return _Failure(None, type(exc).__name__, None, None)
    body: Any = None
    try:
        body = json.loads(exc.response.text or "null")
    except (ValueError, AttributeError):
        body = None
    body = body if isinstance(body, dict) else {}
    details = body.get("details")
    first = details[0] if isinstance(details, list) and details else {}
    issue = first.get("issue") if isinstance(first, dict) else None
    name = body.get("name") or body.get("error")
    return _Failure(exc.response_code, str(name) if name else None,
                    str(issue) if issue else None, body.get("debug_id"))


class PayPalGateway:
    """PayPal through paypal-server-sdk's ``PaypalServersdkClient`` (Orders v2, Vault v3)."""

    kind = "paypal"

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        base_url: str | None = None,
        live: bool = False,
        timeout: float = 30.0,
        return_url: str = "https://paybot.invalid/paypal/return",
    ) -> None:
        if not client_id or not client_secret:
            raise PaymentError("PayPal client id and secret are required", code="missing_key")
        self.client_id = client_id
        self.base_url = base_url.rstrip("/") if base_url else None
        self.return_url = return_url
        config_class = _configuration_for(self.base_url)
        config = config_class(
            timeout=timeout,
            max_retries=0,  # a retry is ours to make, with the same PayPal-Request-Id
            environment=Environment.PRODUCTION if live else Environment.SANDBOX,
            client_credentials_auth_credentials=ClientCredentialsAuthCredentials(
                o_auth_client_id=client_id, o_auth_client_secret=client_secret
            ),
        )
        self._client = PaypalServersdkClient(config=config)
        self._closed = False

    def __repr__(self) -> str:  # never the secret
        return f"<PayPalGateway base={self.base_url or 'paypal'} closed={self._closed}>"

    @property
    def client(self) -> PaypalServersdkClient:
        return self._client

    async def _call(self, call: Callable[[], Any]) -> dict[str, Any]:
        """One SDK call in a thread; its JSON body, or our error."""
        if self._closed:
            raise PaymentError("payment gateway is closed", code="closed")
        try:
            response = await asyncio.to_thread(call)
        except Exception as exc:  # the SDK raises ApiException, requests' and its auth errors
            raise _failure(exc) from exc
        try:
            body = json.loads(response.text or "{}")
        except ValueError:
            raise _Failure(response.status_code, "malformed_response", None, None) from None
        return body if isinstance(body, dict) else {}

    @staticmethod
    def _ours(action: str, failure: _Failure) -> PaymentError:
        if failure.unavailable:
            return GatewayUnavailable(f"PayPal unavailable during {action} ({failure.summary()})",
                                      code=failure.code)
        return PaymentError(f"{action} failed ({failure.summary()})", code=failure.code)

    # ------------------------------------------------------------------ the gateway's interface

    async def ensure_customer(
        self, *, account_ref: str, name: str, email: str | None, existing_id: str | None
    ) -> str:
        """PayPal's vault keeps its own customer with each token: ours is the account's ref."""
        return existing_id or account_ref

    async def create_setup_intent(
        self, *, customer_id: str, kind: str = "paypal"
    ) -> tuple[str, str]:
        """A Vault v3 setup token for the JS SDK's ``createVaultSetupToken``: (its id, the URL
        where the payer approves it)."""
        if kind != "paypal":
            raise PaymentError(f"PayPal saves no {kind!r}", code="unsupported_kind")
        body = {
            "payment_source": {
                "paypal": {
                    "usage_type": "MERCHANT",
                    "usage_pattern": "UNSCHEDULED_PREPAID",
                    "experience_context": {
                        "return_url": self.return_url,
                        "cancel_url": self.return_url,
                        "shipping_preference": "NO_SHIPPING",
                    },
                }
            }
        }
        try:
            token = await self._call(lambda: self._client.vault.create_setup_token(
                {"body": body}))
        except _Failure as failure:
            raise self._ours("creating a PayPal setup token", failure) from None
        approve = next((link.get("href") for link in token.get("links") or []
                        if isinstance(link, dict) and link.get("rel") == "approve"), "")
        log.info("paypal setup token %s created", token.get("id"))
        return str(token.get("id") or ""), str(approve or "")

    async def save_method(self, *, customer_id: str, method_ref: str) -> SavedMethod:
        """The approved setup token (``paypal-setup:<id>``) exchanged for a payment token: the
        vault id every later payment is charged to."""
        token_id = method_ref.removeprefix(PAYPAL_SETUP_PREFIX)
        if not token_id or len(token_id) > 64:
            raise MethodRejected("not a PayPal approval", code="resource_missing")
        body = {"payment_source": {"token": {"id": token_id, "type": "SETUP_TOKEN"}}}
        try:
            saved = await self._call(lambda: (
                self._client.vault.create_payment_token(
                    {"body": body, "paypal_request_id": f"save-{token_id}"})))
        except _Failure as failure:
            if failure.unavailable:
                raise self._ours("saving a PayPal account", failure) from None
            raise MethodRejected(f"PayPal account not saved ({failure.summary()})",
                                 code=failure.code) from None
        vault_id = saved.get("id")
        paypal = (saved.get("payment_source") or {}).get("paypal") or {}
        if not isinstance(vault_id, str) or not vault_id or len(vault_id) > 64:
            raise MethodRejected("PayPal returned no payment token", code="resource_missing")
        label = mask_email(paypal.get("email_address"))
        log.info("paypal account %s saved as vault %s", label, vault_id)
        return SavedMethod(processor_ref=vault_id, kind="paypal", brand="PayPal", last4="",
                           label=label)

    async def charge(
        self,
        *,
        customer_id: str,
        method_ref: str,
        amount_cents: int,
        idempotency_key: str,
        metadata: dict[str, str],
        method_kind: str | None = None,
    ) -> ChargeResult:
        """One order captured at once from the saved account (``vault_id``), USD."""
        check_amount(amount_cents)
        check_idempotency_key(idempotency_key)
        if method_kind not in (None, "paypal"):
            raise PaymentError(f"PayPal cannot charge a {method_kind}", code="unsupported_kind")
        reference = str((metadata or {}).get("paybot_reference", ""))[:127]
        unit: dict[str, Any] = {
            "amount": {"currency_code": "USD", "value": value_from_cents(amount_cents)},
        }
        if reference:
            unit["custom_id"] = reference  # webhooks find the payment by it
            unit["reference_id"] = reference
        body = {
            "intent": "CAPTURE",
            "purchase_units": [unit],
            "payment_source": {"paypal": {"vault_id": method_ref}},
        }
        options = {"body": body, "paypal_request_id": idempotency_key,
                   "prefer": "return=representation"}
        try:
            order = await self._call(lambda: self._client.orders.create_order(options))
        except _Failure as failure:
            declined = DECLINE_ISSUES.get(failure.issue or "")
            if failure.status == 422 and declined == "authentication_required":
                result = ChargeResult.requires_action(None)
            elif failure.status == 422 and declined:
                result = ChargeResult.declined(None, declined, (failure.issue or "").lower())
            else:
                if failure.unavailable:
                    log.warning("paypal charge outcome unknown (key %s): %s", idempotency_key,
                                failure.summary())
                raise self._ours("charge", failure) from None
        else:
            result = _result_from_order(order)
        log.info("paypal charge key=%s amount=%d -> %s %s %s", idempotency_key, amount_cents,
                 result.status, result.processor_id, result.failure_code or "")
        return result

    async def refund(
        self,
        *,
        charge_id: str,
        amount_cents: int,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> RefundResult:
        """A refund of the capture ``charge_id``, with our key as PayPal-Request-Id."""
        check_amount(amount_cents)
        check_idempotency_key(idempotency_key)
        body: dict[str, Any] = {
            "amount": {"currency_code": "USD", "value": value_from_cents(amount_cents)},
        }
        reference = (metadata or {}).get("paybot_reference")
        if reference:
            body["custom_id"] = str(reference)[:127]
        options = {"capture_id": charge_id, "body": body, "paypal_request_id": idempotency_key,
                   "prefer": "return=representation"}
        try:
            refund = await self._call(
                lambda: self._client.payments.refund_captured_payment(options))
        except _Failure as failure:
            raise self._ours("refund", failure) from None
        status = refund.get("status")
        refund_id = refund.get("id")
        if status == "COMPLETED":
            return RefundResult(status="succeeded", processor_id=refund_id)
        if status == "PENDING":
            return RefundResult(status="pending", processor_id=refund_id)
        if status in ("FAILED", "CANCELLED"):
            return RefundResult(status="failed", processor_id=refund_id,
                                failure_code=str(status).lower())
        raise PaymentError(f"unexpected PayPal refund status {status!r}")

    async def find_order(self, order_id: str) -> dict[str, Any]:
        """An order as PayPal holds it (reconciliation, tests)."""
        try:
            return await self._call(lambda: self._client.orders.get_order({"id": order_id}))
        except _Failure as failure:
            raise self._ours("order look-up", failure) from None

    async def close(self) -> None:
        self._closed = True


def _result_from_order(order: dict[str, Any]) -> ChargeResult:
    """The capture decides: COMPLETED is Paid, PENDING (an eCheck, a review) Pending, DECLINED
    or FAILED Declined; an order waiting on the payer needs them on-session."""
    order_id = order.get("id")
    units = order.get("purchase_units") or [{}]
    captures = ((units[0] or {}).get("payments") or {}).get("captures") or []
    capture = captures[0] if captures and isinstance(captures[0], dict) else None
    if capture is not None:
        capture_id = capture.get("id") or order_id
        status = capture.get("status")
        if status == "COMPLETED":
            return ChargeResult(status="paid", processor_id=capture_id)
        if status == "PENDING":
            return ChargeResult(status="pending", processor_id=capture_id)
        if status in ("DECLINED", "FAILED"):
            return ChargeResult.declined(capture_id, "paypal_declined")
        raise PaymentError(f"unexpected PayPal capture status {status!r} for {capture_id}")
    if order.get("status") == "PAYER_ACTION_REQUIRED":
        return ChargeResult.requires_action(order_id)
    raise PaymentError(f"PayPal order {order_id} has no capture (status {order.get('status')!r})")
