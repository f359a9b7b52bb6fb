"""Receipts survive what happens after the reply: a refusing email provider, a process that stops
before the email leaves, two workers at once. Asserted on what SendGrid's API (a local fake,
driven by the real SDK) accepted and on what the ledger's outbox holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.config.settings import Settings
from bot.ledger import queries as ledger
from bot.ledger.models import OutboundEmail, Outreach, Payment
from bot.outreach import email_outbox
from bot.outreach.notifications import Notifier, ledger_email_opt_outs
from bot.providers import Providers
from bot.providers.payments import PaymentGateway
from bot.providers.sms import SandboxSms
from tests.db_faults import messages_refused
from tests.seed import CONFIRM_STEPS, add_account
from tests.test_plan_sms import add_plan_offer
from tests.test_worker import add_scheduled, local, make_worker


@pytest.fixture
async def providers(
    settings: Settings, gateway: PaymentGateway, sendgrid_email: Any
) -> AsyncIterator[Providers]:
    providers = Providers(sms=SandboxSms(), email=sendgrid_email, payments=gateway)
    yield providers
    await providers.close()


async def outbox_rows(app) -> list[OutboundEmail]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return list(await session.scalars(select(OutboundEmail).order_by(OutboundEmail.id)))


def accepted_receipts(sendgrid_fake) -> list[str]:  # type: ignore[no-untyped-def]
    """The plain text of every receipt SendGrid accepted."""
    return [
        sendgrid_fake.content(body, "text/plain")
        for body in sendgrid_fake.messages
        if "receipt" in body["subject"] or " is scheduled for " in body["subject"]
    ]


async def pay_by_text(phone) -> None:  # type: ignore[no-untyped-def]
    maria = phone()
    for text in CONFIRM_STEPS:
        await maria.send(text)
    (done,) = await maria.send("agree")
    assert done.startswith("Done: $50.00 paid")


async def test_a_paid_turn_records_its_receipt_as_sent_with_the_providers_id(
    app, phone, sendgrid_fake
):
    await add_account(app)
    await pay_by_text(phone)

    (receipt,) = accepted_receipts(sendgrid_fake)
    assert "Amount: $50.00" in receipt
    (row,) = await outbox_rows(app)
    assert (row.kind, row.status, row.attempts) == ("receipt", "sent", 1)
    assert row.to_address == "maria@example.com"
    assert row.provider_message_id == sendgrid_fake.requests[-1].message_id
    async with app[appkeys.DATABASE].session() as session:
        (payment,) = await session.scalars(select(Payment))
    assert payment.reference in row.subject


async def test_a_receipt_the_provider_refused_goes_out_with_a_later_worker_pass(
    app, phone, clock, sendgrid_fake
):
    await add_account(app)
    sendgrid_fake.fail_next(503, "Service Unavailable")
    await pay_by_text(phone)  # the customer is told "Done" whatever the mailer said
    assert accepted_receipts(sendgrid_fake) == []
    (row,) = await outbox_rows(app)
    assert (row.status, row.attempts) == ("queued", 1)

    worker = make_worker(app)
    report = await worker.run_once()
    assert report.emails_sent == 0  # not yet: the retry waits RETRY_AFTER
    assert accepted_receipts(sendgrid_fake) == []

    clock.advance(email_outbox.RETRY_AFTER)
    report = await worker.run_once()
    assert report.emails_sent == 1
    (receipt,) = accepted_receipts(sendgrid_fake)
    assert "Amount: $50.00" in receipt
    (row,) = await outbox_rows(app)
    assert (row.status, row.attempts) == ("sent", 2)

    clock.advance(timedelta(hours=1))
    await worker.run_once()
    assert len(accepted_receipts(sendgrid_fake)) == 1  # sent once, never again


async def test_a_receipt_left_by_a_process_that_stopped_before_sending_it_is_sent_once(
    app, phone, clock, sendgrid_fake
):
    await add_account(app)
    maria = phone()
    maria.in_process = False  # the reply comes back before the emails are sent
    for text in CONFIRM_STEPS:
        await maria.send(text)
    engine = app[appkeys.ENGINE]
    await engine.settled()
    (done,) = await maria.send("agree")
    assert done.startswith("Done: $50.00 paid")
    # The process stops here: the task that would send the receipt never runs.
    for delivery in list(engine._deliveries):
        delivery.cancel()
    await engine.settled()
    assert accepted_receipts(sendgrid_fake) == []
    (row,) = await outbox_rows(app)
    assert row.status == "queued"

    worker = make_worker(app)
    await worker.run_once()
    assert accepted_receipts(sendgrid_fake) == []  # a fresh row is left to its writer a while

    clock.advance(email_outbox.GRACE)
    report = await worker.run_once()
    assert report.emails_sent == 1
    (receipt,) = accepted_receipts(sendgrid_fake)
    assert "Amount: $50.00" in receipt and "Hi Maria" in receipt
    clock.advance(timedelta(hours=1))
    await worker.run_once()
    assert len(accepted_receipts(sendgrid_fake)) == 1


def replies_refused_by_the_database(app, number: str):  # type: ignore[no-untyped-def]
    """The database refuses the replies to one number: a turn then fails after its charge was
    recorded and before its own commit, as a process that stops there would."""
    return messages_refused(app, number, direction="outbound", reason="disk full")


@pytest.mark.parametrize(
    ("when", "receipt_says"),
    [("now", "Status: Paid"), ("next friday", "Status: Pending (scheduled for")],
)
async def test_a_turn_that_fails_after_recording_its_payment_loses_no_receipt(
    app, phone, clock, sendgrid_fake, when, receipt_says
):
    await add_account(app)
    maria = phone()
    for text in ["pay", "ok", "50", "1", when, "yes"]:
        await maria.send(text)
    async with replies_refused_by_the_database(app, maria.number):
        (answer,) = await maria.send("agree")
    assert answer.startswith("Sorry, something went wrong on our side")

    async with app[appkeys.DATABASE].session() as session:
        (payment,) = await session.scalars(select(Payment))
    assert payment.status == ("paid" if when == "now" else "scheduled")
    (row,) = await outbox_rows(app)  # written with the payment, not with the failed turn
    assert (row.kind, row.status) == ("receipt", "queued")
    assert payment.reference in row.subject
    assert accepted_receipts(sendgrid_fake) == []

    clock.advance(email_outbox.GRACE)
    report = await make_worker(app).run_once()
    assert report.emails_sent == 1
    (receipt,) = accepted_receipts(sendgrid_fake)
    assert f"Reference: {payment.reference}" in receipt and receipt_says in receipt
    assert "Amount: $50.00" in receipt


async def test_two_workers_at_once_send_an_overdue_receipt_once(
    app, client, clock, sendgrid_fake
):
    await queue_receipt(app, clock)
    clock.advance(email_outbox.GRACE)

    reports = await asyncio.gather(make_worker(app, name="w1").run_once(),
                                   make_worker(app, name="w2").run_once())
    assert sorted(r.emails_sent for r in reports) == [0, 1]
    assert len(accepted_receipts(sendgrid_fake)) == 1
    (row,) = await outbox_rows(app)
    assert row.status == "sent"


async def test_refused_every_time_it_is_given_up_after_max_attempts(
    app, client, clock, sendgrid_fake
):
    await queue_receipt(app, clock)
    worker = make_worker(app)
    for _ in range(email_outbox.MAX_ATTEMPTS + 2):
        sendgrid_fake.fail_next(500)
        clock.advance(email_outbox.RETRY_AFTER * email_outbox.MAX_ATTEMPTS)
        await worker.run_once()
    (row,) = await outbox_rows(app)
    assert (row.status, row.attempts) == ("failed", email_outbox.MAX_ATTEMPTS)
    assert len(sendgrid_fake.requests) == email_outbox.MAX_ATTEMPTS  # no try after giving up
    assert sendgrid_fake.messages == []


async def test_a_non_transactional_email_to_an_unsubscribed_address_is_skipped(
    app, client, clock, sendgrid_fake
):
    account = await add_account(app)
    database = app[appkeys.DATABASE]
    async with database.session() as session:
        await ledger.set_email_opt_out(session, "maria@example.com", opted_out=True,
                                       reason="unsubscribe", at=clock.now())
        row = email_outbox.queue(session, {**receipt_email(), "transactional": False},
                                 kind="notice", account_id=account.id, at=clock.now())
        await session.commit()
    providers = app[appkeys.PROVIDERS]
    notifier = Notifier(sms=providers.sms, email=providers.email, brand="Northwind Recovery",
                        email_opted_out=ledger_email_opt_outs(database))

    report = await email_outbox.deliver(database, notifier, [row.id], clock=clock)
    assert (report.sent, report.skipped) == (0, 1)
    assert sendgrid_fake.requests == []
    (stored,) = await outbox_rows(app)
    assert stored.status == "skipped"


# --------------------------------------------------------------- decline notices: sealed


async def test_a_decline_notice_the_mailer_refused_waits_sealed_and_goes_later(
    app, client, clock, sendgrid_fake
):
    maria = await add_account(app, methods=("pm_card_chargeCustomerFail",))
    (reference,) = await add_scheduled(app, maria, date(2026, 12, 15))
    worker = make_worker(app)
    clock.set(local(date(2026, 12, 15), 10))
    sendgrid_fake.fail_next(503, "Service Unavailable")
    assert (await worker.run_once()).declined == 1
    assert sendgrid_fake.messages == []
    (row,) = await outbox_rows(app)
    assert (row.kind, row.status, row.sealed, row.attempts) == ("decline", "queued", True, 1)
    # What waits in the ledger is no usable link, nor anything readable.
    assert reference in row.subject
    for body in (row.text_body, row.html_body):
        assert "/p/" not in body and "payment method" not in body and "Maria" not in body

    clock.advance(email_outbox.RETRY_AFTER)
    assert (await worker.run_once()).emails_sent == 1
    (notice,) = sendgrid_fake.messages
    text = sendgrid_fake.content(notice, "text/plain")
    assert "Update your payment method" in text and "https://paybot.test/p/" in text
    assert reference in notice["subject"]
    (row,) = await outbox_rows(app)
    assert (row.status, row.text_body, row.html_body) == ("sent", "", "")  # the link is gone


async def test_a_notice_sealed_under_another_secret_key_is_given_up_and_wiped(
    app, client, clock, sendgrid_fake
):
    account = await add_account(app)
    async with app[appkeys.DATABASE].session() as session:
        email_outbox.queue(session, receipt_email(), kind="decline", account_id=account.id,
                           at=clock.now(), seal=email_outbox.Seal("the key before a rotation"))
        await session.commit()
    clock.advance(email_outbox.GRACE)
    assert (await make_worker(app).run_once()).emails_failed == 1
    assert sendgrid_fake.requests == []
    (row,) = await outbox_rows(app)
    assert (row.status, row.text_body, row.html_body) == ("failed", "", "")


# --------------------------------------------------------------- the copy of a signed plan


def agreement_copies(sendgrid_fake) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Accepted emails that carry the signed agreement as a PDF."""
    return [body for body in sendgrid_fake.messages
            if any(name.endswith(".pdf") for name, _, _ in sendgrid_fake.attachments(body))]


