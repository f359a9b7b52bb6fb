"""A handoff's life: requested by the bot (the customer asked, was confused, has a hardship, a
dispute or a wrong number), claimed by one agent at a time, answered, and resolved back to the
bot. The conversation row carries the current status for the queue; the handoff row keeps the
history the dashboard measures."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.inbox import agent_webhook
from bot.ledger import queries as ledger
from bot.ledger.models import Conversation, Handoff

REASONS = ("asked", "confused", "wrong_number", "hardship", "dispute", "opt_out_unclear")
OPEN = ("waiting", "agent")


class OwnedByAnother(Exception):
    """Another agent owns the conversation; ``owner`` names them."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        super().__init__(f"owned by {owner}")


class NoHandoff(Exception):
    """The conversation is with the bot: there is nothing to claim or resolve."""


async def current(session: AsyncSession, conv: Conversation) -> Handoff | None:
    if conv.handoff_id is None:
        return None
    return await session.get(Handoff, conv.handoff_id)


async def request(
    session: AsyncSession, conv: Conversation, *, reason: str, text: str, at: datetime
) -> Handoff:
    """Put the conversation in the queue (or keep it there: a second request while one is open
    is the same request, and keeps its place in the queue)."""
    if reason not in REASONS:
        raise ValueError(f"unknown handoff reason {reason!r}")
    handoff = await current(session, conv) if conv.status in OPEN else None
    if handoff is not None:
        handoff.bot_resumed_at = None  # asked again: a person, not the bot, answers now
        return handoff
    handoff = Handoff(
        conversation_id=conv.id, account_id=conv.account_id, reason=reason, requested_at=at
    )
    session.add(handoff)
    await session.flush()
    conv.status, conv.reason, conv.waiting_since = "waiting", reason, at
    conv.assignee, conv.handoff_id = None, handoff.id
    await ledger.audit(
        session, "handed_to_agent", at=at, account_id=conv.account_id, phone=conv.phone,
        reason=reason,
    )
    await agent_webhook.enqueue(
        session, "needs_agent",
        {"phone": conv.phone, "account_id": conv.account_id, "reason": reason, "text": text},
        at=at,
    )
    return handoff


async def claim(
    session: AsyncSession, conv: Conversation, *, agent: str, at: datetime,
    reassign: bool = False,
) -> Handoff:
    """One owner at a time: claiming a conversation another agent owns is refused unless a
    supervisor reassigns it. A conversation with the bot is opened by the claim (an agent may
    step into any live conversation)."""
    if conv.status == "agent" and conv.assignee not in (None, agent) and not reassign:
        raise OwnedByAnother(conv.assignee)
    handoff = await current(session, conv) if conv.status in OPEN else None
    if handoff is None:
        handoff = Handoff(
            conversation_id=conv.id, account_id=conv.account_id, reason="agent_opened",
            requested_at=at,
        )
        session.add(handoff)
        await session.flush()
        conv.reason, conv.waiting_since, conv.handoff_id = "agent_opened", at, handoff.id
    previous = conv.assignee
    conv.status, conv.assignee = "agent", agent
    handoff.claimed_at = handoff.claimed_at or at
    handoff.claimed_by = agent
    await ledger.audit(
        session, "conversation_claimed", at=at, actor=f"agent:{agent}",
        account_id=conv.account_id, phone=conv.phone,
        **({"reassigned_from": previous} if previous and previous != agent else {}),
    )
    return handoff


async def agent_replied(session: AsyncSession, conv: Conversation, *, at: datetime) -> None:
    handoff = await current(session, conv)
    if handoff is not None and handoff.first_reply_at is None:
        handoff.first_reply_at = at


async def resolve(session: AsyncSession, conv: Conversation, *, by: str, at: datetime) -> None:
    """Back to the bot, from the main menu (``by``: ``agent:NAME``, or ``customer`` when MENU
    took it back)."""
    handoff = await current(session, conv)
    if handoff is not None and handoff.resolved_at is None:
        handoff.resolved_at, handoff.resolved_by = at, by
    conv.status = "resolved" if by != "customer" else "bot"
    conv.assignee, conv.handoff_id, conv.waiting_since = None, None, None
    if conv.account_id is not None:
        conv.flow, conv.state, conv.context = "payment", "idle", {}
    conv.updated_at = at
    await ledger.audit(
        session, "handed_back", at=at, actor=by, account_id=conv.account_id, phone=conv.phone
    )
    await agent_webhook.enqueue(
        session, "resolved", {"phone": conv.phone, "account_id": conv.account_id, "by": by}, at=at
    )


async def customer_wrote(
    session: AsyncSession, conv: Conversation, *, text: str, channel: str, at: datetime
) -> None:
    """The customer wrote while waiting for or with an agent: the agents' own desk is told
    (``customer_message``), in the turn's transaction. The engine calls this for each such
    inbound message; a conversation with the bot is nobody's business there."""
    if conv.status not in OPEN:
        return
    await agent_webhook.enqueue(
        session, "customer_message",
        {"phone": conv.phone, "account_id": conv.account_id, "text": text, "channel": channel},
        at=at,
    )
