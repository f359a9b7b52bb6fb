"""Stripe: the only code that talks to the stripe SDK, and turns its objects and errors
into ours (:mod:`bot.providers.payments`).

:class:`StripeGateway` wraps ``stripe.StripeClient`` (async methods over aiohttp). Stripe's
errors become ``GatewayUnavailable`` (network, 5xx, rate limit, keys: retry with the same
idempotency key), ``MethodRejected`` (a method that cannot be saved) or ``PaymentError``;
a declined charge is a ``ChargeResult``. Messages are redacted: no key, client secret or
card number reaches a log line or an exception.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import aiohttp
import stripe

from bot.providers.payments import (
    ChargeResult,
    GatewayUnavailable,
    MethodRejected,
    PaymentError,
    RefundResult,
    SavedMethod,
    check_amount,
    check_idempotency_key,
    check_method_kind,
)

log = logging.getLogger(__name__)

__all__ = ["StripeGateway"]

_CARD_BRANDS = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "American Express",
    "discover": "Discover",
    "diners": "Diners Club",
    "jcb": "JCB",
    "unionpay": "UnionPay",
    "cartes_bancaires": "Cartes Bancaires",
    "eftpos_au": "eftpos",
    "interac": "Interac",
}

_SECRET_PATTERNS = [
    (re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9*]+"), "[key]"),
    (re.compile(r"\bwhsec_[A-Za-z0-9]+"), "[secret]"),
    (re.compile(r"_secret_[A-Za-z0-9]+"), "_secret_[redacted]"),
    # 12 to 19 digits, possibly grouped by spaces or dashes: a card or account number.
    (re.compile(r"\b\d(?:[ -]?\d){11,18}\b"), "[number]"),
]


def _redact(text: str | None) -> str:
    text = (text or "").strip()
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text[:300]


def _card_brand(raw: str | None) -> str:
    if not raw:
        return "Card"
    return _CARD_BRANDS.get(raw.lower(), raw.replace("_", " ").title())


class _DropStripeDebug(logging.Filter):
    """stripe-python logs request and response bodies (client secrets...) at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def _install_stripe_log_filter() -> None:
    stripe_logger = logging.getLogger("stripe")
    if not any(isinstance(f, _DropStripeDebug) for f in stripe_logger.filters):
        stripe_logger.addFilter(_DropStripeDebug())


_install_stripe_log_filter()


# --------------------------------------------------------------------------- errors and objects


def _error_summary(exc: stripe.StripeError) -> str:
    parts = [type(exc).__name__]
    if exc.http_status:
        parts.append(f"http {exc.http_status}")
    if exc.code:
        parts.append(f"code {exc.code}")
    if exc.request_id:
        parts.append(f"request {exc.request_id}")
    message = _redact(exc.user_message)
    return f"{', '.join(parts)}: {message}" if message else ", ".join(parts)


def _is_unavailable(exc: stripe.StripeError) -> bool:
    if isinstance(
        exc,
        stripe.APIConnectionError
        | stripe.APIError
        | stripe.AuthenticationError
        | stripe.PermissionError
        | stripe.RateLimitError,
    ):
        return True
    return bool(exc.http_status and exc.http_status >= 500)


def _unavailable(action: str, exc: stripe.StripeError) -> GatewayUnavailable:
    return GatewayUnavailable(
        f"Stripe unavailable during {action} ({_error_summary(exc)})", code=exc.code
    )


def _failed(action: str, exc: stripe.StripeError) -> PaymentError:
    return PaymentError(f"{action} failed ({_error_summary(exc)})", code=exc.code)


def _ours(action: str, exc: stripe.StripeError) -> PaymentError:
    """Our error for Stripe's during `action`: unavailable (retry later, same key) or failed."""
    return _unavailable(action, exc) if _is_unavailable(exc) else _failed(action, exc)


def _rejected(exc: stripe.StripeError) -> MethodRejected:
    return MethodRejected(f"payment method rejected ({_error_summary(exc)})", code=exc.code)


def _saved_method(pm: Any) -> SavedMethod:
    kind = pm.type
    if kind == "card":
        card = pm.card
        return SavedMethod(
            processor_ref=pm.id,
            kind="card",
            brand=_card_brand(getattr(card, "brand", None)),
            last4=str(card.last4),
            exp_month=getattr(card, "exp_month", None),
            exp_year=getattr(card, "exp_year", None),
        )
    if kind == "us_bank_account":
        bank = pm.us_bank_account
        return SavedMethod(
            processor_ref=pm.id, kind="us_bank_account", brand="Bank", last4=str(bank.last4)
        )
    raise MethodRejected(f"unsupported payment method type {kind!r}", code="unsupported_kind")


# --------------------------------------------------------------------------- the gateway


