"""The second factor of someone we do not know yet (a portal look-up, a text from an unknown
number): the challenges handed out, how many an account and a destination may get, how many
tries one allows, and how long a failing client waits.

- A *subject* is what a client asked for: "account:ID" for a real account, "ref:HMAC" for an
  identifier that matched nothing. Both are capped, counted and backed off alike, so no answer,
  limit or wait tells a real account from an unknown one.
- A *challenge* is one code sent (or, for an account with no phone and no email, one chance to
  answer with SSN last 4 and date of birth; for an unknown subject, a code nobody can know).
  Every challenge counts against its subject's cap and the cap of each destination a code may
  reach: at most 5 an hour and 10 a day (`reserve_code`). A challenge allows 3 wrong answers.
- A client ("ip:ADDRESS" on the web, "sms:+1..." by text) that keeps failing on a subject waits
  longer and longer before it may try again (`backoff`); other clients, the account's owner
  among them, are not slowed down by it.

It is all kept in the ledger, not in Redis: a cap that a Redis restart or flush resets (or, on
one machine, a restart of the process with its in-process Redis) does not stop an SMS pump, and
the ledger reads the injected clock like everything else.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy import case, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger import queries as ledger
from bot.ledger.models import Account, CodeSend, VerificationAttempt
from bot.outreach.notifications import Notifier
from bot.security import code_digest, constant_time_equal, new_one_time_code

log = logging.getLogger(__name__)

CODES_PER_HOUR = 5
CODES_PER_DAY = 10
TRIES_PER_CHALLENGE = 3  # NIST 800-63A: knowledge answers get at most 3 tries
FREE_FAILURES = 2  # a typo or two costs no wait
FIRST_WAIT = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=1)
FAILURES_REMEMBERED = timedelta(days=1)
CODE_LIFETIME = timedelta(minutes=10)
LOOKUPS_PER_WINDOW = 10  # per client, whatever it looks up
LOOKUP_WINDOW_SECONDS = 15 * 60
_SSN = re.compile(r"^\d{3}-?\d{2}-?\d{4}$")


class CodeLimitReached(Exception):
    """No code may go out now: the subject or a destination had its 5 an hour or 10 a day."""


def account_subject(account_id: int) -> str:
    return f"account:{account_id}"


def unknown_subject(secret_key: str, identifier: str) -> str:
    """An identifier that matched nothing, keyed (an SSN typed in is never stored)."""
    normalized = identifier.strip().lower()
    if _SSN.match(normalized):
        normalized = "ssn:" + re.sub(r"\D", "", normalized)
    digest = hmac.new(secret_key.encode(), f"ref:{normalized}".encode(), hashlib.sha256)
    return "ref:" + digest.hexdigest()[:32]


def destination_key(contact: str) -> str:
    return "to:" + contact.strip().lower()


async def reserve_code(
    session: AsyncSession,
    *,
    subject: str,
    destinations: Sequence[str] = (),
    now: datetime,
    purpose: str,
) -> None:
    """Count one challenge against `subject` and every destination a code may reach (a phone
    number, an email address), or raise CodeLimitReached and count nothing. Every code PayBot
    sends goes through here first, in the transaction that records it.

    Two reservations at once count one after the other, whoever calls and from whichever
    process: on PostgreSQL an advisory lock per cap; on SQLite the database's one write lock,
    taken by a write before anything is read (`Database.writer()` orders only the writers of
    one process, and `paybot chat` or a second server share the file).
    """
    keys = sorted({subject, *(destination_key(d) for d in destinations if d)})
    if session.get_bind().dialect.name == "postgresql":
        for key in keys:  # in a fixed order: two reservations never wait on each other
            await session.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_number(key)}
            )
    hour_ago, day_ago = now - timedelta(hours=1), now - timedelta(days=1)
    # What no cap reads any more goes: the table holds about a day of sends. First, because on
    # SQLite this write takes the write lock (even when it deletes nothing) before the count.
    await session.execute(
        delete(CodeSend).where(CodeSend.cap_key.in_(keys), CodeSend.sent_at <= day_ago)
    )
    rows = await session.execute(
        select(
            CodeSend.cap_key,
            func.sum(case((CodeSend.sent_at > hour_ago, 1), else_=0)),
            func.count(),
        )
        .where(CodeSend.cap_key.in_(keys), CodeSend.sent_at > day_ago)
        .group_by(CodeSend.cap_key)
    )
    for _key, last_hour, last_day in rows:
        if (last_hour or 0) >= CODES_PER_HOUR or last_day >= CODES_PER_DAY:
            raise CodeLimitReached
    session.add_all(CodeSend(cap_key=key, purpose=purpose, sent_at=now) for key in keys)
    await session.flush()


def _lock_number(key: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(f"paybot:code-cap:{key}".encode(), digest_size=8).digest(),
        "big",
        signed=True,
    )


# ---------------------------------------------------------------- challenges


@dataclass(frozen=True)
class CodeToSend:
    """A code to send once the answer is on its way (`send_after_reply`)."""

    account: Account
    code: str
    brand: str
    by_sms: bool


@dataclass(frozen=True)
class Challenge:
    digest: str  # what an answer's code_digest must equal
    expires_at: datetime
    code: CodeToSend | None  # None: nothing to send (unknown subject, or no contact on file)

    @property
    def id(self) -> str:
        return self.digest[:32]


async def open_challenge(
    session: AsyncSession,
    *,
    subject: str,
    account: Account | None,
    scope: str,
    secret_key: str,
    now: datetime,
    purpose: str,
    brand: str = "",
    texts_allowed: bool = False,
) -> Challenge:
    """A new challenge for `subject` (CodeLimitReached when it, or a destination, is capped).
    `scope` binds the code to who asked (the web session, the texting number)."""
    destinations: list[str] = []
    if account is not None:
        if texts_allowed and account.phone:
            destinations.append(account.phone)
        if account.email:  # a code that cannot be texted goes by email
            destinations.append(account.email)
    await reserve_code(
        session, subject=subject, destinations=destinations, now=now, purpose=purpose
    )
    if destinations:
        assert account is not None
        code = new_one_time_code()
        to_send: CodeToSend | None = CodeToSend(account, code, brand, texts_allowed)
    else:
        # No code goes out; one nobody can know (nor type in: codes are 6 digits) stands in.
        code, to_send = secrets.token_urlsafe(24), None
    return Challenge(code_digest(secret_key, scope, code), now + CODE_LIFETIME, to_send)


def code_matches(challenge_digest: str | None, expires_at: datetime | None, *, secret_key: str,
                 scope: str, answer: str, now: datetime) -> bool:
    return (
        bool(challenge_digest)
        and expires_at is not None
        and now < expires_at
        and constant_time_equal(code_digest(secret_key, scope, answer), challenge_digest or "")
    )


def knowledge_matches(account: Account | None, last4: str, dob_iso: str) -> bool:
    """SSN last 4 and date of birth are a look-up, not proof: they count only for an account
    with no phone and no email on file, where no code can be sent."""
    if account is None or account.phone or account.email:
        return False
    return (
        bool(account.ssn_last4)
        and account.dob is not None
        and constant_time_equal(last4.strip(), account.ssn_last4 or "")
        and dob_iso.strip() == account.dob.isoformat()
    )


async def send_code(notifier: Notifier, item: CodeToSend) -> None:
    """Send a challenge's code; a provider's refusal is logged (without the code), never raised
    to a customer who has had their answer already."""
    try:
        await notifier.send_code(item.account, item.code, brand=item.brand, by_sms=item.by_sms)
    except Exception as exc:
        log.warning("a verification code was not sent (%s)", type(exc).__name__)


# ---------------------------------------------------------------- tries and waits


def backoff(failures: int) -> timedelta:
    """The wait after a client's `failures`-th failure on a subject: none for the first two,
    then 1, 2, 4... minutes, at most an hour."""
    if failures <= FREE_FAILURES:
        return timedelta(0)
    return min(FIRST_WAIT * 2 ** min(failures - FREE_FAILURES - 1, 16), LONGEST_WAIT)


async def wait_left(
    session: AsyncSession, *, subject: str, client: str, now: datetime
) -> timedelta:
    """How long this client must still wait before it may try this subject again."""
    failures, last = await ledger.verification_failures(
        session, subject=subject, client=client, since=now - FAILURES_REMEMBERED
    )
    if not failures or last is None:
        return timedelta(0)
    return max(last + backoff(failures) - now, timedelta(0))


async def tries_left(session: AsyncSession, challenge_id: str) -> int:
    return max(TRIES_PER_CHALLENGE - await ledger.challenge_failures(session, challenge_id), 0)


def record_attempt(
    session: AsyncSession,
    *,
    subject: str,
    client: str,
    challenge_id: str | None,
    account_id: int | None,
    succeeded: bool,
    now: datetime,
    phone: str | None = None,
) -> None:
    session.add(
        VerificationAttempt(
            phone=phone,
            account_id=account_id,
            subject=subject,
            client=client,
            challenge=challenge_id,
            succeeded=succeeded,
            attempted_at=now,
        )
    )


async def too_many_lookups(redis: Redis, client: str) -> bool:
    """Count one look-up by `client` (an address, a texting number): more than 10 in 15 minutes
    is too many, whatever was looked up. A fast, shared counter is all this needs (Redis):
    the caps that protect a customer are in the ledger."""
    key = f"paybot:rate:lookup:{client}"
    count = await redis.incr(key)
    if count == 1:
        await redis.expire(key, LOOKUP_WINDOW_SECONDS)
    return count > LOOKUPS_PER_WINDOW


def minutes(wait: timedelta) -> int:
    """A wait as a person reads it: whole minutes, rounded up."""
    return max(1, math.ceil(wait.total_seconds() / 60))
