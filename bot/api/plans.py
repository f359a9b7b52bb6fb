"""The plans resource: cancel a plan. Every installment not yet charged is canceled (the worker
never takes a canceled row) and the customer is emailed; payments already made stand."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from bot import appkeys
from bot.api.documents import PlanCanceled, answer_body
from bot.api.models import CancelPlanInput
from bot.api.problems import problem, request_model, row_id
from bot.ledger.models import Plan
from bot.plans import signing as plans


async def cancel_plan(request: web.Request) -> web.Response:
    plan_id = row_id(request.match_info["plan_id"])
    if plan_id is None:
        return problem(404, "no plan with that id")
    checked = await request_model(request, CancelPlanInput, status=400, optional=True)
    if isinstance(checked, web.Response):
        return checked
    now = request.config_dict[appkeys.CLOCK].now()
    engine = request.config_dict[appkeys.ENGINE]
    async with request.config_dict[appkeys.DATABASE].session() as session:
        # Only the status is read here: cancel_plan then loads the plan fresh under its row
        # lock, so of two cancellations at once only one cancels (and emails).
        status = await session.scalar(select(Plan.status).where(Plan.id == plan_id))
        if status is None:
            return problem(404, "no plan with that id")
        if status == "canceled":
            return problem(409, "the plan is already canceled")
        try:
            result = await plans.cancel_plan(
                session, plan_id, actor=checked.actor.strip(), reason=checked.reason, at=now
            )
        except plans.PlanError as exc:
            return problem(409, str(exc))
        brand = await engine.brand_for(session, result.account)
    await plans.email_cancellation(engine.db, engine.notifier, result, brand, clock=engine.clock)
    canceled = PlanCanceled(
        plan_id=result.plan.id, status="canceled", installments_canceled=len(result.canceled)
    )
    return web.json_response(answer_body(canceled))
