"""Changing a signed plan by text: move the next date, skip one, pay extra now (each confirmed by
YES and recorded), through the signed Twilio webhook."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Account, AuditEvent, Payment, Plan
from tests.seed import add_account
from tests.test_plan_sms import SCHEDULE, add_plan_offer, count


async def signed_plan(app: Any, phone: Any, **account_kw: Any) -> Any:
    rules = account_kw.pop("rules", None)
    account = await add_account(app, **account_kw)
    await add_plan_offer(app, account, rules=rules)
    maria = phone()
    await maria.send("PLAN")
    (done,) = await maria.send("agree")
    assert done.startswith("Done: your plan is set."), done
    return maria


async def installments(app: Any) -> list[tuple[str, int, str]]:
    async with app[appkeys.DATABASE].session() as session:
        rows = await session.scalars(
            select(Payment).where(Payment.installment_number.is_not(None)).order_by(Payment.id)
        )
        return [(str(p.scheduled_for), p.amount_cents, p.status) for p in rows]


async def audit(app: Any, kind: str) -> list[dict[str, Any]]:
    async with app[appkeys.DATABASE].session() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id)
        )
        return [dict(e.detail) for e in rows]


ORIGINAL = [(day, cents, "scheduled") for day, cents in SCHEDULE]
ASK_DATE = (
    "Your next payment is on Dec 15, 2026. Reply a new date up to Dec 29, 2026, like 12/29, "
    "or NO to go back."
)


async def test_plan_shows_status_and_options(app, phone):
    maria = await signed_plan(app, phone)
    assert await maria.send("PLAN") == [
        "Your plan: next payment $208.34, Pending (scheduled for Dec 15). Paid so far $0.00; "
        "$1,250.00 left in 6 payments. Reply MOVE to change the next date, SKIP to skip it, "
        "EXTRA to pay more now."
    ]


async def test_move_within_the_limit(app, phone):
    maria = await signed_plan(app, phone)
    await maria.send("PLAN")
    assert await maria.send("MOVE") == [ASK_DATE]
    assert await maria.send("12/20") == [
        "Move your $208.34 payment from Dec 15, 2026 to Dec 20, 2026? Reply YES to confirm or "
        "NO to keep it."
    ]
    assert await maria.send("yes") == [
        "Done: your $208.34 payment moved from Dec 15, 2026 to Dec 20, 2026."
    ]
    assert (await installments(app))[0] == ("2026-12-20", 20834, "scheduled")
    assert (await installments(app))[1:] == ORIGINAL[1:]
    (event,) = await audit(app, "plan_installment_moved")
    assert (event["old_date"], event["new_date"], event["channel"]) == (
        "2026-12-15",
        "2026-12-20",
        "sms",
    )


async def test_move_over_the_limit_and_into_the_past_is_refused(app, phone):
    maria = await signed_plan(app, phone)
    # A natural phrasing, straight from the idle conversation.
    assert await maria.send("can I change the date of my payment?") == [ASK_DATE]
    assert await maria.send("12/30") == [
        "Your plan lets you move a payment up to 14 days; the latest date is Dec 29, 2026. "
        "Nothing was changed.\n" + ASK_DATE
    ]
    (past,) = await maria.send("11/20")
    assert past.startswith("That date has already passed.")
    assert await maria.send("no") == [
        "Your plan: next payment $208.34, Pending (scheduled for Dec 15). Paid so far $0.00; "
        "$1,250.00 left in 6 payments. Reply MOVE to change the next date, SKIP to skip it, "
        "EXTRA to pay more now."
    ]
    assert await installments(app) == ORIGINAL
    assert await audit(app, "plan_installment_moved") == []


async def test_a_second_move_is_bounded_by_the_original_date(app, phone):
    maria = await signed_plan(app, phone)
    for text in ["move my payment", "12/25", "yes"]:
        await maria.send(text)
    assert (await maria.send("move my payment"))[0].startswith(
        "Your next payment is on Dec 25, 2026. Reply a new date up to Dec 29, 2026"
    )
    (refused,) = await maria.send("1/5")
    assert refused.startswith("Your plan lets you move a payment up to 14 days")
    assert (await installments(app))[0][0] == "2026-12-25"


async def test_move_may_not_reach_the_following_payment(app, phone):
    maria = await signed_plan(app, phone, rules={"move_max_days": 60, "skips_allowed": 1})
    await maria.send("MOVE")
    (refused,) = await maria.send("1/15")
    assert refused.startswith(
        "The new date must be before your following payment on Jan 15, 2027. Nothing was changed."
    )
    assert await installments(app) == ORIGINAL


async def test_no_cancels_a_change(app, phone):
    maria = await signed_plan(app, phone)
    await maria.send("MOVE")
    await maria.send("12/20")
    assert await maria.send("no") == ["OK, nothing was changed. Reply PLAN to see your plan."]
    await maria.send("SKIP")
    assert await maria.send("no") == ["OK, nothing was changed. Reply PLAN to see your plan."]
    assert await installments(app) == ORIGINAL
    async with app[appkeys.DATABASE].session() as session:
        assert (await session.scalar(select(Plan.skips_used))) == 0


async def test_skip_once_then_refused(app, phone):
    maria = await signed_plan(app, phone)
    assert await maria.send("skip this month") == [
        "Skip your $208.34 payment on Dec 15, 2026? It will be due on Jun 15, 2027, after your "
        "last payment. Reply YES to confirm or NO to keep it."
    ]
    assert await maria.send("yes") == [
        "Done: your $208.34 payment of Dec 15, 2026 is skipped. It is now due on Jun 15, 2027."
    ]
    assert (await installments(app))[0] == ("2027-06-15", 20834, "scheduled")
    async with app[appkeys.DATABASE].session() as session:
        assert (await session.scalar(select(Plan.skips_used))) == 1
    (event,) = await audit(app, "plan_installment_skipped")
    assert (event["old_date"], event["new_date"], event["skips_used"]) == (
        "2026-12-15",
        "2027-06-15",
        1,
    )
    (status,) = await maria.send("PLAN")
    assert status.startswith("Your plan: next payment $208.34, Pending (scheduled for Jan 15).")
    assert await maria.send("SKIP") == [
        "You can skip one payment on this plan and already did. Nothing was changed."
    ]
    assert len(await audit(app, "plan_installment_skipped")) == 1


async def test_skip_not_allowed_by_the_plan(app, phone):
    maria = await signed_plan(app, phone, rules={"skips_allowed": 0, "move_max_days": 14})
    assert await maria.send("SKIP") == [
        "Your plan does not allow skipping a payment. Nothing was changed."
    ]


async def test_extra_amount_below_the_minimum_is_refused(app, phone):
    maria = await signed_plan(app, phone)
    assert await maria.send("EXTRA") == [
        "How much extra would you like to pay now? Reply an amount from $25.00 to $1,250.00, "
        "or FULL to pay off the plan. Or NO to go back."
    ]
    (refused,) = await maria.send("$10")
    assert refused.startswith("The smallest extra payment is $25.00. Nothing was changed.")
    (refused,) = await maria.send("2000")
    assert refused.startswith("That is more than is left on your plan ($1,250.00).")
    assert await maria.send("no") != []
    assert await count(app, Payment) == 6


async def payment_intents(localstripe: Any) -> list[dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{localstripe.url}/v1/payment_intents",
            params={"limit": "100"},
            headers={"Authorization": "Bearer sk_test_paybot"},
        ) as response:
            assert response.status == 200, await response.text()
            return (await response.json())["data"]


class TestExtraPayment:
    """Against localstripe, through the real Stripe adapter."""

    @pytest.fixture
    def gateway(self, stripe_gateway):  # type: ignore[no-untyped-def]
        return stripe_gateway

    async def test_extra_is_charged_once_and_lowers_the_last_installments(
        self, app, phone, localstripe, providers
    ):
        maria = await signed_plan(app, phone)
        await maria.send("EXTRA")
        assert await maria.send("300") == [
            "Pay $300.00 now from Visa ending 4242? Your last payments will be lowered, leaving "
            "$950.00 on your plan. Reply YES to confirm or NO to cancel."
        ]
        (done,) = await maria.send("yes", sid="SM" + "e" * 32)
        assert done.startswith("Done: $300.00 paid with Visa ending 4242. Ref P-"), done
        assert done.endswith("Your plan now has $950.00 left. Receipt sent to m***@example.com.")
        # A retried webhook and a second YES: one charge, one change.
        assert await maria.send("yes", sid="SM" + "e" * 32) == [done]
        await maria.send("yes")
        (intent,) = await payment_intents(localstripe)
        assert intent["amount"] == 30000 and intent["status"] == "succeeded"

        rows = await installments(app)
        assert rows == [
            *ORIGINAL[:4],
            ("2027-04-15", 20834 - (30000 - 20830), "scheduled"),
            ("2027-05-15", 0, "canceled"),
        ]
        scheduled = sum(cents for _, cents, status in rows if status == "scheduled")
        async with app[appkeys.DATABASE].session() as session:
            extra = await session.scalar(
                select(Payment).where(Payment.installment_number.is_(None))
            )
            plan = await session.scalar(select(Plan))
            balance = await session.scalar(select(Account.balance_cents))
        assert extra.status == "paid" and extra.amount_cents == 30000 and extra.plan_id == plan.id
        assert extra.processor_id == intent["id"]
        assert scheduled + extra.amount_cents == plan.total_cents
        assert balance == 125000 - 30000
        (event,) = await audit(app, "plan_extra_payment")
        assert event["amount_cents"] == 30000 and event["remaining_cents"] == 95000
        assert providers.email.outbox[-1].subject.startswith("Your payment receipt")
        (status,) = await maria.send("PLAN")
        assert "Paid so far $300.00; $950.00 left in 5 payments." in status

    async def test_extra_with_the_amount_in_the_request(self, app, phone, localstripe):
        maria = await signed_plan(app, phone)
        (confirm,) = await maria.send("I want to pay $50 extra")
        assert confirm.startswith("Pay $50.00 now from Visa ending 4242?")
        await maria.send("yes")
        assert (await installments(app))[-1] == ("2027-05-15", 20830 - 5000, "scheduled")
        assert len(await payment_intents(localstripe)) == 1

    async def test_no_cancels_the_extra_payment(self, app, phone, localstripe):
        maria = await signed_plan(app, phone)
        for text in ["EXTRA", "100"]:
            await maria.send(text)
        assert await maria.send("no") == ["OK, nothing was changed. Reply PLAN to see your plan."]
        assert await payment_intents(localstripe) == []
        assert await installments(app) == ORIGINAL

    async def test_declined_extra_changes_nothing(
        self, app, phone, localstripe, method_ref_for, gateway
    ):
        declining = await method_ref_for(gateway, "charge_declined")
        maria = await signed_plan(app, phone, methods=(declining,))
        for text in ["EXTRA", "100"]:
            await maria.send(text)
        text = "\n".join(await maria.send("yes"))
        assert "did not go through" in text and "Nothing was charged." in text
        assert await installments(app) == ORIGINAL
        assert await audit(app, "plan_extra_payment") == []


async def test_every_change_is_in_the_audit_trail(app, phone):
    maria = await signed_plan(app, phone)
    for text in ["MOVE", "12/18", "yes", "SKIP", "yes"]:
        await maria.send(text)
    moved = await audit(app, "plan_installment_moved")
    skipped = await audit(app, "plan_installment_skipped")
    assert [(e["old_date"], e["new_date"]) for e in moved] == [("2026-12-15", "2026-12-18")]
    assert [(e["old_date"], e["new_date"]) for e in skipped] == [("2026-12-18", "2027-06-15")]
    assert date.fromisoformat((await installments(app))[0][0]) == date(2027, 6, 15)


async def test_dates_are_the_customers_own(app, phone, clock):
    """At 06:00 UTC on Dec 15 it is still Dec 14 in Los Angeles: moving the Dec 15 payment to
    "today" (12/14 there) is allowed; in New York that day has passed."""
    maria = await signed_plan(app, phone, timezone="America/Los_Angeles")
    clock.set(datetime(2026, 12, 15, 6, 0, tzinfo=UTC))
    await maria.send("MOVE")
    assert await maria.send("12/14") == [
        "Move your $208.34 payment from Dec 15, 2026 to Dec 14, 2026? Reply YES to confirm or "
        "NO to keep it."
    ]
    async with app[appkeys.DATABASE].session() as session:
        account = await session.scalar(select(Account))
        account.timezone = "America/New_York"
        await session.commit()
    await maria.send("PLAN")
    await maria.send("MOVE")
    (past,) = await maria.send("12/14")
    assert past.startswith("That date has already passed.")
