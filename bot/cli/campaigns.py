"""`paybot send-links`: send each selected account its personalized link by text, email or both
(bot/outreach/campaigns.py chooses and sends)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from bot.cli.common import add_command, migrated_database, progress
from bot.config.settings import Settings

NAME = "paybot send-links"


def register(sub: Any) -> None:
    links = add_command(sub, "send-links", _send_links, beside_demo=True,
                        help="send each selected account its personalized link (SMS, email)")
    links.add_argument("--account", action="append", dest="accounts", help="an account_id (repeat)")
    links.add_argument("--creditor", help="only this creditor's accounts")
    links.add_argument("--via", choices=("sms", "email", "both"), default="sms",
                       help="the channel: a text, an email or both, each with its own link "
                            "(default: sms)")


def _send_links(settings: Settings, args: argparse.Namespace) -> int:
    from bot.clock import SystemClock
    from bot.outreach.campaigns import CampaignError, send_links
    from bot.providers import build_providers

    async def run() -> int:
        ledger = migrated_database(settings)
        providers = build_providers(settings)
        try:
            async with ledger as database:
                with progress(" accounts", "sending") as (advance, total):
                    report = await send_links(
                        settings=settings, database=database, sms=providers.sms,
                        email=providers.email, clock=SystemClock(), via=args.via,
                        account_refs=args.accounts, creditor=args.creditor, progress=advance,
                        on_total=total,
                    )
        except CampaignError as exc:
            print(f"{NAME}: {exc}", file=sys.stderr)
            return 2
        finally:
            await providers.close()
        for account_ref in report.unknown:
            print(f"{NAME}: {account_ref}: no account with that account_id", file=sys.stderr)
        for channel, account_ref, reason in report.failed:
            where = account_ref if report.via == ("sms",) else f"{account_ref}: {channel}"
            print(f"{NAME}: {where}: {reason}", file=sys.stderr)
        print(report.summary)
        return 1 if report.failed or report.unknown else 0

    return asyncio.run(run())
