"""`paybot staff add|list|disable|reset`: console accounts without SQL (bot/staff/accounts.py
checks and audits every change). A new account's password is read from standard input when it
is piped in; otherwise a one-time setup link is printed, where the person chooses it (and a
supervisor enrols the second factor)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from bot.cli.common import add_command, migrated_database
from bot.config.settings import Settings

NAME = "paybot staff"


def register(sub: Any) -> None:
    staff = sub.add_parser("staff", help="console accounts: agents and supervisors")
    actions = staff.add_subparsers(dest="action", required=True)
    add = add_command(actions, "add", _add, quiet=True,
                      help="a new agent or supervisor (password from stdin, else a setup link)")
    add.add_argument("email")
    add.add_argument("--name", required=True, help="shown to colleagues and in the audit trail")
    add.add_argument("--role", choices=("agent", "supervisor"), default="agent")
    add_command(actions, "list", _list, quiet=True, help="every staff account")
    disable = add_command(actions, "disable", _disable, quiet=True,
                          help="no more sign-in; open sessions end")
    disable.add_argument("email")
    reset = add_command(actions, "reset", _reset, quiet=True,
                        help="a new one-time setup link (password and second factor cleared)")
    reset.add_argument("email")


def _piped_password() -> str | None:
    """The password piped to the command (its first line), or None at a terminal or when
    nothing came."""
    stdin = sys.stdin
    if stdin is None or stdin.isatty():
        return None
    line = stdin.readline().rstrip("\r\n")
    return line or None


def _link(settings: Settings, token: str) -> str:
    from bot.staff.accounts import setup_path

    return settings.public_base_url + setup_path(token)


def _add(settings: Settings, args: argparse.Namespace) -> int:
    from bot.clock import SystemClock
    from bot.staff.accounts import StaffError, add
    from bot.staff.credentials import WeakPassword

    password = _piped_password()

    async def run() -> int:
        async with migrated_database(settings) as database, database.session() as session:
            try:
                added = await add(session, args.email, args.name, args.role,
                                  at=SystemClock().now(), by="cli", password=password)
            except (StaffError, WeakPassword) as exc:
                print(f"{NAME} add: {exc}", file=sys.stderr)
                return 2
            await session.commit()
        staff = added.staff
        print(f"Added {staff.role} {staff.name} <{staff.email}>.")
        if added.setup_token is not None:
            print(f"One-time setup link (valid 72 hours): {_link(settings, added.setup_token)}")
        elif staff.role == "supervisor":
            print("The second factor (an authenticator app) is enrolled at the first sign-in.")
        return 0

    return asyncio.run(run())


def _list(settings: Settings, args: argparse.Namespace) -> int:
    from bot.staff.accounts import list_staff

    async def run() -> int:
        async with migrated_database(settings) as database, database.session() as session:
            rows = await list_staff(session)
        if not rows:
            print("No staff accounts yet: paybot staff add EMAIL --name NAME --role agent")
            return 0
        for staff in rows:
            if staff.disabled_at is not None:
                state = "disabled"
            elif staff.password_hash is None:
                state = "setup pending"
            else:
                state = "active"
            factor = ", second factor" if staff.totp_secret else ""
            print(f"{staff.name}  {staff.email}  {staff.role}  {state}{factor}")
        return 0

    return asyncio.run(run())


def _disable(settings: Settings, args: argparse.Namespace) -> int:
    from bot.clock import SystemClock
    from bot.staff.accounts import StaffError, disable

    async def run() -> int:
        async with migrated_database(settings) as database, database.session() as session:
            try:
                staff = await disable(session, args.email, at=SystemClock().now(), by="cli")
            except StaffError as exc:
                print(f"{NAME} disable: {exc}", file=sys.stderr)
                return 2
            await session.commit()
        print(f"Disabled {staff.name} <{staff.email}>: signed out everywhere.")
        return 0

    return asyncio.run(run())


def _reset(settings: Settings, args: argparse.Namespace) -> int:
    from bot.clock import SystemClock
    from bot.staff.accounts import StaffError, reset

    async def run() -> int:
        async with migrated_database(settings) as database, database.session() as session:
            try:
                token = await reset(session, args.email, at=SystemClock().now(), by="cli")
            except StaffError as exc:
                print(f"{NAME} reset: {exc}", file=sys.stderr)
                return 2
            await session.commit()
        print(f"One-time setup link (valid 72 hours): {_link(settings, token)}")
        return 0

    return asyncio.run(run())
