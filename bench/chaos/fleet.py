"""PayBot's processes in the run, as compose.yaml runs them: `paybot migrate` once, two
`paybot serve` and two `paybot worker`, each a process of its own that a fault may kill -9 and
the harness starts again (as a supervisor would, after a pause).

Imports only the standard library, aiohttp and bench.chaos.stage."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.chaos.stage import (
    PUBLIC_BASE_URL,
    SECRET_KEY,
    STRIPE_KEY,
    STRIPE_WEBHOOK_SECRET,
    TO_NUMBER,
    TWILIO_AUTH_TOKEN,
)

ROOT = Path(__file__).resolve().parents[2]
READY_WITHIN = 60.0


def paybot_env(*, database_url: str, redis_url: str, stripe_api: str, twilio_api: str,
               twilio_sid: str, sendgrid_host: str, sendgrid_key: str, data_dir: Path,
               ) -> dict[str, str]:
    """The environment every PayBot process of the run gets: production-like services, the
    local peers, signatures checked (TWILIO_AUTH_TOKEN, STRIPE_WEBHOOK_SECRET), JSON logs."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TWILIO_", "STRIPE_", "SENDGRID_", "PAYBOT_", "PAYPAL_",
                                "PROMETHEUS_"))
           and k not in {"DATABASE_URL", "REDIS_URL", "PUBLIC_BASE_URL", "SECRET_KEY"}}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        PUBLIC_BASE_URL=PUBLIC_BASE_URL,
        SECRET_KEY=SECRET_KEY,
        PAYBOT_DATA_DIR=str(data_dir),
        PAYBOT_MIGRATE_ON_START="0",  # `paybot migrate` runs once, first, as in compose.yaml
        PAYBOT_LOG_FORMAT="json",
        PAYBOT_SHUTDOWN_GRACE_SECONDS="5",
        TWILIO_AUTH_TOKEN=TWILIO_AUTH_TOKEN,
        TWILIO_ACCOUNT_SID=twilio_sid,
        TWILIO_FROM_NUMBER=TO_NUMBER,
        TWILIO_API_BASE=twilio_api,
        STRIPE_SECRET_KEY=STRIPE_KEY,
        STRIPE_PUBLISHABLE_KEY="pk_test_paybot",
        STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
        STRIPE_API_BASE=stripe_api,
        SENDGRID_API_KEY=sendgrid_key,
        SENDGRID_HOST=sendgrid_host,
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class Member:
    """One PayBot process: `serve` (with a port) or `worker`."""

    name: str
    argv: list[str]
    log_path: Path
    port: int | None = None
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    crashes: list[str] = field(default_factory=list)  # unexpected exits, with the log's tail

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Fleet:
    """Starts, kills and restarts the members; `live_urls` is what a load balancer would route
    to (the web processes whose /readyz answered since their last start)."""

    def __init__(self, env: dict[str, str], folder: Path, *, web: int = 2, workers: int = 2,
                 worker_interval: float = 1.0) -> None:
        from bench.chaos.services import free_port

        self.env = env
        self.folder = folder
        python = [sys.executable, "-m", "bot.cli"]
        self.members: list[Member] = []
        for i in range(web):
            port = free_port()
            self.members.append(Member(f"web-{i + 1}", [*python, "serve", "--port", str(port)],
                                       folder / f"web-{i + 1}.log", port=port))
        for i in range(workers):
            self.members.append(Member(
                f"worker-{i + 1}",
                [*python, "worker", "--interval", str(worker_interval), "--rate", "20"],
                folder / f"worker-{i + 1}.log"))
        self._ready: set[str] = set()
        self._watchers: set[asyncio.Task[None]] = set()
        self._killed: set[str] = set()
        self._http: aiohttp.ClientSession | None = None

    @property
    def web(self) -> list[Member]:
        return [m for m in self.members if m.port is not None]

    @property
    def workers(self) -> list[Member]:
        return [m for m in self.members if m.port is None]

    def live_urls(self) -> list[str]:
        return [m.base_url for m in self.web if m.running and m.name in self._ready]

    async def migrate(self) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "migrate", cwd=ROOT, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"paybot migrate failed:\n{out.decode(errors='replace')}")

    async def start_all(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        await asyncio.gather(*(self.start(m, strict=True) for m in self.members))

    async def start(self, member: Member, *, strict: bool = False) -> None:
        log = member.log_path.open("ab")
        member.process = await asyncio.create_subprocess_exec(
            *member.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        member.starts += 1
        self._killed.discard(member.name)
        watcher = asyncio.get_running_loop().create_task(self._watch(member, member.process))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        if member.port is not None:
            await self._wait_ready(member, strict=strict)

    async def _wait_ready(self, member: Member, *, strict: bool = False) -> None:
        """Until /readyz answers 200. `strict` (the first start): not ready in time is an
        error; after a fault, the health loop takes over (the database may be down too)."""
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            if not member.running:
                raise RuntimeError(f"{member.name} exited while starting:\n{member.log_tail()}")
            if await self._is_ready(member):
                self._ready.add(member.name)
                return
            await asyncio.sleep(0.1)
        if strict:
            raise RuntimeError(f"{member.name} not ready in {READY_WITHIN:.0f}s:\n"
                               f"{member.log_tail()}")

    async def _is_ready(self, member: Member) -> bool:
        assert self._http is not None
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self._http.get(f"{member.base_url}/readyz") as response:
                return response.status == 200
        return False

    async def health_loop(self, interval: float = 1.0) -> None:
        """The proxy's active health check (deploy/Caddyfile: health_uri /readyz): a web
        process whose /readyz fails gets no traffic until it answers 200 again."""
        while True:
            for member in self.web:
                if member.running and member.name not in self._killed:
                    if await self._is_ready(member):
                        self._ready.add(member.name)
                    else:
                        self._ready.discard(member.name)
            await asyncio.sleep(interval)

    async def _watch(self, member: Member, process: asyncio.subprocess.Process) -> None:
        """A member that exits when nobody killed it is a finding (and is started again)."""
        code = await process.wait()
        self._ready.discard(member.name)
        if member.name not in self._killed and code != 0:
            member.crashes.append(f"exit {code}: {member.log_tail(8)}")

    async def kill9(self, member: Member) -> None:
        if member.running:
            assert member.process is not None
            self._killed.add(member.name)
            self._ready.discard(member.name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(member.process.pid, signal.SIGKILL)
            await member.process.wait()

    async def stop_all(self) -> dict[str, int]:
        """SIGTERM to each (the graceful stop), then SIGKILL past the grace; the exit codes."""
        codes: dict[str, int] = {}
        for member in self.members:
            if member.running:
                assert member.process is not None
                self._killed.add(member.name)
                member.process.send_signal(signal.SIGTERM)
        for member in self.members:
            if member.process is None:
                continue
            try:
                codes[member.name] = await asyncio.wait_for(member.process.wait(), 30)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(member.process.pid, signal.SIGKILL)
                codes[member.name] = await member.process.wait()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        return codes