async def copy_record(app) -> Outreach:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        (record,) = await session.scalars(select(Outreach).where(Outreach.kind == "agreement_copy"))
        return record


async def sign_plan(phone) -> None:  # type: ignore[no-untyped-def]
    maria = phone()
    await maria.send("PLAN")
    (done,) = await maria.send("I agree")
    assert "plan is set up" in done or "Ref " in done, done


async def test_a_plan_signed_by_text_whose_copy_the_mailer_refused_gets_it_later(
    app, client, phone, clock, sendgrid_fake
):
    await add_plan_offer(app, await add_account(app))
    sendgrid_fake.fail_next(503, "Service Unavailable")
    await sign_plan(phone)
    assert agreement_copies(sendgrid_fake) == []
    record = await copy_record(app)
    assert (record.status, record.detail["attempts"]) == ("held", 1)

    worker = make_worker(app)
    await worker.run_once()
    assert agreement_copies(sendgrid_fake) == []  # the retry waits RETRY_AFTER
    clock.advance(email_outbox.RETRY_AFTER)
    report = await worker.run_once()
    assert report.emails_sent == 1
    (copy,) = agreement_copies(sendgrid_fake)
    assert copy["personalizations"][0]["to"][0]["email"] == "maria@example.com"
    assert "agreement" in copy["subject"].lower()
    assert (await copy_record(app)).status == "sent"
    clock.advance(timedelta(hours=1))
    await worker.run_once()
    assert len(agreement_copies(sendgrid_fake)) == 1


