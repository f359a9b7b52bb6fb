"""The commands a newcomer runs first: the demo and the terminal chat."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bot.providers.localstripe import free_port

ROOT = Path(__file__).resolve().parents[1]


def run_paybot(
    *args: str, data_dir: Path, stdin: str = "", timeout: float = 120
) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRIPE_", "TWILIO_", "SENDGRID_", "DATABASE_URL", "REDIS_URL"))
    }
    env["PAYBOT_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        input=stdin,
        text=True,
        capture_output=True,
        env=env,
        timeout=timeout,
        cwd=data_dir,
    )


def test_demo_walks_through_a_payment_and_a_plan(tmp_path: Path) -> None:
    result = run_paybot("demo", "--once", "--port", str(free_port()), data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "localstripe (a local Stripe) at http://127.0.0.1:" in out
    assert "Done: $50.00 paid with Visa ending 4242. Ref P-" in out
    assert "Your balance on Acme Card ending 4821 is $1,200.00." in out
    # Plans: signed by text, the first installments charged once the clock reaches them.
    assert "Done: your plan is set. 3 payments of $400.00 from Visa ending 4242" in out
    assert re.search(
        r"Maria \(DEMO-1001\): \w+ \d+ \$400\.00 Paid, \w+ \d+ \$400\.00 Scheduled", out
    )
    assert re.search(r"Ana \(DEMO-1003\): \w+ \d+ \$166\.67 Declined", out)
    assert re.search(r"web \(a card, then a typed or drawn signature\): http://127\.0\.0\.1:\d+/p/",
                     out)
    emails = {p.name: p for p in (tmp_path / "outbox" / "email").glob("*.eml")}
    receipts = [p for name, p in emails.items() if "receipt" in name]
    assert sorted("$50.00" in p.read_text() or "$400.00" in p.read_text() for p in receipts) == [
        True, True]
    assert any("did-not-go-through" in name for name in emails)
    assert any("complete-payment-agreement" in name for name in emails)
    assert len(list((tmp_path / "outbox" / "email").glob("*.pdf"))) == 2  # signed agreements
    assert "Traceback" not in result.stderr
    # --once says what it did, and how to keep it serving, as a command that runs as printed.
    assert "While the demo runs" not in out and "Serving until" not in out
    assert "The demo ran once (--once) and stopped: it seeded 3 demo accounts" in out
    assert f"the emails (receipts, offers, signed agreements) to {tmp_path}/outbox/email." in out
    (again,) = re.findall(r"To keep it serving, with a chat and the web links: (.+)", out)
    assert again.startswith(f"{shlex.quote(sys.executable)} -m bot.cli demo --port ")
    shown = subprocess.run([*shlex.split(again), "--help"], capture_output=True, text=True,
                           cwd=tmp_path, timeout=60)
    assert shown.returncode == 0 and "--once" in shown.stdout


def test_a_busy_port_gets_one_line_naming_it_and_another(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_paybot("demo", "--port", str(port), data_dir=tmp_path, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    other = re.fullmatch(
        rf"paybot demo: port {port} on 127\.0\.0\.1 is in use \(another demo or server\?\)\. "
        rf"Choose another: {re.escape(shlex.quote(sys.executable))} -m bot\.cli demo --port "
        rf"(\d+), or make demo PORT=(\d+)", line)
    assert other and other.group(1) == other.group(2) and int(other.group(1)) != port
    assert not (tmp_path / "outbox").exists()  # nothing started, nothing seeded


@pytest.mark.skipif(shutil.which("make") is None or not (ROOT / ".venv/bin/paybot").exists(),
                    reason="make demo runs the project's own .venv")
def test_make_demo_takes_a_port_and_names_the_command_it_ran(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "PAYBOT_DATA_DIR": str(tmp_path)}
        result = subprocess.run(["make", "-s", "--no-print-directory", "demo", f"PORT={port}"],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if not line.startswith("make")]
    assert len(ours) == 1 and ours[0].startswith(f"paybot demo: port {port} on 127.0.0.1 is in "
                                                 "use"), result.stderr
    assert "Choose another: .venv/bin/paybot demo --port " in ours[0]  # as make runs it
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("argv0", "which", "shown"), [
    (".venv/bin/paybot", None, ".venv/bin/paybot"),  # `make demo`: not on PATH
    ("{root}/.venv/bin/paybot", "{root}/.venv/bin/paybot", "paybot"),  # an activated venv
    ("{root}/bot/cli/__main__.py", None, "{python} -m bot.cli"),  # python -m bot.cli
])
def test_the_printed_command_is_the_one_that_runs(monkeypatch, argv0, which, shown):
    from bot.cli import demo

    fill = {"root": str(ROOT), "python": shlex.quote(os.path.relpath(sys.executable, ROOT))
            if not os.path.relpath(sys.executable, ROOT).startswith("..")
            else shlex.quote(sys.executable)}
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", [argv0.format(**fill)])
    monkeypatch.setattr(shutil, "which", lambda name: which and which.format(**fill))
    assert demo.command() == shown.format(**fill)


def test_chat_talks_to_the_same_engine(tmp_path: Path) -> None:
    # An unknown number, as a person at a terminal would be: asked for the account ID.
    result = run_paybot(
        "chat", "--phone", "555-555-0142", data_dir=tmp_path, stdin="help\nbalance\n"
    )
    assert result.returncode == 0, result.stderr
    assert "Msg & data rates may apply" in result.stdout
    assert "reply with your account ID" in result.stdout
