"""The conversation engine: one inbound message in, the replies out, the ledger written between.

Order of work for each message (the guarantees of DESIGN.md):
1. the inbound message is stored (its MessageSid is unique: a retry is answered from the ledger);
2. the conversation's Redis lock is taken, so one message of a conversation runs at a time;
3. keywords (STOP, HELP, AGENT, ...) are handled in any state, then the flow reads the reply;
4. side effects the flow asked for run through the services (ledger, processor);
5. the state is checkpointed, the replies rendered and stored, all in one commit;
6. the texts are returned for the channel to send; emails go out after the commit.

The engine is the router: each flow's turns live in their own unit (payment_turns, plan_turns,
verification, web_steps, contacts), what is shown of an account in views.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import logs, metrics
from bot.accounts import second_factor
from bot.config.settings import Settings
from bot.coordination import Coordinator
from bot.inbox import handoffs
from bot.ledger import queries as ledger
from bot.ledger.db import Database
from bot.ledger.models import Account, Conversation
from bot.outreach.notifications import Notifier
from bot.payments.service import PaymentService
from bot.plans.agreement_copy import send_agreement_copy
from bot.sms.contacts import ContactTurns
from bot.sms.context import Inbound, Services, StoredInbound, Turn, TurnContext, WebStep
from bot.sms.handover import HANDING_OVER, bot_answers, hand_to_agent
from bot.sms.introduction import who_we_are
from bot.sms.parsing import Meaning, classify_keyword
from bot.sms.parsing.language import looks_spanish
from bot.sms.parsing.words import reply_words
from bot.sms.payment_turns import PaymentTurns, reads_as_pay
from bot.sms.plan_turns import PLAN_FLOW, PlanTurns
from bot.sms.recovery import TurnFailed, TurnRecovery
from bot.sms.verification import VerificationTurns
from bot.sms.views import AccountViews, limited_to_proof
from bot.sms.web_steps import WebSteps
from bot.text import i18n
from bot.text.rendering import SmsRenderer
from states import payment as payment_flow
from states import plan_change as plan_flow
from states.replies import Reply

__all__ = [
    "ConversationEngine", "Inbound", "StoredInbound", "Turn", "TurnFailed", "WebStep",
    "limited_to_proof",
]

log = logging.getLogger(__name__)


class ConversationEngine:
    """The router: store the message, take the conversation's lock, route by flow (keywords,
    verification, plan, payment), checkpoint, reply; and the portal's door to the same flows."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        coordinator: Coordinator,
        payments: PaymentService,
        notifier: Notifier,
        clock: Any,
        renderer: SmsRenderer | None = None,
    ) -> None:
        self.services = Services(
            settings=settings,
            db=db,
            coordinator=coordinator,
            payments=payments,
            notifier=notifier,
            clock=clock,
            renderer=renderer or SmsRenderer(),
        )
        self.settings = settings
        self.db = db
        self.coordinator = coordinator
        self.payments = payments
        self.notifier = notifier
        self.clock = clock
        self.renderer = self.services.renderer
        self._deliveries: set[asyncio.Task[None]] = set()  # emails sent after their reply
        self._running: dict[int, asyncio.Event] = {}  # inbound message id -> set when it ends
        self.recovery = TurnRecovery(self.services)
        self.apology = self.recovery.apology
        self.views = AccountViews(self.services)
        contacts = ContactTurns(self.services, self.views)
        self.paying = PaymentTurns(self.services, self.views, contacts)
        self.plans = PlanTurns(self.services, self.views)
        self.verifying = VerificationTurns(self.services, self.views)
        self.web = WebSteps(self.services, self.views, self.paying)
        # The portal's way into the same flows (see WebSteps), and what the portal, the webhooks
        # and the API read of an account (see AccountViews).
        self.web_view = self.web.web_view
        self.web_step = self.web.web_step
        self.method_saved = self.web.method_saved
        self.brand_for = self.views.brand_for
        self.flow_settings = self.views.flow_settings
        self.code_sender = self.views.code_sender
        # One machine per flow for the process; each message adds its model and removes it.
        self.payment_machine = self.paying.machine
        self.verification_machine = self.verifying.machine
        self.plan_machine = self.plans.machine

    # ------------------------------------------------------------------ entry point

    async def receive(self, inbound: Inbound, *, reply_first: bool = False) -> list[str]:
        """Answer one inbound message. The emails the turn asked for (receipts, agreement
        copies) go out before this returns, or, with `reply_first` (the SMS webhook), after:
        the reply does not wait on the email provider's round trip. `settled()` waits for them.
        Every line logged meanwhile names the conversation by its tag (never the phone).
        """
        with logs.scope(conversation=logs.conversation_tag(self.settings.secret_key,
                                                           inbound.phone)):
            return await self._receive(inbound, reply_first=reply_first)

    async def _receive(self, inbound: Inbound, *, reply_first: bool) -> list[str]:
        started = time.perf_counter()
        sid = inbound.sid or f"local-{uuid.uuid4().hex}"
        body = _printable(inbound.body)[:1600]
        at = self.clock.now()
        message_id, _created = await self.db.autocommit_once(
            lambda connection: ledger.store_inbound(
                connection, phone=inbound.phone, body=body, sid=sid, channel=inbound.channel, at=at
            )
        )
        metrics.INBOUND_MESSAGES.labels(inbound.channel).inc()
        message = StoredInbound(id=message_id, phone=inbound.phone, body=body)
        outcome = "failed"
        # Another attempt at this very message running in this process (a retry that came while
        # the first was still at work): the retry waits for it rather than guess (TurnRecovery).
        earlier = self._running.get(message_id)
        running = self._running.setdefault(message_id, asyncio.Event())
        try:
            async with self.coordinator.conversation_lock(inbound.phone) as held:
                try:
                    async with self.db.writer(), self.db.session() as session:
                        processed = await self._process(session, message, inbound.channel)
                        if processed is None:
                            # The same MessageSid again: answered once, processed once.
                            outcome = "duplicate"
                            answered = await ledger.reply_texts(session, message.id)
                    if processed is None:
                        return answered or await self.recovery.unanswered(message, earlier)
                except Exception as error:
                    # Part of the turn may be committed (a payment commits before its charge):
                    # the customer is told in words that cannot make them pay twice, and the
                    # apology is stored while the lock is held, so the retry finds it.
                    raise TurnFailed(await self.recovery.apologize(message)) from error
                turn, texts = processed
                held.events.extend(turn.events)  # told to the agents as the lock is let go
            outcome = "answered"
        except TurnFailed:
            raise
        except Exception as error:  # the lock was not had: this attempt claimed nothing
            raise TurnFailed(await self.recovery.apologize(message, claimable=False)) from error
        finally:
            if earlier is None:
                running.set()
                self._running.pop(message_id, None)
            metrics.TURNS.labels(outcome).inc()
            metrics.TURN_SECONDS.observe(time.perf_counter() - started)
        if reply_first:
            if turn.queued_emails or turn.agreement_copies or turn.codes:
                self.after_reply(self._deliver(turn))
        else:
            await self._deliver(turn)
        return texts

    def after_reply(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` (a send) while the reply goes out; `settled()` waits for it, and so does
        the app's shutdown, so nothing handed over here is dropped."""
        delivery = asyncio.get_running_loop().create_task(work)
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)

    async def _deliver(self, turn: Turn) -> None:
        """What a turn sends (codes, emails), once its reply is decided and committed."""
        for code in turn.codes:
            await second_factor.send_code(self.notifier, code)
        await self.services.deliver_emails(turn)
        for plan_id in turn.agreement_copies:
            try:
                await send_agreement_copy(self.db, self.notifier, plan_id=plan_id,
                                          clock=self.clock, default_brand=self.settings.brand)
            except Exception:  # the plan is signed and told; the worker sends the copy
                log.exception("agreement copy for plan %d not sent", plan_id)

    async def settled(self) -> None:
        """Wait until the emails of every turn answered so far are sent (shutdown, tests)."""
        while self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)

    # ------------------------------------------------------------------ one message

    async def _process(
        self, session: AsyncSession, message: StoredInbound, channel: str
    ) -> tuple[Turn, list[str]] | None:
        """One turn, in one transaction; None when the message was already processed."""
        now = self.clock.now()
        # Claimed under the lock, before any side effect: another process may have answered it.
        at_hand = await ledger.claim_with_conversation_at_hand(
            session, message.id, message.phone, at=now
        )
        if at_hand is None:
            return None
        conversation, account, opted_out = at_hand
        logs.bind(account_id=conversation.account_id)
        turn = Turn(channel=channel)
        if account is None:
            account = await self._account_of(session, conversation)
        ctx = TurnContext(session=session, conv=conversation, turn=turn, now=now)
        # Texts worked out in Python during the turn (reasons, dates) follow the language too.
        with i18n.using(language_of(conversation, account)):
            await self._handle(ctx, account, message, opted_out=opted_out)
        conversation.last_inbound_at = now
        conversation.updated_at = now
        account = await self._account_of(session, conversation)
        logs.bind(account_id=conversation.account_id)  # a number just verified has one now
        # A number just verified adopts its account's language, unless it chose one already.
        language = turn.language or language_of(conversation, account)
        texts = await self.views.render(
            session, conversation, account, turn.replies, now, language=language
        )
        await ledger.store_replies(
            session,
            texts,
            inbound_id=message.id,
            conversation_id=conversation.id,
            phone=message.phone,
            channel=channel,
            at=now,
        )
        turn.events.append(
            {
                "type": "message",
                "phone": message.phone,
                "conversation_id": conversation.id,
                "inbound": message.body,
                "replies": texts,
                "state": conversation.state,
                "status": conversation.status,
                "at": now.isoformat(),
            }
        )
        await session.commit()
        log.info("turn answered", extra={"channel": channel, "flow": conversation.flow,
                                         "state": conversation.state, "replies": len(texts)})
        return turn, texts

    async def _account_of(self, session: AsyncSession, conv: Conversation) -> Account | None:
        if conv.account_id is None:
            account = await ledger.account_by_phone(session, conv.phone)
            if account is None:
                return None
            # The number is on file for the account: that is who we texted.
            conv.account_id = account.id
            conv.flow, conv.state, conv.context = "payment", "idle", {}
            return account
        return await session.get(Account, conv.account_id)

    async def _handle(
        self, ctx: TurnContext, account: Account | None, message: StoredInbound, *, opted_out: bool
    ) -> None:
        """Keywords first, in any state; then the flow the conversation is in."""
        session, conv, turn, now = ctx.session, ctx.conv, ctx.turn, ctx.now
        keyword = classify_keyword(message.body)
        kind = keyword.kind if keyword else None

        if kind == "opt_out":
            if not opted_out:  # confirmed once, at once, with nothing else in it
                await ledger.set_opt_out(
                    session, conv.phone, opted_out=True, keyword=message.body, channel="sms", at=now
                )
                turn.replies.append(Reply("opt_out_confirmed"))
                if language_of(conv, account) == "en" and looks_spanish(message.body):
                    turn.language = "es"  # ALTO is confirmed in Spanish, and nothing else said
            if conv.flow in {"payment", PLAN_FLOW}:  # nothing half done is picked up later
                conv.flow, conv.state, conv.context = "payment", "idle", {}
            return
        if opted_out:
            if kind == "opt_in":
                await ledger.set_opt_out(
                    session,
                    conv.phone,
                    opted_out=False,
                    keyword=message.body,
                    channel="sms",
                    at=now,
                )
                turn.replies.append(Reply("opt_in_confirmed"))
            return  # nothing else is ever sent to an opted-out number
        if kind in ("spanish", "english"):
            await self._switch_language(ctx, account, message, keyword)
            return
        english = language_of(conv, account) == "en"
        spanish_first = (
            english and conv.language_asked_at is None and looks_spanish(message.body)
        )
        undecided = english and conv.language is None  # ENGLISH chosen: English it stays
        if spanish_first:
            # Answered in Spanish, as well as the parser reads it, and Spanish offered once.
            turn.language = i18n.set_language("es")
        elif undecided and conv.language_asked_at is not None and (
            reply_words(message.body) in SPANISH_YES
        ):
            # "si" after "¿Prefiere español?" confirms Spanish (the issue: detected, then
            # confirmed once), and is the yes the question it came with wanted too.
            _choose_language(conv, account, "es")
        await self._route(ctx, account, message, keyword)
        if spanish_first and turn.replies:
            conv.language_asked_at = now
            turn.replies.append(Reply("language_offer"))

    async def _route(
        self, ctx: TurnContext, account: Account | None, message: StoredInbound,
        keyword: Meaning | None,
    ) -> None:
        """A message for whoever has the conversation: a person, the handover, verification of
        an unknown number, or the flows."""
        session, conv, turn, now = ctx.session, ctx.conv, ctx.turn, ctx.now
        kind = keyword.kind if keyword else None
        if kind == "help":
            turn.replies.append(Reply("help"))
            return
        if kind == "who":  # who is texting, the disclosure, the support contact; as HELP is
            turn.replies.append(await who_we_are(ctx, account))
            return
        if kind == "opt_in":  # START is answered whoever has the conversation, as HELP is
            turn.replies.append(Reply("opt_in_confirmed"))
            return
        if conv.status in ("waiting", "agent"):
            # The agents' own desk (PAYBOT_AGENT_WEBHOOK_URL) hears what the customer wrote.
            await handoffs.customer_wrote(
                session, conv, text=message.body, channel=turn.channel, at=now
            )
            # A person has it, or was asked for: MENU (and, while no one has claimed it, PAY,
            # BALANCE, LINK) bring the bot back; the rest is stored and on the agents' feed.
            pay = keyword is None and reads_as_pay(message.body)
            if not await bot_answers(ctx, self.views, account, kind, reads_as_pay=pay):
                return
        if kind in HANDING_OVER:  # AGENT, a complaint, a wrong number, a dispute, a hardship
            await hand_to_agent(ctx, self.views, account, reason=kind, text=message.body)
            return
        if account is None:
            await self.verifying.answer(ctx, message, keyword)
            return
        await self._converse(ctx, account, message, keyword)

    async def _switch_language(
        self, ctx: TurnContext, account: Account | None, message: StoredInbound, keyword: Meaning
    ) -> None:
        """ESPAÑOL / ENGLISH: the conversation's language from now on, said in it, with the
        question the customer was at (none while a person has the conversation)."""
        conv = ctx.conv
        _choose_language(conv, account, "es" if keyword.kind == "spanish" else "en")
        ctx.turn.replies.append(Reply("language_set"))
        if conv.status in ("waiting", "agent"):
            return
        if account is None:
            await self.verifying.answer(ctx, message, keyword)  # asks again where it stands
            return
        ctx.turn.replies.append(await self._current_question(ctx, account))

    async def _current_question(self, ctx: TurnContext, account: Account) -> Reply:
        session, conv = ctx.session, ctx.conv
        if conv.flow == PLAN_FLOW and conv.state in plan_flow.STATES and conv.state != "idle":
            settings = await self.views.flow_settings(session, account)
            plan = await self.plans._plan_flow_for(ctx, account, settings)
            self.plan_machine.add_model(plan, initial=conv.state)
            try:
                return plan.prompt()
            finally:
                self.plan_machine.remove_model(plan)
        if conv.flow == "payment" and conv.state in payment_flow.STATES and conv.state != "idle":
            return (await self.views.flow_for(session, conv, account, ctx.now)).prompt()
        return await self.views.idle_prompt(session, account, ctx.now)

    async def _converse(
        self, ctx: TurnContext, account: Account, message: StoredInbound, keyword: Meaning | None
    ) -> None:
        """A known account's text: a stale session starts over, then the plan flow or the
        payment flow has it."""
        session, conv, turn, now = ctx.session, ctx.conv, ctx.turn, ctx.now
        settings = await self.views.flow_settings(session, account)
        if conv.flow not in {"payment", PLAN_FLOW}:
            conv.flow, conv.state, conv.context = "payment", "idle", {}
        idle_for = now - conv.last_inbound_at if conv.last_inbound_at else timedelta(0)
        if conv.state != "idle" and idle_for > timedelta(minutes=settings.session_timeout_minutes):
            conv.flow, conv.state, conv.context = "payment", "idle", {}
            turn.replies.append(Reply("timed_out"))
            if keyword is None and reads_as_pay(message.body):
                pass  # fall through: PAY after a timeout starts right away
            elif keyword is None:
                turn.replies.append(await self.views.idle_prompt(session, account, now))
                return

        if await self.plans.is_about_a_plan(ctx, account, message, keyword):
            await self.plans.answer(ctx, account, message, keyword, settings)
            return
        await self.paying.answer(ctx, account, message, keyword, settings)


def _choose_language(conv: Conversation, account: Account | None, language: str) -> None:
    """The customer's own choice: this conversation's, and its account's too, so that the
    emails (receipts, plan letters, sent after the turn in the account's language) follow it."""
    conv.language = i18n.set_language(language)
    if account is not None:
        account.language = language


# A plain Spanish yes (accents stripped by reply_words).
SPANISH_YES = (["si"], ["si", "por", "favor"], ["si", "gracias"], ["claro"], ["claro", "que", "si"])


def language_of(conv: Conversation, account: Account | None) -> str:
    """The conversation's own choice, else its account's language, else English."""
    return i18n.language_for(conv.language, account.language if account is not None else None)


_CONTROL = dict.fromkeys(c for c in range(32) if c not in (9, 10, 13))


def _printable(text: str) -> str:
    """Control characters (NUL above all, which PostgreSQL text refuses) are not kept."""
    return text.translate(_CONTROL).encode("utf-8", "replace").decode("utf-8")
