"""`paybot serve`: the web app in one process, or in several sharing one port.

Several processes are how one machine uses more than one core: each is the same stateless app
(the ledger is in SQL; the conversation locks and the agents' feed are in Redis), and the kernel
spreads new connections over them (SO_REUSEPORT). The parent only migrates the schema once,
starts the processes and stops them all when one ends or when it is told to stop.

Stopping (SIGTERM, as systemd, Docker and Kubernetes send it; Ctrl-C): each process closes its
listening socket at once, lets the requests in flight (an SMS turn waiting on the processor)
finish for up to ``PAYBOT_SHUTDOWN_GRACE_SECONDS`` (aiohttp's ``shutdown_timeout``), cancels what
is left, closes its resources and exits 0. A turn cut off there is stored before it was answered
(the engine stores each inbound message first) and a charge it started is completed by the
worker's recovery of unconfirmed rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from multiprocessing.connection import wait
from types import FrameType
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from bot import logs, metrics
from bot.config.settings import ConfigError, Settings

log = logging.getLogger(__name__)

STOP_MARGIN_SECONDS = 10.0  # beyond the grace: closing the database, Redis, the providers


def serve(settings: Settings, *, host: str, port: int, processes: int = 1) -> int:
    if processes < 1:
        raise ConfigError("--workers must be at least 1")
    if processes == 1:
        serve_one(settings, host, port, reuse_port=False)
        return 0
    if settings.redis_url is None:
        raise ConfigError(
            "--workers above 1 needs REDIS_URL: the in-process Redis is not shared between "
            "processes, so two messages of one conversation could run at once"
        )
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("--workers above 1 needs SO_REUSEPORT (Linux, macOS, BSD)")
    return _serve_many(settings, host, port, processes)


def serve_one(settings: Settings, host: str, port: int, *, reuse_port: bool) -> None:
    from bot.app import create_app

    app = create_app(settings)
    app.on_startup.append(freeze_startup_objects)
    freeze_again_when_warm(app)
    say_when_stopping(app, settings.shutdown_grace_seconds)
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=logging.getLogger(logs.ACCESS_LOGGER) if settings.access_log else None,
        access_log_class=AccessLog,
        reuse_port=reuse_port or None,
        loop=fast_event_loop(),
        shutdown_timeout=float(settings.shutdown_grace_seconds),
    )
    log.info("stopped")


def say_when_stopping(app: web.Application, grace: int) -> None:
    """One line when the process starts to stop (the listening socket is closed by then): what
    an operator, or a test, waits on."""

    async def stopping(_: web.Application) -> None:
        log.info("stopping: no new connections; requests in flight have up to %d s", grace)

    app.on_shutdown.insert(0, stopping)


def _serve_many(settings: Settings, host: str, port: int, count: int) -> int:
    if settings.migrate_on_start:  # once, here: processes racing through Alembic would collide
        from bot.ledger.db import Database

        async def migrate() -> None:
            database = Database(settings.database_url)
            try:
                await database.migrate()
            finally:
                await database.close()

        asyncio.run(migrate())
    child_settings = settings.replace(migrate_on_start=False)
    with shared_metrics():
        return _run_children(child_settings, host, port, count)


@contextlib.contextmanager
def shared_metrics() -> Iterator[None]:
    """Each process counts into files of one fresh directory, so that a scrape of /metrics,
    answered by whichever process the kernel picks, adds up all of them (prometheus-client's
    multiprocess mode). Set before the processes start (they read it as they import
    prometheus-client); removed when they have all ended. An operator's own
    PROMETHEUS_MULTIPROC_DIR (shared with `paybot worker`, say) is used as it is, and kept."""
    if os.environ.get(metrics.MULTIPROC_DIR):
        yield
        return
    directory = tempfile.mkdtemp(prefix="paybot-metrics-")
    os.environ[metrics.MULTIPROC_DIR] = directory
    try:
        yield
    finally:
        del os.environ[metrics.MULTIPROC_DIR]
        shutil.rmtree(directory, ignore_errors=True)


def _run_children(child_settings: Settings, host: str, port: int, count: int) -> int:
    context = multiprocessing.get_context("spawn")  # nothing of the parent's state is inherited
    children = [
        context.Process(
            target=_child,
            args=(child_settings, host, port),
            name=f"paybot-web-{n + 1}",
        )
        for n in range(count)
    ]

    def stop(_signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: aiohttp finishes the requests in flight

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in children:
            child.start()
        log.info("serving on %s:%d with %d processes", host, port, count)
        ended = wait([child.sentinel for child in children])
        first = next(child for child in children if child.sentinel in ended)
        if first.exitcode:
            log.error("%s ended with code %s: stopping the others", first.name, first.exitcode)
        stop()
        for child in children:
            child.join(child_settings.shutdown_grace_seconds + STOP_MARGIN_SECONDS)
            if child.is_alive():
                child.kill()
                child.join()
            if child.pid is not None:
                metrics.mark_process_dead(child.pid)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if first.exitcode else 0


def _child(settings: Settings, host: str, port: int) -> None:
    logs.configure(settings, process=multiprocessing.current_process().name)
    # The parent's terminal Ctrl-C reaches every process of the group; the parent decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve_one(settings, host, port, reuse_port=True)


class AccessLog(AbstractAccessLogger):
    """One line per request (PAYBOT_ACCESS_LOG=1), with its fields and its request id, through
    the same structured, redacted logs as the rest (a link's token in the path never shows)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %d", request.method, request.path, response.status,
            extra={"method": request.method, "path": request.path, "status": response.status,
                   "duration_ms": round(time * 1000, 1), "remote": request.remote,
                   "request_id": response.headers.get(logs.REQUEST_ID_HEADER)},
        )


def fast_event_loop() -> asyncio.AbstractEventLoop | None:
    """uvloop where it is installed (every platform but Windows): the same asyncio API with
    less overhead per socket event, which a webhook server spends much of its time in."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop()


WARM_AFTER_REQUESTS = 1000


def freeze_again_when_warm(app: web.Application, after: int = WARM_AFTER_REQUESTS) -> None:
    """Freeze once more when the first requests have filled the caches that start-up leaves
    empty (compiled SQL, templates, the ORM's lazily built parts). They would otherwise sit in
    the oldest generation, where each full collection walked them all: it stalled every request
    in flight for 6-22 ms, and for 1-5 ms once they are frozen (measured, docs/benchmarks.md)."""
    remaining = after

    @web.middleware
    async def count_until_warm(request: web.Request, handler: Any) -> web.StreamResponse:
        nonlocal remaining
        response = await handler(request)
        if remaining > 0:
            remaining -= 1
            if remaining == 0:
                await freeze_startup_objects(app)
        return response

    app.middlewares.append(count_until_warm)


async def freeze_startup_objects(_: web.Application) -> None:
    """What start-up made (modules, templates, compiled SQL) lives as long as the process: kept
    out of the collector, a full collection no longer stalls every request in flight for
    ~60 ms (measured: docs/benchmarks.md, portal pages)."""
    import gc

    gc.collect()
    gc.freeze()
