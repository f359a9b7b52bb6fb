"""`paybot serve`, `paybot worker` and `paybot check-config`: running a deployment (the web
processes, the worker that charges what is due) and reviewing its settings first."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from bot.cli.common import add_command, moment
from bot.config.settings import ConfigError, Settings


def register(sub: Any) -> None:
    serve = add_command(sub, "serve", _serve, warns=True,
                        help="run the web server (webhooks, API, links)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="web processes sharing the port, about one per core (above 1 needs REDIS_URL)",
    )

    worker = add_command(sub, "worker", _worker, warns=True, beside_demo=True,
                         help="charge scheduled payments when they are due")
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
    worker.add_argument("--sms-rate", type=float, metavar="N", dest="sms_rate",
                        help="at most N proactive texts per second (default 1, a Twilio long "
                             "code's rate; shared through REDIS_URL like --rate)")
    worker.add_argument("--no-outreach", action="store_false", dest="outreach", default=None,
                        help="charge only: no offers, reminders or expiry notices this run")
    worker.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve this worker's /metrics on PORT (loopback, or a bearer "
                             "PAYBOT_METRICS_TOKEN, as the web's)")
    worker.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                        help="the address --metrics-port listens on (127.0.0.1; 0.0.0.0 in a "
                             "container, with PAYBOT_METRICS_TOKEN for the scraper)")
    worker.add_argument("--at", metavar="DATETIME",
                        help="with --once: act as if it were this moment, e.g. "
                             "2026-12-15T10:00-05:00 (demo, rehearsal)")


def register_check_config(sub: Any) -> None:
    add_command(sub, "check-config", _check_config, guarded=False,
                help="what is set, missing or invalid (values never shown); exit 1 when "
                     "production lacks something")


def _check_config(settings: Settings, args: argparse.Namespace) -> int:
    from bot.config.check import review

    found = review(settings)
    print(found.report())
    return 1 if found.problems else 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from bot.serving import serve

    try:
        return serve(settings, host=args.host, port=args.port, processes=args.workers)
    except ConfigError as exc:
        print(f"paybot serve: {exc}", file=sys.stderr)
        return 2


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from bot.worker.loop import WorkerConfig, run_worker

    options = ("rate", "batch", "concurrency", "interval", "retry_declined_after_days",
               "max_decline_retries", "sms_rate", "outreach")
    try:
        config = WorkerConfig(**{name: getattr(args, name) for name in options
                                 if getattr(args, name) is not None})
    except ValueError as exc:
        print(f"paybot worker: {exc}", file=sys.stderr)
        return 2
    clock = None
    if args.at is not None:
        from bot.clock import FrozenClock

        at = moment(args.at)
        if at is None or not args.once:
            print("paybot worker: --at takes a date and time with its UTC offset, e.g. "
                  "2026-12-15T10:00-05:00, and goes with --once", file=sys.stderr)
            return 2
        clock = FrozenClock(at)
    from functools import partial

    from bot.operations.scrape import MetricsPortUnavailable, serving

    beside = None
    if args.metrics_port is not None:
        if not 0 < args.metrics_port < 65536:
            print("paybot worker: --metrics-port takes a port from 1 to 65535", file=sys.stderr)
            return 2
        beside = partial(serving, settings, host=args.metrics_host, port=args.metrics_port)
    try:
        return asyncio.run(run_worker(settings, config, once=args.once, clock=clock,
                                      beside=beside))
    except MetricsPortUnavailable as exc:
        print(f"paybot worker: --metrics-port: cannot listen on {exc}", file=sys.stderr)
        return 2
