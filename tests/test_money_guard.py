"""Never collect more than is owed (issue 12, findings 1 and 2): the one rule of
bot/payments/collectable.py on every path, asserted on what the customer reads and what the
ledger holds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bot import appkeys
from bot.accounts.loading import parse_account, upsert_account
from bot.ledger.models import Account, Offer, OutboundEmail, Payment, Plan
from bot.payments.collectable import collectable
from bot.plans.offers import describe_offer
from bot.providers.sandbox_gateway import SandboxGateway
from tests.seed import add_account
from tests.test_plan_sms import add_plan_offer
from tests.test_stripe_webhooks import SECRET, intent_event, post_event
from tests.test_worker import local, make_worker

PLAN_3X100 = [["2026-12-01", 10000], ["2027-01-01", 10000], ["2027-02-01", 10000]]
TAKEN = ("scheduled", "processing", "pending", "paid")


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    return settings.replace(stripe_webhook_secret=SECRET)


class WatchedGateway(SandboxGateway):
    """The sandbox, and a look at the ledger while each charge is at the processor."""

    watch: Any = None

    async def charge(self, **kwargs: Any) -> Any:
        if self.watch is not None:
            await self.watch()
        return await super().charge(**kwargs)


@pytest.fixture
def gateway() -> WatchedGateway:
    return WatchedGateway()


async def ledger_of(app: Any, ref: str = "ACC-1001") -> tuple[int, list[tuple[int, str]]]:
    async with app[appkeys.DATABASE].session() as session:
        account = await session.scalar(select(Account).where(Account.account_ref == ref))
        rows = await session.execute(
            select(Payment.amount_cents, Payment.status)
            .where(Payment.account_id == account.id)
            .order_by(Payment.id)
        )
        return account.balance_cents, [tuple(r) for r in rows]


def taken_or_promised(rows: list[tuple[int, str]]) -> int:
    return sum(cents for cents, status in rows if status in TAKEN)


async def sign_plan_by_text(app: Any, phone: Any, account: Account) -> Any:
    await add_plan_offer(app, account, schedule=PLAN_3X100)
    maria = phone()
    (summary,) = await maria.send("PLAN")
    assert summary.startswith("Your plan: 3 monthly payments of $100.00"), summary
    (done,) = await maria.send("AGREE")
    assert done.startswith("Done: your plan is set."), done
    return maria


async def run_worker_on(app: Any, clock: Any, *days: date) -> None:
    for day in days:
        clock.set(local(day, 10))
        report = await make_worker(app, outreach=False).run_once()
        assert report.errors == 0


# --------------------------------------------------------------------------- finding 1


async def test_pay_by_text_on_top_of_a_signed_plan_is_refused_in_words(app, phone, clock):
    """$300 owed, 3 x $100 signed by text: PAY takes nothing more, and says why."""
    account = await add_account(app, balance="300.00")
    maria = await sign_plan_by_text(app, phone, account)

    (reply,) = await maria.send("PAY")
    assert reply == (
        "Your balance on Acme Card ending 4821 is $300.00. You owe $0.00 after your scheduled "
        "and pending payments, so nothing more is due. Reply PLAN to see your plan."
    )
    # The rest of the old journey ($150 now) reaches no payment either.
    for text in ["ok", "150", "1", "now", "yes", "agree"]:
        await maria.send(text)
    await run_worker_on(app, clock, date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1))

    balance, rows = await ledger_of(app)
    assert rows == [(10000, "paid")] * 3
    assert balance == 0


async def test_the_amount_step_offers_only_what_is_open(app, phone, clock):
    """$328.10 owed with $300 scheduled: the customer may pay $28.10, and is told so."""
    account = await add_account(app, balance="328.10")
    maria = await sign_plan_by_text(app, phone, account)

    assert await maria.send("PAY") == [
        "We have your email as m***@example.com. Reply OK, or send a new email."
    ]
    (ask,) = await maria.send("ok")
    assert ask == (
        "You owe $28.10 after your scheduled and pending payments. How much would you like to "
        "pay? Reply an amount from $25.00 to $28.10, or FULL."
    )
    (too_high,) = await maria.send("150")
    assert too_high == (
        "That is more than you owe after your scheduled and pending payments. Reply an amount "
        "up to $28.10, or FULL."
    )
    await maria.send("FULL")
    await maria.send("1")
    (confirm,) = await maria.send("now")
    assert "$28.10" in confirm
    await maria.send("yes")
    (done,) = await maria.send("agree")
    assert done.startswith("Done: $28.10 paid"), done

    await run_worker_on(app, clock, date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1))
    balance, rows = await ledger_of(app)
    assert rows == [(10000, "paid")] * 3 + [(2810, "paid")]
    assert balance == 0


async def test_a_plan_is_not_signed_on_top_of_a_payment_that_covers_the_balance(app, phone):
    """PAY $150 of $300 first, then a 3 x $100 plan: signing it would promise $450 on $300."""
    account = await add_account(app, balance="300.00", methods=("pm_usBankAccount",))
    maria = phone()
    for text in ["pay", "ok", "150", "1", "now", "yes"]:
        await maria.send(text)
    (done,) = await maria.send("agree")
    assert "$150.00" in done  # Pending: an ACH debit takes days
    await add_plan_offer(app, account, schedule=PLAN_3X100)
    (summary,) = await maria.send("PLAN")
    (refused,) = await maria.send("AGREE")
    assert refused == (
        "You owe $150.00 after your scheduled and pending payments. Nothing was changed."
    ), (summary, refused)
    _, rows = await ledger_of(app)
    assert rows == [(15000, "pending")]
    async with app[appkeys.DATABASE].session() as session:
        assert await session.scalar(select(func.count()).select_from(Plan)) == 0


async def test_the_worker_cuts_installments_to_a_lowered_balance_and_closes_the_plan(
    app, phone, clock, providers
):
    """The operator lowers the balance to $155 under a 3 x $100 plan: $100 + $55 are charged,
    the third installment is canceled, the plan is closed as paid in full and the customer is
    told by email."""
    account = await add_account(app, balance="300.00")
    await sign_plan_by_text(app, phone, account)
    async with app[appkeys.DATABASE].session() as session:
        record = {
            "account_id": "ACC-1001", "first_name": "Maria", "last_name": "Lopez",
            "phone": "+15555550100", "email": "maria@example.com", "balance": "155.00",
            "creditor": "northwind", "description": "Acme Card ending 4821",
        }
        await upsert_account(session, parse_account(record), secret_key="test-secret-key",
                             at=clock.now(), actor="test")
        await session.commit()

    await run_worker_on(app, clock, date(2026, 12, 1))
    balance, rows = await ledger_of(app)
    assert rows == [(10000, "paid"), (5500, "scheduled"), (0, "canceled")]
    assert balance == 5500
    await run_worker_on(app, clock, date(2027, 1, 1), date(2027, 2, 1))
    balance, rows = await ledger_of(app)
    assert rows == [(10000, "paid"), (5500, "paid"), (0, "canceled")]
    assert balance == 0
    async with app[appkeys.DATABASE].session() as session:
        (plan,) = (await session.scalars(select(Plan))).all()
        assert plan.status == "completed"
        notices = (
            await session.scalars(select(OutboundEmail).where(OutboundEmail.kind == "plan_paid"))
        ).all()
    assert len(notices) == 1
    assert "paid in full" in notices[0].text_body
    assert "$155.00" in notices[0].text_body


async def reload_balance(app: Any, clock: Any, balance: str) -> None:
    """The creditor loads Maria's record again, its balance as the creditor last knew it."""
    async with app[appkeys.DATABASE].session() as session:
        record = {
            "account_id": "ACC-1001", "first_name": "Maria", "last_name": "Lopez",
            "phone": "+15555550100", "email": "maria@example.com", "balance": balance,
            "creditor": "northwind", "description": "Acme Card ending 4821",
        }
        await upsert_account(session, parse_account(record), secret_key="test-secret-key",
                             at=clock.now(), actor="test")
        await session.commit()


