"""A contact (mobile number or email) changes only with proof that the customer holds it.

A new contact given at the contact review step (web form, or an email sent by text) gets a
one-time code of its own; the change is kept in the flow's context as *pending* (the code only as
a keyed hash, bound to the conversation, the kind and the new value) and takes effect when that
code comes back. Until then nothing changes: look-up codes, texts and receipts keep going to the
contacts on file, so whoever holds a link cannot move the account to a phone they control.

When a change does take effect, the old contact is told (a text to the old number, an email to
the old address), with masked values only: a change the customer did not make does not go
unnoticed.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from html import escape
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.accounts import second_factor
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Message, OutboundEmail
from bot.outreach import email_outbox
from bot.outreach.notifications import Notifier
from bot.providers.sms import SmsError
from bot.security import (
    code_digest,
    constant_time_equal,
    mask_email,
    mask_phone,
    new_one_time_code,
)
from bot.text.gsm7 import to_gsm7

log = logging.getLogger(__name__)

from states.payment import CONTACT_PENDING as PENDING  # noqa: E402  (the flow's context key)

CODE_LIFETIME = timedelta(minutes=10)
TRIES = 3  # wrong codes per pending contact before the change is dropped
_CODE = re.compile(r"^\s*(\d{3})[\s-]?(\d{3})\s*$")


def mask(kind: str, value: str | None) -> str | None:
    return mask_email(value) if kind == "email" else mask_phone(value)


def read_code(text: str) -> str | None:
    """A six-digit code as people type it ("123456", "123 456", "123-456")."""
    match = _CODE.match(text)
    return match.group(1) + match.group(2) if match else None


def _scope(conversation_id: int, kind: str, value: str) -> str:
    # Bound to the value: a code sent to one contact cannot confirm another.
    return f"contact:{conversation_id}:{kind}:{value}"


SENT, NOT_SENT, CAPPED = "sent", "not_sent", "capped"


async def send_code(
    session: AsyncSession,
    notifier: Notifier,
    *,
    account_id: int,
    kind: str,
    to: str,
    code: str,
    brand: str,
    now: datetime,
) -> str:
    """The one place a contact-change code leaves PayBot: SENT, NOT_SENT (opted out, refused),
    or CAPPED (the account or the new contact had its codes for the hour or the day: the caps
    of every code PayBot sends, bot.accounts.second_factor)."""
    if kind == "phone" and await ledger.is_opted_out(session, to):
        return NOT_SENT
    try:
        await second_factor.reserve_code(
            session,
            subject=second_factor.account_subject(account_id),
            destinations=[to],
            now=now,
            purpose="contact_change",
        )
    except second_factor.CodeLimitReached:
        return CAPPED
    body = to_gsm7(" ".join(
        notifier.env.get_template("sms/contact_code.txt").render(brand=brand, code=code).split()
    ))
    if kind == "phone":
        try:
            await notifier.sms.send(to=to, body=body)
        except SmsError:
            log.warning("contact-change code not sent by text")
            return NOT_SENT
        return SENT
    sent = await notifier.send_email(
        to=to,
        subject=f"{brand}: your verification code",
        text=body,
        html=f"<p>{escape(body)}</p>",
        transactional=True,  # asked for, this minute, by the customer
    )
    return SENT if sent else NOT_SENT


async def offer_codes(
    session: AsyncSession,
    notifier: Notifier,
    context: dict[str, Any],
    changes: dict[str, str],
    *,
    secret_key: str,
    account_id: int,
    conversation_id: int,
    brand: str,
    now: datetime,
) -> tuple[list[str], list[str], bool]:
    """Send a code to each new contact and keep the change pending in ``context``.
    Returns the masked contacts a code went to, those it could not be sent to, and whether a
    cap on codes was the reason."""
    # A code already out for the same new contact stays good when no new one can be sent.
    earlier: dict[str, dict[str, Any]] = dict(context.get(PENDING) or {})
    pending = {k: e for k, e in earlier.items() if changes.get(k) == e.get("to")}
    sent, failed, capped = [], [], False
    for kind, value in changes.items():
        code = new_one_time_code()
        masked = mask(kind, value) or ""
        outcome = await send_code(
            session, notifier, account_id=account_id, kind=kind, to=value, code=code,
            brand=brand, now=now,
        )
        capped = capped or outcome == CAPPED
        if outcome == SENT:
            pending[kind] = {
                "to": value,
                "masked": masked,
                "sha": code_digest(secret_key, _scope(conversation_id, kind, value), code),
                "expires": (now + CODE_LIFETIME).isoformat(),
                "tries": 0,
            }
            sent.append(masked)
        else:
            failed.append(masked)
    if pending:
        context[PENDING] = pending
    else:
        context.pop(PENDING, None)
    return sent, failed, capped


def check_codes(
    context: dict[str, Any],
    codes: dict[str, str],
    *,
    secret_key: str,
    conversation_id: int,
    now: datetime,
) -> tuple[dict[str, str], bool]:
    """The pending contacts whose code matches (removed from ``context``), and whether a code
    entered was wrong. A contact with ``TRIES`` wrong codes is dropped: it stays as on file."""
    pending: dict[str, dict[str, Any]] = dict(context.get(PENDING) or {})
    proved: dict[str, str] = {}
    wrong = False
    for kind, code in codes.items():
        entry = pending.get(kind)
        if not code:
            continue
        if entry is None:
            wrong = True
            continue
        fresh = now < datetime.fromisoformat(str(entry["expires"]))
        digest = code_digest(secret_key, _scope(conversation_id, kind, str(entry["to"])), code)
        if fresh and constant_time_equal(digest, str(entry["sha"])):
            proved[kind] = str(entry["to"])
            del pending[kind]
            continue
        wrong = True
        entry = {**entry, "tries": int(entry["tries"]) + 1}
        if entry["tries"] >= TRIES or not fresh:
            del pending[kind]
        else:
            pending[kind] = entry
    if pending:
        context[PENDING] = pending
    else:
        context.pop(PENDING, None)
    return proved, wrong


async def tell_old_contact(
    session: AsyncSession,
    notifier: Notifier,
    account: Account,
    *,
    kind: str,
    old: str | None,
    new: str,
    brand: str,
    support_contact: str,
    conversation_id: int | None,
    now: datetime,
) -> OutboundEmail | None:
    """Tell the contact that was replaced. A text goes now (unless the number opted out); an
    email is queued in ``session`` (sent once it commits) and returned."""
    if not old or old == new:
        return None
    what = "email address" if kind == "email" else "mobile number"
    context = {
        "brand": brand,
        "what": what,
        "masked_old": mask(kind, old),
        "masked_new": mask(kind, new),
        "support_contact": support_contact,
    }
    text = to_gsm7(" ".join(
        notifier.env.get_template("sms/contact_changed.txt").render(context).split()
    ))
    if kind == "phone":
        if await ledger.is_opted_out(session, old):
            return None
        try:
            sent = await notifier.sms.send(to=old, body=text)
        except SmsError:
            log.warning("the old number was not told of the change")
            return None
        session.add(
            Message(
                conversation_id=conversation_id,
                direction="outbound",
                author="bot",
                channel="sms",
                provider_sid=sent.sid,
                phone=old,
                body=text,
                status=sent.status,
                created_at=now,
            )
        )
        return None
    email = {
        "to": old,
        "subject": f"{brand}: your {what} was changed",
        "text": text,
        "html": f"<p>{escape(text)}</p>",
        "transactional": True,  # about the account's safety: it goes even after an unsubscribe
    }
    return email_outbox.queue(
        session, email, kind="contact_changed", account_id=account.id, at=now
    )
