"""Refunds, full or partial, through the real Stripe SDK against localstripe: the refund is at the
processor, in the ledger, in the receipt and in the balance; the same request twice refunds once;
more than is left, a declined or a scheduled payment is refused and changes nothing. A refund
whose answer is lost is applied once when asked again with the same key (the sandbox replays keys
as Stripe does)."""

from __future__ import annotations

import aiohttp
import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Account, AuditEvent, Payment, Refund
from bot.payments.refunds import (
    RefundNotConfirmed,
    RefundRefused,
    refund_payment,
    refundable_cents,
)
from bot.providers.sandbox_gateway import SandboxGateway
from tests.email_support import visible_text
from tests.seed import CONFIRM_STEPS, add_account


async def pay_by_text(app, phone, steps=CONFIRM_STEPS) -> Payment:  # type: ignore[no-untyped-def]
    maria = phone()
    for text in steps:
        await maria.send(text)
    await maria.send("agree")
    async with app[appkeys.DATABASE].session() as session:
        return (await session.scalars(select(Payment).order_by(Payment.id.desc()))).first()


async def refund(app, reference, **kwargs):  # type: ignore[no-untyped-def]
    engine = app[appkeys.ENGINE]
    return await refund_payment(
        app[appkeys.DATABASE], app[appkeys.PROVIDERS].payments, reference=reference,
        clock=app[appkeys.CLOCK], notifier=engine.notifier, **{"actor": "staff:ana", **kwargs},
    )


async def ledger_state(app, reference):  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        payment = await session.scalar(select(Payment).where(Payment.reference == reference))
        balance = await session.scalar(select(Account.balance_cents))
        refunds = [
            (r.amount_cents, r.status, r.requested_by, r.reason)
            for r in await session.scalars(select(Refund).order_by(Refund.id))
        ]
        audits = [
            (a.kind, a.actor, a.detail.get("amount_cents"))
            for a in await session.scalars(
                select(AuditEvent).where(AuditEvent.kind.like("refund%")).order_by(AuditEvent.id)
            )
        ]
        return payment.refunded_cents, balance, refunds, audits


async def processor_refunds(localstripe, intent_id) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    """What localstripe itself holds (not our ledger)."""
    async with aiohttp.ClientSession() as http, http.get(
        f"{localstripe.url}/v1/refunds", params={"payment_intent": intent_id, "limit": "100"},
        headers={"Authorization": "Bearer sk_test_paybot"},
    ) as response:
        assert response.status == 200, await response.text()
        return [(r["amount"], r["status"]) for r in (await response.json())["data"]]


