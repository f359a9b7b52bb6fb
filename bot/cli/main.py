"""The `paybot` command: the parser assembled from the command groups' modules, and the dispatch
every command goes through (settings, the production refusal, the demo beside it, logging)."""

from __future__ import annotations

import argparse
import logging
import sys

from bot import logs
from bot.cli import (
    accounts,
    campaigns,
    chat,
    creditors,
    demo,
    emails,
    migrate,
    outreach,
    payments,
    plans,
    serve,
    staff,
)
from bot.cli.common import load_settings, quiet_logging
from bot.config.settings import ConfigError, Settings

# Each adds its commands, with their handlers; `paybot --help` lists them in this order.
REGISTER = (
    demo.register, serve.register, chat.register, accounts.register, campaigns.register,
    plans.register, creditors.register, serve.register_check_config, emails.register,
    payments.register, staff.register, migrate.register, outreach.register,
)


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(prog="paybot", description="Pay what you owe by text.")
    sub = command.add_subparsers(dest="command", required=True)
    for register in REGISTER:
        register(sub)
    return command


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = load_settings()
    logs.configure(settings)  # structured lines, ours and the libraries' (bot/logs.py)
    refused = _refused(settings, args) if args.guarded else None
    if refused:
        print(f"paybot {args.command}: {refused}", file=sys.stderr)
        sys.exit(2)
    if args.beside_demo:
        settings = demo.beside_running_demo(settings)
    if args.quiet:
        quiet_logging()
    try:
        code = args.handler(settings, args)
    except KeyboardInterrupt:
        code = 130
    except ConfigError as exc:  # e.g. providers refused: never a traceback for a setting
        print(f"paybot {args.command}: configuration error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code or 0)


def _refused(settings: Settings, args: argparse.Namespace) -> str | None:
    """In production nothing runs on a fallback: every command refuses while a secret or a
    provider credential is missing (a sandbox there would mark payments Paid and send nothing).
    Outside production the long-running ones say out loud what is open."""
    from bot.config.check import review

    found = review(settings)
    if settings.production:
        if args.never_in_production:
            return args.never_in_production
        return found.refusal() if found.problems else None
    if args.warns:
        for warning in found.warnings():
            logging.warning("not production: %s", warning)
    return None


if __name__ == "__main__":
    main()
