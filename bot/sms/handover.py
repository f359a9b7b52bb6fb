"""The customer's side of a handoff (bot/inbox/handoffs.py keeps its life): the reply that hands
over and says when a person will answer, who answers while a person is asked for or at work,
and the way back to the bot.

* ``waiting`` (asked, no agent yet): MENU, PAY, BALANCE, LINK (and PLAN) bring the bot back at
  once (``bot_resumed_at``); the request stays in the queue until an agent claims or resolves
  it, and from then on the bot answers everything. Anything else is stored for the agents; the
  first such message after each request (a first one, or one asked again: hardship, MENU, then
  a dispute) gets one short "still in line" answer, the rest none (the worker tells the
  customer when the wait runs out: bot/worker/handoff_waits.py).
* ``agent`` (claimed): the bot is silent but for STOP and HELP (the router answers those);
  MENU hands the conversation back to the bot (resolved by the customer).
* ``resolved``: as ``bot``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from bot.inbox import handoffs
from bot.inbox.wrong_numbers import accounts_texted_at, mark_wrong_number
from bot.ledger import queries as ledger
from bot.ledger.models import Account, AuditEvent, Message
from bot.sms.context import TurnContext
from bot.sms.views import AccountViews
from states.replies import Reply

# The parser's keyword kinds, as the queue names the reason, and each one's reply.
REASONS = {
    "agent": "asked",
    "ask_agent": "opt_out_unclear",
    "confused": "confused",
    "hardship": "hardship",
    "dispute": "dispute",
    "wrong_number": "wrong_number",
}
REPLIES = {
    "agent": "agent_requested",
    "ask_agent": "agent_review",
    "confused": "too_many_tries",
    "hardship": "hardship",
    "dispute": "dispute",
    "wrong_number": "wrong_number",
}
# What the customer says when handing over (besides AGENT): each has its reply.
HANDING_OVER = frozenset(REPLIES) - {"confused"}
GENERAL, SPECIFIC = ("asked", "confused"), ("wrong_number", "dispute", "hardship")
# The audit mark of each request's reply (a first one or one asked again): where the one
# "still in line" is counted from.
TOLD = "handoff_reply_sent"
# While waiting: the keywords that bring the bot back (PAY is read by the caller).
BRING_THE_BOT_BACK = frozenset({"menu", "balance", "link", "plan"})


async def wait_reply_context(
    ctx: TurnContext, views: AccountViews, account: Account | None
) -> dict[str, object]:
    """The ``wait`` every handoff reply reads: agents in now, and how long; or when back, in
    the customer's zone when the account says it."""
    settings = (
        await views.flow_settings(ctx.session, account)
        if account is not None
        else views.services.settings.flow
    )
    return settings.agent_wait(ctx.now, account.timezone if account is not None else None)


async def take_back_from_agent(ctx: TurnContext) -> None:
    """The customer asked for the menu: the bot has the conversation again, from the main
    menu, as an agent's hand-back leaves it, and the agents are told."""
    await handoffs.resolve(ctx.session, ctx.conv, by="customer", at=ctx.now)
    ctx.turn.events.append(
        {"type": "bot_resumed", "phone": ctx.conv.phone, "at": ctx.now.isoformat()}
    )


