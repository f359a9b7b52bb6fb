"""Console sessions: a random token (256 bits) in an HttpOnly cookie, kept in the ledger only as
its SHA-256; ended by idle time (PAYBOT_STAFF_IDLE_MINUTES), by an absolute limit, by signing
out, or when the account is disabled or reset. Each has its own CSRF token."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger.models import Staff, StaffSession
from bot.security import token_digest

ABSOLUTE_LIFETIME = timedelta(hours=12)  # a working day, then sign in again
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at written at most this often, not per request


@dataclass(frozen=True)
class Current:
    row: StaffSession
    staff: Staff


async def start(
    session: AsyncSession, staff: Staff, *, at: datetime, address: str | None,
    user_agent: str | None,
) -> tuple[StaffSession, str]:
    token = secrets.token_urlsafe(32)
    row = StaffSession(
        token_sha256=token_digest(token), csrf_token=secrets.token_urlsafe(32), staff_id=staff.id,
        ip_address=address, user_agent=(user_agent or "")[:400] or None, created_at=at,
        last_seen_at=at, expires_at=at + ABSOLUTE_LIFETIME,
    )
    session.add(row)
    await session.flush()
    return row, token


async def load(
    session: AsyncSession, token: str | None, *, at: datetime, idle: timedelta,
    touch: bool = True,
) -> Current | None:
    """The session behind ``token`` while it stands; ``touch``: a request of the person's,
    so idle time starts again (the live feed's own checks do not)."""
    if not token or len(token) > 100:
        return None
    found = (
        await session.execute(
            select(StaffSession, Staff)
            .join(Staff, Staff.id == StaffSession.staff_id)
            .where(StaffSession.token_sha256 == token_digest(token))
        )
    ).first()
    if found is None:
        return None
    row, staff = found
    if (
        row.revoked_at is not None
        or row.expires_at <= at
        or row.last_seen_at + idle <= at
        or staff.disabled_at is not None
    ):
        return None
    if touch and at - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = at
        await session.commit()
    return Current(row, staff)


async def end(session: AsyncSession, row: StaffSession, at: datetime) -> None:
    row.revoked_at = at
