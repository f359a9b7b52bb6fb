"""Emails that record what the ledger did: payment receipts, decline notices, plan cancellations.

Each one is a row of ``outbound_emails`` written with, or right after, the change it reports, and
sent once that is committed: by the process that wrote it (after the SMS reply, so the reply
never waits on the provider), or, when that process stopped first or the provider refused, by
the worker's next pass (``deliver_overdue``). A fresh row is left ``GRACE`` to the process that
wrote it, so the worker does not race it.

A row is claimed (``queued`` -> ``sending``, committed) before the provider is called, so of the
writer and any number of workers exactly one sends it; a process that dies during the provider's
call leaves it ``sending`` and it is not sent again: the provider takes no idempotency key, so
a second try could deliver a second copy. After ``STUCK_AFTER`` the worker marks such a row
``unknown`` and counts it in its pass summary, for a person to look at (``mark_cut_off``).

An email that carries a personal link (a decline notice and its "update your payment method"
link) is queued *sealed*: its bodies are encrypted with a key derived from ``SECRET_KEY``, which
the database does not hold, and wiped once the row is done (sent, skipped or given up). So the
ledger still holds no usable link, only hashes of them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger.models import Account, Creditor, OutboundEmail, Outreach

if TYPE_CHECKING:
    from bot.ledger.db import Database
    from bot.outreach.notifications import Notifier
    from bot.payments.service import PaymentOutcome

log = logging.getLogger(__name__)

GRACE = timedelta(minutes=2)
STUCK_AFTER = timedelta(minutes=15)  # `sending` this long: the process stopped during the send
RETRY_AFTER = timedelta(minutes=10)  # times the attempts made: 10, 20, 30... minutes
MAX_ATTEMPTS = 5
SUBJECT_LIMIT = 200


class Seal:
    """Encrypts the bodies of an email that carries a personal link while it waits."""

    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(b"paybot email outbox\0" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def close(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        """The text; ``InvalidToken`` when it was sealed under another SECRET_KEY."""
        return self._fernet.decrypt(sealed.encode("ascii")).decode()


@dataclass
class EmailReport:
    sent: int = 0
    retrying: int = 0  # the provider refused: queued again for a later pass
    skipped: int = 0  # the address opted out of an email that is not transactional
    failed: int = 0  # refused MAX_ATTEMPTS times, or lost in a crash during the send

    def add(self, other: EmailReport) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def queue(
    session: AsyncSession,
    email: Mapping[str, Any],
    *,
    kind: str,
    account_id: int | None,
    at: datetime,
    seal: Seal | None = None,
) -> OutboundEmail:
    """Add one email to the session (no commit): it leaves only if the session commits.

    ``email`` is what ``Notifier.receipt`` and the other builders return: to, subject, text,
    html and transactional. Attachments are not kept here (the agreement copy, which has one,
    is rebuilt from the ledger by ``bot.plans.agreement_copy``). With ``seal``, the bodies are kept
    encrypted (an email with a personal link)."""
    if email.get("attachments"):
        raise ValueError("the email outbox keeps no attachments")
    text, html = str(email["text"]), str(email["html"])
    if seal is not None:
        text, html = seal.close(text), seal.close(html)
    row = OutboundEmail(
        account_id=account_id,
        kind=kind,
        to_address=str(email["to"]),
        subject=str(email["subject"])[:SUBJECT_LIMIT],
        text_body=text,
        html_body=html,
        sealed=seal is not None,
        transactional=bool(email.get("transactional", False)),
        status="queued",
        attempts=0,
        not_before=at + GRACE,
        created_at=at,
    )
    session.add(row)
    return row


RECEIPT_STATUSES = frozenset({"paid", "pending", "scheduled"})  # a decline gets a notice instead


def queue_receipt(
    session: AsyncSession,
    notifier: Notifier,
    account: Account,
    outcome: PaymentOutcome,
    *,
    brand: str,
    at: datetime,
    disclosure: str | None = None,
) -> OutboundEmail | None:
    """The receipt of a payment, added to the session that records the payment (no commit);
    None when none is due. It never raises for the template: the payment is recorded whatever
    the receipt's text does. ``disclosure``: the creditor's (``creditor_disclosure``); the
    default when empty."""
    if not account.email or outcome.status not in RECEIPT_STATUSES:
        return None
    try:
        email = notifier.receipt(account, outcome, brand=brand, at=at, disclosure=disclosure)
    except Exception:
        log.exception("payment %s: the receipt could not be written", outcome.reference)
        return None
    return queue(session, email, kind="receipt", account_id=account.id, at=at)


async def send_now(
    database: Database,
    notifier: Notifier,
    email: Mapping[str, Any],
    *,
    kind: str,
    account_id: int | None,
    clock: Any,
    seal: Seal | None = None,
) -> EmailReport:
    """Queue in a transaction of its own, then send: for a change already committed."""
    async with database.writer(), database.session() as session:
        row = queue(session, email, kind=kind, account_id=account_id, at=clock.now(), seal=seal)
        await session.commit()
    return await deliver(database, notifier, [row.id], clock=clock, seal=seal)


async def deliver(
    database: Database, notifier: Notifier, ids: Iterable[int], *, clock: Any,
    seal: Seal | None = None,
) -> EmailReport:
    """Send the given rows that are still queued (whatever their ``not_before``); ``seal``
    opens the sealed ones."""
    report = EmailReport()
    wanted = list(ids)
    if not wanted:
        return report
    # What the send needs from the ledger is read before any row is claimed: a database lost
    # between a claim and the provider's call would leave an email in doubt that never left.
    async with database.session() as session:  # one read: each email's creditor, if any
        senders = {
            email_id: Creditor(brand=brand, name=name).shown_name
            for email_id, brand, name in await session.execute(
                select(OutboundEmail.id, Creditor.brand, Creditor.name)
                .join(Account, Account.id == OutboundEmail.account_id)
                .join(Creditor, Creditor.code == Account.creditor_code)
                .where(OutboundEmail.id.in_(wanted))
            )
        }
    # One row claimed at a time, just before its send: a process killed mid-way leaves at
    # most the one email it was sending in doubt (`sending`, later `unknown`), never the rest
    # of a batch it had claimed and not yet tried (bench/chaos lost receipts that way).
    for email_id in wanted:
        claimed = await _claim(database, [email_id], clock.now())
        if not claimed:
            continue  # sent or claimed meanwhile by another process
        row = claimed[0]
        sender = senders.get(row.id) or notifier.brand
        await _send(database, notifier, row, clock, seal, report, sender)
    return report


async def creditor_disclosure(session: AsyncSession, account: Account) -> str:
    """The debt-collector disclosure of the account's creditor ("" when it has none: the
    receipt then carries the default)."""
    if account.creditor_code is None:
        return ""
    creditor = await session.get(Creditor, account.creditor_code)
    return creditor.disclosure if creditor is not None else ""


async def deliver_overdue(
    database: Database, notifier: Notifier, *, clock: Any, seal: Seal | None = None,
    limit: int = 200,
) -> EmailReport:
    """The worker's share: rows whose writer never sent them, and refusals due for a retry."""
    async with database.session() as session:
        ids = list(
            await session.scalars(
                select(OutboundEmail.id)
                .where(OutboundEmail.status == "queued", OutboundEmail.not_before <= clock.now())
                .order_by(OutboundEmail.not_before, OutboundEmail.id)
                .limit(limit)
            )
        )
    return await deliver(database, notifier, ids, clock=clock, seal=seal)


