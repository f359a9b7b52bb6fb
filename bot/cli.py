"""The `paybot` command: demo, serve, worker, chat, import-accounts, send-links."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from aiohttp import web

from bot.config import ConfigError, Settings


def load_settings() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except ConfigError as exc:
        sys.exit(f"paybot: configuration error: {exc}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="paybot", description="Pay what you owe by text.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="seed demo accounts, start localstripe and the server")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--once", action="store_true", help="show the walkthrough, then exit")

    serve = sub.add_parser("serve", help="run the web server (webhooks, API, links)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)

    worker = sub.add_parser("worker", help="charge scheduled payments when they are due")
    worker.add_argument("--once", action="store_true",
                        help="one pass over what is due now, then exit (cron, tests)")
    worker.add_argument("--rate", type=float, metavar="N",
                        help="at most N processor requests per second (default 20; shared by "
                             "every worker when REDIS_URL is set)")
    worker.add_argument("--batch", type=int, metavar="N", help="rows claimed at a time (20)")
    worker.add_argument("--concurrency", type=int, metavar="N",
                        help="charges in flight (default: 8, or 0.3 s worth of --rate)")
    worker.add_argument("--interval", type=float, metavar="SECONDS",
                        help="wait between passes when not --once (30)")
    worker.add_argument("--retry-declined-after", type=int, metavar="DAYS",
                        dest="retry_declined_after_days",
                        help="retry a declined payment DAYS later (default: never)")
    worker.add_argument("--max-retries", type=int, metavar="N", dest="max_decline_retries",
                        help="retries of one declined payment at most (1)")
    worker.add_argument("--at", metavar="DATETIME",
                        help="with --once: act as if it were this moment, e.g. "
                             "2026-12-15T10:00-05:00 (demo, rehearsal)")

    chat = sub.add_parser("chat", help="a conversation in the terminal, as a phone number")
    chat.add_argument("--phone", required=True, help="the customer's number, e.g. +15555550101")

    imp = sub.add_parser("import-accounts", help="upsert accounts from a CSV file")
    imp.add_argument("file", type=Path)

    links = sub.add_parser("send-links",
                           help="send each selected account its personalized link (SMS, email)")
    links.add_argument("--account", action="append", dest="accounts", help="an account_id (repeat)")
    links.add_argument("--creditor", help="only this creditor's accounts")
    links.add_argument("--via", choices=("sms", "email", "both"), default="sms",
                       help="the channel: a text, an email or both, each with its own link "
                            "(default: sms)")

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = load_settings()
    handler = {
        "demo": _demo, "serve": _serve, "worker": _worker, "chat": _chat,
        "import-accounts": _import, "send-links": _send_links,
    }[args.command]
    try:
        code = handler(settings, args)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code or 0)


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    logging.getLogger().setLevel(logging.WARNING)
    asyncio.run(run_demo(settings, host=args.host, port=args.port, once=args.once,
                         interactive=sys.stdin.isatty() and not args.once))
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import create_app

    if settings.secret_key == Settings.secret_key:
        logging.warning("SECRET_KEY is not set: using a development key (never in production)")
    web.run_app(create_app(settings), host=args.host, port=args.port, access_log=None)
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from bot.worker import WorkerConfig, run_worker

    options = ("rate", "batch", "concurrency", "interval", "retry_declined_after_days",
               "max_decline_retries")
    try:
        config = WorkerConfig(**{name: getattr(args, name) for name in options
                                 if getattr(args, name) is not None})
    except ValueError as exc:
        print(f"paybot worker: {exc}", file=sys.stderr)
        return 2
    clock = None
    if args.at is not None:
        from datetime import datetime

        from bot.clock import FrozenClock

        try:
            at = datetime.fromisoformat(args.at)
        except ValueError:
            at = None
        if at is None or at.tzinfo is None or not args.once:
            print("paybot worker: --at takes a date and time with its UTC offset, e.g. "
                  "2026-12-15T10:00-05:00, and goes with --once", file=sys.stderr)
            return 2
        clock = FrozenClock(at)
    return asyncio.run(run_worker(settings, config, once=args.once, clock=clock))


async def _with_engine(settings: Settings, body):  # type: ignore[no-untyped-def]
    """Open the same resources the web app opens, for a command that runs without HTTP."""
    from bot import appkeys
    from bot.app import create_app

    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        return await body(app[appkeys.ENGINE], app)
    finally:
        await runner.cleanup()


def _chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.demo import chat_loop
    from bot.phones import InvalidPhone, normalize_phone

    try:
        phone = normalize_phone(args.phone)
    except InvalidPhone as exc:
        print(f"paybot chat: {exc}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(logging.WARNING)
    print(f"Chatting as {phone}. Ctrl-D to stop.")
    asyncio.run(_with_engine(settings, lambda engine, _app: chat_loop(engine, phone)))
    return 0


def _import(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bot.accounts import ImportFileError, import_csv
    from bot.clock import SystemClock
    from bot.db import Database

    logging.getLogger("alembic").setLevel(logging.WARNING)
    name = "paybot import-accounts"
    if not args.file.is_file():
        print(f"{name}: no such file: {args.file}", file=sys.stderr)
        return 2
    if settings.secret_key == Settings.secret_key:
        print(f"{name}: warning: SECRET_KEY is not set; SSNs are hashed with the development key "
              "and will not match once a real key is set", file=sys.stderr)

    async def run() -> int:
        database = Database(settings.database_url)
        try:
            await database.migrate()
            with tqdm(unit=" lines", desc="importing", file=sys.stderr, dynamic_ncols=True,
                      disable=not sys.stderr.isatty()) as bar:
                report = await import_csv(
                    database.session, args.file, secret_key=settings.secret_key,
                    clock=SystemClock(), progress=bar.update,
                    on_total=lambda n: (setattr(bar, "total", n), bar.refresh()),
                )
        except ImportFileError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        except UnicodeDecodeError:  # the file changed under us after the UTF-8 check
            print(f"{name}: {args.file} is not UTF-8 text", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"{name}: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        finally:
            await database.close()
        for line, reason in report.errors:
            print(f"{args.file}:{line}: {reason}", file=sys.stderr)
        print(report.summary)
        return 1 if report.errors else 0

    return asyncio.run(run())


def _send_links(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bot.campaigns import CampaignError, send_links
    from bot.clock import SystemClock
    from bot.db import Database
    from bot.providers import build_providers

    logging.getLogger("alembic").setLevel(logging.WARNING)
    name = "paybot send-links"

    async def run() -> int:
        database = Database(settings.database_url)
        providers = build_providers(settings)
        try:
            await database.migrate()
            with tqdm(unit=" accounts", desc="sending", file=sys.stderr, dynamic_ncols=True,
                      disable=not sys.stderr.isatty()) as bar:
                report = await send_links(
                    settings=settings, database=database, sms=providers.sms,
                    email=providers.email, clock=SystemClock(), via=args.via,
                    account_refs=args.accounts, creditor=args.creditor, progress=bar.update,
                    on_total=lambda n: (setattr(bar, "total", n), bar.refresh()),
                )
        except CampaignError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        finally:
            await providers.close()
            await database.close()
        for account_ref in report.unknown:
            print(f"{name}: {account_ref}: no account with that account_id", file=sys.stderr)
        for channel, account_ref, reason in report.failed:
            where = account_ref if report.via == ("sms",) else f"{account_ref}: {channel}"
            print(f"{name}: {where}: {reason}", file=sys.stderr)
        print(report.summary)
        return 1 if report.failed or report.unknown else 0

    return asyncio.run(run())


if __name__ == "__main__":
    main()
