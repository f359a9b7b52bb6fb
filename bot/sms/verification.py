"""An unknown number's turns: the account ID is asked, then a second factor (a one-time code
sent to the contact on file, or last 4 of SSN and date of birth), with the lookup and attempt
limits, before the conversation is bound to the account."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.accounts import second_factor
from bot.ledger import queries as ledger
from bot.ledger.models import Account
from bot.sms.context import Services, StoredInbound, TurnContext
from bot.sms.parsing import Meaning, parse_reply
from bot.sms.views import AccountViews
from states import verification as verification_flow
from states.replies import Reply
from states.verification import VerificationFlow


class VerificationTurns:
    def __init__(self, services: Services, views: AccountViews) -> None:
        self.services = services
        self.views = views
        # One machine for the process; each message adds its model and removes it.
        self.machine = verification_flow.build_machine()

    async def answer(
        self, ctx: TurnContext, message: StoredInbound, keyword: Meaning | None
    ) -> None:
        flow = VerificationFlow(context=dict(ctx.conv.context or {}))
        ctx.conv.flow = "verification"
        # A checkpoint from before these states (a lock) starts over.
        initial = ctx.conv.state if ctx.conv.state in verification_flow.STATES else "new"
        self.machine.add_model(flow, initial=initial)
        try:
            if flow.state == "new":
                flow.ask_account()
            elif keyword is not None:
                ctx.turn.replies.append(flow.prompt())
            elif flow.state == "awaiting_account":
                await self._account_id_given(ctx, flow, message)
            else:
                await self._answer_given(ctx, flow, message)
            ctx.turn.replies[:0] = flow.replies
            flow.replies.clear()
            if ctx.conv.account_id is None:
                ctx.conv.state, ctx.conv.context = flow.state, flow.context
        finally:
            self.machine.remove_model(flow)

    async def _account_id_given(
        self, ctx: TurnContext, flow: VerificationFlow, message: StoredInbound
    ) -> None:
        secret_key = self.services.settings.secret_key
        meaning = parse_reply(message.body, "account_id", today=ctx.now.date())
        if meaning.kind != "text":
            ctx.turn.replies.append(Reply("did_not_understand", {"reason": None}))
            ctx.turn.replies.append(flow.prompt())
            return
        if await second_factor.too_many_lookups(
            self.services.coordinator.redis, f"sms:{ctx.conv.phone}"
        ):
            ctx.turn.replies.append(Reply("too_many_lookups"))
            return
        account = await ledger.account_by_ref(ctx.session, str(meaning.value))
        # An unknown account id is capped, counted and answered exactly like a real one.
        subject = (
            second_factor.account_subject(account.id)
            if account is not None
            else second_factor.unknown_subject(secret_key, str(meaning.value))
        )
        wait = await second_factor.wait_left(
            ctx.session, subject=subject, client=f"sms:{ctx.conv.phone}", now=ctx.now
        )
        if wait:
            ctx.turn.replies.append(_wait_reply(wait))
            return
        texts_allowed, brand = await self.views.code_sender(ctx.session, account)
        try:
            challenge = await second_factor.open_challenge(
                ctx.session,
                subject=subject,
                account=account,
                scope=ctx.conv.phone,
                secret_key=secret_key,
                now=ctx.now,
                purpose="sms_verification",
                brand=brand,
                texts_allowed=texts_allowed,
            )
        except second_factor.CodeLimitReached:
            await ledger.audit(
                ctx.session,
                "code_limit_reached",
                at=ctx.now,
                phone=ctx.conv.phone,
                account_id=account.id if account else None,
            )
            ctx.turn.replies.append(Reply("code_limit_reached"))
            return
        flow.context = {
            "candidate_account_id": account.id if account else None,
            "subject": subject,
            "challenge": challenge.id,
            "code_sha": challenge.digest,
            "code_expires": challenge.expires_at.isoformat(),
        }
        if challenge.code is not None:
            ctx.turn.codes.append(challenge.code)
        flow.account_given()

    async def _answer_given(
        self, ctx: TurnContext, flow: VerificationFlow, message: StoredInbound
    ) -> None:
        context = flow.context
        subject, challenge_id = context.get("subject"), context.get("challenge")
        if not subject or not challenge_id:  # a checkpoint from before these limits
            flow.ask_account()
            return
        client = f"sms:{ctx.conv.phone}"
        wait = await second_factor.wait_left(
            ctx.session, subject=subject, client=client, now=ctx.now
        )
        if wait:  # not even tried: a number that waits learns nothing from its guesses
            ctx.turn.replies.append(_wait_reply(wait))
            return
        account_id = context.get("candidate_account_id")
        account = await ctx.session.get(Account, account_id) if account_id else None
        meaning = parse_reply(message.body, "code", today=ctx.now.date())
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
                    secret_key=self.services.settings.secret_key,
                    scope=ctx.conv.phone,
                    answer=answer,
                    now=ctx.now,
                )
        second_factor.record_attempt(
            ctx.session,
            subject=subject,
            client=client,
            challenge_id=challenge_id,
            account_id=account_id,
            succeeded=ok,
            now=ctx.now,
            phone=ctx.conv.phone,
        )
        if not ok:
            await ledger.audit(
                ctx.session,
                "verification_failed",
                at=ctx.now,
                phone=ctx.conv.phone,
                account_id=account_id,
            )
            await ctx.session.flush()
            flow.tries_left = await second_factor.tries_left(ctx.session, challenge_id)
            wait = await second_factor.wait_left(
                ctx.session, subject=subject, client=client, now=ctx.now
            )
            ctx.turn.replies.append(
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
            ctx.session,
            "verified",
            at=ctx.now,
            phone=ctx.conv.phone,
            account_id=account.id,
            by=verified_by,
        )
        ctx.conv.account_id = account.id
        ctx.conv.flow, ctx.conv.state, ctx.conv.context = (
            "payment",
            "idle",
            {"verified_by": verified_by},
        )
        prompt = await self.views.idle_prompt(ctx.session, account, ctx.now)
        ctx.turn.replies.append(Reply("verified", {"first_name": account.first_name}))
        ctx.turn.replies.append(prompt)


def _wait_reply(wait: timedelta) -> Reply:
    return Reply("verification_wait", {"minutes": second_factor.minutes(wait)})
