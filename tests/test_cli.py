"""The commands a newcomer runs first: the demo and the terminal chat."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from bot.providers.localstripe import free_port


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


def test_chat_talks_to_the_same_engine(tmp_path: Path) -> None:
    # An unknown number, as a person at a terminal would be: asked for the account ID.
    result = run_paybot(
        "chat", "--phone", "555-555-0142", data_dir=tmp_path, stdin="help\nbalance\n"
    )
    assert result.returncode == 0, result.stderr
    assert "Msg & data rates may apply" in result.stdout
    assert "reply with your account ID" in result.stdout
