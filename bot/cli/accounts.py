"""`paybot import-accounts FILE`: upsert accounts from a CSV file; bad rows are reported by line
and the good ones kept (bot/accounts/loading.py reads the file)."""

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
        for line, reason in report.errors:
            print(f"{args.file}:{line}: {reason}", file=sys.stderr)
        print(report.summary)
        return 1 if report.errors else 0

    return asyncio.run(run())