async def test_a_reloaded_balance_never_puts_back_what_was_paid(app, phone, clock):
    """$340 owed, $50 paid by text; the creditor's next file still says $340 (it does not show
    the payment yet): the account owes $290, and no more than that may be taken."""
    await add_account(app, balance="340.00")
    await reload_balance(app, clock, "340.00")  # the creditor's first load
    maria = phone()
    for text in ["pay", "ok", "50", "1", "now", "yes"]:
        await maria.send(text)
    (done,) = await maria.send("agree")
    assert done.startswith("Done: $50.00 paid"), done

    clock.advance(timedelta(days=1))
    await reload_balance(app, clock, "340.00")
    assert await ledger_of(app) == (29000, [(5000, "paid")])
    await maria.send("MENU")
    await maria.send("pay")
    (ask,) = await maria.send("ok")
    assert ask == (
        "How much would you like to pay? Reply an amount from $25.00 to $290.00, or FULL."
    )
    # The same stale figure the next day: still $290. Then the figure that shows the payment
    # (it matches the ledger to the cent): nothing changes, and later figures count from it.
    for figure in ["340.00", "290.00", "280.00"]:
        clock.advance(timedelta(days=1))
        await reload_balance(app, clock, figure)
    assert await ledger_of(app) == (28000, [(5000, "paid")])


