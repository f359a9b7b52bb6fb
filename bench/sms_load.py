"""SMS load benchmark: signed inbound SMS against a running PayBot, and against a bare handler.

    .venv/bin/python -m bench.sms_load --backend services    # PostgreSQL + Redis (make bench)
    .venv/bin/python -m bench.sms_load --backend embedded    # SQLite file + in-process Redis
    .venv/bin/python -m bench.sms_load --backend both --json bench-results.json
    .venv/bin/python -m bench.sms_load --backend services --floor --servers 2
    .venv/bin/python -m bench.sms_load --backend services --profile pyinstrument

What one backend's run does (about 80 s; figures in docs/benchmarks.md):
1. prepares a fresh database (`paybot_bench` on PostgreSQL, created if missing, never `test`;
   Redis db 14; or a SQLite file in a temp dir and in-process Redis) and seeds --accounts
   accounts with a saved sandbox Visa through the app's own code
   (bot.accounts.loading.upsert_account, bot.ledger.models); every other account also gets a
   settlement and a plan offer;
2. starts `python -m bot.cli serve` as a process of its own (the load generator never shares
   its event loop) with DATABASE_URL, REDIS_URL, TWILIO_AUTH_TOKEN, PUBLIC_BASE_URL, SECRET_KEY
   and PAYBOT_DATA_DIR set, and polls /healthz until it answers (with a deadline);
3. closed loop, once per --concurrency value (8 and 32 conversations in flight): each sends its
   next message as soon as the previous one is answered; the best rate is PayBot's maximum;
4. open loop: Poisson arrivals at --load-fraction (80 %) of that maximum for --open-duration;
   latency counts from each message's scheduled arrival (no coordinated omission);
5. stops PayBot and loads bench/bare_server.py (signature check + TwiML, nothing else) the same
   way; the ratio of the two maxima is the headline figure; --floor adds the bare handler plus
   one INSERT per message (the least that "stored before answered" costs) and the bare handler
   plus the least whole turn that keeps PayBot's guarantees (2 SQL + 2 Redis round trips, no
   business), with its own open loop: the ceiling of any implementation on this machine;
6. prints a table (with the CPU each party used: a shared machine skews figures) and a sanity
   line (flows completed, ledger counts, server log errors); --json writes everything.

The messages follow realistic conversations (see `scripts`): greetings, PAY, contact review,
offers, amounts ("50", "$75", "fifty"), method choice, dates ("12/9", "dec 1", "next friday",
"now"), YES/NO, AGREE, and keywords (BALANCE, HELP, LINK, MENU, STOP/START). Messages of one
conversation are strictly sequential; --active conversations (128 of the 500 accounts) take
turns. Every request carries the form fields Twilio sends and an X-Twilio-Signature computed
with RequestValidator(token).compute_signature(PUBLIC_BASE_URL + path, params).

Loopback only (127.0.0.1); every phase is bounded in time (at most 120 s) and in requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse
from zoneinfo import ZoneInfo

import aiohttp
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
AUTH_TOKEN = "bench-twilio-auth-token"
# http: not production, where the sandbox providers the benchmark runs on may stand in (https
# would make `paybot serve` refuse to start without real credentials). Signatures are still
# checked: TWILIO_AUTH_TOKEN is set.
PUBLIC_BASE_URL = "http://paybot.bench"
SECRET_KEY = "bench-secret-key"
SMS_PATH = "/webhooks/twilio/sms"
ACCOUNT_SID = "AC" + "b" * 32
TO_NUMBER = "+15005550006"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/paybot_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
MAX_REQUESTS_PER_PHASE = 100_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- conversations


def scripts(today: date) -> tuple[list[list[str]], list[list[str]]]:
    """The conversations customers have, for accounts with offers and for accounts without.

    Each one ends where it began (idle), so a conversation can run them one after another. Offer
    accounts never pay "now" (a payment would lower the balance under the plan offer's total and
    change the offer menu); accounts without offers do, which exercises the charge path.
    """

    def md(d: date) -> str:
        return f"{d.month}/{d.day}"

    d1, d2, d3 = today + timedelta(days=14), today + timedelta(days=6), today + timedelta(days=30)
    with_offers = [
        ["hi", "balance", "pay", "ok", "3", "50", "1", md(d1), "yes", "agree"],
        ["pay", "ok", "2", "1", f"{d2:%b} {d2.day}".lower(), "yes", "agree"],
        [
            "hello",
            "pay",
            "yes",
            "3",
            "help",
            "$75",
            "1",
            md(d3),
            "no",
            "3",
            "60.00",
            "1",
            md(d1),
            "y",
            "agree",
        ],
        ["STOP", "START", "menu", "link"],
    ]
    without_offers = [
        ["hi", "pay", "ok", "50", "1", "now", "yes", "agree"],
        ["balance", "pay", "ok", "$25", "1", md(d1), "yes", "agree"],
        ["pay", "yep", "fifty", "1", "next friday", "yes", "agree"],
        ["help", "pay", "ok", "30", "menu", "Stop texting me", "START", "link"],
    ]
    return with_offers, without_offers


@dataclass
class Conversation:
    index: int
    phone: str
    scripts: list[list[str]]
    script: int = 0
    pos: int = 0
    log: list[tuple[str, list[str]]] | None = None

    def next_body(self) -> str:
        body = self.scripts[self.script][self.pos]
        self.pos += 1
        if self.pos == len(self.scripts[self.script]):
            self.script, self.pos = (self.script + 1) % len(self.scripts), 0
        return body


def make_conversations(
    accounts: list[tuple[str, bool]], today: date, dialog: int | None
) -> list[Conversation]:
    with_offers, without_offers = scripts(today)
    conversations = []
    for i, (phone, has_offers) in enumerate(accounts):
        cycle = with_offers if has_offers else without_offers
        conversations.append(
            Conversation(
                i, phone, cycle, script=(i // 2) % len(cycle), log=[] if i == dialog else None
            )
        )
    return conversations


class Signer:
    """Builds Twilio's inbound form for a message and signs it as Twilio does."""

    def __init__(self) -> None:
        self.validator = RequestValidator(AUTH_TOKEN)
        self.url = PUBLIC_BASE_URL + SMS_PATH
        self.tag = secrets.token_hex(4)
        self.counter = itertools.count(1)

    def build(self, phone: str, body: str) -> tuple[bytes, dict[str, str]]:
        sid = f"SM{self.tag}{next(self.counter):024d}"
        params = {
            "ToCountry": "US",
            "ToState": "CA",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ToCity": "",
            "FromZip": "10001",
            "SmsSid": sid,
            "FromState": "NY",
            "SmsStatus": "received",
            "FromCity": "NEW YORK",
            "Body": body,
            "FromCountry": "US",
            "To": TO_NUMBER,
            "ToZip": "",
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": phone,
            "ApiVersion": "2010-04-01",
        }
        signature = self.validator.compute_signature(self.url, params)
        headers = {
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return urlencode(params).encode(), headers


def twiml_texts(xml: str) -> list[str]:
    try:
        return [m.text or "" for m in ET.fromstring(xml).findall("Message")]
    except ET.ParseError:
        return [f"<unparsable: {xml[:80]!r}>"]


# --------------------------------------------------------------------------- CPU accounting


def process_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def services_cpu() -> dict[int, float]:
    """CPU seconds of each PostgreSQL and Redis server process (the machine's services)."""
    found: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        if comm == "postgres" or comm.startswith("redis-server"):
            fields = stat.rsplit(")", 1)[1].split()
            found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return found


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])
    idle = values[3] + values[4]
    return (total - idle) / CLK_TCK, total / CLK_TCK


