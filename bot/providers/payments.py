"""Payment gateway: the only code that talks to Stripe, plus an in-memory sandbox.

One thin module per SDK (Saleor style): :class:`StripeGateway` wraps ``stripe.StripeClient``
(async methods over aiohttp) and :class:`SandboxGateway` behaves the same way with no
network. Both return the same frozen dataclasses, so the rest of PayBot never sees a
Stripe object.

Rules kept here:

* A decline is a result (``ChargeResult(status="declined")``), not an exception.
* ``GatewayUnavailable`` means the outcome is unknown or the call was not made: retry
  later with the *same* idempotency key.
* Our own idempotency key is sent with every charge, so a retry after a crash replays the
  first attempt on real Stripe. (localstripe ignores the header: the ledger guard is what
  prevents a double charge there.)
* No card number, client secret or API key ever goes into a log line or an exception
  message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import aiohttp
import stripe

from bot.providers.sandbox_ids import SandboxIds

log = logging.getLogger(__name__)

__all__ = [
    "ChargeResult",
    "GatewayUnavailable",
    "MethodRejected",
    "PaymentError",
    "PaymentGateway",
    "SandboxCharge",
    "SandboxGateway",
    "SavedMethod",
    "StripeGateway",
    "polite_decline_message",
]


# --------------------------------------------------------------------------- errors


class PaymentError(Exception):
    """A payment problem. The message is safe to log: no secrets, no card numbers."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class GatewayUnavailable(PaymentError):
    """Network, 5xx, rate limit or authentication problem: outcome unknown or not attempted."""


class MethodRejected(PaymentError):
    """Attaching or saving a payment method failed (e.g. card 4000000000000002)."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SavedMethod:
    processor_ref: str  # pm_...  (always store this one: it may differ from the ref passed in)
    kind: str  # "card" | "us_bank_account"
    brand: str  # "Visa", "Mastercard", "Bank" ... human form
    last4: str
    exp_month: int | None = None
    exp_year: int | None = None


@dataclass(frozen=True)
class ChargeResult:
    status: str  # "paid" | "pending" | "declined" | "requires_action"
    processor_id: str | None  # pi_...
    failure_code: str | None = None  # e.g. "card_declined"
    failure_message: str | None = None  # safe to show a customer
    decline_code: str | None = None  # issuer's reason when known, e.g. "insufficient_funds"


CHARGE_STATUSES = frozenset({"paid", "pending", "declined", "requires_action"})


@runtime_checkable
class PaymentGateway(Protocol):
    async def ensure_customer(
        self, *, account_ref: str, name: str, email: str | None, existing_id: str | None
    ) -> str: ...

    async def create_setup_intent(
        self, *, customer_id: str, kind: str = "card"
    ) -> tuple[str, str]: ...

    async def save_method(self, *, customer_id: str, method_ref: str) -> SavedMethod: ...

    async def charge(
        self,
        *,
        customer_id: str,
        method_ref: str,
        amount_cents: int,
        idempotency_key: str,
        metadata: dict[str, str],
        method_kind: str | None = None,
    ) -> ChargeResult: ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- helpers

_METHOD_KINDS = ("card", "us_bank_account")

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

# Plain ASCII (GSM-7 safe): these texts may go into an SMS as they are.
_DECLINE_MESSAGES = {
    "insufficient_funds": "The payment was declined for insufficient funds. "
    "Please try another card or bank account.",
    "expired_card": "The card has expired. Please add a new card.",
    "incorrect_cvc": "The card details were not accepted. Please add the card again.",
    "incorrect_number": "The card details were not accepted. Please add the card again.",
    "invalid_cvc": "The card details were not accepted. Please add the card again.",
    "invalid_expiry_month": "The card details were not accepted. Please add the card again.",
    "invalid_expiry_year": "The card details were not accepted. Please add the card again.",
    "lost_card": "The card was declined. Please try another card or bank account.",
    "stolen_card": "The card was declined. Please try another card or bank account.",
    "authentication_required": "Your bank needs you to approve this payment. "
    "Please open your secure link to finish it.",
    "processing_error": "The payment could not be processed right now. Please try again later.",
}
_DEFAULT_DECLINE = (
    "The payment was declined by the card issuer. Please try another card or bank account."
)
_REQUIRES_ACTION_MESSAGE = _DECLINE_MESSAGES["authentication_required"]

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


def polite_decline_message(code: str | None, decline_code: str | None = None) -> str:
    """A short, GSM-7 text for a customer, from Stripe's code / decline_code."""
    for key in (decline_code, code):
        if key and key in _DECLINE_MESSAGES:
            return _DECLINE_MESSAGES[key]
    return _DEFAULT_DECLINE


def _card_brand(raw: str | None) -> str:
    if not raw:
        return "Card"
    return _CARD_BRANDS.get(raw.lower(), raw.replace("_", " ").title())


