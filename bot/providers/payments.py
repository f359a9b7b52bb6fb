"""The payment gateway's interface: what PayBot asks of a processor, and what comes back.

The errors, the frozen result types and the checks made before any call are shared by the
real gateway (:mod:`bot.providers.stripe_gateway`, the only code that talks to Stripe) and
the in-memory one (:mod:`bot.providers.sandbox_gateway`), so the rest of PayBot never sees
a Stripe object and cannot tell the two apart.

Rules kept by both:

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

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bot.text.i18n import N_

__all__ = [
    "ChargeResult",
    "GatewayUnavailable",
    "MethodRejected",
    "PaymentError",
    "PaymentGateway",
    "RefundResult",
    "SavedMethod",
    "check_amount",
    "check_idempotency_key",
    "check_method_kind",
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
    processor_ref: str  # pm_... or a PayPal vault id (always store this one)
    kind: str  # "card" | "us_bank_account" | "paypal"
    brand: str  # "Visa", "Mastercard", "Bank", "PayPal" ... human form
    last4: str  # "" for a PayPal account: it has no number
    exp_month: int | None = None
    exp_year: int | None = None
    label: str | None = None  # a PayPal account's email, masked (m***@example.com)


@dataclass(frozen=True)
class ChargeResult:
    status: str  # "paid" | "pending" | "declined" | "requires_action"
    processor_id: str | None  # pi_...
    failure_code: str | None = None  # e.g. "card_declined"
    failure_message: str | None = None  # safe to show a customer
    decline_code: str | None = None  # issuer's reason when known, e.g. "insufficient_funds"


    @classmethod
    def declined(
        cls, processor_id: str | None, code: str, decline_code: str | None = None
    ) -> ChargeResult:
        """A decline, with the text a customer may be shown for its code."""
        return cls(
            status="declined",
            processor_id=processor_id,
            failure_code=code,
            failure_message=polite_decline_message(code, decline_code),
            decline_code=decline_code,
        )

    @classmethod
    def requires_action(
        cls, processor_id: str | None, decline_code: str | None = None
    ) -> ChargeResult:
        """The bank wants the customer to approve this off-session payment on-session."""
        return cls(
            status="requires_action",
            processor_id=processor_id,
            failure_code="authentication_required",
            failure_message=_REQUIRES_ACTION_MESSAGE,
            decline_code=decline_code,
        )


CHARGE_STATUSES = frozenset({"paid", "pending", "declined", "requires_action"})


@dataclass(frozen=True)
class RefundResult:
    """What the processor said of one refund (the same type from Stripe and the sandbox).

    ``succeeded``: the money is on its way back; ``pending``: accepted, the bank has not
    confirmed yet (it may still fail, rarely); ``failed``: nothing was given back. A refund
    the processor refuses outright (already refunded, beyond what was charged) is a
    ``PaymentError`` with Stripe's code, not a result."""

    status: str  # "succeeded" | "pending" | "failed"
    processor_id: str | None  # re_...
    failure_code: str | None = None


REFUND_STATUSES = frozenset({"succeeded", "pending", "failed"})


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

    async def refund(
        self,
        *,
        charge_id: str,
        amount_cents: int,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> RefundResult:
        """Give back ``amount_cents`` of the charge ``charge_id`` (the payment's pi_...), with our
        own idempotency key: the same key again replays the first refund, never a second."""
        ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- shared rules

_METHOD_KINDS = ("card", "us_bank_account")

# Plain ASCII (GSM-7 safe): these texts may go into an SMS as they are. Marked for the catalogs:
# an SMS shows them in the customer's language (bot/templates/sms/payment_declined.txt).
_DECLINE_MESSAGES = {
    "insufficient_funds": N_("The payment was declined for insufficient funds. "
    "Please try another card or bank account."),
    "expired_card": N_("The card has expired. Please add a new card."),
    "incorrect_cvc": N_("The card details were not accepted. Please add the card again."),
    "incorrect_number": N_("The card details were not accepted. Please add the card again."),
    "invalid_cvc": N_("The card details were not accepted. Please add the card again."),
    "invalid_expiry_month": N_("The card details were not accepted. Please add the card again."),
    "invalid_expiry_year": N_("The card details were not accepted. Please add the card again."),
    "lost_card": N_("The card was declined. Please try another card or bank account."),
    "stolen_card": N_("The card was declined. Please try another card or bank account."),
    "authentication_required": N_("Your bank needs you to approve this payment. "
    "Please open your secure link to finish it."),
    "processing_error": N_("The payment could not be processed right now. Please try again later."),
    "paypal_declined": N_("PayPal declined the payment. Please check your PayPal account "
    "or use another payment method."),
}
_DEFAULT_DECLINE = N_(
    "The payment was declined by the card issuer. Please try another card or bank account."
)
_REQUIRES_ACTION_MESSAGE = _DECLINE_MESSAGES["authentication_required"]


def polite_decline_message(code: str | None, decline_code: str | None = None) -> str:
    """A short, GSM-7 text for a customer, from Stripe's code / decline_code."""
    for key in (decline_code, code):
        if key and key in _DECLINE_MESSAGES:
            return _DECLINE_MESSAGES[key]
    return _DEFAULT_DECLINE


def check_amount(amount_cents: int) -> None:
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
        raise PaymentError("amount_cents must be a positive integer", code="invalid_amount")


def check_idempotency_key(idempotency_key: str) -> None:
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise PaymentError("an idempotency key is required", code="missing_idempotency_key")
    if len(idempotency_key) > 255:  # Stripe's limit
        raise PaymentError("idempotency key longer than 255 characters", code="bad_idempotency_key")


def check_method_kind(kind: str) -> None:
    if kind not in _METHOD_KINDS:
        raise PaymentError(f"unsupported payment method kind {kind!r}", code="unsupported_kind")