class CpuMeter:
    def __init__(self, server_pids: list[int]) -> None:
        self.server_pids = server_pids

    def __enter__(self) -> CpuMeter:
        self.t0 = time.perf_counter()
        self.server0 = sum(process_cpu(pid) for pid in self.server_pids)
        self.gen0 = process_cpu(os.getpid())
        self.services0 = services_cpu()
        self.busy0, self.total0 = machine_cpu()
        return self

    def __exit__(self, *_: object) -> None:
        wall = time.perf_counter() - self.t0
        busy, total = machine_cpu()
        self.server = (sum(process_cpu(pid) for pid in self.server_pids) - self.server0) / wall
        self.generator = (process_cpu(os.getpid()) - self.gen0) / wall
        self.machine = (busy - self.busy0) / wall
        # A process that ended meanwhile (another job's connection) is left out; a new one counts
        # whole, which is near enough for a connection opened during the phase.
        services = services_cpu()
        self.services = sum(v - self.services0.get(pid, 0.0) for pid, v in services.items()) / wall
        self.other = max(0.0, self.machine - self.server - self.generator - self.services)


# --------------------------------------------------------------------------- load phases


@dataclass
class PhaseResult:
    target: str
    phase: str  # warmup | closed | open
    offered: str  # "c=32" or "280.0/s"
    seconds: float
    sent: int
    ok: int
    errors: int
    msgs_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    late_p99_ms: float | None = None  # open loop: how late the generator sent (its own health)
    server_cpu: float = 0.0  # cores busy on average
    generator_cpu: float = 0.0
    services_cpu: float = 0.0  # PostgreSQL + Redis processes
    other_cpu: float = 0.0  # everything else on the machine (other users' jobs, the kernel)
    machine_cpu: float = 0.0
    msgs_per_server_cpu_s: float = 0.0  # throughput per CPU-second of the server: robust to noise
    flows_done: int = 0
    agrees_sent: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


