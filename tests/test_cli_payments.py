"""`paybot payments list|cancel|refund`: an operator cancels a scheduled one-off payment (the
customer is emailed, the worker will never charge it) and refunds a Paid one through Stripe's
Refunds API (localstripe here), without the console; bad input is said, exits 2 and changes
nothing; every change is audited with who made it."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Account, AuditEvent, OutboundEmail, Payment, Plan, Refund
from tests.cli_support import in_process_paybot
from tests.seed import CONFIRM_STEPS, add_account

SCHEDULE_STEPS = ["pay", "ok", "50", "1", "dec 15", "yes", "agree"]


@pytest.fixture
def paybot(settings, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    return in_process_paybot(settings, monkeypatch, capsys, "payments")


async def text_through(phone, steps):  # type: ignore[no-untyped-def]
    maria = phone()
    for text in steps:
        await maria.send(text)


async def only_payment(app) -> Payment:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        (payment,) = await session.scalars(select(Payment))
        return payment


async def audited(app, kind):  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return [(a.actor, a.detail) for a in await session.scalars(
            select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id))]


async def test_cancel_a_scheduled_payment_tells_the_customer_and_it_is_never_charged(
    app, client, phone, paybot
):
    await add_account(app)
    await text_through(phone, SCHEDULE_STEPS)
    scheduled = await only_payment(app)
    assert (scheduled.status, scheduled.scheduled_for) == ("scheduled", date(2026, 12, 15))
    ref = scheduled.reference

    code, out, err = await paybot("cancel", ref.lower(), "--by", "ana", "--reason",
                                  "customer called")
    assert (code, err) == (0, "")
    assert out == (f"Payment {ref} ($50.00 due 2026-12-15) canceled: it will not be charged. "
                   "The customer was emailed. A text is queued (the worker sends it outside "
                   "quiet hours).\n")
    assert (await only_payment(app)).status == "canceled"
    assert await audited(app, "payment_canceled") == [("cli:ana", {
        "reference": ref, "amount_cents": 5000, "scheduled_for": "2026-12-15",
        "reason": "customer called",
    })]
    async with app[appkeys.DATABASE].session() as session:
        (notice,) = await session.scalars(
            select(OutboundEmail).where(OutboundEmail.kind == "payment_canceled"))
    assert (notice.to_address, notice.subject, notice.status, notice.transactional) == (
        "maria@example.com", f"Your scheduled payment {ref} is canceled", "sent", True
    )
    assert notice.text_body == (
        "Northwind Recovery\n\nHi Maria,\n\n"
        f"Your payment {ref} of $50.00 scheduled for Dec 15, 2026 has been canceled. It will not "
        "be charged.\n\n"
        "Your balance is $1,250.00. Reply PAY to our text messages, or text LINK for a secure "
        "link, whenever you want to pay.\n\n"
        "Account: Acme Card ending 4821\n\n"
        "This is a communication from a debt collector.\n\n"
        "Questions? Reply AGENT to our text messages.\n"
        "To stop receiving emails, reply to this message with UNSUBSCRIBE.\n"
    )

    # Twice: said, nothing more happens.
    code, out, err = await paybot("cancel", ref, "--by", "ana")
    assert (code, out, err) == (
        2, "", f"paybot payments cancel: {ref} is Canceled: it is canceled already.\n"
    )
    assert len(await audited(app, "payment_canceled")) == 1


async def test_a_paid_payment_or_a_plan_installment_is_not_canceled(app, client, phone, paybot):
    account = await add_account(app)
    await text_through(phone, [*CONFIRM_STEPS, "agree"])
    paid = await only_payment(app)
    code, out, err = await paybot("cancel", paid.reference, "--by", "ana")
    assert (code, out, err) == (
        2, "", f"paybot payments cancel: {paid.reference} is Paid: it was paid; refund it "
               "instead.\n"
    )
    now = app[appkeys.CLOCK].now()
    async with app[appkeys.DATABASE].session() as session:
        plan = Plan(account_id=account.id, total_cents=20000, installment_count=2,
                    frequency="monthly", created_at=now)
        session.add(plan)
        await session.flush()
        session.add(Payment(
            reference="P-PLAN2", idempotency_key="plan-test#2", account_id=account.id,
            plan_id=plan.id, installment_number=2, amount_cents=10000,
            scheduled_for=date(2027, 1, 15), status="scheduled", channel="web",
            created_at=now, updated_at=now,
        ))
        await session.commit()
        plan_id = plan.id
    code, out, err = await paybot("cancel", "P-PLAN2", "--by", "ana")
    assert (code, out, err) == (
        2, "", f"paybot payments cancel: P-PLAN2 is installment 2 of plan {plan_id}: cancel the "
               f"plan (paybot plans cancel {plan_id}); a single installment is not canceled on "
               "its own.\n"
    )
    code, out, err = await paybot("cancel", "P-NONE", "--by", "ana")
    assert (code, out, err) == (
        2, "", "paybot payments cancel: No payment with reference 'P-NONE'.\n"
    )
    assert await audited(app, "payment_canceled") == []


class TestRefundAgainstLocalstripe:
    @pytest.fixture
    def gateway(self, stripe_gateway):  # type: ignore[no-untyped-def]
        return stripe_gateway

    @pytest.fixture
    def paybot(self, settings, monkeypatch, capsys, localstripe):  # type: ignore[no-untyped-def]
        run = in_process_paybot(settings, monkeypatch, capsys, "payments")
        # The command's own app talks to the same localstripe as the test's.
        monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_paybot")
        monkeypatch.setenv("STRIPE_API_BASE", localstripe.url)
        return run

    async def test_refund_in_part_twice_is_once_and_bad_amounts_change_nothing(
        self, app, client, phone, paybot
    ):
        await add_account(app)
        await text_through(phone, [*CONFIRM_STEPS, "agree"])
        ref = (await only_payment(app)).reference

        for bad, said in [
            ("abc", "--amount: 'abc' is not an amount in dollars, e.g. 12.34"),
            ("0", "--amount: '0': a refund is more than $0.00"),
            ("-5", "--amount: '-5': a refund is more than $0.00"),
        ]:
            code, out, err = await paybot("refund", ref, "--amount", bad, "--by", "ana")
            assert (code, out, err) == (2, "", f"paybot payments refund: {said}\n")
        code, out, err = await paybot("refund", ref, "--amount", "50.01", "--by", "ana")
        assert (code, out, err) == (2, "", (
            f"paybot payments refund: {ref}: at most $50.00 can be refunded ($50.00 paid, $0.00 "
            "refunded already); $50.01 was asked.\n"
        ))

        code, out, err = await paybot("refund", ref, "--amount", "12.34", "--by", "ana",
                                      "--reason", "double charge")
        assert (code, err) == (0, "")
        (refund,) = await self.refunds(app)
        assert out == (f"Refunded $12.34 of {ref} (succeeded, {refund.processor_ref}). Refunded "
                       "in all $12.34 of $50.00; the balance is now $1,212.34.\n")
        assert (refund.amount_cents, refund.status, refund.requested_by, refund.reason) == (
            1234, "succeeded", "cli:ana", "double charge"
        )
        code, out, err = await paybot("refund", ref, "--amount", "12.34", "--by", "ana")
        assert (code, out, err) == (0, f"Already done: $12.34 of {ref} was refunded "
                                       "(succeeded); nothing more was refunded.\n", "")
        assert len(await self.refunds(app)) == 1
        async with app[appkeys.DATABASE].session() as session:
            assert await session.scalar(select(Account.balance_cents)) == 121234
            assert (await session.scalar(select(Payment.refunded_cents))) == 1234
            (receipt,) = await session.scalars(
                select(OutboundEmail).where(OutboundEmail.kind == "refund_receipt"))
        assert (receipt.status, receipt.subject) == (
            "sent", f"Your refund receipt for payment {ref}"
        )
        assert [actor for actor, _ in await audited(app, "refunded")] == ["cli:ana"]

    @staticmethod
    async def refunds(app) -> list[Refund]:  # type: ignore[no-untyped-def]
        async with app[appkeys.DATABASE].session() as session:
            return list(await session.scalars(select(Refund).order_by(Refund.id)))


@pytest.mark.parametrize("args, error", [
    (("list", "--status", "lost"), "paybot payments list: status 'lost': one of scheduled, "
                                   "processing, pending, paid, declined, canceled\n"),
    (("list", "--channel", "fax"), "paybot payments list: channel 'fax': one of sms, web\n"),
    (("list", "--from", "12/01"), "paybot payments list: --from: '12/01' is not a date "
                                  "(YYYY-MM-DD)\n"),
    (("list", "--from", "2026-12-02", "--to", "2026-12-01"),
     "paybot payments list: the range starts (2026-12-02) after it ends (2026-12-01)\n"),
    (("list", "--page", "0"), "paybot payments list: --page 0: pages start at 1\n"),
    (("refund", "P-X", "--by", " "), "paybot payments refund: --by: say who you are (a name)\n"),
])
async def test_bad_input_is_said_and_exits_2(app, client, paybot, args, error):
    code, out, err = await paybot(*args)
    assert (code, out, err) == (2, "", error)


async def test_list_filters_and_csv(app, client, phone, paybot):
    await add_account(app)
    await text_through(phone, [*CONFIRM_STEPS, "agree"])
    paid = await only_payment(app)
    code, out, err = await paybot("list", "--status", "paid", "--from", "2026-11-25")
    assert (code, err) == (0, "")
    assert out == (
        f"{paid.reference}  ACC-1001  Paid            $50.00  due 2026-11-25  sms  northwind\n"
        "Page 1 of 1 (1 payment(s)); dates are UTC.\n"
    )
    code, out, err = await paybot("list", "--channel", "web")
    assert (code, out, err) == (0, "No payments match.\n", "")
    code, out, err = await paybot("list", "--csv", "--date", "created", "--to", "2026-11-25")
    assert (code, err) == (0, "")
    assert out == (
        "reference,account_id,customer,creditor,channel,status,amount,fee,refunded,"
        "scheduled_for,created_at_utc,method,plan,installment\n"
        f"{paid.reference},ACC-1001,Maria Lopez,northwind,sms,Paid,50.00,0.00,0.00,2026-11-25,"
        "2026-11-25T15:00:00Z,Visa ending 4242,,\n"
    )


async def test_the_customer_is_texted_too_outside_quiet_hours_and_never_once_opted_out(
    app, client, phone
):
    """The text goes through the outreach queue: held in quiet hours, sent by the worker after;
    an opted-out number gets nothing."""
    from datetime import UTC, datetime

    from bot.payments.cancellation import cancel_scheduled_payment
    from tests.test_worker import make_worker

    await add_account(app)
    await text_through(phone, SCHEDULE_STEPS)
    ref = (await only_payment(app)).reference
    clock, texts = app[appkeys.CLOCK], app[appkeys.PROVIDERS].sms
    clock.set(datetime(2026, 11, 26, 3, 0, tzinfo=UTC))  # 10 p.m. in New York: quiet hours
    done = await cancel_scheduled_payment(
        app[appkeys.DATABASE], reference=ref, actor="staff:ana", clock=clock,
        notifier=app[appkeys.ENGINE].notifier,
    )
    assert (done.email_id is not None, done.text_queued) == (True, True)
    before = len(texts.outbox)
    await make_worker(app).run_once()
    assert texts.outbox[before:] == []
    clock.set(datetime(2026, 11, 26, 13, 5, tzinfo=UTC))  # 8:05 a.m.
    await make_worker(app).run_once()
    (text,) = texts.outbox[before:]
    assert (text.to, text.body) == ("+15555550100", (
        f"Northwind Recovery: Hi Maria, your payment {ref} of $50.00 scheduled for Dec 15, 2026 "
        "is canceled and will not be charged. Questions? Reply AGENT or contact "
        "support@paybot.example. Reply STOP to opt out."
    ))


async def test_no_text_to_an_opted_out_number(app, client, phone):
    from bot.payments.cancellation import cancel_scheduled_payment
    from tests.test_worker import make_worker

    await add_account(app)
    await text_through(phone, SCHEDULE_STEPS)
    await phone().send("STOP")
    ref = (await only_payment(app)).reference
    texts = app[appkeys.PROVIDERS].sms
    before = len(texts.outbox)
    await cancel_scheduled_payment(app[appkeys.DATABASE], reference=ref, actor="staff:ana",
                                   clock=app[appkeys.CLOCK])
    await make_worker(app).run_once()
    assert texts.outbox[before:] == []
    assert (await only_payment(app)).status == "canceled"
