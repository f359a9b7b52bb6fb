"""`paybot emails`: receipts and notices that need a look (given up, cut off mid-send), and
sending one again, or the copy of a plan's signed agreement (bot/outreach/email_outbox.py and
bot/plans/agreement_copy.py keep and send them)."""

from __future__ import annotations

import argparse
from typing import Any

from bot.cli.common import account_named, add_command, run_on_engine
from bot.config.settings import Settings


def register(sub: Any) -> None:
    emails = add_command(sub, "emails", _emails, beside_demo=True, quiet=True,
                         help="receipts and notices: those that need a look, and sending one "
                              "again")
    emails_sub = emails.add_subparsers(dest="emails_command", required=True)
    listing = emails_sub.add_parser("list", help="emails given up or cut off mid-send (newest "
                                                 "first); --all for every one")
    listing.set_defaults(run=_list)
    listing.add_argument("--account", help="only this account_id")
    listing.add_argument("--all", action="store_true", dest="every_status",
                         help="every status, not only failed and unknown")
    listing.add_argument("--limit", type=int, default=50)
    resend = emails_sub.add_parser("resend", help="send one email again now (e.g. a receipt the "
                                                  "customer did not get)")
    resend.set_defaults(run=_resend)
    resend.add_argument("email_id", type=int)
    resend_copy = emails_sub.add_parser("resend-copy", help="send the copy of a plan's signed "
                                                            "agreement again now")
    resend_copy.set_defaults(run=_resend_copy)
    resend_copy.add_argument("plan_id", type=int)


def _emails(settings: Settings, args: argparse.Namespace) -> int:
    from bot.outreach import email_outbox

    return run_on_engine(settings, args, f"paybot emails {args.emails_command}",
                         refused=(email_outbox.CannotResend,))


def _email_line(row, account_ref: str | None) -> str:  # type: ignore[no-untyped-def]
    from bot.security import mask_email

    return (f"{row.id:>5}  {row.created_at:%Y-%m-%d %H:%M} UTC  {row.kind:<13} "
            f"{account_ref or '-':<12} {mask_email(row.to_address)}  {row.status}"
            f"{_tries(row.attempts)}  {row.subject}")


def _tries(count: int) -> str:
    return f", {count} tr{'y' if count == 1 else 'ies'}" if count else ""


async def _list(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from bot import appkeys
    from bot.ledger.models import Account
    from bot.outreach import email_outbox
    from bot.plans import agreement_copy
    from bot.security import mask_email

    async with app[appkeys.DATABASE].session() as session:
        account_id = None
        if args.account:
            account_id = (await account_named(session, args.account)).id
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


async def _resend_copy(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
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


async def _resend(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
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
