"""Handing a conversation to a person and taking it back: the handoff (bot/inbox/handoffs.py),
the reply that says a person will answer, and the event the agents' feed shows."""

from __future__ import annotations

from bot.inbox import handoffs
from bot.sms.context import TurnContext
from states.replies import Reply

# The parser's keyword kinds, as the queue names the reason.
REASONS = {"agent": "asked", "ask_agent": "opt_out_unclear"}


async def take_back_from_agent(ctx: TurnContext) -> None:
    """The customer asked for the menu: the bot has the conversation again, from the main
    menu, as an agent's hand-back leaves it, and the agents are told."""
    await handoffs.resolve(ctx.session, ctx.conv, by="customer", at=ctx.now)
    ctx.turn.events.append(
        {"type": "bot_resumed", "phone": ctx.conv.phone, "at": ctx.now.isoformat()}
    )


async def hand_to_agent(ctx: TurnContext, *, reason: str, text: str) -> None:
    queue_reason = REASONS.get(reason, reason)
    await handoffs.request(ctx.session, ctx.conv, reason=queue_reason, text=text, at=ctx.now)
    ctx.turn.replies.append(
        Reply(
            {"agent": "agent_requested", "ask_agent": "agent_review"}.get(reason, "too_many_tries")
        )
    )
    ctx.turn.events.append(
        {
            "type": "needs_agent",
            "phone": ctx.conv.phone,
            "reason": queue_reason,
            "text": text,
            "at": ctx.now.isoformat(),
        }
    )
