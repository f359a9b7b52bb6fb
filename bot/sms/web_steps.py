"""The portal's way into the payment flow the SMS conversation drives: a page's view of where
the flow stands, one form post as a step (under the conversation's lock), a method saved with
Stripe.js, and the text that tells an SMS customer what the web did."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.accounts.loading import record_saved_method
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Conversation, Message
from bot.providers.payments import SavedMethod
from bot.providers.sms import SmsError
from bot.sms.context import Services, Turn, TurnContext, WebStep
from bot.sms.parsing import Meaning
from bot.sms.payment_turns import PaymentTurns
from bot.sms.views import AccountViews
from states.replies import Reply

log = logging.getLogger(__name__)


class WebSteps:
    def __init__(self, services: Services, views: AccountViews, paying: PaymentTurns) -> None:
        self.services = services
        self.views = views
        self.paying = paying

    async def web_view(self, account_id: int, *, verified_by: str | None = None) -> WebStep:
        """Where the flow stands, to draw a page: a read, no lock, no write."""
        async with self.services.db.session() as session:
            account = await session.get(Account, account_id)
            if account is None:
                raise LookupError("no such account")
            now = self.services.clock.now()
            conv = await session.scalar(
                select(Conversation)
                .where(Conversation.account_id == account.id, Conversation.flow == "payment")
                .order_by(Conversation.updated_at.desc())
                .limit(1)
            )
            if conv is None:  # nothing yet on either channel: the flow starts at the beginning
                conv = Conversation(account_id=account.id, flow="payment", state="idle", context={})
            return WebStep(
                flow=await self.views.flow_for(session, conv, account, now, proved_by=verified_by),
                notices=[],
                brand=await self.views.brand_for(session, account),
            )

    async def web_step(
        self,
        account_id: int,
        meaning: Meaning | None = None,
        *,
        restart: bool = False,
        ip_address: str | None = None,
        user_agent: str | None = None,
        link_terms: dict[str, Any] | None = None,
        verified_by: str | None = None,
        expected_state: str | None = None,
    ) -> WebStep:
        """The portal's way in: the same flow instance the SMS conversation drives.

        ``expected_state`` is the step the form was drawn for: checked under the conversation
        lock, so a second click that read the page before the first one moved the flow on is
        answered as stale instead of being read in the next step."""
        db, views, machine = self.services.db, self.views, self.paying.machine
        turn = Turn(
            channel="web", ip_address=ip_address, user_agent=user_agent, verified_by=verified_by
        )
        async with db.session() as session:
            account = await session.get(Account, account_id)
            if account is None:
                raise LookupError("no such account")
            key = await self._conversation_key(session, account)
        async with self.services.coordinator.conversation_lock(key):
            # A writer, as an SMS turn is: on SQLite the check of what is open and the payment
            # it allows are then one writer's work.
            async with db.writer(), db.session() as session:
                account = await session.get(Account, account_id)
                assert account is not None
                now = self.services.clock.now()
                conv = await self._conversation_of(session, account, key, now)
                flow = await views.flow_for(session, conv, account, now, proved_by=verified_by)
                flow.link_terms = link_terms
                if expected_state is not None and conv.state != expected_state:
                    brand = await views.brand_for(session, account)
                    return WebStep(flow=flow, notices=[], brand=brand, stale=True)
                machine.add_model(flow, initial=conv.state)
                try:
                    if restart:
                        flow.restart()
                        flow.context = {}
                    if meaning is not None:
                        ctx = TurnContext(session=session, conv=conv, turn=turn, now=now)
                        await self.paying.advance(ctx, account, flow, meaning, None)
                    conv.state, conv.context = flow.state, dict(flow.context)
                    conv.updated_at = now
                    await session.commit()
                    view = await views.flow_for(
                        session, conv, account, now, proved_by=verified_by
                    )
                    brand = await views.brand_for(session, account)
                finally:
                    machine.remove_model(flow)
        await self.services.deliver_emails(turn)
        return WebStep(flow=view, notices=turn.replies, outcome=turn.outcome, brand=brand)

    async def method_saved(
        self,
        account_id: int,
        saved: SavedMethod,
        *,
        ip_address: str | None = None,
        user_agent: str | None = None,
        verified_by: str | None = None,
    ) -> WebStep:
        """A card or bank account saved on the web (Stripe.js): record it, and if the customer
        came from a text, move the conversation on and tell them by text.

        A session proved by knowledge answers only pays with it: it does not become the default,
        so plans and scheduled payments keep the method they have."""
        async with self.services.db.session() as session:
            account = await session.get(Account, account_id)
            assert account is not None
            now = self.services.clock.now()
            knowledge = verified_by == "knowledge"
            method = await record_saved_method(
                session, account, saved, at=now, default=not knowledge, channel="web",
                single_use=knowledge,
            )
            await session.commit()
            method_id = method.id
            key = await self._conversation_key(session, account)
            conv = await self._conversation_of(session, account, key, now)
            from_text = (conv.context or {}).get("last_channel") == "sms"
            await session.commit()
        if conv.state not in {"method", "awaiting_method"}:
            return await self.web_step(account_id, verified_by=verified_by)
        # Chosen by its own place in the method step's list (the kinds the creditor takes), so
        # Confirm shows the very method saved; one that is not in the list chooses nothing.
        listed = await self.web_step(account_id, verified_by=verified_by)
        methods = listed.flow.account.methods
        place = next((n for n, m in enumerate(methods, 1) if m.id == method_id), None)
        if place is None:
            return listed
        step = await self.web_step(
            account_id,
            Meaning("choice", place),
            ip_address=ip_address,
            user_agent=user_agent,
            verified_by=verified_by,
        )
        if from_text and not key.startswith("web:"):
            await self._text_after_web(key, account_id, step, saved)
        return step

    async def _text_after_web(
        self, phone: str, account_id: int, step: WebStep, saved: SavedMethod
    ) -> None:
        clock = self.services.clock
        async with self.services.db.session() as session:
            if await ledger.is_opted_out(session, phone):
                return
            account = await session.get(Account, account_id)
            assert account is not None
            label = "Card" if saved.kind == "card" else "Bank account"
            replies = [
                Reply("paypal_saved", {"masked": saved.label})  # no number: its email says which
                if saved.kind == "paypal"
                else Reply("method_saved", {"label": label, "last4": saved.last4}),
                step.flow.prompt(),
            ]
            texts = await self.views.render(session, None, account, replies, clock.now())
            conv = await session.scalar(select(Conversation).where(Conversation.phone == phone))
            for text in texts:
                try:
                    sent = await self.services.notifier.sms.send(to=phone, body=text)
                except SmsError:
                    log.warning("could not text the handoff confirmation")
                    return
                session.add(
                    Message(
                        conversation_id=conv.id if conv else None,
                        direction="outbound",
                        author="bot",
                        channel="sms",
                        provider_sid=sent.sid,
                        phone=phone,
                        body=text,
                        status=sent.status,
                        created_at=clock.now(),
                    )
                )
            await session.commit()

    async def _conversation_key(self, session: AsyncSession, account: Account) -> str:
        # The conversation already bound to the account wins: its number may have just changed.
        bound_key = await session.scalar(
            select(Conversation.phone)
            .where(Conversation.account_id == account.id, Conversation.flow == "payment")
            .order_by(Conversation.updated_at.desc())
            .limit(1)
        )
        if bound_key is not None:
            return bound_key
        if account.phone:
            bound = await session.scalar(
                select(Conversation.account_id).where(Conversation.phone == account.phone)
            )
            if bound in (None, account.id):
                return account.phone
        return f"web:{account.id}"

    async def _conversation_of(
        self, session: AsyncSession, account: Account, key: str, now: datetime
    ) -> Conversation:
        conv = await ledger.conversation_for(session, key, at=now)
        if conv.account_id != account.id or conv.flow != "payment":
            conv.account_id = account.id
            conv.flow, conv.state, conv.context = "payment", "idle", {}
        return conv
