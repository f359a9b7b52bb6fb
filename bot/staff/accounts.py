"""Staff accounts: added (with a one-time setup link, or a password given at once), listed,
disabled, reset (a fresh setup link; the old password and second factor stop working), and set
up through the link. Every change is audited; the actor is who made it (``cli:...`` or
``staff:NAME``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger import queries as ledger
from bot.ledger.models import Staff, StaffSession
from bot.security import new_link_token, token_digest
from bot.staff import credentials

ROLES = ("agent", "supervisor")
SETUP_LIFETIME = timedelta(hours=72)
# A name is shown as agent:NAME in transcripts and the audit trail (whose actor column holds 40).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,31}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,185}\.[^@\s]{2,}$")


class StaffError(Exception):
    """Said to the operator or the staff member as it is."""


class UnknownStaff(StaffError):
    pass


@dataclass(frozen=True)
class Added:
    staff: Staff
    setup_token: str | None  # None when the password was given at once


def actor(staff: Staff) -> str:
    """How the audit trail and transcripts name a staff member's work on conversations."""
    return f"agent:{staff.name}"


def staff_actor(staff: Staff) -> str:
    """How the audit trail names a staff member's own account events (sign-in, setup)."""
    return f"staff:{staff.name}"


def setup_path(token: str) -> str:
    return f"/agent/setup/{token}"


def normalized_email(email: str) -> str:
    email = email.strip().lower()
    if not EMAIL_PATTERN.match(email) or len(email) > 254:
        raise StaffError(f"{email!r} is not an email address")
    return email


async def by_email(session: AsyncSession, email: str) -> Staff | None:
    return await session.scalar(select(Staff).where(Staff.email == email.strip().lower()))


async def add(
    session: AsyncSession, email: str, name: str, role: str, *, at: datetime, by: str,
    password: str | None = None,
) -> Added:
    """A new staff member. Without ``password`` a one-time setup link is made (returned once,
    kept only as its hash); a supervisor enrols the second factor at setup or first sign-in."""
    email = normalized_email(email)
    name = name.strip()
    if role not in ROLES:
        raise StaffError(f"role must be agent or supervisor, not {role!r}")
    if not NAME_PATTERN.match(name):
        raise StaffError(
            "a name is 1 to 32 letters, digits, spaces, dots, dashes or underscores"
        )
    if await by_email(session, email) is not None:
        raise StaffError(f"{email} already has an account")
    if await session.scalar(select(Staff.id).where(Staff.name == name)) is not None:
        raise StaffError(f"the name {name!r} is taken: agents are told apart by it")
    staff = Staff(email=email, name=name, role=role, created_at=at, failed_logins=0)
    token = None
    if password is not None:
        staff.password_hash = credentials.hash_password(password)
    else:
        token = _new_setup(staff, at)
    session.add(staff)
    await session.flush()
    await ledger.audit(session, "staff_added", at=at, actor=by, staff=name, role=role,
                       email=email)
    return Added(staff, token)


def _new_setup(staff: Staff, at: datetime) -> str:
    token = new_link_token()
    staff.setup_token_sha256 = token_digest(token)
    staff.setup_expires_at = at + SETUP_LIFETIME
    return token


async def list_staff(session: AsyncSession) -> list[Staff]:
    return list(await session.scalars(select(Staff).order_by(Staff.name)))


async def _known(session: AsyncSession, email: str) -> Staff:
    staff = await by_email(session, email)
    if staff is None:
        raise UnknownStaff(f"no staff account for {email.strip().lower()}")
    return staff


async def revoke_sessions(session: AsyncSession, staff_id: int, at: datetime) -> None:
    await session.execute(
        update(StaffSession)
        .where(StaffSession.staff_id == staff_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=at)
    )


async def disable(session: AsyncSession, email: str, *, at: datetime, by: str) -> Staff:
    """No more sign-in, and every open session ends now."""
    staff = await _known(session, email)
    if staff.disabled_at is None:
        staff.disabled_at = at
    staff.setup_token_sha256 = staff.setup_expires_at = None
    await revoke_sessions(session, staff.id, at)
    await ledger.audit(session, "staff_disabled", at=at, actor=by, staff=staff.name)
    return staff


async def reset(session: AsyncSession, email: str, *, at: datetime, by: str) -> str:
    """A fresh one-time setup link; the password and second factor are cleared (a lost phone or
    a forgotten password both end here), sessions end, and a disabled account is enabled."""
    staff = await _known(session, email)
    staff.password_hash = staff.totp_secret = None
    staff.disabled_at = staff.locked_until = None
    staff.failed_logins = 0
    token = _new_setup(staff, at)
    await revoke_sessions(session, staff.id, at)
    await ledger.audit(session, "staff_reset", at=at, actor=by, staff=staff.name)
    return token


async def for_setup(session: AsyncSession, token: str, at: datetime) -> Staff | None:
    """The account a setup link is for, while it stands."""
    if not token or len(token) > 64:
        return None
    staff = await session.scalar(
        select(Staff).where(Staff.setup_token_sha256 == token_digest(token))
    )
    if staff is None or staff.disabled_at is not None:
        return None
    if staff.setup_expires_at is None or staff.setup_expires_at <= at:
        return None
    return staff


async def complete_setup(
    session: AsyncSession, staff: Staff, *, password: str, totp_secret: str | None,
    seal: credentials.SecretSeal, at: datetime,
) -> None:
    """The link used: the password set (and the second factor, already checked by the caller),
    the link spent."""
    staff.password_hash = credentials.hash_password(password)
    if totp_secret is not None:
        staff.totp_secret = seal.close(totp_secret)
    staff.setup_token_sha256 = staff.setup_expires_at = None
    staff.failed_logins, staff.locked_until = 0, None
    await ledger.audit(session, "staff_setup_done", at=at, actor=staff_actor(staff),
                       second_factor=totp_secret is not None)


async def enrol_second_factor(
    session: AsyncSession, staff: Staff, secret: str, *, seal: credentials.SecretSeal,
    at: datetime,
) -> None:
    staff.totp_secret = seal.close(secret)
    await ledger.audit(session, "staff_second_factor_enrolled", at=at, actor=staff_actor(staff))
