"""The console's live feed under load: N connected consoles (server-sent events at /agent/live),
inbound SMS at a fixed rate through the signed Twilio webhook, and the time from each webhook
post to each console: p50 and p99.

    .venv/bin/python -m bench.console_feed                      # SQLite + in-process Redis
    .venv/bin/python -m bench.console_feed --redis redis://127.0.0.1:6379/14 --workers 2

The time per (message, console): the webhook post's scheduled time -> the console's event for
it received, with the conversation's inbox row in it (agent_console/live.py renders it once per
process): what the page's script then puts in the table without asking the server again
(agent_console/static/console.js). The browser's own DOM work (well under a millisecond for one
row) is not in it. `--refetch` instead times the older way for comparison: on each event every
console asks for the view's rows again (one request in flight per console, one more after it).

The server is `paybot serve` in its own process (with --workers N, several, on a Redis they
share). Every message comes from a number of its own (a new conversation each: the turn is an
unknown number's first, the verification question). Consoles are one staff member's sessions,
made in the ledger before the server starts. Arrivals are evenly spaced (open loop); latency is
counted from each message's scheduled time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-twilio-token"


@dataclass
class Console:
    cookie: str
    events: dict[str, float] = field(default_factory=dict)  # phone -> event received
    screen: dict[str, float] = field(default_factory=dict)  # phone -> refreshed rows received
    pending: list[tuple[str, float]] = field(default_factory=list)  # events not yet on screen
    busy: bool = False
    again: bool = False
    refreshes: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)  # shared: something arrived


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def prepare(database_url: str, consoles: int) -> list[str]:
    """Migrate; one agent; a session per console (tokens as the cookie carries them)."""
    from bot.clock import SystemClock
    from bot.ledger.db import Database
    from bot.staff import accounts, sessions

    database = Database(database_url)
    await database.migrate()
    now = SystemClock().now()
    tokens = []
    async with database.session() as session:
        added = await accounts.add(session, f"bench-{uuid.uuid4().hex[:8]}@paybot.test",
                                   f"Bench {secrets.token_hex(3)}", "agent", at=now, by="bench",
                                   password=secrets.token_urlsafe(16))
        for _ in range(consoles):
            _, token = await sessions.start(session, added.staff, at=now, address="127.0.0.1",
                                            user_agent="bench")
            tokens.append(token)
        await session.commit()
    await database.close()
    return tokens


async def refresh(http: aiohttp.ClientSession, console: Console, view: str) -> None:
    """The page's fetcher: one request in flight, one more if events came meanwhile."""
    if console.busy:
        console.again = True
        return
    console.busy = True
    try:
        while True:
            console.again = False
            covered = list(console.pending)
            console.pending.clear()
            async with http.get(f"/agent/inbox/{view}?rows=1",
                                headers={"Cookie": f"paybot_staff={console.cookie}",
                                         "Accept": "text/html"}) as response:
                await response.read()
            done = time.perf_counter()
            console.refreshes += 1
            for phone, _ in covered:
                console.screen.setdefault(phone, done)
            console.progress.set()
            if not console.again and not console.pending:
                return
    finally:
        console.busy = False


