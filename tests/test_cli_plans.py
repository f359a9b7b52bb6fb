"""`paybot plans`: operators and agents make, list, withdraw and cancel offers and plans from the
terminal. The command runs in process (on a thread, as it runs its own event loop) against the
test's database; `--at` pins "now" to the suite's clock."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bot import appkeys
from bot.ledger.models import Offer, Outreach, PaymentMethod, Plan
from bot.plans import signing as plans
from tests.cli_support import in_process_paybot
from tests.conftest import START
from tests.seed import add_account

AT = ["--at", "2026-11-25T10:00-05:00"]


@pytest.fixture
def paybot(settings, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    """Run `paybot plans ARGS...` in this process: (exit code, stdout, stderr)."""
    return in_process_paybot(settings, monkeypatch, capsys, "plans")


async def ledger_counts(app) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return (await session.scalar(select(func.count()).select_from(Offer)) or 0,
                await session.scalar(select(func.count()).select_from(Outreach)) or 0)


async def test_create_prints_the_schedule_in_the_customers_terms(app, client, paybot):
    await add_account(app)
    code, out, err = await paybot("create", "ACC-1001", "--installments", "6", "--frequency",
                                  "monthly", "--start", "2026-12-15", "--send-via", "sms",
                                  "--by", "agent:jsmith", *AT)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "Offer 1 (open) to Maria Lopez, ACC-1001: 6 monthly payments, $1,250.00 in all, "
        "expires Dec 9, 2026",
        "  1. Dec 15, 2026  $208.34",
        "  2. Jan 15, 2027  $208.34",
        "  3. Feb 15, 2027  $208.34",
        "  4. Mar 15, 2027  $208.34",
        "  5. Apr 15, 2027  $208.34",
        "  6. May 15, 2027  $208.30",
        "Queued to send by sms: the worker sends it within quiet hours.",
    ]
    async with app[appkeys.DATABASE].session() as session:
        offer = await session.scalar(select(Offer))
        queued = await session.scalar(select(Outreach))
    assert offer is not None and offer.created_by == "agent:jsmith"
    assert queued is not None and (queued.offer_id, queued.channel) == (offer.id, "sms")


async def test_create_by_amount_and_by_custom_schedule(app, client, paybot):
    await add_account(app)
    code, out, _ = await paybot("create", "acc-1001", "--frequency", "biweekly", "--start",
                                "2026-11-27", "--amount", "400", "--total", "1,000.00", *AT)
    assert code == 0
    assert "3 every-2-weeks payments, $1,000.00 in all, expires Nov 27, 2026" in out
    assert out.splitlines()[-2] == "  3. Dec 25, 2026  $200.00"
    assert out.splitlines()[-1] == "Not sent (--send-via sms, email or both sends an offer)."
    code, out, _ = await paybot("create", "ACC-1001", "--schedule", "2026-12-01=250",
                                "--schedule", "2026-12-20=1000.00", "--expires", "2026-11-30",
                                *AT)
    assert code == 0
    assert "2 payments, $1,250.00 in all, expires Nov 30, 2026" in out
    assert await ledger_counts(app) == (2, 0)


async def test_settle_by_percentage_or_amount(app, client, paybot):
    await add_account(app)
    code, out, _ = await paybot("settle", "ACC-1001", "--percent-off", "36", *AT)
    assert code == 0
    assert out.splitlines()[0] == (
        "Offer 1 (open) to Maria Lopez, ACC-1001: settle for $800.00 (36% off), expires "
        "Dec 9, 2026")
    code, out, _ = await paybot("settle", "ACC-1001", "--amount", "900.00",
                                "--expires-in-days", "3", *AT)
    assert code == 0 and "settle for $900.00, expires Nov 28, 2026" in out


@pytest.mark.parametrize(("args", "message"), [
    (["create", "ACC-1001", "--installments", "6", "--frequency", "monthly", "--start",
      "2026-11-20"], "paybot plans create: start_date: must not be in the past (today is "
                     "2026-11-25)"),
    (["create", "ACC-1001", "--installments", "30", "--frequency", "monthly", "--start",
      "2026-12-01"], "paybot plans create: count: must be at most 24 installments"),
    (["create", "ACC-1001", "--installments", "6", "--frequency", "monthly", "--start",
      "12/15"], "paybot plans create: --start: '12/15' is not a date (YYYY-MM-DD)"),
    (["create", "ACC-1001", "--installments", "6", "--frequency", "monthly", "--start",
      "2026-12-15", "--amount", "fifty"],
     "paybot plans create: --amount: 'fifty' is not an amount in dollars"),
    (["create", "NOPE-9", "--installments", "6", "--frequency", "monthly", "--start",
      "2026-12-15"], "paybot plans create: NOPE-9: no account with that account_id"),
    (["settle", "ACC-1001", "--amount", "2000"],
     "paybot plans settle: settlement_amount: must be less than the balance ($1,250.00)"),
    (["settle", "ACC-1001", "--percent-off", "120"],
     "paybot plans settle: --percent-off: must be more than 0 and less than 100"),
    (["settle", "ACC-1001", "--amount", "800", "--send-via", "email"],
     "paybot plans settle: send_via: the account has no email address"),
])
async def test_invalid_input_is_one_clear_line_exit_2_and_nothing_written(
        app, client, paybot, args, message):
    await add_account(app, email=None)
    code, out, err = await paybot(*args, *AT)
    assert (code, out) == (2, "")
    assert err.splitlines() == [message]
    assert await ledger_counts(app) == (0, 0)


async def test_usage_errors_exit_2(app, client, paybot):
    await add_account(app)
    code, _, err = await paybot("settle", "ACC-1001", "--amount", "800", "--percent-off", "10")
    assert code == 2 and "not allowed with argument" in err
    code, _, err = await paybot("settle", "ACC-1001", "--amount", "800", "--at", "2026-11-25")
    assert code == 2 and "--at takes a date and time with its UTC offset" in err
    assert await ledger_counts(app) == (0, 0)


async def test_withdraw_then_list(app, client, paybot):
    await add_account(app)
    await paybot("settle", "ACC-1001", "--amount", "800", *AT)
    code, out, _ = await paybot("withdraw", "1", "--by", "agent:jsmith", *AT)
    assert code == 0 and out.startswith("Offer 1 withdrawn")
    code, out, err = await paybot("withdraw", "1", *AT)
    assert (code, err.strip()) == (2, "paybot plans withdraw: offer 1: The offer is already "
                                      "withdrawn.")
    code, out, err = await paybot("withdraw", "99", *AT)
    assert (code, err.strip()) == (2, "paybot plans withdraw: offer 99: No offer with that id.")
    code, out, _ = await paybot("list", "ACC-1001", *AT)
    assert code == 0
    assert out.splitlines() == [
        "ACC-1001 (Maria Lopez): balance $1,250.00",
        "Offer 1 (withdrawn): settle for $800.00, expires Dec 9, 2026",
    ]


async def test_cancel_a_plan_emails_the_customer(app, client, paybot, settings):
    await add_account(app)
    await paybot("create", "ACC-1001", "--installments", "3", "--frequency", "monthly",
                 "--start", "2026-12-15", "--total", "300", *AT)
    async with app[appkeys.DATABASE].session() as session:
        offer = await session.scalar(select(Offer))
        method = await session.scalar(select(PaymentMethod))
        account = await session.get(plans.Account, offer.account_id)
        plan = await plans.accept_plan_offer(
            session, offer=offer, account=account, method=method,
            signature=plans.Signature(kind="typed", data="Maria Lopez", signer_name="Maria Lopez",
                                      channel="web", esign_consent_at=START),
            agreement_text="terms", terms_version="2026-11", at=START)
    code, out, _ = await paybot("list", "ACC-1001", *AT)
    assert out.splitlines()[-4:] == [
        f"Plan {plan.id} (active): 3 monthly payments, $300.00 in all",
        "  1. Dec 15, 2026  $100.00  Scheduled",
        "  2. Jan 15, 2027  $100.00  Scheduled",
        "  3. Feb 15, 2027  $100.00  Scheduled",
    ]
    code, out, err = await paybot("cancel", str(plan.id), "--reason", "asked to", "--by",
                                  "agent:jsmith", *AT)
    assert (code, err) == (0, "")
    assert out.strip() == (f"Plan {plan.id} canceled: 3 installment(s) of $300.00 will not be "
                           "debited. The customer was emailed.")
    async with app[appkeys.DATABASE].session() as session:
        stored = await session.get(Plan, plan.id)
    assert stored is not None and stored.status == "canceled"
    assert (stored.canceled_by, stored.cancel_reason) == ("agent:jsmith", "asked to")
    (sent,) = (settings.data_dir / "outbox" / "email").glob("*.eml")
    assert "your payment plan is canceled" in sent.read_text()
    assert "$300.00 will not be charged" in sent.read_text()
    code, _, err = await paybot("cancel", str(plan.id), *AT)
    assert (code, err.strip()) == (2, f"paybot plans cancel: plan {plan.id}: The plan is "
                                      "already canceled.")
    code, out, _ = await paybot("list", "ACC-1001", *AT)
    assert "  1. Dec 15, 2026  $100.00  Canceled" in out


async def test_list_shows_standing_offers_and_lapsed_ones_as_expired(app, client, paybot):
    await add_account(app, offers=True)
    code, out, _ = await paybot("list", "ACC-1001", *AT)
    assert code == 0
    assert out.splitlines()[1:] == [
        "Offer 1 (open): settle for $800.00, expires Dec 31, 2026",
        "Offer 2 (open): 6 monthly payments, $1,250.00 in all",
        "  (the customer chooses the first date)",
    ]
    code, out, _ = await paybot("list", "ACC-1001", "--at", "2027-01-02T10:00-05:00")
    assert "Offer 1 (expired): settle for $800.00, expires Dec 31, 2026" in out
