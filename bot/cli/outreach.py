"""`paybot outreach`: proactive messages (offers, reminders, expiry and cancellation notices) that
need a look, given up (``failed``) or cut off mid-send (``unknown``), and sending one again under
the same rules as the worker: opt-outs and quiet hours hold (bot/outreach/needs_a_look.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bot.cli.common import account_named, add_command, moment, run_on_engine
from bot.config.settings import Settings


def register(sub: Any) -> None:
    outreach = add_command(sub, "outreach", _outreach, beside_demo=True, quiet=True,
                           help="proactive messages: those given up or cut off mid-send, and "
                                "sending one again")
    outreach_sub = outreach.add_subparsers(dest="outreach_command", required=True)
    listing = outreach_sub.add_parser("list", help="messages failed or unknown (newest first)")
    listing.set_defaults(run=_list)
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--failed", action="store_const", dest="statuses", const=("failed",),
                       help="only those every provider refused, all tries used")
    which.add_argument("--unknown", action="store_const", dest="statuses", const=("unknown",),
                       help="only those cut off mid-send (they may have reached the customer)")
    listing.add_argument("--account", help="only this account_id")
    listing.add_argument("--limit", type=int, default=50)
    resend = outreach_sub.add_parser("resend", help="queue one again, due now, and send it "
                                                    "(opt-outs and quiet hours still hold)")
    resend.set_defaults(run=_resend)
    resend.add_argument("outreach_id", type=int)
    resend.add_argument("--at", metavar="DATETIME",
                        help="act as if it were this moment, e.g. 2026-12-15T10:00-05:00 "
                             "(rehearsal)")


def _outreach(settings: Settings, args: argparse.Namespace) -> int:
    from bot.outreach.needs_a_look import CannotResend

    clock = None
    if getattr(args, "at", None) is not None:
        from bot.clock import FrozenClock

        at = moment(args.at)
        if at is None:
            print("paybot outreach resend: --at takes a date and time with its UTC offset, e.g. "
                  "2026-12-15T10:00-05:00", file=sys.stderr)
            return 2
        clock = FrozenClock(at)
    return run_on_engine(settings, args, f"paybot outreach {args.outreach_command}",
                         clock=clock, refused=(CannotResend,))


def _line(row, account_ref: str | None) -> str:  # type: ignore[no-untyped-def]
    detail = row.detail or {}
    tries = int(detail.get("attempts", 0))
    outcomes = detail.get("outcomes") or {}
    said = ", ".join(f"{channel} {outcome}" for channel, outcome in outcomes.items())
    if row.status == "unknown":
        said = "cut off mid-send: it may have reached the customer"
    return (f"{row.id:>5}  {row.created_at:%Y-%m-%d %H:%M} UTC  {row.kind:<10} "
            f"{account_ref or '-':<12} {row.channel:<5} {row.status}"
            f"{f', {tries} tr' + ('y' if tries == 1 else 'ies') if tries else ''}"
            f"{f'  ({said})' if said else ''}")


async def _list(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from bot import appkeys
    from bot.ledger.models import Account
    from bot.outreach import needs_a_look

    statuses = args.statuses or needs_a_look.NEEDS_A_LOOK
    async with app[appkeys.DATABASE].session() as session:
        account_id = None
        if args.account:
            account_id = (await account_named(session, args.account)).id
        rows = await needs_a_look.recent(session, statuses=statuses, account_id=account_id,
                                         limit=args.limit)
        refs = dict((await session.execute(
            select(Account.id, Account.account_ref)
            .where(Account.id.in_({row.account_id for row in rows}))
        )).all())
    if not rows:
        print(f"No outreach {' or '.join(statuses)}.")
    for row in rows:
        print(_line(row, refs.get(row.account_id)))
    return 0


async def _resend(engine, app, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from bot import appkeys
    from bot.ledger.models import Outreach
    from bot.outreach import needs_a_look
    from bot.outreach.queue import deliver_due

    database, clock = app[appkeys.DATABASE], app[appkeys.CLOCK]
    providers = app[appkeys.PROVIDERS]
    async with database.writer(), database.session() as session:
        row = await needs_a_look.requeue(session, args.outreach_id, at=clock.now(),
                                         actor="cli:outreach resend")
        kind = row.kind
        await session.commit()
    await deliver_due(database=database, settings=engine.settings, clock=clock,
                      sms=providers.sms, email=providers.email, actor="cli:outreach resend",
                      only=[args.outreach_id])
    async with database.session() as session:
        row = await session.get(Outreach, args.outreach_id)
        assert row is not None
        status, detail, not_before = row.status, dict(row.detail or {}), row.not_before
    what = f"Outreach {args.outreach_id} ({kind})"
    if status == "sent":
        channels = [c for c, outcome in (detail.get("outcomes") or {}).items()
                    if outcome == "sent"]
        print(f"{what} sent by {' and '.join(channels)}.")
        return 0
    if status == "skipped":
        print(f"{what} not sent: {detail.get('reason', 'skipped')}.")
        return 1
    if status == "held" and detail.get("held"):
        print(f"{what} held until {not_before:%Y-%m-%d %H:%M} UTC ({detail['held']}); the "
              "worker sends it then.")
        return 0
    if status == "held":
        print(f"{what}: the provider refused it; the worker tries again at "
              f"{not_before:%Y-%m-%d %H:%M} UTC.")
        return 1
    print(f"{what} not sent ({status}): see `paybot outreach list`.")
    return 1
