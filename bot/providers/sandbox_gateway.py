"""The sandbox payment gateway: Stripe's behaviour in memory, with no network and no keys.

The demo, the tests and the benchmarks charge through it. It keeps the rules of
:mod:`bot.providers.payments` (same results, same errors, idempotency keys replayed as
Stripe does) and offers switches to fail on purpose.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

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
from bot.providers.sandbox_ids import SandboxIds

__all__ = ["SandboxCharge", "SandboxGateway", "SandboxRefund"]


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


@dataclass(frozen=True)
class SandboxRefund:
    processor_id: str
    charge_id: str
    amount_cents: int
    idempotency_key: str
    metadata: dict[str, str]


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
    GatewayUnavailable, like a crash or timeout after Stripe charged;
    ``lose_next_refund_response`` does the same for a refund. ``refunds`` lists every refund
    made, one per key.
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
        self.refunds: list[SandboxRefund] = []
        self._refund_keys: dict[str, tuple[str, RefundResult]] = {}
        self.lose_next_refund_response = False
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
        check_method_kind(kind)
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
        check_amount(amount_cents)
        check_idempotency_key(idempotency_key)
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
            result = ChargeResult.declined(processor_id, "card_declined", "generic_decline")
        elif method.outcome == "requires_action":
            result = ChargeResult.requires_action(processor_id)
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

    async def refund(
        self,
        *,
        charge_id: str,
        amount_cents: int,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> RefundResult:
        """As Stripe: only a charge that was paid, never more than it took in all; the same key
        replays the first answer (other parameters with it: PaymentError)."""
        self._check("refund")
        check_amount(amount_cents)
        check_idempotency_key(idempotency_key)
        metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
        fingerprint = hashlib.sha256(
            json.dumps([charge_id, amount_cents, metadata], sort_keys=True).encode()
        ).hexdigest()
        replay = self._refund_keys.get(idempotency_key)
        if replay is not None:
            if replay[0] != fingerprint:
                raise PaymentError(
                    "idempotency key reused with different parameters", code="idempotency_error"
                )
            return replay[1]
        charge = next((c for c in self.charges if c.processor_id == charge_id), None)
        if charge is None:
            raise PaymentError(f"no such charge {charge_id!r}", code="resource_missing")
        if charge.result.status != "paid":
            raise PaymentError("cannot refund a charge that was not paid", code="charge_not_paid")
        given = sum(r.amount_cents for r in self.refunds if r.charge_id == charge_id)
        if given + amount_cents > charge.amount_cents:
            raise PaymentError("refund greater than what is left of the charge",
                               code="amount_too_large")
        result = RefundResult(status="succeeded", processor_id=self._next("re"))
        self.refunds.append(SandboxRefund(result.processor_id or "", charge_id, amount_cents,
                                          idempotency_key, metadata))
        self._refund_keys[idempotency_key] = (fingerprint, result)
        if self.lose_next_refund_response:
            self.lose_next_refund_response = False
            raise GatewayUnavailable("sandbox gateway lost the refund response")
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
            charge.result = ChargeResult.declined(processor_id, "insufficient_funds")
        return charge.result

    async def close(self) -> None:
        self.closed = True
