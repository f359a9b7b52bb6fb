"""What a customer is shown of an account: the creditor's name and flow settings (cached), the
account as the payment flow sees it, BALANCE and LINK, and the rendering of a turn's replies
into texts (with the link they carry)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.settings import FlowSettings
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Conversation, Payment, Plan
from bot.payments import choices
from bot.payments.collectable import collectable, worth_offering
from bot.payments.service import PaymentOutcome
from bot.security import mask_email, mask_phone
from bot.sms.context import Services, Turn
from bot.sms.live_link import payment_link
from bot.text.i18n import DEFAULT_DESCRIPTION, N_
from states.payment import AccountView, MethodView, OfferView, PaymentFlow
from states.plan_change import PlanFlow
from states.replies import Reply

CREDITOR_CACHE_FOR = timedelta(minutes=1)
# The payment service's refusals (bot/payments/service.py raises them in English): in the catalog,
# so payment_refused.txt says them in the customer's language.
REFUSALS = (
    N_("That payment method is no longer on file."),
    N_("We could not record the payment. Nothing was charged."),
    N_("That settlement offer is no longer open."),
    N_("Your plan has no payment method on file."),
)


@dataclass(frozen=True)
class CreditorTerms:
    name: str  # as customers read it: the brand, else the creditor's name
    support_contact: str  # empty: the deployment's PAYBOT_SUPPORT_CONTACT
    settings: FlowSettings


class AccountViews:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._creditors: dict[str, tuple[CreditorTerms | None, datetime]] = {}

    async def _creditor(self, session: AsyncSession, account: Account) -> CreditorTerms | None:
        """A creditor's name and settings, kept for a minute: they change rarely and every
        message and page needs them."""
        code = account.creditor_code
        if code is None:
            return None
        cached = self._creditors.get(code)
        now = self.services.clock.now()
        if cached is not None and now - cached[1] < CREDITOR_CACHE_FOR:
            return cached[0]
        creditor = await ledger.creditor_of(session, account)
        terms = None
        if creditor is not None:
            terms = CreditorTerms(
                name=creditor.shown_name,
                support_contact=creditor.support_contact,
                settings=self.services.settings.flow.for_creditor(creditor),
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
        return (creditor.name if creditor else "") or self.services.settings.brand

    async def support_contact_for(self, session: AsyncSession, account: Account | None) -> str:
        creditor = await self._creditor(session, account) if account is not None else None
        own = creditor.support_contact if creditor else ""
        return own or self.services.settings.support_contact

    async def flow_settings(self, session: AsyncSession, account: Account) -> FlowSettings:
        creditor = await self._creditor(session, account)
        return creditor.settings if creditor else self.services.settings.flow

    async def account_view(
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
        offers, methods, state = await choices.account_choices(
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
                MethodView(id=m.id, kind=m.kind, brand=m.brand, last4=m.last4, masked=m.label)
                for m in methods
                if m.kind in settings.methods_enabled
            ),
            today=now.astimezone(zone).date(),
            terms_url=f"{self.services.settings.public_base_url}/t/{settings.terms_version}",
            open_cents=state.open_cents if state else None,
            open_reason=state.explanation() if state and state.reduced else None,
            has_plan=bool(state and state.in_plan),
        )

    async def idle_prompt(self, session: AsyncSession, account: Account, now: datetime) -> Reply:
        """The main menu, as a payment flow at rest asks it."""
        view = await self.account_view(session, account, now, with_open=False)
        settings = await self.flow_settings(session, account)
        return PaymentFlow(view, settings, state="idle").prompt()

    async def flow_for(
        self,
        session: AsyncSession,
        conv: Conversation,
        account: Account,
        now: datetime,
        *,
        proved_by: str | None = None,
    ) -> PaymentFlow:
        """The payment flow where the conversation's checkpoint left it (not yet in a machine)."""
        proof = proved_by or (conv.context or {}).get("verified_by")
        view = await self.account_view(session, account, now, proof=proof)
        settings = await self.flow_settings(session, account)
        flow = PaymentFlow(view, settings, context=dict(conv.context or {}), state=conv.state)
        return limited_to_proof(flow, proof)

    async def answer_in_place(
        self,
        session: AsyncSession,
        account: Account,
        flow: PaymentFlow | PlanFlow,
        kind: str,
        turn: Turn,
    ) -> None:
        """BALANCE and LINK mean the same in every flow: answered, and the step still waits."""
        if kind == "balance":
            turn.replies.append(await self.balance_reply(session, account))
            if flow.state != "idle":
                turn.replies.append(flow.prompt())
        else:
            turn.replies.append(
                Reply(
                    "link",
                    {"link_hours": self.services.settings.link_lifetime_hours},
                    needs_link=True,
                )
            )

    async def balance_reply(self, session: AsyncSession, account: Account) -> Reply:
        """The balance, and what is still owed once scheduled and pending payments are counted
        (the one rule, bot.payments.collectable, in its own words): what is on its way is no
        news to repeat, what is left to pay is."""
        state = await collectable(session, account.id, balance_cents=account.balance_cents)
        upcoming = await session.scalar(
            select(Payment)
            .where(Payment.account_id == account.id, Payment.status == "scheduled")
            .order_by(Payment.scheduled_for, Payment.id)
            .limit(1)
        )
        # A declined installment of a running plan is news: "paid so far" alone would hide it.
        declined = list(
            await session.scalars(
                select(Payment)
                .join(Plan, Plan.id == Payment.plan_id)
                .where(Payment.account_id == account.id, Payment.status == "declined",
                       Plan.status == "active")
                .order_by(Payment.scheduled_for, Payment.id)
            )
        )
        return Reply(
            "balance",
            {
                "balance_cents": account.balance_cents,
                "description": account.description or DEFAULT_DESCRIPTION,
                "reason": state.explanation() if state.committed_cents else "",
                "next_payment": {"amount_cents": upcoming.amount_cents,
                                 "day": upcoming.scheduled_for} if upcoming else None,
                "declined": {"count": len(declined),
                             "cents": sum(p.amount_cents for p in declined),
                             "day": declined[-1].scheduled_for} if declined else None,
            },
        )

    async def render(
        self,
        session: AsyncSession,
        conv: Conversation | None,
        account: Account | None,
        replies: list[Reply],
        now: datetime,
        *,
        language: str | None = None,
    ) -> list[str]:
        """The replies as texts, in `language` (None: the language of the moment)."""
        if not replies:
            return []
        settings = self.services.settings
        base: dict[str, Any] = {
            "brand": settings.brand,
            "support_contact": settings.support_contact,
            "first_name": account.first_name if account else "",
            "disclosure": "",
            "method_words": settings.flow.method_words,
        }
        if account is not None:
            base["brand"] = await self.brand_for(session, account)
            base["support_contact"] = await self.support_contact_for(session, account)
            base["method_words"] = (await self.flow_settings(session, account)).method_words
            offer_id = next((r.link_offer_id for r in replies if r.link_offer_id), None)
            if offer_id is not None:
                # The offer's own link: the portal opens the plan to review and sign.
                token = await ledger.create_link(
                    session,
                    account_id=account.id,
                    at=now,
                    lifetime=timedelta(hours=settings.link_lifetime_hours),
                    purpose="plan_offer",
                    offer_id=offer_id,
                )
                base["link_url"] = f"{settings.public_base_url}/p/{token}"
            elif any(r.needs_link for r in replies):
                # The conversation's live link again (not one per prompt); LINK gets a new one.
                base["link_url"] = await payment_link(
                    session, conv=conv, account=account, now=now, settings=settings,
                    fresh=any(r.template == "link" for r in replies),
                )
        return self.services.renderer.render_all(replies, base, language)


def limited_to_proof(flow: PaymentFlow, proved_by: str | None) -> PaymentFlow:
    """Knowledge answers are a look-up, not proof: such a customer pays once, now. No plan and
    no date later, which would leave charges waiting on a method they may not own."""
    if proved_by == "knowledge":
        flow.proved_by = proved_by
        settlements = tuple(o for o in flow.account.offers if o.kind == "settlement")
        flow.account = dataclasses.replace(flow.account, offers=settlements)
    return flow


def zone_of(account: Account) -> ZoneInfo:
    return ZoneInfo(account.timezone or "America/New_York")


def today_of(account: Account, now: datetime) -> date:
    return now.astimezone(zone_of(account)).date()


def outcome_reply(outcome: PaymentOutcome, masked_email: str | None) -> Reply:
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
