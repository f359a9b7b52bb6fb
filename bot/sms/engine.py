"""The conversation engine: one inbound message in, the replies out, the ledger written between.

Order of work for each message (the guarantees of DESIGN.md):
1. the inbound message is stored (its MessageSid is unique: a retry is answered from the ledger);
2. the conversation's Redis lock is taken, so one message of a conversation runs at a time;
3. keywords (STOP, HELP, AGENT, ...) are handled in any state, then the flow reads the reply;
4. side effects the flow asked for run through the services (ledger, processor);
5. the state is checkpointed, the replies rendered and stored, all in one commit;
6. the texts are returned for the channel to send; emails go out after the commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.accounts import contact_change, second_factor
from bot.accounts.loading import record_saved_method
from bot.config.settings import FlowSettings, Settings
from bot.coordination import Coordinator
from bot.ledger import queries as ledger
from bot.ledger.db import Database
from bot.ledger.models import (
    Account,
    Conversation,
    Message,
    Offer,
    OutboundEmail,
    Payment,
    PaymentMethod,
)
from bot.outreach import email_outbox
from bot.outreach.notifications import Notifier
from bot.payments.collectable import collectable, worth_offering
from bot.payments.service import (
    AmountNotOpen,
    OnRecorded,
    PaymentOutcome,
    PaymentRefused,
    PaymentRequest,
    PaymentService,
)
from bot.plans import changes as plan_changes
from bot.plans.agreement_copy import send_agreement_copy
from bot.plans.changes import PlanChangeRefused
from bot.plans.signing import OfferNotOpen, PlanError, Signature, accept_plan_offer, offer_schedule
from bot.plans.terms import plan_agreement_text
from bot.providers.payments import SavedMethod
from bot.providers.sms import SmsError
from bot.security import mask_email, mask_phone
from bot.sms.parsing import Meaning, classify_keyword, parse_reply
from bot.text.rendering import SmsRenderer
from states import payment as payment_flow
from states import plan_change as plan_flow
from states import verification as verification_flow
from states.payment import AccountView, MethodView, OfferView, PaymentFlow
from states.plan_change import PlanFlow, PlanOfferView, SigningMethod
from states.replies import Effect, Reply
from states.verification import VerificationFlow

log = logging.getLogger(__name__)

PAY_WORDS = {"pay", "pay now", "make a payment", "i want to pay", "payment", "pagar", "pago"}
PLAN_FLOW = "plan"  # Conversation.flow while signing or changing a plan by text
PLAN_CHANGES = {"plan_move", "plan_skip", "plan_extra"}
ANSWERED_IN_PLACE = {"balance", "link"}  # keywords that leave the flow where it stands
# The payment steps that read what is open on the account (PAY, offers, the amount).
OPEN_MATTERS = {"idle", "contact_review", "offers", "amount"}


@dataclass(frozen=True)
class StoredInbound:
    """An inbound message once it is in the ledger: what a turn reads of it."""

    id: int
    phone: str
    body: str


@dataclass(frozen=True)
class Inbound:
    phone: str  # E.164
    body: str
    sid: str | None = None  # the provider's id; the terminal chat makes one up
    channel: str = "sms"


CREDITOR_CACHE_FOR = timedelta(minutes=1)


@dataclass(frozen=True)
class CreditorTerms:
    name: str
    settings: FlowSettings


@dataclass
class WebStep:
    flow: PaymentFlow  # where the flow stands now, to render the page
    notices: list[Reply]  # what the step said (errors, results), by template name
    outcome: PaymentOutcome | None = None
    brand: str | None = None  # the creditor's name, for the page header
    stale: bool = False  # the form was for a step the flow had left: nothing was done


@dataclass
class Turn:
    """What one message produced, before it is rendered."""

    channel: str = "sms"
    verified_by: str | None = None  # how a web session proved who it is (link, code, knowledge)
    ip_address: str | None = None
    user_agent: str | None = None
    replies: list[Reply] = field(default_factory=list)
    # Receipts, written in the transaction that records their payment; sent after the reply.
    queued_emails: list[OutboundEmail] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    outcome: PaymentOutcome | None = None
    agreement_copies: list[int] = field(default_factory=list)  # plans signed: email the copy
    # Verification codes, sent after the reply: how long a reply takes says nothing of whether
    # an account exists.
    codes: list[second_factor.CodeToSend] = field(default_factory=list)


class ConversationEngine:
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
        self.settings = settings
        self.db = db
        self.coordinator = coordinator
        self.payments = payments
        self.notifier = notifier
        self.clock = clock
        self.renderer = renderer or SmsRenderer()
        self._creditors: dict[str, tuple[CreditorTerms | None, datetime]] = {}
        self._deliveries: set[asyncio.Task[None]] = set()  # emails sent after their reply
        # One machine per flow for the process; each message adds its model and removes it.
        self.payment_machine = payment_flow.build_machine()
        self.verification_machine = verification_flow.build_machine()
        self.plan_machine = plan_flow.build_machine()

    # ------------------------------------------------------------------ entry point

    async def receive(self, inbound: Inbound, *, reply_first: bool = False) -> list[str]:
        """Answer one inbound message. The emails the turn asked for (receipts, agreement
        copies) go out before this returns, or, with `reply_first` (the SMS webhook), after:
        the reply does not wait on the email provider's round trip. `settled()` waits for them.
        """
        sid = inbound.sid or f"local-{uuid.uuid4().hex}"
        body = _printable(inbound.body)[:1600]
        at = self.clock.now()
        message_id, _created = await self.db.autocommit_once(
            lambda connection: ledger.store_inbound(
                connection, phone=inbound.phone, body=body, sid=sid, channel=inbound.channel, at=at
            )
        )
        message = StoredInbound(id=message_id, phone=inbound.phone, body=body)
        async with self.coordinator.conversation_lock(inbound.phone) as held:
            async with self.db.writer(), self.db.session() as session:
                processed = await self._process(session, message, inbound.channel)
                if processed is None:
                    # The same MessageSid again: answered once, processed once.
                    return await ledger.reply_texts(session, message.id)
            turn, texts = processed
            held.events.extend(turn.events)  # told to the agents as the lock is let go
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
        await self._deliver_emails(turn)
        for plan_id in turn.agreement_copies:
            try:
                await send_agreement_copy(self.db, self.notifier, plan_id=plan_id,
                                          clock=self.clock, default_brand=self.settings.brand)
            except Exception:  # the plan is signed and told; the worker sends the copy
                log.exception("agreement copy for plan %d not sent", plan_id)

    async def _deliver_emails(self, turn: Turn) -> None:
        try:
            await email_outbox.deliver(
                self.db, self.notifier, [row.id for row in turn.queued_emails], clock=self.clock
            )
        except Exception:  # the payment stands; the worker sends what is still queued
            log.exception("the emails of a turn were not sent; left to the worker")

    async def settled(self) -> None:
        """Wait until the emails of every turn answered so far are sent (shutdown, tests)."""
        while self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)

    # ------------------------------------------------------------------ the web side

    async def web_view(self, account_id: int, *, verified_by: str | None = None) -> WebStep:
        """Where the flow stands, to draw a page: a read, no lock, no write."""
        async with self.db.session() as session:
            account = await session.get(Account, account_id)
            if account is None:
                raise LookupError("no such account")
            now = self.clock.now()
            conv = await session.scalar(
                select(Conversation)
                .where(Conversation.account_id == account.id, Conversation.flow == "payment")
                .order_by(Conversation.updated_at.desc())
                .limit(1)
            )
            if conv is None:  # nothing yet on either channel: the flow starts at the beginning
                conv = Conversation(account_id=account.id, flow="payment", state="idle", context={})
            return WebStep(
                flow=await self._flow_for(session, conv, account, now, proved_by=verified_by),
                notices=[],
                brand=await self.brand_for(session, account),
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
        turn = Turn(
            channel="web", ip_address=ip_address, user_agent=user_agent, verified_by=verified_by
        )
        async with self.db.session() as session:
            account = await session.get(Account, account_id)
            if account is None:
                raise LookupError("no such account")
            key = await self._conversation_key(session, account)
        async with self.coordinator.conversation_lock(key):
            # A writer, as an SMS turn is: on SQLite the check of what is open and the payment
            # it allows are then one writer's work.
            async with self.db.writer(), self.db.session() as session:
                account = await session.get(Account, account_id)
                assert account is not None
                now = self.clock.now()
                conv = await self._conversation_of(session, account, key, now)
                flow = await self._flow_for(session, conv, account, now, proved_by=verified_by)
                flow.link_terms = link_terms
                if expected_state is not None and conv.state != expected_state:
                    brand = await self.brand_for(session, account)
                    return WebStep(flow=flow, notices=[], brand=brand, stale=True)
                self.payment_machine.add_model(flow, initial=conv.state)
                try:
                    if restart:
                        flow.restart()
                        flow.context = {}
                    if meaning is not None:
                        await self._advance(session, conv, account, flow, meaning, turn, now, None)
                    conv.state, conv.context = flow.state, dict(flow.context)
                    conv.updated_at = now
                    await session.commit()
                    view = await self._flow_for(
                        session, conv, account, now, proved_by=verified_by
                    )
                    brand = await self.brand_for(session, account)
                finally:
                    self.payment_machine.remove_model(flow)
        await self._deliver_emails(turn)
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
        async with self.db.session() as session:
            account = await session.get(Account, account_id)
            assert account is not None
            now = self.clock.now()
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
        async with self.db.session() as session:
            if await ledger.is_opted_out(session, phone):
                return
            account = await session.get(Account, account_id)
            assert account is not None
            label = "Card" if saved.kind == "card" else "Bank account"
            replies = [
                Reply("method_saved", {"label": label, "last4": saved.last4}),
                step.flow.prompt(),
            ]
            texts = await self._render(session, None, account, replies, self.clock.now())
            conv = await session.scalar(select(Conversation).where(Conversation.phone == phone))
            for text in texts:
                try:
                    sent = await self.notifier.sms.send(to=phone, body=text)
                except SmsError:
                    log.warning("could not text the handoff confirmation")
                    return
                session.add(
                    Message(
                        conversation_id=conv.id if conv else None,
                        direction="outbound",
                        channel="sms",
                        provider_sid=sent.sid,
                        phone=phone,
                        body=text,
                        status=sent.status,
                        created_at=self.clock.now(),
                    )
                )
            await session.commit()

    async def _prove_contact(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        flow: PaymentFlow,
        changes: dict[str, Any],
        turn: Turn,
        now: datetime,
    ) -> None:
        """A new contact proposed at the contact step: a code goes to it; nothing changes yet."""
        current = {"email": account.email, "phone": account.phone}
        new = {k: str(v) for k, v in changes.items() if v and str(v) != current.get(k)}
        if not new:
            flow.context.pop(contact_change.PENDING, None)
            flow.contact_done()
            return
        if conv.id is None:
            await session.flush()
        sent, failed, capped = await contact_change.offer_codes(
            session,
            self.notifier,
            flow.context,
            new,
            secret_key=self.settings.secret_key,
            account_id=account.id,
            conversation_id=conv.id,
            brand=await self.brand_for(session, account),
            now=now,
        )
        await ledger.audit(
            session, "contact_code_sent", at=now, account_id=account.id, channel=turn.channel,
            kinds=sorted(new), sent=len(sent),
        )
        turn.replies.append(
            Reply(
                "contact_code_sent",
                {
                    "sent": sent,
                    "failed": failed,
                    "capped": capped,
                    "masked_email": mask_email(account.email),
                },
            )
        )

    async def _contact_code(
        self,
        session: AsyncSession,
        conv: Conversation,
        flow: PaymentFlow,
        meaning: Meaning,
        turn: Turn,
        now: datetime,
    ) -> Meaning:
        """Codes entered for pending contacts: what they prove, in the flow's words."""
        had_pending = bool(flow.context.get(contact_change.PENDING))
        codes: dict[str, str] = dict(meaning.value or {})  # type: ignore[call-overload]
        proved, wrong = contact_change.check_codes(
            flow.context,
            codes,
            secret_key=self.settings.secret_key,
            conversation_id=conv.id,
            now=now,
        )
        if wrong:
            await ledger.audit(
                session, "contact_code_failed", at=now, account_id=conv.account_id,
                channel=turn.channel,
            )
        if proved:
            if wrong:
                turn.replies.append(Reply("did_not_understand", {"reason": "wrong_code"}))
            return Meaning("contact_proved", proved)
        if had_pending and not flow.context.get(contact_change.PENDING):
            return Meaning("invalid", reason="code_tries_used")
        return Meaning("invalid", reason="wrong_code")

    async def _tell_old_contact(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        kind: str,
        old: str | None,
        new: str,
        turn: Turn,
        now: datetime,
    ) -> None:
        queued = await contact_change.tell_old_contact(
            session,
            self.notifier,
            account,
            kind=kind,
            old=old,
            new=new,
            brand=await self.brand_for(session, account),
            support_contact=self.settings.support_contact,
            conversation_id=conv.id,
            now=now,
        )
        if queued is not None:
            turn.queued_emails.append(queued)

    async def _change_phone(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        phone: str,
        turn: Turn,
        now: datetime,
    ) -> None:
        """Only after the code sent to ``phone`` came back (see _contact_code)."""
        if phone == account.phone:
            return
        old = account.phone
        account.phone, account.updated_at = phone, now
        # The conversation follows the number, so texts from it continue this same flow.
        taken = await session.scalar(select(Conversation.id).where(Conversation.phone == phone))
        if taken is None and not conv.phone.startswith("web:"):
            conv.phone = phone
        await ledger.audit(
            session, "phone_changed", at=now, account_id=account.id, channel=turn.channel
        )
        await self._tell_old_contact(session, conv, account, "phone", old, phone, turn, now)

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

    async def _flow_for(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        now: datetime,
        *,
        proved_by: str | None = None,
    ) -> PaymentFlow:
        proof = proved_by or (conv.context or {}).get("verified_by")
        view = await self._account_view(session, account, now, proof=proof)
        settings = await self.flow_settings(session, account)
        flow = PaymentFlow(view, settings, context=dict(conv.context or {}), state=conv.state)
        return limited_to_proof(flow, proof)

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
        turn = Turn(channel=channel)
        if account is None:
            account = await self._account_of(session, conversation)
        await self._handle(session, conversation, account, message, turn, now, opted_out=opted_out)
        conversation.last_inbound_at = now
        conversation.updated_at = now
        account = await self._account_of(session, conversation)
        texts = await self._render(session, conversation, account, turn.replies, now)
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
                "handled_by": conversation.handled_by,
                "at": now.isoformat(),
            }
        )
        await session.commit()
        return turn, texts

    def _receipts(
        self, session: AsyncSession, turn: Turn, account: Account, brand: str, now: datetime
    ) -> OnRecorded:
        """A payment's receipt joins the transaction that records the payment's outcome (before
        the turn's own commit): a process that stops in between loses no receipt."""

        def queue_receipt(outcome: PaymentOutcome) -> None:
            row = email_outbox.queue_receipt(
                session, self.notifier, account, outcome, brand=brand, at=now
            )
            if row is not None:
                turn.queued_emails.append(row)

        return queue_receipt

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
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account | None,
        message: StoredInbound,
        turn: Turn,
        now: datetime,
        *,
        opted_out: bool,
    ) -> None:
        keyword = classify_keyword(message.body)
        kind = keyword.kind if keyword else None

        if kind == "opt_out":
            if not opted_out:  # confirmed once, at once, with nothing else in it
                await ledger.set_opt_out(
                    session, conv.phone, opted_out=True, keyword=message.body, channel="sms", at=now
                )
                turn.replies.append(Reply("opt_out_confirmed"))
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
        if kind == "help":
            turn.replies.append(Reply("help"))
            return
        if conv.handled_by == "agent":
            if kind != "menu":
                return  # a person has it; the message is stored and on the agents' feed
            # MENU always brings the bot back: a customer is never left waiting in silence.
            await self._take_back_from_agent(session, conv, turn, now)
        if kind in {"agent", "ask_agent"}:
            await self._hand_to_agent(session, conv, turn, now, reason=kind, text=message.body)
            return
        if kind == "opt_in":
            turn.replies.append(Reply("opt_in_confirmed"))
            return
        if account is None:
            await self._verify(session, conv, message, keyword, turn, now)
            return
        await self._converse(session, conv, account, message, keyword, turn, now)

    async def _take_back_from_agent(
        self, session: AsyncSession, conv: Conversation, turn: Turn, now: datetime
    ) -> None:
        """The customer asked for the menu: the bot has the conversation again, from the main
        menu, as an agent's hand-back leaves it, and the agents are told."""
        conv.handled_by = "bot"
        if conv.account_id is not None:
            conv.flow, conv.state, conv.context = "payment", "idle", {}
        await ledger.audit(
            session, "handed_back", at=now, actor="customer", account_id=conv.account_id,
            phone=conv.phone,
        )
        turn.events.append({"type": "bot_resumed", "phone": conv.phone, "at": now.isoformat()})

    async def _hand_to_agent(
        self,
        session: AsyncSession,
        conv: Conversation,
        turn: Turn,
        now: datetime,
        *,
        reason: str,
        text: str,
    ) -> None:
        conv.handled_by = "agent"
        await ledger.audit(
            session,
            "handed_to_agent",
            at=now,
            account_id=conv.account_id,
            phone=conv.phone,
            reason=reason,
        )
        turn.replies.append(
            Reply(
                {"agent": "agent_requested", "ask_agent": "agent_review"}.get(
                    reason, "too_many_tries"
                )
            )
        )
        turn.events.append(
            {
                "type": "needs_agent",
                "phone": conv.phone,
                "reason": reason,
                "text": text,
                "at": now.isoformat(),
            }
        )

    # ------------------------------------------------------------------ known account

    async def _converse(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        message: StoredInbound,
        keyword: Meaning | None,
        turn: Turn,
        now: datetime,
    ) -> None:
        settings = await self.flow_settings(session, account)
        if conv.flow not in {"payment", PLAN_FLOW}:
            conv.flow, conv.state, conv.context = "payment", "idle", {}
        idle_for = now - conv.last_inbound_at if conv.last_inbound_at else timedelta(0)
        if conv.state != "idle" and idle_for > timedelta(minutes=settings.session_timeout_minutes):
            conv.flow, conv.state, conv.context = "payment", "idle", {}
            turn.replies.append(Reply("timed_out"))
            if keyword is None and _reads_as_pay(message.body):
                pass  # fall through: PAY after a timeout starts right away
            elif keyword is None:
                view = await self._account_view(session, account, now, with_open=False)
                turn.replies.append(PaymentFlow(view, settings, state="idle").prompt())
                return

        if await self._is_about_a_plan(session, conv, account, message, keyword, now):
            await self._plan_turn(session, conv, account, message, keyword, turn, now, settings)
            return
        # What is open is worked out where a payment starts or its amount is chosen.
        proof = (conv.context or {}).get("verified_by")
        view = await self._account_view(
            session, account, now, with_open=_needs_open(conv.state, keyword, message.body, now),
            proof=proof,
        )
        flow = PaymentFlow(account=view, settings=settings, context=dict(conv.context or {}))
        flow = limited_to_proof(flow, proof)
        self.payment_machine.add_model(flow, initial=conv.state)
        try:
            await self._step(session, conv, account, flow, message, keyword, turn, now)
        finally:
            self.payment_machine.remove_model(flow)

    async def _step(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        flow: PaymentFlow,
        message: StoredInbound,
        keyword: Meaning | None,
        turn: Turn,
        now: datetime,
    ) -> None:
        kind = keyword.kind if keyword else None
        if kind in ANSWERED_IN_PLACE:
            await self._answer_in_place(session, account, flow, kind, turn)
        elif kind == "menu":
            flow.restart()
            flow.context = {}
            turn.replies.append(flow.prompt())
        else:
            meaning = self._read(flow, message.body)
            await self._advance(session, conv, account, flow, meaning, turn, now, message.body)
        conv.state = flow.state
        conv.context = dict(flow.context)

    async def _answer_in_place(
        self,
        session: AsyncSession,
        account: Account,
        flow: PaymentFlow | PlanFlow,
        kind: str,
        turn: Turn,
    ) -> None:
        """BALANCE and LINK mean the same in every flow: answered, and the step still waits."""
        if kind == "balance":
            turn.replies.append(await self._balance_reply(session, account))
            if flow.state != "idle":
                turn.replies.append(flow.prompt())
        else:
            turn.replies.append(
                Reply("link", {"link_hours": self.settings.link_lifetime_hours}, needs_link=True)
            )

    async def _balance_reply(self, session: AsyncSession, account: Account) -> Reply:
        """The balance, and what is still owed once scheduled and pending payments are counted
        (the one rule, bot.collectable, in its own words): what is on its way is no news to
        repeat, what is left to pay is."""
        state = await collectable(session, account.id, balance_cents=account.balance_cents)
        return Reply(
            "balance",
            {
                "balance_cents": account.balance_cents,
                "description": account.description,
                "reason": state.explanation() if state.committed_cents else "",
            },
        )

    async def _advance(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        flow: PaymentFlow,
        meaning: Meaning,
        turn: Turn,
        now: datetime,
        text: str | None,
    ) -> None:
        """One answer to the current step, whichever channel it came from, and its effects."""
        before = len(turn.replies)
        if meaning.kind == "contact_code":
            meaning = await self._contact_code(session, conv, flow, meaning, turn, now)
        if flow.answer(meaning):
            flow.context["invalid_count"] = 0
        elif turn.channel == "web":
            # A web page shows what was wrong beside the field; it never hands over to a person.
            turn.replies.append(Reply("did_not_understand", {"reason": meaning.reason}))
        else:
            misses = int(flow.context.get("invalid_count", 0)) + 1
            flow.context["invalid_count"] = misses
            if misses >= flow.settings.max_invalid_replies:
                flow.context["invalid_count"] = 0
                await self._hand_to_agent(
                    session, conv, turn, now, reason="confused", text=text or ""
                )
            else:
                turn.replies.append(Reply("did_not_understand", {"reason": meaning.reason}))
                turn.replies.append(flow.prompt())
        # What the flow said on entering a step comes before any "did not understand".
        turn.replies[before:before] = flow.replies
        flow.replies.clear()
        if flow.state != "idle":
            flow.context.setdefault("checkout_id", uuid.uuid4().hex)
            flow.context["last_channel"] = turn.channel  # where to tell what the other side did
        for effect in list(flow.effects):
            await self._perform(session, conv, account, flow, effect, turn, now)
        flow.effects.clear()
        turn.replies.extend(flow.replies)
        flow.replies.clear()

    def _read(self, flow: PaymentFlow, text: str) -> Meaning:
        step = payment_flow.READS[flow.state]
        today = flow.account.today
        if flow.state == "contact_review" and flow.context.get(contact_change.PENDING):
            code = contact_change.read_code(text)
            if code is not None:  # by text only an email is ever pending
                return Meaning("contact_code", {"email": code})
        if step == "idle":
            if _reads_as_pay(text):
                return Meaning("pay")
            step = "confirm"
        menu_size, skip = 3, None
        if flow.state == "offers":
            skip = flow.skip_option()
            menu_size = len(flow.account.offers) + (1 if skip else 0)
        elif flow.state in {"method", "awaiting_method"}:
            menu_size = len(flow.account.methods) + 1
        return parse_reply(
            text, step, today=today, horizon=flow.horizon(), menu_size=menu_size, skip_option=skip
        )

    async def _perform(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        flow: PaymentFlow,
        effect: Effect,
        turn: Turn,
        now: datetime,
    ) -> None:
        knowledge_only = "knowledge" in (
            turn.verified_by, conv.context.get("verified_by"), flow.context.get("verified_by")
        )
        contact_effects = {"prove_contact", "update_email", "update_phone"}
        if effect.name in contact_effects and knowledge_only:
            # A knowledge answer is a look-up, not proof: it cannot change contacts.
            if effect.name == "prove_contact":
                turn.replies.append(Reply("contact_needs_code"))
            return
        if effect.name == "prove_contact":
            await self._prove_contact(session, conv, account, flow, effect.args, turn, now)
        elif effect.name == "update_phone":
            await self._change_phone(session, conv, account, str(effect.args["phone"]), turn, now)
        elif effect.name == "update_email":
            old = account.email
            account.email = str(effect.args["email"])
            account.updated_at = now
            await ledger.audit(
                session,
                "email_changed",
                at=now,
                account_id=account.id,
                phone=conv.phone,
                channel=turn.channel,
            )
            await self._tell_old_contact(
                session, conv, account, "email", old, account.email, turn, now
            )
        elif effect.name == "await_new_method":
            await ledger.audit(session, "method_handoff", at=now, account_id=account.id)
        elif effect.name == "submit_payment":
            await self._submit(session, conv, account, flow, effect.args, turn, now)

    async def _submit(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        flow: PaymentFlow,
        args: dict[str, Any],
        turn: Turn,
        now: datetime,
    ) -> None:
        offer: OfferView | None = args.get("offer")
        pay_on: date | None = args.get("pay_on")
        brand = await self.brand_for(session, account)
        request = PaymentRequest(
            # One checkout, one key, whichever channel confirms it (SMS or web).
            idempotency_key=f"checkout:{conv.id}:{args['checkout_id']}",
            amount_cents=int(args["amount_cents"]),
            fee_cents=int(args.get("fee_cents") or 0),
            method_id=int(args["method_id"]),
            pay_on=pay_on,
            offer_id=offer.id if offer else None,
            offer_kind=offer.kind if offer else None,
            installment_count=offer.installment_count if offer else 1,
            frequency=offer.frequency if offer else None,
            plan_total_cents=offer.total_cents if offer else None,
            channel=turn.channel,
            ip_address=turn.ip_address,
            user_agent=turn.user_agent,
            agreement_text=self.notifier.agreement_text(
                account=account,
                amount_cents=int(args["amount_cents"]),
                fee_cents=int(args.get("fee_cents") or 0),
                pay_on=pay_on,
                method_label=args.get("method_label") or "",
                method_kind=args.get("method_kind"),
                offer=offer,
                terms_version=flow.settings.terms_version,
                brand=brand,
            ),
            terms_version=flow.settings.terms_version,
        )
        # The conversation checkpoint goes first: a crash from here on never asks again.
        conv.state, conv.context = flow.state, dict(flow.context)
        try:
            outcome = await self.payments.submit(
                session,
                account,
                request,
                today=flow.account.today,
                on_recorded=self._receipts(session, turn, account, brand, now),
            )
        except AmountNotOpen as refused:
            # Something else was scheduled or paid meanwhile: say what is still open.
            flow.replies.append(
                Reply(
                    "not_open",
                    {"reason": str(refused), "open_cents": refused.state.open_cents},
                )
            )
            flow.context = {}
            return
        except PaymentRefused as refused:
            flow.replies.append(Reply("payment_refused", {"reason": str(refused)}))
            flow.context = {}
            return
        await session.refresh(account)
        if outcome.status != "declined" and args.get("link_id"):
            await ledger.link_used(session, int(args["link_id"]), at=now)
        flow.context = {}
        turn.outcome = outcome
        turn.replies.append(_outcome_reply(outcome, mask_email(account.email)))
        if outcome.status == "declined":
            flow.context = {
                k: v
                for k, v in args.items()
                if k
                in {"amount_cents", "offer_id", "offer_kind", "pay_on", *payment_flow.LINK_TERMS}
            }
            if flow.context.get("pay_on"):
                flow.context["pay_on"] = str(flow.context["pay_on"])
            flow.charge_failed()

    # ------------------------------------------------------------------ plans by text

    async def _is_about_a_plan(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        message: StoredInbound,
        keyword: Meaning | None,
        now: datetime,
    ) -> bool:
        """PLAN, a step of the plan flow, or (between payments) a change asked in words ("skip
        this month") or an AGREE that can only be about a plan."""
        if conv.flow == PLAN_FLOW or (keyword is not None and keyword.kind == "plan"):
            return True
        if keyword is not None or conv.state != "idle":
            return False
        today = now.astimezone(_zone(account)).date()
        if parse_reply(message.body, "plan", today=today).kind in PLAN_CHANGES:
            return await plan_changes.active_plan(session, account.id) is not None
        if (
            parse_reply(message.body, "agree", today=today).kind == "agree"
            and not _reads_as_pay(message.body)
            and parse_reply(message.body, "confirm", today=today).kind != "yes"
        ):
            # A bare AGREE after signing (or before asking): the plan, never a new payment.
            return await plan_changes.active_plan(session, account.id) is not None or bool(
                await self._plan_offers(session, account)
            )
        return False

    async def _plan_offers(self, session: AsyncSession, account: Account) -> list[Offer]:
        """The account's plan offers with an exact schedule, newest first."""
        offers = await session.scalars(
            select(Offer)
            .where(Offer.account_id == account.id, Offer.kind == "plan")
            .order_by(Offer.id.desc())
        )
        # Filtered here: a JSON column may hold a JSON null rather than SQL NULL.
        return [offer for offer in offers if offer.schedule]

    async def _plan_flow_for(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        settings: FlowSettings,
        now: datetime,
    ) -> PlanFlow:
        zone = _zone(account)
        today = now.astimezone(zone).date()
        plan = await plan_changes.active_plan(session, account.id)
        status = (
            await plan_changes.plan_status(session, plan, settings=settings, today=today)
            if plan is not None
            else None
        )
        open_offer = lapsed = None
        for offer in await self._plan_offers(session, account):
            if not offer.schedule:
                continue
            expired = offer.expires_at is not None and offer.expires_at <= now
            if offer.status == "open" and not expired:
                open_offer = open_offer or _plan_offer_view(offer, zone)
            elif offer.status == "expired" or (offer.status == "open" and expired):
                lapsed = lapsed or _plan_offer_view(offer, zone)
        method = next(
            (
                m
                for m in await ledger.payment_methods(session, account.id)
                if m.kind in settings.methods_enabled
            ),
            None,
        )
        context = dict(conv.context or {}) if conv.flow == PLAN_FLOW else {}
        return PlanFlow(
            plan=status,
            offer=open_offer,
            lapsed_offer=lapsed if open_offer is None else None,
            sms_signing=settings.sms_plan_signing,
            method=SigningMethod(m.id, f"{m.brand} ending {m.last4}") if (m := method) else None,
            context=context,
        )

    async def _plan_turn(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        message: StoredInbound,
        keyword: Meaning | None,
        turn: Turn,
        now: datetime,
        settings: FlowSettings,
    ) -> None:
        flow = await self._plan_flow_for(session, conv, account, settings, now)
        in_flow = conv.flow == PLAN_FLOW and conv.state in plan_flow.STATES
        self.plan_machine.add_model(flow, initial=conv.state if in_flow else "idle")
        try:
            kind = keyword.kind if keyword else None
            if kind == "plan":
                flow.restart()
                flow.context = {}
                flow.plan_requested()
            elif kind in ANSWERED_IN_PLACE:
                await self._answer_in_place(session, account, flow, kind, turn)
            elif kind == "menu":
                flow.restart()
                view = await self._account_view(session, account, now, with_open=False)
                turn.replies.append(PaymentFlow(view, settings, state="idle").prompt())
            elif not in_flow and (
                parse_reply(message.body, "agree", today=_today(account, now)).kind == "agree"
            ):
                if flow.offer is None and flow.plan is not None:
                    flow.show_plan()  # AGREE again after signing: the plan, nothing signed twice
                else:
                    flow.plan_requested()  # the summary first: AGREE signs what was shown
            else:
                await self._advance_plan(session, conv, account, flow, message, turn, now)
            turn.replies.extend(flow.replies)
            flow.replies.clear()
            if flow.state != "idle":
                flow.context.setdefault("change_id", uuid.uuid4().hex)
            for effect in list(flow.effects):
                await self._perform_plan(session, conv, account, flow, effect, message, turn, now)
            flow.effects.clear()
            turn.replies.extend(flow.replies)
            flow.replies.clear()
            if flow.state == "idle" and not in_flow:
                # PLAN between the steps of a payment: answered like BALANCE, the payment waits.
                if conv.state != "idle" and conv.state in payment_flow.STATES:
                    paying = await self._flow_for(session, conv, account, now)
                    turn.replies.append(paying.prompt())
            elif flow.state == "idle":
                conv.flow, conv.state, conv.context = "payment", "idle", {}
            else:
                conv.flow, conv.state, conv.context = PLAN_FLOW, flow.state, dict(flow.context)
        finally:
            self.plan_machine.remove_model(flow)

    async def _advance_plan(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        flow: PlanFlow,
        message: StoredInbound,
        turn: Turn,
        now: datetime,
    ) -> None:
        horizon = flow.plan.horizon if flow.plan else None
        meaning = parse_reply(
            message.body, plan_flow.READS[flow.state], today=_today(account, now), horizon=horizon
        )
        if flow.answer(meaning):
            flow.context["invalid_count"] = 0
            return
        misses = int(flow.context.get("invalid_count", 0)) + 1
        flow.context["invalid_count"] = misses
        if misses >= (await self.flow_settings(session, account)).max_invalid_replies:
            flow.context["invalid_count"] = 0
            await self._hand_to_agent(
                session, conv, turn, now, reason="confused", text=message.body
            )
            return
        turn.replies.append(Reply("did_not_understand", {"reason": meaning.reason}))
        if flow.state != "idle":
            turn.replies.append(flow.prompt())

    async def _perform_plan(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        flow: PlanFlow,
        effect: Effect,
        message: StoredInbound,
        turn: Turn,
        now: datetime,
    ) -> None:
        settings = await self.flow_settings(session, account)
        today = _today(account, now)
        try:
            if effect.name == "sign_offer":
                await self._sign_offer(session, account, effect.args, message, turn, now)
            elif effect.name == "move_installment" and flow.plan is not None:
                moved = await plan_changes.move_next_installment(
                    session,
                    flow.plan.plan_id,
                    new_date=date.fromisoformat(effect.args["new_date"]),
                    settings=settings,
                    today=today,
                    at=now,
                    channel=turn.channel,
                )
                turn.replies.append(Reply("plan_moved", {"change": moved}))
            elif effect.name == "skip_installment" and flow.plan is not None:
                skipped = await plan_changes.skip_next_installment(
                    session,
                    flow.plan.plan_id,
                    settings=settings,
                    today=today,
                    at=now,
                    channel=turn.channel,
                )
                turn.replies.append(Reply("plan_skipped", {"change": skipped}))
            elif effect.name == "pay_extra" and flow.plan is not None:
                await self._pay_extra(session, conv, account, flow, effect.args, turn, now)
        except (PlanChangeRefused, PaymentRefused) as refused:
            # The domain checks before it writes: a refusal leaves the plan as it was.
            turn.replies.append(Reply("plan_change_refused", {"reason": str(refused)}))

    async def _sign_offer(
        self,
        session: AsyncSession,
        account: Account,
        args: dict[str, Any],
        message: StoredInbound,
        turn: Turn,
        now: datetime,
    ) -> None:
        offer = await session.get(Offer, int(args["offer_id"]), populate_existing=True)
        method = await session.get(PaymentMethod, int(args["method_id"]))
        if offer is None or method is None or method.account_id != account.id:
            turn.replies.append(Reply("plan_offer_closed", {"status": "withdrawn"}))
            return
        expired = offer.expires_at is not None and offer.expires_at <= now
        if offer.status != "open" or expired:
            status = "expired" if expired else offer.status
            turn.replies.append(Reply("plan_offer_closed", {"status": status}))
            return
        settings = await self.flow_settings(session, account)
        brand = await self.brand_for(session, account)
        schedule = offer_schedule(offer)
        method_label = f"{method.brand} ending {method.last4}"
        text = plan_agreement_text(
            env=self.notifier.env,
            account=account,
            offer=offer,
            schedule=schedule,
            method_label=method_label,
            method_kind=method.kind,
            terms_version=settings.terms_version,
            brand=brand,
        )
        try:
            plan = await accept_plan_offer(
                session,
                offer=offer,
                account=account,
                method=method,
                signature=Signature(
                    kind="sms_reply",
                    data=message.body,
                    signer_name=f"{account.first_name} {account.last_name}",
                    channel="sms",
                    # The summary said replying AGREE signs electronically: consent and signature
                    # are the same reply.
                    esign_consent_at=now,
                ),
                agreement_text=text,
                terms_version=settings.terms_version,
                at=now,
            )
        except OfferNotOpen:
            turn.replies.append(Reply("plan_offer_closed", {"status": "expired"}))
            return
        except PlanError as refused:
            turn.replies.append(Reply("plan_change_refused", {"reason": str(refused)}))
            return
        first = await session.scalar(
            select(Payment)
            .where(Payment.plan_id == plan.id)
            .order_by(Payment.scheduled_for, Payment.id)
            .limit(1)
        )
        turn.replies.append(
            Reply(
                "plan_signed",
                {
                    "offer": _plan_offer_view(offer, _zone(account)),
                    "method_label": method_label,
                    "reference": first.reference if first else "",
                    "masked_email": mask_email(account.email),
                },
            )
        )
        turn.agreement_copies.append(plan.id)

    async def _pay_extra(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        flow: PlanFlow,
        args: dict[str, Any],
        turn: Turn,
        now: datetime,
    ) -> None:
        assert flow.plan is not None
        settings = await self.flow_settings(session, account)
        brand = await self.brand_for(session, account)
        amount = int(args["amount_cents"])
        plan_row = await plan_changes.active_plan(session, account.id)
        method = (
            await session.get(PaymentMethod, plan_row.method_id)
            if plan_row and plan_row.method_id
            else None
        )
        if method is None:
            raise PlanChangeRefused("Your plan has no payment method on file.")
        method_label = f"{method.brand} ending {method.last4}"
        extra = await plan_changes.pay_extra(
            session,
            flow.plan.plan_id,
            account,
            amount_cents=amount,
            payments=self.payments,
            # One confirmation, one key: a retried message or a second YES never charges twice.
            idempotency_key=f"plan-extra:{conv.id}:{args['change_id']}",
            on_recorded=self._receipts(session, turn, account, brand, now),
            agreement_text=self.notifier.agreement_text(
                account=account,
                amount_cents=amount,
                pay_on=None,
                method_label=method_label,
                method_kind=method.kind,
                offer=None,
                terms_version=settings.terms_version,
                brand=brand,
            ),
            terms_version=settings.terms_version,
            settings=settings,
            today=_today(account, now),
            at=now,
            channel=turn.channel,
        )
        outcome = extra.outcome
        turn.outcome = outcome
        await session.refresh(account)
        if extra.applied:
            turn.replies.append(
                Reply(
                    "plan_extra_paid",
                    {
                        "outcome": outcome,
                        "left_cents": extra.remaining_cents,
                        "masked_email": mask_email(account.email),
                    },
                )
            )
        else:
            turn.replies.append(_outcome_reply(outcome, mask_email(account.email)))

    # ------------------------------------------------------------------ unknown numbers

    async def _verify(
        self,
        session: AsyncSession,
        conv: Conversation,
        message: StoredInbound,
        keyword: Meaning | None,
        turn: Turn,
        now: datetime,
    ) -> None:
        flow = VerificationFlow(context=dict(conv.context or {}))
        conv.flow = "verification"
        # A checkpoint from before these states (a lock) starts over.
        initial = conv.state if conv.state in verification_flow.STATES else "new"
        self.verification_machine.add_model(flow, initial=initial)
        try:
            if flow.state == "new":
                flow.ask_account()
            elif keyword is not None:
                turn.replies.append(flow.prompt())
            elif flow.state == "awaiting_account":
                await self._account_id_given(session, conv, flow, message, turn, now)
            else:
                await self._answer_given(session, conv, flow, message, turn, now)
            turn.replies[:0] = flow.replies
            flow.replies.clear()
            if conv.account_id is None:
                conv.state, conv.context = flow.state, flow.context
        finally:
            self.verification_machine.remove_model(flow)

    async def _account_id_given(
        self,
        session: AsyncSession,
        conv: Conversation,
        flow: VerificationFlow,
        message: StoredInbound,
        turn: Turn,
        now: datetime,
    ) -> None:
        meaning = parse_reply(message.body, "account_id", today=now.date())
        if meaning.kind != "text":
            turn.replies.append(Reply("did_not_understand", {"reason": None}))
            turn.replies.append(flow.prompt())
            return
        if await second_factor.too_many_lookups(self.coordinator.redis, f"sms:{conv.phone}"):
            turn.replies.append(Reply("too_many_lookups"))
            return
        account = await ledger.account_by_ref(session, str(meaning.value))
        # An unknown account id is capped, counted and answered exactly like a real one.
        subject = (
            second_factor.account_subject(account.id)
            if account is not None
            else second_factor.unknown_subject(self.settings.secret_key, str(meaning.value))
        )
        wait = await second_factor.wait_left(
            session, subject=subject, client=f"sms:{conv.phone}", now=now
        )
        if wait:
            turn.replies.append(_wait_reply(wait))
            return
        texts_allowed, brand = await self.code_sender(session, account)
        try:
            challenge = await second_factor.open_challenge(
                session,
                subject=subject,
                account=account,
                scope=conv.phone,
                secret_key=self.settings.secret_key,
                now=now,
                purpose="sms_verification",
                brand=brand,
                texts_allowed=texts_allowed,
            )
        except second_factor.CodeLimitReached:
            await ledger.audit(
                session, "code_limit_reached", at=now, phone=conv.phone,
                account_id=account.id if account else None,
            )
            turn.replies.append(Reply("code_limit_reached"))
            return
        flow.context = {
            "candidate_account_id": account.id if account else None,
            "subject": subject,
            "challenge": challenge.id,
            "code_sha": challenge.digest,
            "code_expires": challenge.expires_at.isoformat(),
        }
        if challenge.code is not None:
            turn.codes.append(challenge.code)
        flow.account_given()

    async def _answer_given(
        self,
        session: AsyncSession,
        conv: Conversation,
        flow: VerificationFlow,
        message: StoredInbound,
        turn: Turn,
        now: datetime,
    ) -> None:
        context = flow.context
        subject, challenge_id = context.get("subject"), context.get("challenge")
        if not subject or not challenge_id:  # a checkpoint from before these limits
            flow.ask_account()
            return
        client = f"sms:{conv.phone}"
        wait = await second_factor.wait_left(session, subject=subject, client=client, now=now)
        if wait:  # not even tried: a number that waits learns nothing from its guesses
            turn.replies.append(_wait_reply(wait))
            return
        account_id = context.get("candidate_account_id")
        account = await session.get(Account, account_id) if account_id else None
        meaning = parse_reply(message.body, "code", today=now.date())
        ok = False
        if meaning.kind == "text":
            answer = str(meaning.value)
            if "|" in answer:
                last4, dob = answer.split("|", 1)
                ok = second_factor.knowledge_matches(account, last4, dob)
            else:
                ok = second_factor.code_matches(
                    context.get("code_sha"),
                    datetime.fromisoformat(context["code_expires"]),
                    secret_key=self.settings.secret_key,
                    scope=conv.phone,
                    answer=answer,
                    now=now,
                )
        second_factor.record_attempt(
            session,
            subject=subject,
            client=client,
            challenge_id=challenge_id,
            account_id=account_id,
            succeeded=ok,
            now=now,
            phone=conv.phone,
        )
        if not ok:
            await ledger.audit(
                session, "verification_failed", at=now, phone=conv.phone, account_id=account_id
            )
            await session.flush()
            flow.tries_left = await second_factor.tries_left(session, challenge_id)
            wait = await second_factor.wait_left(session, subject=subject, client=client, now=now)
            turn.replies.append(
                Reply(
                    "verification_failed",
                    {
                        "tries_left": flow.tries_left,
                        "wait_minutes": second_factor.minutes(wait) if wait else None,
                    },
                )
            )
            flow.answer_wrong()
            return
        assert account is not None
        verified_by = "code" if "|" not in str(meaning.value) else "knowledge"
        await ledger.audit(
            session, "verified", at=now, phone=conv.phone, account_id=account.id, by=verified_by
        )
        conv.account_id = account.id
        conv.flow, conv.state, conv.context = "payment", "idle", {"verified_by": verified_by}
        view = await self._account_view(session, account, now, with_open=False)
        settings = await self.flow_settings(session, account)
        turn.replies.append(Reply("verified", {"first_name": account.first_name}))
        turn.replies.append(PaymentFlow(view, settings, state="idle").prompt())

    # ------------------------------------------------------------------ rendering

    async def _render(
        self,
        session: AsyncSession,
        conv: Conversation | None,
        account: Account | None,
        replies: list[Reply],
        now: datetime,
    ) -> list[str]:
        if not replies:
            return []
        base: dict[str, Any] = {
            "brand": self.settings.brand,
            "support_contact": self.settings.support_contact,
            "first_name": account.first_name if account else "",
            "disclosure": "",
            "method_words": self.settings.flow.method_words,
        }
        if account is not None:
            base["brand"] = await self.brand_for(session, account)
            base["method_words"] = (await self.flow_settings(session, account)).method_words
            offer_id = next((r.link_offer_id for r in replies if r.link_offer_id), None)
            if offer_id is not None:
                # The offer's own link: the portal opens the plan to review and sign.
                token = await ledger.create_link(
                    session,
                    account_id=account.id,
                    at=now,
                    lifetime=timedelta(hours=self.settings.link_lifetime_hours),
                    purpose="plan_offer",
                    offer_id=offer_id,
                )
                base["link_url"] = f"{self.settings.public_base_url}/p/{token}"
            elif any(r.needs_link for r in replies):
                token = await ledger.create_link(
                    session,
                    account_id=account.id,
                    at=now,
                    lifetime=timedelta(hours=self.settings.link_lifetime_hours),
                    resume_state=conv.state if conv else None,
                )
                base["link_url"] = f"{self.settings.public_base_url}/p/{token}"
        return self.renderer.render_all(replies, base)

    async def _creditor(self, session: AsyncSession, account: Account) -> CreditorTerms | None:
        """A creditor's name and settings, kept for a minute: they change rarely and every
        message and page needs them."""
        code = account.creditor_code
        if code is None:
            return None
        cached = self._creditors.get(code)
        now = self.clock.now()
        if cached is not None and now - cached[1] < CREDITOR_CACHE_FOR:
            return cached[0]
        creditor = await ledger.creditor_of(session, account)
        terms = None
        if creditor is not None:
            terms = CreditorTerms(
                name=creditor.name, settings=self.settings.flow.for_creditor(creditor)
            )
        self._creditors[code] = (terms, now)
        return terms

    async def code_sender(
        self, session: AsyncSession, account: Account | None
    ) -> tuple[bool, str]:
        """Whether a one-time code may go by text to the account's phone (it has one and it
        is not opted out), and the brand that signs it: ``(False, "")`` for an unknown account
        or one with no contact, which gets no code at all."""
        if account is None or not (account.phone or account.email):
            return False, ""
        texts_allowed = bool(account.phone) and not await ledger.is_opted_out(
            session, account.phone or ""
        )
        return texts_allowed, await self.brand_for(session, account)

    async def brand_for(self, session: AsyncSession, account: Account) -> str:
        creditor = await self._creditor(session, account)
        return creditor.name if creditor else self.settings.brand

    async def flow_settings(self, session: AsyncSession, account: Account) -> FlowSettings:
        creditor = await self._creditor(session, account)
        return creditor.settings if creditor else self.settings.flow

    async def _account_view(
        self,
        session: AsyncSession,
        account: Account,
        now: datetime,
        *,
        with_open: bool = True,
        proof: str | None = None,
    ) -> AccountView:
        """What the flow may know of the account. ``with_open``: work out what is open (one
        aggregate query), for the steps that start a payment or choose its amount; the others
        do without (their amounts were chosen against it, and PaymentService checks again).
        ``proof``: how the customer was verified ("knowledge" also sees the single-use methods
        that have not paid yet)."""
        offers, methods, state = await ledger.account_choices(
            session, account, at=now, knowledge=proof == "knowledge", with_open=with_open
        )
        zone = ZoneInfo(account.timezone or "America/New_York")
        settings = await self.flow_settings(session, account)
        payable = state.open_cents if state else account.balance_cents
        return AccountView(
            first_name=account.first_name,
            description=account.description or "your account",
            balance_cents=account.balance_cents,
            masked_email=mask_email(account.email),
            masked_phone=mask_phone(account.phone),
            offers=tuple(
                OfferView(
                    id=o.id,
                    kind=o.kind,
                    total_cents=o.total_cents,
                    installment_count=o.installment_count,
                    installment_cents=-(-o.total_cents // o.installment_count),
                    frequency=o.frequency,
                    expires_on=o.expires_at.astimezone(zone).date() if o.expires_at else None,
                    savings_cents=max(0, payable - o.total_cents),
                )
                for o in offers
                if worth_offering(o.kind, o.total_cents, payable)
                # A plan made with an exact schedule is signed as made (PLAN, or its link).
                and not (o.kind == "plan" and o.schedule)
            ),
            methods=tuple(
                MethodView(id=m.id, kind=m.kind, brand=m.brand, last4=m.last4)
                for m in methods
                if m.kind in settings.methods_enabled
            ),
            today=now.astimezone(zone).date(),
            terms_url=f"{self.settings.public_base_url}/t/{settings.terms_version}",
            open_cents=state.open_cents if state else None,
            open_reason=state.explanation() if state and state.reduced else None,
            has_plan=bool(state and state.in_plan),
        )


_CONTROL = dict.fromkeys(c for c in range(32) if c not in (9, 10, 13))


def _wait_reply(wait: timedelta) -> Reply:
    return Reply("verification_wait", {"minutes": second_factor.minutes(wait)})


def limited_to_proof(flow: PaymentFlow, proved_by: str | None) -> PaymentFlow:
    """Knowledge answers are a look-up, not proof: such a customer pays once, now. No plan and
    no date later, which would leave charges waiting on a method they may not own."""
    if proved_by == "knowledge":
        flow.proved_by = proved_by
        settlements = tuple(o for o in flow.account.offers if o.kind == "settlement")
        flow.account = dataclasses.replace(flow.account, offers=settlements)
    return flow


def _printable(text: str) -> str:
    """Control characters (NUL above all, which PostgreSQL text refuses) are not kept."""
    return text.translate(_CONTROL).encode("utf-8", "replace").decode("utf-8")


def _zone(account: Account) -> ZoneInfo:
    return ZoneInfo(account.timezone or "America/New_York")


def _today(account: Account, now: datetime) -> date:
    return now.astimezone(_zone(account)).date()


def _plan_offer_view(offer: Offer, zone: ZoneInfo) -> PlanOfferView:
    schedule = offer_schedule(offer)
    return PlanOfferView(
        id=offer.id,
        installment_count=len(schedule),
        first_cents=schedule[0][1],
        last_cents=schedule[-1][1],
        total_cents=sum(cents for _, cents in schedule),
        first_due=schedule[0][0],
        frequency=offer.frequency,
        expires_on=offer.expires_at.astimezone(zone).date() if offer.expires_at else None,
    )


def _needs_open(state: str, keyword: Meaning | None, text: str, now: datetime) -> bool:
    """Whether this message's step reads what is open (one aggregate query): the steps that
    choose the amount, and PAY (or YES) at rest; nothing else on the hot path pays for it."""
    if keyword is not None or state not in OPEN_MATTERS:
        return False
    if state != "idle":
        return True
    return _reads_as_pay(text) or parse_reply(text, "confirm", today=now.date()).kind == "yes"


def _reads_as_pay(text: str) -> bool:
    return " ".join(text.lower().replace("!", " ").replace(".", " ").split()) in PAY_WORDS


def _outcome_reply(outcome: PaymentOutcome, masked_email: str | None) -> Reply:
    context = {
        "amount_cents": outcome.amount_cents,
        "method_label": outcome.method_label,
        "reference": outcome.reference,
        "masked_email": masked_email,
        "pay_on": outcome.pay_on,
        "installments": outcome.installments,
        "failure_message": outcome.failure_message,
    }
    if outcome.status == "processing" and outcome.failure_message is None:
        return Reply("payment_processing", context)  # another request of the same payment has it
    template = {
        "paid": "payment_paid",
        "scheduled": "payment_scheduled",
        "pending": "payment_pending",
        "declined": "payment_declined",
    }.get(outcome.status, "payment_unconfirmed")
    return Reply(template, context)
