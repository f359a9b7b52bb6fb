"""The sandbox PayPal gateway: PayPal's behaviour in memory, with no network and no keys.

The demo and the tests without a PayPal fake use it. It keeps the rules of
:mod:`bot.providers.payments` (the same results and errors; the same idempotency key replays the
first answer) and the shape of :mod:`bot.providers.paypal_gateway` (setup token, approval, vault
id). The portal's stand-in button (``/static/paypal_standin.js``) approves at once.

Switches: ``decline = True`` declines every charge; ``unavailable = True`` makes every call raise
GatewayUnavailable.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

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
from bot.providers.paypal_gateway import PAYPAL_SETUP_PREFIX, mask_email
from bot.providers.sandbox_ids import SandboxIds

__all__ = ["SandboxPayPal"]

SANDBOX_PAYER = "paypal.buyer@example.com"


@dataclass
class SandboxPayPalCharge:
    capture_id: str
    vault_id: str
    amount_cents: int
    idempotency_key: str
    result: ChargeResult


class SandboxPayPal:
    kind = "paypal"

    def __init__(self, payer_email: str = SANDBOX_PAYER) -> None:
        self.payer_email = payer_email
        self.decline = False
        self.unavailable = False
        self.charges: list[SandboxPayPalCharge] = []
        self.vault: dict[str, str] = {}  # vault id -> payer email
        self._setup_tokens: dict[str, str | None] = {}  # token -> vault id once exchanged
        self._by_key: dict[str, tuple[str, ChargeResult | RefundResult]] = {}
        self._ids = SandboxIds()
        self.closed = False

    def __repr__(self) -> str:
        return f"<SandboxPayPal charges={len(self.charges)}>"

    def _check(self, action: str) -> None:
        if self.closed:
            raise PaymentError("payment gateway is closed", code="closed")
        if self.unavailable:
            raise GatewayUnavailable(f"sandbox PayPal unavailable during {action}")

    def _replay(self, key: str, fingerprint: str) -> ChargeResult | RefundResult | None:
        known = self._by_key.get(key)
        if known is None:
            return None
        if known[0] != fingerprint:
            raise PaymentError("idempotency key reused with different parameters",
                               code="idempotency_error")
        return known[1]

    async def ensure_customer(
        self, *, account_ref: str, name: str, email: str | None, existing_id: str | None
    ) -> str:
        return existing_id or account_ref

    async def create_setup_intent(
        self, *, customer_id: str, kind: str = "paypal"
    ) -> tuple[str, str]:
        self._check("setup token")
        if kind != "paypal":
            raise PaymentError(f"PayPal saves no {kind!r}", code="unsupported_kind")
        token = self._ids.next("ST-SANDBOX", 6)
        self._setup_tokens[token] = None
        return token, ""

    async def save_method(self, *, customer_id: str, method_ref: str) -> SavedMethod:
        self._check("saving a PayPal account")
        token = method_ref.removeprefix(PAYPAL_SETUP_PREFIX)
        if token not in self._setup_tokens:
            raise MethodRejected("not a PayPal approval", code="resource_missing")
        vault_id = self._setup_tokens[token] or self._ids.next("VAULT-SANDBOX", 6)
        self._setup_tokens[token] = vault_id
        self.vault[vault_id] = self.payer_email
        return SavedMethod(processor_ref=vault_id, kind="paypal", brand="PayPal", last4="",
                           label=mask_email(self.payer_email))

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
        if method_kind not in (None, "paypal"):
            raise PaymentError(f"PayPal cannot charge a {method_kind}", code="unsupported_kind")
        fingerprint = hashlib.sha256(json.dumps([method_ref, amount_cents]).encode()).hexdigest()
        replay = self._replay(idempotency_key, fingerprint)
        if isinstance(replay, ChargeResult):
            return replay
        # Vault ids from an earlier run are accepted: the sandbox keeps nothing across restarts.
        if not method_ref.startswith("VAULT-SANDBOX"):
            raise PaymentError("no such PayPal payment token", code="invalid_resource_id")
        capture_id = self._ids.next("CAPTURE-SANDBOX", 6)
        result = (ChargeResult.declined(capture_id, "paypal_declined") if self.decline
                  else ChargeResult(status="paid", processor_id=capture_id))
        self.charges.append(SandboxPayPalCharge(capture_id, method_ref, amount_cents,
                                                idempotency_key, result))
        self._by_key[idempotency_key] = (fingerprint, result)
        return result

    async def refund(
        self,
        *,
        charge_id: str,
        amount_cents: int,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> RefundResult:
        self._check("refund")
        check_amount(amount_cents)
        check_idempotency_key(idempotency_key)
        fingerprint = hashlib.sha256(json.dumps([charge_id, amount_cents]).encode()).hexdigest()
        replay = self._replay(idempotency_key, fingerprint)
        if isinstance(replay, RefundResult):
            return replay
        charge = next((c for c in self.charges if c.capture_id == charge_id), None)
        if charge is None or charge.result.status != "paid":
            raise PaymentError("cannot refund a capture that was not completed",
                               code="charge_not_paid")
        result = RefundResult(status="succeeded", processor_id=self._ids.next("REFUND-SANDBOX", 6))
        self._by_key[idempotency_key] = (fingerprint, result)
        return result

    async def close(self) -> None:
        self.closed = True
