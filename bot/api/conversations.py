"""The conversations resource: the agents' REST, for teams that work from their own desk (Flex,
Zendesk, Chatwoot). List the queue, read a conversation with its transcript, claim it, send the
customer a message, hand it back to the bot. The rules are the console's own (bot/inbox/): an
agent's message is refused for an opted-out number, a conversation another agent owns, an empty
or over-long text, and in the customer's quiet hours unless they wrote within the hour. Every
action is audited as agent:NAME and told to the agents' live feed.
"""

from __future__ import annotations

import re

from aiohttp import web
from sqlalchemy import select

from bot import appkeys
from bot.api.documents import (
    Conversation,
    ConversationDetail,
    ConversationList,
    ConversationMessage,
    HandedBack,
    answer_body,
)
from bot.api.models import PHONE_PATH_PATTERN, AgentMessageInput, ClaimInput, HandBackInput
from bot.api.problems import problem, request_model
from bot.inbox import handoffs, reads, replies
from bot.ledger import models as rows
from bot.phones import normalize_phone

_PHONE_PATH = re.compile(PHONE_PATH_PATTERN.removeprefix("^").removesuffix("$"))


def _phone(request: web.Request) -> str | web.Response:
    raw = request.match_info["phone"]
    if not _PHONE_PATH.fullmatch(raw):
        return problem(400, "not a phone number: +15555550100 (E.164) or 10 digits")
    return normalize_phone(raw)


def _summary(row: reads.ConversationRow) -> Conversation:
    return Conversation(
        phone=row.phone, account_id=row.account_id, status=row.status, reason=row.reason,
        waiting_since=row.waiting_since, assignee=row.assignee,
    )


def _owned(exc: handoffs.OwnedByAnother) -> web.Response:
    return problem(409, f"the conversation is owned by another agent ({exc.owner})")


async def list_conversations(request: web.Request) -> web.Response:
    given = request.query.getall("status", [])
    status = given[0] if len(given) == 1 else None
    if len(given) > 1 or status is not None and status not in reads.STATUSES:
        return problem(400, f"status must be one of {', '.join(reads.STATUSES)}")
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as session:
        found = await reads.list_conversations(session, status=status, limit=1000, now=now)
    listed = ConversationList(conversations=[_summary(row) for row in found])
    return web.json_response(answer_body(listed))


async def get_conversation(request: web.Request) -> web.Response:
    phone = _phone(request)
    if isinstance(phone, web.Response):
        return phone
    now = request.config_dict[appkeys.CLOCK].now()
    flow = request.config_dict[appkeys.SETTINGS].flow
    async with request.config_dict[appkeys.DATABASE].session() as session:
        detail = await reads.conversation_detail(session, phone, now=now, flow=flow, panel=False)
    if detail is None:
        return problem(404, "no conversation with that number")
    document = ConversationDetail(
        **_summary(detail.row).model_dump(),
        messages=[
            ConversationMessage(direction=m.direction, author=m.author, body=m.body, at=m.at,
                                channel=m.channel, status=m.status)
            for m in detail.messages
        ],
    )
    return web.json_response(answer_body(document))


async def _conversation(session, phone: str) -> rows.Conversation | None:  # type: ignore[no-untyped-def]
    return await reads.get_conversation(session, phone, for_update=True)


async def claim(request: web.Request) -> web.Response:
    phone = _phone(request)
    if isinstance(phone, web.Response):
        return phone
    checked = await request_model(request, ClaimInput)
    if isinstance(checked, web.Response):
        return checked
    database = request.config_dict[appkeys.DATABASE]
    now = request.config_dict[appkeys.CLOCK].now()
    async with database.writer(), database.session() as session:
        conv = await _conversation(session, phone)
        if conv is None:
            return problem(404, "no conversation with that number")
        try:
            await replies.claim(session, conv, agent=checked.agent, now=now,
                                coordinator=request.config_dict[appkeys.COORDINATOR])
        except handoffs.OwnedByAnother as exc:
            return _owned(exc)
        except replies.Refused as exc:
            return problem(422, str(exc))
        claimed = Conversation(
            phone=conv.phone, account_id=await _account_ref(session, conv), status=conv.status,
            reason=conv.reason, waiting_since=conv.waiting_since, assignee=conv.assignee,
        )
    return web.json_response(answer_body(claimed))


async def _account_ref(session, conv: rows.Conversation) -> str | None:  # type: ignore[no-untyped-def]
    if conv.account_id is None:
        return None
    return await session.scalar(
        select(rows.Account.account_ref).where(rows.Account.id == conv.account_id)
    )


# The domain's refusals of a message, as the contract answers them.
_MESSAGE_STATUS = {
    replies.OptedOut: 409,
    replies.QuietHours: 409,
    replies.EmptyMessage: 422,
    replies.MessageTooLong: 422,
    replies.InvalidText: 422,
    replies.InvalidAgent: 422,
    replies.NotSent: 502,
}


async def post_message(request: web.Request) -> web.Response:
    phone = _phone(request)
    if isinstance(phone, web.Response):
        return phone
    checked = await request_model(request, AgentMessageInput)
    if isinstance(checked, web.Response):
        return checked
    database = request.config_dict[appkeys.DATABASE]
    now = request.config_dict[appkeys.CLOCK].now()
    async with database.writer(), database.session() as session:
        conv = await _conversation(session, phone)
        if conv is None:
            return problem(404, "no conversation with that number")
        try:
            sent = await replies.send_agent_message(
                session, request.config_dict[appkeys.PROVIDERS], conv, agent=checked.agent,
                body=checked.body, now=now, settings=request.config_dict[appkeys.SETTINGS],
                coordinator=request.config_dict[appkeys.COORDINATOR],
            )
        except handoffs.OwnedByAnother as exc:
            return _owned(exc)
        except replies.Refused as exc:
            return problem(_MESSAGE_STATUS.get(type(exc), 422), str(exc))
    queued = ConversationMessage(direction="out", author=f"agent:{checked.agent.strip()}",
                                 body=sent.body, at=now, channel="sms", status=sent.status)
    return web.json_response(answer_body(queued), status=201)


async def hand_back(request: web.Request) -> web.Response:
    phone = _phone(request)
    if isinstance(phone, web.Response):
        return phone
    checked = await request_model(request, HandBackInput, optional=True)
    if isinstance(checked, web.Response):
        return checked
    database = request.config_dict[appkeys.DATABASE]
    now = request.config_dict[appkeys.CLOCK].now()
    async with database.writer(), database.session() as session:
        conv = await _conversation(session, phone)
        if conv is None:
            return problem(404, "no conversation with that number")
        try:
            await replies.hand_back(
                session, conv, agent=checked.agent, now=now,
                providers=request.config_dict[appkeys.PROVIDERS],
                settings=request.config_dict[appkeys.SETTINGS],
                coordinator=request.config_dict[appkeys.COORDINATOR],
            )
        except replies.Refused as exc:
            return problem(422, str(exc))
    handed_back = HandedBack(phone=phone, handled_by="bot", status="resolved")
    return web.json_response(answer_body(handed_back))
