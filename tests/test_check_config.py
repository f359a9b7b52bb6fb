"""Production fails closed (finding 8): with a PUBLIC_BASE_URL that starts with https://, serve,
worker and every other command refuse to run while a secret or a provider credential is missing,
naming each one and never showing a value; `paybot check-config` prints the same report. Outside
production the sandboxes still run with no configuration, and serve and worker say what is open."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

from bot.app import create_app
from bot.cli import main as cli
from bot.config.settings import ConfigError, Settings
from bot.providers import build_providers

# Each value distinctive, so a test can tell that none of it is ever shown.
PRODUCTION = {
    "PUBLIC_BASE_URL": "https://pay.example.com",
    "SECRET_KEY": "Kq8sVw2ZLr5yTn7bXc3mPd9fGh4jRt6u",
    "TWILIO_ACCOUNT_SID": "AC" + "7e3f9a1b" * 4,
    "TWILIO_AUTH_TOKEN": "Zt4nQw8eRy2uIo6pAs1dFg5hJk9lXc3v",
    "TWILIO_FROM_NUMBER": "+15005550006",
    "STRIPE_SECRET_KEY": "sk_live_Mb7vNc2xZl9kJh4gFd6sAp1oIu8yTr3e",
    "STRIPE_PUBLISHABLE_KEY": "pk_live_Wq5eRt9yUi3oPa7sDf1gHj6kLz2xCv8b",
    "STRIPE_WEBHOOK_SECRET": "whsec_Nm4bVc8xZa2sDf6gHj1kLq9wEr5tYu3i",
    "SENDGRID_API_KEY": "SG.Po7iUy3tRe9wQa.5sDf1gHj6kLz2xCv8bNm4",
    "SENDGRID_FROM_EMAIL": "billing@pay.example.com",
    "PAYBOT_API_KEY": "api-Xc6vBn2mAs8dFg4hJk1lQw7eRt3yUi9o",
}
REQUIRED = [
    ("SECRET_KEY", "SECRET_KEY"),
    ("TWILIO_ACCOUNT_SID", "TWILIO_ACCOUNT_SID"),
    ("TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN"),
    ("TWILIO_FROM_NUMBER", "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"),
    ("STRIPE_SECRET_KEY", "STRIPE_SECRET_KEY"),
    ("STRIPE_PUBLISHABLE_KEY", "STRIPE_PUBLISHABLE_KEY"),
    ("STRIPE_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET"),
    ("SENDGRID_API_KEY", "SENDGRID_API_KEY"),
    ("SENDGRID_FROM_EMAIL", "SENDGRID_FROM_EMAIL"),
    ("PAYBOT_API_KEY", "PAYBOT_API_KEY"),
]
SECRETS = ["SECRET_KEY", "TWILIO_AUTH_TOKEN", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET",
           "SENDGRID_API_KEY", "PAYBOT_API_KEY"]


@pytest.fixture
def paybot(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path):  # type: ignore[no-untyped-def]
    """`paybot ARGS...` in this process with exactly the environment given (plus a data folder
    of the test's own): (exit code, stdout, stderr)."""

    def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
        for name in list(os.environ):
            if name.startswith(("STRIPE_", "TWILIO_", "SENDGRID_", "PAYBOT_", "DATABASE_URL",
                                "REDIS_URL", "SECRET_KEY", "PUBLIC_BASE_URL")):
                monkeypatch.delenv(name)
        monkeypatch.setenv("PAYBOT_DATA_DIR", str(tmp_path / "var"))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        with pytest.raises(SystemExit) as ended:
            cli.main(list(args))
        out, err = capsys.readouterr()
        code = ended.value.code
        return (code if isinstance(code, int) else (0 if code is None else 1)), out, err

    return run


def without(*names: str) -> dict[str, str]:
    return {name: value for name, value in PRODUCTION.items() if name not in names}


def states(text: str) -> dict[str, str]:
    """The report's lines, "  STATE    NAME: why", as {NAME: STATE}."""
    return {m.group(2): m.group(1) for m in re.finditer(r"^  (\w+) +([^:]+): ", text, re.M)}


@pytest.mark.parametrize(("variable", "named"), REQUIRED, ids=[v for v, _ in REQUIRED])
def test_each_missing_setting_is_named_and_serve_and_worker_refuse(paybot, variable, named):  # type: ignore[no-untyped-def]
    env = without(variable)
    code, out, _ = paybot(env, "check-config")
    assert code == 1
    assert states(out)[named] == "missing"
    assert f"1 setting(s) to fix: {named}." in out
    for command in (["serve"], ["worker", "--once"], ["chat", "--phone", "+15555550100"]):
        code, out, err = paybot(env, *command)
        assert code == 2 and out == ""
        assert err.startswith(f"paybot {command[0]}: refusing to run in production")
        assert states(err) == {named: "missing"}


def test_every_missing_setting_is_named_in_one_message(paybot):  # type: ignore[no-untyped-def]
    code, _, err = paybot({"PUBLIC_BASE_URL": "https://pay.example.com"}, "serve")
    assert code == 2
    assert states(err) == {name: "missing" for _, name in REQUIRED}


def test_a_short_secret_key_and_a_malformed_key_are_invalid(paybot):  # type: ignore[no-untyped-def]
    env = {**PRODUCTION, "SECRET_KEY": "Tr0ub4dor&3-short", "STRIPE_WEBHOOK_SECRET": "Jq3Lz8Pw",
           "TWILIO_FROM_NUMBER": "5005550006"}
    code, out, _ = paybot(env, "check-config")
    assert code == 1
    report = states(out)
    assert report["SECRET_KEY"] == "invalid" and "17 bytes long; at least 32" in out
    assert report["STRIPE_WEBHOOK_SECRET"] == "invalid"
    assert report["TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"] == "invalid"
    assert "3 setting(s) to fix" in out


def test_no_secret_is_ever_shown_not_even_partly(paybot):  # type: ignore[no-untyped-def]
    invalid = {**PRODUCTION, "SECRET_KEY": "Yh5Gt7Rf2Ed",  # too short: its value is not shown
               "STRIPE_SECRET_KEY": "xk_Ui8Oy6Tr4Ew2Qa9Sd", "SENDGRID_API_KEY": "Bv3Nc7Xz1Lk5"}
    outputs = [
        *paybot(PRODUCTION, "check-config")[1:],
        *paybot(invalid, "check-config")[1:],
        *paybot(invalid, "serve")[1:],
        *paybot(without("TWILIO_AUTH_TOKEN"), "worker", "--once")[1:],
    ]
    shown = "\n".join(outputs)
    assert "Everything production needs is set." in shown and "invalid" in shown
    for env in (PRODUCTION, invalid):
        for name in SECRETS:
            value = env[name]
            pieces = {value[i:i + 6] for i in range(len(value) - 5)}
            assert not [piece for piece in pieces if piece in shown], name


def test_check_config_passes_when_production_has_everything(paybot):  # type: ignore[no-untyped-def]
    code, out, err = paybot(PRODUCTION, "check-config")
    assert (code, err) == (0, "")
    assert set(states(out).values()) == {"ok", "optional"}
    assert "sandbox" not in out


def test_outside_production_check_config_notes_the_sandboxes_and_exits_0(paybot):  # type: ignore[no-untyped-def]
    code, out, _ = paybot({}, "check-config")
    assert code == 0
    assert out.startswith("Not production")
    report = states(out)
    assert report["SECRET_KEY"] == "missing"
    assert report["TWILIO_AUTH_TOKEN"] == "optional"
    assert (report["SMS"], report["email"], report["payments"]) == ("sandbox",) * 3
    assert "inbound Twilio webhooks are accepted unsigned" in out
    assert "known development key" in out


def test_outside_production_the_worker_warns_at_start(paybot, caplog):  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING):
        code, _, _ = paybot({}, "worker", "--once")
    assert code == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith("not production: SECRET_KEY: not set: the known development key")
               for w in warned)
    assert any(w.startswith("not production: TWILIO_AUTH_TOKEN: not set: inbound Twilio "
                            "webhooks are accepted unsigned") for w in warned)
    assert any(w.startswith("not production: payments: in memory") for w in warned)


