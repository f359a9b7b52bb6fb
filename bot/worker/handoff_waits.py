"""The worker's handoff job each pass: no customer who asked for a person is left waiting in
silence longer than the creditor's ``agent_wait_minutes``.

* **Unclaimed requests time out.** A ``waiting`` request no agent claimed within the wait
  (counted from when agents are in: a request made at night waits from the morning, as its reply
  said) is timed out (``handoffs.time_out``: ``timed_out_at``, and the bot answers again), the
  customer is told so, and the request stays in the queue. A customer who asks again after that
  waits again, from the reply to that ask. A wrong-number report is not timed out: no one there
  waits for a person.
* **An agent's silence.** A conversation an agent owns whose customer's last message is older
  than the wait, with nothing sent since, gets one "NAME has your message" text.

Each candidate is read ``FOR UPDATE SKIP LOCKED`` (PostgreSQL: two workers take disjoint rows;
SQLite has one writer) and checked again under the lock; the text is written to the ledger as
``sending`` and committed before it leaves, so it goes at most once, as outreach does. These
texts answer the customer's own request, so they are not held for quiet hours; an opted-out
number gets nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock
from bot.config.flow import FlowSettings
from bot.config.settings import Settings
from bot.inbox import handoffs
from bot.ledger import queries as ledger
from bot.ledger.db import Database
from bot.ledger.models import Account, Conversation, Handoff, Message
from bot.outreach.notifications import Notifier
from bot.providers.sms import RecipientOptedOut, SmsError
from bot.text import i18n
from bot.text.rendering import SmsRenderer
from bot.worker.config import PassReport
from bot.worker.rate_limits import RateLimiter
from states.replies import Reply

log = logging.getLogger(__name__)

SHORTEST_WAIT = timedelta(minutes=1)  # agent_wait_minutes is at least 1: nothing younger is due
# Not told yet: never timed out, or asked for a person again since (the bot no longer answers).
_NOT_TOLD = or_(Handoff.timed_out_at.is_(None), Handoff.bot_resumed_at.is_(None))


class HandoffWaits:
    def __init__(
        self,
        *,
        database: Database,
        notifier: Notifier,
        settings: Settings,
        clock: Clock,
        sms_limiter: RateLimiter,
    ) -> None:
        self.database = database
        self.notifier = notifier
        self.settings = settings
        self.clock = clock
        self.sms_limiter = sms_limiter
        self.renderer = SmsRenderer()

    async def run(self, report: PassReport) -> None:
        """Time out unclaimed requests, then tell customers an agent has not answered yet."""
        try:
            for handoff_id in await self._waiting_ids():
                sent = await self._time_out(handoff_id)
                if sent is not None:
                    report.handoffs_timed_out += 1
                    await self._send(*sent)
            for conversation_id in await self._agent_owned_ids():
                sent = await self._tell_agent_has_it(conversation_id)
                if sent is not None:
                    report.agent_waits_told += 1
                    await self._send(*sent)
        except Exception:
            report.errors += 1
            log.exception("handoff waits not completed this pass")

    # ------------------------------------------------------------------ unclaimed requests

    async def _waiting_ids(self) -> list[int]:
        oldest = self.clock.now() - SHORTEST_WAIT
        async with self.database.session() as session:
            return list(await session.scalars(
                select(Handoff.id)
                .join(Conversation, Conversation.handoff_id == Handoff.id)
                .where(Conversation.status == "waiting", _NOT_TOLD,
                       Handoff.claimed_at.is_(None), Handoff.resolved_at.is_(None),
                       Handoff.reason != "wrong_number", Handoff.requested_at <= oldest)
                .order_by(Handoff.requested_at, Handoff.id)
            ))

    async def _time_out(self, handoff_id: int) -> tuple[int, str, str] | None:
        """Timed out under the lock, and the customer's text written as ``sending``: (message
        id, phone, body) to send after the commit, or None (not due, taken, or not texted)."""
        now = self.clock.now()
        async with self.database.writer(), self.database.session() as session:
            row = (await session.execute(
                select(Handoff, Conversation)
                .join(Conversation, Conversation.handoff_id == Handoff.id)
                .where(Handoff.id == handoff_id, Conversation.status == "waiting", _NOT_TOLD,
                       Handoff.claimed_at.is_(None), Handoff.resolved_at.is_(None))
                .with_for_update(skip_locked=True, of=Handoff)
            )).first()
            if row is None:
                return None  # claimed, resolved or timed out meanwhile, or another worker has it
            handoff, conv = row
            account, flow = await self._account_and_flow(session, conv)
            # Agents' wait counts from when they are in (the reply said when that is), from the
            # request or, asked again after a time-out, from the reply to that ask.
            asked = handoff.requested_at
            if handoff.timed_out_at is not None:
                asked = await session.scalar(
                    select(func.max(Message.created_at))
                    .where(Message.conversation_id == conv.id, Message.direction == "outbound")
                ) or asked
            opens = flow.agents_back(asked) or asked
            if now < opens + timedelta(minutes=flow.agent_wait_minutes):
                return None
            await handoffs.time_out(session, conv, handoff, at=now)
            sent = await self._write_text(session, conv, account, Reply("agent_timed_out"), now)
            await session.commit()
        return sent

    # ------------------------------------------------------------------ an agent's silence

    async def _agent_owned_ids(self) -> list[int]:
        oldest = self.clock.now() - SHORTEST_WAIT
        async with self.database.session() as session:
            return list(await session.scalars(
                select(Conversation.id)
                .where(Conversation.status == "agent", Conversation.last_inbound_at <= oldest)
                .order_by(Conversation.last_inbound_at, Conversation.id)
            ))

    async def _tell_agent_has_it(self, conversation_id: int) -> tuple[int, str, str] | None:
        now = self.clock.now()
        async with self.database.writer(), self.database.session() as session:
            conv = await session.scalar(
                select(Conversation)
                .where(Conversation.id == conversation_id, Conversation.status == "agent")
                .with_for_update(skip_locked=True)
            )
            if conv is None:
                return None
            last_in = (await session.execute(
                select(Message.id, Message.created_at)
                .where(Message.conversation_id == conv.id, Message.direction == "inbound")
                .order_by(Message.id.desc()).limit(1)
            )).first()
            if last_in is None:
                return None
            account, flow = await self._account_and_flow(session, conv)
            if now - last_in.created_at < timedelta(minutes=flow.agent_wait_minutes):
                return None
            answered = await session.scalar(
                select(func.count()).select_from(Message)
                .where(Message.conversation_id == conv.id, Message.direction == "outbound",
                       Message.id > last_in.id)
            )
            if answered:
                return None  # the agent (or this job, once) has answered since
            wait = flow.agent_wait(now, account.timezone if account is not None else None)
            reply = Reply("agent_has_it", {"agent": conv.assignee or "Our team", "wait": wait})
            sent = await self._write_text(session, conv, account, reply, now)
            await ledger.audit(session, "agent_wait_told", at=now, account_id=conv.account_id,
                               phone=conv.phone, agent=conv.assignee)
            await session.commit()
        return sent

    # ------------------------------------------------------------------ texts

    async def _account_and_flow(
        self, session: AsyncSession, conv: Conversation
    ) -> tuple[Account | None, FlowSettings]:
        account = await session.get(Account, conv.account_id) if conv.account_id else None
        creditor = await ledger.creditor_of(session, account) if account is not None else None
        return account, self.settings.flow.for_creditor(creditor)

    async def _write_text(
        self, session: AsyncSession, conv: Conversation, account: Account | None, reply: Reply,
        now: datetime,
    ) -> tuple[int, str, str] | None:
        """The text in the ledger, ``sending``, before it leaves: a crash after the commit never
        sends it twice. None for an opted-out number (nothing is ever sent to it)."""
        if await ledger.is_opted_out(session, conv.phone):
            return None
        brand = self.settings.brand
        if account is not None and (creditor := await ledger.creditor_of(session, account)):
            brand = creditor.brand or creditor.name or brand
        base: dict[str, Any] = {"brand": brand, "support_contact": self.settings.support_contact,
                                "first_name": account.first_name if account else ""}
        language = i18n.language_for(conv.language, account.language if account else None)
        body = self.renderer.render(reply, base, language)
        message = Message(conversation_id=conv.id, direction="outbound", channel="sms",
                          phone=conv.phone, body=body, status="sending", author="bot",
                          created_at=now)
        session.add(message)
        await session.flush()
        return message.id, conv.phone, body

    async def _send(self, message_id: int, phone: str, body: str) -> None:
        status, sid, error = "failed", None, None
        try:
            await self.sms_limiter.acquire()
            result = await self.notifier.sms.send(
                to=phone, body=body,
                status_callback=f"{self.settings.public_base_url}/webhooks/twilio/status",
            )
        except RecipientOptedOut:
            error = "21610"
            async with self.database.writer(), self.database.session() as session:
                await ledger.set_opt_out(session, phone, opted_out=True, keyword="carrier 21610",
                                         channel="carrier", at=self.clock.now())
                await session.commit()
        except SmsError as exc:
            error = str(exc.code or "error")[:10]
            log.warning("handoff wait text %d not sent (%s)", message_id, error)
        else:
            status, sid = result.status, result.sid
        async with self.database.writer(), self.database.session() as session:
            message = await session.get(Message, message_id)
            if message is not None:
                message.status, message.provider_sid, message.error_code = status, sid, error
                await session.commit()