class CannotResend(Exception):
    """An email that ``requeue`` will not send again, and why (one line for the operator)."""


NEEDS_A_LOOK = ("failed", "unknown")


async def recent(
    session: AsyncSession, *, account_id: int | None = None, every_status: bool = False,
    limit: int = 50,
) -> list[OutboundEmail]:
    """Newest first: the ones given up or cut off mid-send, or with ``every_status`` all."""
    query = select(OutboundEmail).order_by(OutboundEmail.id.desc()).limit(limit)
    if not every_status:
        query = query.where(OutboundEmail.status.in_(NEEDS_A_LOOK))
    if account_id is not None:
        query = query.where(OutboundEmail.account_id == account_id)
    return list(await session.scalars(query))


async def requeue(session: AsyncSession, email_id: int, *, at: datetime) -> OutboundEmail:
    """Queue an email again, due now, with its tries counted afresh (no commit): a receipt the
    customer says never came, one given up, one cut off mid-send."""
    row = await session.get(OutboundEmail, email_id)
    if row is None:
        raise CannotResend(f"no email {email_id}")
    if row.status in ("queued", "sending"):
        raise CannotResend(f"email {email_id} is on its way already ({row.status})")
    if row.sealed and not row.text_body:
        raise CannotResend(f"email {email_id} carried a personal link and its text was not kept; "
                           "the customer can text LINK for a new link")
    row.status, row.attempts, row.not_before = "queued", 0, at
    return row


