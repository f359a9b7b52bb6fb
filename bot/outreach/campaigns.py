"""`paybot send-links`: the first, personalized message of a campaign, by SMS, email or both."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, select_autoescape
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.settings import Settings
from bot.ledger import queries as ledger
from bot.ledger.db import Database
from bot.ledger.models import Account, AuditEvent, Conversation, Creditor, Link, Message
from bot.outreach.compliance import DEFAULT_DISCLOSURE, in_quiet_hours
from bot.outreach.email_texts import disclosure_words, render_email
from bot.providers.email import EmailError, EmailSender
from bot.providers.sms import RecipientOptedOut, SmsError, SmsSender
from bot.text import i18n
from bot.text.gsm7 import segment_count
from bot.text.rendering import SmsRenderer, build_environment
from states.replies import Reply

MAX_SEGMENTS = 2  # without the disclosure; only the legal text may make it longer
VIA = {"sms": ("sms",), "email": ("email",), "both": ("sms", "email")}

# Whether an email address asked for no more email (an unsubscribe, a spam report, a hard bounce:
# see webhooks/sendgrid.py). ``send_links`` asks the ledger (``ledger.is_email_opted_out``) unless
# a caller passes a check of its own: the check is on by default, never opt-in.
EmailOptOutCheck = Callable[[AsyncSession, str], Awaitable[bool]]


class CampaignError(ValueError):
    """The campaign cannot start (e.g. an unknown creditor); nothing was sent."""


@dataclass
class ChannelReport:
    """What happened on one channel (sms or email) in one run."""

    channel: str
    sent: int = 0
    opted_out: int = 0  # opted out in the ledger before the run
    carrier_opted_out: int = 0  # SMS: the carrier refused (Twilio 21610), now recorded
    quiet_hours: int = 0
    no_address: int = 0  # no phone (sms) / no email (email) on file
    nothing_owed: int = 0
    already_sent: int = 0  # a campaign link went out on this channel within the link lifetime
    shared_phone: int = 0  # SMS: the number was already texted in this run for another account
    failed: list[tuple[str, str]] = field(default_factory=list)  # (account_ref, reason)

    def summary(self, not_found: int = 0) -> str:
        parts = [f"{self.sent} sent"]
        for count, label in (
            (self.opted_out, "skipped (opted out)"),
            (self.carrier_opted_out, "opted out at the carrier (recorded)"),
            (self.quiet_hours, "held (quiet hours)"),
            (self.already_sent, "skipped (link already sent)"),
            (self.shared_phone, "skipped (number shared with an account just texted)"),
            (self.no_address, "without a phone" if self.channel == "sms" else "without an email"),
            (self.nothing_owed, "with nothing owed"),
            (not_found, "not found"),
        ):
            if count:
                parts.append(f"{count} {label}")
        parts.append(f"{len(self.failed)} failed")
        return ", ".join(parts)


@dataclass
class CampaignReport:
    via: tuple[str, ...] = ("sms",)
    sms: ChannelReport = field(default_factory=lambda: ChannelReport("sms"))
    email: ChannelReport = field(default_factory=lambda: ChannelReport("email"))
    unknown: list[str] = field(default_factory=list)  # --account values with no account

    def channel(self, name: str) -> ChannelReport:
        return self.sms if name == "sms" else self.email

    @property
    def failed(self) -> list[tuple[str, str, str]]:
        """(channel, account_ref, reason) for every send that failed, on the channels used."""
        return [(name, ref, reason) for name in self.via
                for ref, reason in self.channel(name).failed]

    @property
    def summary(self) -> str:
        """SMS alone as it always read ("3 sent, 1 skipped (opted out), 0 failed"); otherwise
        per channel ("sms: 3 sent, ..., 0 failed; email: 4 sent, 1 without an email, 0 failed")."""
        if self.via == ("sms",):
            return self.sms.summary(len(self.unknown))
        if len(self.via) == 1:
            return f"{self.via[0]}: {self.channel(self.via[0]).summary(len(self.unknown))}"
        text = "; ".join(f"{name}: {self.channel(name).summary()}" for name in self.via)
        return f"{text}; {len(self.unknown)} not found" if self.unknown else text


async def send_links(
    *,
    settings: Settings,
    database: Database,
    sms: SmsSender | None = None,
    email: EmailSender | None = None,
    clock: Any,
    via: str = "sms",
    account_refs: list[str] | None = None,
    creditor: str | None = None,
    email_opted_out: EmailOptOutCheck | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> CampaignReport:
    """Send each selected account its personalized link by ``via``: "sms", "email" or "both".

    Selected: the accounts named in ``account_refs`` (any case), else every account with a
    balance and an address on a chosen channel; either way only ``creditor``'s when given.
    Each channel gets a link of its own. Skipped per channel, and counted: no address on file,
    opted out (SMS: the ledger; email: ``email_opted_out``, by default the ledger's email
    opt-outs), quiet hours in the account's zone (Reg F: email too), a campaign link sent on
    that channel still valid (so a re-run after an interruption sends nobody the same channel
    twice), SMS: a number already texted in this run.
    """
    if via not in VIA:
        raise CampaignError(f"--via must be sms, email or both, not {via!r}")
    channels = VIA[via]
    if "sms" in channels and sms is None:
        raise CampaignError("no SMS sender")
    if "email" in channels and email is None:
        raise CampaignError("no email sender")
    if email_opted_out is None:
        email_opted_out = ledger.is_email_opted_out
    report = CampaignReport(via=channels)
    async with database.session() as session:
        if creditor and await session.get(Creditor, creditor) is None:
            raise CampaignError(f"no creditor with the code {creditor!r}")
        query = select(Account.id, Account.account_ref).order_by(Account.id)
        if account_refs:
            wanted = {ref.strip().lower(): ref for ref in account_refs}
            query = query.where(func.lower(Account.account_ref).in_(list(wanted)))
        else:
            reachable = [
                (Account.phone if name == "sms" else Account.email).is_not(None)
                for name in channels
            ]
            query = query.where(or_(*reachable), Account.balance_cents > 0)
        if creditor:
            query = query.where(Account.creditor_code == creditor)
        rows = (await session.execute(query)).all()
    if account_refs:
        found = {ref.lower() for _, ref in rows}
        report.unknown = [ref for key, ref in wanted.items() if key not in found]
    if on_total:
        on_total(len(rows))
    renderer = SmsRenderer()
    email_env = email_environment()
    status_callback = f"{settings.public_base_url}/webhooks/twilio/status"
    texted: set[str] = set()
    for account_id, account_ref in rows:
        for name in channels:
            counts = report.channel(name)
            try:
                if name == "sms":
                    assert sms is not None
                    outcome = await _send_sms(database, account_id, settings, sms, renderer,
                                              clock, status_callback, texted)
                else:
                    assert email is not None
                    outcome = await _send_email(database, account_id, settings, email, email_env,
                                                clock, email_opted_out)
            except (SmsError, EmailError) as exc:
                counts.failed.append((account_ref, str(exc)))
            else:
                setattr(counts, outcome, getattr(counts, outcome) + 1)
        if progress:
            progress(1)
    return report


async def _send_sms(
    database: Database, account_id: int, settings: Settings, sms: SmsSender,
    renderer: SmsRenderer, clock: Any, status_callback: str, texted: set[str],
) -> str:
    now = clock.now()
    lifetime = timedelta(hours=settings.link_lifetime_hours)
    async with database.session() as session:
        account = await session.get(Account, account_id)
        if account is None:  # deleted meanwhile
            return "no_address"
        if not account.phone:
            return "no_address"
        if account.balance_cents <= 0:
            return "nothing_owed"
        phone = account.phone
        if phone in texted:
            return "shared_phone"
        if await ledger.is_opted_out(session, phone):
            return "opted_out"
        creditor = await ledger.creditor_of(session, account)
        flow = settings.flow.for_creditor(creditor)
        if in_quiet_hours(now, account.timezone, flow):
            return "quiet_hours"
        if await _link_sent_since(session, account.id, now - lifetime, channel="sms"):
            return "already_sent"
        token = await ledger.create_link(session, account_id=account.id, at=now,
                                         lifetime=lifetime, purpose="campaign")
        link = await ledger.link_for_token(session, token)  # flushes: the row exists
        chosen = await session.scalar(
            select(Conversation.language).where(Conversation.phone == phone)
        )
        body = compose_first_message(
            renderer, account=account, settings=settings, creditor=creditor,
            link_url=f"{settings.public_base_url}/p/{token}",
            language=i18n.language_for(chosen, account.language),
        )
        # The link works before the text that carries it goes out.
        await session.commit()
        try:
            sent = await sms.send(to=phone, body=body, status_callback=status_callback)
        except RecipientOptedOut:
            await _revoke(session, link, now)
            await ledger.set_opt_out(session, phone, opted_out=True, keyword="carrier 21610",
                                     channel="carrier", at=now)
            await session.commit()
            return "carrier_opted_out"
        except SmsError:
            await _revoke(session, link, now)
            await session.commit()
            raise
        texted.add(phone)
        conversation = await ledger.conversation_for(session, phone, at=now)
        if conversation.account_id != account.id and conversation.status in ("bot", "resolved"):
            # The number is on file for this account and we just texted about it.
            conversation.account_id = account.id
            conversation.flow, conversation.state, conversation.context = "payment", "idle", {}
            conversation.updated_at = now
        session.add(Message(conversation_id=conversation.id, direction="outbound", channel="sms",
                            provider_sid=sent.sid, phone=phone, body=body, status=sent.status,
                            author="bot", created_at=now))
        await ledger.audit(session, "link_sent", at=now, account_id=account.id, phone=phone,
                           channel="sms", sid=sent.sid, link_id=link.id if link else None)
        await session.commit()
        return "sent"


async def _send_email(
    database: Database, account_id: int, settings: Settings, email: EmailSender,
    env: Environment, clock: Any, email_opted_out: EmailOptOutCheck,
) -> str:
    now = clock.now()
    lifetime = timedelta(hours=settings.link_lifetime_hours)
    async with database.session() as session:
        account = await session.get(Account, account_id)
        if account is None or not account.email:
            return "no_address"
        if account.balance_cents <= 0:
            return "nothing_owed"
        address = account.email
        if await email_opted_out(session, address):
            return "opted_out"
        creditor = await ledger.creditor_of(session, account)
        flow = settings.flow.for_creditor(creditor)
        if in_quiet_hours(now, account.timezone, flow):  # Reg F: the same hours as a text
            return "quiet_hours"
        if await _link_sent_since(session, account.id, now - lifetime, channel="email"):
            return "already_sent"
        token = await ledger.create_link(session, account_id=account.id, at=now,
                                         lifetime=lifetime, purpose="campaign")
        link = await ledger.link_for_token(session, token)  # flushes: the row exists
        message = compose_link_email(
            env, account=account, settings=settings, creditor=creditor,
            link_url=f"{settings.public_base_url}/p/{token}", expires_at=now + lifetime,
            due_on=link.due_on if link else None,
        )
        # The link works before the email that carries it goes out.
        await session.commit()
        try:
            sent = await email.send(to=address, **message)
        except EmailError:
            await _revoke(session, link, now)
            await session.commit()
            raise
        await ledger.audit(session, "link_sent", at=now, account_id=account.id, channel="email",
                           message_id=sent.message_id, link_id=link.id if link else None)
        await session.commit()
        return "sent"


async def _link_sent_since(
    session: AsyncSession, account_id: int, since: datetime, *, channel: str,
) -> bool:
    """A campaign link went out to the account on ``channel`` after ``since`` (still valid).

    The channel is in the audit event's detail; events written before email existed have none
    and were texts.
    """
    details = await session.scalars(
        select(AuditEvent.detail)
        .where(AuditEvent.kind == "link_sent", AuditEvent.account_id == account_id,
               AuditEvent.at > since)  # the link it carried has not expired
    )
    return any((detail or {}).get("channel", "sms") == channel for detail in details)


async def _revoke(session: AsyncSession, link: Link | None, at: datetime) -> None:
    if link is not None:
        link.revoked_at = at


_LONG_NUMBER = re.compile(r"\d(?:[ -]?\d){4,}")


def mask_numbers(text: str) -> str:
    """Any run of five or more digits (a card, bank or account number) shows its last 4 only:
    "Acme Card 4111 1111 1111 4821" -> "Acme Card ****4821"; "ending 4821" stays."""
    return _LONG_NUMBER.sub(lambda m: "****" + re.sub(r"\D", "", m.group())[-4:], text)


def compose_first_message(
    renderer: SmsRenderer, *, account: Account, settings: Settings, creditor: Creditor | None,
    link_url: str, language: str | None = None,
) -> str:
    """Brand, first name, balance, link, the debt-collector disclosure, how to opt out.

    GSM-7 (the renderer rewrites anything else); at most two segments without the disclosure:
    a long description, name or brand is shortened until it fits.
    """
    brand = (creditor.shown_name if creditor else "") or settings.brand
    disclosure = (creditor.disclosure if creditor else "") or DEFAULT_DISCLOSURE
    first_name = account.first_name
    description = mask_numbers(account.description or "") or "your account"

    def render(with_disclosure: bool) -> str:
        return renderer.render(
            Reply("greeting", {"balance_cents": account.balance_cents,
                               "description": description}),
            {"brand": brand, "first_name": first_name, "link_url": link_url,
             # (the template's `{% endif %}` swallows the line break after the disclosure:
             # the trailing space keeps "collector. Reply STOP" apart; spaces are collapsed)
             "disclosure": f"{disclosure} " if with_disclosure else ""},
            language,
        )

    for shorten in ("description", "first_name", "brand"):
        if segment_count(render(False)) <= MAX_SEGMENTS:
            break
        if shorten == "description":
            description = "your account"
        elif shorten == "first_name":
            first_name = (first_name.split() or [first_name])[0][:20]
        else:
            brand = brand[:30]
    return render(True)


# --- the email ---


def email_environment() -> Environment:
    """The app's template environment (filters, strict undefined) with HTML autoescaped.

    A fresh environment of its own: its template cache holds only what it compiled itself.
    """
    env = build_environment()
    env.autoescape = select_autoescape(enabled_extensions=("html",), default_for_string=False)
    return env


def format_local_time(at: datetime, timezone: str | None) -> i18n.LocalMoment:
    """"Nov 28, 2026 at 10:00 AM EST" in the account's zone (UTC when it is unreadable), worded
    in the language of the rendering that shows it."""
    try:
        zone = ZoneInfo(timezone) if timezone else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError, OSError):
        zone = ZoneInfo("UTC")
    return i18n.LocalMoment(at.astimezone(zone))


def compose_link_email(
    env: Environment, *, account: Account, settings: Settings, creditor: Creditor | None,
    link_url: str, expires_at: datetime, due_on: Any = None,
) -> dict[str, str]:
    """Subject, text and HTML of the campaign email (``email/link_subject.txt``, ``link.txt``,
    ``link.html``): brand, first name, balance, account description (long numbers masked), the
    link (a button and the plain address), when it expires, the creditor's debt-collector
    disclosure and how to stop these emails. Never an SSN or a full account number."""
    brand = (creditor.shown_name if creditor else "") or " ".join(settings.brand.split())
    with i18n.using(account.language):
        context = {
            "brand": brand,
            "first_name": account.first_name,
            "balance_cents": account.balance_cents,
            "description": mask_numbers(account.description or "") or i18n.gettext("your account"),
            "link_url": link_url,
            "expires": format_local_time(expires_at, account.timezone),
            "due_on": due_on,
            "disclosure": disclosure_words(creditor.disclosure if creditor else ""),
            "support_contact": (creditor.support_contact if creditor else "")
            or settings.support_contact,
        }
    message = render_email(env, "link", context, language=account.language)
    return {**message, "subject": message["subject"][:200], "from_name": brand}
