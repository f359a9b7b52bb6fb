"""A plan whose every installment is paid is over (found by trying the demo: after the worker
charged the last installment the plan stayed "active" in the API and `plans list`, and PLAN by
text left the customer in a plan step with nothing to do, where PAY was "not understood")."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Plan
from tests.cli_support import in_process_paybot
from tests.seed import add_account
from tests.test_money_guard import ledger_of, run_worker_on, sign_plan_by_text


async def test_a_plan_paid_to_its_last_installment_is_completed_and_pay_is_understood(
    app, phone, clock
):
    account = await add_account(app, balance="300.00")
    maria = await sign_plan_by_text(app, phone, account)
    await run_worker_on(app, clock, date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1))

    assert await ledger_of(app) == (0, [(10000, "paid"), (10000, "paid"), (10000, "paid")])
    async with app[appkeys.DATABASE].session() as session:
        assert list(await session.scalars(select(Plan.status))) == ["completed"]
    await maria.send("PLAN")
    (reply,) = await maria.send("PAY")
    assert reply == "Your balance is $0.00, so nothing is due. Thank you!"


@pytest.fixture
def paybot(settings, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    return in_process_paybot(settings, monkeypatch, capsys, "plans")


async def test_plans_list_names_an_extra_payment_as_such(app, client, phone, paybot):
    """EXTRA belongs to its plan but is no installment: `plans list` printed it as "None."."""
    account = await add_account(app, balance="300.00")
    maria = await sign_plan_by_text(app, phone, account)
    (asked,) = await maria.send("EXTRA 50")
    assert asked.startswith("Pay $50.00 now from Visa ending 4242?"), asked
    (done,) = await maria.send("YES")
    assert done.startswith("Done: $50.00 paid"), done
    code, out, _ = await paybot("list", "ACC-1001", "--at", "2026-11-25T10:00-05:00")
    assert code == 0
    assert out.splitlines()[-4:] == [
        "  Extra. Nov 25, 2026  $50.00  Paid",
        "  1. Dec 1, 2026  $100.00  Scheduled",
        "  2. Jan 1, 2027  $100.00  Scheduled",
        "  3. Feb 1, 2027  $50.00  Scheduled",
    ]
