"""One gateway in front of the processors: each request goes to the one that holds the method.

The payment service and the worker keep one path for every payment (the ledger row and its
idempotency key first, then the processor: bot/payments/service.py) and call this router, which
sends a PayPal account's charges, setup tokens and approvals to PayPal and everything else to
Stripe (or its sandbox). A refund goes where its charge was made: Stripe's ids say so
(``pi_``/``ch_``), anything else is a PayPal capture.

The processors are read from the providers at each call, so a test that swaps one is heard.
"""

from __future__ import annotations

from typing import Any, Protocol

from bot.providers.payments import (
    ChargeResult,
    PaymentError,
    PaymentGateway,
    RefundResult,
    SavedMethod,
)
from bot.providers.paypal_gateway import PAYPAL_SETUP_PREFIX

__all__ = ["MethodRouter", "STRIPE_CHARGE_PREFIXES"]

STRIPE_CHARGE_PREFIXES = ("pi_", "ch_", "py_")


class _Holder(Protocol):
    payments: PaymentGateway
    paypal: PaymentGateway | None


class MethodRouter:
    def __init__(self, holder: _Holder) -> None:
        self._holder = holder

    def __repr__(self) -> str:
        return f"<MethodRouter {self._holder.payments!r} {self._holder.paypal!r}>"

    @property
    def default(self) -> PaymentGateway:
        return self._holder.payments

    def paypal(self) -> PaymentGateway:
        gateway = self._holder.paypal
        if gateway is None:
            raise PaymentError("PayPal is not configured", code="paypal_unavailable")
        return gateway

    async def ensure_customer(
        self, *, account_ref: str, name: str, email: str | None, existing_id: str | None
    ) -> str:
        return await self.default.ensure_customer(
            account_ref=account_ref, name=name, email=email, existing_id=existing_id
        )

    async def create_setup_intent(self, *, customer_id: str, kind: str = "card") -> tuple[str, str]:
        gateway = self.paypal() if kind == "paypal" else self.default
        return await gateway.create_setup_intent(customer_id=customer_id, kind=kind)

    async def save_method(self, *, customer_id: str, method_ref: str) -> SavedMethod:
        paypal = method_ref.startswith(PAYPAL_SETUP_PREFIX)
        gateway = self.paypal() if paypal else self.default
        return await gateway.save_method(customer_id=customer_id, method_ref=method_ref)

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
        gateway = self.paypal() if method_kind == "paypal" else self.default
        return await gateway.charge(
            customer_id=customer_id, method_ref=method_ref, amount_cents=amount_cents,
            idempotency_key=idempotency_key, metadata=metadata, method_kind=method_kind,
        )

    async def refund(
        self, *, charge_id: str, amount_cents: int, idempotency_key: str,
        metadata: dict[str, str],
    ) -> RefundResult:
        stripe = charge_id.startswith(STRIPE_CHARGE_PREFIXES) or self._holder.paypal is None
        gateway = self.default if stripe else self.paypal()
        return await gateway.refund(charge_id=charge_id, amount_cents=amount_cents,
                                    idempotency_key=idempotency_key, metadata=metadata)

    async def find_charge(
        self, *, customer_id: str, reference: str, idempotency_key: str
    ) -> ChargeResult | None:
        """Stripe's look-up where the default gateway has one; PayPal replays by its
        PayPal-Request-Id instead, so there is nothing to look up first."""
        finder: Any = getattr(self.default, "find_charge", None)
        if finder is None:
            return None
        result: ChargeResult | None = await finder(
            customer_id=customer_id, reference=reference, idempotency_key=idempotency_key
        )
        return result

    async def close(self) -> None:
        """The providers close their processors."""
