"""`paybot creditors list|show|set`: the creditors as customers meet them (name, Reg F
disclosure) and the flow settings their accounts run under, changed without SQL
(bot/accounts/creditors.py checks and audits every change)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from bot.cli.common import add_command, migrated_database
from bot.config.settings import Settings

NAME = "paybot creditors"


def register(sub: Any) -> None:
    creditors = sub.add_parser("creditors", help="creditors: name, disclosure, flow settings")
    actions = creditors.add_subparsers(dest="action", required=True)
    add_command(actions, "list", _list, help="every creditor, with its accounts", quiet=True)
    show = add_command(actions, "show", _show, help="one creditor and its flow settings",
                       quiet=True)
    show.add_argument("code")
    change = add_command(actions, "set", _set, quiet=True,
                         help="change KEY=VALUE (name, brand, support_contact, disclosure or a "
                              "flow setting); KEY= goes back to the default")
    change.add_argument("code")
    change.add_argument("changes", nargs="+", metavar="KEY=VALUE")
    change.add_argument("--by", default="cli", help="who made the change, for the audit trail")


def _list(settings: Settings, args: argparse.Namespace) -> int:
    from bot.accounts.creditors import list_creditors

    async def run() -> int:
        async with migrated_database(settings) as database, database.session() as session:
            views = await list_creditors(session, settings.flow)
        if not views:
            print("No creditors yet: they come with the accounts (paybot import-accounts).")
            return 0
        width = max(len(v.creditor.code) for v in views)
        for view in views:
            name = view.creditor.name or "(no name)"
            disclosure = "" if view.creditor.disclosure else "  no disclosure"
            print(f"{view.creditor.code:<{width}}  {name}  {view.accounts} account(s){disclosure}")
        return 0

    return asyncio.run(run())


def _show(settings: Settings, args: argparse.Namespace) -> int:
    from bot.accounts.creditors import UnknownCreditor, creditor_view

    async def run() -> int:
        async with migrated_database(settings) as database, database.session() as session:
            try:
                view = await creditor_view(session, args.code, settings.flow)
            except UnknownCreditor:
                print(f"{NAME}: no creditor {args.code!r}", file=sys.stderr)
                return 2
        creditor = view.creditor
        print(f"{creditor.code}: {creditor.name or '(no name)'}, {view.accounts} account(s)")
        print(f"brand: {creditor.brand or '(its name)'}")
        print(f"support contact: {creditor.support_contact or '(the default)'}")
        print(f"disclosure: {creditor.disclosure or '(none)'}")
        print("flow settings (* its own; the others are the defaults):")
        for key, value in {**view.settings.to_mapping(), **(creditor.settings or {})}.items():
            print(f"{'*' if view.own(key) else ' '} {key} = {json.dumps(value)}")
        return 0

    return asyncio.run(run())


def _set(settings: Settings, args: argparse.Namespace) -> int:
    from bot.accounts.creditors import UnknownCreditor, change_creditor
    from bot.clock import SystemClock
    from bot.config.flow import InvalidCreditorSettings

    changes: dict[str, str] = {}
    for pair in args.changes:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            print(f"{NAME}: {pair!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        changes[key.strip()] = value

    async def run() -> int:
        async with migrated_database(settings) as database, database.session() as session:
            try:
                await change_creditor(session, args.code, changes, actor=f"cli:{args.by}",
                                      at=SystemClock().now())
            except UnknownCreditor:
                print(f"{NAME}: no creditor {args.code!r}", file=sys.stderr)
                return 2
            except InvalidCreditorSettings as exc:
                reasons = "; ".join(f"{k}: {v}" for k, v in exc.problems.items())
                print(f"{NAME}: {args.code}: nothing changed: {reasons}", file=sys.stderr)
                return 2
            await session.commit()
        print(f"Creditor {args.code} changed: {', '.join(changes)}.")
        return 0

    return asyncio.run(run())
