"""`paybot import-accounts FILE`: upsert accounts from a CSV file; bad rows are reported by line
and the good ones kept (bot/accounts/loading.py reads the file). `paybot accounts wrong-numbers`:
the numbers reported as not the account holder's (bot/inbox/wrong_numbers.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from bot.cli.common import add_command, migrated_database, progress
from bot.config.settings import Settings

NAME = "paybot import-accounts"


def register(sub: Any) -> None:
    imp = add_command(sub, "import-accounts", _import, help="upsert accounts from a CSV file")
    imp.add_argument("file", type=Path)
    accounts = sub.add_parser("accounts", help="accounts: reports")
    actions = accounts.add_subparsers(dest="action", required=True)
    add_command(actions, "wrong-numbers", _wrong_numbers, quiet=True,
                help="numbers reported as not the account holder's (never texted about it)")


def _wrong_numbers(settings: Settings, args: argparse.Namespace) -> int:
    """`paybot accounts wrong-numbers`: phone (last 4 only), account, who reported, when."""
    from bot.inbox.wrong_numbers import wrong_numbers

    async def run() -> int:
        async with migrated_database(settings) as database, database.session() as session:
            reports = await wrong_numbers(session)
        if not reports:
            print("No wrong numbers reported.")
            return 0
        print(f"{'phone':<12}  {'account':<20}  {'reported by':<24}  reported at (UTC)")
        for r in reports:
            phone = "***-***-" + r.phone[-4:]
            account = r.account_ref or f"#{r.account_id}"
            print(f"{phone:<12}  {account:<20}  {r.reported_by:<24}  "
                  f"{r.reported_at:%Y-%m-%d %H:%M}")
        return 0

    return asyncio.run(run())


def _import(settings: Settings, args: argparse.Namespace) -> int:
    from bot.accounts.loading import ImportFileError, import_csv
    from bot.clock import SystemClock

    if not args.file.is_file():
        print(f"{NAME}: no such file: {args.file}", file=sys.stderr)
        return 2
    if settings.is_default("secret_key"):
        print(f"{NAME}: warning: SECRET_KEY is not set; SSNs are hashed with the development key "
              "and will not match once a real key is set", file=sys.stderr)

    async def run() -> int:
        ledger = migrated_database(settings)
        try:
            async with ledger as database:
                with progress(" lines", "importing") as (advance, total):
                    report = await import_csv(
                        database.session, args.file, secret_key=settings.secret_key,
                        clock=SystemClock(), progress=advance, on_total=total,
                    )
        except ImportFileError as exc:
            print(f"{NAME}: {exc}", file=sys.stderr)
            return 2
        except UnicodeDecodeError:  # the file changed under us after the UTF-8 check
            print(f"{NAME}: {args.file} is not UTF-8 text", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"{NAME}: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        for line, reason in sorted(report.errors + report.refused):
            print(f"{args.file}:{line}: {reason}", file=sys.stderr)
        print(report.summary)
        return 1 if report.errors else 0

    return asyncio.run(run())
