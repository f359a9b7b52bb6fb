"""The `paybot` command: demo, serve, worker, chat, import-accounts, send-links, plans, emails,
check-config."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from aiohttp import web

from bot.config.settings import ConfigError, Settings


def load_settings() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"paybot: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="paybot", description="Pay what you owe by text.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="seed demo accounts, start localstripe and the server")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--once", action="store_true", help="show the walkthrough, then exit")

    serve = sub.add_parser("serve", help="run the web server (webhooks, API, links)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="web processes sharing the port, about one per core (above 1 needs REDIS_URL)",
    )

    worker = sub.add_parser("worker", help="charge scheduled payments when they are due")
    worker.add_argument("--once", action="store_true",
                        help="one pass over what is due now, then exit (cron, tests)")
    worker.add_argument("--rate", type=float, metavar="N",
                        help="at most N processor requests per second (default 20; shared by "
                             "every worker when REDIS_URL is set)")
    worker.add_argument("--batch", type=int, metavar="N", help="rows claimed at a time (20)")
    worker.add_argument("--concurrency", type=int, metavar="N",
                        help="charges in flight (default: 8, or 0.3 s worth of --rate)")
    worker.add_argument("--interval", type=float, metavar="SECONDS",
                        help="wait between passes when not --once (30)")
    worker.add_argument("--retry-declined-after", type=int, metavar="DAYS",
                        dest="retry_declined_after_days",
                        help="retry a declined payment DAYS later (default: never)")
    worker.add_argument("--max-retries", type=int, metavar="N", dest="max_decline_retries",
                        help="retries of one declined payment at most (1)")
    worker.add_argument("--sms-rate", type=float, metavar="N", dest="sms_rate",
                        help="at most N proactive texts per second (default 1, a Twilio long "
                             "code's rate; shared through REDIS_URL like --rate)")
    worker.add_argument("--no-outreach", action="store_false", dest="outreach", default=None,
                        help="charge only: no offers, reminders or expiry notices this run")
    worker.add_argument("--at", metavar="DATETIME",
                        help="with --once: act as if it were this moment, e.g. "
                             "2026-12-15T10:00-05:00 (demo, rehearsal)")

    chat = sub.add_parser("chat", help="a conversation in the terminal, as a phone number")
    chat.add_argument("--phone", required=True, help="the customer's number, e.g. +15555550101")

    imp = sub.add_parser("import-accounts", help="upsert accounts from a CSV file")
    imp.add_argument("file", type=Path)

    links = sub.add_parser("send-links",
                           help="send each selected account its personalized link (SMS, email)")
    links.add_argument("--account", action="append", dest="accounts", help="an account_id (repeat)")
    links.add_argument("--creditor", help="only this creditor's accounts")
    links.add_argument("--via", choices=("sms", "email", "both"), default="sms",
                       help="the channel: a text, an email or both, each with its own link "
                            "(default: sms)")

    _add_plans_parser(sub)

    sub.add_parser("check-config", help="what is set, missing or invalid (values never shown); "
                                        "exit 1 when production lacks something")

    emails = sub.add_parser("emails", help="receipts and notices: those that need a look, and "
                                           "sending one again")
    emails_sub = emails.add_subparsers(dest="emails_command", required=True)
    listing = emails_sub.add_parser("list", help="emails given up or cut off mid-send (newest "
                                                 "first); --all for every one")
    listing.add_argument("--account", help="only this account_id")
    listing.add_argument("--all", action="store_true", dest="every_status",
                         help="every status, not only failed and unknown")
    listing.add_argument("--limit", type=int, default=50)
    resend = emails_sub.add_parser("resend", help="send one email again now (e.g. a receipt the "
                                                  "customer did not get)")
    resend.add_argument("email_id", type=int)
    resend_copy = emails_sub.add_parser("resend-copy", help="send the copy of a plan's signed "
                                                            "agreement again now")
    resend_copy.add_argument("plan_id", type=int)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = load_settings()
    if args.command == "check-config":
        sys.exit(_check_config(settings))
    refused = _refused(settings, args.command)
    if refused:
        print(f"paybot {args.command}: {refused}", file=sys.stderr)
        sys.exit(2)
    if args.command in BESIDE_THE_DEMO:
        from bot.cli.demo import beside_running_demo

        settings = beside_running_demo(settings)
    handler = {
        "demo": _demo, "serve": _serve, "worker": _worker, "chat": _chat,
        "import-accounts": _import, "send-links": _send_links, "plans": _plans,
        "emails": _emails,
    }[args.command]
    try:
        code = handler(settings, args)
    except KeyboardInterrupt:
        code = 130
    except ConfigError as exc:  # e.g. providers refused: never a traceback for a setting
        print(f"paybot {args.command}: configuration error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code or 0)


# Commands an operator may run in another terminal while `paybot demo` serves: they use the
# processor (localstripe) and the address the running demo chose, or its saved methods are
# unknown to them and their links point at no server.
BESIDE_THE_DEMO = ("chat", "worker", "plans", "emails", "send-links")


def _refused(settings: Settings, command: str) -> str | None:
    """In production nothing runs on a fallback: every command refuses while a secret or a
    provider credential is missing (a sandbox there would mark payments Paid and send nothing).
    Outside production the long-running ones say out loud what is open."""
    from bot.config.check import review

    found = review(settings)
    if settings.production:
        if command == "demo":
            return ("the demo seeds demo accounts and runs a local Stripe: never in production "
                    "(PUBLIC_BASE_URL starts with https://)")
        return found.refusal() if found.problems else None
    if command in ("serve", "worker"):
        for warning in found.warnings():
            logging.warning("not production: %s", warning)
    return None


def _check_config(settings: Settings) -> int:
    from bot.config.check import review

    found = review(settings)
    print(found.report())
    return 1 if found.problems else 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from bot.cli.demo import run_demo

    logging.getLogger().setLevel(logging.WARNING)
    try:
        asyncio.run(run_demo(settings, host=args.host, port=args.port, once=args.once,
                             interactive=sys.stdin.isatty() and not args.once))
    except asyncio.CancelledError:  # SIGTERM: the demo has stopped what it started
        return 143
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from bot.serving import serve

    try:
        return serve(settings, host=args.host, port=args.port, processes=args.workers)
    except ConfigError as exc:
        print(f"paybot serve: {exc}", file=sys.stderr)
        return 2


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from bot.worker.loop import WorkerConfig, run_worker

    options = ("rate", "batch", "concurrency", "interval", "retry_declined_after_days",
               "max_decline_retries", "sms_rate", "outreach")
    try:
        config = WorkerConfig(**{name: getattr(args, name) for name in options
                                 if getattr(args, name) is not None})
    except ValueError as exc:
        print(f"paybot worker: {exc}", file=sys.stderr)
        return 2
    clock = None
    if args.at is not None:
        from datetime import datetime

        from bot.clock import FrozenClock

        try:
            at = datetime.fromisoformat(args.at)
        except ValueError:
            at = None
        if at is None or at.tzinfo is None or not args.once:
            print("paybot worker: --at takes a date and time with its UTC offset, e.g. "
                  "2026-12-15T10:00-05:00, and goes with --once", file=sys.stderr)
            return 2
        clock = FrozenClock(at)
    return asyncio.run(run_worker(settings, config, once=args.once, clock=clock))


async def _with_engine(settings: Settings, body, clock=None):  # type: ignore[no-untyped-def]
    """Open the same resources the web app opens, for a command that runs without HTTP."""
    from bot import appkeys
    from bot.app import create_app

    app = create_app(settings, clock=clock)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        return await body(app[appkeys.ENGINE], app)
    finally:
        await runner.cleanup()


def _chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.cli.demo import chat_loop
    from bot.phones import InvalidPhone, normalize_phone

    try:
        phone = normalize_phone(args.phone)
    except InvalidPhone as exc:
        print(f"paybot chat: {exc}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(logging.WARNING)
    print(f"Chatting as {phone}. Ctrl-D to stop.")
    asyncio.run(_with_engine(settings, lambda engine, _app: chat_loop(engine, phone)))
    return 0


def _import(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bot.accounts.loading import ImportFileError, import_csv
    from bot.clock import SystemClock
    from bot.ledger.db import Database

    logging.getLogger("alembic").setLevel(logging.WARNING)
    name = "paybot import-accounts"
    if not args.file.is_file():
        print(f"{name}: no such file: {args.file}", file=sys.stderr)
        return 2
    if settings.is_default("secret_key"):
        print(f"{name}: warning: SECRET_KEY is not set; SSNs are hashed with the development key "
              "and will not match once a real key is set", file=sys.stderr)

    async def run() -> int:
        database = Database(settings.database_url)
        try:
            await database.migrate()
            with tqdm(unit=" lines", desc="importing", file=sys.stderr, dynamic_ncols=True,
                      disable=not sys.stderr.isatty()) as bar:
                report = await import_csv(
                    database.session, args.file, secret_key=settings.secret_key,
                    clock=SystemClock(), progress=bar.update,
                    on_total=lambda n: (setattr(bar, "total", n), bar.refresh()),
                )
        except ImportFileError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        except UnicodeDecodeError:  # the file changed under us after the UTF-8 check
            print(f"{name}: {args.file} is not UTF-8 text", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"{name}: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        finally:
            await database.close()
        for line, reason in report.errors:
            print(f"{args.file}:{line}: {reason}", file=sys.stderr)
        print(report.summary)
        return 1 if report.errors else 0

    return asyncio.run(run())


def _send_links(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bot.clock import SystemClock
    from bot.ledger.db import Database
    from bot.outreach.campaigns import CampaignError, send_links
    from bot.providers import build_providers

    logging.getLogger("alembic").setLevel(logging.WARNING)
    name = "paybot send-links"

    async def run() -> int:
        database = Database(settings.database_url)
        providers = build_providers(settings)
        try:
            await database.migrate()
            with tqdm(unit=" accounts", desc="sending", file=sys.stderr, dynamic_ncols=True,
                      disable=not sys.stderr.isatty()) as bar:
                report = await send_links(
                    settings=settings, database=database, sms=providers.sms,
                    email=providers.email, clock=SystemClock(), via=args.via,
                    account_refs=args.accounts, creditor=args.creditor, progress=bar.update,
                    on_total=lambda n: (setattr(bar, "total", n), bar.refresh()),
                )
        except CampaignError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        finally:
            await providers.close()
            await database.close()
        for account_ref in report.unknown:
            print(f"{name}: {account_ref}: no account with that account_id", file=sys.stderr)
        for channel, account_ref, reason in report.failed:
            where = account_ref if report.via == ("sms",) else f"{account_ref}: {channel}"
            print(f"{name}: {where}: {reason}", file=sys.stderr)
        print(report.summary)
        return 1 if report.failed or report.unknown else 0

    return asyncio.run(run())


# --- paybot plans: offers and plans made by an operator or an agent ---


def _emails(settings: Settings, args: argparse.Namespace) -> int:
    from bot.outreach import email_outbox

    logging.getLogger().setLevel(logging.WARNING)
    command = {"list": _emails_list, "resend": _emails_resend,
               "resend-copy": _emails_resend_copy}[args.emails_command]

    async def body(engine, app):  # type: ignore[no-untyped-def]
        return await command(engine, app, args)

    try:
        return asyncio.run(_with_engine(settings, body))
    except (email_outbox.CannotResend, _PlansInputError) as exc:
        print(f"paybot emails {args.emails_command}: {exc}", file=sys.stderr)
        return 2


def _email_line(row, account_ref: str | None) -> str:  # type: ignore[no-untyped-def]
    from bot.security import mask_email

    return (f"{row.id:>5}  {row.created_at:%Y-%m-%d %H:%M} UTC  {row.kind:<13} "
            f"{account_ref or '-':<12} {mask_email(row.to_address)}  {row.status}"
            f"{_tries(row.attempts)}  {row.subject}")


def _tries(count: int) -> str:
    return f", {count} tr{'y' if count == 1 else 'ies'}" if count else ""


async def _emails_list(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from bot import appkeys
    from bot.ledger.models import Account
    from bot.outreach import email_outbox
    from bot.plans import agreement_copy
    from bot.security import mask_email

    async with app[appkeys.DATABASE].session() as session:
        account_id = None
        if args.account:
            account_id = (await _plans_account(session, args.account)).id
        rows = await email_outbox.recent(session, account_id=account_id,
                                         every_status=args.every_status, limit=args.limit)
        copies = await agreement_copy.recent_copies(session, account_id=account_id,
                                                    every_status=args.every_status,
                                                    limit=args.limit)
        owners = {r.account_id for r in [*rows, *copies] if r.account_id}
        accounts = {a.id: a for a in await session.scalars(
            select(Account).where(Account.id.in_(owners)))}
    if not rows and not copies:
        print("No emails." if args.every_status else "No email was given up or cut off.")
    for row in rows:
        owner = accounts.get(row.account_id) if row.account_id else None
        print(_email_line(row, owner.account_ref if owner else None))
    for copy in copies:
        owner = accounts.get(copy.account_id)
        tries = int((copy.detail or {}).get("attempts", 0))
        print(f"{'copy':>5}  {copy.created_at:%Y-%m-%d %H:%M} UTC  {'agreement':<13} "
              f"{owner.account_ref if owner else '-':<12} "
              f"{mask_email(owner.email) if owner and owner.email else '-'}  {copy.status}"
              f"{_tries(tries)}  copy of the agreement of plan {copy.plan_id} "
              f"(paybot emails resend-copy {copy.plan_id})")
    return 0


async def _emails_resend_copy(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from bot import appkeys
    from bot.plans import agreement_copy

    database, clock = app[appkeys.DATABASE], app[appkeys.CLOCK]
    async with database.writer(), database.session() as session:
        record = await agreement_copy.requeue_copy(session, args.plan_id, at=clock.now())
        await session.commit()
        record_id = record.id
    outcome = await agreement_copy.deliver_copy(database, engine.notifier, record_id,
                                                clock=clock, default_brand=engine.settings.brand)
    if outcome == "sent":
        print(f"The copy of plan {args.plan_id}'s agreement was sent.")
        return 0
    if outcome == "retrying":
        print(f"The copy of plan {args.plan_id}'s agreement: the provider refused it; the "
              "worker tries again.")
    else:
        print(f"The copy of plan {args.plan_id}'s agreement was not sent: see "
              "`paybot emails list`.")
    return 1


async def _emails_resend(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from bot import appkeys
    from bot.outreach import email_outbox
    from bot.security import mask_email

    database, clock = app[appkeys.DATABASE], app[appkeys.CLOCK]
    async with database.writer(), database.session() as session:
        row = await email_outbox.requeue(session, args.email_id, at=clock.now())
        kind, to = row.kind, mask_email(row.to_address)
        await session.commit()
    report = await email_outbox.deliver(database, engine.notifier, [args.email_id], clock=clock,
                                        seal=email_outbox.Seal(engine.settings.secret_key))
    if report.sent:
        print(f"Email {args.email_id} ({kind}) sent to {to}.")
        return 0
    if report.retrying:
        print(f"Email {args.email_id} ({kind}): the provider refused it; the worker tries again.")
    else:
        print(f"Email {args.email_id} ({kind}) not sent to {to}: see `paybot emails list`.")
    return 1


def _add_plans_parser(sub) -> None:  # type: ignore[no-untyped-def]
    plans = sub.add_parser("plans", help="make, send, list, withdraw and cancel plan offers")
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
    common(settle)
    how = settle.add_mutually_exclusive_group(required=True)
    how.add_argument("--amount", metavar="DOLLARS", help="the settlement amount")
    how.add_argument("--percent-off", metavar="PERCENT", help="the share off the balance")

    listing = plans_sub.add_parser("list", help="an account's offers and plans")
    listing.add_argument("account_id")
    _at_option(listing)

    cancel = plans_sub.add_parser("cancel", help="cancel a plan: nothing more is debited, the "
                                                 "customer is emailed")
    cancel.add_argument("plan_id", type=int)
    cancel.add_argument("--reason", help="kept with the plan")
    cancel.add_argument("--by", default="cli", help="who cancels, e.g. agent:jsmith")
    _at_option(cancel)

    withdraw = plans_sub.add_parser("withdraw", help="withdraw an open offer (its links stop)")
    withdraw.add_argument("offer_id", type=int)
    withdraw.add_argument("--by", default="cli", help="who withdraws it")
    _at_option(withdraw)


def _at_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--at", metavar="DATETIME",
                         help="act as if it were this moment, e.g. 2026-11-25T10:00-05:00 "
                              "(rehearsal, tests)")


class _PlansInputError(Exception):
    pass


def _plans(settings: Settings, args: argparse.Namespace) -> int:
    from bot.clock import FrozenClock, SystemClock

    name = f"paybot plans {args.plans_command}"
    logging.getLogger().setLevel(logging.WARNING)
    clock = SystemClock()
    if args.at is not None:
        from datetime import datetime

        try:
            at = datetime.fromisoformat(args.at)
        except ValueError:
            at = None
        if at is None or at.tzinfo is None:
            print(f"{name}: --at takes a date and time with its UTC offset, e.g. "
                  "2026-11-25T10:00-05:00", file=sys.stderr)
            return 2
        clock = FrozenClock(at)
    command = {
        "create": _plans_offer, "settle": _plans_offer, "list": _plans_list,
        "cancel": _plans_cancel, "withdraw": _plans_withdraw,
    }[args.plans_command]

    async def body(engine, app):  # type: ignore[no-untyped-def]
        return await command(engine, app, args)

    try:
        return asyncio.run(_with_engine(settings, body, clock=clock))
    except _PlansInputError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2


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
            raise _PlansInputError(f"{option}: {value!r} is not an amount in dollars") from exc

    def day(option: str, value: str | None) -> date | None:
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise _PlansInputError(f"{option}: {value!r} is not a date (YYYY-MM-DD)") from exc

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
            raise _PlansInputError(f"--percent-off: {exc.reason}") from exc
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


async def _plans_account(session, account_ref: str):  # type: ignore[no-untyped-def]
    from bot.ledger import queries as ledger

    account = await ledger.account_by_ref(session, account_ref[:64])
    if account is None:
        raise _PlansInputError(f"{account_ref}: no account with that account_id")
    return account


async def _plans_offer(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from bot import appkeys
    from bot.plans.offers import InvalidOffer, account_zone, create_offer, describe_offer

    request = _offer_request(args)
    async with app[appkeys.DATABASE].session() as session:
        account = await _plans_account(session, args.account_id)
        try:
            offer = await create_offer(session, account, request, flow=engine.settings.flow,
                                       at=app[appkeys.CLOCK].now())
        except InvalidOffer as exc:
            raise _PlansInputError(str(exc)) from exc
        lines = describe_offer(
            offer, account_zone(account), now=app[appkeys.CLOCK].now(),
            to=f"{account.first_name} {account.last_name}, {account.account_ref}",
        )
    print("\n".join(lines))
    print(f"Queued to send by {args.send_via}: the worker sends it within quiet hours."
          if args.send_via else "Not sent (--send-via sms, email or both sends an offer).")
    return 0


async def _plans_list(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from bot import appkeys
    from bot.ledger.models import Plan
    from bot.money import format_cents
    from bot.payments.service import STATUS_LABELS
    from bot.plans.offers import account_zone, describe_offer, offers_for
    from bot.plans.signing import plan_installments
    from bot.text.rendering import format_day

    async with app[appkeys.DATABASE].session() as session:
        account = await _plans_account(session, args.account_id)
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


async def _plans_cancel(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from bot import appkeys
    from bot.api.routes import notify_cancellation
    from bot.money import format_cents
    from bot.plans.signing import PlanError, cancel_plan

    async with app[appkeys.DATABASE].session() as session:
        try:
            result = await cancel_plan(session, args.plan_id, actor=args.by, reason=args.reason,
                                       at=app[appkeys.CLOCK].now())
        except PlanError as exc:
            raise _PlansInputError(f"plan {args.plan_id}: {exc}") from exc
        brand = await engine.brand_for(session, result.account)
    await notify_cancellation(engine, result, brand)
    told = " The customer was emailed." if result.account.email else ""
    print(f"Plan {args.plan_id} canceled: {len(result.canceled)} installment(s) of "
          f"{format_cents(result.canceled_total)} will not be debited.{told}")
    return 0


async def _plans_withdraw(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from bot import appkeys
    from bot.plans.offers import withdraw_offer
    from bot.plans.signing import PlanError

    async with app[appkeys.DATABASE].session() as session:
        try:
            await withdraw_offer(session, args.offer_id, actor=args.by,
                                 at=app[appkeys.CLOCK].now())
        except PlanError as exc:
            raise _PlansInputError(f"offer {args.offer_id}: {exc}") from exc
    print(f"Offer {args.offer_id} withdrawn: it can no longer be signed and its links stop "
          "working.")
    return 0


if __name__ == "__main__":
    main()