@pytest.mark.parametrize("url", [
    "https://", "pay.example.com", "https://pay example.com", "https://pay.example.com?x=1",
    "https://ops:Hunter2secret@pay.example.com", "https://pay.example.com:99999", "ftp://pay.example.com",
])
def test_a_public_base_url_that_is_not_an_absolute_url_is_refused(paybot, url):  # type: ignore[no-untyped-def]
    for command in (["check-config"], ["serve"], ["demo", "--once"]):
        code, out, err = paybot({**PRODUCTION, "PUBLIC_BASE_URL": url}, *command)
        assert code != 0 and out == ""
        assert err.startswith("paybot: configuration error: PUBLIC_BASE_URL ")
        assert "Hunter2" not in err


def test_the_demo_never_runs_in_production(paybot):  # type: ignore[no-untyped-def]
    code, out, err = paybot(PRODUCTION, "demo", "--once")
    assert code == 2 and out == ""
    assert "never in production" in err


def test_no_sandbox_in_production(tmp_path: Path) -> None:
    production = Settings(public_base_url="https://pay.example.com", data_dir=tmp_path,
                          twilio_auth_token="x" * 32)
    with pytest.raises(ConfigError) as refused:
        build_providers(production)
    assert "STRIPE_SECRET_KEY" in str(refused.value) and "SECRET_KEY" in str(refused.value)
    with pytest.raises(ConfigError):
        create_app(production)
    # Outside production the sandboxes stand in, with no configuration at all.
    assert type(build_providers(Settings(data_dir=tmp_path)).payments).__name__ == "SandboxGateway"


