"""The payment flow's turns, on either channel: read the reply for the step the flow is at,
fire the trigger, run the effects it asked for (contact proof and changes, the method hand-off,
the payment's submission) and leave the replies on the turn."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from bot.accounts import contact_change
from bot.config.settings import FlowSettings
from bot.ledger import queries as ledger
from bot.ledger.models import Account
from bot.outreach import email_outbox
from bot.outreach.notifications import Notifier
from bot.payments.service import (
    AmountNotOpen,
    OnRecorded,
    PaymentOutcome,
    PaymentRefused,
    PaymentRequest,
)
from bot.security import mask_email
from bot.sms.contacts import ContactTurns
from bot.sms.context import Services, StoredInbound, TurnContext
from bot.sms.handover import hand_to_agent
from bot.sms.parsing import Meaning, PayIntent, parse_intent, parse_reply
from bot.sms.views import AccountViews, limited_to_proof, outcome_reply
from states import payment as payment_flow
from states.payment import OfferView, PaymentFlow
from states.replies import Effect, Reply

# A day any intent reads the same on: whether a text is PAY does not depend on the date.
_ANY_DAY = date(2026, 1, 5)
ANSWERED_IN_PLACE = {"balance", "link"}  # keywords that leave the flow where it stands
# The payment steps that read what is open on the account (PAY, offers, the amount).
OPEN_MATTERS = {"idle", "contact_review", "offers", "amount"}


class PaymentTurns:
    def __init__(self, services: Services, views: AccountViews, contacts: ContactTurns) -> None:
        self.services = services
        self.views = views
        self.contacts = contacts
        # One machine for the process; each message adds its model and removes it.
        self.machine = payment_flow.build_machine()

    async def answer(
        self,
        ctx: TurnContext,
        account: Account,
        message: StoredInbound,
        keyword: Meaning | None,
        settings: FlowSettings,
    ) -> None:
        """One text to the payment flow, checkpointed on the conversation."""
        # What is open is worked out where a payment starts or its amount is chosen.
        proof = (ctx.conv.context or {}).get("verified_by")
        view = await self.views.account_view(
            ctx.session,
            account,
            ctx.now,
            with_open=needs_open(ctx.conv.state, keyword, message.body, ctx.now),
            proof=proof,
        )
        flow = PaymentFlow(account=view, settings=settings, context=dict(ctx.conv.context or {}))
        flow = limited_to_proof(flow, proof)
        self.machine.add_model(flow, initial=ctx.conv.state)
        try:
            await self._step(ctx, account, flow, message, keyword)
        finally:
            self.machine.remove_model(flow)

    async def _step(
        self,
        ctx: TurnContext,
        account: Account,
        flow: PaymentFlow,
        message: StoredInbound,
        keyword: Meaning | None,
    ) -> None:
        kind = keyword.kind if keyword else None
        if kind in ANSWERED_IN_PLACE:
            await self.views.answer_in_place(ctx.session, account, flow, kind, ctx.turn)
        elif kind == "menu":
            flow.restart()
            flow.context = {}
            ctx.turn.replies.append(flow.prompt())
        elif kind == "greeting":
            # "hi" is no wrong answer: a hello back and the question where it stands (no
            # apology, no miss counted towards a handoff).
            ctx.turn.replies.append(Reply("hello"))
            ctx.turn.replies.append(flow.prompt())
        else:
            meaning = self.read(flow, message.body)
            await self.advance(ctx, account, flow, meaning, message.body)
        ctx.conv.state = flow.state
        ctx.conv.context = dict(flow.context)

    async def advance(
        self,
        ctx: TurnContext,
        account: Account,
        flow: PaymentFlow,
        meaning: Meaning,
        text: str | None,
    ) -> None:
        """One answer to the current step, whichever channel it came from, and its effects."""
        before = len(ctx.turn.replies)
        if meaning.kind == "contact_code":
            meaning = await self.contacts.contact_code(ctx, flow, meaning)
        if flow.answer(meaning):
            flow.context["invalid_count"] = 0
        elif ctx.turn.channel == "web":
            # A web page shows what was wrong beside the field; it never hands over to a person.
            ctx.turn.replies.append(Reply("did_not_understand", {"reason": meaning.reason}))
        else:
            misses = int(flow.context.get("invalid_count", 0)) + 1
            flow.context["invalid_count"] = misses
            if misses >= flow.settings.max_invalid_replies:
                flow.context["invalid_count"] = 0
                await hand_to_agent(ctx, self.views, account, reason="confused", text=text or "")
            else:
                ctx.turn.replies.append(Reply("did_not_understand", {"reason": meaning.reason}))
                ctx.turn.replies.append(flow.prompt())
        # What the flow said on entering a step comes before any "did not understand".
        ctx.turn.replies[before:before] = flow.replies
        flow.replies.clear()
        if flow.state != "idle":
            flow.context.setdefault("checkout_id", uuid.uuid4().hex)
            flow.context["last_channel"] = ctx.turn.channel  # where to tell what the other side did
        for effect in list(flow.effects):
            await self._perform(ctx, account, flow, effect)
        flow.effects.clear()
        ctx.turn.replies.extend(flow.replies)
        flow.replies.clear()

    def read(self, flow: PaymentFlow, text: str) -> Meaning:
        """What a text means at the step the flow is at."""
        step = payment_flow.READS[flow.state]
        today = flow.account.today
        if flow.state == "contact_review" and flow.context.get(contact_change.PENDING):
            code = contact_change.read_code(text)
            if code is not None:  # by text only an email is ever pending
                return Meaning("contact_code", {"email": code})
        if step == "idle":
            meaning = parse_reply(text, "idle", today=today, horizon=flow.horizon())
            agree = parse_reply(text, "agree", today=today).kind == "agree"
            if meaning.kind == "invalid" and agree:
                return Meaning("agree")  # nothing waits for it: the flow says so
            return meaning
        if step == "amount":
            # "$40 next friday" or "3 payments" at the amount step: the intent, with its slots.
            intent = parse_reply(text, "idle", today=today, horizon=flow.horizon())
            if intent.kind == "plan_request" or (
                isinstance(intent.value, PayIntent) and intent.value.has_date
            ):
                return intent
        menu_size, skip = 3, None
        if flow.state == "offers":
            skip = flow.skip_option()
            menu_size = len(flow.account.offers) + (1 if skip else 0)
        elif flow.state in {"method", "awaiting_method"}:
            menu_size = len(flow.account.methods) + 1
            # With one saved method the question reads "Pay with Visa ending 4242?": a plain
            # yes ("si", "yes") is the answer 1, not an unknown option.
            if flow.state == "method" and menu_size == 2 and (
                parse_reply(text, "confirm", today=today).kind == "yes"
            ):
                return Meaning("choice", 1)
        return parse_reply(
            text, step, today=today, horizon=flow.horizon(), menu_size=menu_size, skip_option=skip
        )

    async def _perform(
        self, ctx: TurnContext, account: Account, flow: PaymentFlow, effect: Effect
    ) -> None:
        knowledge_only = "knowledge" in (
            ctx.turn.verified_by,
            ctx.conv.context.get("verified_by"),
            flow.context.get("verified_by"),
        )
        contact_effects = {"prove_contact", "update_email", "update_phone"}
        if effect.name in contact_effects and knowledge_only:
            # A knowledge answer is a look-up, not proof: it cannot change contacts.
            if effect.name == "prove_contact":
                ctx.turn.replies.append(Reply("contact_needs_code"))
            return
        if effect.name == "prove_contact":
            await self.contacts.prove_contact(ctx, account, flow, effect.args)
        elif effect.name == "update_phone":
            await self.contacts.change_phone(ctx, account, str(effect.args["phone"]))
        elif effect.name == "update_email":
            await self.contacts.change_email(ctx, account, str(effect.args["email"]))
        elif effect.name == "await_new_method":
            await ledger.audit(ctx.session, "method_handoff", at=ctx.now, account_id=account.id)
        elif effect.name == "submit_payment":
            await self._submit(ctx, account, flow, effect.args)

    async def _submit(
        self, ctx: TurnContext, account: Account, flow: PaymentFlow, args: dict[str, Any]
    ) -> None:
        offer: OfferView | None = args.get("offer")
        pay_on: date | None = args.get("pay_on")
        brand = await self.views.brand_for(ctx.session, account)
        notifier = self.services.notifier
        request = PaymentRequest(
            # One checkout, one key, whichever channel confirms it (SMS or web).
            idempotency_key=f"checkout:{ctx.conv.id}:{args['checkout_id']}",
            amount_cents=int(args["amount_cents"]),
            fee_cents=int(args.get("fee_cents") or 0),
            method_id=int(args["method_id"]),
            pay_on=pay_on,
            offer_id=offer.id if offer else None,
            offer_kind=offer.kind if offer else None,
            installment_count=offer.installment_count if offer else 1,
            frequency=offer.frequency if offer else None,
            plan_total_cents=offer.total_cents if offer else None,
            channel=ctx.turn.channel,
            ip_address=ctx.turn.ip_address,
            user_agent=ctx.turn.user_agent,
            agreement_text=notifier.agreement_text(
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
        ctx.conv.state, ctx.conv.context = flow.state, dict(flow.context)
        try:
            outcome = await self.services.payments.submit(
                ctx.session,
                account,
                request,
                today=flow.account.today,
                on_recorded=queue_receipts(
                    ctx, notifier, account, brand,
                    await email_outbox.creditor_disclosure(ctx.session, account),
                ),
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
        await ctx.session.refresh(account)
        if outcome.status != "declined" and args.get("link_id"):
            await ledger.link_used(ctx.session, int(args["link_id"]), at=ctx.now)
        flow.context = {}
        ctx.turn.outcome = outcome
        ctx.turn.replies.append(outcome_reply(outcome, mask_email(account.email)))
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


def queue_receipts(
    ctx: TurnContext, notifier: Notifier, account: Account, brand: str, disclosure: str = ""
) -> OnRecorded:
    """A payment's receipt joins the transaction that records the payment's outcome (before
    the turn's own commit): a process that stops in between loses no receipt."""

    def queue_receipt(outcome: PaymentOutcome) -> None:
        row = email_outbox.queue_receipt(
            ctx.session, notifier, account, outcome, brand=brand, at=ctx.now,
            disclosure=disclosure,
        )
        if row is not None:
            ctx.turn.queued_emails.append(row)

    return queue_receipt


def needs_open(state: str, keyword: Meaning | None, text: str, now: datetime) -> bool:
    """Whether this message's step reads what is open (one aggregate query): the steps that
    choose the amount, and PAY (or YES) at rest; nothing else on the hot path pays for it."""
    if keyword is not None or state not in OPEN_MATTERS:
        return False
    if state != "idle":
        return True
    if parse_reply(text, "idle", today=now.date()).kind in {"pay", "yes", "plan_request"}:
        return True
    return parse_reply(text, "agree", today=now.date()).kind == "agree"  # "has a plan" is said


def reads_as_pay(text: str) -> bool:
    """PAY, in its words or with its slots ("pay", "quiero pagar", "pay 50 next friday"); not
    a keyword. It brings the bot back while a person is asked for, and starts at once after a
    timed-out session."""
    meaning = parse_intent(text, _ANY_DAY)
    if meaning is None or meaning.kind != "pay":
        return False
    # "$0" or "pay 50 yesterday" is an answer gone wrong (a step's to re-ask), not PAY.
    intent = meaning.value
    return not isinstance(intent, PayIntent) or not (intent.amount_problem or intent.date_problem)
