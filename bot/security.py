"""Keyed hashes and tokens: what the ledger keeps instead of secrets."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

# 18 random bytes: 144 bits, above the 128 the design asks of a link token.
LINK_TOKEN_BYTES = 18
_REFERENCE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud to an agent


def ssn_digest(secret_key: str, ssn: str) -> str:
    digits = re.sub(r"\D", "", ssn)
    return hmac.new(secret_key.encode(), b"ssn:" + digits.encode(), hashlib.sha256).hexdigest()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def code_digest(secret_key: str, scope: str, code: str) -> str:
    return hmac.new(secret_key.encode(), f"otp:{scope}:{code}".encode(), hashlib.sha256).hexdigest()


def new_link_token() -> str:
    return secrets.token_urlsafe(LINK_TOKEN_BYTES)


def new_one_time_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def new_payment_reference() -> str:
    return "P-" + "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(5))


def mask_email(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    local, domain = email.split("@", 1)
    return f"{local[:1]}***@{domain}"


def mask_phone(phone: str | None) -> str | None:
    if not phone:
        return None
    return "***-***-" + phone[-4:]


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