async def test_a_reloaded_balance_after_a_paid_settlement_stays_settled(
    app, client, phone, clock
):
    account = await add_account(app, balance="700.00")
    await add_settlement(app, account, 50000)
    maria = phone()
    for text in ["pay", "ok", "1", "1", "yes"]:
        await maria.send(text)
    (done,) = await maria.send("agree")
    assert done.startswith("Done: $500.00 paid"), done
    assert await ledger_of(app) == (0, [(50000, "paid")])

    clock.advance(timedelta(days=1))
    await reload_balance(app, clock, "700.00")
    assert await ledger_of(app) == (0, [(50000, "paid")])
    (reply,) = await maria.send("PAY")
    assert reply == "Your balance is $0.00, so nothing is due. Thank you!"
    # The menu offers no link: with nothing owed an account link answers 410.
    assert await maria.send("MENU") == [
        "Your balance on Acme Card ending 4821 is $0.00, so nothing is due. Thank you! Reply "
        "AGENT for a person, HELP for help."
    ]


async def test_extra_never_adds_to_what_the_plan_promises_even_during_its_charge(
    app, phone, providers
):
    """EXTRA lowers the plan's last installments in the transaction that records it: while its
    charge is at the processor, taken and promised still add up to the $300 owed."""
    account = await add_account(app, balance="300.00")
    maria = await sign_plan_by_text(app, phone, account)
    seen: list[int] = []

    async def look() -> None:
        seen.append(taken_or_promised((await ledger_of(app))[1]))

    providers.payments.watch = look
    await maria.send("EXTRA")
    (confirm,) = await maria.send("100")
    assert confirm.startswith("Pay $100.00 now from Visa ending 4242?"), confirm
    (done,) = await maria.send("yes")
    assert done.startswith("Done: $100.00 paid"), done
    assert seen == [30000]
    balance, rows = await ledger_of(app)
    assert (balance, rows) == (20000, [(10000, "scheduled"), (10000, "scheduled"),
                                       (0, "canceled"), (10000, "paid")])


async def test_extra_beyond_the_plan_is_refused(app, phone):
    """EXTRA on a plan that covers the balance may only take the plan's own installments'
    place: never more than what the plan still has to collect."""
    account = await add_account(app, balance="300.00")
    maria = await sign_plan_by_text(app, phone, account)
    (ask,) = await maria.send("pay extra 400")
    replies = [ask]
    if "YES" in ask:
        replies += await maria.send("yes")
    _, rows = await ledger_of(app)
    assert taken_or_promised(rows) <= 30000, (replies, rows)



async def extra_by_bank_that_fails(app, client, phone, *, before_it_fails=None):  # type: ignore[no-untyped-def]
    """$300 owed, 3 x $100 signed by text on a bank account, EXTRA $100: Pending, and the plan's
    last installment lowered to make room. Then its bank debit fails (Stripe says so)."""
    account = await add_account(app, balance="300.00", methods=("pm_usBankAccount",))
    maria = await sign_plan_by_text(app, phone, account)
    await maria.send("EXTRA")
    await maria.send("100")
    (done,) = await maria.send("yes")
    assert "pending" in done.lower(), done
    balance, rows = await ledger_of(app)
    assert (balance, rows) == (30000, [(10000, "scheduled"), (10000, "scheduled"),
                                       (0, "canceled"), (10000, "pending")])
    if before_it_fails is not None:
        await before_it_fails(account)
    async with app[appkeys.DATABASE].session() as session:
        extra = await session.scalar(select(Payment).where(Payment.status == "pending"))
    status, _ = await post_event(
        client,
        intent_event("payment_intent.payment_failed", extra.processor_id, amount=10000,
                     reference=extra.reference, failure_code="insufficient_funds"),
    )
    assert status == 200
    return maria