class TestAgainstLocalstripe:
    @pytest.fixture
    def gateway(self, stripe_gateway):  # type: ignore[no-untyped-def]
        return stripe_gateway

    async def test_a_partial_then_the_rest_at_the_processor_ledger_receipt_and_balance(
        self, app, phone, localstripe
    ):
        await add_account(app)
        paid = await pay_by_text(app, phone)
        assert (paid.status, paid.amount_cents) == ("paid", 5000)
        ref = paid.reference
        emails = app[appkeys.PROVIDERS].email
        emails.clear()

        first = await refund(app, ref, amount_cents=2000, reason="goodwill")
        assert (first.status, first.amount_cents, first.refunded_cents, first.refundable_cents,
                first.balance_cents, first.repeated) == ("succeeded", 2000, 2000, 3000, 122000,
                                                         False)
        assert first.processor_id and first.processor_id.startswith("re_")
        assert await processor_refunds(localstripe, paid.processor_id) == [(2000, "succeeded")]
        assert await ledger_state(app, ref) == (
            2000, 122000, [(2000, "succeeded", "staff:ana", "goodwill")],
            [("refund_requested", "staff:ana", 2000), ("refunded", "staff:ana", 2000)],
        )
        (receipt,) = emails.outbox
        assert (receipt.to, receipt.subject) == (
            "maria@example.com", f"Your refund receipt for payment {ref}"
        )
        assert receipt.text == (
            "Northwind Recovery\n\nHi Maria,\n\n"
            f"We have refunded $20.00 of your payment {ref}.\n\n"
            "Refund: $20.00\n"
            f"Payment: {ref}, $50.00 on Nov 25, 2026\n"
            "Refunded to: Visa ending 4242\n"
            "Refunded on this payment in all: $20.00\n"
            "Your balance is now: $1,220.00\n"
            "Account: Acme Card ending 4821\n\n"
            "A refund usually reaches your card or bank account within 5 to 10 business days.\n\n"
            "This is a communication from a debt collector.\n\n"
            "Questions? Reply AGENT to our text messages.\n"
            "To stop receiving emails, reply to this message with UNSUBSCRIBE.\n"
        )
        assert "| Your balance is now | $1,220.00 |" in visible_text(receipt.html).splitlines()

        # The same request again (a double click, the command run twice): nothing more.
        again = await refund(app, ref, amount_cents=2000, reason="goodwill")
        assert (again.refund_id, again.repeated, again.balance_cents) == (
            first.refund_id, True, 122000
        )
        assert await processor_refunds(localstripe, paid.processor_id) == [(2000, "succeeded")]
        assert len(emails.outbox) == 1

        async with app[appkeys.DATABASE].session() as session:
            payment = await session.scalar(select(Payment).where(Payment.reference == ref))
            assert await refundable_cents(session, payment) == 3000
        # More than is left: refused, said, nothing changed.
        with pytest.raises(RefundRefused) as refused:
            await refund(app, ref, amount_cents=3001)
        assert str(refused.value) == (
            f"{ref}: at most $30.00 can be refunded ($50.00 paid, $20.00 refunded already); "
            "$30.01 was asked."
        )
        # All that is left, then "all that is left" again: one more refund only.
        rest = await refund(app, ref)
        assert (rest.amount_cents, rest.refunded_cents, rest.balance_cents) == (3000, 5000, 125000)
        assert (await refund(app, ref)).repeated
        assert sorted(await processor_refunds(localstripe, paid.processor_id)) == [
            (2000, "succeeded"), (3000, "succeeded")
        ]
        refunded, balance, rows, _ = await ledger_state(app, ref)
        assert (refunded, balance, len(rows)) == (5000, 125000, 2)
        with pytest.raises(RefundRefused, match=r"at most \$0.00 can be refunded"):
            await refund(app, ref, amount_cents=100, idempotency_key="another-request")

    async def test_a_declined_payment_is_not_refunded(self, app, phone, localstripe,
                                                      method_ref_for, gateway):
        await add_account(app, methods=(await method_ref_for(gateway, "charge_declined"),))
        declined = await pay_by_text(app, phone)
        assert declined.status == "declined"
        with pytest.raises(RefundRefused) as refused:
            await refund(app, declined.reference, amount_cents=1000)
        assert str(refused.value) == (
            f"{declined.reference} is Declined: only a Paid payment can be refunded."
        )
        assert await ledger_state(app, declined.reference) == (0, 125000, [], [])


async def test_a_scheduled_payment_is_not_refunded_and_an_unknown_one_is_named(app, phone):
    await add_account(app)
    scheduled = await pay_by_text(app, phone, ["pay", "ok", "50", "1", "dec 15", "yes"])
    assert scheduled.status == "scheduled"
    with pytest.raises(RefundRefused) as refused:
        await refund(app, scheduled.reference.lower())
    assert str(refused.value) == (
        f"{scheduled.reference} is Scheduled: only a Paid payment can be refunded (cancel a "
        "Scheduled one instead)."
    )
    with pytest.raises(RefundRefused, match="A refund must be a positive amount."):
        await refund(app, scheduled.reference, amount_cents=0)
    from bot.payments.refunds import NoSuchPayment

    with pytest.raises(NoSuchPayment, match="No payment with reference 'P-NOPE'."):
        await refund(app, "P-NOPE")
    assert await ledger_state(app, scheduled.reference) == (0, 125000, [], [])


