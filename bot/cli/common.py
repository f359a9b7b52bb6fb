"""What every `paybot` command shares: how a command is declared (its parser, handler and how it
is run), the settings, the database and the app's engine opened for a command, a progress bar,
an `--at` moment and an account named on the command line.

Heavy imports (the app, the ledger) wait until a command needs them: `paybot --help` and
`check-config` stay quick.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.config.settings import ConfigError, Settings

if TYPE_CHECKING:
    from bot.clock import Clock
    from bot.ledger.db import Database

Handler = Callable[[Settings, argparse.Namespace], int]


class InputError(Exception):
    """What the operator typed cannot be acted on: said on stderr, exit 2."""


def add_command(
    sub: Any, name: str, handler: Handler, *, help: str,
    beside_demo: bool = False, quiet: bool = False, guarded: bool = True,
    never_in_production: str | None = None, warns: bool = False,
) -> argparse.ArgumentParser:
    """Add command `name` to the subparsers `sub`, run by `handler(settings, args)`.

    beside_demo: run beside a running `paybot demo`, with its processor and address (demo.py).
    quiet: logging at WARNING and above only, the command's own output is what counts.
    guarded: refused in production while a setting is missing (check-config reports instead).
    never_in_production: the refusal when production has every setting too.
    warns: outside production, say at start what runs open or on a sandbox."""
    parser = sub.add_parser(name, help=help)
    parser.set_defaults(handler=handler, beside_demo=beside_demo, quiet=quiet, guarded=guarded,
                        never_in_production=never_in_production, warns=warns)
    return parser


def load_settings() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"paybot: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


def quiet_logging() -> None:
    """Only warnings and errors: the command's own output is what the operator reads."""
    logging.getLogger().setLevel(logging.WARNING)


def moment(text: str) -> datetime | None:
    """An `--at DATETIME` value, or None when it is not a date and time with its UTC offset."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


async def with_engine(settings: Settings, body, clock=None):  # type: ignore[no-untyped-def]
    """Open the same resources the web app opens, for a command that runs without HTTP:
    `await body(engine, app)`."""
    from aiohttp import web

    from bot import appkeys
    from bot.app import create_app

    app = create_app(settings, clock=clock)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        return await body(app[appkeys.ENGINE], app)
    finally:
        await runner.cleanup()


def run_on_engine(settings: Settings, args: argparse.Namespace, name: str, *,
                  clock: Clock | None = None, refused: tuple[type[Exception], ...] = ()) -> int:
    """Run the subcommand's `args.run(engine, app, args)` on the app's resources; what it
    refuses (InputError and `refused`) is said on stderr after `name`, exit 2."""

    async def body(engine, app):  # type: ignore[no-untyped-def]
        return await args.run(engine, app, args)

    try:
        return asyncio.run(with_engine(settings, body, clock=clock))
    except (InputError, *refused) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2


def migrated_database(settings: Settings) -> AbstractAsyncContextManager[Database]:
    """The ledger, for a command that needs the database and nothing of the app: opened here
    (a data directory that cannot be made fails now, as itself), migrated on entering the
    `async with`, closed on leaving it."""
    from bot.ledger.db import Database

    database = Database(settings.database_url)

    @asynccontextmanager
    async def migrated() -> AsyncIterator[Database]:
        try:
            await database.migrate()
            yield database
        finally:
            await database.close()

    return migrated()


@contextmanager
def progress(unit: str, desc: str) -> Iterator[tuple[Callable[[int], Any], Callable[[int], Any]]]:
    """A progress bar on stderr when it is a terminal: (advance by n, set the total)."""
    from tqdm import tqdm

    with tqdm(unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True,
              disable=not sys.stderr.isatty()) as bar:
        yield bar.update, lambda n: (setattr(bar, "total", n), bar.refresh())


async def account_named(session, account_ref: str):  # type: ignore[no-untyped-def]
    """The account with this account_id; InputError when there is none."""
    from bot.ledger import queries as ledger

    account = await ledger.account_by_ref(session, account_ref[:64])
    if account is None:
        raise InputError(f"{account_ref}: no account with that account_id")
    return account
