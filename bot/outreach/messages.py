"""What a proactive message says: the templates' context (who, the offer's terms in the
customer's zone) and the text (GSM-7, at most two segments without the disclosure) and email
composed from it."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from typing import Any

from jinja2 import Environment
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.settings import FlowSettings, Settings
from bot.ledger.models import Account, Conversation, Creditor, Offer
from bot.outreach.campaigns import format_local_time
from bot.outreach.compliance import DEFAULT_DISCLOSURE
from bot.outreach.email_texts import render_email
from bot.outreach.timing import local_date
from bot.text import i18n
from bot.text.gsm7 import segment_count
from bot.text.rendering import SmsRenderer
from states.replies import Reply

SMS_SEGMENTS = 2  # without the disclosure; only the legal text may make a first text longer
SUBJECT_LIMIT = 200


def describe_installments(amounts: list[int]) -> tuple[int, int | None, str | None]:
    """(usual amount, the odd one, "first" | "last") of a schedule: 6 x $208.34 with the last at
    $208.30 reads "6 payments of $208.34 (last $208.30)"."""
    if not amounts:
        return 0, None, None
    usual = Counter(amounts).most_common(1)[0][0]
    odd = [i for i, cents in enumerate(amounts) if cents != usual]
    if not odd:
        return usual, None, None
    if odd == [0]:
        return usual, amounts[0], "first"
    if odd == [len(amounts) - 1]:
        return usual, amounts[-1], "last"
    return max(amounts), None, "up to"


def message_context(
    settings: Settings, account: Account, creditor: Creditor | None, flow: FlowSettings,
    offer: Offer | None, now: datetime,
) -> dict[str, Any]:
    """What every outreach template reads: who, the offer's terms in the customer's zone."""
    brand = (creditor.shown_name if creditor else "") or " ".join(settings.brand.split())
    context: dict[str, Any] = {
        "brand": brand,
        "first_name": account.first_name,
        "support_contact": (creditor.support_contact if creditor else "")
        or settings.support_contact,
        "disclosure": (creditor.disclosure if creditor else "") or DEFAULT_DISCLOSURE,
        "sms_signing": flow.sms_plan_signing,
        "link_url": "",
        **offer_terms(offer, account.timezone, now),
    }
    return context


def offer_terms(offer: Offer | None, timezone: str | None, now: datetime) -> dict[str, Any]:
    if offer is None:
        return {"offer_kind": None, "total_cents": 0, "installment_count": 0,
                "installment_cents": 0, "odd_cents": None, "odd_position": None,
                "first_on": None, "schedule": [], "expires_on": None, "expires": None,
                "days_left": None, "frequency": None}
    schedule = [(date.fromisoformat(day), int(cents)) for day, cents in (offer.schedule or [])]
    count = len(schedule) or max(1, offer.installment_count)
    if schedule:
        usual, odd, position = describe_installments([cents for _, cents in schedule])
    else:
        usual, odd, position = -(-offer.total_cents // count), None, None
    expires_on = local_date(offer.expires_at, timezone) if offer.expires_at else None
    days_left = None
    if offer.expires_at is not None:
        days_left = max(0, (expires_on - local_date(now, timezone)).days)  # type: ignore[operator]
    return {
        "offer_kind": offer.kind,
        "total_cents": offer.total_cents,
        "installment_count": count,
        "installment_cents": usual,
        "odd_cents": odd,
        "odd_position": position,
        "first_on": schedule[0][0] if schedule else None,
        "schedule": schedule,
        "frequency": offer.frequency,
        "expires_on": expires_on,
        "expires": format_local_time(offer.expires_at, timezone) if offer.expires_at else None,
        "days_left": days_left,
    }


SMS_TEMPLATES = {"offer": "offer", "reminder": "reminder", "expired": "offer_expired",
                 "payment_canceled": "payment_canceled"}  # bot/payments/cancellation.py
EMAIL_TEMPLATES = {"offer": "offer", "reminder": "reminder", "expired": "offer_expired"}
# Rows of other kinds are recorded by whoever sends them (e.g. the agreement copy): left alone.
DELIVERED_KINDS = tuple(SMS_TEMPLATES)


def notice_terms(detail: dict[str, Any] | None) -> dict[str, Any]:
    """A notice's own terms, as queued with its row (``detail["notice"]``: JSON, so a day is
    ISO text until here)."""
    terms = dict((detail or {}).get("notice") or {})
    for key, value in terms.items():
        if key.endswith("_on") or key == "scheduled_for":
            terms[key] = date.fromisoformat(value)
    return terms


async def texting_language(session: AsyncSession, account: Account) -> str:
    """The language of a proactive text: what the customer chose by text at that phone
    (ESPAÑOL / ENGLISH), else the account's, else English."""
    chosen = None
    if account.phone:
        chosen = await session.scalar(
            select(Conversation.language).where(Conversation.phone == account.phone)
        )
    return i18n.language_for(chosen, account.language)


def compose_sms(
    renderer: SmsRenderer, kind: str, context: dict[str, Any], *, disclosure: str,
    language: str | None = None,
) -> str:
    """GSM-7, at most two segments without the disclosure (a long name or brand is shortened,
    then the details the link shows anyway are left out); the disclosure rides on the first text
    to a number."""
    template = SMS_TEMPLATES[kind]
    values = {**context, "compact": False}

    def render(with_disclosure: bool) -> str:
        return renderer.render(
            Reply(template, {}),
            {**values, "disclosure": f"{disclosure} " if with_disclosure and disclosure else ""},
            language,
        )

    for shorten in ("first_name", "brand", "compact"):
        if segment_count(render(False)) <= SMS_SEGMENTS:
            break
        if shorten == "first_name":
            values["first_name"] = (values["first_name"].split() or [""])[0][:20]
        elif shorten == "brand":
            values["brand"] = values["brand"][:30].rstrip()
        else:
            values["compact"] = True
    return render(True)


def compose_email(
    env: Environment, kind: str, context: dict[str, Any], *, language: str | None = None
) -> dict[str, str]:
    """Subject, text and HTML in ``language`` (the account's), and the creditor as the sender's
    name (``from_name``)."""
    name = EMAIL_TEMPLATES[kind]
    message = render_email(env, name, context, language=language)
    return {**message, "subject": message["subject"][:SUBJECT_LIMIT],
            "from_name": context["brand"]}