async def test_an_extra_by_bank_that_fails_gives_back_the_installments_it_lowered(
    app, client, phone, clock
):
    """The plan again promises what is owed: the $100 the failed EXTRA took off the last
    installment is scheduled again, and the worker charges the whole $300."""
    await extra_by_bank_that_fails(app, client, phone)
    balance, rows = await ledger_of(app)
    assert (balance, rows) == (30000, [(10000, "scheduled"), (10000, "scheduled"),
                                       (10000, "scheduled"), (10000, "declined")])
    # Given back once: the same failure told again changes nothing.
    async with app[appkeys.DATABASE].session() as session:
        extra = await session.scalar(select(Payment).where(Payment.status == "declined"))
    await post_event(
        client,
        intent_event("payment_intent.payment_failed", extra.processor_id, amount=10000,
                     reference=extra.reference, failure_code="insufficient_funds"),
    )
    assert (await ledger_of(app))[1] == rows
    await run_worker_on(app, clock, date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1))
    balance, rows = await ledger_of(app)
    assert rows == [(10000, "pending")] * 3 + [(10000, "declined")]  # by bank: Pending
    assert taken_or_promised(rows) == balance == 30000



async def test_an_extra_the_worker_finds_declined_gives_back_the_installments(
    app, phone, providers, clock
):
    """The processor did not answer EXTRA's charge (left Processing, lowering the plan); the
    worker asks again with its key and the card is declined: the installment is owed again."""
    account = await add_account(app, balance="300.00", methods=("pm_card_chargeCustomerFail",))
    maria = await sign_plan_by_text(app, phone, account)
    await maria.send("EXTRA")
    await maria.send("100")
    providers.payments.unavailable = True
    await maria.send("yes")
    providers.payments.unavailable = False
    _, rows = await ledger_of(app)
    assert rows == [(10000, "scheduled"), (10000, "scheduled"), (0, "canceled"),
                    (10000, "processing")]
    clock.advance(timedelta(minutes=15))
    assert (await make_worker(app, outreach=False).run_once()).errors == 0
    balance, rows = await ledger_of(app)
    assert (balance, rows) == (30000, [(10000, "scheduled"), (10000, "scheduled"),
                                       (10000, "scheduled"), (10000, "declined")])


async def test_a_failed_extra_gives_back_no_more_than_is_open(app, client, phone):
    """The creditor lowered the balance to $250 while the EXTRA was Pending: its failure gives
    back $50 of the $100, what is open, not the whole installment."""

    async def lower_the_balance(account: Account) -> None:
        async with app[appkeys.DATABASE].session() as session:
            row = await session.get(Account, account.id)
            row.balance_cents = 25000
            await session.commit()

    await extra_by_bank_that_fails(app, client, phone, before_it_fails=lower_the_balance)
    balance, rows = await ledger_of(app)
    assert (balance, rows) == (25000, [(10000, "scheduled"), (10000, "scheduled"),
                                       (5000, "scheduled"), (10000, "declined")])


# --------------------------------------------------------------------------- finding 2


async def add_settlement(app: Any, account: Account, cents: int) -> int:
    async with app[appkeys.DATABASE].session() as session:
        offer = Offer(
            account_id=account.id, kind="settlement", total_cents=cents, installment_count=1,
            expires_at=datetime(2026, 12, 31, 23, 0, tzinfo=UTC), status="open",
            created_at=app[appkeys.CLOCK].now(),
        )
        session.add(offer)
        await session.commit()
        return offer.id


