"""`paybot payments list|cancel|refund`: payments across accounts (filters, CSV), canceling a
scheduled one-off payment and refunding a Paid one, without the console. The rules are in
bot/payments/ (refunds.py, cancellation.py) and bot/reports/; this module reads the command line
and prints. Bad input is said on stderr, exit 2, and nothing is changed."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import date
from typing import Any

from bot.cli.common import InputError, add_command, migrated_database, run_on_engine
from bot.config.settings import Settings

NAME = "paybot payments"


def register(sub: Any) -> None:
    payments = sub.add_parser("payments", help="payments across accounts: list, cancel, refund")
    actions = payments.add_subparsers(dest="action", required=True)

    listing = add_command(actions, "list", _list, quiet=True,
                          help="payments across accounts, newest first (UTC dates)")
    listing.add_argument("--status", help="scheduled, processing, pending, paid, declined or "
                                          "canceled")
    listing.add_argument("--creditor", help="a creditor's code")
    listing.add_argument("--channel", help="where it was authorized: sms or web")
    listing.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD",
                         help="from this day (inclusive)")
    listing.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD",
                         help="to this day (inclusive)")
    listing.add_argument("--date", choices=("scheduled", "created"), default="scheduled",
                         help="the range is on the day it is due (default) or the day it was "
                              "made (UTC)")
    listing.add_argument("--page", type=int, default=1, help="which page of 50")
    listing.add_argument("--csv", action="store_true",
                         help="every matching payment as CSV on standard output")

    cancel = add_command(actions, "cancel", _cancel, quiet=True, beside_demo=True,
                         help="cancel a scheduled one-off payment; the customer is emailed and "
                              "texted")
    cancel.add_argument("reference", help="the payment's reference, e.g. P-7K3QX")
    cancel.add_argument("--by", required=True, metavar="NAME", help="who cancels (audited)")
    cancel.add_argument("--reason", help="kept in the audit trail")

    refund = add_command(actions, "refund", _refund, quiet=True, beside_demo=True,
                         help="refund a Paid payment, in full or in part; the customer gets a "
                              "receipt")
    refund.add_argument("reference", help="the payment's reference, e.g. P-7K3QX")
    refund.add_argument("--amount", metavar="DOLLARS",
                        help="how much, e.g. 12.34 (default: all that is left)")
    refund.add_argument("--by", required=True, metavar="NAME", help="who refunds (audited)")
    refund.add_argument("--reason", help="kept with the refund")
    refund.add_argument("--key", metavar="TEXT",
                        help="this request's own key: by default the payment and the amount "
                             "make it, so the same command twice refunds once")


def _day(option: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{option}: {value!r} is not a date (YYYY-MM-DD)") from None


def _actor(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise InputError("--by: say who you are (a name)")
    return f"cli:{name}"[:40]


def _list(settings: Settings, args: argparse.Namespace) -> int:
    from bot.money import format_cents
    from bot.reports.payments import PaymentFilter, ReportError, list_payments, payments_csv

    try:
        filters = PaymentFilter(
            status=args.status, creditor=args.creditor, channel=args.channel,
            date_from=_day("--from", args.date_from), date_to=_day("--to", args.date_to),
            date_field="created_at" if args.date == "created" else "scheduled_for",
        ).checked()
        if args.page < 1:
            raise InputError(f"--page {args.page}: pages start at 1")
    except (InputError, ReportError) as exc:
        print(f"{NAME} list: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        async with migrated_database(settings) as database, database.session() as session:
            if args.csv:
                sys.stdout.write(await payments_csv(session, filters))
                return 0
            page = await list_payments(session, filters, page=args.page)
        if not page.total:
            print("No payments match.")
            return 0
        for row in page.rows:
            refunded = f"  refunded {format_cents(row.refunded_cents)}" if row.refunded_cents \
                else ""
            print(f"{row.reference}  {row.account_ref}  {row.status_label:<10}  "
                  f"{format_cents(row.amount_cents):>10}  due {row.scheduled_for.isoformat()}  "
                  f"{row.channel}  {row.creditor or '-'}{refunded}")
        print(f"Page {page.page} of {page.pages} ({page.total} payment(s)); dates are UTC.")
        return 0

    return asyncio.run(run())


def _cancel(settings: Settings, args: argparse.Namespace) -> int:
    from bot.payments.refunds import MoneyOperationError

    try:
        actor = _actor(args.by)
    except InputError as exc:
        print(f"{NAME} cancel: {exc}", file=sys.stderr)
        return 2

    async def run(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
        from bot import appkeys
        from bot.money import format_cents
        from bot.payments.cancellation import cancel_scheduled_payment

        done = await cancel_scheduled_payment(
            app[appkeys.DATABASE], reference=args.reference, actor=actor,
            clock=app[appkeys.CLOCK], reason=args.reason, notifier=engine.notifier,
        )
        told = " The customer was emailed." if done.email_id is not None else ""
        if done.text_queued:
            told += " A text is queued (the worker sends it outside quiet hours)."
        told = told or " No email or phone on file: the customer was not told."
        print(f"Payment {done.reference} ({format_cents(done.amount_cents)} due "
              f"{done.scheduled_for.isoformat()}) canceled: it will not be charged.{told}")
        return 0

    args.run = run
    return run_on_engine(settings, args, f"{NAME} cancel", refused=(MoneyOperationError,))


def _refund(settings: Settings, args: argparse.Namespace) -> int:
    from bot.money import InvalidAmount, dollars_to_cents
    from bot.payments.refunds import MoneyOperationError, RefundNotConfirmed

    name = f"{NAME} refund"
    try:
        actor = _actor(args.by)
        amount = None
        if args.amount is not None:
            try:
                amount = dollars_to_cents(args.amount)
            except InvalidAmount:
                raise InputError(f"--amount: {args.amount!r} is not an amount in dollars, "
                                 "e.g. 12.34") from None
            if amount <= 0:
                raise InputError(f"--amount: {args.amount!r}: a refund is more than $0.00")
    except InputError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2

    async def run(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
        from bot import appkeys
        from bot.money import format_cents
        from bot.payments.refunds import refund_payment

        try:
            done = await refund_payment(
                app[appkeys.DATABASE], app[appkeys.PROVIDERS].charging,
                reference=args.reference, actor=actor, clock=app[appkeys.CLOCK],
                amount_cents=amount, reason=args.reason, idempotency_key=args.key,
                notifier=engine.notifier,
            )
        except RefundNotConfirmed as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
        if done.repeated:
            print(f"Already done: {format_cents(done.amount_cents)} of {done.reference} was "
                  f"refunded ({done.status}); nothing more was refunded.")
            return 0
        print(f"Refunded {format_cents(done.amount_cents)} of {done.reference} "
              f"({done.status}, {done.processor_id}). Refunded in all "
              f"{format_cents(done.refunded_cents)} of {format_cents(done.payment_cents)}; "
              f"the balance is now {format_cents(done.balance_cents)}.")
        return 0

    args.run = run
    return run_on_engine(settings, args, name, refused=(MoneyOperationError,))
