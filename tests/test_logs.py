"""Structured logs (bot/logs.py): what an operator reads, whole, in either format; the request id
echoed and checked; nothing secret on any line; libraries' chatter quiet; a turn's and a
charge's lines naming their conversation and account."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from bot import appkeys, logs
from bot.clock import FrozenClock
from bot.config.settings import ConfigError, Settings
from bot.ledger.models import Payment, PaymentMethod
from bot.outreach.notifications import Notifier
from bot.serving import AccessLog
from bot.worker.loop import Worker, WorkerConfig
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE_URL, START, SmsPhone
from tests.seed import add_account

ROOT = Path(__file__).resolve().parents[1]
MARIA = "+15555550100"
STAMP = "2026-11-25T15:00:00Z"  # the test clock's START


class Captured:
    """The lines one `logs.configure` wrote, as an operator's terminal or collector gets them."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[str]:
        return self.text.splitlines()

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]


@pytest.fixture
def capture(clock: FrozenClock) -> Iterator[Any]:
    """`capture(**settings)`: logs configured as `paybot` does it at start, into a buffer, with
    the test's clock; everything put back afterwards."""
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", *logs.QUIET)}
    installed: list[logging.Handler] = []

    def start(**values: Any) -> Captured:
        captured = Captured()
        handler = logs.configure(Settings(**values), stream=captured.stream, now=clock.now)
        assert handler is not None
        installed.append(handler)
        return captured

    yield start
    for handler in installed:
        root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
async def served(app, aiohttp_client, aiohttp_server):  # type: ignore[no-untyped-def]
    """The app behind a real server with `paybot serve`'s access log (on only with
    PAYBOT_ACCESS_LOG)."""
    server = await aiohttp_server(app, access_log_class=AccessLog)
    return await aiohttp_client(server)


def tag(phone: str = MARIA) -> str:
    return logs.conversation_tag("test-secret-key", phone)


async def text_in(client, body: str, *, request_id: str | None = None,  # type: ignore[no-untyped-def]
                  sid: str = "SMlog1") -> Any:
    params = {"MessageSid": sid, "From": MARIA, "To": "+15005550006", "Body": body}
    headers = {"X-Request-Id": request_id} if request_id is not None else {}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        PUBLIC_BASE_URL + "/webhooks/twilio/sms", params)
    response = await client.post("/webhooks/twilio/sms", data=params,
                                 headers={"X-Twilio-Signature": signature, **headers})
    await client.app[appkeys.ENGINE].settled()
    return response


# --------------------------------------------------------------------------- formats


async def test_a_turn_is_one_json_line_with_its_request_conversation_and_account(
        app, served, capture):  # type: ignore[no-untyped-def]
    out = capture(log_format="json", access_log=True)
    account = await add_account(app)
    response = await text_in(served, "balance", request_id="req-42")
    assert response.status == 200 and response.headers["X-Request-Id"] == "req-42"
    turn, access = out.json()
    assert turn == {
        "event": "turn answered", "channel": "sms", "flow": "payment", "state": "idle",
        "replies": 1, "conversation": tag(), "request_id": "req-42", "account_id": account.id,
        "level": "info", "logger": "bot.sms.engine", "timestamp": STAMP,
    }
    assert access.pop("duration_ms") >= 0
    assert access == {
        "event": "POST /webhooks/twilio/sms 200", "method": "POST",
        "path": "/webhooks/twilio/sms", "status": 200, "remote": "127.0.0.1",
        "request_id": "req-42", "level": "info", "logger": "aiohttp.access", "timestamp": STAMP,
    }
    assert "5555550100" not in out.text


async def test_by_default_a_turn_is_one_readable_line_and_requests_make_none(
        app, served, capture):  # type: ignore[no-untyped-def]
    out = capture()
    account = await add_account(app)
    await text_in(served, "balance", request_id="req-43")
    assert out.lines() == [
        f"{STAMP} [info     ] turn answered                  [bot.sms.engine] "
        f"account_id={account.id} channel=sms conversation={tag()} flow=payment replies=1 "
        "request_id=req-43 state=idle"
    ]