async def test_a_pending_settlement_is_not_offered_or_taken_again(app, client, phone, clock):
    account = await add_account(app, balance="700.00", methods=("pm_usBankAccount",))
    offer_id = await add_settlement(app, account, 50000)
    maria = phone()
    await maria.send("pay")
    (offers,) = await maria.send("ok")
    assert "1) Pay $500.00 by Dec 31, 2026 and settle in full (save $200.00)" in offers
    for text in ["1", "1", "yes"]:
        await maria.send(text)
    (done,) = await maria.send("agree")
    assert "$500.00" in done and "pending" in done.lower(), done

    (again,) = await maria.send("PAY")
    assert again == (
        "Your balance on Acme Card ending 4821 is $700.00. Your settlement payment is on its "
        "way and settles this account, so nothing more is due."
    )
    async with app[appkeys.DATABASE].session() as session:
        offer = await session.get(Offer, offer_id)
        assert offer.status == "accepted" and offer.accepted_at is not None
        assert describe_offer(offer, account_zone(), now=clock.now())[0].startswith(
            f"Offer {offer_id} (accepted)"
        )
        state = await collectable(session, account.id)
        assert state.open_cents == 0
    balance, rows = await ledger_of(app)
    assert rows == [(50000, "pending")] and balance == 70000

    # The bank debit fails: the settlement is offered again (it has not expired).
    async with app[appkeys.DATABASE].session() as session:
        payment = await session.scalar(select(Payment))
    status, _ = await post_event(
        client,
        intent_event("payment_intent.payment_failed", payment.processor_id, amount=50000,
                     reference=payment.reference, failure_code="insufficient_funds"),
    )
    assert status == 200
    async with app[appkeys.DATABASE].session() as session:
        assert (await session.get(Offer, offer_id)).status == "open"
    await maria.send("pay")
    (offers,) = await maria.send("ok")
    assert "1) Pay $500.00 by Dec 31, 2026 and settle in full (save $200.00)" in offers


async def test_a_paid_settlement_settles_and_cancels_what_was_still_scheduled(
    app, client, phone, clock
):
    account = await add_account(app, balance="700.00", methods=("pm_usBankAccount",))
    offer_id = await add_settlement(app, account, 50000)
    maria = phone()
    for text in ["pay", "ok", "1", "1", "yes", "agree"]:
        await maria.send(text)
    async with app[appkeys.DATABASE].session() as session:
        payment = await session.scalar(select(Payment))
    status, _ = await post_event(
        client,
        intent_event("payment_intent.succeeded", payment.processor_id, amount=50000,
                     reference=payment.reference),
    )
    assert status == 200
    balance, rows = await ledger_of(app)
    assert (balance, rows) == (0, [(50000, "paid")])
    async with app[appkeys.DATABASE].session() as session:
        assert (await session.get(Offer, offer_id)).status == "accepted"
    (reply,) = await maria.send("PAY")
    assert reply == "Your balance is $0.00, so nothing is due. Thank you!"


async def test_the_worker_holds_what_is_scheduled_while_a_settlement_is_on_its_way(
    app, client, phone, clock
):
    """$700 owed under a 3 x $100 plan; the $300 settlement is paid by bank and Pending. The
    installment due meanwhile is held, not charged on top of a settlement that settles
    everything; once the bank debit fails it is owed again and the worker charges it."""
    account = await add_account(app, balance="700.00", methods=("pm_usBankAccount",))
    await add_settlement(app, account, 30000)
    maria = await sign_plan_by_text(app, phone, account)
    await maria.send("pay")
    (offers,) = await maria.send("ok")
    assert "1) Pay $300.00 by Dec 31, 2026 and settle in full" in offers, offers
    for text in ["1", "1", "yes"]:
        await maria.send(text)
    (done,) = await maria.send("agree")
    assert "$300.00" in done and "pending" in done.lower(), done

    clock.set(local(date(2026, 12, 1), 10))
    report = await make_worker(app, outreach=False).run_once()
    assert (report.claimed, report.held_for_settlement, report.errors) == (0, 1, 0)
    balance, rows = await ledger_of(app)
    assert (balance, rows) == (
        70000,
        [(10000, "scheduled"), (10000, "scheduled"), (10000, "scheduled"), (30000, "pending")],
    )

    async with app[appkeys.DATABASE].session() as session:
        settlement = await session.scalar(select(Payment).where(Payment.amount_cents == 30000))
    status, _ = await post_event(
        client,
        intent_event("payment_intent.payment_failed", settlement.processor_id, amount=30000,
                     reference=settlement.reference, failure_code="insufficient_funds"),
    )
    assert status == 200
    await run_worker_on(app, clock, date(2026, 12, 2))
    balance, rows = await ledger_of(app)
    # The installment goes from the same bank account: Pending until it clears.
    assert (balance, rows) == (
        70000,
        [(10000, "pending"), (10000, "scheduled"), (10000, "scheduled"), (30000, "declined")],
    )