async def test_a_lost_answer_is_applied_once_when_the_same_request_comes_again(app, phone):
    """The processor refunded but its answer never arrived: the row stays `requested`, the
    balance unmoved; asked again, the same key replays the refund and it is counted once."""
    await add_account(app)
    paid = await pay_by_text(app, phone)
    gateway: SandboxGateway = app[appkeys.PROVIDERS].payments
    gateway.lose_next_refund_response = True
    with pytest.raises(RefundNotConfirmed) as lost:
        await refund(app, paid.reference, amount_cents=1500, actor="cli:ops")
    assert str(lost.value) == (
        f"The processor could not be reached: the refund of $15.00 on {paid.reference} is not "
        "confirmed. Ask again with the same request: the processor refunds it at most once."
    )
    assert await ledger_state(app, paid.reference) == (
        0, 120000, [(1500, "requested", "cli:ops", None)],
        [("refund_requested", "cli:ops", 1500)],
    )
    # Meanwhile another refund cannot take the same room.
    with pytest.raises(RefundRefused, match=r"at most \$35.00 .* \$15.00 waiting on"):
        await refund(app, paid.reference, amount_cents=3600)
    again = await refund(app, paid.reference, amount_cents=1500, actor="cli:ops")
    assert (again.status, again.repeated, again.refunded_cents, again.balance_cents) == (
        "succeeded", False, 1500, 121500
    )
    assert [(r.charge_id, r.amount_cents) for r in gateway.refunds] == [
        (paid.processor_id, 1500)
    ]
    refunded, balance, rows, _ = await ledger_state(app, paid.reference)
    assert (refunded, balance, rows) == (1500, 121500, [(1500, "succeeded", "cli:ops", None)])


async def test_the_gateway_refunds_alike_on_either_backend(payment_gateway, method_ref_for):
    """One RefundResult from the sandbox and from Stripe's SDK; refusals are PaymentError."""
    from bot.providers.payments import PaymentError

    gateway = payment_gateway
    customer = await gateway.ensure_customer(account_ref="ACC-R", name="Maria Lopez", email=None,
                                             existing_id=None)
    saved = await gateway.save_method(customer_id=customer,
                                      method_ref=await method_ref_for(gateway, "visa"))
    charge = await gateway.charge(customer_id=customer, method_ref=saved.processor_ref,
                                  amount_cents=5000, idempotency_key="charge-r1", metadata={},
                                  method_kind="card")
    assert charge.status == "paid"
    result = await gateway.refund(charge_id=charge.processor_id, amount_cents=2000,
                                  idempotency_key="refund-r1", metadata={"paybot_reference": "P-R"})
    assert (result.status, result.failure_code) == ("succeeded", None)
    assert result.processor_id and result.processor_id.startswith("re_")
    with pytest.raises(PaymentError) as unknown:
        await gateway.refund(charge_id="pi_unknown", amount_cents=100, idempotency_key="refund-r2",
                             metadata={})
    assert "sk_test" not in str(unknown.value)
    with pytest.raises(PaymentError, match="amount_cents must be a positive integer"):
        await gateway.refund(charge_id=charge.processor_id, amount_cents=0,
                             idempotency_key="refund-r3", metadata={})


async def test_stripe_out_of_reach_is_unavailable_not_refused():
    from bot.providers.payments import GatewayUnavailable
    from bot.providers.stripe_gateway import StripeGateway

    async with StripeGateway("sk_test_paybot", api_base="http://127.0.0.1:9",
                             max_network_retries=0) as gateway:
        with pytest.raises(GatewayUnavailable):
            await gateway.refund(charge_id="pi_x", amount_cents=100, idempotency_key="k",
                                 metadata={})