class Load:
    """One HTTP client session against one server, with a pool of idle conversations."""

    def __init__(
        self, ports: list[int], conversations: list[Conversation], connections: int
    ) -> None:
        # Several ports: requests are spread over them in turn, as a load balancer would.
        self.urls = itertools.cycle([f"http://127.0.0.1:{port}{SMS_PATH}" for port in ports])
        self.signer = Signer()
        self.idle: asyncio.Queue[Conversation] = asyncio.Queue()
        for conversation in conversations:
            self.idle.put_nowait(conversation)
        self.connections = connections

    async def __aenter__(self) -> Load:
        connector = aiohttp.TCPConnector(limit=self.connections, limit_per_host=self.connections)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30)
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.session.close()

    async def one(self, record: _Recorder, scheduled: float | None = None) -> None:
        conversation = await self.idle.get()
        try:
            body = conversation.next_body()
            data, headers = self.signer.build(conversation.phone, body)
            start = time.perf_counter()
            if scheduled is not None:
                record.late.append(start - scheduled)
            else:
                scheduled = start
            try:
                url = next(self.urls)
                async with self.session.post(url, data=data, headers=headers) as response:
                    text = await response.text()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                text, status = type(exc).__name__, 0
            record.add(time.perf_counter() - scheduled, status, body, text, conversation)
        finally:
            self.idle.put_nowait(conversation)

    async def closed(
        self, target: str, phase: str, concurrency: int, seconds: float, server_pids: list[int]
    ) -> PhaseResult:
        record = _Recorder()
        deadline = time.perf_counter() + seconds
        budget = itertools.count()

        async def worker() -> None:
            while time.perf_counter() < deadline and next(budget) < MAX_REQUESTS_PER_PHASE:
                await self.one(record)

        with CpuMeter(server_pids) as cpu:
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        return record.result(target, phase, f"c={concurrency}", elapsed, cpu)

    async def open(
        self, target: str, rate: float, seconds: float, server_pids: list[int], seed: int = 7
    ) -> PhaseResult:
        record = _Recorder()
        rng = random.Random(seed)
        tasks: set[asyncio.Task[None]] = set()
        with CpuMeter(server_pids) as cpu:
            started = time.perf_counter()
            scheduled = started
            for _ in range(min(MAX_REQUESTS_PER_PHASE, int(rate * seconds * 2) + 10)):
                scheduled += rng.expovariate(rate)
                if scheduled - started > seconds:
                    break
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self.one(record, scheduled))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=35)
            elapsed = time.perf_counter() - started
        return record.result(target, "open", f"{rate:.1f}/s", elapsed, cpu)


class _Recorder:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.late: list[float] = []
        self.statuses: dict[str, int] = {}
        self.errors = 0
        self.flows_done = 0
        self.agrees = 0

    def add(
        self, latency: float, status: int, body: str, text: str, conversation: Conversation
    ) -> None:
        self.latencies.append(latency)
        key = str(status)
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if status != 200 or "something went wrong" in text:
            self.errors += 1
        if body == "agree":
            self.agrees += 1
            self.flows_done += "Done:" in text
        if conversation.log is not None:
            replies = twiml_texts(text) if status == 200 else [f"HTTP {status}"]
            conversation.log.append((body, replies))

    def result(
        self, target: str, phase: str, offered: str, elapsed: float, cpu: CpuMeter
    ) -> PhaseResult:
        values = sorted(self.latencies)
        late = sorted(self.late)
        return PhaseResult(
            target=target,
            phase=phase,
            offered=offered,
            seconds=round(elapsed, 2),
            sent=len(values),
            ok=len(values) - self.errors,
            errors=self.errors,
            msgs_per_s=round(len(values) / elapsed, 1) if elapsed else 0.0,
            p50_ms=round(percentile(values, 50) * 1000, 2),
            p90_ms=round(percentile(values, 90) * 1000, 2),
            p99_ms=round(percentile(values, 99) * 1000, 2),
            max_ms=round(values[-1] * 1000, 2) if values else float("nan"),
            late_p99_ms=round(percentile(late, 99) * 1000, 2) if late else None,
            server_cpu=round(cpu.server, 2),
            generator_cpu=round(cpu.generator, 2),
            services_cpu=round(cpu.services, 2),
            other_cpu=round(cpu.other, 2),
            machine_cpu=round(cpu.machine, 2),
            msgs_per_server_cpu_s=round(len(values) / elapsed / cpu.server) if cpu.server else 0,
            flows_done=self.flows_done,
            agrees_sent=self.agrees,
            statuses=self.statuses,
        )


