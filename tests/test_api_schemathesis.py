"""The OpenAPI document and the server agree, proven by schemathesis against a live
`paybot serve`: every check (ST202 included: what the document accepts the server accepts, what
the server refuses the document forbids) over its examples, coverage, fuzzing and stateful
phases, with real account, offer, plan and conversation ids from a seeded ledger."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.config.settings import Settings
from bot.ledger.models import Offer, PaymentMethod
from bot.plans import signing as plans
from tests.conftest import API_KEY, START
from tests.seed import add_account
from tests.test_serving import ROOT, free_port, server_env

# Cases per operation and phase: about 2,000 requests, a minute or two on a 2-core machine.
MAX_EXAMPLES = int(os.environ.get("PAYBOT_SCHEMATHESIS_EXAMPLES", "100"))
# One seed, so that CI draws the same cases every run and a red run replays anywhere; set
# PAYBOT_SCHEMATHESIS_SEED to another number to search further.
SEED = int(os.environ.get("PAYBOT_SCHEMATHESIS_SEED", "20261204"))

CONFIG = """
[dictionaries.accounts]
values = ["ACC-1001", "ACC-2002"]
[dictionaries.offers]
values = [{offers}]
[dictionaries.plans]
values = [{plan}]
[dictionaries.phones]
values = ["+15555550100"]

[parameters]
"path.account_id" = {{ dictionary = "accounts", probability = 0.7 }}
"path.offer_id" = {{ dictionary = "offers", probability = 0.7 }}
"path.plan_id" = {{ dictionary = "plans", probability = 0.7 }}
"path.phone" = {{ dictionary = "phones", probability = 0.7 }}
"body.account_id" = {{ dictionary = "accounts", probability = 0.5 }}

# An offer's terms and a link's amount depend on the balance, the date and the creditor's limits:
# a 422 is expected there, and tests/schemathesis_hooks.py fails any 422 that names another rule.
[[operations]]
include-operation-id = ["createOffer", "createLink"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "409", "422"]

# An agent's message depends on the conversation (opted out, owned by another agent, the
# customer's quiet hours: 409) and on its SMS segments, which a length cannot state (422).
[[operations]]
include-operation-id = ["sendConversationMessage", "claimConversation"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "409", "422"]
"""


async def seed(app, phone) -> tuple[list[int], int]:  # type: ignore[no-untyped-def]
    """Two accounts, an open settlement offer, a signed plan and a conversation."""
    await add_account(app)
    await add_account(app, ref="ACC-2002", phone="+15555550101", email="zoe@example.com")
    await phone("+15555550100").send("hi")
    async with app[appkeys.DATABASE].session() as session:
        for offer in (
            Offer(account_id=1, kind="settlement", total_cents=80000, status="open",
                  created_at=START),
            Offer(account_id=1, kind="plan", total_cents=30000, installment_count=3,
                  frequency="monthly", status="open", created_at=START,
                  schedule=[["2026-12-01", 10000], ["2027-01-01", 10000], ["2027-02-01", 10000]]),
        ):
            session.add(offer)
        await session.flush()
        offer_ids = list(await session.scalars(select(Offer.id).order_by(Offer.id)))
        plan_offer = await session.get(Offer, offer_ids[1])
        account = await session.get(plans.Account, plan_offer.account_id)
        method = await session.scalar(
            select(PaymentMethod).where(PaymentMethod.account_id == account.id))
        plan = await plans.accept_plan_offer(
            session, offer=plan_offer, account=account, method=method,
            signature=plans.Signature(kind="typed", data="Maria Lopez", signer_name="Maria Lopez",
                                      channel="web", esign_consent_at=START),
            agreement_text="terms", terms_version="2026-11", at=START)
        plan_id = plan.id
        await session.commit()
    return offer_ids, plan_id


# About a minute here on either backend; the margin is for a loaded CI machine.
@pytest.mark.timeout(480)
async def test_schemathesis_finds_no_failure_against_the_live_api(
    app, phone, settings: Settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    offer_ids, plan_id = await seed(app, phone)
    port = free_port()
    env = {
        **server_env(settings, tmp_path),
        "PAYBOT_API_KEY": API_KEY,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
    }
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "serve", "--port", str(port),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert server.stdout is not None
        seen = b""
        while b"Running on" not in seen:
            line = await asyncio.wait_for(server.stdout.readline(), 60)
            assert line, f"paybot serve ended before it listened:\n{seen.decode()}"
            seen += line
        config = tmp_path / "schemathesis.toml"
        config.write_text(CONFIG.format(offers=", ".join(map(str, offer_ids)), plan=plan_id))
        st = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "st"), "--config-file", str(config), "run",
            f"http://127.0.0.1:{port}/api/v1/openapi.json",
            "-H", f"Authorization: Bearer {API_KEY}",
            "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", str(MAX_EXAMPLES), "--workers", "1", "--no-color",
            "--seed", str(SEED),
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "120", "PYTHONPATH": str(ROOT),
                 "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks"},
        )
        report, _ = await asyncio.wait_for(st.communicate(), 420)
        text = report.decode(errors="replace")
        summary = text[text.rfind("Test cases:"):].strip()
        print(summary)
        assert st.returncode == 0, text[-20000:]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(server.communicate(), 30)
        except TimeoutError:
            server.kill()
            await server.wait()
