"""Handing a conversation to a person and taking it back: the conversation's owner, the audit
row, the reply that says a person will answer, and the event the agents' feed shows."""

from __future__ import annotations

from bot.ledger import queries as ledger
from bot.sms.context import TurnContext
from states.replies import Reply


async def take_back_from_agent(ctx: TurnContext) -> None:
    """The customer asked for the menu: the bot has the conversation again, from the main
    menu, as an agent's hand-back leaves it, and the agents are told."""
    conv = ctx.conv
    conv.status = "bot"
    if conv.account_id is not None:
        conv.flow, conv.state, conv.context = "payment", "idle", {}
    await ledger.audit(
        ctx.session,
        "handed_back",
        at=ctx.now,
        actor="customer",
        account_id=conv.account_id,
        phone=conv.phone,
    )
    ctx.turn.events.append({"type": "bot_resumed", "phone": conv.phone, "at": ctx.now.isoformat()})


async def hand_to_agent(ctx: TurnContext, *, reason: str, text: str) -> None:
    ctx.conv.status = "waiting"
    await ledger.audit(
        ctx.session,
        "handed_to_agent",
        at=ctx.now,
        account_id=ctx.conv.account_id,
        phone=ctx.conv.phone,
        reason=reason,
    )
    ctx.turn.replies.append(
        Reply(
            {"agent": "agent_requested", "ask_agent": "agent_review"}.get(reason, "too_many_tries")
        )
    )
    ctx.turn.events.append(
        {
            "type": "needs_agent",
            "phone": ctx.conv.phone,
            "reason": reason,
            "text": text,
            "at": ctx.now.isoformat(),
        }
    )
