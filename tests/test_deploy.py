"""deploy/: what would run in containers or under systemd, run here as plain processes.

No container runs on the machine these tests were written on, so compose.yaml is read (PyYAML,
which the test extras bring with schemathesis) and its PayBot services run as the processes they
name, in their dependency order, on SQLite and free ports: the one-shot migration once, both web
processes (each answers /healthz), one worker pass. The Dockerfile's final stage is checked for
a user that is not root, a health check on /healthz and no compiler; the systemd units for the
settings file, the hardening, the restart rule and commands that `paybot` has."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bot.cli.main import parser
from tests.test_serving import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
WAIT = 60


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def paybot_commands() -> set[str]:
    sub = next(a for a in parser()._actions if a.dest == "command")
    return set(sub.choices)  # type: ignore[arg-type]


def in_order(services: dict[str, Any]) -> list[str]:
    """Services in an order where each comes after what it depends on."""
    done: list[str] = []

    def visit(name: str, path: tuple[str, ...] = ()) -> None:
        assert name not in path, f"a dependency cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for needed in services[name].get("depends_on", {}):
            visit(needed, (*path, name))
        done.append(name)

    for name in services:
        visit(name)
    return done


def test_compose_runs_a_migration_first_then_two_web_processes_a_worker_and_a_proxy():
    services = compose()["services"]
    commands = {name: s.get("command") for name, s in services.items()}
    assert commands["migrate"] == ["paybot", "migrate"]
    assert services["migrate"]["restart"] == "no"
    web = [name for name, c in commands.items() if c and c[:2] == ["paybot", "serve"]]
    assert web == ["web1", "web2"]
    assert [name for name, c in commands.items() if c and c[:2] == ["paybot", "worker"]] == [
        "worker"]
    # Its own /metrics, on the network only (no ports published), for the scraper's token.
    assert commands["worker"][2:] == ["--metrics-host", "0.0.0.0", "--metrics-port", "9101"]
    assert "ports" not in services["worker"]
    for name in [*web, "worker"]:
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"}
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgresql://paybot:${POSTGRES_PASSWORD")
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert environment["PAYBOT_MIGRATE_ON_START"] == "0"
        assert services[name]["stop_grace_period"] == "30s"  # beyond the 20 s grace
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert set(services["proxy"]["depends_on"]) == {"web1", "web2"}
    caddyfile = (DEPLOY / "Caddyfile").read_text()
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in services["proxy"]["volumes"]
    assert "reverse_proxy web1:8080 web2:8080" in caddyfile and "health_uri /readyz" in caddyfile
    assert "respond /metrics 404" in caddyfile
    # The proxy's fixed address is the one proxy PayBot believes about the client's address.
    address = services["proxy"]["networks"]["paybot"]["ipv4_address"]
    assert services["web1"]["environment"]["PAYBOT_TRUSTED_PROXIES"] == f"{address}/32"


async def test_the_compose_services_run_as_processes_and_answer_healthz(tmp_path: Path):
    services = compose()["services"]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PAYBOT_", "STRIPE_", "TWILIO_", "SENDGRID_", "PAYPAL_",
                                "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PUBLIC_BASE_URL"))}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'paybot.sqlite3'}",
               PAYBOT_DATA_DIR=str(tmp_path / "var"), PAYBOT_MIGRATE_ON_START="0",
               PUBLIC_BASE_URL="http://127.0.0.1:8080", SECRET_KEY="deploy-test-secret-key")
    started: dict[str, asyncio.subprocess.Process] = {}
    ports: dict[str, int] = {}
    outputs: dict[str, str] = {}
    try:
        for name in in_order(services):
            command = services[name].get("command") or []
            if command[:1] != ["paybot"]:
                continue  # postgres, redis, the proxy: not run here
            args = list(command[1:])
            if args[0] == "serve":
                ports[name] = free_port()
                args[args.index("--port") + 1] = str(ports[name])
                args[args.index("--host") + 1] = "127.0.0.1"
            if args[0] == "worker":
                ports[name] = free_port()
                args[args.index("--metrics-port") + 1] = str(ports[name])
                args[args.index("--metrics-host") + 1] = "127.0.0.1"
                args.append("--once")
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.cli", *args, cwd=ROOT, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            started[name] = process
            assert process.stdout is not None
            if args[0] == "serve":  # a long-running one: on once it listens
                async with asyncio.timeout(WAIT):
                    while b"Running on" not in (line := await process.stdout.readline()):
                        assert line, f"{name} ended before it listened"
                continue
            async with asyncio.timeout(WAIT):
                out, err = await process.communicate()
            assert process.returncode == 0, (name, out, err)
            outputs[name] = out.decode()

        assert outputs["migrate"].startswith(
            f"{env['DATABASE_URL']}: migrated from no revision (an empty database) to ")
        assert outputs["worker"] == "worker pass: nothing due\n"
        assert set(ports) == {"web1", "web2", "worker"}
        del ports["worker"]  # it served /metrics for its one pass, and is gone
        async with aiohttp.ClientSession() as client:
            for name, port in ports.items():
                async with client.get(f"http://127.0.0.1:{port}/healthz") as response:
                    assert response.status == 200, name
                    assert await response.text() == "ok"
        for name in ports:
            started[name].send_signal(signal.SIGTERM)
        for name in ports:
            async with asyncio.timeout(WAIT):
                assert await started[name].wait() == 0, name
    finally:
        for process in started.values():
            if process.returncode is None:
                process.kill()
                await process.wait()


def stages(dockerfile: str) -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), one list per stage."""
    text = re.sub(r"\\\n", " ", dockerfile)
    found: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            found.append([])
        found[-1].append(line)
    return found


