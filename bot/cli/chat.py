"""`paybot chat`: a conversation in the terminal as a phone number, through the real engine (the
demo's interactive part runs the same loop)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.cli.common import add_command, with_engine
from bot.config.settings import Settings

if TYPE_CHECKING:
    from bot.sms.engine import ConversationEngine


def register(sub: Any) -> None:
    chat = add_command(sub, "chat", _chat, beside_demo=True, quiet=True,
                       help="a conversation in the terminal, as a phone number")
    chat.add_argument("--phone", required=True, help="the customer's number, e.g. +15555550101")


def _chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.phones import InvalidPhone, normalize_phone

    try:
        phone = normalize_phone(args.phone)
    except InvalidPhone as exc:
        print(f"paybot chat: {exc}", file=sys.stderr)
        return 2
    print(f"Chatting as {phone}. Ctrl-D to stop.")
    asyncio.run(with_engine(settings, lambda engine, _app: chat_loop(engine, phone)))
    return 0


def made_up_sid(source: str, n: int) -> str:
    """A MessageSid for a message typed here (Twilio's never look like it): unique per run."""
    return f"{source}-{datetime.now(UTC).strftime('%Y%m%d%H%M%S%f')}-{n}"


async def chat_loop(engine: ConversationEngine, phone: str) -> None:
    from bot.sms.engine import Inbound

    n = 0
    while True:
        line = await asyncio.to_thread(_read_line)
        if line is None:
            return
        if not line.strip():
            continue
        n += 1
        for reply in await engine.receive(
            Inbound(phone=phone, body=line, sid=made_up_sid("chat", n), channel="chat")
        ):
            print("PayBot: " + reply.replace("\n", "\n        "), flush=True)


def _read_line() -> str | None:
    with contextlib.suppress(EOFError):
        return input("you> ")
    return None
