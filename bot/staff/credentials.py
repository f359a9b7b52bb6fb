"""Passwords (Argon2id, argon2-cffi's PasswordHasher with its RFC 9106 low-memory defaults) and
the TOTP second factor (pyotp, 30-second steps, six digits), whose secret is kept sealed with a
key derived from SECRET_KEY, so the database alone does not hold it."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

MIN_PASSWORD = 12
MAX_PASSWORD = 200  # Argon2 takes anything; a megabyte "password" is a denial of service
ISSUER = "PayBot console"

_HASHER = PasswordHasher()
# Verified for an unknown email so that it costs what a known one costs: the time taken does
# not say whether an account exists.
_DUMMY_HASH = _HASHER.hash("not a password of anyone's: only spends the time of a check")


class WeakPassword(ValueError):
    """Said to the person choosing it."""


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(f"Use at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise WeakPassword(f"Use at most {MAX_PASSWORD} characters.")
    if not password.strip():
        raise WeakPassword("A password of spaces only is not a password.")


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _HASHER.hash(password)


def password_matches(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored`` (None: an account without a password, or an
    unknown email: a dummy hash is checked so the time taken is the same)."""
    if len(password) > MAX_PASSWORD:
        password = password[:MAX_PASSWORD]
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """After a successful sign-in: whether the hash was made with older parameters."""
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


class SecretSeal:
    """Encrypts TOTP secrets at rest (Fernet, keyed from SECRET_KEY for this purpose only)."""

    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(b"paybot staff totp\0" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def close(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def open(
        self, sealed: str, *, at: datetime | None = None, ttl: int | None = None
    ) -> str | None:
        """The text, or None when it was not sealed here (another SECRET_KEY, tampered) or is
        older than ``ttl`` seconds at ``at``."""
        try:
            if ttl is not None and at is not None:
                return self._fernet.decrypt_at_time(
                    sealed.encode("ascii"), ttl, int(at.timestamp())
                ).decode()
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, ValueError, UnicodeError):
            return None

    def close_at(self, text: str, at: datetime) -> str:
        return self._fernet.encrypt_at_time(text.encode(), int(at.timestamp())).decode("ascii")


def new_totp_secret() -> str:
    return pyotp.random_base32()  # 32 base32 characters: 160 bits, as RFC 4226 recommends


def provisioning_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def totp_step(secret: str, code: str, at: datetime) -> int | None:
    """The 30-second step ``code`` is valid for at ``at`` (one step of clock drift either way
    allowed), or None. The step lets the caller refuse the same code twice."""
    code = "".join(ch for ch in code if ch.isdigit())
    if len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    step = totp.timecode(at)
    for candidate in (step, step - 1, step + 1):
        if pyotp.utils.strings_equal(totp.generate_otp(candidate), code):
            return candidate
    return None
