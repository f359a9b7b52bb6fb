"""`paybot chat` beside a running `paybot demo`, as the README suggests (issue 12): the chat charges
through the demo's localstripe, where the demo saved its customers' cards, and its links point at
the demo's server. It used to build an in-memory sandbox of its own, which refused the saved card
as unknown, crashed the chat and left the payment Processing for good."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shlex
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.cli.demo import RUNNING_FILE, beside_running_demo
from bot.config.settings import Settings
from bot.ledger.db import Database
from bot.ledger.models import Account, Payment
from bot.providers.localstripe import free_port

ROOT = Path(__file__).resolve().parents[1]
ANA = "+15555550102"  # DEMO-1003: the demo saves her a card that the issuer declines


def demo_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STRIPE_", "TWILIO_", "SENDGRID_", "PAYBOT_", "DATABASE_URL",
                                "REDIS_URL", "SECRET_KEY", "PUBLIC_BASE_URL", "LOCALSTRIPE_"))}
    env["PAYBOT_DATA_DIR"] = str(data_dir)
    return env


async def paybot(*args: str, env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *args, env=env, cwd=cwd,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def reply_to(said: str) -> str | None:
    """What a customer paying $30.00 now with the saved card answers to each step."""
    skip = re.search(r"(\d)\) Skip", said)
    if skip:
        return skip.group(1)
    for cue, answer in [("Reply OK", "ok"), ("How much", "$30"), ("Reply 1 for Visa", "1"),
                        ("Pay now or later", "now"), ("Confirm:", "yes"),
                        ("Reply AGREE", "agree")]:
        if cue in said:
            return answer
    return None


async def chat(env: dict[str, str], cwd: Path, command: list[str]) -> tuple[list[str], str]:
    """Ana pays $30.00 in `paybot chat`, run as `command` (what the demo printed), answering
    each prompt as it comes: (what PayBot said after each line, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *command, "chat", "--phone", ANA, env=env, cwd=cwd, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    said: list[str] = []
    line: str | None = "pay"

    async def next_prompt() -> str:
        buffer = ""
        while not buffer.endswith("you> "):  # the prompt of the next line
            chunk = await process.stdout.read(4096)  # type: ignore[union-attr]
            if not chunk:
                break
            buffer += chunk.decode()
        return buffer.removesuffix("you> ").strip()

    async with asyncio.timeout(180):
        await next_prompt()  # "Chatting as ..."
        while line is not None and len(said) < 12:
            process.stdin.write(f"{line}\n".encode())
            await process.stdin.drain()
            said.append(await next_prompt())
            done = "did not go through" in said[-1] or "Done:" in said[-1]
            line = None if done else reply_to(said[-1])
        process.stdin.close()
        _, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return said, err.decode()


async def test_chat_beside_a_running_demo_charges_through_the_demos_processor(
    tmp_path: Path,
) -> None:
    env, port = demo_env(tmp_path), free_port()
    demo = await paybot("demo", "--port", str(port), env=env, cwd=tmp_path)
    assert demo.stdout is not None and demo.stdin is not None
    demo.stdin.close()  # not a terminal: the demo serves until stopped
    try:
        async with asyncio.timeout(300):
            seen = b""
            while b"Serving until Ctrl-C" not in seen:
                line = await demo.stdout.readline()
                assert line, f"the demo ended: {seen.decode()}"
                seen += line
        localstripe = re.search(rb"localstripe \(a local Stripe\) at http://127\.0\.0\.1:(\d+)",
                                seen)
        assert localstripe
        announced = tmp_path / RUNNING_FILE
        assert announced.stat().st_mode & 0o777 == 0o600  # the user's alone
        assert "sqlite" not in announced.read_text()  # the database only as a digest

        # The command the demo printed for another terminal, run as printed (only the number
        # changes: Ana's card is the one that declines).
        printed = re.search(rb"In another terminal: (.+) chat --phone \+15555550101", seen)
        assert printed, seen.decode()
        command = shlex.split(printed.group(1).decode())
        assert command == [sys.executable, "-m", "bot.cli"]
        said, err = await chat(env, tmp_path, command)
        assert "Traceback" not in err
        # The card saved at the demo's localstripe was charged there, and its issuer declined it.
        assert said[-1].startswith("PayBot: Sorry, $30.00 with Visa ending 0341 did not go "
                                   "through: The payment was declined. Nothing was charged.")
        links = re.findall(r"https?://[^\s)]+/p/", "\n".join(said))
        assert links and set(links) == {f"http://127.0.0.1:{port}/p/"}  # the demo's server

        database = Database(f"sqlite:///{tmp_path / 'paybot.sqlite3'}")
        try:
            async with database.session() as session:
                payment = await session.scalar(
                    select(Payment).join(Account, Payment.account_id == Account.id)
                    .where(Account.account_ref == "DEMO-1003", Payment.amount_cents == 3000))
        finally:
            await database.close()
        assert payment is not None
        assert payment.status == "declined"
        assert payment.processor_id and payment.processor_id.startswith("pi_")
        assert "sandbox" not in payment.processor_id  # localstripe's, not an in-memory sandbox's
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGTERM)  # `kill`, which ends the demo as Ctrl-C does
            async with asyncio.timeout(60):
                await demo.communicate()
    assert demo.returncode == 143
    assert not (tmp_path / RUNNING_FILE).exists()  # the demo withdrew its settings as it ended
    with pytest.raises(OSError):  # and stopped its localstripe
        await asyncio.open_connection("127.0.0.1", int(localstripe.group(1)))


def announce(data_dir: Path, **state: object) -> Settings:
    settings = Settings(database_url=f"sqlite:///{data_dir / 'paybot.sqlite3'}",
                        data_dir=data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / RUNNING_FILE).write_text(json.dumps({
        "pid": os.getpid(), "database": hashlib.sha256(settings.database_url.encode()).hexdigest(),
        "public_base_url": "http://127.0.0.1:18080",
        "stripe": {"stripe_secret_key": "sk_test_paybot_demo",
                   "stripe_api_base": "http://127.0.0.1:18081",
                   "stripe_publishable_key": "pk_test_paybot_demo",
                   "stripe_js_url": "http://127.0.0.1:18081/js.stripe.com/v3/"},
        **state,
    }))
    return settings


def test_commands_take_the_running_demos_processor_and_address(tmp_path: Path) -> None:
    settings = announce(tmp_path)
    beside = beside_running_demo(settings)
    assert beside.public_base_url == "http://127.0.0.1:18080"
    assert beside.stripe_api_base == "http://127.0.0.1:18081" and beside.stripe_configured


def test_what_the_environment_sets_wins_over_the_demo(tmp_path: Path) -> None:
    settings = announce(tmp_path).replace(stripe_secret_key="sk_test_mine",
                                          public_base_url="http://pay.local")
    assert beside_running_demo(settings) == settings


def test_a_demo_that_ended_or_serves_another_database_is_ignored(tmp_path: Path) -> None:
    ended = announce(tmp_path / "a", pid=2**22 + 12345)  # above Linux's highest pid: no process
    assert beside_running_demo(ended) == ended
    elsewhere = announce(tmp_path / "b", database=hashlib.sha256(b"sqlite:///elsewhere").hexdigest())
    assert beside_running_demo(elsewhere) == elsewhere
    production = announce(tmp_path / "c").replace(public_base_url="https://pay.example.com")
    assert beside_running_demo(production) == production