async def hand_to_agent(
    ctx: TurnContext,
    views: AccountViews,
    account: Account | None,
    *,
    reason: str,
    text: str,
) -> None:
    """Put the conversation in the agents' queue with its reason, and say when a person will
    answer. A wrong number is unlinked from every account it is on file for first, and the bot
    answers whoever writes next (the request stays for an agent to see)."""
    queue_reason = REASONS.get(reason, reason)
    wait = await wait_reply_context(ctx, views, account)
    context: dict[str, object] = {"wait": wait}
    if reason == "hardship":
        context["plan_offer"] = account is not None and await _plan_on_offer(ctx, views, account)
    # Whatever goes out after this point is this request's reply or later: the one "still in
    # line" is counted from here, for a first request and for each one asked again.
    sent_before = await _last_outbound_id(ctx)
    handoff = await handoffs.request(ctx.session, ctx.conv, reason=queue_reason, text=text,
                                     at=ctx.now)
    await ledger.audit(
        ctx.session, TOLD, at=ctx.now, account_id=ctx.conv.account_id, phone=ctx.conv.phone,
        handoff_id=handoff.id, after_message_id=sent_before, reason=queue_reason,
    )
    if handoff.reason in GENERAL and queue_reason in SPECIFIC:
        # Asked (or confused) first, then said why: the queue shows the why.
        handoff.reason = ctx.conv.reason = queue_reason
    if reason == "wrong_number":
        account_ids = await accounts_texted_at(ctx.session, ctx.conv.phone)
        if ctx.conv.account_id is not None and ctx.conv.account_id not in account_ids:
            account_ids.append(ctx.conv.account_id)
        for account_id in account_ids:
            await mark_wrong_number(ctx.session, ctx.conv.phone, account_id, "customer", ctx.now)
        # No one here waits for a person: the request is for an agent to see, not to answer.
        await handoffs.resume_bot(ctx.session, ctx.conv, handoff, at=ctx.now, restart=False)
    ctx.turn.replies.append(Reply(REPLIES.get(reason, "too_many_tries"), context))
    ctx.turn.events.append(
        {
            "type": "needs_agent",
            "phone": ctx.conv.phone,
            "reason": queue_reason,
            "text": text,
            "at": ctx.now.isoformat(),
        }
    )


async def bot_answers(
    ctx: TurnContext,
    views: AccountViews,
    account: Account | None,
    kind: str | None,
    *,
    reads_as_pay: bool,
) -> bool:
    """For a conversation a person has or was asked for (status waiting or agent): whether the
    bot goes on to answer this message; when not, the message is stored and on the agents'
    feed, and this may have said the one "still in line"."""
    conv = ctx.conv
    if conv.status == "agent":
        if kind == "menu":  # MENU always brings the bot back
            await take_back_from_agent(ctx)
            return True
        return False
    handoff = await handoffs.current(ctx.session, conv)
    if handoff is None or handoff.bot_resumed_at is not None:
        return True  # the bot has answered again since (MENU, PAY..., or the wait ran out)
    if kind in BRING_THE_BOT_BACK or reads_as_pay:
        await handoffs.resume_bot(ctx.session, conv, handoff, at=ctx.now)
        ctx.turn.events.append(
            {"type": "bot_resumed", "phone": conv.phone, "at": ctx.now.isoformat()}
        )
        return True
    if kind in HANDING_OVER:
        return True  # asked again (or a wrong number): answered as the first time
    if not await _told_since(ctx, handoff.id, handoff.requested_at):
        ctx.turn.replies.append(
            Reply("agent_queue", {"wait": await wait_reply_context(ctx, views, account)})
        )
    return False


async def _told_since(ctx: TurnContext, handoff_id: int, requested_at: datetime) -> bool:
    """Whether anything but the reply that (last) asked for a person went to the customer since
    (one "still in line" after each request, never a string of them, never silence). Counted by
    message from the last request's mark (``TOLD``); a request older than the mark, by time."""
    told = await ctx.session.scalar(
        select(AuditEvent)
        .where(AuditEvent.kind == TOLD, AuditEvent.phone == ctx.conv.phone)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    since = select(func.count()).select_from(Message).where(
        Message.conversation_id == ctx.conv.id,  # indexed; every message of it carries it
        Message.direction == "outbound",
    )
    if told is not None and told.detail.get("handoff_id") == handoff_id:
        sent = await ctx.session.scalar(
            since.where(Message.id > int(told.detail.get("after_message_id") or 0))
        )
    else:
        sent = await ctx.session.scalar(since.where(Message.created_at >= requested_at))
    return int(sent or 0) > 1


async def _last_outbound_id(ctx: TurnContext) -> int:
    last = await ctx.session.scalar(
        select(func.max(Message.id)).where(
            Message.conversation_id == ctx.conv.id, Message.direction == "outbound"
        )
    )
    return int(last or 0)


async def _plan_on_offer(ctx: TurnContext, views: AccountViews, account: Account) -> bool:
    """Whether PAY would show the customer a payment plan (the creditor's offers allow one)."""
    settings = await views.flow_settings(ctx.session, account)
    if not settings.virtual_collection:
        return False
    view = await views.account_view(ctx.session, account, ctx.now, with_open=False)
    return any(offer.kind == "plan" for offer in view.offers)
