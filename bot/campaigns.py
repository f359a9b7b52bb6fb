"""`paybot send-links`: the first, personalized message of a campaign, to the selected accounts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot import ledger
from bot.compliance import in_quiet_hours
from bot.config import FlowSettings, Settings
from bot.db import Database
from bot.models import Account, Message
from bot.providers.sms import RecipientOptedOut, SmsError, SmsSender
from bot.rendering import SmsRenderer
from states.replies import Reply


@dataclass
class CampaignReport:
    sent: int = 0
    opted_out: int = 0
    quiet_hours: int = 0
    no_phone: int = 0
    nothing_owed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return (
            f"{self.sent} sent, {self.opted_out} skipped (opted out), {self.quiet_hours} held "
            f"(quiet hours), {self.no_phone} without a phone, {self.nothing_owed} with nothing owed, "
            f"{len(self.failed)} failed"
        )


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
    renderer = SmsRenderer()
    report = CampaignReport()
    async with database.session() as session:
        query = select(Account.id).order_by(Account.id)
        if account_refs:
            query = query.where(Account.account_ref.in_(account_refs))
        if creditor:
            query = query.where(Account.creditor_code == creditor)
        ids = list(await session.scalars(query))
    if on_total:
        on_total(len(ids))
    status_callback = f"{settings.public_base_url}/webhooks/twilio/status"
    for account_id in ids:
        async with database.session() as session:
            account = await session.get(Account, account_id)
            assert account is not None
            outcome = await _send_one(session, account, settings, sms, renderer, clock,
                                      status_callback)
            await session.commit()
        if outcome == "sent":
            report.sent += 1
        elif outcome.startswith("failed:"):
            report.failed.append((account.account_ref, outcome.removeprefix("failed:")))
        else:
            setattr(report, outcome, getattr(report, outcome) + 1)
        if progress:
            progress(1)
    return report


async def _send_one(session, account, settings, sms, renderer, clock, status_callback) -> str:  # type: ignore[no-untyped-def]
    now = clock.now()
    if not account.phone:
        return "no_phone"
    if account.balance_cents <= 0:
        return "nothing_owed"
    if await ledger.is_opted_out(session, account.phone):
        return "opted_out"
    creditor = await ledger.creditor_of(session, account)
    flow = FlowSettings.from_mapping(
        {**settings.flow.to_mapping(), **(creditor.settings if creditor else {})}
    )
    if in_quiet_hours(now, account.timezone, flow):
        return "quiet_hours"
    token = await ledger.create_link(
        session, account_id=account.id, at=now,
        lifetime=timedelta(hours=settings.link_lifetime_hours), purpose="campaign",
    )
    body = renderer.render(
        Reply("greeting", {"balance_cents": account.balance_cents,
                           "description": account.description or "your account"}),
        {
            "brand": creditor.name if creditor else settings.brand,
            "first_name": account.first_name,
            "disclosure": creditor.disclosure if creditor else "",
            "link_url": f"{settings.public_base_url}/p/{token}",
        },
    )
    try:
        sent = await sms.send(to=account.phone, body=body, status_callback=status_callback)
    except RecipientOptedOut:
        await ledger.set_opt_out(session, account.phone, opted_out=True, keyword="carrier 21610",
                                 channel="carrier", at=now)
        return "opted_out"
    except SmsError as exc:
        await session.rollback()
        return f"failed:{exc}"
    conversation = await ledger.conversation_for(session, account.phone, at=now)
    if conversation.account_id != account.id:
        conversation.account_id = account.id
        conversation.flow, conversation.state, conversation.context = "payment", "idle", {}
    session.add(Message(conversation_id=conversation.id, direction="outbound", channel="sms",
                        provider_sid=sent.sid, phone=account.phone, body=body, status=sent.status,
                        created_at=now))
    await ledger.audit(session, "link_sent", at=now, account_id=account.id, phone=account.phone)
    return "sent"
