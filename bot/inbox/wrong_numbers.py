"""Wrong numbers (TCPA reassigned numbers): someone at a number says it is not the account
holder's. The number is unlinked from the account and never texted about it again: the report is
kept (``wrong_numbers``), the account loses the number, the conversation forgets the account, and
no import puts the number back (bot/accounts/loading.py reads the same table). Outreach texts
``account.phone``, so it stops by itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger import queries as ledger
from bot.ledger.models import Account, Conversation, WrongNumber


@dataclass(frozen=True)
class WrongNumberReport:
    phone: str
    account_id: int
    account_ref: str | None
    reported_by: str
    reported_at: datetime


async def mark_wrong_number(
    session: AsyncSession, phone: str, account_id: int, by: str, at: datetime
) -> bool:
    """Record that ``phone`` is not ``account_id``'s holder (``by``: customer | agent:NAME) and
    unlink them; True when newly recorded. Idempotent: a second report changes nothing more.
    The caller commits."""
    existing = await session.scalar(
        select(WrongNumber).where(WrongNumber.phone == phone, WrongNumber.account_id == account_id)
    )
    if existing is None:
        session.add(WrongNumber(phone=phone, account_id=account_id, reported_by=by,
                                reported_at=at))
    account = await session.get(Account, account_id)
    if account is not None and account.phone == phone:
        account.phone = None
        account.updated_at = at
    conv = await session.scalar(select(Conversation).where(Conversation.phone == phone))
    if conv is not None and conv.account_id == account_id:
        # Whoever writes next from this number is a stranger again: asked who they are.
        conv.account_id = None
        conv.flow, conv.state, conv.context = "verification", "new", {}
        conv.updated_at = at
    if existing is None:
        await ledger.audit(session, "wrong_number", at=at, actor=by, account_id=account_id,
                           phone=phone)
    await session.flush()
    return existing is None


async def accounts_texted_at(session: AsyncSession, phone: str) -> list[int]:
    """The accounts on file with this number (several may share one): a wrong number is wrong
    for each of them."""
    return list(await session.scalars(select(Account.id).where(Account.phone == phone)))


async def wrong_numbers(session: AsyncSession) -> list[WrongNumberReport]:
    """Every report, newest first (the operator's report)."""
    rows = await session.execute(
        select(WrongNumber, Account.account_ref)
        .outerjoin(Account, Account.id == WrongNumber.account_id)
        .order_by(WrongNumber.reported_at.desc(), WrongNumber.id.desc())
    )
    return [
        WrongNumberReport(w.phone, w.account_id, ref, w.reported_by, w.reported_at)
        for w, ref in rows
    ]