def _check_amount(amount_cents: int) -> None:
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
        raise PaymentError("amount_cents must be a positive integer", code="invalid_amount")


def _check_key(idempotency_key: str) -> None:
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise PaymentError("an idempotency key is required", code="missing_idempotency_key")
    if len(idempotency_key) > 255:  # Stripe's limit
        raise PaymentError("idempotency key longer than 255 characters", code="bad_idempotency_key")


def _check_kind(kind: str) -> None:
    if kind not in _METHOD_KINDS:
        raise PaymentError(f"unsupported payment method kind {kind!r}", code="unsupported_kind")


class _DropStripeDebug(logging.Filter):
    """stripe-python logs request and response bodies (client secrets...) at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def _install_stripe_log_filter() -> None:
    stripe_logger = logging.getLogger("stripe")
    if not any(isinstance(f, _DropStripeDebug) for f in stripe_logger.filters):
        stripe_logger.addFilter(_DropStripeDebug())


_install_stripe_log_filter()


# --------------------------------------------------------------------------- Stripe


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
                    raise PaymentError(
                        f"customer lookup failed ({_error_summary(exc)})", code=exc.code
                    ) from exc
                log.warning("stripe customer %s not found; creating a new one", existing_id)
            except stripe.StripeError as exc:
                if _is_unavailable(exc):
                    raise _unavailable("customer lookup", exc) from exc
                raise PaymentError(
                    f"customer lookup failed ({_error_summary(exc)})", code=exc.code
                ) from exc
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
            if _is_unavailable(exc):
                raise _unavailable("customer creation", exc) from exc
            raise PaymentError(
                f"customer creation failed ({_error_summary(exc)})", code=exc.code
            ) from exc
        log.info("stripe customer %s created for account %s", customer.id, account_ref)
        return customer.id

    async def create_setup_intent(self, *, customer_id: str, kind: str = "card") -> tuple[str, str]:
        """A SetupIntent for Stripe.js (``confirmCardSetup``); returns (seti id, client secret).

        The client secret goes to the customer's browser only: never log or store it.
        """
        self._check_open()
        _check_kind(kind)
        params = {"customer": customer_id, "payment_method_types": [kind], "usage": "off_session"}
        try:
            intent = await self._client.v1.setup_intents.create_async(
                params=params  # type: ignore[arg-type]
            )
        except stripe.StripeError as exc:
            if _is_unavailable(exc):
                raise _unavailable("setup intent creation", exc) from exc
            raise PaymentError(
                f"setup intent creation failed ({_error_summary(exc)})", code=exc.code
            ) from exc
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
            raise MethodRejected(
                f"payment method rejected ({_error_summary(exc)})", code=exc.code
            ) from exc
        except stripe.InvalidRequestError as exc:
            pm = await self._already_attached(customer_id, method_ref, exc)
        except stripe.StripeError as exc:
            if _is_unavailable(exc):
                raise _unavailable("saving a payment method", exc) from exc
            raise MethodRejected(
                f"payment method rejected ({_error_summary(exc)})", code=exc.code
            ) from exc

        saved = _saved_method(pm)
        try:
            await v1.customers.update_async(
                customer_id,
                params={"invoice_settings": {"default_payment_method": saved.processor_ref}},
            )
        except stripe.StripeError as exc:
            if _is_unavailable(exc):
                raise _unavailable("setting the default method", exc) from exc
            raise PaymentError(
                f"setting the default method failed ({_error_summary(exc)})", code=exc.code
            ) from exc
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
        raise MethodRejected(
            f"payment method rejected ({_error_summary(exc)})", code=exc.code
        ) from exc

    async def _method_kind(self, method_ref: str) -> str:
        try:
            pm = await self._client.v1.payment_methods.retrieve_async(method_ref)
        except stripe.StripeError as exc:
            if _is_unavailable(exc):
                raise _unavailable("payment method lookup", exc) from exc
            raise PaymentError(
                f"payment method lookup failed ({_error_summary(exc)})", code=exc.code
            ) from exc
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
        _check_amount(amount_cents)
        _check_key(idempotency_key)
        kind = method_kind or await self._method_kind(method_ref)
        _check_kind(kind)
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
                raise _unavailable("charge", exc) from exc
            raise PaymentError(f"charge failed ({_error_summary(exc)})", code=exc.code) from exc
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
            return ChargeResult(
                status="requires_action",
                processor_id=pi_id,
                failure_code=code,
                failure_message=_REQUIRES_ACTION_MESSAGE,
                decline_code=decline_code,
            )
        return ChargeResult(
            status="declined",
            processor_id=pi_id,
            failure_code=code,
            failure_message=polite_decline_message(code, decline_code),
            decline_code=decline_code,
        )

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
        return ChargeResult(
            status="requires_action",
            processor_id=intent.id,
            failure_code="authentication_required",
            failure_message=_REQUIRES_ACTION_MESSAGE,
        )
    if status in ("requires_payment_method", "canceled"):
        err = getattr(intent, "last_payment_error", None)
        code = getattr(err, "code", None) if err is not None else None
        decline_code = getattr(err, "decline_code", None) if err is not None else None
        code = code or ("canceled" if status == "canceled" else "card_declined")
        return ChargeResult(
            status="declined",
            processor_id=intent.id,
            failure_code=code,
            failure_message=polite_decline_message(code, decline_code),
            decline_code=decline_code,
        )
    raise PaymentError(f"unexpected PaymentIntent status {status!r} for {intent.id}")


# --------------------------------------------------------------------------- sandbox


@dataclass(frozen=True)
class _TestMethod:
    kind: str
    brand: str
    last4: str
    outcome: str  # "paid" | "pending" | "declined" | "requires_action" | "attach_declined"
    exp_month: int | None = 12
    exp_year: int | None = 2030


@dataclass
class SandboxCharge:
    processor_id: str
    customer_id: str
    method_ref: str
    amount_cents: int
    idempotency_key: str
    metadata: dict[str, str]
    result: ChargeResult

    @property
    def status(self) -> str:
        return self.result.status


@dataclass
class _Customer:
    id: str
    account_ref: str
    name: str
    email: str | None
    methods: list[str] = field(default_factory=list)
    default_method: str | None = None


class SandboxGateway:
    """In-memory gateway: no network, no keys; each method gives the same outcome every time,
    and its ids are its own (pi_sandbox_<random>_000001...), never another process's.

    Test method refs (Stripe's own test ids where one exists):

    ========================== ========== ===== ===============================
    ref                        brand      last4 behaviour
    ========================== ========== ===== ===============================
    pm_card_visa               Visa       4242  charge -> paid
    pm_card_mastercard         Mastercard 4444  charge -> paid
    pm_card_chargeCustomerFail Visa       0341  charge -> declined card_declined
    pm_card_visa_chargeDeclined Visa      0002  save -> MethodRejected
    pm_card_authenticationRequired Visa   3184  charge -> requires_action
    pm_usBankAccount           Bank       6789  charge -> pending (ACH)
    ========================== ========== ===== ===============================

    The same idempotency key returns the first result and charges nothing more; the same
    key with other parameters raises PaymentError (as Stripe does). ``charges`` lists
    every charge attempt (declined ones too), one per key. Failure switches for tests of
    other modules: ``unavailable = True`` makes every call raise GatewayUnavailable;
    ``lose_next_charge_response = True`` records the next charge and then raises
    GatewayUnavailable, like a crash or timeout after Stripe charged.
    """

    TEST_METHODS: dict[str, _TestMethod] = {
        "pm_card_visa": _TestMethod("card", "Visa", "4242", "paid"),
        "pm_card_mastercard": _TestMethod("card", "Mastercard", "4444", "paid"),
        "pm_card_chargeCustomerFail": _TestMethod("card", "Visa", "0341", "declined"),
        "pm_card_visa_chargeDeclined": _TestMethod("card", "Visa", "0002", "attach_declined"),
        "pm_card_authenticationRequired": _TestMethod("card", "Visa", "3184", "requires_action"),
        "pm_usBankAccount": _TestMethod("us_bank_account", "Bank", "6789", "pending", None, None),
    }

    def __init__(self) -> None:
        self.charges: list[SandboxCharge] = []
        self.setup_intents: list[tuple[str, str]] = []  # (seti id, customer id)
        self.unavailable = False
        self.lose_next_charge_response = False
        self._customers: dict[str, _Customer] = {}
        self._by_account: dict[str, str] = {}
        self._by_key: dict[str, tuple[str, ChargeResult]] = {}  # key -> (params hash, result)
        self._ids = SandboxIds()
        self.closed = False

    def __repr__(self) -> str:
        return f"<SandboxGateway charges={len(self.charges)}>"

    async def __aenter__(self) -> SandboxGateway:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _next(self, prefix: str) -> str:
        return self._ids.next(f"{prefix}_sandbox", 6)

    def _check(self, action: str) -> None:
        if self.closed:
            raise PaymentError("payment gateway is closed", code="closed")
        if self.unavailable:
            raise GatewayUnavailable(f"sandbox gateway unavailable during {action}")

    def _customer(self, customer_id: str) -> _Customer:
        customer = self._customers.get(customer_id)
        if customer is None:
            if not customer_id.startswith("cus_"):
                raise PaymentError(f"no such customer {customer_id!r}", code="resource_missing")
            # Tolerate ids from an earlier run (the sandbox keeps nothing across restarts).
            customer = _Customer(id=customer_id, account_ref="", name="", email=None)
            self._customers[customer_id] = customer
        return customer

    async def ensure_customer(
        self, *, account_ref: str, name: str, email: str | None, existing_id: str | None
    ) -> str:
        self._check("customer creation")
        if existing_id and existing_id.startswith("cus_"):
            customer = self._customer(existing_id)
            self._by_account.setdefault(account_ref, customer.id)
            return customer.id
        known = self._by_account.get(account_ref)
        if known:
            return known
        customer = _Customer(id=self._next("cus"), account_ref=account_ref, name=name, email=email)
        self._customers[customer.id] = customer
        self._by_account[account_ref] = customer.id
        return customer.id

    async def create_setup_intent(self, *, customer_id: str, kind: str = "card") -> tuple[str, str]:
        self._check("setup intent creation")
        _check_kind(kind)
        self._customer(customer_id)
        seti = self._next("seti")
        self.setup_intents.append((seti, customer_id))
        return seti, f"{seti}_secret_sandbox"

    def _method(self, method_ref: str) -> _TestMethod:
        method = self.TEST_METHODS.get(method_ref)
        if method is None:
            raise MethodRejected(
                f"unknown sandbox payment method {method_ref!r}", code="resource_missing"
            )
        return method

    async def save_method(self, *, customer_id: str, method_ref: str) -> SavedMethod:
        self._check("saving a payment method")
        customer = self._customer(customer_id)
        method = self._method(method_ref)
        if method.outcome == "attach_declined":
            raise MethodRejected(
                "payment method rejected (code card_declined)", code="card_declined"
            )
        if method_ref not in customer.methods:
            customer.methods.append(method_ref)
        customer.default_method = method_ref
        return SavedMethod(
            processor_ref=method_ref,
            kind=method.kind,
            brand=method.brand,
            last4=method.last4,
            exp_month=method.exp_month,
            exp_year=method.exp_year,
        )

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
        self._check("charge")
        _check_amount(amount_cents)
        _check_key(idempotency_key)
        metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
        fingerprint = hashlib.sha256(
            json.dumps([customer_id, method_ref, amount_cents, metadata], sort_keys=True).encode()
        ).hexdigest()
        replay = self._by_key.get(idempotency_key)
        if replay is not None:
            known_fingerprint, first_result = replay
            if known_fingerprint != fingerprint:
                raise PaymentError(
                    "idempotency key reused with different parameters", code="idempotency_error"
                )
            return first_result  # Stripe replays the first response, even after settling

        self._customer(customer_id)
        method = self._method(method_ref)
        if method.outcome == "attach_declined":
            raise PaymentError("payment method was never saved", code="resource_missing")
        if method_kind is not None and method_kind != method.kind:
            raise PaymentError(
                f"method {method_ref!r} is not a {method_kind}", code="payment_method_invalid"
            )
        processor_id = self._next("pi")
        if method.outcome == "declined":
            result = ChargeResult(
                status="declined",
                processor_id=processor_id,
                failure_code="card_declined",
                failure_message=polite_decline_message("card_declined"),
                decline_code="generic_decline",
            )
        elif method.outcome == "requires_action":
            result = ChargeResult(
                status="requires_action",
                processor_id=processor_id,
                failure_code="authentication_required",
                failure_message=_REQUIRES_ACTION_MESSAGE,
            )
        else:
            result = ChargeResult(status=method.outcome, processor_id=processor_id)
        charge = SandboxCharge(
            processor_id=processor_id,
            customer_id=customer_id,
            method_ref=method_ref,
            amount_cents=amount_cents,
            idempotency_key=idempotency_key,
            metadata=metadata,
            result=result,
        )
        self.charges.append(charge)
        self._by_key[idempotency_key] = (fingerprint, result)
        if self.lose_next_charge_response:
            self.lose_next_charge_response = False
            raise GatewayUnavailable("sandbox gateway lost the charge response")
        return result

    def settle(self, processor_id: str, *, paid: bool = True) -> ChargeResult:
        """Finish a pending (ACH) charge, as the bank would days later. Test helper."""
        for charge in self.charges:
            if charge.processor_id == processor_id:
                break
        else:
            raise PaymentError(f"no such charge {processor_id!r}", code="resource_missing")
        if charge.result.status != "pending":
            raise PaymentError(f"charge {processor_id} is not pending", code="not_pending")
        if paid:
            charge.result = ChargeResult(status="paid", processor_id=processor_id)
        else:
            charge.result = ChargeResult(
                status="declined",
                processor_id=processor_id,
                failure_code="insufficient_funds",
                failure_message=polite_decline_message("insufficient_funds"),
            )
        return charge.result

    async def close(self) -> None:
        self.closed = True
