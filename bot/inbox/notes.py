"""Private notes on a conversation: written by staff for staff, never sent to the customer."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.coordination import Coordinator
from bot.inbox import feed
from bot.inbox.reads import NoteLine
from bot.inbox.replies import EmptyMessage, MessageTooLong, check_agent
from bot.ledger import queries as ledger
from bot.ledger.models import Conversation, Note

MAX_NOTE_CHARS = 4000


async def add_note(
    session: AsyncSession,
    conv: Conversation,
    *,
    author: str,
    body: str,
    now: datetime,
    coordinator: Coordinator | None = None,
) -> NoteLine:
    """Keep a note (``author``: the staff member's NAME); commits, then tells the feed. Raises
    EmptyMessage, MessageTooLong, InvalidAgent."""
    author = check_agent(author)
    text = body.replace("\r\n", "\n").strip()
    if not text:
        raise EmptyMessage("the note is empty")
    if len(text) > MAX_NOTE_CHARS:
        raise MessageTooLong(f"a note is at most {MAX_NOTE_CHARS} characters")
    note = Note(conversation_id=conv.id, author=author, body=text, created_at=now)
    session.add(note)
    await session.flush()
    await ledger.audit(session, "note_added", at=now, actor=f"agent:{author}",
                       account_id=conv.account_id, phone=conv.phone, note_id=note.id)
    await session.commit()
    await feed.publish(coordinator, feed.note(conv.phone, author=author, note_id=note.id,
                                              body=text, at=now))
    return NoteLine(id=note.id, author=author, body=text, at=now)


async def list_notes(session: AsyncSession, conv: Conversation) -> list[NoteLine]:
    """Oldest first."""
    notes = await session.scalars(
        select(Note).where(Note.conversation_id == conv.id).order_by(Note.id)
    )
    return [NoteLine(id=n.id, author=n.author, body=n.body, at=n.created_at) for n in notes]
