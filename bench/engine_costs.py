"""Where one inbound SMS's time goes, measured in-process (no HTTP, one message at a time).

    .venv/bin/python -m bench.engine_costs --backend services [--messages 3000] [--profile]

Seeds the same accounts and runs the same conversations as bench.sms_load, but calls
`ConversationEngine.receive` directly, one message after another, and reports per message:
wall time, CPU time of the process (all threads), SQL statements and the time spent inside
the driver's execute, Redis commands, transactions; then micro-timings of the pieces every
message pays for (signature check, TwiML, keyword classification, reply parsing, template
rendering, the flow machine). With --profile, a pyinstrument profile of the sequential run
(no concurrency noise) is written to bench/profiles/engine-BACKEND.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import sys
import tempfile
import time
import timeit
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event

from bench.sms_load import (
    AUTH_TOKEN,
    DEFAULT_PG,
    DEFAULT_REDIS,
    PUBLIC_BASE_URL,
    SECRET_KEY,
    SMS_PATH,
    Signer,
    flush_redis,
    make_conversations,
    prepare_postgres,
    refuse_test_targets,
    seed,
)

WHAT_IFS = {
    "no-autoflush": "sessions without autoflush (pending changes go out once, at commit)",
    "no-redis-lock": "no per-conversation Redis lock (what the lock costs; unsafe)",
}


def apply_what_ifs(app: Any, names: list[str]) -> None:
    """Estimate what a change to the app would save, by patching it in this process only.

    Measurement aids, not fixes: they change no file outside bench/, and some (no-redis-lock)
    remove a guarantee: they only tell what a piece costs."""
    import contextlib

    from sqlalchemy.ext.asyncio import async_sessionmaker

    from bot import appkeys
    from bot.coordination import HeldConversation

    database = app[appkeys.DATABASE]
    coordinator = app[appkeys.COORDINATOR]
    if "no-autoflush" in names:
        database.sessions = async_sessionmaker(
            database.engine, expire_on_commit=False, autoflush=False
        )
    if "no-redis-lock" in names:

        @contextlib.asynccontextmanager
        async def no_lock(key: str) -> Any:
            yield HeldConversation()

        coordinator.conversation_lock = no_lock


class SqlCounter:
    def __init__(self, sync_engine: Any) -> None:
        self.statements = 0
        self.seconds = 0.0
        self.kinds: collections.Counter[str] = collections.Counter()
        self._started: dict[int, float] = {}
        event.listen(sync_engine, "before_cursor_execute", self._before)
        event.listen(sync_engine, "after_cursor_execute", self._after)
        event.listen(sync_engine, "commit", self._commit)
        self.commits = 0
        self.slow = 0  # statements that took over 20 ms in the driver (lock waits, mostly)

    def _before(self, conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        self._started[id(cursor)] = time.perf_counter()
        words = statement.split(None, 3)
        kind = words[0].upper()
        if kind in {"SELECT", "INSERT", "UPDATE", "DELETE"}:
            table = ""
            lowered = [w.lower() for w in statement.split()]
            for marker in ("from", "into", "update"):
                if marker in lowered:
                    table = lowered[lowered.index(marker) + 1].strip('"')
                    break
            kind = f"{kind} {table}"
        self.kinds[kind] += 1

    def _after(self, conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        self.statements += 1
        took = time.perf_counter() - self._started.pop(id(cursor), time.perf_counter())
        self.seconds += took
        self.slow += took > 0.020

    def _commit(self, conn) -> None:  # type: ignore[no-untyped-def]
        self.commits += 1


def micro(label: str, fn: Any, number: int = 2000) -> tuple[str, float]:
    fn()  # warm caches
    best = min(timeit.repeat(fn, number=number, repeat=3)) / number
    return label, best * 1e6


def micro_timings(engine: Any, today: Any) -> list[tuple[str, float]]:
    from twilio.request_validator import RequestValidator
    from twilio.twiml.messaging_response import MessagingResponse

    from bot.sms.parsing import classify_keyword, parse_reply
    from bot.text.rendering import SmsRenderer
    from states.replies import Reply

    signer = Signer()
    body, headers = signer.build("+15557000001", "50")
    from urllib.parse import parse_qsl

    form = dict(parse_qsl(body.decode()))
    validator = RequestValidator(AUTH_TOKEN)
    url = PUBLIC_BASE_URL + SMS_PATH
    renderer = SmsRenderer()
    base = {
        "brand": "Northwind Recovery",
        "support_contact": "x@example.com",
        "first_name": "Maria",
        "disclosure": "",
        "link_url": "https://paybot.bench/p/abc",
    }
    reply = Reply("ask_amount", {"min_cents": 2500, "max_cents": 125000, "open_reason": None})

    def twiml() -> str:
        response = MessagingResponse()
        response.message("How much would you like to pay? Reply an amount from $25.00 to $500.")
        return str(response)

    results = [
        micro(
            "RequestValidator.validate (19 fields)",
            lambda: validator.validate(url, form, headers["X-Twilio-Signature"]),
        ),
        micro("MessagingResponse -> TwiML string", twiml),
        micro("classify_keyword('50')", lambda: classify_keyword("50")),
        micro("classify_keyword('Stop texting me')", lambda: classify_keyword("Stop texting me")),
        micro("parse_reply('$75', amount)", lambda: parse_reply("$75", "amount", today=today)),
        micro(
            "parse_reply('fifty', amount)",
            lambda: parse_reply("fifty", "amount", today=today),
            number=300,
        ),
        micro("parse_reply('12/9', date)", lambda: parse_reply("12/9", "date", today=today)),
        micro(
            "parse_reply('next friday', date)",
            lambda: parse_reply("next friday", "date", today=today),
        ),
        micro("parse_reply('yes', confirm)", lambda: parse_reply("yes", "confirm", today=today)),
        micro("SmsRenderer.render(ask_amount)", lambda: renderer.render(reply, base)),
    ]

    from states.payment import AccountView, PaymentFlow

    view = AccountView(
        first_name="Maria",
        description="Acme",
        balance_cents=125000,
        masked_email="m***@example.com",
        offers=(),
        methods=(),
        today=today,
        terms_url="https://paybot.bench/t/1",
    )

    def machine() -> None:
        flow = PaymentFlow(account=view, settings=engine.settings.flow, context={})
        engine.payment_machine.add_model(flow, initial="idle")
        engine.payment_machine.remove_model(flow)

    results.append(micro("payment machine add_model + remove_model", machine, number=500))
    return results


async def run(args: argparse.Namespace) -> None:
    from aiohttp import web

    from bot import appkeys
    from bot.app import create_app
    from bot.config.settings import Settings
    from bot.sms.engine import Inbound

    now = datetime.now(UTC)
    today = now.astimezone(ZoneInfo("America/New_York")).date()
    with tempfile.TemporaryDirectory(prefix="paybot-costs-") as tmp:
        if args.backend == "services":
            refuse_test_targets(args.database_url, args.redis_url)
            await prepare_postgres(args.database_url)
            await flush_redis(args.redis_url)
            database_url, redis_url = args.database_url, args.redis_url
        else:
            database_url, redis_url = f"sqlite:///{tmp}/paybot.sqlite3", None
        accounts = await seed(database_url, args.accounts, now)
        conversations = make_conversations(accounts, today, None)
        settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            public_base_url=PUBLIC_BASE_URL,
            secret_key=SECRET_KEY,
            data_dir=Path(tmp) / "var",
            twilio_auth_token=AUTH_TOKEN,
        )
        app = create_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            engine = app[appkeys.ENGINE]
            apply_what_ifs(app, args.what_if)
            sql = SqlCounter(app[appkeys.DATABASE].engine.sync_engine)
            redis = app[appkeys.COORDINATOR].redis
            redis_commands: collections.Counter[str] = collections.Counter()
            original = redis.execute_command

            async def counting(*command: Any, **kwargs: Any) -> Any:
                redis_commands[str(command[0]).split()[0].upper()] += 1
                return await original(*command, **kwargs)

            redis.execute_command = counting  # type: ignore[method-assign]
            sids = iter(range(10**9))

            async def one(i: int) -> float:
                conversation = conversations[i % len(conversations)]
                body = conversation.next_body()
                t0 = time.perf_counter()
                await engine.receive(
                    Inbound(phone=conversation.phone, body=body, sid=f"SMcost{next(sids):028d}")
                )
                return time.perf_counter() - t0

            for i in range(min(300, args.messages)):  # warm-up: caches, pools, templates
                await one(i)
            sql.statements, sql.seconds, sql.commits, sql.slow = 0, 0.0, 0, 0
            sql.kinds.clear()
            redis_commands.clear()
            profiler = None
            if args.profile:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0005, async_mode="enabled")
                profiler.start()
            cpu0, t0 = time.process_time(), time.perf_counter()
            if args.concurrency == 1:
                walls = [await one(i) for i in range(args.messages)]
            else:  # N workers, each with its own conversations: messages of one stay in order

                async def worker(k: int) -> list[float]:
                    return [await one(i) for i in range(k, args.messages, args.concurrency)]

                walls = [
                    w
                    for ws in await asyncio.gather(*(worker(k) for k in range(args.concurrency)))
                    for w in ws
                ]
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
            if profiler is not None:
                profiler.stop()
                out = Path(args.profile_dir) / f"engine-{args.backend}.txt"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
                profiler.last_session.save(str(out.with_suffix(".pyisession")))
                print(f"profile written to {out}")
            n = args.messages
            walls.sort()
            print(
                f"\n{args.backend}: {n} messages, {args.concurrency} at a time, through "
                "ConversationEngine.receive"
            )
            print(
                f"  latency            mean {statistics.fmean(walls) * 1000:6.2f} ms   p50 "
                f"{walls[n // 2] * 1000:.2f} ms   p99 {walls[int(n * 0.99)] * 1000:.2f} ms"
            )
            print(f"  CPU per message    {cpu / n * 1000:6.2f} ms (process, all threads)")
            print(
                f"  SQL per message    {sql.statements / n:6.2f} statements, "
                f"{sql.commits / n:.2f} commits, {sql.seconds / n * 1000:.2f} ms inside the "
                f"driver's execute; {sql.slow} statements took over 20 ms"
            )
            print(f"  throughput         {n / wall:6.1f} msgs/s with {args.concurrency} at once")
            print(
                f"  Redis per message  {sum(redis_commands.values()) / n:6.2f} commands "
                f"{dict(redis_commands.most_common())}"
            )
            print("  SQL statements by kind (per message):")
            for kind, count in sql.kinds.most_common():
                print(f"    {count / n:5.2f}  {kind}")
            print("\nmicro-timings (best of 3, per call):")
            for label, micros in micro_timings(engine, today):
                print(f"  {micros:9.1f} us  {label}")
            print(
                f"\n  {cpu / n * 1000:.2f} ms of CPU per message -> at most "
                f"{1 / (cpu / n):.0f} msgs/s on one core for the engine alone"
            )
        finally:
            await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine_costs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", choices=["embedded", "services"], default="embedded")
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="messages in flight (different conversations), default 1",
    )
    parser.add_argument("--database-url", default=DEFAULT_PG)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--what-if",
        action="append",
        default=[],
        choices=sorted(WHAT_IFS),
        help="patch the app in this process to estimate a change's saving "
        "(repeatable): " + "; ".join(f"{k}: {v}" for k, v in WHAT_IFS.items()),
    )
    parser.add_argument("--profile-dir", default="bench/profiles")
    args = parser.parse_args(argv)
    args.messages = max(100, min(args.messages, 50_000))
    args.concurrency = max(1, min(args.concurrency, 64))
    asyncio.run(run(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
