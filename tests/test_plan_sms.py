"""Signing a plan offer by text (PLAN, then AGREE), through the signed Twilio webhook."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from bot import appkeys
from bot.ledger.models import Account, Agreement, AuditEvent, Link, Offer, Payment, Plan
from bot.plans.signing import agreement_digest, offer_schedule
from bot.plans.terms import plan_agreement_text
from bot.text.rendering import build_environment
from tests.seed import add_account

SCHEDULE = [
    ["2026-12-15", 20834],
    ["2027-01-15", 20834],
    ["2027-02-15", 20834],
    ["2027-03-15", 20834],
    ["2027-04-15", 20834],
    ["2027-05-15", 20830],
]
SUMMARY = (
    "Your plan: 6 monthly payments of $208.34 (last $208.30) from Visa ending 4242, first "
    "Dec 15, 2026, total $1,250.00. "
    "Reply AGREE to sign the payment agreement at https://paybot.test/p/"
)
SIGNED = re.compile(
    r"Done: your plan is set\. 6 payments of \$208\.34 \(last \$208\.30\) from Visa ending 4242, "
    r"first on "
    r"Dec 15, 2026\. Ref P-\w+\. A copy is on its way to m\*\*\*@example\.com\."
)


async def add_plan_offer(
    app: Any,
    account: Account,
    *,
    schedule: list[list[Any]] | None = None,
    expires_at: datetime | None = datetime(2026, 12, 9, 4, 59, tzinfo=UTC),
    rules: dict[str, int] | None = None,
) -> int:
    schedule = schedule or SCHEDULE
    async with app[appkeys.DATABASE].session() as session:
        offer = Offer(
            account_id=account.id,
            kind="plan",
            total_cents=sum(cents for _, cents in schedule),
            installment_count=len(schedule),
            frequency="monthly",
            schedule=schedule,
            rules=rules,
            expires_at=expires_at,
            status="open",
            created_at=app[appkeys.CLOCK].now(),
        )
        session.add(offer)
        await session.commit()
        return offer.id


async def count(app: Any, model: Any, *where: Any) -> int:
    async with app[appkeys.DATABASE].session() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))


async def test_plan_shows_the_offer_and_agree_signs_it(app, client, phone, providers):
    account = await add_account(app)
    offer_id = await add_plan_offer(app, account)
    maria = phone()

    (summary,) = await maria.send("PLAN")
    assert summary.startswith(SUMMARY)
    assert summary.endswith(" or NO. To pay with another card, open the link.")
    token = re.search(r"/p/(\S+)", summary)[1]  # type: ignore[index]
    async with app[appkeys.DATABASE].session() as session:
        link = await session.scalar(select(Link).order_by(Link.id.desc()).limit(1))
        assert link.purpose == "plan_offer" and link.offer_id == offer_id
    # The link opens the plan on the portal (review, another card, sign on the web).
    opened = await client.get(f"/p/{token}", allow_redirects=False)
    assert opened.status == 303 and opened.headers["Location"] == "/portal/plan"

    (done,) = await maria.send("I agree", sid="SM" + "a" * 32)
    assert SIGNED.fullmatch(done), done

    async with app[appkeys.DATABASE].session() as session:
        (plan,) = (await session.scalars(select(Plan))).all()
        assert (plan.offer_id, plan.total_cents, plan.installment_count, plan.status) == (
            offer_id,
            125000,
            6,
            "active",
        )
        installments = (
            await session.scalars(select(Payment).order_by(Payment.installment_number))
        ).all()
        assert [(str(p.scheduled_for), p.amount_cents, p.status) for p in installments] == [
            (day, cents, "scheduled") for day, cents in SCHEDULE
        ]
        assert done.split("Ref ")[1].startswith(installments[0].reference)
        (agreement,) = (await session.scalars(select(Agreement))).all()
        assert agreement.signature_kind == "sms_reply" and agreement.channel == "sms"
        assert agreement.signature_data == "I agree"
        assert agreement.signer_name == "Maria Lopez"
        assert agreement.offer_id == offer_id and agreement.plan_id == plan.id
        assert agreement.esign_consent_at is not None
        offer = await session.get(Offer, offer_id)
        assert offer.status == "accepted"
        account = await session.get(Account, account.id)
        # The text kept is the plan agreement, word for word, and its hash is the text's.
        expected = plan_agreement_text(
            env=build_environment(),
            account=account,
            offer=offer,
            schedule=offer_schedule(offer),
            method_label="Visa ending 4242",
            method_kind="card",
            terms_version="2026-11",
            brand="Northwind Recovery",
        )
        assert agreement.text == expected
        assert agreement.text_sha256 == agreement_digest(expected)
    copy = providers.email.outbox[-1]
    assert copy.to == "maria@example.com"
    assert any(a.filename.endswith(".pdf") for a in copy.attachments)

    # Twilio retries the same message, then the customer says AGREE again: nothing more.
    assert await maria.send("I agree", sid="SM" + "a" * 32) == [done]
    (again,) = await maria.send("AGREE")
    assert again.startswith("Your plan: next payment $208.34, Pending (scheduled for Dec 15).")
    assert await count(app, Plan) == 1
    assert await count(app, Payment) == 6
    assert await count(app, Agreement) == 1
    assert len([m for m in providers.email.outbox if m.attachments]) == 1
    assert await count(app, AuditEvent, AuditEvent.kind == "plan_signed") == 1


async def test_no_declines_and_nothing_is_signed(app, phone):
    account = await add_account(app)
    await add_plan_offer(app, account)
    maria = phone()
    await maria.send("my plan")
    assert await maria.send("no") == [
        "OK, nothing was signed. Reply PLAN whenever you want to see the offer again."
    ]
    assert await count(app, Plan) == 0
    async with app[appkeys.DATABASE].session() as session:
        assert (await session.scalar(select(Offer.status))) == "open"


async def test_setting_off_sends_the_link(app, phone):
    account = await add_account(app, creditor_settings={"sms_plan_signing": False})
    offer_id = await add_plan_offer(app, account)
    maria = phone()
    (reply,) = await maria.send("PLAN")
    assert re.fullmatch(r"Open https://paybot\.test/p/\S+ to review and sign your plan\.", reply)
    assert await maria.send("agree") != []
    assert await count(app, Plan) == 0
    assert await count(app, Link, Link.offer_id == offer_id) >= 1


async def test_no_saved_method_hands_over_to_the_link(app, phone):
    account = await add_account(app, methods=())
    await add_plan_offer(app, account)
    maria = phone()
    (reply,) = await maria.send("PLAN")
    assert reply.startswith(
        "To set up your plan of 6 payments of $208.34, add a card or bank account and sign "
        "securely at https://paybot.test/p/"
    )
    await maria.send("agree")
    assert await count(app, Plan) == 0


async def test_expired_offer_gets_a_clear_reply(app, phone, clock):
    account = await add_account(app)
    await add_plan_offer(app, account, expires_at=clock.now() - timedelta(minutes=1))
    maria = phone()
    assert await maria.send("PLAN") == [
        "Your plan offer expired on Nov 25, 2026, so it can no longer be signed. "
        "Reply AGENT to ask for a new one, or PAY to make a payment."
    ]
    assert await count(app, Plan) == 0


async def test_offer_expiring_between_summary_and_agree_is_not_signed(app, phone, clock):
    account = await add_account(app)
    await add_plan_offer(app, account, expires_at=clock.now() + timedelta(minutes=5))
    maria = phone()
    (summary,) = await maria.send("PLAN")
    assert summary.startswith(SUMMARY)
    clock.advance(timedelta(minutes=10))
    assert await maria.send("agree") == [
        "Sorry, this plan offer has expired, so nothing was signed. "
        "Reply AGENT to ask for a new one."
    ]
    assert await count(app, Plan) == 0


async def test_offer_signed_on_the_web_meanwhile_is_not_signed_again(app, phone):
    account = await add_account(app)
    offer_id = await add_plan_offer(app, account)
    maria = phone()
    await maria.send("PLAN")
    async with app[appkeys.DATABASE].session() as session:
        offer = await session.get(Offer, offer_id)
        offer.status = "accepted"
        await session.commit()
    assert await maria.send("agree") == [
        "This plan offer is already signed. Reply PLAN to see your plan."
    ]
    assert await count(app, Agreement) == 0


async def test_plan_without_offer_or_plan(app, phone):
    await add_account(app)
    maria = phone()
    assert await maria.send("plan") == [
        "You have no payment plan with us. Reply PAY to make a payment, or AGENT to ask "
        "about a plan."
    ]


async def test_help_names_plan(app, phone):
    await add_account(app)
    (help_text,) = await phone().send("HELP")
    assert "PLAN for your payment plan" in help_text
    assert len(help_text) <= 306


async def test_plan_between_payment_steps_leaves_the_payment_waiting(app, phone):
    await add_account(app)
    maria = phone()
    await maria.send("pay")
    (ask_amount,) = await maria.send("ok")
    assert ask_amount.startswith("How much would you like to pay?")
    assert await maria.send("PLAN") == [
        "You have no payment plan with us. Reply PAY to make a payment, or AGENT to ask "
        "about a plan.\n" + ask_amount
    ]
    (method,) = await maria.send("50")
    assert method.startswith("Pay with Visa ending 4242?")


async def test_an_offer_with_its_own_schedule_is_not_in_the_pay_menu(app, phone):
    account = await add_account(app)
    await add_plan_offer(app, account)
    maria = phone()
    await maria.send("pay")
    (next_step,) = await maria.send("ok")
    assert next_step.startswith("How much would you like to pay?")