async def test_the_copy_of_a_plan_signed_just_before_a_stop_is_sent_by_the_worker_once(
    app, client, phone, clock, sendgrid_fake
):
    await add_plan_offer(app, await add_account(app))
    maria = phone()
    maria.in_process = False
    await maria.send("PLAN")
    engine = app[appkeys.ENGINE]
    await engine.settled()
    (done,) = await maria.send("I agree")
    for delivery in list(engine._deliveries):  # the process stops: the copy's task never runs
        delivery.cancel()
    await engine.settled()
    assert agreement_copies(sendgrid_fake) == []
    assert (await copy_record(app)).status == "held"  # written with the signing

    worker = make_worker(app)
    await worker.run_once()
    assert agreement_copies(sendgrid_fake) == []  # left to the signing process a while
    clock.advance(email_outbox.GRACE)
    await asyncio.gather(worker.run_once(), make_worker(app, name="w2").run_once())
    assert len(agreement_copies(sendgrid_fake)) == 1
    assert (await copy_record(app)).status == "sent"


def test_an_email_with_an_attachment_is_refused_by_the_outbox():
    with pytest.raises(ValueError, match="attachments"):
        email_outbox.queue(None, {**receipt_email(), "attachments": ("x",)},  # type: ignore[arg-type]
                           kind="receipt", account_id=None, at=None)  # type: ignore[arg-type]