async def listen(http: aiohttp.ClientSession, console: Console, ready: asyncio.Event,
                 view: str, with_screen: bool) -> None:
    async with http.get("/agent/live", headers={"Cookie": f"paybot_staff={console.cookie}",
                                                "Accept": "text/event-stream"},
                        timeout=aiohttp.ClientTimeout(total=None)) as response:
        assert response.status == 200, response.status
        async for raw in response.content:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event.get("type") == "hello":
                ready.set()
                continue
            phone = event.get("phone")
            if event.get("type") == "message" and phone and phone not in console.events:
                at = time.perf_counter()
                console.events[phone] = at
                if "rows" in event and not with_screen:
                    console.screen[phone] = at
                console.progress.set()
                if with_screen:
                    console.pending.append((phone, at))
                    asyncio.create_task(refresh(http, console, view))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def run(args: argparse.Namespace) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="paybot-console-bench-"))
    database_url = args.database or f"sqlite:///{tmp / 'bench.sqlite3'}"
    tokens = await prepare(database_url, args.consoles)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYBOT_", "REDIS_",
                                                                     "TWILIO_", "STRIPE_"))}
    env.update(DATABASE_URL=database_url, PUBLIC_BASE_URL=base, SECRET_KEY="bench-secret",
               TWILIO_AUTH_TOKEN=TOKEN, PAYBOT_DATA_DIR=str(tmp / "var"),
               PAYBOT_MIGRATE_ON_START="0")
    if args.redis:
        env["REDIS_URL"] = args.redis
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "serve", "--port", str(port),
        *(["--workers", str(args.workers)] if args.workers > 1 else []),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert server.stdout is not None
        listening = 0
        while listening < args.workers:
            line = await asyncio.wait_for(server.stdout.readline(), 60)
            assert line, "paybot serve ended before it listened"
            listening += b"Running on" in line
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(base, connector=connector) as http:
            progress = asyncio.Event()
            consoles = [Console(token, progress=progress) for token in tokens]
            readies = [asyncio.Event() for _ in consoles]
            listeners = [asyncio.create_task(listen(http, c, r, args.view, args.refetch))
                         for c, r in zip(consoles, readies, strict=True)]
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 30)
            validator = RequestValidator(TOKEN)
            sent: dict[str, float] = {}
            answered: list[float] = []
            answered_at: dict[str, float] = {}
            statuses: dict[int, int] = {}

            async def post(n: int, due: float) -> None:
                phone = f"+1555{7000000 + n:07d}"
                params = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32,
                          "From": phone, "To": "+15005550006", "Body": "hi", "NumMedia": "0"}
                signature = validator.compute_signature(base + "/webhooks/twilio/sms", params)
                sent[phone] = due
                async with http.post("/webhooks/twilio/sms", data=params,
                                     headers={"X-Twilio-Signature": signature}) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                answered_at[phone] = time.perf_counter()
                answered.append(answered_at[phone] - due)

            total = int(args.rate * args.seconds)
            start = time.perf_counter() + 0.2
            posts = []
            for n in range(total):
                due = start + n / args.rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                posts.append(asyncio.create_task(post(n, due)))
            await asyncio.gather(*posts)
            deadline = time.perf_counter() + 10
            while time.perf_counter() < deadline and any(
                len(c.events) < total or len(c.screen) < total
                for c in consoles
            ):
                progress.clear()
                try:
                    await asyncio.wait_for(progress.wait(), deadline - time.perf_counter())
                except TimeoutError:
                    break
            for task in listeners:
                task.cancel()
        feed = [c.events[p] - sent[p] for c in consoles for p in c.events if p in sent]
        rows_missed = sum(total - len(c.screen) for c in consoles)
        # What the console adds: its event after the webhook's own answer (negative: before it;
        # the turn's events are published as its lock is let go, before the answer is written).
        after_answer = [c.events[p] - answered_at[p] for c in consoles for p in c.events
                        if p in answered_at]
        screen = [c.screen[p] - sent[p] for c in consoles for p in c.screen if p in sent]
        missed = sum(total - len(c.events) for c in consoles)

        def ms(values: list[float]) -> dict[str, float]:
            if not values:
                return {}
            return {"p50": round(percentile(values, 0.5) * 1000, 1),
                    "p99": round(percentile(values, 0.99) * 1000, 1),
                    "max": round(max(values) * 1000, 1),
                    "mean": round(statistics.fmean(values) * 1000, 1)}

        return {
            "consoles": args.consoles, "rate": args.rate, "seconds": args.seconds,
            "messages": total, "workers": args.workers,
            "redis": "shared" if args.redis else "in-process", "view": args.view,
            "webhook_statuses": statuses, "webhook_ms": ms(answered),
            "feed_ms": ms(feed), "screen_ms": ms(screen),
            "event_after_answer_ms": ms(after_answer), "events_missed": missed,
            "rows_missed": rows_missed,
            "rows_requests": sum(c.refreshes for c in consoles),
        }
    finally:
        server.terminate()
        await server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--consoles", type=int, default=50)
    parser.add_argument("--rate", type=float, default=50.0, help="inbound messages a second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--view", default="live", help="the inbox view the consoles show")
    parser.add_argument("--refetch", action="store_true",
                        help="each console asks for its rows again on each event (the old way)")
    parser.add_argument("--database", help="DATABASE_URL (default: a SQLite file in a temp dir)")
    parser.add_argument("--redis", help="REDIS_URL shared by the processes (default in-process)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    if args.workers > 1 and not args.redis:
        parser.error("--workers above 1 needs --redis")
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
