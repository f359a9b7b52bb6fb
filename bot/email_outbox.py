"""Emails that record what the ledger did: payment receipts, plan cancellations.

Each one is a row of ``outbound_emails`` written with, or right after, the change it reports, and
sent once that is committed: by the process that wrote it (after the SMS reply, so the reply
never waits on the provider), or, when that process stopped first or the provider refused, by
the worker's next pass (``deliver_overdue``). A fresh row is left ``GRACE`` to the process that
wrote it, so the worker does not race it.

A row is claimed (``queued`` -> ``sending``, committed) before the provider is called, so of the
writer and any number of workers exactly one sends it; a process that dies during the provider's
call leaves it ``sending`` and it is not sent again: the provider takes no idempotency key, so
a second try could deliver a second copy.

Bodies are kept as sent, so an email that carries a personal link (a decline notice with its
"update your payment method" link) does not come here: the ledger keeps links only as hashes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.models import OutboundEmail

if TYPE_CHECKING:
    from bot.db import Database
    from bot.notifications import Notifier

log = logging.getLogger(__name__)

GRACE = timedelta(minutes=2)
RETRY_AFTER = timedelta(minutes=10)  # times the attempts made: 10, 20, 30... minutes
MAX_ATTEMPTS = 5
SUBJECT_LIMIT = 200


@dataclass
class EmailReport:
    sent: int = 0
    retrying: int = 0  # the provider refused: queued again for a later pass
    skipped: int = 0  # the address opted out of an email that is not transactional
    failed: int = 0  # refused MAX_ATTEMPTS times, or lost in a crash during the send

    def add(self, other: EmailReport) -> None:
        for name in ("sent", "retrying", "skipped", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def queue(
    session: AsyncSession,
    email: Mapping[str, Any],
    *,
    kind: str,
    account_id: int | None,
    at: datetime,
) -> OutboundEmail:
    """Add one email to the session (no commit): it leaves only if the session commits.

    ``email`` is what ``Notifier.receipt`` and the other builders return: to, subject, text,
    html and transactional. Attachments are not kept here (the agreement copy, which has one,
    is rebuilt from the ledger by ``bot.agreement_copy``)."""
    if email.get("attachments"):
        raise ValueError("the email outbox keeps no attachments")
    row = OutboundEmail(
        account_id=account_id,
        kind=kind,
        to_address=str(email["to"]),
        subject=str(email["subject"])[:SUBJECT_LIMIT],
        text_body=str(email["text"]),
        html_body=str(email["html"]),
        transactional=bool(email.get("transactional", False)),
        status="queued",
        attempts=0,
        not_before=at + GRACE,
        created_at=at,
    )
    session.add(row)
    return row


async def send_now(
    database: Database,
    notifier: Notifier,
    email: Mapping[str, Any],
    *,
    kind: str,
    account_id: int | None,
    clock: Any,
) -> EmailReport:
    """Queue in a transaction of its own, then send: for a change already committed."""
    async with database.writer(), database.session() as session:
        row = queue(session, email, kind=kind, account_id=account_id, at=clock.now())
        await session.commit()
    return await deliver(database, notifier, [row.id], clock=clock)


async def deliver(
    database: Database, notifier: Notifier, ids: Iterable[int], *, clock: Any
) -> EmailReport:
    """Send the given rows that are still queued (whatever their ``not_before``)."""
    report = EmailReport()
    wanted = list(ids)
    if not wanted:
        return report
    claimed = await _claim(database, wanted, clock.now())
    for row in claimed:
        await _send(database, notifier, row, clock, report)
    return report


async def deliver_overdue(
    database: Database, notifier: Notifier, *, clock: Any, limit: int = 200
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
    return await deliver(database, notifier, ids, clock=clock)


@dataclass(frozen=True)
class _Claimed:
    id: int
    kind: str
    to_address: str
    subject: str
    text_body: str
    html_body: str
    transactional: bool
    attempts: int


async def _claim(database: Database, ids: list[int], now: datetime) -> list[_Claimed]:
    """queued -> sending in one committed statement: what it returns is ours alone."""
    async with database.writer(), database.session() as session:
        result = await session.execute(
            update(OutboundEmail)
            .where(OutboundEmail.id.in_(ids), OutboundEmail.status == "queued")
            .values(status="sending")
            .returning(
                OutboundEmail.id,
                OutboundEmail.kind,
                OutboundEmail.to_address,
                OutboundEmail.subject,
                OutboundEmail.text_body,
                OutboundEmail.html_body,
                OutboundEmail.transactional,
                OutboundEmail.attempts,
            )
            .execution_options(synchronize_session=False)
        )
        claimed = sorted((_Claimed(*row) for row in result), key=lambda row: row.id)
        await session.commit()
    return claimed


async def _send(
    database: Database, notifier: Notifier, row: _Claimed, clock: Any, report: EmailReport
) -> None:
    try:
        outcome = await notifier.send_email(
            to=row.to_address,
            subject=row.subject,
            text=row.text_body,
            html=row.html_body,
            transactional=row.transactional,
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
    elif attempts < MAX_ATTEMPTS:
        values.update(status="queued", not_before=now + RETRY_AFTER * attempts)
        report.retrying += 1
        log.warning("email %d (%s): the provider refused; tried again after %s",
                    row.id, row.kind, RETRY_AFTER * attempts)
    else:
        values.update(status="failed")
        report.failed += 1
        log.error("email %d (%s): the provider refused it %d times; given up",
                  row.id, row.kind, attempts)
    async with database.writer(), database.session() as session:
        await session.execute(
            update(OutboundEmail)
            .where(OutboundEmail.id == row.id, OutboundEmail.status == "sending")
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