def test_the_image_is_built_in_one_stage_and_runs_slim_as_a_user_with_a_health_check():
    builder, final = stages((DEPLOY / "Dockerfile").read_text())
    assert builder[0] == "FROM python:3.11-slim AS builder"
    assert any("pip wheel" in line and "/wheels" in line for line in builder)
    assert final[0] == "FROM python:3.11-slim AS runtime"
    assert "COPY --from=builder /wheels /wheels" in final
    assert any("--no-index --find-links /wheels paybot" in line for line in final)
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    (health,) = [line for line in final if line.startswith("HEALTHCHECK ")]
    assert "http://127.0.0.1:8080/healthz" in health
    assert not any(word in line for line in final
                   for word in ("build-essential", "gcc", "apt-get install"))
    cmd = [line for line in final if line.startswith("CMD ")][-1]
    assert cmd == 'CMD ["paybot", "serve", "--host", "0.0.0.0", "--port", "8080"]'
    assert any("PAYBOT_MIGRATE_ON_START=0" in line for line in final if line.startswith("ENV"))


def unit(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


@pytest.mark.parametrize("name", ["paybot-web.service", "paybot-worker.service"])
def test_the_systemd_units_run_paybot_commands_hardened_and_restarted_on_failure(name: str):
    values = unit(name)
    commands = paybot_commands()
    for line in values["ExecStart"] + values.get("ExecStartPre", []):
        program, subcommand, *_ = shlex.split(line)
        assert program == "/opt/paybot/venv/bin/paybot"
        assert subcommand in commands, line
    assert values["EnvironmentFile"] == ["/etc/paybot/paybot.env"]
    assert values["Restart"] == ["on-failure"]
    assert values["User"] == ["paybot"]
    assert int(values["TimeoutStopSec"][0]) > 20  # beyond PAYBOT_SHUTDOWN_GRACE_SECONDS
    for setting, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                           ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                           ("CapabilityBoundingSet", "")]:
        assert values[setting] == [value], setting


def test_the_web_unit_migrates_before_it_serves_and_the_worker_comes_after():
    web, worker = unit("paybot-web.service"), unit("paybot-worker.service")
    assert web["ExecStartPre"] == ["/opt/paybot/venv/bin/paybot migrate"]
    assert shlex.split(web["ExecStart"][0])[1] == "serve"
    assert shlex.split(worker["ExecStart"][0])[1:] == ["worker", "--metrics-port", "9101"]
    assert "paybot-web.service" in worker["After"][0].split()


def test_the_settings_example_names_every_credential_check_config_reviews():
    from bot.config.check import review
    from bot.config.settings import Settings

    example = (DEPLOY / "paybot.env.example").read_text()
    named = {item.name for item in review(Settings.from_env({})).items}
    variables = {n for n in named if re.fullmatch(r"[A-Z]+_[A-Z0-9_]+", n)}
    missing = [n for n in sorted(variables) if not n.startswith("PAYBOT_AGENT_WEBHOOK")
               and f"{n}=" not in example]
    assert missing == []
