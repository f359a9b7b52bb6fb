"""Turns replies (template name + context) into the texts a customer reads."""

from __future__ import annotations

import re
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from bot.money import format_cents
from bot.text import i18n
from bot.text.gsm7 import to_gsm7
from bot.text.i18n import format_day
from states.replies import Reply

__all__ = ["SMS_LIMIT", "SmsRenderer", "build_environment", "format_day"]

SMS_LIMIT = 306  # two GSM-7 segments


def build_environment() -> Environment:
    env = Environment(
        loader=PackageLoader("bot", "templates"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        # Every .html template (emails) escapes what it is given; texts (SMS, plain email) are
        # not HTML and stay as written.
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        auto_reload=False,  # packaged templates do not change under a running process
    )
    env.filters["money"] = format_cents
    return i18n.install(env)  # `{% trans %}`, and `day` in the language being rendered


class SmsRenderer:
    def __init__(self, env: Environment | None = None) -> None:
        self.env = env or build_environment()

    def render(self, reply: Reply, base: dict[str, Any], language: str | None = None) -> str:
        """`language` None: the language of the moment (`i18n.using`), else the one given."""
        template = self.env.get_template(f"sms/{reply.template}.txt")
        with i18n.using(language or i18n.current_language()):
            context = {**base, **reply.context}
            # Two values the engine passes in English words: translated as they are shown.
            if isinstance(context.get("method_words"), str):
                context["method_words"] = i18n.method_words(context["method_words"])
            if context.get("description") == i18n.DEFAULT_DESCRIPTION:
                context["description"] = i18n.gettext(i18n.DEFAULT_DESCRIPTION)
            # A creditor's disclosure is shown as loaded, unless it is our default one: that
            # one in the reader's language, as the emails do (bot/outreach/email_texts).
            if isinstance(context.get("disclosure"), str) and context["disclosure"]:
                context["disclosure"] = i18n.gettext(context["disclosure"])
            text = template.render(context)
        # Templates wrap for readability; a single newline is a space, a blank line a line break.
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip())]
        return to_gsm7("\n".join(p for p in paragraphs if p))

    def render_all(
        self, replies: list[Reply], base: dict[str, Any], language: str | None = None
    ) -> list[str]:
        """Render a turn's replies, packing them into as few messages as fit in two segments."""
        messages: list[str] = []
        for reply in replies:
            text = self.render(reply, base, language)
            if messages and len(messages[-1]) + 1 + len(text) <= SMS_LIMIT:
                messages[-1] = f"{messages[-1]}\n{text}"
            else:
                messages.append(text)
        return messages
