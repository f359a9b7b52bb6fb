"""The app as `paybot serve` runs it, plus what the portal page benchmark needs to measure it.

    DATABASE_URL=... [REDIS_URL=...] PUBLIC_BASE_URL=... SECRET_KEY=... PAYBOT_DATA_DIR=... \\
        .venv/bin/python -m bench.portal_server --port 8123 [--at 2026-11-25T15:00:00+00:00]
        [--no-freeze-gc]

Settings come from the environment as for `paybot serve`; providers are the sandbox ones (no
network). A timing middleware records the server's own time and body size per request carrying
an `X-Bench-Page` label; `GET /__bench/timings?label=L&reset=1` answers them as JSON
({label: {"ms": [...], "bytes": [...]}}) and forgets what it answered when asked to. Started by
bench/portal_pages.py in a process of its own, so the load generator's work and its garbage
collections never land inside the measured time. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from datetime import datetime

from aiohttp import web

from bot.app import create_app
from bot.clock import FrozenClock
from bot.config.settings import Settings
from bot.providers import Providers
from bot.providers.email import SandboxEmail
from bot.providers.sandbox_gateway import SandboxGateway
from bot.providers.sms import SandboxSms
from bot.serving import freeze_startup_objects

TIMINGS: dict[str, list[float]] = defaultdict(list)
SIZES: dict[str, list[int]] = defaultdict(list)


@web.middleware
async def timing(request: web.Request, handler):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    response = await handler(request)
    label = request.headers.get("X-Bench-Page")
    if label:
        TIMINGS[label].append((time.perf_counter() - started) * 1000)
        body = getattr(response, "body", None)
        SIZES[label].append(len(body) if isinstance(body, bytes | bytearray) else 0)
    return response


async def timings(request: web.Request) -> web.Response:
    wanted = request.query.get("label")
    labels = [wanted] if wanted is not None else list(TIMINGS)
    answer = {label: {"ms": list(TIMINGS[label]), "bytes": list(SIZES[label])} for label in labels}
    if request.query.get("reset") == "1":
        for label in labels:
            TIMINGS[label].clear()
            SIZES[label].clear()
    return web.json_response(answer)


def build_app(settings: Settings, at: datetime | None, freeze_gc: bool) -> web.Application:
    providers = Providers(sms=SandboxSms(), email=SandboxEmail(), payments=SandboxGateway())
    app = create_app(settings, providers, FrozenClock(at) if at else None)
    app.middlewares.append(timing)
    app.router.add_get("/__bench/timings", timings)
    if freeze_gc:
        app.on_startup.append(freeze_startup_objects)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--at", type=datetime.fromisoformat, help="a frozen clock (ISO, aware)")
    parser.add_argument("--no-freeze-gc", dest="freeze_gc", action="store_false")
    args = parser.parse_args()
    app = build_app(Settings.from_env(os.environ), args.at, args.freeze_gc)
    # run_app turns SIGTERM and SIGINT into a graceful shutdown (cleanup_ctx closes the pools).
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