async def test_production_never_believes_an_unsigned_twilio_webhook(  # type: ignore[no-untyped-def]
    settings, providers, clock, aiohttp_client
) -> None:
    # An app built with given providers skips the start-up refusal (tests do it); the webhook
    # itself still refuses in production when there is no token to check a signature with.
    assert settings.production
    client = await aiohttp_client(create_app(settings.replace(twilio_auth_token=None),
                                             providers, clock))
    for path in ("/webhooks/twilio/sms", "/webhooks/twilio/status"):
        response = await client.post(path, data={"From": "+15555550100", "Body": "BALANCE",
                                                 "MessageSid": "SM1", "MessageStatus": "failed",
                                                 "ErrorCode": "21610"})
        assert response.status == 403


def test_check_config_reports_paypal_and_the_shutdown_grace(paybot):  # type: ignore[no-untyped-def]
    code, out, err = paybot(PRODUCTION, "check-config")
    assert (code, err) == (0, "")
    assert "  optional PAYPAL_CLIENT_ID: not set: PayPal is not offered\n" in out
    assert ("  ok       PAYBOT_SHUTDOWN_GRACE_SECONDS: 20 s to finish requests and charges in "
            "flight on SIGTERM\n") in out

    paypal = {"PAYPAL_CLIENT_ID": "AeB7xQ2mZp9", "PAYBOT_SHUTDOWN_GRACE_SECONDS": "45"}
    code, out, err = paybot({**PRODUCTION, **paypal}, "check-config")
    assert code == 1 and "Kq8sVw" not in out and "AeB7xQ2mZp9" not in out
    report = states(out)
    assert (report["PAYPAL_CLIENT_ID"], report["PAYPAL_CLIENT_SECRET"],
            report["PAYPAL_WEBHOOK_ID"]) == ("ok", "missing", "missing")
    assert "PAYBOT_SHUTDOWN_GRACE_SECONDS: 45 s to finish requests and charges in flight on " \
           "SIGTERM (set)" in out

    code, _, err = paybot({"PAYBOT_SHUTDOWN_GRACE_SECONDS": "soon"}, "check-config")
    assert code == 2
    assert "PAYBOT_SHUTDOWN_GRACE_SECONDS must be a whole number of at least 1" in err
