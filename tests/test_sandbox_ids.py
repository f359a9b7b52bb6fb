"""Sandbox ids never repeat across processes (issue 12): `paybot chat` beside `paybot demo`, or
two workers, each numbered from 1 and handed out the same payment, message and email ids."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# One process's sandboxes, as `paybot worker` or `paybot chat` would make them, writing to the
# outbox they share with any other process on the same data folder.
ONE_PROCESS = """
import asyncio, json, sys
from pathlib import Path
from bot.providers.email import SandboxEmail
from bot.providers.sandbox_gateway import SandboxGateway
from bot.providers.sms import SandboxSms

async def main():
    outbox = Path(sys.argv[1])
    gateway, sms = SandboxGateway(), SandboxSms(outbox / "sms.jsonl")
    email = SandboxEmail(outbox / "email")
    customer = await gateway.ensure_customer(account_ref="A-1", name="Ana", email=None,
                                             existing_id=None)
    seti, _ = await gateway.create_setup_intent(customer_id=customer)
    charge = await gateway.charge(customer_id=customer, method_ref="pm_card_visa",
                                  amount_cents=5000, idempotency_key="pay-1", metadata={})
    text = await sms.send(to="+15555550100", body="Hi")
    mail = await email.send(to="ana@example.com", subject="Receipt", text="t", html="<p>h</p>")
    print(json.dumps([customer, seti, charge.processor_id, text.sid, mail.message_id]))

asyncio.run(main())
"""


def test_two_processes_never_make_the_same_id(tmp_path: Path) -> None:
    runs = [
        subprocess.run([sys.executable, "-c", ONE_PROCESS, str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, check=True)
        for _ in range(2)
    ]
    first, second = (json.loads(run.stdout) for run in runs)
    assert not set(first) & set(second)
    # Still plainly sandbox ids, of the kind each provider's real ids are.
    for ids in (first, second):
        assert [re.sub(r"_[0-9a-f]{12}_\d+$", "", i) for i in ids] == [
            "cus_sandbox", "seti_sandbox", "pi_sandbox", "SMsandbox", "sandbox"]
    # The shared outboxes keep both processes' messages, none overwritten.
    sids = [json.loads(line)["sid"] for line in (tmp_path / "sms.jsonl").read_text().splitlines()]
    assert sids == [first[3], second[3]]
    assert sorted(p.name for p in (tmp_path / "email").glob("*.eml")) == [
        "0001-receipt.eml", "0002-receipt.eml"]
