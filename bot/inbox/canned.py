"""Canned replies: short texts kept under a shortcut, with placeholders filled from the
conversation's account when an agent uses one.

Placeholders: ``{first_name}``, ``{last_name}``, ``{account_id}``, ``{balance}`` (dollars),
``{open}`` (what is open to collect, dollars), ``{brand}`` (the creditor's name),
``{support_contact}``, ``{link}`` (a fresh secure link: ``replies.send_link`` mints it, so a
canned reply with ``{link}`` is filled by ``fill`` with ``link_url`` given). An unknown
placeholder is refused by name when the reply is saved, and again when it is filled.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.inbox.replies import Refused, check_agent, check_body
from bot.ledger import queries as ledger
from bot.ledger.models import Account, CannedReply
from bot.payments.collectable import collectable, dollars

PLACEHOLDERS = ("first_name", "last_name", "account_id", "balance", "open", "brand",
                "support_contact", "link")
SHORTCUT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class CannedRefused(Refused):
    code = "canned_refused"


class UnknownPlaceholder(CannedRefused):
    code = "unknown_placeholder"

    def __init__(self, names: list[str]) -> None:
        self.names = names
        known = ", ".join("{" + n + "}" for n in PLACEHOLDERS)
        super().__init__(
            f"unknown placeholder {', '.join('{' + n + '}' for n in names)}; known: {known}"
        )


class NoSuchCanned(CannedRefused):
    code = "not_found"


@dataclass(frozen=True)
class Canned:
    id: int
    shortcut: str
    body: str
    created_by: str | None
    created_at: datetime
    placeholders: tuple[str, ...]


def placeholders(body: str) -> list[str]:
    """The placeholders ``body`` names, in order; a brace that is not one is refused."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(body) if name is not None]
    except ValueError as exc:
        raise CannedRefused(f"braces must hold a placeholder such as {{first_name}}: {exc}") \
            from exc
    unknown = [n for n in dict.fromkeys(names) if n not in PLACEHOLDERS]
    if unknown:
        raise UnknownPlaceholder(unknown)
    return list(dict.fromkeys(names))


def _canned(row: CannedReply) -> Canned:
    return Canned(id=row.id, shortcut=row.shortcut, body=row.body, created_by=row.created_by,
                  created_at=row.created_at, placeholders=tuple(placeholders(row.body)))


def _checked(shortcut: str, body: str) -> tuple[str, str]:
    shortcut = shortcut.strip().lower()
    if not SHORTCUT.match(shortcut):
        raise CannedRefused("a shortcut is 1 to 40 letters, digits, - or _")
    body = body.replace("\r\n", "\n").strip()
    if not body:
        raise CannedRefused("the reply is empty")
    placeholders(body)
    return shortcut, body


async def list_canned(session: AsyncSession) -> list[Canned]:
    rows = await session.scalars(select(CannedReply).order_by(CannedReply.shortcut))
    return [_canned(row) for row in rows]


async def get_canned(session: AsyncSession, shortcut: str) -> Canned:
    row = await session.scalar(
        select(CannedReply).where(CannedReply.shortcut == shortcut.strip().lower())
    )
    if row is None:
        raise NoSuchCanned(f"no canned reply {shortcut!r}")
    return _canned(row)


async def save_canned(
    session: AsyncSession, *, shortcut: str, body: str, by: str, now: datetime
) -> Canned:
    """Create the reply, or replace the body of the one with that shortcut; commits."""
    by = check_agent(by)
    shortcut, body = _checked(shortcut, body)
    row = await session.scalar(select(CannedReply).where(CannedReply.shortcut == shortcut))
    if row is None:
        row = CannedReply(shortcut=shortcut, body=body, created_by=by, created_at=now)
        session.add(row)
    else:
        row.body = body
    try:
        await session.flush()
    except IntegrityError as exc:  # another saved the same shortcut meanwhile
        await session.rollback()
        raise CannedRefused(f"canned reply {shortcut!r} was just saved by someone else") from exc
    await ledger.audit(session, "canned_reply_saved", at=now, actor=f"agent:{by}",
                       shortcut=shortcut)
    await session.commit()
    return _canned(row)


async def delete_canned(session: AsyncSession, shortcut: str, *, by: str, now: datetime) -> None:
    by = check_agent(by)
    row = await session.scalar(
        select(CannedReply).where(CannedReply.shortcut == shortcut.strip().lower())
    )
    if row is None:
        raise NoSuchCanned(f"no canned reply {shortcut!r}")
    await session.delete(row)
    await ledger.audit(session, "canned_reply_deleted", at=now, actor=f"agent:{by}",
                       shortcut=row.shortcut)
    await session.commit()


async def fill(
    session: AsyncSession,
    body: str,
    account: Account | None,
    *,
    brand: str,
    support_contact: str,
    link_url: str | None = None,
) -> str:
    """The canned ``body`` with its placeholders filled for ``account``: the text an agent then
    sends (and may edit) with replies.send_agent_message. Raises UnknownPlaceholder, and
    CannedRefused when a placeholder has no value here (no account, or {link} without a link:
    the agent sends the link with its own action), or the result is over-long."""
    names = placeholders(body)
    values: dict[str, str] = {"brand": brand, "support_contact": support_contact}
    if link_url is not None:
        values["link"] = link_url
    if account is not None:
        values.update(first_name=account.first_name, last_name=account.last_name,
                      account_id=account.account_ref, balance=dollars(account.balance_cents))
        if "open" in names:
            state = await collectable(session, account.id, balance_cents=account.balance_cents)
            values["open"] = dollars(state.open_cents)
    missing = [n for n in names if n not in values]
    if missing:
        raise CannedRefused(
            f"no value here for {', '.join('{' + n + '}' for n in missing)}"
        )
    return check_body(body.format(**values))
