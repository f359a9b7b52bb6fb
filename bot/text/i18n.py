"""Languages: English and Spanish from one set of templates, through gettext catalogs.

English is the source (the msgid); Spanish lives in `bot/locale/es/LC_MESSAGES/<domain>.po`,
one catalog per surface (`scripts/messages.py` says which folders feed which domain), compiled
in memory with Babel the first time a language is used, so nothing compiled is kept in git and
nothing has to be built before a run.

The language of what is being rendered is a context variable, set once where the language is
known (a conversation's turn, a portal request, an email queued for an account) with
`using(language)`; templates (`{% trans %}`, `_()`), the `day` filter and Python's `gettext`
below all read it. Code that renders for a customer passes the language it knows; nothing
guesses.
"""

from __future__ import annotations

import gettext as _gettext
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, timedelta
from functools import cache
from io import BytesIO
from pathlib import Path

from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import Environment

LANGUAGES: tuple[str, ...] = ("en", "es")
DEFAULT_LANGUAGE = "en"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
# Babel's locale for each language: customers are in the United States (es_US writes money as
# $1,250.00, as en_US does).
BABEL_LOCALES = {"en": "en_US", "es": "es_US"}
LANGUAGE_NAMES = {"en": "English", "es": "Español"}

_NAMES = {
    "en": "en", "eng": "en", "english": "en", "ingles": "en", "inglés": "en",
    "en-us": "en", "en_us": "en",
    "es": "es", "spa": "es", "spanish": "es", "espanol": "es", "español": "es",
    "es-us": "es", "es_us": "es", "es-mx": "es", "es_mx": "es",
}

_current: ContextVar[str] = ContextVar("paybot_language", default=DEFAULT_LANGUAGE)


def normalize_language(value: object) -> str | None:
    """`en` or `es` for a code or name a creditor or customer might give, else None."""
    if not isinstance(value, str):
        return None
    return _NAMES.get(value.strip().lower())


def language_for(*choices: str | None) -> str:
    """The first language given that we write (a conversation's choice, then its account's),
    else English."""
    for choice in choices:
        if (language := normalize_language(choice)) is not None:
            return language
    return DEFAULT_LANGUAGE


def current_language() -> str:
    return _current.get()


@contextmanager
def using(language: str | None) -> Iterator[str]:
    """Render in `language` (None or unknown: English) inside the block."""
    chosen = normalize_language(language) or DEFAULT_LANGUAGE
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


def set_language(language: str | None) -> str:
    """Set the language for the rest of this task (a portal request's middleware)."""
    chosen = normalize_language(language) or DEFAULT_LANGUAGE
    _current.set(chosen)
    return chosen


@cache
def translations(language: str) -> _gettext.NullTranslations:
    """Every catalog of `language` merged into one; English is the source itself."""
    folder = LOCALE_DIR / language / "LC_MESSAGES"
    if language == DEFAULT_LANGUAGE or not folder.is_dir():
        return _gettext.NullTranslations()
    merged: Translations | None = None
    for po in sorted(folder.glob("*.po")):
        with po.open("rb") as handle:
            catalog = read_po(handle, locale=BABEL_LOCALES.get(language, language))
        compiled = BytesIO()
        write_mo(compiled, catalog, use_fuzzy=False)  # a fuzzy guess is never shown
        compiled.seek(0)
        loaded = Translations(compiled, domain=po.stem)
        merged = loaded if merged is None else merged.merge(loaded)
    return merged or _gettext.NullTranslations()


def gettext(message: str) -> str:
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    return translations(_current.get()).pgettext(context, message)


def N_(message: str) -> str:  # noqa: N802 (gettext's conventional name)
    """Marks a module-level English text for extraction; `gettext(value)` translates it when
    shown, in the language of that moment."""
    return message


def format_day(day: date) -> str:
    """`Dec 15, 2026` in English, `15 dic 2026` in Spanish."""
    language = _current.get()
    if language == DEFAULT_LANGUAGE:
        return f"{day:%b} {day.day}, {day.year}"
    return format_date(day, "medium", locale=BABEL_LOCALES[language])


def format_month_day(day: date) -> str:
    """`Dec 15` in English, `15 dic` in Spanish."""
    language = _current.get()
    if language == DEFAULT_LANGUAGE:
        return f"{day:%b} {day.day}"
    return format_date(day, "d MMM", locale=BABEL_LOCALES[language])


