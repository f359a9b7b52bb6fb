"""A turn that failed: the apology that cannot make a customer pay twice, stored as the message's
reply when part of the turn stayed committed, and what a retry of such a message is answered.

May import what the engine may (ledger, text, the engine's context)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bot.ledger import queries as ledger
from bot.ledger.models import Account, Conversation
from bot.sms.context import Services, StoredInbound
from bot.sms.parsing import classify_keyword
from bot.text import i18n
from states.replies import Reply

log = logging.getLogger(__name__)

# How long a retry waits for another process's attempt at the same message (its lock lost with
# Redis) before it apologizes: within Twilio's 15 s, so the retry itself is answered.
RETRY_WAIT_SECONDS = 10.0


class TurnFailed(Exception):
    """A message could not be answered; `texts` is what the customer is told (the apology,
    already stored as the message's reply when part of the turn was committed)."""

    def __init__(self, texts: list[str]) -> None:
        super().__init__("the turn failed")
        self.texts = texts


class TurnRecovery:
    """The engine's failure and retry paths: apologize for a failed turn, answer a retry of a
    message claimed and not answered."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def apology(self, language: str = "en") -> list[str]:
        """What a customer is told when their message could not be answered: never "try
        again", as the turn may have recorded (and charged) a payment before it failed."""
        return [self.services.renderer.render(Reply("turn_failed"), {}, language)]

    async def apologize(self, message: StoredInbound, *, claimable: bool = True) -> list[str]:
        """The apology for a turn that failed, in the conversation's language. When the message
        stayed claimed (a commit inside the turn kept the claim: its retry would never be
        processed) it is stored as the message's reply, in a transaction of its own, so every
        retry gets the same and the transcript shows it; otherwise it is only said, and the
        retry processes the message anew. An opted-out number, or a message that opts out
        (processed on its retry), gets nothing."""
        try:
            async with self.services.db.writer(), self.services.db.session() as session:
                standing = await ledger.inbound_standing(session, message.id, message.phone)
                if standing.opted_out or (
                    standing.claimed_at is None and _opts_out(message.body)
                ):
                    return []
                texts = self.apology(language_of_either(standing.conversation, standing.account))
                if not claimable or standing.claimed_at is None:
                    return texts
                now, conversation = self.services.clock.now(), standing.conversation
                # The consoles showing the conversation see the apology as they see a turn.
                event = conversation and {
                    "type": "message", "phone": message.phone, "conversation_id": conversation.id,
                    "inbound": message.body, "replies": texts, "state": conversation.state,
                    "status": conversation.status, "at": now.isoformat(),
                }
                stored = await ledger.store_apology(session, message.id, texts, at=now)
                await session.commit()
            if stored is texts and event:
                await self.services.coordinator.publish(event)
            return stored
        except Exception:
            log.exception("message %d: the apology was not stored", message.id)
            return self.apology()

    async def unanswered(self, message: StoredInbound, earlier: asyncio.Event | None) -> list[str]:
        """A retry of a message that was claimed and has no reply. An attempt still at work on it
        is waited for and its answer given (the retry must not apologize for a turn that then
        succeeds); a turn that finished in silence (an opted-out number, a person's
        conversation) is answered with silence again; a turn whose process died after a commit
        inside it (kill -9 during the charge) gets the apology, stored."""
        if earlier is not None:  # in this process: its end is an event
            log.info("message %d: a retry waits for the attempt at work on it", message.id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.services.coordinator.lock_timeout):
                    await earlier.wait()
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + RETRY_WAIT_SECONDS
        pause = 0.02
        while True:
            async with self.services.db.session() as session:
                standing = await ledger.inbound_standing(session, message.id, message.phone)
            if standing.replies or standing.finished:
                return standing.replies
            assert standing.claimed_at is not None
            # We hold the conversation's lock: another process's attempt could still run only if
            # the shared Redis lost its lock (FLUSHALL, a restart) within a lock's lifetime.
            age = (self.services.clock.now() - standing.claimed_at).total_seconds()
            if (
                not self.services.settings.redis_url
                or age >= self.services.coordinator.lock_timeout
                or loop.time() >= give_up_at
            ):
                return await self.apologize(message)
            await asyncio.sleep(pause)  # another process's turn: only the ledger tells its end
            pause = min(pause * 2, 0.5)


def language_of_either(conv: Conversation | None, account: Account | None) -> str:
    """The conversation's language, for a number that may have no conversation yet."""
    return i18n.language_for(conv.language if conv is not None else None,
                             account.language if account is not None else None)


def _opts_out(body: str) -> bool:
    keyword = classify_keyword(body)
    return keyword is not None and keyword.kind == "opt_out"
