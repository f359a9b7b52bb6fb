"""The conversation's personal link: the one last sent, while it still opens, rather than a new
one on every prompt (a misread reply, a hello, the menu again). A new link is minted when there is
none, when the last one has expired, was revoked or used, or is close to expiring.

A link's token is kept only as a hash; the raw token is read back from the text that carried it
(the conversation's own outbound message, which the ledger keeps as sent)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.settings import Settings
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Conversation, Message

# A link this close to its end is not handed out again: the customer may open it later.
FRESH_ENOUGH = timedelta(hours=1)
# How far back the conversation's texts are searched for the link last sent.
RECENT_TEXTS = 20


async def payment_link(
    session: AsyncSession,
    *,
    conv: Conversation | None,
    account: Account,
    now: datetime,
    settings: Settings,
    fresh: bool = False,
) -> str:
    """The URL of the conversation's live payment link, or of a new one. ``fresh``: always a
    new one (LINK asks for one, and its reply says how long it lasts)."""
    base = f"{settings.public_base_url}/p/"
    if conv is not None and conv.id is not None and not fresh:
        token = await _last_sent_token(session, conv.id, base)
        if token is not None and await _still_good(session, token, account, now):
            return f"{base}{token}"
    token = await ledger.create_link(
        session,
        account_id=account.id,
        at=now,
        lifetime=timedelta(hours=settings.link_lifetime_hours),
        resume_state=conv.state if conv else None,
    )
    return f"{base}{token}"


async def _last_sent_token(session: AsyncSession, conversation_id: int, base: str) -> str | None:
    bodies = await session.scalars(
        select(Message.body)
        .where(
            Message.conversation_id == conversation_id,
            Message.direction == "outbound",
            Message.body.contains(base, autoescape=True),
        )
        .order_by(Message.id.desc())
        .limit(RECENT_TEXTS)
    )
    pattern = re.compile(re.escape(base) + r"([A-Za-z0-9_-]{16,})")
    for body in bodies:
        found = pattern.findall(body)
        if found:
            return str(found[-1])
    return None


async def _still_good(session: AsyncSession, token: str, account: Account, now: datetime) -> bool:
    """A plain payment link of this account (no preset amount, fee or offer), open for a while
    yet."""
    link = await ledger.link_for_token(session, token)
    return (
        link is not None
        and link.account_id == account.id
        and link.purpose == "payment"
        and link.offer_id is None
        and link.amount_cents is None
        and not link.fee_cents
        and link.revoked_at is None
        and link.used_at is None
        and link.expires_at - now > FRESH_ENOUGH
    )