def test_an_unknown_log_format_is_refused_naming_its_variable():
    with pytest.raises(ConfigError, match="PAYBOT_LOG_FORMAT must be json or console"):
        Settings.from_env({"PAYBOT_LOG_FORMAT": "xml"})
    assert Settings.from_env({"PAYBOT_LOG_FORMAT": "JSON"}).log_format == "json"
    assert Settings.from_env({}).log_format == "console"


def test_paybot_itself_writes_json_lines_when_asked(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STRIPE_", "TWILIO_", "SENDGRID_", "PAYBOT_", "DATABASE_URL",
                                "REDIS_URL", "SECRET_KEY", "PUBLIC_BASE_URL"))}
    env.update(PAYBOT_DATA_DIR=str(tmp_path), PAYBOT_LOG_FORMAT="json")
    result = subprocess.run([sys.executable, "-m", "bot.cli", "worker", "--once"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    warned = [line for line in lines if line["event"].startswith("not production: SECRET_KEY")]
    assert len(warned) == 1
    assert set(warned[0]) == {"event", "level", "logger", "timestamp"}
    assert warned[0]["level"] == "warning" and warned[0]["logger"] == "root"
    assert not any(line["logger"].startswith(("alembic", "transitions")) for line in lines)


# --------------------------------------------------------------------------- request ids


async def test_a_request_without_an_id_gets_one_echoed_and_logged(app, served, capture):  # type: ignore[no-untyped-def]
    out = capture(log_format="json")
    await add_account(app)
    response = await text_in(served, "balance")
    given = response.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", given)
    (turn,) = out.json()
    assert turn["request_id"] == given


@pytest.mark.parametrize("made_up", [
    "x" * 500, "two words", "<script>alert(1)</script>", "id;drop", "-leading-dash", "é",
])
async def test_a_made_up_request_id_is_replaced_not_logged(app, served, capture, made_up):  # type: ignore[no-untyped-def]
    out = capture(log_format="json", access_log=True)
    await add_account(app)
    response = await text_in(served, "balance", request_id=made_up)
    assert response.status == 200
    given = response.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", given)
    assert [line["request_id"] for line in out.json()] == [given, given]
    assert made_up not in out.text


async def test_every_response_carries_its_id_errors_too(served):  # type: ignore[no-untyped-def]
    for path in ("/healthz", "/no-such-page", "/p/not-a-real-link"):
        response = await served.get(path, headers={"X-Request-Id": "abc.123:Z_9-x"})
        assert response.headers["X-Request-Id"] == "abc.123:Z_9-x", path
    forged = await served.post("/webhooks/twilio/sms", data={"From": MARIA},
                               headers={"X-Request-Id": "forged-1"})
    assert forged.status == 403 and forged.headers["X-Request-Id"] == "forged-1"


@pytest.mark.parametrize("header", [
    None, "", "abc\ninjected", "abc\r\nSet-Cookie: x=1", "a" * 65, "tab\there", "ünïcode",
])
def test_an_unsafe_request_id_is_never_kept(header):
    assert re.fullmatch(r"[0-9a-f]{32}", logs.request_id(header))


def test_a_short_safe_request_id_is_kept():
    for header in ("req-42", "a" * 64, "0af7651916cd43dd8448eb211c80319c", "trace.1:2_3"):
        assert logs.request_id(header) == header


# --------------------------------------------------------------------------- redaction

SECRETS = [
    ("+15555550100", "[phone]"),
    ("+1 (555) 555-0100", "[phone]"),
    ("+44 20 7946 0958", "[phone]"),
    ("(555) 555-0100", "[phone]"),
    ("555-555-0100", "[phone]"),
    ("555.555.0100", "[phone]"),
    ("5555550100", "[phone]"),
    ("1-555-555-0100", "[phone]"),
    ("%2B15555550100", "[phone]"),
    ("maria.lopez+bills@example.com", "[email]"),
    ("maria%40example.com", "[email]"),
    ("https://pay.example/p/Xy7Qk2abcDEF_-12345678", "https://pay.example/p/[token]"),
    ("/agent/setup/Zq9_x-AbCdEfGhIjKlMnOpQr", "/agent/setup/[token]"),
    ("Authorization: Bearer pbk_live_9f8e7d6c5b4a", "Authorization: Bearer [token]"),
    ("Basic dXNlcjpwYXNz", "Basic [token]"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "[token]"),
    ("sk_live_51HxYzAbCdEf", "[secret]"),
    ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", "[secret]"),
    ("rk_live_51HxYzAbCdEf", "[secret]"),
    ("pk_test_TYooMQauvdEDq54NiTphI7jx", "[secret]"),
    ("whsec_test_paybot_worker", "[secret]"),
    ("pi_3Nabc123_secret_XyZ987", "pi_3Nabc123_[secret]"),
    ("seti_1Abc_secret_Def", "seti_1Abc_[secret]"),
    ("SG.abcdefghijklmnop.qrstuvwxyz0123456789", "[secret]"),
    ("password=hunter2", "password=[redacted]"),
    ("api_key: abc123", "api_key: [redacted]"),
    ('"token": "t0k3n"', '"token": "[redacted]"'),
    ("code=482913", "code=[redacted]"),
    ("4242 4242 4242 4242", "[card]"),
    ("4242-4242-4242-4242", "[card]"),
    ("4000056655665556", "[card]"),
    ("378282246310005", "[card]"),
    ("6011111111111117", "[card]"),
    ("4000000000000001", "[number]"),  # fails Luhn: still a long number
    ("123-45-6789", "[ssn]"),
    ("123 45 6789", "[ssn]"),
    ("123456789", "[ssn]"),
    ("000123456789012", "[number]"),  # a bank account number
    ("GET /api/v1/conversations/+15555550100 503", "GET /api/v1/conversations/[phone] 503"),
    ("GET /api/v1/conversations/%2B15555550100 404", "GET /api/v1/conversations/[phone] 404"),
    ("/agent/c/15555550100/claim", "/agent/c/[phone]/claim"),
    ("4242 4242 4242 4242 on 2026-12-15", "[card] on 2026-12-15"),
    ("3782 822463 10005", "[card]"),
]


@pytest.mark.parametrize(("secret", "shown"), SECRETS, ids=[s for s, _ in SECRETS])
def test_each_kind_of_secret_is_redacted(secret, shown):
    assert logs.redact_text(f"seen: {secret} (end)") == f"seen: {shown} (end)"


@pytest.mark.parametrize("kept", [
    "2026-11-25T15:00:00.123456Z", "127.0.0.1:8080", "$1,250.00", "12.50", "0.123456789",
    "P-7K3Q", "pi_3NabcDEF1234567890", "pm_card_visa", "cus_Q1w2E3r4T5", "ch_1234567890123",
    "SM0123456789abcdef0123456789abcdef", "failure_code=card_declined", "ending 4242",
    "/t/2026-01", "payment 1234", "m***@example.com", "***-***-0100", "1 2 3 4 5 6 7 8 9 10 11 12",
    "GET /healthz 200", "took 1234 ms for 5000 cents",
])
def test_what_an_operator_needs_is_kept(kept):
    assert logs.redact_text(kept) == kept


def test_a_line_with_every_kind_of_secret_is_redacted_whole(capture):  # type: ignore[no-untyped-def]
    out = capture(log_format="json")
    log = logging.getLogger("bot.test")
    try:
        raise ValueError("no account for 555-555-0100 / maria@example.com")
    except ValueError:
        log.exception(
            "link %s sent to %s, card %s, ssn %s, key %s",
            "https://pay.example/p/Xy7Qk2abcDEF_-12345678", "+15555550100",
            "4242424242424242", "123-45-6789", "sk_live_51HxYzAbCdEf",
            extra={"email": "maria@example.com", "secret_key": "hunter2",
                   "headers": {"Authorization": "Bearer abc", "X-Trace": "ok"},
                   "numbers": ["+15555550100", 4242424242424242, 7], "payment": "P-7K3Q"},
        )
    (line,) = out.json()
    exception = line.pop("exception")
    assert line == {
        "event": "link https://pay.example/p/[token] sent to [phone], card [card], ssn [ssn], "
                 "key [secret]",
        "email": "[redacted]", "secret_key": "[redacted]",
        "headers": {"Authorization": "[redacted]", "X-Trace": "ok"},
        "numbers": ["[phone]", "[card]", 7], "payment": "P-7K3Q",
        "level": "error", "logger": "bot.test", "timestamp": STAMP,
    }
    assert exception.startswith("Traceback (most recent call last):")
    assert exception.endswith("ValueError: no account for [phone] / [email]")


def test_the_readable_format_is_redacted_too_exceptions_included(capture):  # type: ignore[no-untyped-def]
    out = capture()
    try:
        raise RuntimeError("charge of 4242 4242 4242 4242 for +15555550100 failed")
    except RuntimeError:
        logging.getLogger("bot.test").exception("sent to %s", "maria@example.com")
    first, *rest = out.lines()
    assert first == f"{STAMP} [error    ] sent to [email]                [bot.test]"
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "RuntimeError: charge of [card] for [phone] failed"


# --------------------------------------------------------------------------- quiet libraries


async def test_libraries_chatter_is_quiet_by_default(app, served, capture):  # type: ignore[no-untyped-def]
    out = capture(log_format="json")
    await add_account(app)
    maria = SmsPhone(client=served, number=MARIA)
    for text in ("pay", "ok", "50", "1", "now"):  # a flow that runs transitions' callbacks
        await maria.send(text)
    loggers = {line["logger"] for line in out.json()}
    assert loggers == {"bot.sms.engine"}
    assert logging.getLogger("transitions.core").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("aiohttp.access").getEffectiveLevel() == logging.WARNING
    logging.getLogger("transitions.core").warning("a real problem")  # warnings still show
    assert out.json()[-1]["event"] == "a real problem"


# --------------------------------------------------------------------------- context


async def test_each_turn_names_its_own_conversation_and_nothing_leaks_between(
        app, served, capture):  # type: ignore[no-untyped-def]
    out = capture(log_format="json")
    maria = await add_account(app)
    await add_account(app, ref="ACC-2002", phone="+15555550199", email="ana@example.com")
    await text_in(served, "balance", sid="SMa")
    await SmsPhone(client=served, number="+15555550199").send("balance")
    await SmsPhone(client=served, number="+15555550177").send("hello")  # unknown: no account
    first, second, stranger = out.json()
    assert (first["conversation"], first["account_id"]) == (tag(), maria.id)
    assert second["conversation"] == tag("+15555550199") != tag()
    assert second["account_id"] != maria.id
    assert stranger["conversation"] == tag("+15555550177") and "account_id" not in stranger
    assert structlog.contextvars.get_contextvars() == {}


def test_a_conversation_tag_is_short_keyed_and_stable():
    assert re.fullmatch(r"[0-9a-f]{10}", tag())
    assert tag() == tag() != logs.conversation_tag("another-key", MARIA)
    assert "5555550100" not in tag()


async def test_a_charge_names_its_account_and_payment(app, served, capture, clock):  # type: ignore[no-untyped-def]
    out = capture(log_format="json")
    account = await add_account(app)
    day = date(2026, 12, 15)
    async with app[appkeys.DATABASE].session() as session:
        method_id = await session.scalar(
            select(PaymentMethod.id).where(PaymentMethod.account_id == account.id))
        session.add(Payment(
            reference="P-LOGS1", idempotency_key="test:P-LOGS1", account_id=account.id,
            method_id=method_id, amount_cents=5000, scheduled_for=day, status="scheduled",
            channel="sms", created_at=START, updated_at=START))
        await session.commit()
    clock.set(datetime(2026, 12, 15, 15, 0, tzinfo=START.tzinfo))
    providers, settings = app[appkeys.PROVIDERS], app[appkeys.SETTINGS]

    class NoLimit:
        async def acquire(self) -> None:
            return None

    worker = Worker(database=app[appkeys.DATABASE], gateway=providers.payments,
                    notifier=Notifier(sms=providers.sms, email=providers.email,
                                      brand=settings.brand),
                    settings=settings, clock=clock, config=WorkerConfig(outreach=False),
                    limiter=NoLimit(), name="worker")
    report = await worker.run_once()
    assert report.paid == 1
    charged = [line for line in out.json() if line["event"].startswith("payment P-LOGS1: paid")]
    assert len(charged) == 1
    assert {key: charged[0][key] for key in ("account_id", "payment", "logger", "timestamp")} \
        == {"account_id": account.id, "payment": "P-LOGS1", "logger": "bot.worker.charges",
            "timestamp": (START + timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert structlog.contextvars.get_contextvars() == {}
