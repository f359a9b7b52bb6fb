"""The plan flow's turns by text: PLAN and its summary, signing an offer by reply (AGREE), and
changes to a running plan (move a date, skip one, pay EXTRA) within the plan's rules."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.settings import FlowSettings
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Offer, Payment, PaymentMethod
from bot.outreach import email_outbox
from bot.payments.service import PaymentRefused
from bot.plans import changes as plan_changes
from bot.plans.changes import PlanChangeRefused
from bot.plans.signing import OfferNotOpen, PlanError, Signature, accept_plan_offer, offer_schedule
from bot.plans.terms import plan_agreement_text
from bot.security import mask_email
from bot.sms.context import Services, StoredInbound, TurnContext
from bot.sms.handover import hand_to_agent
from bot.sms.parsing import Meaning, parse_reply
from bot.sms.payment_turns import ANSWERED_IN_PLACE, queue_receipts, reads_as_pay
from bot.sms.views import AccountViews, outcome_reply, today_of, zone_of
from states import payment as payment_flow
from states import plan_change as plan_flow
from states.plan_change import PlanFlow, PlanOfferView, SigningMethod
from states.replies import Effect, Reply

PLAN_FLOW = "plan"  # Conversation.flow while signing or changing a plan by text
PLAN_CHANGES = {"plan_move", "plan_skip", "plan_extra"}


class PlanTurns:
    def __init__(self, services: Services, views: AccountViews) -> None:
        self.services = services
        self.views = views
        # One machine for the process; each message adds its model and removes it.
        self.machine = plan_flow.build_machine()

    async def is_about_a_plan(
        self, ctx: TurnContext, account: Account, message: StoredInbound, keyword: Meaning | None
    ) -> bool:
        """PLAN, a step of the plan flow, or (between payments) a change asked in words ("skip
        this month"), a plan asked for ("can i do 3 payments") where there is one to show, or an
        AGREE while a plan offer waits for it. PAY leaves the plan flow for a payment."""
        if ctx.conv.flow == PLAN_FLOW and keyword is None and ctx.conv.state == "plan_menu":
            # PAY at the plan's options: a payment, not a misread (an amount there is EXTRA).
            if parse_reply(message.body, "idle", today=today_of(account, ctx.now)) == Meaning(
                "pay"
            ):
                ctx.conv.flow, ctx.conv.state, ctx.conv.context = "payment", "idle", {}
                return False
        if ctx.conv.flow == PLAN_FLOW or (keyword is not None and keyword.kind == "plan"):
            return True
        if keyword is not None or ctx.conv.state != "idle":
            return False
        today = today_of(account, ctx.now)
        if parse_reply(message.body, "plan", today=today).kind in PLAN_CHANGES:
            return await plan_changes.active_plan(ctx.session, account.id) is not None
        if parse_reply(message.body, "idle", today=today).kind == "plan_request":
            # A plan of their own, or one offered to sign: PLAN shows it. Else the payment
            # flow answers (its plan offers, or a person can set one up).
            return await plan_changes.active_plan(ctx.session, account.id) is not None or (
                await self._open_offer(ctx, account)
            )
        if (
            parse_reply(message.body, "agree", today=today).kind == "agree"
            and not reads_as_pay(message.body)
            and parse_reply(message.body, "confirm", today=today).kind != "yes"
        ):
            # AGREE while a plan offer waits for it: its summary first. With nothing to agree
            # to, the payment flow says so (never the plan menu).
            return await self._open_offer(ctx, account)
        return False

    async def _open_offer(self, ctx: TurnContext, account: Account) -> bool:
        return any(
            offer.status == "open" and (offer.expires_at is None or offer.expires_at > ctx.now)
            for offer in await self._plan_offers(ctx.session, account)
        )

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
        self, ctx: TurnContext, account: Account, settings: FlowSettings
    ) -> PlanFlow:
        zone = zone_of(account)
        today = ctx.now.astimezone(zone).date()
        plan = await plan_changes.active_plan(ctx.session, account.id)
        status = (
            await plan_changes.plan_status(ctx.session, plan, settings=settings, today=today)
            if plan is not None
            else None
        )
        open_offer = lapsed = None
        for offer in await self._plan_offers(ctx.session, account):
            if not offer.schedule:
                continue
            expired = offer.expires_at is not None and offer.expires_at <= ctx.now
            if offer.status == "open" and not expired:
                open_offer = open_offer or plan_offer_view(offer, zone)
            elif offer.status == "expired" or (offer.status == "open" and expired):
                lapsed = lapsed or plan_offer_view(offer, zone)
        method = next(
            (
                m
                for m in await ledger.payment_methods(ctx.session, account.id)
                if m.kind in settings.methods_enabled
            ),
            None,
        )
        context = dict(ctx.conv.context or {}) if ctx.conv.flow == PLAN_FLOW else {}
        return PlanFlow(
            plan=status,
            offer=open_offer,
            lapsed_offer=lapsed if open_offer is None else None,
            sms_signing=settings.sms_plan_signing,
            method=SigningMethod(m.id, m.description) if (m := method) else None,
            context=context,
        )

    async def answer(
        self,
        ctx: TurnContext,
        account: Account,
        message: StoredInbound,
        keyword: Meaning | None,
        settings: FlowSettings,
    ) -> None:
        """One text about a plan, checkpointed on the conversation (or the payment left as it
        waits, when PLAN came between its steps)."""
        flow = await self._plan_flow_for(ctx, account, settings)
        in_flow = ctx.conv.flow == PLAN_FLOW and ctx.conv.state in plan_flow.STATES
        self.machine.add_model(flow, initial=ctx.conv.state if in_flow else "idle")
        try:
            kind = keyword.kind if keyword else None
            if kind is None and not in_flow and parse_reply(
                message.body, "idle", today=today_of(account, ctx.now)
            ).kind == "plan_request":
                kind = "plan"  # "can i do 3 payments": the plan they have, or the offer
            if kind == "plan":
                flow.restart()
                flow.context = {}
                flow.plan_requested()
            elif kind in ANSWERED_IN_PLACE:
                await self.views.answer_in_place(ctx.session, account, flow, kind, ctx.turn)
            elif kind == "menu":
                flow.restart()
                ctx.turn.replies.append(await self.views.idle_prompt(ctx.session, account, ctx.now))
            elif not in_flow and (
                parse_reply(message.body, "agree", today=today_of(account, ctx.now)).kind == "agree"
            ):
                if flow.offer is None and flow.plan is not None:
                    flow.show_plan()  # AGREE again after signing: the plan, nothing signed twice
                else:
                    flow.plan_requested()  # the summary first: AGREE signs what was shown
            else:
                await self._advance(ctx, account, flow, message)
            ctx.turn.replies.extend(flow.replies)
            flow.replies.clear()
            if flow.state != "idle":
                flow.context.setdefault("change_id", uuid.uuid4().hex)
            for effect in list(flow.effects):
                await self._perform(ctx, account, flow, effect, message)
            flow.effects.clear()
            ctx.turn.replies.extend(flow.replies)
            flow.replies.clear()
            if flow.state == "idle" and not in_flow:
                # PLAN between the steps of a payment: answered like BALANCE, the payment waits.
                if ctx.conv.state != "idle" and ctx.conv.state in payment_flow.STATES:
                    paying = await self.views.flow_for(ctx.session, ctx.conv, account, ctx.now)
                    ctx.turn.replies.append(paying.prompt())
            elif flow.state == "idle":
                ctx.conv.flow, ctx.conv.state, ctx.conv.context = "payment", "idle", {}
            else:
                ctx.conv.flow, ctx.conv.state, ctx.conv.context = (
                    PLAN_FLOW,
                    flow.state,
                    dict(flow.context),
                )
        finally:
            self.machine.remove_model(flow)

    async def _advance(
        self, ctx: TurnContext, account: Account, flow: PlanFlow, message: StoredInbound
    ) -> None:
        horizon = flow.plan.horizon if flow.plan else None
        meaning = parse_reply(
            message.body,
            plan_flow.READS[flow.state],
            today=today_of(account, ctx.now),
            horizon=horizon,
        )
        if flow.answer(meaning):
            flow.context["invalid_count"] = 0
            return
        if meaning.kind == "greeting":  # a hello is no wrong answer: no apology, no miss
            ctx.turn.replies.append(Reply("hello"))
            if flow.state != "idle":
                ctx.turn.replies.append(flow.prompt())
            return
        misses = int(flow.context.get("invalid_count", 0)) + 1
        flow.context["invalid_count"] = misses
        if misses >= (await self.views.flow_settings(ctx.session, account)).max_invalid_replies:
            flow.context["invalid_count"] = 0
            await hand_to_agent(ctx, self.views, account, reason="confused", text=message.body)
            return
        ctx.turn.replies.append(Reply("did_not_understand", {"reason": meaning.reason}))
        if flow.state != "idle":
            ctx.turn.replies.append(flow.prompt())

    async def _perform(
        self,
        ctx: TurnContext,
        account: Account,
        flow: PlanFlow,
        effect: Effect,
        message: StoredInbound,
    ) -> None:
        settings = await self.views.flow_settings(ctx.session, account)
        today = today_of(account, ctx.now)
        try:
            if effect.name == "sign_offer":
                await self._sign_offer(ctx, account, effect.args, message)
            elif effect.name == "move_installment" and flow.plan is not None:
                moved = await plan_changes.move_next_installment(
                    ctx.session,
                    flow.plan.plan_id,
                    new_date=date.fromisoformat(effect.args["new_date"]),
                    settings=settings,
                    today=today,
                    at=ctx.now,
                    channel=ctx.turn.channel,
                )
                ctx.turn.replies.append(Reply("plan_moved", {"change": moved}))
            elif effect.name == "skip_installment" and flow.plan is not None:
                skipped = await plan_changes.skip_next_installment(
                    ctx.session,
                    flow.plan.plan_id,
                    settings=settings,
                    today=today,
                    at=ctx.now,
                    channel=ctx.turn.channel,
                )
                ctx.turn.replies.append(Reply("plan_skipped", {"change": skipped}))
            elif effect.name == "pay_extra" and flow.plan is not None:
                await self._pay_extra(ctx, account, flow, effect.args)
        except (PlanChangeRefused, PaymentRefused) as refused:
            # The domain checks before it writes: a refusal leaves the plan as it was.
            ctx.turn.replies.append(Reply("plan_change_refused", {"reason": str(refused)}))

    async def _sign_offer(
        self, ctx: TurnContext, account: Account, args: dict[str, Any], message: StoredInbound
    ) -> None:
        offer = await ctx.session.get(Offer, int(args["offer_id"]), populate_existing=True)
        method = await ctx.session.get(PaymentMethod, int(args["method_id"]))
        if offer is None or method is None or method.account_id != account.id:
            ctx.turn.replies.append(Reply("plan_offer_closed", {"status": "withdrawn"}))
            return
        expired = offer.expires_at is not None and offer.expires_at <= ctx.now
        if offer.status != "open" or expired:
            status = "expired" if expired else offer.status
            ctx.turn.replies.append(Reply("plan_offer_closed", {"status": status}))
            return
        settings = await self.views.flow_settings(ctx.session, account)
        brand = await self.views.brand_for(ctx.session, account)
        schedule = offer_schedule(offer)
        method_label = method.description
        text = plan_agreement_text(
            env=self.services.notifier.env,
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
                ctx.session,
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
                    esign_consent_at=ctx.now,
                ),
                agreement_text=text,
                terms_version=settings.terms_version,
                at=ctx.now,
            )
        except OfferNotOpen:
            ctx.turn.replies.append(Reply("plan_offer_closed", {"status": "expired"}))
            return
        except PlanError as refused:
            ctx.turn.replies.append(Reply("plan_change_refused", {"reason": str(refused)}))
            return
        first = await ctx.session.scalar(
            select(Payment)
            .where(Payment.plan_id == plan.id)
            .order_by(Payment.scheduled_for, Payment.id)
            .limit(1)
        )
        ctx.turn.replies.append(
            Reply(
                "plan_signed",
                {
                    "offer": plan_offer_view(offer, zone_of(account)),
                    "method_label": method_label,
                    "reference": first.reference if first else "",
                    "masked_email": mask_email(account.email),
                },
            )
        )
        ctx.turn.agreement_copies.append(plan.id)

    async def _pay_extra(
        self, ctx: TurnContext, account: Account, flow: PlanFlow, args: dict[str, Any]
    ) -> None:
        assert flow.plan is not None
        settings = await self.views.flow_settings(ctx.session, account)
        brand = await self.views.brand_for(ctx.session, account)
        notifier = self.services.notifier
        amount = int(args["amount_cents"])
        plan_row = await plan_changes.active_plan(ctx.session, account.id)
        method = (
            await ctx.session.get(PaymentMethod, plan_row.method_id)
            if plan_row and plan_row.method_id
            else None
        )
        if method is None:
            raise PlanChangeRefused("Your plan has no payment method on file.")
        method_label = method.description
        extra = await plan_changes.pay_extra(
            ctx.session,
            flow.plan.plan_id,
            account,
            amount_cents=amount,
            payments=self.services.payments,
            # One confirmation, one key: a retried message or a second YES never charges twice.
            idempotency_key=f"plan-extra:{ctx.conv.id}:{args['change_id']}",
            on_recorded=queue_receipts(
                ctx, notifier, account, brand,
                await email_outbox.creditor_disclosure(ctx.session, account),
            ),
            agreement_text=notifier.agreement_text(
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
            today=today_of(account, ctx.now),
            at=ctx.now,
            channel=ctx.turn.channel,
        )
        outcome = extra.outcome
        ctx.turn.outcome = outcome
        await ctx.session.refresh(account)
        if extra.applied:
            ctx.turn.replies.append(
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
            ctx.turn.replies.append(outcome_reply(outcome, mask_email(account.email)))


def plan_offer_view(offer: Offer, zone: ZoneInfo) -> PlanOfferView:
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