async def queue_receipt(app, clock) -> None:  # type: ignore[no-untyped-def]
    """One receipt written as a turn writes it, for Maria's account."""
    account = await add_account(app)
    async with app[appkeys.DATABASE].session() as session:
        email_outbox.queue(session, receipt_email(), kind="receipt", account_id=account.id,
                           at=clock.now())
        await session.commit()


def receipt_email() -> dict[str, Any]:
    return {
        "to": "maria@example.com",
        "subject": "Your payment receipt P-TEST1",
        "text": "Northwind Recovery\n\nHi Maria,\n\nAmount: $50.00\n",
        "html": "<p>Hi Maria,</p><p>Amount: $50.00</p>",
        "transactional": True,
    }


async def test_a_send_cut_off_by_a_stop_is_marked_unknown_counted_once_and_never_resent(
    app, client, clock, sendgrid_fake
):
    await queue_receipt(app, clock)
    database = app[appkeys.DATABASE]
    async with database.session() as session:  # claimed, then the process died mid-send
        (row,) = await session.scalars(select(OutboundEmail))
        row.status, row.claimed_at = "sending", clock.now()
        await session.commit()
    worker = make_worker(app)
    clock.advance(email_outbox.STUCK_AFTER / 2)
    assert (await worker.run_once()).emails_cut_off == 0  # may still be on its way

    clock.advance(email_outbox.STUCK_AFTER)
    report = await worker.run_once()
    assert (report.emails_cut_off, report.emails_sent) == (1, 0)
    assert "emails cut off 1" in report.summary
    assert (await worker.run_once()).emails_cut_off == 0  # told once
    (row,) = await outbox_rows(app)
    assert row.status == "unknown"
    assert sendgrid_fake.requests == []


async def test_a_worker_killed_mid_batch_leaves_only_the_email_it_was_sending_in_doubt(
    app, client, settings, tmp_path, sendgrid_fake
):
    """Found by bench/chaos: a worker claimed a whole batch of overdue emails before sending
    the first, so a kill -9 left every unsent one `sending`, later `unknown` and never sent.
    Now each is claimed just before its send: after the kill, one is in doubt, the rest wait."""
    from tests.test_graceful_stop import WAIT, paybot
    from tests.test_serving import server_env

    account = await add_account(app)
    now = app[appkeys.CLOCK].now()
    async with app[appkeys.DATABASE].session() as session:
        for number in (1, 2, 3):
            email_outbox.queue(session, {
                "to": "maria@example.com", "subject": f"Your payment receipt P-TEST{number}",
                "text": "Amount: $10.00", "html": "<p>Amount: $10.00</p>", "transactional": True,
            }, kind="receipt", account_id=account.id, at=now - email_outbox.GRACE * 2)
        await session.commit()
    sendgrid_fake.stall_after = 1  # the first is taken; the second hangs at SendGrid
    env = server_env(settings, tmp_path)
    env.update(SENDGRID_API_KEY=sendgrid_fake.api_key, SENDGRID_HOST=sendgrid_fake.base_url,
               PAYBOT_DATA_DIR=str(settings.data_dir))
    at = (now + timedelta(minutes=5)).isoformat()
    worker = await paybot(env, "worker", "--once", "--no-outreach", "--at", at)
    async with asyncio.timeout(WAIT):
        await sendgrid_fake.stalled.wait()
    worker.process.kill()
    assert await worker.exit_code() == -9
    sendgrid_fake.release.set()
    assert [(row.subject, row.status) for row in await outbox_rows(app)] == [
        ("Your payment receipt P-TEST1", "sent"),
        ("Your payment receipt P-TEST2", "sending"),  # in doubt: never sent twice
        ("Your payment receipt P-TEST3", "queued"),  # not tried: the next pass sends it
    ]