# --------------------------------------------------------------------------- storage and seeding


def refuse_test_targets(database_url: str, redis_url: str) -> None:
    dbname = urlparse(database_url).path.lstrip("/")
    if dbname in {"", "test", "postgres", "template0", "template1"}:
        sys.exit(f"bench: refusing database {dbname!r}: use a database of its own (paybot_bench)")
    if urlparse(redis_url).path.strip("/") in {"", "0", "15"}:
        sys.exit("bench: refusing Redis db 0/15 (15 is the test suite's): use e.g. /14")


async def prepare_postgres(database_url: str) -> None:
    import asyncpg
    from sqlalchemy import text

    from bot.ledger.db import Database

    parsed = urlparse(database_url)
    dbname = parsed.path.lstrip("/")
    admin = await asyncpg.connect(parsed._replace(path="/postgres").geturl())
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", dbname):
            await admin.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await admin.close()
    database = Database(database_url)
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await database.close()


async def flush_redis(redis_url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def seed(database_url: str, count: int, now: datetime) -> list[tuple[str, bool]]:
    """Accounts with a saved sandbox Visa; every other one with a settlement and a plan offer."""
    from bot.accounts.loading import (
        add_offers,
        parse_account,
        save_method_at_processor,
        upsert_account,
    )
    from bot.ledger.db import Database
    from bot.ledger.models import Creditor
    from bot.providers.sandbox_gateway import SandboxGateway

    database = Database(database_url)
    gateway = SandboxGateway()
    accounts: list[tuple[str, bool]] = []
    try:
        await database.migrate()
        async with database.session() as session:
            session.add(
                Creditor(
                    code="northwind",
                    name="Northwind Recovery",
                    disclosure="This is a communication from a debt collector.",
                    settings={},
                )
            )
            await session.flush()
            for i in range(count):
                phone, has_offers = f"+1555{7_000_000 + i}", i % 2 == 0
                balance_cents = 40_000 + (i % 20) * 7_500
                record = {
                    "account_id": f"BENCH-{i:05d}",
                    "first_name": "Maria",
                    "last_name": "Lopez",
                    "phone": phone,
                    "email": f"customer{i}@example.com",
                    "balance": f"{balance_cents / 100:.2f}",
                    "creditor": "northwind",
                    "description": f"Acme Card ending {4000 + i % 1000}",
                    "timezone": "America/New_York",
                }
                account, _ = await upsert_account(
                    session, parse_account(record), secret_key=SECRET_KEY, at=now, actor="bench"
                )
                await session.flush()
                await save_method_at_processor(session, gateway, account, "pm_card_visa", at=now)
                if has_offers:
                    add_offers(
                        session,
                        account,
                        settlement_cents=balance_cents * 64 // 100,
                        settlement_expires_at=now + timedelta(days=45),
                        plan_installments=6,
                        at=now,
                    )
                accounts.append((phone, has_offers))
                if i % 100 == 99:
                    await session.commit()
            await session.commit()
    finally:
        await database.close()
    return accounts


async def ledger_counts(database_url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from bot.ledger.db import Database
    from bot.ledger.models import Agreement, Conversation, Message, Payment

    database = Database(database_url)
    try:
        async with database.session() as session:

            async def count(model: Any, *where: Any) -> int:
                query = select(func.count()).select_from(model).where(*where)
                return int(await session.scalar(query) or 0)

            return {
                "inbound_messages": await count(Message, Message.direction == "inbound"),
                "outbound_messages": await count(Message, Message.direction == "outbound"),
                "payments": await count(Payment),
                "paid_now": await count(Payment, Payment.status == "paid"),
                "agreements": await count(Agreement),
                "conversations_with_agent": await count(
                    Conversation, Conversation.status.in_(("waiting", "agent"))
                ),
            }
    finally:
        await database.close()


# --------------------------------------------------------------------------- server processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    process: asyncio.subprocess.Process
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def pids(self) -> list[int]:
        """The process and its children (`paybot serve --workers N` runs N of them), so the
        CPU columns count every process that serves."""
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            children = []
        return [self.pid, *map(int, children)]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode or 0


async def start_server(
    name: str,
    argv: list[str],
    env: dict[str, str],
    port: int,
    log_path: Path,
    ready_within: float = 40.0,
) -> Server:
    log = log_path.open("wb")
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    server = Server(name, process, port, log_path)
    deadline = time.perf_counter() + ready_within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return server
            if time.perf_counter() > deadline:
                await server.stop()
                raise RuntimeError(f"{name} not ready in {ready_within:.0f}s:\n{server.log_tail()}")
            await asyncio.sleep(0.1)


def server_env(database_url: str, redis_url: str | None, data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TWILIO_", "STRIPE_", "SENDGRID_", "PAYBOT_"))
        and k not in {"DATABASE_URL", "REDIS_URL", "PUBLIC_BASE_URL", "SECRET_KEY"}
    }
    env.update(
        DATABASE_URL=database_url,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        PUBLIC_BASE_URL=PUBLIC_BASE_URL,
        SECRET_KEY=SECRET_KEY,
        PAYBOT_DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


# --------------------------------------------------------------------------- one backend


async def run_target(
    *,
    target: str,
    servers: list[Server],
    conversations: list[Conversation],
    args: argparse.Namespace,
    open_seconds: float,
    profile: bool,
) -> list[PhaseResult]:
    results: list[PhaseResult] = []
    pids = [pid for server in servers for pid in server.pids]
    async with Load([server.port for server in servers], conversations, args.connections) as load:
        print(f"  {target}: warm-up {args.warmup:.0f}s", flush=True)
        await load.closed(target, "warmup", max(args.concurrency), args.warmup, pids)
        if profile:
            for pid in pids:
                os.kill(pid, signal.SIGUSR1)
        for concurrency in args.concurrency:
            print(
                f"  {target}: closed loop, {concurrency} conversations in flight, "
                f"{args.duration:.0f}s",
                flush=True,
            )
            results.append(await load.closed(target, "closed", concurrency, args.duration, pids))
            await asyncio.sleep(0.5)
        if profile:
            for pid in pids:
                os.kill(pid, signal.SIGUSR2)
            return results
        closed = max(results, key=lambda r: r.msgs_per_s)  # the maximum rate
        if open_seconds > 0 and closed.msgs_per_s > 0:
            rate = closed.msgs_per_s * args.load_fraction
            print(
                f"  {target}: open loop at {rate:.0f}/s ({args.load_fraction:.0%} of "
                f"{closed.msgs_per_s:.0f}/s), {open_seconds:.0f}s",
                flush=True,
            )
            await asyncio.sleep(1.0)  # let the closed loop's backlog drain
            results.append(await load.open(target, rate, open_seconds, pids))
    return results


async def machine_quiet(wait: float, threshold: float = 0.25) -> float:
    """Wait (at most `wait` s) for a second in which the machine is nearly idle: others' test
    runs on the same machine skew the figures. Returns the busy cores of the last second."""
    deadline = time.perf_counter() + wait
    while True:
        busy0, _ = machine_cpu()
        await asyncio.sleep(1.0)
        busy = machine_cpu()[0] - busy0
        if busy < threshold or time.perf_counter() >= deadline:
            return round(busy, 2)


async def run_backend(backend: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from bot.config.settings import Settings

    began = time.perf_counter()
    now = datetime.now(UTC)
    today = now.astimezone(ZoneInfo("America/New_York")).date()
    data_dir = workdir / backend / "var"
    data_dir.mkdir(parents=True, exist_ok=True)
    if backend == "services":
        database_url, redis_url = args.database_url, args.redis_url
        refuse_test_targets(database_url, redis_url)
        await prepare_postgres(database_url)
        await flush_redis(redis_url)
    else:
        database_url, redis_url = f"sqlite:///{workdir / backend / 'paybot.sqlite3'}", None
    Settings(database_url=database_url, redis_url=redis_url).validate()

    print(f"[{backend}] seeding {args.accounts} accounts", flush=True)
    t0 = time.perf_counter()
    accounts = await seed(database_url, args.accounts, now)
    seed_seconds = time.perf_counter() - t0
    # The conversations in use: fewer than the seeded accounts, so that each one gets far enough
    # in a bounded run for the mix of messages to include whole flows (payments, agreements).
    active = accounts[: args.active]
    conversations = make_conversations(active, today, args.dialog)

    env = server_env(database_url, redis_url, data_dir)
    busy_before = await machine_quiet(args.wait_quiet)
    if busy_before >= 0.25:
        print(
            f"[{backend}] warning: the machine is busy ({busy_before} cores) before the run: "
            "other jobs will skew the figures",
            flush=True,
        )
    profile_out = None
    paybots: list[Server] = []
    t0 = time.perf_counter()
    try:
        for n in range(args.servers):  # one after another: each runs the migrations at start
            port = free_port()
            serve = ["serve", "--host", "127.0.0.1", "--port", str(port)]
            if args.workers > 1:
                serve += ["--workers", str(args.workers)]
            if args.profile:
                profile_out = ROOT / args.profile_dir / f"paybot-{backend}-{args.profile}"
                out = profile_out if n == 0 else profile_out.with_name(f"{profile_out.name}-{n}")
                argv = [
                    sys.executable,
                    "-m",
                    "bench.profiled_serve",
                    "--profiler",
                    args.profile,
                    "--out",
                    str(out),
                    "--",
                    *serve,
                ]
            else:
                argv = [sys.executable, "-m", "bot.cli", *serve]
            print(f"[{backend}] starting PayBot: {' '.join(argv[1:])}", flush=True)
            paybots.append(
                await start_server(
                    f"paybot{n}", argv, env, port, workdir / backend / f"paybot{n}.log"
                )
            )
        startup_seconds = time.perf_counter() - t0
        paybot_results = await run_target(
            target="paybot",
            servers=paybots,
            conversations=conversations,
            args=args,
            open_seconds=args.open_duration,
            profile=bool(args.profile),
        )
    finally:
        for server in paybots:
            await server.stop()
    log_text = "".join(server.log_path.read_text(errors="replace") for server in paybots)
    server_log = {
        "errors": log_text.count(" ERROR "),
        "tracebacks": log_text.count("Traceback"),
        "warnings": log_text.count(" WARNING "),
    }
    counts = await ledger_counts(database_url)

    bare_results: list[PhaseResult] = []
    if not args.profile and not args.no_bare:
        port = free_port()
        argv = [sys.executable, "-m", "bench.bare_server", "--port", str(port)]
        print(f"[{backend}] starting the bare handler: {' '.join(argv[1:])}", flush=True)
        bare = await start_server("bare", argv, env, port, workdir / backend / "bare.log")
        try:
            bare_conversations = make_conversations(active, today, None)
            bare_results = await run_target(
                target="bare",
                servers=[bare],
                conversations=bare_conversations,
                args=args,
                open_seconds=args.bare_open_duration,
                profile=False,
            )
        finally:
            await bare.stop()

    floor_results: list[PhaseResult] = []
    if backend == "services" and args.floor and not args.profile:
        floors = [
            ("floor", "bare + one INSERT per message", ["--store", database_url], 0.0),
            (
                "turn",
                "bare + the least a turn with PayBot's guarantees costs (2 SQL + 2 Redis)",
                ["--store", database_url, "--redis", redis_url or DEFAULT_REDIS],
                args.open_duration,
            ),
        ]
        for name, what, options, open_seconds in floors:
            port = free_port()
            argv = [sys.executable, "-m", "bench.bare_server", "--port", str(port), *options]
            print(f"[{backend}] starting the {name} handler: {what}", flush=True)
            floor = await start_server(name, argv, env, port, workdir / backend / f"{name}.log")
            try:
                floor_results += await run_target(
                    target=name,
                    servers=[floor],
                    conversations=make_conversations(active, today, None),
                    args=args,
                    open_seconds=open_seconds,
                    profile=False,
                )
            finally:
                await floor.stop()

    summary: dict[str, Any] = {
        "backend": backend,
        "paybot_processes": args.servers * args.workers,
        "paybot_servers": args.servers,
        "paybot_workers_per_server": args.workers,
        "database": database_url.split("@")[-1] if backend == "services" else "sqlite (temp file)",
        "redis": redis_url or "in-process (fakeredis)",
        "seed_seconds": round(seed_seconds, 2),
        "machine_busy_before_run": busy_before,
        "paybot_startup_seconds": round(startup_seconds, 2),
        "phases": [asdict(r) for r in paybot_results + bare_results + floor_results],
        "server_log": server_log,
        "ledger_after_run": counts,
        "seconds": round(time.perf_counter() - began, 1),
    }
    closed: dict[str, PhaseResult] = {}
    for r in paybot_results + bare_results + floor_results:
        if r.phase == "closed" and (
            r.target not in closed or r.msgs_per_s > closed[r.target].msgs_per_s
        ):
            closed[r.target] = r
    opened = {r.target: r for r in paybot_results + floor_results if r.phase == "open"}
    if "paybot" in closed:
        summary["paybot_max_msgs_per_s"] = closed["paybot"].msgs_per_s
    if "bare" in closed:
        summary["bare_max_msgs_per_s"] = closed["bare"].msgs_per_s
    if "floor" in closed:
        summary["floor_max_msgs_per_s"] = closed["floor"].msgs_per_s
    if "turn" in closed:
        summary["turn_max_msgs_per_s"] = closed["turn"].msgs_per_s
    if "turn" in opened:
        summary["turn_open_p99_ms"] = opened["turn"].p99_ms
    if "paybot" in closed and "bare" in closed and closed["bare"].msgs_per_s:
        ratio = closed["paybot"].msgs_per_s / closed["bare"].msgs_per_s
        summary["throughput_ratio"] = round(ratio, 3)
        summary["ratio_target_met"] = summary["throughput_ratio"] >= args.ratio_target
    if "paybot" in opened:
        summary["open_p99_ms"] = opened["paybot"].p99_ms
        summary["p99_target_met"] = opened["paybot"].p99_ms < args.p99_target_ms
    if profile_out is not None:
        summary["profile"] = str(profile_out.with_suffix(".txt"))
    for conversation in conversations:
        if conversation.log is not None:
            summary["dialog"] = conversation.log[:60]
    return summary


# --------------------------------------------------------------------------- report


def print_table(summaries: list[dict[str, Any]], args: argparse.Namespace) -> None:
    header = (
        f"{'backend':9} {'server':6} {'phase':6} {'offered':>9} {'msgs/s':>8} {'p50 ms':>7} "
        f"{'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} {'late99':>6} {'errors':>6} "
        f"{'cpu: server':>11} {'gen':>5} {'pg+rds':>6} {'other':>5} {'msgs/cpu-s':>10}"
    )
    print()
    print(header)
    print("-" * len(header))
    for summary in summaries:
        for p in summary["phases"]:
            late = "" if p["late_p99_ms"] is None else f"{p['late_p99_ms']:.1f}"
            print(
                f"{summary['backend']:9} {p['target']:6} {p['phase']:6} {p['offered']:>9} "
                f"{p['msgs_per_s']:8.1f} {p['p50_ms']:7.1f} {p['p90_ms']:7.1f} "
                f"{p['p99_ms']:7.1f} "
                f"{p['max_ms']:7.1f} {late:>6} {p['errors']:6d} {p['server_cpu']:11.2f} "
                f"{p['generator_cpu']:5.2f} {p['services_cpu']:6.2f} {p['other_cpu']:5.2f} "
                f"{p['msgs_per_server_cpu_s']:10.0f}"
            )
    print(
        f"cpu: cores busy on average (the machine has {os.cpu_count()}): the server under test, "
        "the load generator, PostgreSQL + Redis, and anything else running on the machine."
    )
    print(
        "msgs/cpu-s: messages answered per CPU-second of the server process (less sensitive "
        "to other jobs than msgs/s)."
    )
    print(
        "late99: open loop only, p99 of how late the generator sent a message after its "
        "scheduled time (its own health; latency is counted from the scheduled time)."
    )
    print()
    for s in summaries:
        b = s["backend"]
        if s["paybot_processes"] > 1:
            print(f"[{b}] PayBot ran as {s['paybot_processes']} processes (the bare handler as 1)")
        if "throughput_ratio" in s:
            verdict = "met" if s["ratio_target_met"] else "MISSED"
            print(
                f"[{b}] throughput ratio PayBot/bare (closed loop): {s['throughput_ratio']:.3f} "
                f"(target >= {args.ratio_target}: {verdict})"
            )
        if "open_p99_ms" in s:
            verdict = "met" if s["p99_target_met"] else "MISSED"
            print(
                f"[{b}] PayBot p99 at {args.load_fraction:.0%} of max rate: "
                f"{s['open_p99_ms']:.1f} ms (target < {args.p99_target_ms:.0f} ms: {verdict})"
            )
        if "floor_max_msgs_per_s" in s and s.get("bare_max_msgs_per_s"):
            print(
                f"[{b}] floor (bare + one INSERT per message): {s['floor_max_msgs_per_s']:.0f} "
                f"msgs/s = {s['floor_max_msgs_per_s'] / s['bare_max_msgs_per_s']:.3f} of bare"
            )
        if "turn_max_msgs_per_s" in s and s.get("bare_max_msgs_per_s"):
            print(
                f"[{b}] least turn with the guarantees (2 SQL + 2 Redis round trips, no "
                f"business): {s['turn_max_msgs_per_s']:.0f} msgs/s = "
                f"{s['turn_max_msgs_per_s'] / s['bare_max_msgs_per_s']:.3f} of bare"
                + (
                    f", p99 {s['turn_open_p99_ms']:.1f} ms at {args.load_fraction:.0%} of its max"
                    if "turn_open_p99_ms" in s
                    else ""
                )
            )
        flows = [p for p in s["phases"] if p["target"] == "paybot"]
        done = sum(p["flows_done"] for p in flows)
        agrees = sum(p["agrees_sent"] for p in flows)
        print(
            f"[{b}] sanity: {done}/{agrees} AGREE replies were 'Done: ...'; ledger after run "
            f"{s['ledger_after_run']}; server log {s['server_log']}; run took {s['seconds']}s"
        )
        if "profile" in s:
            print(f"[{b}] profile written to {s['profile']}")
        if "dialog" in s:
            print(f"[{b}] dialog of conversation {args.dialog}:")
            for body, replies in s["dialog"]:
                print(f"   > {body}")
                for reply in replies:
                    print(f"   < {reply}")


def source_info() -> dict[str, Any]:
    """Which code was measured: the commit, and how many files differed from it."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line for line in git("status", "--porcelain").splitlines() if line.strip()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "files_changed_since": len(changed)}


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gb = round(mem_kb / 1024 / 1024, 1)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "aiohttp": aiohttp.__version__,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sms_load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", choices=["embedded", "services", "both"], default="embedded")
    parser.add_argument("--accounts", type=int, default=500, help="accounts seeded (500)")
    parser.add_argument(
        "--active",
        type=int,
        default=128,
        help="conversations in use, at most --accounts (default 128)",
    )
    parser.add_argument(
        "--concurrency",
        default="8,32",
        help="conversations in flight in the closed loop; a comma-separated list "
        "runs one closed loop each and the best is the maximum (default 8,32)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=256,
        help="the load generator's connection limit (default 256)",
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds (default 3)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds of each closed loop (default 10)"
    )
    parser.add_argument(
        "--open-duration", type=float, default=15.0, help="PayBot's open-loop seconds (default 15)"
    )
    parser.add_argument(
        "--bare-open-duration",
        type=float,
        default=0.0,
        help="the bare handler's open-loop seconds (default 0: skipped; at its "
        "rates the generator, not the handler, sets the latency)",
    )
    parser.add_argument(
        "--load-fraction",
        type=float,
        default=0.8,
        help="open-loop rate as a fraction of the closed-loop maximum (0.8)",
    )
    parser.add_argument("--no-bare", action="store_true", help="skip the bare handler")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="`paybot serve --workers N`: N processes sharing one port (the kernel spreads the "
        "connections). Needs Redis, so services only. Default 1",
    )
    parser.add_argument(
        "--servers",
        type=int,
        default=1,
        help="PayBot processes (each on its own port; the generator spreads "
        "requests over them like a load balancer). The bare handler and "
        "the ratio stay at one process. Default 1",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="services only: also load the bare handler + one INSERT per message "
        "(raw asyncpg), the floor of 'stored before answered', and the least whole turn that "
        "keeps PayBot's guarantees (bench/bare_server.py --redis) (+60 s)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=15.0,
        help="wait at most this long for an idle machine before starting (15 s)",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_PG,
        help=f"services backend's PostgreSQL (default {DEFAULT_PG})",
    )
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS,
        help=f"services backend's Redis (default {DEFAULT_REDIS})",
    )
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument(
        "--profile",
        choices=["pyinstrument", "cprofile"],
        help="profile PayBot during the closed loop (figures then not comparable; "
        "skips the open loop and the bare handler)",
    )
    parser.add_argument("--profile-dir", default="bench/profiles")
    parser.add_argument(
        "--dialog",
        type=int,
        default=None,
        metavar="N",
        help="print conversation N's messages and replies",
    )
    parser.add_argument("--ratio-target", type=float, default=0.25)
    parser.add_argument("--p99-target-ms", type=float, default=50.0)
    args = parser.parse_args(argv)
    try:
        args.concurrency = sorted({max(1, min(int(c), 1000)) for c in args.concurrency.split(",")})
    except ValueError:
        parser.error("--concurrency takes numbers, e.g. 8,32")
    for name in ("warmup", "duration", "open_duration", "bare_open_duration", "wait_quiet"):
        setattr(args, name, min(max(getattr(args, name), 0.0), 120.0))  # bounded, whatever asked
    args.servers = max(1, min(args.servers, 8))
    args.workers = max(1, min(args.workers, 8))
    args.accounts = max(max(args.concurrency), min(args.accounts, 20_000))
    args.active = max(max(args.concurrency), min(args.active, args.accounts))
    return args


async def main_async(args: argparse.Namespace) -> int:
    backends = ["embedded", "services"] if args.backend == "both" else [args.backend]
    summaries = []
    with tempfile.TemporaryDirectory(prefix="paybot-bench-") as tmp:
        for backend in backends:
            summaries.append(await run_backend(backend, args, Path(tmp)))
    print_table(summaries, args)
    if args.json:
        report = {
            "command": " ".join([Path(sys.executable).name, "-m", "bench.sms_load", *sys.argv[1:]]),
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "source": source_info(),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "backends": summaries,
        }
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"figures written to {args.json}")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