class StripeGateway:
    """Stripe through stripe-python's StripeClient, async over aiohttp."""

    def __init__(
        self,
        secret_key: str,
        *,
        api_base: str | None = None,
        max_network_retries: int = 2,
        timeout: float = 30.0,
    ) -> None:
        if not secret_key:
            raise PaymentError("a Stripe secret key is required", code="missing_key")
        self._http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=timeout))
        self.api_base = api_base.rstrip("/") if api_base else None
        base_addresses: dict[str, str] = {}
        if self.api_base:
            base_addresses["api"] = self.api_base
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses=base_addresses,  # type: ignore[arg-type]
            http_client=self._http,
            max_network_retries=max_network_retries,
        )
        self._closed = False

    def __repr__(self) -> str:  # never show the key
        return f"<StripeGateway closed={self._closed}>"

    @property
    def client(self) -> stripe.StripeClient:
        """The SDK client, for code that needs more (webhook event parsing, tests)."""
        return self._client

    async def __aenter__(self) -> StripeGateway:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise PaymentError("payment gateway is closed", code="closed")

    async def ensure_customer(
        self, *, account_ref: str, name: str, email: str | None, existing_id: str | None
    ) -> str:
        self._check_open()
        v1 = self._client.v1
        if existing_id:
            try:
                customer = await v1.customers.retrieve_async(existing_id)
            except stripe.InvalidRequestError as exc:
                if exc.http_status != 404:
                    raise _failed("customer lookup", exc) from exc
                log.warning("stripe customer %s not found; creating a new one", existing_id)
            except stripe.StripeError as exc:
                raise _ours("customer lookup", exc) from exc
            else:
                if not getattr(customer, "deleted", False):
                    return customer.id
                log.warning("stripe customer %s was deleted; creating a new one", existing_id)

        params: dict[str, Any] = {"name": name, "metadata": {"account_ref": account_ref}}
        if email:
            params["email"] = email
        try:
            customer = await v1.customers.create_async(params=params)  # type: ignore[arg-type]
        except stripe.StripeError as exc:
            raise _ours("customer creation", exc) from exc
        log.info("stripe customer %s created for account %s", customer.id, account_ref)
        return customer.id

    async def create_setup_intent(self, *, customer_id: str, kind: str = "card") -> tuple[str, str]:
        """A SetupIntent for Stripe.js (``confirmCardSetup``); returns (seti id, client secret).

        The client secret goes to the customer's browser only: never log or store it.
        """
        self._check_open()
        check_method_kind(kind)
        params = {"customer": customer_id, "payment_method_types": [kind], "usage": "off_session"}
        try:
            intent = await self._client.v1.setup_intents.create_async(
                params=params  # type: ignore[arg-type]
            )
        except stripe.StripeError as exc:
            raise _ours("setup intent creation", exc) from exc
        log.info("stripe setup intent %s created for %s", intent.id, customer_id)
        return intent.id, intent.client_secret

    async def save_method(self, *, customer_id: str, method_ref: str) -> SavedMethod:
        """Attach ``method_ref`` to the customer and make it the default.

        Returns the method as Stripe stored it: keep ``processor_ref`` (a test ref such as
        ``pm_card_visa`` becomes a fresh ``pm_...``).
        """
        self._check_open()
        v1 = self._client.v1
        try:
            pm = await v1.payment_methods.attach_async(method_ref, params={"customer": customer_id})
        except stripe.CardError as exc:
            raise _rejected(exc) from exc
        except stripe.InvalidRequestError as exc:
            pm = await self._already_attached(customer_id, method_ref, exc)
        except stripe.StripeError as exc:
            if _is_unavailable(exc):
                raise _unavailable("saving a payment method", exc) from exc
            raise _rejected(exc) from exc

        saved = _saved_method(pm)
        try:
            await v1.customers.update_async(
                customer_id,
                params={"invoice_settings": {"default_payment_method": saved.processor_ref}},
            )
        except stripe.StripeError as exc:
            raise _ours("setting the default method", exc) from exc
        log.info(
            "stripe method %s (%s %s) saved for %s",
            saved.processor_ref,
            saved.brand,
            saved.last4,
            customer_id,
        )
        return saved

    async def _already_attached(
        self, customer_id: str, method_ref: str, exc: stripe.InvalidRequestError
    ) -> Any:
        """A method saved through a SetupIntent is attached already: accept it if it is ours."""
        try:
            pm = await self._client.v1.payment_methods.retrieve_async(method_ref)
        except stripe.StripeError:
            pm = None
        if pm is not None and getattr(pm, "customer", None) == customer_id:
            return pm
        raise _rejected(exc) from exc

    async def _method_kind(self, method_ref: str) -> str:
        try:
            pm = await self._client.v1.payment_methods.retrieve_async(method_ref)
        except stripe.StripeError as exc:
            raise _ours("payment method lookup", exc) from exc
        return pm.type

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
        """Charge a saved method now (off_session, confirm=True, USD).

        ``method_kind`` ("card" or "us_bank_account") saves a look-up when the caller
        knows it (it is on the SavedMethod).
        """
        self._check_open()
        check_amount(amount_cents)
        check_idempotency_key(idempotency_key)
        kind = method_kind or await self._method_kind(method_ref)
        check_method_kind(kind)
        params = {
            "amount": amount_cents,
            "currency": "usd",
            "customer": customer_id,
            "payment_method": method_ref,
            "payment_method_types": [kind],
            "confirm": True,
            "off_session": True,
            "metadata": {str(k): str(v) for k, v in (metadata or {}).items()},
        }
        try:
            intent = await self._client.v1.payment_intents.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            result = await self._declined(exc)
        except stripe.StripeError as exc:
            if _is_unavailable(exc):
                log.warning(
                    "stripe charge outcome unknown (key %s): %s",
                    idempotency_key,
                    _error_summary(exc),
                )
            raise _ours("charge", exc) from exc
        else:
            result = _result_from_intent(intent)
        log.info(
            "stripe charge key=%s customer=%s amount=%d -> %s %s %s",
            idempotency_key,
            customer_id,
            amount_cents,
            result.status,
            result.processor_id,
            result.failure_code or "",
        )
        return result

    async def _declined(self, exc: stripe.CardError) -> ChargeResult:
        err = exc.error
        pi_id: str | None = None
        decline_code: str | None = None
        charge_id: str | None = None
        if err is not None:
            decline_code = getattr(err, "decline_code", None)
            pi = getattr(err, "payment_intent", None)
            if pi is not None:
                pi_id = pi if isinstance(pi, str) else getattr(pi, "id", None)
            charge_id = getattr(err, "charge", None)
        if pi_id is None and charge_id:
            # localstripe names only the charge: find its PaymentIntent, best effort, so
            # the ledger can match the payment_intent.payment_failed webhook.
            try:
                ch = await self._client.v1.charges.retrieve_async(charge_id)
                pi_id = getattr(ch, "payment_intent", None)
            except stripe.StripeError:
                pi_id = None
        code = exc.code or "card_declined"
        if code == "authentication_required":
            # Off-session payment that the bank wants the customer to approve on-session.
            return ChargeResult.requires_action(pi_id, decline_code)
        return ChargeResult.declined(pi_id, code, decline_code)

    async def refund(
        self,
        *,
        charge_id: str,
        amount_cents: int,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> RefundResult:
        """Stripe's Refunds API on a PaymentIntent (``charge_id`` pi_...) or a charge (ch_...),
        with our idempotency key: a retry after a crash replays the first refund (real Stripe;
        localstripe ignores the key, the ledger's refunds row is the guard there)."""
        self._check_open()
        check_amount(amount_cents)
        check_idempotency_key(idempotency_key)
        target = "charge" if charge_id.startswith("ch_") else "payment_intent"
        params = {
            target: charge_id,
            "amount": amount_cents,
            "metadata": {str(k): str(v) for k, v in (metadata or {}).items()},
        }
        try:
            refund = await self._client.v1.refunds.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            if _is_unavailable(exc):
                log.warning("stripe refund outcome unknown (key %s): %s", idempotency_key,
                            _error_summary(exc))
            raise _ours("refund", exc) from exc
        result = _result_from_refund(refund)
        log.info("stripe refund key=%s %s amount=%d -> %s %s", idempotency_key, charge_id,
                 amount_cents, result.status, result.processor_id)
        return result

    async def close(self) -> None:
        """Close the aiohttp session the SDK opened (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._http.close_async()


def _result_from_intent(intent: Any) -> ChargeResult:
    status = intent.status
    if status == "succeeded":
        return ChargeResult(status="paid", processor_id=intent.id)
    if status in ("processing", "requires_capture"):
        return ChargeResult(status="pending", processor_id=intent.id)
    if status in ("requires_action", "requires_confirmation"):
        return ChargeResult.requires_action(intent.id)
    if status in ("requires_payment_method", "canceled"):
        err = getattr(intent, "last_payment_error", None)
        code = getattr(err, "code", None) if err is not None else None
        decline_code = getattr(err, "decline_code", None) if err is not None else None
        code = code or ("canceled" if status == "canceled" else "card_declined")
        return ChargeResult.declined(intent.id, code, decline_code)
    raise PaymentError(f"unexpected PaymentIntent status {status!r} for {intent.id}")


def _result_from_refund(refund: Any) -> RefundResult:
    status = getattr(refund, "status", None)
    if status == "succeeded":
        return RefundResult(status="succeeded", processor_id=refund.id)
    if status in ("pending", "requires_action"):
        return RefundResult(status="pending", processor_id=refund.id)
    if status in ("failed", "canceled"):
        reason = getattr(refund, "failure_reason", None) or status
        return RefundResult(status="failed", processor_id=refund.id, failure_code=str(reason)[:64])
    raise PaymentError(f"unexpected refund status {status!r} for {refund.id}")
