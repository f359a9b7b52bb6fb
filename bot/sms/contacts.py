"""Contact changes inside the payment flow's contact step: a new email or phone gets a code
first (contact proof), the code that comes back proves it, the change is written and the old
contact is told."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.accounts import contact_change
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Conversation
from bot.security import mask_email
from bot.sms.context import Services, TurnContext
from bot.sms.parsing import Meaning
from bot.sms.views import AccountViews
from states.payment import PaymentFlow
from states.replies import Reply


class ContactTurns:
    def __init__(self, services: Services, views: AccountViews) -> None:
        self.services = services
        self.views = views

    async def prove_contact(
        self, ctx: TurnContext, account: Account, flow: PaymentFlow, changes: dict[str, Any]
    ) -> None:
        """A new contact proposed at the contact step: a code goes to it; nothing changes yet."""
        current = {"email": account.email, "phone": account.phone}
        new = {k: str(v) for k, v in changes.items() if v and str(v) != current.get(k)}
        if not new:
            flow.context.pop(contact_change.PENDING, None)
            flow.contact_done()
            return
        if ctx.conv.id is None:
            await ctx.session.flush()
        sent, failed, capped = await contact_change.offer_codes(
            ctx.session,
            self.services.notifier,
            flow.context,
            new,
            secret_key=self.services.settings.secret_key,
            account_id=account.id,
            conversation_id=ctx.conv.id,
            brand=await self.views.brand_for(ctx.session, account),
            now=ctx.now,
        )
        await ledger.audit(
            ctx.session,
            "contact_code_sent",
            at=ctx.now,
            account_id=account.id,
            channel=ctx.turn.channel,
            kinds=sorted(new),
            sent=len(sent),
        )
        ctx.turn.replies.append(
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

    async def contact_code(self, ctx: TurnContext, flow: PaymentFlow, meaning: Meaning) -> Meaning:
        """Codes entered for pending contacts: what they prove, in the flow's words."""
        had_pending = bool(flow.context.get(contact_change.PENDING))
        codes: dict[str, str] = dict(meaning.value or {})  # type: ignore[call-overload]
        proved, wrong = contact_change.check_codes(
            flow.context,
            codes,
            secret_key=self.services.settings.secret_key,
            conversation_id=ctx.conv.id,
            now=ctx.now,
        )
        if wrong:
            await ledger.audit(
                ctx.session,
                "contact_code_failed",
                at=ctx.now,
                account_id=ctx.conv.account_id,
                channel=ctx.turn.channel,
            )
        if proved:
            if wrong:
                ctx.turn.replies.append(Reply("did_not_understand", {"reason": "wrong_code"}))
            return Meaning("contact_proved", proved)
        if had_pending and not flow.context.get(contact_change.PENDING):
            return Meaning("invalid", reason="code_tries_used")
        return Meaning("invalid", reason="wrong_code")

    async def change_email(self, ctx: TurnContext, account: Account, email: str) -> None:
        """Only after the code sent to ``email`` came back (see contact_code)."""
        old = account.email
        account.email = email
        account.updated_at = ctx.now
        await ledger.audit(
            ctx.session,
            "email_changed",
            at=ctx.now,
            account_id=account.id,
            phone=ctx.conv.phone,
            channel=ctx.turn.channel,
        )
        await self._tell_old_contact(ctx, account, "email", old, account.email)

    async def change_phone(self, ctx: TurnContext, account: Account, phone: str) -> None:
        """Only after the code sent to ``phone`` came back (see contact_code)."""
        if phone == account.phone:
            return
        old = account.phone
        account.phone, account.updated_at = phone, ctx.now
        # The conversation follows the number, so texts from it continue this same flow.
        taken = await ctx.session.scalar(select(Conversation.id).where(Conversation.phone == phone))
        if taken is None and not ctx.conv.phone.startswith("web:"):
            ctx.conv.phone = phone
        await ledger.audit(
            ctx.session,
            "phone_changed",
            at=ctx.now,
            account_id=account.id,
            channel=ctx.turn.channel,
        )
        await self._tell_old_contact(ctx, account, "phone", old, phone)

    async def _tell_old_contact(
        self, ctx: TurnContext, account: Account, kind: str, old: str | None, new: str
    ) -> None:
        queued = await contact_change.tell_old_contact(
            ctx.session,
            self.services.notifier,
            account,
            kind=kind,
            old=old,
            new=new,
            brand=await self.views.brand_for(ctx.session, account),
            support_contact=await self.views.support_contact_for(ctx.session, account),
            conversation_id=ctx.conv.id,
            now=ctx.now,
        )
        if queued is not None:
            ctx.turn.queued_emails.append(queued)
