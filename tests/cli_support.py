"""Running `paybot ...` in the test's process, against the test's database and Redis."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bot.cli import main as cli
from bot.config.settings import Settings


def in_process_paybot(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    command: str,
) -> Callable[..., Awaitable[tuple[int, str, str]]]:
    """`paybot COMMAND ARGS...` on a thread (it runs its own event loop), configured from the
    environment as an operator's shell would be: (exit code, stdout, stderr)."""
    for name in list(os.environ):
        if name.startswith(("STRIPE_", "TWILIO_", "SENDGRID_", "PAYBOT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    if settings.redis_url:
        monkeypatch.setenv("REDIS_URL", settings.redis_url)
    else:
        monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("PAYBOT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("PAYBOT_MIGRATE_ON_START", "0")
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)

    async def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            await asyncio.to_thread(cli.main, [command, *args])
            code: Any = 0
        except SystemExit as exc:
            code = exc.code
        finally:
            root.setLevel(level)
            root.handlers[:] = handlers
        out, err = capsys.readouterr()
        return (code if isinstance(code, int) else 1), out, err

    return run