async def test_offers_with_no_saving_against_what_is_open_are_not_shown(app, phone):
    """$700 owed, $300 of it scheduled: a $500 settlement saves nothing on the $400 open."""
    account = await add_account(app, balance="700.00")
    await add_settlement(app, account, 50000)
    await add_plan_offer(app, account, schedule=PLAN_3X100)
    maria = phone()
    await maria.send("PLAN")
    await maria.send("AGREE")
    await maria.send("pay")
    (ask,) = await maria.send("ok")
    assert ask.startswith("You owe $400.00 after your scheduled and pending payments."), ask


def account_zone() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("America/New_York")


# --------------------------------------------------------------------------- the web and the API


async def test_the_web_amount_step_shows_and_takes_only_what_is_open(app, client, phone):
    from tests.test_portal import Browser, link_for

    account = await add_account(app, balance="328.10")
    await sign_plan_by_text(app, phone, account)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue")
    assert browser.state == "amount"
    assert "You owe $28.10 after your scheduled and pending payments." in browser.text
    assert "Amount (from $25.00 to $28.10)" in browser.text
    await browser.post("/portal/pay", {"action": "continue", "amount": "100"}, status=422)
    assert (
        "That is more than you owe after your scheduled and pending payments. Enter up to "
        "$28.10." in browser.text
    )
    _, rows = await ledger_of(app)
    assert taken_or_promised(rows) == 30000


async def test_the_web_says_why_nothing_is_due(app, client, phone):
    from tests.test_portal import Browser, link_for

    account = await add_account(app, balance="300.00")
    await sign_plan_by_text(app, phone, account)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    assert browser.state == "idle"
    assert "You owe $0.00 after your scheduled and pending payments" in browser.text


