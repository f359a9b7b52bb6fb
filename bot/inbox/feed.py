"""The agents' live feed (Redis pub/sub channel ``bot.coordination.AGENT_FEED``): every event is
one JSON object with a ``type``, the conversation's ``phone`` and ``at`` (ISO 8601, UTC). The
console (agent_console/) subscribes; it is told, never asked, so a missed event is caught up by
reading the ledger again (bot/inbox/reads.py).

Written by the engine, inside a turn (bot/sms/engine.py, handover.py), as the lock is let go:

- ``{"type": "message", "phone", "conversation_id", "inbound": TEXT, "replies": [TEXT, ...],
  "state", "status", "at"}``: a customer's message and the bot's replies (none while an agent
  has the conversation).
- ``{"type": "needs_agent", "phone", "reason", "text", "at"}``: the bot handed over.
- ``{"type": "bot_resumed", "phone", "at"}``: the customer took the conversation back (MENU).

Written here, by an agent's action, once its transaction is committed (``publish``):

- ``{"type": "claimed", "phone", "agent": NAME, "previous": NAME | null, "at"}``
- ``{"type": "agent_message", "phone", "agent": NAME, "author": "agent:NAME", "body",
  "message_id", "status": Twilio's status ("queued", ...), "at"}``
- ``{"type": "resolved", "phone", "by": "agent:NAME", "at"}``: handed back to the bot.
- ``{"type": "note", "phone", "author": NAME, "note_id", "body", "at"}``: a private note (the
  feed reaches staff only).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.coordination import Coordinator


def claimed(phone: str, *, agent: str, previous: str | None, at: datetime) -> dict[str, Any]:
    return {"type": "claimed", "phone": phone, "agent": agent, "previous": previous,
            "at": at.isoformat()}


def agent_message(
    phone: str, *, agent: str, body: str, message_id: int, status: str | None, at: datetime
) -> dict[str, Any]:
    return {"type": "agent_message", "phone": phone, "agent": agent, "author": f"agent:{agent}",
            "body": body, "message_id": message_id, "status": status, "at": at.isoformat()}


def resolved(phone: str, *, by: str, at: datetime) -> dict[str, Any]:
    return {"type": "resolved", "phone": phone, "by": by, "at": at.isoformat()}


def note(phone: str, *, author: str, note_id: int, body: str, at: datetime) -> dict[str, Any]:
    return {"type": "note", "phone": phone, "author": author, "note_id": note_id, "body": body,
            "at": at.isoformat()}


async def publish(coordinator: Coordinator | None, event: dict[str, Any]) -> None:
    """After the commit (a console told before it could read the change would read the past);
    no coordinator (a CLI, a test of the domain alone) tells no one."""
    if coordinator is not None:
        await coordinator.publish(event)
