"""`paybot send-links`: the first, personalized message of a campaign, to the selected accounts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import ledger
from bot.compliance import DEFAULT_DISCLOSURE, in_quiet_hours
from bot.config import Settings
from bot.db import Database
from bot.gsm7 import segment_count
from bot.models import Account, AuditEvent, Creditor, Link, Message
from bot.providers.sms import RecipientOptedOut, SmsError, SmsSender
from bot.rendering import SmsRenderer
from states.replies import Reply

MAX_SEGMENTS = 2  # without the disclosure; only the legal text may make it longer


class CampaignError(ValueError):
    """The campaign cannot start (e.g. an unknown creditor); nothing was sent."""


@dataclass
class CampaignReport:
    sent: int = 0
    opted_out: int = 0  # opted out in the ledger before the run
    carrier_opted_out: int = 0  # the carrier refused (Twilio 21610): now recorded as opted out
    quiet_hours: int = 0
    no_phone: int = 0
    nothing_owed: int = 0
    already_sent: int = 0  # a campaign link went out within the link lifetime
    shared_phone: int = 0  # the number was already texted in this run for another account
    unknown: list[str] = field(default_factory=list)  # --account values with no account
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def summary(self) -> str:
        parts = [f"{self.sent} sent"]
        for count, label in (
            (self.opted_out, "skipped (opted out)"),
            (self.carrier_opted_out, "opted out at the carrier (recorded)"),
            (self.quiet_hours, "held (quiet hours)"),
            (self.already_sent, "skipped (link already sent)"),
            (self.shared_phone, "skipped (number shared with an account just texted)"),
            (self.no_phone, "without a phone"),
            (self.nothing_owed, "with nothing owed"),
            (len(self.unknown), "not found"),
        ):
            if count:
                parts.append(f"{count} {label}")
        parts.append(f"{len(self.failed)} failed")
        return ", ".join(parts)


async def send_links(
    *,
    settings: Settings,
    database: Database,
    sms: SmsSender,
    clock: Any,
    account_refs: list[str] | None = None,
    creditor: str | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> CampaignReport:
    """Text each selected account its personalized link.

    Selected: the accounts named in ``account_refs`` (any case), else every account with a phone
    and a balance; either way only ``creditor``'s when given. Skipped, and counted: opted-out
    numbers, quiet hours in the account's zone, accounts sent a link still valid (so a re-run
    after an interruption does not text anyone twice), a number already texted in this run.
    """
    renderer = SmsRenderer()
    report = CampaignReport()
    async with database.session() as session:
        if creditor and await session.get(Creditor, creditor) is None:
            raise CampaignError(f"no creditor with the code {creditor!r}")
        query = select(Account.id, Account.account_ref).order_by(Account.id)
        if account_refs:
            wanted = {ref.strip().lower(): ref for ref in account_refs}
            query = query.where(func.lower(Account.account_ref).in_(list(wanted)))
        else:
            query = query.where(Account.phone.is_not(None), Account.balance_cents > 0)
        if creditor:
            query = query.where(Account.creditor_code == creditor)
        rows = (await session.execute(query)).all()
    if account_refs:
        found = {ref.lower() for _, ref in rows}
        report.unknown = [ref for key, ref in wanted.items() if key not in found]
    if on_total:
        on_total(len(rows))
    status_callback = f"{settings.public_base_url}/webhooks/twilio/status"
    texted: set[str] = set()
    for account_id, account_ref in rows:
        try:
            outcome = await _send_one(database, account_id, settings, sms, renderer, clock,
                                      status_callback, texted)
        except SmsError as exc:
            report.failed.append((account_ref, str(exc)))
        else:
            if outcome == "sent":
                report.sent += 1
            else:
                setattr(report, outcome, getattr(report, outcome) + 1)
        if progress:
            progress(1)
    return report


async def _send_one(
    database: Database, account_id: int, settings: Settings, sms: SmsSender,
    renderer: SmsRenderer, clock: Any, status_callback: str, texted: set[str],
) -> str:
    now = clock.now()
    lifetime = timedelta(hours=settings.link_lifetime_hours)
    async with database.session() as session:
        account = await session.get(Account, account_id)
        if account is None:  # deleted meanwhile
            return "no_phone"
        if not account.phone:
            return "no_phone"
        if account.balance_cents <= 0:
            return "nothing_owed"
        phone = account.phone
        if phone in texted:
            return "shared_phone"
        if await ledger.is_opted_out(session, phone):
            return "opted_out"
        creditor = await ledger.creditor_of(session, account)
        flow = settings.flow.merged(creditor.settings if creditor else None)
        if in_quiet_hours(now, account.timezone, flow):
            return "quiet_hours"
        if await _link_sent_since(session, account.id, now - lifetime):
            return "already_sent"
        token = await ledger.create_link(session, account_id=account.id, at=now,
                                         lifetime=lifetime, purpose="campaign")
        link = await ledger.link_for_token(session, token)  # flushes: the row exists
        body = compose_first_message(
            renderer, account=account, settings=settings, creditor=creditor,
            link_url=f"{settings.public_base_url}/p/{token}",
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
        if conversation.account_id != account.id and conversation.handled_by == "bot":
            # The number is on file for this account and we just texted about it.
            conversation.account_id = account.id
            conversation.flow, conversation.state, conversation.context = "payment", "idle", {}
            conversation.updated_at = now
        session.add(Message(conversation_id=conversation.id, direction="outbound", channel="sms",
                            provider_sid=sent.sid, phone=phone, body=body, status=sent.status,
                            created_at=now))
        await ledger.audit(session, "link_sent", at=now, account_id=account.id, phone=phone,
                           sid=sent.sid)
        await session.commit()
        return "sent"


async def _link_sent_since(session: AsyncSession, account_id: int, since: datetime) -> bool:
    found = await session.scalar(
        select(AuditEvent.id)
        .where(AuditEvent.kind == "link_sent", AuditEvent.account_id == account_id,
               AuditEvent.at > since)  # the link it carried has not expired
        .limit(1)
    )
    return found is not None


async def _revoke(session: AsyncSession, link: Link | None, at: datetime) -> None:
    if link is not None:
        link.revoked_at = at


def compose_first_message(
    renderer: SmsRenderer, *, account: Account, settings: Settings, creditor: Creditor | None,
    link_url: str,
) -> str:
    """Brand, first name, balance, link, the debt-collector disclosure, how to opt out.

    GSM-7 (the renderer rewrites anything else); at most two segments without the disclosure:
    a long description, name or brand is shortened until it fits.
    """
    brand = creditor.name if creditor and creditor.name else settings.brand
    disclosure = (creditor.disclosure if creditor else "") or DEFAULT_DISCLOSURE
    first_name = account.first_name
    description = account.description or "your account"

    def render(with_disclosure: bool) -> str:
        return renderer.render(
            Reply("greeting", {"balance_cents": account.balance_cents,
                               "description": description}),
            {"brand": brand, "first_name": first_name, "link_url": link_url,
             # (the template's `{% endif %}` swallows the line break after the disclosure:
             # the trailing space keeps "collector. Reply STOP" apart; spaces are collapsed)
             "disclosure": f"{disclosure} " if with_disclosure else ""},
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