async def test_a_link_cannot_preset_more_than_is_open(app, client, phone):
    from tests.conftest import API_KEY

    account = await add_account(app, balance="328.10")
    await sign_plan_by_text(app, phone, account)
    response = await client.post(
        "/api/v1/accounts/ACC-1001/links",
        json={"amount": "100.00", "allow_amount_change": False},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status == 409
    problem = await response.json()
    assert "You owe $28.10 after your scheduled and pending payments." in problem.values()


async def test_a_fixed_link_made_before_a_plan_takes_only_what_is_open(app, client, phone):
    from tests.conftest import API_KEY
    from tests.test_portal import Browser

    account = await add_account(app, balance="328.10")
    response = await client.post(
        "/api/v1/accounts/ACC-1001/links",
        json={"amount": "100.00", "allow_amount_change": False},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status == 201
    url = (await response.json())["url"].split("https://paybot.test", 1)[1]
    await sign_plan_by_text(app, phone, account)
    browser = Browser(client)
    await browser.get(url)
    await browser.step(action="start")
    assert (
        "Your link asked for $100.00. You owe $28.10 after your scheduled and pending payments. "
        "This payment is $28.10." in browser.text
    )
    await browser.step(action="continue")
    assert browser.state == "method"
    await browser.step(action="continue", choice="1")
    if browser.state == "schedule":
        await browser.step(action="now")
    assert "$28.10" in browser.text and "$100.00" not in browser.text
    await browser.step(action="pay", consent="yes")
    _, rows = await ledger_of(app)
    assert taken_or_promised(rows) == 32810


# --------------------------------------------------------------------------- processor errors


async def forget_method_at_processor(app: Any) -> None:
    """The method row names a method this processor never saw (a sandbox of another process)."""
    from bot.ledger.models import PaymentMethod

    async with app[appkeys.DATABASE].session() as session:
        method = await session.scalar(select(PaymentMethod))
        method.processor_ref = "pm_card_of_another_process"
        await session.commit()


async def test_a_processor_error_by_text_is_a_decline_told_politely(app, phone):
    await add_account(app)
    await forget_method_at_processor(app)
    maria = phone()
    for text in ["pay", "ok", "50", "1", "now", "yes"]:
        await maria.send(text)
    (reply,) = await maria.send("agree")
    assert reply.startswith(
        "Sorry, $50.00 with Visa ending 4242 did not go through: The payment was declined. "
        "Nothing was charged."
    ), reply
    async with app[appkeys.DATABASE].session() as session:
        (payment,) = (await session.scalars(select(Payment))).all()
    assert (payment.status, payment.failure_code) == ("declined", "resource_missing")


async def test_a_processor_error_on_the_web_is_a_decline_told_politely(app, client, phone):
    from tests.test_portal import Browser, link_for

    await add_account(app, creditor_settings={"contact_review": False, "schedule_payment": False})
    await forget_method_at_processor(app)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue", amount="50")
    await browser.step(action="continue", choice="1")
    await browser.step(action="pay", consent="yes")
    assert "did not go through" in browser.text and "Nothing was charged." in browser.text
    assert browser.state == "method"
    async with app[appkeys.DATABASE].session() as session:
        (payment,) = (await session.scalars(select(Payment))).all()
    assert (payment.status, payment.failure_code) == ("declined", "resource_missing")


async def test_an_offer_is_made_against_what_is_open(app, client, phone):
    from tests.conftest import API_KEY

    account = await add_account(app, balance="300.00")
    await sign_plan_by_text(app, phone, account)
    response = await client.post(
        "/api/v1/accounts/ACC-1001/offers",
        json={"kind": "settlement", "settlement_amount": "200.00", "created_by": "ops"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status == 422
    body = await response.text()
    assert "You owe $0.00 after your scheduled and pending payments" in body


async def test_a_plan_signed_on_the_web_is_refused_above_what_is_open(app, client, phone):
    from tests.test_portal import Browser
    from tests.test_signing import add_plan_offer as add_web_plan_offer
    from tests.test_signing import ledger_plans, signed_up_to_signature
    from tests.test_worker import schedule_by_text

    account = await add_account(app)
    await schedule_by_text(phone)  # $50.00 on Dec 15: $1,200.00 of $1,250.00 is open
    offer_id, link = await add_web_plan_offer(app, account.id)  # $1,250.00 in 3
    browser = Browser(client)
    await signed_up_to_signature(browser, link)
    await browser.post(
        "/portal/plan/sign", {"kind": "typed", "signer_name": "Maria Lopez"}, status=422
    )
    assert "You owe $1,200.00 after your scheduled and pending payments." in browser.text
    plans, payments, agreements = await ledger_plans(app)
    assert plans == [] and [a for a in agreements if a.plan_id or a.offer_id] == []
    assert [(p.amount_cents, p.status) for p in payments] == [(5000, "scheduled")]
    async with app[appkeys.DATABASE].session() as session:
        assert (await session.get(Offer, offer_id)).status == "open"


async def test_what_was_open_at_the_amount_step_is_checked_again_when_paying(app, client, phone):
    """Maria picks $50 by text; before she says AGREE, a plan for the whole balance is signed on
    the web. AGREE then takes nothing, and says why."""
    from tests.test_portal import Browser
    from tests.test_signing import add_plan_offer as add_web_plan_offer
    from tests.test_signing import signed_up_to_signature

    account = await add_account(app)
    maria = phone()
    for text in ["pay", "ok", "50", "1", "now", "yes"]:
        await maria.send(text)
    _, link = await add_web_plan_offer(app, account.id)  # $1,250.00 in 3
    browser = Browser(client)
    await signed_up_to_signature(browser, link)
    await browser.post("/portal/plan/sign", {"kind": "typed", "signer_name": "Maria Lopez"})
    assert "Your payment plan is set up" in browser.text

    (reply,) = await maria.send("agree")
    assert reply == (
        "Nothing was charged. You owe $0.00 after your scheduled and pending payments, so "
        "nothing more is due."
    )
    _, rows = await ledger_of(app)
    assert taken_or_promised(rows) == 125000
    assert all(status == "scheduled" for _, status in rows)


async def test_an_offer_that_no_longer_saves_anything_is_not_sent(app, client, phone, providers):
    """A $500 settlement on $700, queued to send; $300 gets scheduled before the worker sends
    it: $500 of the $400 open saves nothing, so it is not sent."""
    from tests.conftest import API_KEY

    await add_account(app, balance="700.00")
    response = await client.post(
        "/api/v1/accounts/ACC-1001/offers",
        json={"kind": "settlement", "settlement_amount": "500.00", "created_by": "ops",
              "send_via": "sms"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status == 201, await response.text()
    maria = phone()
    for text in ["pay", "ok", "2", "300", "1", "dec 15", "yes"]:
        await maria.send(text)
    (done,) = await maria.send("agree")
    assert done.startswith("Done: $300.00 scheduled for Dec 15, 2026."), done
    texts_before = len(providers.sms.outbox)
    report = await make_worker(app).run_once()
    assert report.outreach_skipped == 1 and report.outreach_sent == 0
    assert len(providers.sms.outbox) == texts_before


async def test_two_payments_of_everything_at_once_take_it_once(app, client):
    """Two requests for the whole open amount at the same moment (two processes, no shared
    conversation lock): the account row lock lets one through; the other is refused in words."""
    import asyncio

    from bot.ledger.models import PaymentMethod
    from bot.payments.service import AmountNotOpen, PaymentRequest

    account = await add_account(app, balance="300.00")
    service = app[appkeys.ENGINE].payments
    async with app[appkeys.DATABASE].session() as session:
        method_id = await session.scalar(select(PaymentMethod.id))

    async def pay(key: str) -> str:
        async with app[appkeys.DATABASE].session() as session:
            fresh = await session.get(Account, account.id)
            request = PaymentRequest(
                idempotency_key=key, amount_cents=30000, method_id=method_id, pay_on=None,
                offer_id=None, offer_kind=None, installment_count=1, frequency=None,
                plan_total_cents=None, channel="web", agreement_text="I authorize.",
                terms_version="2026-11",
            )
            try:
                outcome = await service.submit(session, fresh, request, today=date(2026, 11, 25))
            except AmountNotOpen as refused:
                return str(refused)
            return outcome.status

    results = sorted(await asyncio.gather(pay("race:a"), pay("race:b")))
    assert results == [
        "You owe $0.00 after your scheduled and pending payments, so nothing more is due.",
        "paid",
    ] or results == ["You owe $0.00.", "paid"], results
    balance, rows = await ledger_of(app)
    assert (balance, rows) == (0, [(30000, "paid")])


# --------------------------------------------------------------------------- BALANCE


async def test_balance_by_text_says_what_is_owed_after_scheduled_and_pending_payments(
    app, phone
):
    """BALANCE tells what is owed and what is still open once scheduled and pending payments
    are counted (the rule's own words), in GSM-7 and at most two segments."""
    from bot.text.gsm7 import is_gsm7, segment_count

    account = await add_account(app, balance="328.10", methods=("pm_usBankAccount",))
    maria = phone()
    (before,) = await maria.send("BALANCE")
    assert before == "Your balance on Acme Card ending 4821 is $328.10."

    await sign_plan_by_text(app, phone, account)
    (scheduled,) = await maria.send("BALANCE")
    assert scheduled == (
        "Your balance on Acme Card ending 4821 is $328.10. You owe $28.10 after your scheduled "
        "and pending payments. Next payment: $100.00, Pending (scheduled for Dec 1)."
    )
    for text in ["pay", "ok", "FULL", "1", "now", "yes", "agree"]:  # by bank: Pending
        await maria.send(text)
    _, rows = await ledger_of(app)
    assert (2810, "pending") in rows
    (everything,) = await maria.send("BALANCE")
    assert everything == (
        "Your balance on Acme Card ending 4821 is $328.10. You owe $0.00 after your scheduled "
        "and pending payments, so nothing more is due. Next payment: $100.00, Pending "
        "(scheduled for Dec 1)."
    )
    for reply in (before, scheduled, everything):
        assert is_gsm7(reply) and segment_count(reply) <= 2


async def test_balance_by_text_with_a_settlement_on_its_way(app, phone, clock):
    account = await add_account(app, balance="700.00", methods=("pm_usBankAccount",))
    await add_settlement(app, account, 50000)
    maria = phone()
    for text in ["pay", "ok", "1", "1", "yes", "agree"]:
        await maria.send(text)
    _, rows = await ledger_of(app)
    assert rows == [(50000, "pending")], rows
    (reply,) = await maria.send("BALANCE")
    assert reply == (
        "Your balance on Acme Card ending 4821 is $700.00. Your settlement payment is on its "
        "way and settles this account, so nothing more is due."
    )
