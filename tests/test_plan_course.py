"""A plan whose every installment is paid is over (found by trying the demo: after the worker
charged the last installment the plan stayed "active" in the API and `plans list`, and PLAN by
text left the customer in a plan step with nothing to do, where PAY was "not understood")."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from bot import appkeys
from bot.models import Plan
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
