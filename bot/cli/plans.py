"""`paybot plans`: offers and plans made by an operator or an agent (create, settle, list, cancel,
withdraw); bot/plans/ holds the rules, this module the command line and what it prints."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bot.cli.common import InputError, account_named, add_command, moment, run_on_engine
from bot.config.settings import Settings


def register(sub: Any) -> None:
    plans = add_command(sub, "plans", _plans, beside_demo=True, quiet=True,
                        help="make, send, list, withdraw and cancel plan offers")
    plans_sub = plans.add_subparsers(dest="plans_command", required=True)

    def common(command: argparse.ArgumentParser) -> None:
        command.add_argument("account_id")
        command.add_argument("--send-via", choices=("sms", "email", "both"),
                             help="send the offer now (the worker delivers it within quiet "
                                  "hours and opt-outs); default: not sent")
        expiry = command.add_mutually_exclusive_group()
        expiry.add_argument("--expires-in-days", type=int, metavar="N",
                            help="the offer lapses at the end of that day, customer's time "
                                 "(default: the creditor's offer lifetime)")
        expiry.add_argument("--expires", metavar="YYYY-MM-DD",
                            help="the offer lapses at the end of this day, customer's time")
        command.add_argument("--by", default="cli", help="who makes it, e.g. agent:jsmith")
        _at_option(command)

    create = plans_sub.add_parser("create", help="offer a payment plan with an exact schedule")
    create.set_defaults(run=_offer)
    common(create)
    create.add_argument("--installments", type=int, metavar="N", help="number of installments")
    create.add_argument("--frequency", choices=("weekly", "biweekly", "monthly"),
                        help="how often (biweekly: every two weeks)")
    create.add_argument("--start", metavar="YYYY-MM-DD", help="the first installment's date")
    create.add_argument("--amount", metavar="DOLLARS",
                        help="each installment (the last takes the rest)")
    create.add_argument("--total", metavar="DOLLARS", help="the plan's total (default: balance)")
    create.add_argument("--schedule", action="append", metavar="YYYY-MM-DD=DOLLARS",
                        help="a custom schedule instead, one installment each (repeat)")

    settle = plans_sub.add_parser("settle", help="offer to settle for less than the balance")
    settle.set_defaults(run=_offer)
    common(settle)
    how = settle.add_mutually_exclusive_group(required=True)
    how.add_argument("--amount", metavar="DOLLARS", help="the settlement amount")
    how.add_argument("--percent-off", metavar="PERCENT", help="the share off the balance")

    listing = plans_sub.add_parser("list", help="an account's offers and plans")
    listing.set_defaults(run=_list)
    listing.add_argument("account_id")
    _at_option(listing)

    cancel = plans_sub.add_parser("cancel", help="cancel a plan: nothing more is debited, the "
                                                 "customer is emailed")
    cancel.set_defaults(run=_cancel)
    cancel.add_argument("plan_id", type=int)
    cancel.add_argument("--reason", help="kept with the plan")
    cancel.add_argument("--by", default="cli", help="who cancels, e.g. agent:jsmith")
    _at_option(cancel)

    withdraw = plans_sub.add_parser("withdraw", help="withdraw an open offer (its links stop)")
    withdraw.set_defaults(run=_withdraw)
    withdraw.add_argument("offer_id", type=int)
    withdraw.add_argument("--by", default="cli", help="who withdraws it")
    _at_option(withdraw)


def _at_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--at", metavar="DATETIME",
                         help="act as if it were this moment, e.g. 2026-11-25T10:00-05:00 "
                              "(rehearsal, tests)")


def _plans(settings: Settings, args: argparse.Namespace) -> int:
    from bot.clock import FrozenClock, SystemClock

    name = f"paybot plans {args.plans_command}"
    clock = SystemClock()
    if args.at is not None:
        at = moment(args.at)
        if at is None:
            print(f"{name}: --at takes a date and time with its UTC offset, e.g. "
                  "2026-11-25T10:00-05:00", file=sys.stderr)
            return 2
        clock = FrozenClock(at)
    return run_on_engine(settings, args, name, clock=clock)


def _offer_request(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from datetime import date

    from bot.money import InvalidAmount, dollars_to_cents
    from bot.plans.offers import InvalidOffer, OfferRequest, percent_to_bps

    def cents(option: str, value: str | None) -> int | None:
        if value is None:
            return None
        try:
            return dollars_to_cents(value)
        except InvalidAmount as exc:
            raise InputError(f"{option}: {value!r} is not an amount in dollars") from exc

    def day(option: str, value: str | None) -> date | None:
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise InputError(f"{option}: {value!r} is not a date (YYYY-MM-DD)") from exc

    common = {
        "created_by": args.by,
        "send_via": args.send_via,
        "expires_in_days": args.expires_in_days,
        "expires_on": day("--expires", args.expires),
    }
    if args.plans_command == "settle":
        try:
            bps = percent_to_bps(args.percent_off) if args.percent_off is not None else None
        except InvalidOffer as exc:
            raise InputError(f"--percent-off: {exc.reason}") from exc
        return OfferRequest(kind="settlement", settlement_cents=cents("--amount", args.amount),
                            discount_bps=bps, **common)
    schedule = None
    if args.schedule:
        schedule = []
        for item in args.schedule:
            when, _, amount = item.partition("=")
            schedule.append((day("--schedule", when), cents("--schedule", amount)))
    return OfferRequest(
        kind="plan", total_cents=cents("--total", args.total), frequency=args.frequency,
        start=day("--start", args.start), count=args.installments,
        installment_cents=cents("--amount", args.amount),
        schedule=tuple(schedule) if schedule is not None else None, **common,
    )


async def _offer(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from bot import appkeys
    from bot.plans.offers import InvalidOffer, account_zone, create_offer, describe_offer

    request = _offer_request(args)
    async with app[appkeys.DATABASE].session() as session:
        account = await account_named(session, args.account_id)
        try:
            offer = await create_offer(session, account, request, flow=engine.settings.flow,
                                       at=app[appkeys.CLOCK].now())
        except InvalidOffer as exc:
            raise InputError(str(exc)) from exc
        lines = describe_offer(
            offer, account_zone(account), now=app[appkeys.CLOCK].now(),
            to=f"{account.first_name} {account.last_name}, {account.account_ref}",
        )
    print("\n".join(lines))
    print(f"Queued to send by {args.send_via}: the worker sends it within quiet hours."
          if args.send_via else "Not sent (--send-via sms, email or both sends an offer).")
    return 0


async def _list(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from bot import appkeys
    from bot.ledger.models import Plan
    from bot.money import format_cents
    from bot.payments.service import STATUS_LABELS
    from bot.plans.offers import account_zone, describe_offer, offers_for
    from bot.plans.signing import plan_installments
    from bot.text.rendering import format_day

    async with app[appkeys.DATABASE].session() as session:
        account = await account_named(session, args.account_id)
        zone = account_zone(account)
        print(f"{account.account_ref} ({account.first_name} {account.last_name}): balance "
              f"{format_cents(account.balance_cents)}")
        found = await offers_for(session, account.id)
        if not found:
            print("No offers.")
        for offer in found:
            print("\n".join(describe_offer(offer, zone, now=app[appkeys.CLOCK].now())))
        plans = list(await session.scalars(
            select(Plan).where(Plan.account_id == account.id).order_by(Plan.id)))
        for plan in plans:
            print(f"Plan {plan.id} ({plan.status}): {plan.installment_count} {plan.frequency} "
                  f"payments, {format_cents(plan.total_cents)} in all")
            for payment in await plan_installments(session, plan.id):
                # EXTRA is the plan's money too, but no installment of it.
                number = payment.installment_number or "Extra"
                print(f"  {number}. {format_day(payment.scheduled_for)}  "
                      f"{format_cents(payment.amount_cents)}  "
                      f"{STATUS_LABELS.get(payment.status, payment.status)}")
    return 0


async def _cancel(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from bot import appkeys
    from bot.money import format_cents
    from bot.plans.signing import PlanError, cancel_plan, email_cancellation

    async with app[appkeys.DATABASE].session() as session:
        try:
            result = await cancel_plan(session, args.plan_id, actor=args.by, reason=args.reason,
                                       at=app[appkeys.CLOCK].now())
        except PlanError as exc:
            raise InputError(f"plan {args.plan_id}: {exc}") from exc
        brand = await engine.brand_for(session, result.account)
    await email_cancellation(engine.db, engine.notifier, result, brand, clock=engine.clock)
    told = " The customer was emailed." if result.account.email else ""
    print(f"Plan {args.plan_id} canceled: {len(result.canceled)} installment(s) of "
          f"{format_cents(result.canceled_total)} will not be debited.{told}")
    return 0


async def _withdraw(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from bot import appkeys
    from bot.plans.offers import withdraw_offer
    from bot.plans.signing import PlanError

    async with app[appkeys.DATABASE].session() as session:
        try:
            await withdraw_offer(session, args.offer_id, actor=args.by,
                                 at=app[appkeys.CLOCK].now())
        except PlanError as exc:
            raise InputError(f"offer {args.offer_id}: {exc}") from exc
    print(f"Offer {args.offer_id} withdrawn: it can no longer be signed and its links stop "
          "working.")
    return 0
