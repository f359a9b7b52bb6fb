"""The map in docs/architecture.md, held: imports run downward, every package says what it owns,
and no module or class outgrows its room (issue 13).

Imports are read from the source with `ast` (every import, lazy ones inside functions too), so a
shortcut upward fails here before it tangles the layers.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "states", "webhooks", "portal_fallback", "agent_console")
SDKS = ("stripe", "twilio", "sendgrid")
IO_LIBRARIES = ("sqlalchemy", "aiohttp", "redis", "fakeredis", *SDKS)
MAX_MODULE_LINES = 700
MAX_CLASS_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from bot.ledger import queries` imports the module bot.ledger.queries
            names.update(f"{node.module}.{alias.name}" for alias in node.names
                         if f"{node.module}.{alias.name}" in MODULES)
    return names


IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


@dataclass(frozen=True)
class Rule:
    why: str
    importers: tuple[str, ...]
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()  # forbidden packages' modules that may still be imported
    exempt: tuple[str, ...] = ()  # importers the rule does not bind

    def offenders(self) -> list[str]:
        return sorted(
            f"{module} imports {imported}"
            for module, imported_names in IMPORTS.items()
            if _within(module, self.importers) and not _within(module, self.exempt)
            for imported in imported_names
            if _within(imported, self.forbidden) and not _within(imported, self.allowed)
        )


SERVICES = ("bot.accounts", "bot.payments", "bot.plans", "bot.outreach", "bot.text",
            "bot.providers", "bot.config", "bot.inbox", "bot.staff")
TOPS = ("bot.app", "bot.appkeys", "bot.serving", "bot.cli")

# Each rule is a line of the map in docs/architecture.md.
RULES = [
    Rule("the edges (webhooks, pages) sit on top: only the app factory and the CLI mount them",
         ("bot",), ("webhooks", "portal_fallback", "agent_console"), exempt=TOPS),
    Rule("the ledger is the floor: it knows no service above it",
         ("bot.ledger",), (*SERVICES, "bot.sms", "bot.worker", "bot.api", "bot.cli"),
         allowed=("bot.config",)),
    Rule("flows are data: no storage, no provider, no engine, no I/O library",
         ("states",), ("bot.ledger.db", "bot.providers", "bot.sms", "bot.worker", "bot.api",
                       "bot.outreach", "bot.coordination", *IO_LIBRARIES),
         allowed=("bot.sms.parsing",)),
    Rule("the engine is reached only from the surfaces that feed it messages",
         ("bot.ledger", *SERVICES, "bot.worker", "bot.api"), ("bot.sms",),
         allowed=("bot.sms.parsing",)),
    Rule("domain code never reaches for the processes that run it, nor for the web app's keys",
         ("bot.ledger", *SERVICES, "bot.sms", "bot.worker"), TOPS),
    Rule("the REST API runs beside the engine, never through it or the processes",
         ("bot.api",), ("bot.app", "bot.serving", "bot.cli", "bot.sms"),
         allowed=("bot.sms.parsing",)),
    Rule("the logs are the bottom layer: structlog, the standard library and bot/config only",
         ("bot.logs",), PACKAGES, allowed=("bot.config",)),
    Rule("only the providers talk to Stripe, Twilio and SendGrid (webhooks only verify with "
         "the SDKs' validators)", ("bot", "states", "portal_fallback", "agent_console"), SDKS,
         exempt=("bot.providers",)),
]


@pytest.mark.parametrize("rule", RULES, ids=[rule.why.split(":")[0] for rule in RULES])
def test_imports_run_downward(rule):
    assert rule.offenders() == []


def test_bot_holds_no_more_than_a_dozen_modules_and_every_package_says_what_it_owns():
    top = sorted(path.name for path in (ROOT / "bot").glob("*.py"))
    assert len(top) <= 12, top
    for package in sorted(path.parent for path in ROOT.glob("*/**/__init__.py")):
        if package.name in {"tests", "bench"} or "migrations" in package.parts \
                or not _within(package.relative_to(ROOT).parts[0], PACKAGES):
            continue
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
        assert docstring.strip(), f"{package.relative_to(ROOT)} does not say what it owns"


def test_no_module_or_class_outgrows_its_room():
    too_big = []
    for name, path in MODULES.items():
        source = path.read_text()
        lines = source.count("\n") + 1
        if lines > MAX_MODULE_LINES:
            too_big.append(f"module {name}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    too_big.append(f"class {name}.{node.name}: {length} lines")
    assert too_big == []
