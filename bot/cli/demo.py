"""`paybot demo`, and the commands run beside it: the demo announces where it runs and which
processor it charges through (`announce`), and `paybot chat`, `worker`, `plans`, `emails` and
`send-links` in another terminal take those settings (`beside_running_demo`).

What the demo itself runs is in bot/cli/demo_run.py, imported only when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import hashlib
import json
import os
import shlex
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

from bot.cli.common import add_command
from bot.config.settings import ConfigError, Settings

NEVER_IN_PRODUCTION = ("the demo seeds demo accounts and runs a local Stripe: never in "
                       "production (PUBLIC_BASE_URL starts with https://)")


def register(sub: Any) -> None:
    demo = add_command(sub, "demo", _demo, quiet=True, never_in_production=NEVER_IN_PRODUCTION,
                       help="seed demo accounts, start localstripe and the server")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--once", action="store_true", help="show the walkthrough, then exit")


class PortBusy(Exception):
    """The demo's port is taken: one line says which and how to choose another."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        super().__init__(f"port {port} on {host} is in use")

    def advice(self) -> str:
        other = _free_port(self.host)
        return (f"paybot demo: port {self.port} on {self.host} is in use (another demo or "
                f"server?). Choose another: {command()} demo --port {other}, or make demo "
                f"PORT={other}")


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    try:
        # Before localstripe starts and the accounts are seeded: a busy port costs nothing.
        check_port(args.host, args.port)
        from bot.cli.demo_run import run_demo

        asyncio.run(run_demo(settings, host=args.host, port=args.port, once=args.once,
                             interactive=sys.stdin.isatty() and not args.once))
    except PortBusy as busy:
        print(busy.advice(), file=sys.stderr)
        return 1
    except asyncio.CancelledError:  # SIGTERM: the demo has stopped what it started
        return 143
    return 0


def check_port(host: str, port: int) -> None:
    """PortBusy when ``host:port`` cannot be listened on (as aiohttp will: SO_REUSEADDR, so a
    port in TIME_WAIT after the last demo counts as free)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return  # an unknown host: aiohttp says so itself
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortBusy(host, port) from None
            raise


def _free_port(host: str) -> int:
    with contextlib.suppress(OSError), socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
    return 8081


def command() -> str:
    """How to run `paybot` again, as this process was run, for the commands the demo prints:
    `paybot` when that is what the shell finds, else the path typed (`.venv/bin/paybot`, as
    `make demo` runs it), else `python -m bot.cli`."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "paybot"
    if Path(argv0).name in ("__main__.py", "-m", "-c"):
        return f"{_shown_path(sys.executable)} -m bot.cli"
    found = shutil.which("paybot")
    if found and Path(found).resolve() == Path(argv0).resolve():
        return "paybot"
    return _shown_path(argv0)


def _shown_path(path: str) -> str:
    """A path as the user can type it from here: relative below the current folder."""
    with contextlib.suppress(ValueError):
        relative = os.path.relpath(path)
        if not relative.startswith(".."):
            return shlex.quote(relative if os.sep in relative else f".{os.sep}{relative}")
    return shlex.quote(path)


RUNNING_FILE = "demo-running.json"


def announce(settings: Settings, *, started_localstripe: bool) -> Path:
    """Say where this running demo is and which processor it charges through, for the commands
    run beside it: the methods it seeded are saved at its localstripe, which another process's
    in-memory sandbox has never heard of (it refused them and left the payment Processing)."""
    state: dict[str, object] = {
        "pid": os.getpid(),
        "database": _database_digest(settings.database_url),
        "public_base_url": settings.public_base_url,
        "stripe": {
            "stripe_secret_key": settings.stripe_secret_key,
            "stripe_publishable_key": settings.stripe_publishable_key,
            "stripe_api_base": settings.stripe_api_base,
            "stripe_js_url": settings.stripe_js_url,
        } if started_localstripe else None,
    }
    path = settings.data_dir / RUNNING_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    # Only the demo's own localstripe key is in it (any key opens localstripe), yet it stays the
    # user's: written private and complete, or not at all.
    partial = path.with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(state, fh)
    partial.replace(path)
    return path


def withdraw(announced: Path) -> None:
    """The demo ends: commands run beside it go back to their own settings (unless another demo
    has announced itself there since)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if json.loads(announced.read_text(encoding="utf-8"))["pid"] == os.getpid():
            announced.unlink()


def beside_running_demo(settings: Settings) -> Settings:
    """These settings, completed by the running demo's on the same database: its processor when
    the environment names none, its address when the environment keeps the default. A demo
    that is gone (its process ended) or serves another database is ignored; production never
    looks."""
    if settings.production:
        return settings
    try:
        state = json.loads((settings.data_dir / RUNNING_FILE).read_text(encoding="utf-8"))
        pid, database = int(state["pid"]), state["database"]
    except (OSError, ValueError, KeyError, TypeError):
        return settings
    if database != _database_digest(settings.database_url) or not _alive(pid):
        return settings
    changes: dict[str, object] = {}
    if settings.is_default("public_base_url") and state.get("public_base_url"):
        changes["public_base_url"] = state["public_base_url"]
    if not settings.stripe_configured and isinstance(state.get("stripe"), dict):
        changes.update({k: v for k, v in state["stripe"].items() if k in _STRIPE_FIELDS})
    try:
        return settings.replace(**changes) if changes else settings
    except ConfigError:  # an announcement this version does not understand
        return settings


def _database_digest(database_url: str) -> str:
    """Which database, without its password (a PostgreSQL URL may carry one)."""
    return hashlib.sha256(database_url.encode()).hexdigest()


_STRIPE_FIELDS = ("stripe_secret_key", "stripe_publishable_key", "stripe_api_base",
                  "stripe_js_url")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