async def mark_cut_off(session: AsyncSession, *, now: datetime) -> int:
    """Rows claimed more than STUCK_AFTER ago and still ``sending`` (their process stopped during
    the provider's call, so whether they left is not known) become ``unknown``: never sent
    again, counted once, for a person to look at. Receipts and notices here; agreement copies
    and proactive messages in ``outreach``. Commits."""
    since = now - STUCK_AFTER
    emails = await session.execute(
        update(OutboundEmail)
        .where(OutboundEmail.status == "sending", OutboundEmail.claimed_at < since)
        .values(status="unknown")
        .execution_options(synchronize_session=False)
    )
    others = await session.execute(
        update(Outreach)
        .where(Outreach.status == "sending", Outreach.sent_at < since)
        .values(status="unknown")
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return int(emails.rowcount or 0) + int(others.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Claimed:
    id: int
    account_id: int | None
    kind: str
    to_address: str
    subject: str
    text_body: str
    html_body: str
    sealed: bool
    transactional: bool
    attempts: int


async def _claim(database: Database, ids: list[int], now: datetime) -> list[_Claimed]:
    """queued -> sending in one committed statement: what it returns is ours alone."""
    async with database.writer(), database.session() as session:
        result = await session.execute(
            update(OutboundEmail)
            .where(OutboundEmail.id.in_(ids), OutboundEmail.status == "queued")
            .values(status="sending", claimed_at=now)
            .returning(
                OutboundEmail.id,
                OutboundEmail.account_id,
                OutboundEmail.kind,
                OutboundEmail.to_address,
                OutboundEmail.subject,
                OutboundEmail.text_body,
                OutboundEmail.html_body,
                OutboundEmail.sealed,
                OutboundEmail.transactional,
                OutboundEmail.attempts,
            )
            .execution_options(synchronize_session=False)
        )
        claimed = sorted((_Claimed(*row) for row in result), key=lambda row: row.id)
        await session.commit()
    return claimed


async def _send(
    database: Database, notifier: Notifier, row: _Claimed, clock: Any, seal: Seal | None,
    report: EmailReport, sender: str,
) -> None:
    text, html = row.text_body, row.html_body
    if row.sealed:
        try:
            if seal is None:
                raise InvalidToken
            text, html = seal.open(text), seal.open(html)
        except InvalidToken:
            report.failed += 1
            log.error("email %d (%s): sealed under another SECRET_KEY; given up", row.id, row.kind)
            await _write_back(database, row, {"status": "failed", "attempts": row.attempts})
            return
    try:
        outcome = await notifier.send_email(
            to=row.to_address,
            subject=row.subject,
            text=text,
            html=html,
            transactional=row.transactional,
            from_name=sender,
        )
    except Exception:  # left `sending`: a person looks; never sent twice
        report.failed += 1
        log.exception("email %d (%s): the send broke off", row.id, row.kind)
        return
    now = clock.now()
    attempts = row.attempts + 1
    values: dict[str, Any] = {"attempts": attempts}
    if outcome.status == "sent":
        values.update(status="sent", sent_at=now, provider_message_id=outcome.message_id)
        report.sent += 1
    elif outcome.status == "opted_out":
        values.update(status="skipped")
        report.skipped += 1
    elif (retry_at := next_try(attempts, now, f"email {row.id} ({row.kind})")) is not None:
        values.update(status="queued", not_before=retry_at)
        report.retrying += 1
    else:
        values.update(status="failed")
        report.failed += 1
    await _write_back(database, row, values)


def next_try(attempts: int, now: datetime, what: str) -> datetime | None:
    """After the provider refused ``attempts`` times: when to try again, or None to give up
    (the one rule for receipts, notices and agreement copies). Logged either way."""
    if attempts < MAX_ATTEMPTS:
        log.warning("%s: the provider refused; tried again after %s", what, RETRY_AFTER * attempts)
        return now + RETRY_AFTER * attempts
    log.error("%s: the provider refused it %d times; given up", what, attempts)
    return None


async def _write_back(database: Database, row: _Claimed, values: dict[str, Any]) -> None:
    """The provider's answer, recorded. The provider has answered: losing that answer would
    leave a refused email in doubt for good (never sent) or a sent one marked unknown, so a
    database away for a moment is waited for (about 15 s), as the rest of the send was."""
    if row.sealed and values["status"] != "queued":
        values = {**values, "text_body": "", "html_body": ""}  # done: the link goes with it
    for pause in (*WRITE_BACK_PAUSES, None):
        try:
            async with database.writer(), database.session() as session:
                await session.execute(
                    update(OutboundEmail)
                    .where(OutboundEmail.id == row.id, OutboundEmail.status == "sending")
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                await session.commit()
            return
        except (OperationalError, InterfaceError, DBAPIError, OSError):
            if pause is None:
                raise
            log.warning("email %d (%s): its outcome not recorded yet; the database is away, "
                        "trying again in %.1f s", row.id, row.kind, pause)
            await asyncio.sleep(pause)


WRITE_BACK_PAUSES = (0.5, 1.0, 2.0, 4.0, 8.0)
