"""The gettext catalogs: which folders feed which domain, extraction with Babel, and the check
that every English text has its Spanish.

`python -m bot.text.catalogs update` (`make messages`) extracts every domain's texts and merges
them into `bot/locale/es/LC_MESSAGES/<domain>.po` (new texts arrive untranslated, changed ones
fuzzy, so the translator sees them); `check` lists what is missing and exits 1
(tests/test_catalogs.py runs it). May import: babel, jinja2.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent.parent
LOCALE_DIR = ROOT / "bot" / "locale"
TRANSLATED = ("es",)

# Each surface's catalog and the folders its texts come from. A folder belongs to one domain.
DOMAINS: dict[str, tuple[str, ...]] = {
    "sms": (
        "bot/templates/sms", "bot/sms", "states", "bot/inbox", "bot/outreach", "bot/worker",
        "bot/accounts", "bot/text", "bot/providers",
    ),
    "email": ("bot/templates/email", "bot/templates/legal", "bot/plans", "bot/payments",
              "webhooks"),
    "portal": ("portal_fallback",),
}

KEYWORDS = {
    "_": None, "gettext": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2), "N_": None,
}
# Jinja's extractor with the options the renderers use: trimmed `{% trans %}` blocks.
_JINJA = {"trimmed": "true", "trim_blocks": "true", "lstrip_blocks": "true"}
METHOD_MAP = [
    ("**/templates/**.html", "jinja2"),
    ("**/templates/**.txt", "jinja2"),
    ("templates/**.html", "jinja2"),
    ("templates/**.txt", "jinja2"),
    ("**.html", "jinja2"),
    ("**.txt", "jinja2"),
    ("**.py", "python"),
]
OPTIONS_MAP = {pattern: _JINJA for pattern, method in METHOD_MAP if method == "jinja2"}
_PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|\{(\w+)\}")


def extract(domain: str) -> Catalog:
    """Every text of `domain`, as a template catalog (msgids with their locations)."""
    catalog = Catalog(project="paybot", domain=domain, charset="utf-8")
    for folder in DOMAINS[domain]:
        path = ROOT / folder
        if not path.exists():
            continue
        for filename, lineno, message, comments, context in extract_from_dir(
            str(path), METHOD_MAP, OPTIONS_MAP, keywords=KEYWORDS, comment_tags=("Translators:",),
            strip_comment_tags=True,
        ):
            catalog.add(message, None, [(f"{folder}/{filename}", lineno)],
                        auto_comments=comments, context=context)
    return catalog


def po_path(language: str, domain: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{domain}.po"


def read(language: str, domain: str) -> Catalog:
    path = po_path(language, domain)
    if not path.exists():
        return Catalog(locale=language, domain=domain, charset="utf-8")
    with path.open("rb") as handle:
        return read_po(handle, locale=language, domain=domain)


def update() -> None:
    for domain in DOMAINS:
        template = extract(domain)
        for language in TRANSLATED:
            catalog = read(language, domain)
            catalog.update(template, no_fuzzy_matching=False)
            path = po_path(language, domain)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as handle:
                write_po(handle, catalog, width=100, omit_header=False, ignore_obsolete=True,
                         sort_output=False, include_previous=True)


@dataclass(frozen=True)
class Problem:
    language: str
    domain: str
    msgid: str
    what: str

    def __str__(self) -> str:
        return f"{self.language}/{self.domain}: {self.what}: {self.msgid!r}"


def _placeholders(text: str) -> set[str]:
    return {a or b for a, b in _PLACEHOLDER.findall(text)}


def _ids(message_id: str | tuple[str, ...]) -> tuple[str, ...]:
    return (message_id,) if isinstance(message_id, str) else tuple(message_id)


def check() -> list[Problem]:
    """Every extracted text translated (not fuzzy, not empty) with the same placeholders."""
    problems: list[Problem] = []
    for domain in DOMAINS:
        template = extract(domain)
        for language in TRANSLATED:
            catalog = read(language, domain)
            for message in template:
                if not message.id:
                    continue
                first = _ids(message.id)[0]
                found = catalog.get(message.id, context=message.context)
                strings = _ids(found.string) if found is not None else ()
                if found is None or not all(strings):
                    problems.append(Problem(language, domain, first, "not translated"))
                elif found.fuzzy:
                    problems.append(Problem(language, domain, first, "fuzzy"))
                else:
                    want = _placeholders(" ".join(_ids(message.id)))
                    for string in strings:
                        if _placeholders(string) != want:
                            problems.append(Problem(language, domain, first,
                                                    f"placeholders differ in {string!r}"))
    return problems + _disagreements()


def _disagreements() -> list[Problem]:
    """At run time every domain's catalog is merged into one (bot/text/i18n.py): a text
    translated two ways would read one way wherever it shows, whichever domain meant it."""
    problems: list[Problem] = []
    for language in TRANSLATED:
        seen: dict[tuple[str, str | None], tuple[str, object]] = {}
        for domain in DOMAINS:
            for message in read(language, domain):
                if not message.id or not message.string or message.fuzzy:
                    continue
                key = (_ids(message.id)[0], message.context)
                if key in seen and seen[key][1] != message.string:
                    problems.append(Problem(language, domain, key[0],
                                            f"translated otherwise in {seen[key][0]}.po"))
                seen.setdefault(key, (domain, message.string))
    return problems


def main(argv: Iterable[str] = ()) -> int:
    args = list(argv) or ["check"]
    if args[0] == "update":
        update()
        return 0
    problems = check()
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