class LocalMoment:
    """A moment in the customer's zone, worded only when shown ("Nov 28, 2026 at 10:00 AM EST",
    "28 nov 2026 a las 10:00 AM EST"): a context built before the language of the rendering is
    set still reads in that language."""

    __slots__ = ("local",)

    def __init__(self, local: datetime) -> None:
        self.local = local

    def __str__(self) -> str:
        local = self.local
        time = f"{local.hour % 12 or 12}:{local:%M} {'AM' if local.hour < 12 else 'PM'}"
        return gettext("%(day)s at %(time)s") % {
            "day": format_day(local.date()), "time": f"{time} {local.tzname()}",
        }

    def __eq__(self, other: object) -> bool:
        return str(self) == other if isinstance(other, str) else (
            isinstance(other, LocalMoment) and other.local == self.local
        )

    def __hash__(self) -> int:
        return hash(self.local)


# An account without a description of its own is "your account" (bot/sms/views.py).
DEFAULT_DESCRIPTION = N_("your account")
# What a payment method is called when it has no brand of its own (a bank account, PayPal).
_KINDS = (N_("Bank"), N_("Bank account"), N_("Card"), N_("card"), N_("bank account"),
          N_("PayPal account"))
_ENDING = re.compile(r"^(?P<brand>.+) ending (?P<last4>\S+)$")


def method_label(label: object) -> object:
    """`Visa ending 4242` (as states/ and the ledger write it) in the language of the moment:
    `Visa terminada en 4242`; a generic kind ("Bank") is translated, a brand is a name."""
    if not isinstance(label, str) or not label:
        return label
    found = _ENDING.match(label)
    if found is None:
        return gettext(label) if label in _KINDS else label
    brand = found["brand"]
    return gettext("%(brand)s ending %(last4)s") % {
        "brand": gettext(brand) if brand in _KINDS else brand,
        "last4": found["last4"],
    }


def method_words(words: str) -> str:
    """"card or bank account", "card, bank account or PayPal account"
    (FlowSettings.method_words) in the language of the moment."""
    head, _, last = words.rpartition(" or ")
    parts = [*(head.split(", ") if head else []), last]
    parts = [gettext(part) if part in _KINDS else part for part in parts]
    if len(parts) == 1:
        return parts[0]
    return gettext("%(first)s or %(second)s") % {
        "first": ", ".join(parts[:-1]), "second": parts[-1]
    }


_BACK = {
    "today": N_("today at %(time)s"),
    "tomorrow": N_("tomorrow at %(time)s"),
    "weekday": N_("%(weekday)s at %(time)s"),
}


def when_back(wait: object) -> str:
    """A handoff's "back" (bot/config/flow.FlowSettings.agent_wait) in the language of the
    moment: "Monday at 8:00 AM EST", "el lunes a las 8:00 AM EST"."""
    get = getattr(wait, "get", None)
    if get is None:
        return ""
    opens, today, english = get("opens"), get("today"), str(get("back") or "")
    language = _current.get()
    if language == DEFAULT_LANGUAGE or not isinstance(opens, datetime) or today is None:
        return english
    time = f"{opens.hour % 12 or 12}:{opens:%M} {'AM' if opens.hour < 12 else 'PM'} {opens:%Z}"
    if opens.date() == today:
        return gettext(_BACK["today"]) % {"time": time}
    if opens.date() == today + timedelta(days=1):
        return gettext(_BACK["tomorrow"]) % {"time": time}
    weekday = format_date(opens.date(), "EEEE", locale=BABEL_LOCALES[language])
    return gettext(_BACK["weekday"]) % {"weekday": weekday, "time": time}


def install(env: Environment) -> Environment:
    """Jinja's i18n extension on `env`, reading the current language at each call. Every
    `{% trans %}` block is trimmed (a template wraps its lines for reading; the catalog holds
    one line)."""
    env.add_extension("jinja2.ext.i18n")
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=gettext, ngettext=ngettext, newstyle=True, pgettext=pgettext
    )
    env.globals["current_language"] = current_language
    env.filters["day"] = format_day
    env.filters["month_day"] = format_month_day
    env.filters["method"] = method_label
    env.filters["method_words"] = method_words
    env.filters["when_back"] = when_back
    return env
