"""The conversations resource: an agent hands a conversation back to the bot, which starts
again from the main menu."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from bot import appkeys
from bot.api.documents import HandedBack, answer_body
from bot.api.problems import problem
from bot.inbox import handoffs
from bot.ledger.models import Conversation
from bot.phones import InvalidPhone, normalize_phone


async def hand_back(request: web.Request) -> web.Response:
    raw = request.match_info["phone"]
    try:
        if len(raw) > 30:
            raise InvalidPhone(raw)
        phone = normalize_phone(raw)
    except InvalidPhone:
        return problem(400, "not a phone number")
    clock = request.config_dict[appkeys.CLOCK]
    async with request.config_dict[appkeys.DATABASE].session() as session:
        conversation = await session.scalar(select(Conversation).where(Conversation.phone == phone))
        if conversation is None:
            return problem(404, "no conversation with that number")
        await handoffs.resolve(session, conversation, by="agent", at=clock.now())
        await session.commit()
    handed_back = HandedBack(phone=phone, handled_by="bot", status="resolved")
    return web.json_response(answer_body(handed_back))
