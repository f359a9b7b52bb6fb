"""docs/security.md names, for each guarantee, the test that holds it: every name must lead to a
test that exists, so a renamed or deleted test cannot leave a guarantee resting on nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "security.md"

# `tests/test_x.py::Class::test_name` starts a run of references; a later `::test_other` in
# the same line or the next ones refers to the same file.
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?((?:::\w+)*)`")


def _defined(path: Path) -> set[str]:
    """Every test reachable as ``name`` or ``Class::name`` in the file (parametrized ids left
    off: the doc names the function)."""
    names: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(f"{node.name}::{item.name}")
    return names


def references() -> list[tuple[str, str]]:
    """(file, test) for every test the doc names; a file named alone stands for all its tests."""
    found: list[tuple[str, str]] = []
    current: str | None = None
    for match in REFERENCE.finditer(DOC.read_text()):
        file, names = match.group(1), match.group(2)
        if file is None and not names:
            continue
        if file is not None:
            current = file
        assert current is not None, f"{match.group(0)} names a test before any file"
        found.append((current, names.removeprefix("::")))
    return found


def test_every_test_the_security_doc_names_exists() -> None:
    named = references()
    assert len(named) > 80  # the doc was read, not skipped by a broken pattern
    missing = []
    for file, name in named:
        path = ROOT / file
        if not path.is_file():
            missing.append(f"{file} (no such file)")
        elif name and name not in _defined(path):
            missing.append(f"{file}::{name}")
    assert missing == []
