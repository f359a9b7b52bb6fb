"""Signing in: the password, then (for a supervisor, always) the TOTP code; the limits.

- The same words for an unknown email, a wrong password, a disabled or a paused account, and an
  unknown email costs a dummy Argon2 check: neither the answer nor its time says who has an
  account.
- Each account backs off: after ``LOCK_AFTER`` failures in a row it pauses for 1, 2, 4 ...
  minutes (at most an hour); a success clears the count.
- Each client address may fail ``ADDRESS_LIMIT`` times in ``ADDRESS_WINDOW`` (Redis, shared by
  every web process), whatever emails it tries.
- A TOTP code is taken once (the step is remembered in Redis while it could still be valid).
- Between the password and the code the browser carries a sealed, five-minute ticket.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger import queries as ledger
from bot.ledger.models import Staff
from bot.staff import credentials
from bot.staff.accounts import by_email, staff_actor

log = logging.getLogger(__name__)

LOCK_AFTER = 5
LONGEST_PAUSE = timedelta(hours=1)
ADDRESS_LIMIT = 30
ADDRESS_WINDOW = timedelta(minutes=15)
TICKET_SECONDS = 300

FAILED = (
    "Sign-in failed: check your email and password. After repeated failures, sign-in pauses "
    "for a few minutes."
)
BAD_CODE = "That code did not work. Enter the current 6-digit code from your authenticator app."
TOO_MANY = "Too many failed sign-ins from this address. Try again in 15 minutes."
TICKET_EXPIRED = "The sign-in took too long. Start again with your email and password."


class LoginRefused(Exception):
    def __init__(self, message: str, *, status: int = 401) -> None:
        self.message = message
        self.status = status
        super().__init__(message)


class AddressLimiter:
    """Failed sign-ins per client address, and TOTP steps used, in Redis. Redis unreachable:
    the account's own backoff (SQL) still holds, so sign-in is not refused for it."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def blocked(self, address: str | None) -> bool:
        try:
            count = await self.redis.get(f"paybot:staff-login-fail:{address}")
        except RedisError:
            log.warning("sign-in address limit not checked: Redis unreachable")
            return False
        return int(count or 0) >= ADDRESS_LIMIT

    async def failed(self, address: str | None) -> None:
        key = f"paybot:staff-login-fail:{address}"
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, int(ADDRESS_WINDOW.total_seconds()), nx=True)
                await pipe.execute()
        except RedisError:
            log.warning("sign-in failure not counted for its address: Redis unreachable")

    async def first_use(self, staff_id: int, step: int) -> bool:
        try:
            return bool(
                await self.redis.set(f"paybot:staff-totp:{staff_id}:{step}", 1, nx=True, ex=120)
            )
        except RedisError:
            return True


@dataclass(frozen=True)
class Ticket:
    """Password checked; the code is next. ``secret``: a new second factor being enrolled."""

    staff_id: int
    secret: str | None


def ticket(seal: credentials.SecretSeal, staff: Staff, at: datetime, secret: str | None) -> str:
    return seal.close_at(f"login:{staff.id}:{secret or ''}", at)


def open_ticket(seal: credentials.SecretSeal, sealed: str, at: datetime) -> Ticket | None:
    text = seal.open(sealed, at=at, ttl=TICKET_SECONDS) if sealed else None
    if text is None or not text.startswith("login:"):
        return None
    _, staff_id, secret = text.split(":", 2)
    return Ticket(int(staff_id), secret or None)


def _paused(staff: Staff, at: datetime) -> bool:
    return staff.locked_until is not None and staff.locked_until > at


async def _failed(
    session: AsyncSession, staff: Staff | None, *, at: datetime, address: str | None,
    limiter: AddressLimiter, step: str,
) -> None:
    await limiter.failed(address)
    if staff is not None and staff.disabled_at is None and not _paused(staff, at):
        staff.failed_logins = (staff.failed_logins or 0) + 1
        if staff.failed_logins >= LOCK_AFTER:
            pause = timedelta(minutes=2 ** (staff.failed_logins - LOCK_AFTER))
            staff.locked_until = at + min(pause, LONGEST_PAUSE)
    await ledger.audit(
        session, "staff_login_failed", at=at,
        actor=staff_actor(staff) if staff is not None else "unknown", ip=address, step=step,
        **({"paused_until": staff.locked_until.isoformat()}
           if staff is not None and _paused(staff, at) else {}),
    )


async def check_password(
    session: AsyncSession, email: str, password: str, *, at: datetime, address: str | None,
    limiter: AddressLimiter,
) -> Staff:
    """The account whose password this is, allowed to sign in now; else ``LoginRefused`` (the
    failure is counted and audited: commit the session either way)."""
    if await limiter.blocked(address):
        await ledger.audit(session, "staff_login_refused", at=at, actor="unknown", ip=address)
        raise LoginRefused(TOO_MANY, status=429)
    staff = await by_email(session, email) if len(email) <= 254 else None
    # Always one Argon2 check, for a known email or not: the time says nothing.
    matches = credentials.password_matches(staff.password_hash if staff else None, password)
    if staff is None or not matches or staff.disabled_at is not None or _paused(staff, at):
        await _failed(session, staff, at=at, address=address, limiter=limiter, step="password")
        raise LoginRefused(FAILED)
    if staff.password_hash and credentials.needs_rehash(staff.password_hash):
        staff.password_hash = credentials.hash_password(password)
    return staff


def needs_second_factor(staff: Staff) -> bool:
    """Supervisors always; an agent who enrolled one too."""
    return staff.role == "supervisor" or staff.totp_secret is not None


async def check_code(
    session: AsyncSession, staff: Staff, code: str, *, secret: str, at: datetime,
    address: str | None, limiter: AddressLimiter,
) -> None:
    """The code for ``secret`` (the enrolled one, opened, or one being enrolled) at ``at``,
    not used before; else ``LoginRefused`` (counted like a wrong password)."""
    if staff.disabled_at is not None or _paused(staff, at):
        await _failed(session, staff, at=at, address=address, limiter=limiter, step="code")
        raise LoginRefused(FAILED)
    step = credentials.totp_step(secret, code, at)
    if step is None or not await limiter.first_use(staff.id, step):
        await _failed(session, staff, at=at, address=address, limiter=limiter, step="code")
        raise LoginRefused(BAD_CODE)


async def signed_in(session: AsyncSession, staff: Staff, *, at: datetime, address: str | None,
                    ) -> None:
    staff.failed_logins, staff.locked_until, staff.last_login_at = 0, None, at
    await ledger.audit(session, "staff_login", at=at, actor=staff_actor(staff), ip=address)
