"""The words of every email a customer gets, in the account's language: one renderer
(``render_email``: subject, text and HTML of ``bot/templates/email/NAME*``) and the pieces the
emails' contexts share (a method's label, the debt-collector disclosure, the account's name).

May import: bot.text, bot.ledger.models, bot.outreach.compliance (the default disclosure).
Imported by the notifier, the outbox's callers in bot.payments and bot.plans, and the decline
notices.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment

from bot.ledger.models import Account
from bot.outreach.compliance import DEFAULT_DISCLOSURE
from bot.text import i18n
from bot.text.i18n import N_

# Where an account's zone is unknown, its dates are Eastern (as the rest of PayBot shows them).
DEFAULT_ZONE = ZoneInfo("America/New_York")
_METHOD = re.compile(r"(?P<brand>.+) ending (?P<last4>\w{2,4})")
N_("This is a communication from a debt collector.")  # DEFAULT_DISCLOSURE, in each language


def method_words(label: str) -> str:
    """A method's label ("Visa ending 4242", as the ledger's callers write it) in the language
    being rendered: "Visa terminada en 4242"."""
    found = _METHOD.fullmatch(label)
    if found is None:
        return label
    return i18n.gettext("%(brand)s ending %(last4)s") % found.groupdict()


def disclosure_words(disclosure: str | None) -> str:
    """The creditor's debt-collector disclosure, else the default, which reads in the language
    being rendered (a creditor's own text is kept as the creditor wrote it)."""
    return i18n.gettext(disclosure or DEFAULT_DISCLOSURE)


def render_email(
    env: Environment, name: str, context: Mapping[str, Any], *, language: str | None
) -> dict[str, str]:
    """Subject (``email/NAME_subject.txt``, one line), text and HTML of one email in
    ``language`` (the account's; None is English): every email a customer gets is written
    here, so its words, dates and method labels all follow the one language. A ``disclosure``
    in the context is the creditor's; empty, the default, in that language."""
    env.filters.setdefault("method", method_words)
    with i18n.using(language):
        if "disclosure" in context:  # every email from a debt collector says so (FDCPA 807(11))
            context = {**context, "disclosure": disclosure_words(context["disclosure"])}
        subject = " ".join(env.get_template(f"email/{name}_subject.txt").render(context).split())
        context = {**context, "subject": subject}
        return {
            "subject": subject,
            "text": env.get_template(f"email/{name}.txt").render(context).strip() + "\n",
            "html": env.get_template(f"email/{name}.html").render(context),
        }


def account_label(account: Account) -> str:
    return account.description or account.account_ref
