"""A PostgreSQL and a Redis of the run's own, on free ports in its work folder, so the faults
(restarts, FLUSHALL, killed connections) never touch the machine's shared services.

Imports only the standard library, asyncpg and redis."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

DATABASE = "paybot"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_bin() -> Path:
    """The newest installed server's programs (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("no PostgreSQL server programs (pg_ctl) found: install postgresql")


def _version(path: str) -> tuple[int, ...]:
    part = Path(path).parent.parent.name
    return tuple(int(p) for p in part.split(".") if p.isdigit())


async def _wait(check, what: str, within: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    delay = 0.05
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {within:.0f}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


class PrivatePostgres:
    """initdb in `folder`; start, restart (fast or immediate), and cut every PayBot connection.

    PostgreSQL refuses to run as root: as root (CI) its programs run as the `postgres` user."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "pgdata"
        self.port = free_port()
        self.bin = _postgres_bin()
        self.log = folder / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *argv: str) -> None:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def start(self) -> None:
        if not self.data.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                postgres = pwd.getpwnam("postgres")
                os.chown(self.folder, postgres.pw_uid, postgres.pw_gid)
                self.folder.parent.chmod(0o755)  # a temp folder is root's only: let it through
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                      "--no-sync", "-E", "UTF8")
        await self._pg_ctl_start()
        connection = await asyncpg.connect(self._admin_url())
        try:
            await connection.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            await connection.close()

    async def _pg_ctl_start(self) -> None:
        options = (f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=300 -c fsync=off -c full_page_writes=off")
        await asyncio.to_thread(
            self._run, "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", "60", "start")
        await _wait(self.ready, "PostgreSQL")

    async def ready(self) -> bool:
        try:
            connection = await asyncpg.connect(self._admin_url(), timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await connection.close()
        return True

    def _admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            await asyncio.to_thread(
                self._run, "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    async def restart(self, *, down_for: float, mode: str = "fast") -> None:
        """Stop (fast: clients cut, a clean shutdown; immediate: as a crash, WAL recovery on the
        way back), stay down for `down_for` seconds, start again on the same port."""
        await self.stop(mode)
        await asyncio.sleep(down_for)
        await self._pg_ctl_start()

    async def terminate_connections(self) -> int:
        """pg_terminate_backend of every connection to PayBot's database; how many."""
        connection = await asyncpg.connect(self._admin_url(), timeout=5)
        try:
            return int(await connection.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()", DATABASE))
        finally:
            await connection.close()


class PrivateRedis:
    """redis-server on a free port, keeping nothing on disk (as the shared one): a restart
    empties it, as FLUSHALL does."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server not found: install redis")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.folder), "--logfile",
            str(self.folder / "redis.log"), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await _wait(self.ready, "Redis")

    async def ready(self) -> bool:
        client = aioredis.from_url(self.url, socket_timeout=1)
        try:
            return bool(await client.ping())
        except (OSError, aioredis.RedisError):
            return False
        finally:
            await client.aclose()

    async def flushall(self) -> None:
        client = aioredis.from_url(self.url, socket_timeout=5)
        try:
            await client.flushall()
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def restart(self, *, down_for: float) -> None:
        await self.stop()
        await asyncio.sleep(down_for)
        await self.start()
