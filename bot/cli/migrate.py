"""`paybot migrate`: bring the database's schema to the revision this code expects (Alembic's
upgrade to head on DATABASE_URL), once per deployment, before the web processes and workers
start with PAYBOT_MIGRATE_ON_START=0. ``--check`` only says whether it is needed (exit 1)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bot.cli.common import add_command
from bot.config.settings import Settings


def register(sub: Any) -> None:
    migrate = add_command(
        sub, "migrate", _migrate, quiet=True, guarded=False,
        help="upgrade the database schema to this version's (idempotent); --check: exit 1 "
             "when it is not current",
    )
    migrate.add_argument("--check", action="store_true",
                         help="change nothing: say where the schema stands, exit 1 when behind")


def shown_url(database_url: str) -> str:
    """The database named without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except Exception:  # an odd URL: say no more than its scheme
        return database_url.split(":", 1)[0] + ":..."


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_run(settings, check=args.check))


async def _run(settings: Settings, *, check: bool) -> int:
    from bot.ledger.db import Database
    from bot.ledger.revisions import standing

    database = Database(settings.database_url)
    where = shown_url(settings.database_url)
    try:
        before = await standing(database)
        if not before.known:
            print(f"{where}: at {before.current.id}, which this version does not know (its "
                  f"latest is {before.head.describe()}): a later version migrated it. Deploy "
                  "that version again, or see docs/operations.md (rolling back).")
            return 1
        if before.up_to_date:
            print(f"{where}: at {before.head.describe()}, the latest; nothing to do.")
            return 0
        if check:
            print(f"{where}: at {before.current.describe()}; this version needs "
                  f"{before.head.describe()}, {_count(before.pending)} to run: paybot migrate")
            return 1
        await database.migrate()
        after = await standing(database)
    finally:
        await database.close()
    print(f"{where}: migrated from {before.current.describe()} to {after.current.describe()} "
          f"({_count(before.pending)}).")
    return 0 if after.up_to_date else 1


def _count(n: int) -> str:
    return f"{n} migration{'s' if n != 1 else ''}"
