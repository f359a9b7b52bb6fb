"""The sending step of each worker pass (``deliver_due``): every ``held`` row whose
``not_before`` has come, oldest first, claimed (``SELECT ... FOR UPDATE SKIP LOCKED`` on
PostgreSQL, then the portable conditional ``UPDATE ... SET status='sending' WHERE
status='held'``) and committed before anything is sent, so of several workers only one ever sends
it; then sent (opt-outs, quiet hours, the frequency cap respected) and written back. A worker that
dies between the claim and the write-back leaves the row ``sending``: it is never sent again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from jinja2 import Environment
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.settings import FlowSettings, Settings
from bot.ledger import queries as ledger
from bot.ledger.db import Database
from bot.ledger.models import Account, Creditor, Link, Message, Offer, Outreach
from bot.outreach.campaigns import email_environment
from bot.outreach.compliance import in_quiet_hours
from bot.outreach.messages import (
    DELIVERED_KINDS,
    compose_email,
    compose_sms,
    message_context,
    notice_terms,
    texting_language,
)
from bot.outreach.queueing import OFFER_KINDS, VIA, OutreachReport
from bot.outreach.timing import window_opens
from bot.payments.collectable import collectable, worth_offering
from bot.providers.email import EmailError, EmailSender
from bot.providers.sms import RecipientOptedOut, SmsError, SmsSender
from bot.text.rendering import SmsRenderer

log = logging.getLogger(__name__)

CAP_WINDOW = timedelta(days=7)
MAX_ATTEMPTS = 3  # a send that failed (provider error) is tried again this many times in all
RETRY_AFTER = timedelta(minutes=15)


class Limiter(Protocol):
    async def acquire(self) -> None: ...


@dataclass
class _Claim:
    """What was decided, in the claiming transaction, about one row we now own."""

    outreach_id: int
    kind: str
    account: Account
    creditor: Creditor | None
    flow: FlowSettings
    offer: Offer | None
    channels: tuple[str, ...]
    first_text: bool
    not_reached: dict[str, str]
    attempts: int
    detail: dict[str, Any] | None = None  # a notice's own terms (notice_terms)


async def deliver_due(
    *,
    database: Database,
    settings: Settings,
    clock: Any,
    sms: SmsSender,
    email: EmailSender,
    sms_limiter: Limiter | None = None,
    limit: int = 500,
    actor: str = "worker",
    should_stop: Callable[[], bool] | None = None,
    only: list[int] | None = None,
) -> OutreachReport:
    """Send every held message whose time has come (oldest ``not_before`` first), at most
    ``limit`` a call; each text first takes a permit from ``sms_limiter`` (the SMS send rate).
    ``only``: these rows alone (an operator's resend), under the same rules."""
    report = OutreachReport()
    now = clock.now()
    async with database.session() as session:
        query = (
            select(Outreach.id)
            .where(Outreach.status == "held", Outreach.not_before <= now,
                   Outreach.kind.in_(DELIVERED_KINDS))
            .order_by(Outreach.not_before, Outreach.id)
            .limit(limit)
        )
        if only is not None:
            query = query.where(Outreach.id.in_(only))
        ids = list(await session.scalars(query))
    renderer = SmsRenderer()
    env = email_environment()
    for outreach_id in ids:
        if should_stop is not None and should_stop():
            break
        claim = await _claim(database, settings, outreach_id, clock.now(), report)
        if claim is None:
            continue
        try:
            await _send(database, settings, claim, clock, sms, email, sms_limiter, renderer, env,
                        actor, report)
        except Exception:
            # Left `sending`: never sent twice; logged for a person (no message body here).
            report.failed += 1
            log.exception("outreach %d: delivery failed after the claim", outreach_id)
    return report


async def _claim(
    database: Database, settings: Settings, outreach_id: int, now: datetime,
    report: OutreachReport,
) -> _Claim | None:
    async with database.session() as session:
        row = await session.scalar(
            select(Outreach)
            .where(Outreach.id == outreach_id, Outreach.status == "held",
                   Outreach.not_before <= now)
            .with_for_update(skip_locked=True)
        )
        if row is None:
            return None  # taken by another worker, or moved meanwhile
        # Locked so that two workers never both pass the frequency cap for one customer.
        account = await session.get(Account, row.account_id, with_for_update=True)
        if account is None:
            return await _skip(session, row, "no_account", report)
        creditor = await ledger.creditor_of(session, account)
        flow = settings.flow.for_creditor(creditor)
        offer = await session.get(Offer, row.offer_id) if row.offer_id is not None else None
        if row.kind in OFFER_KINDS:
            if offer is None or offer.status != "open" or (
                offer.expires_at is not None and offer.expires_at <= now
            ):
                return await _skip(session, row, "offer_not_open", report)
            # Measured against what is open now (bot/payments/collectable.py): a settlement that no
            # longer saves anything, or a plan for more than is open, is not sent.
            state = await collectable(session, account.id, balance_cents=account.balance_cents)
            if not worth_offering(offer.kind, offer.total_cents, state.open_cents):
                return await _skip(session, row, "offer_not_worth_it", report)
            if row.kind == "reminder" and await _superseded(session, row, now):
                return await _skip(session, row, "superseded", report)
        elif row.kind == "expired" and offer is None:
            return await _skip(session, row, "no_offer", report)
        channels: list[str] = []
        not_reached: dict[str, str] = {}
        for name in VIA.get(row.channel, ()):
            reason = await _unreachable(session, name, account)
            if reason is None:
                channels.append(name)
            else:
                not_reached[name] = reason
        if not channels:
            return await _skip(session, row, ", ".join(
                f"{name} {reason}" for name, reason in not_reached.items()) or "no_channel",
                report)
        if in_quiet_hours(now, account.timezone, flow):
            return await _hold(session, row, window_opens(now, account.timezone, flow),
                               "quiet_hours", report)
        # A notice about the customer's own payment (transactional) is no campaign: neither the
        # weekly cap nor "no proactive messages" holds it back; quiet hours and opt-outs do.
        transactional = bool((row.detail or {}).get("transactional"))
        if flow.max_proactive_per_week == 0 and not transactional:
            return await _skip(session, row, "proactive_messages_off", report)
        release = None if transactional else await _cap_release(
            session, account.id, now, flow.max_proactive_per_week)
        if release is not None:
            return await _hold(session, row, release, "frequency_cap", report)
        first_text = "sms" in channels and account.phone is not None and await session.scalar(
            select(Message.id)
            .where(Message.phone == account.phone, Message.direction == "outbound")
            .limit(1)
        ) is None
        claimed = await session.execute(
            update(Outreach)
            .where(Outreach.id == row.id, Outreach.status == "held")
            .values(status="sending", sent_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            await session.rollback()
            return None
        attempts = int((row.detail or {}).get("attempts", 0))
        await session.commit()  # ours before anything leaves
    return _Claim(row.id, row.kind, account, creditor, flow, offer, tuple(channels),
                  first_text, not_reached, attempts, dict(row.detail or {}))


async def _skip(
    session: AsyncSession, row: Outreach, reason: str, report: OutreachReport
) -> None:
    row.status = "skipped"
    row.detail = {**(row.detail or {}), "reason": reason}
    await session.commit()
    report.skipped += 1
    log.info("outreach %d (%s): skipped, %s", row.id, row.kind, reason)
    return None


async def _hold(
    session: AsyncSession, row: Outreach, until: datetime, reason: str, report: OutreachReport
) -> None:
    row.not_before = until
    row.detail = {**(row.detail or {}), "held": reason}
    await session.commit()
    report.held += 1
    return None


async def _superseded(session: AsyncSession, row: Outreach, now: datetime) -> bool:
    """A later reminder of the same offer is due too (the worker was down): send only that one."""
    number = int((row.detail or {}).get("n", 0))
    others = await session.scalars(
        select(Outreach.detail).where(Outreach.offer_id == row.offer_id,
                                      Outreach.kind == "reminder", Outreach.id != row.id)
    )
    for detail in others:
        detail = detail or {}
        due = detail.get("due_at")
        if int(detail.get("n", 0)) > number and due and datetime.fromisoformat(due) <= now:
            return True
    return False


async def _unreachable(session: AsyncSession, channel: str, account: Account) -> str | None:
    if channel == "sms":
        if not account.phone:
            return "no_phone"
        if await ledger.is_opted_out(session, account.phone):
            return "opted_out"
        return None
    if not account.email:
        return "no_email"
    if await ledger.is_email_opted_out(session, account.email):
        return "opted_out"
    return None


async def _cap_release(
    session: AsyncSession, account_id: int, now: datetime, cap: int
) -> datetime | None:
    """None when one more proactive message fits in the last 7 days; else when it will (each
    row counts once, whatever its channels; a transactional record, such as the copy of a signed
    agreement, does not count)."""
    found = await session.execute(
        select(Outreach.sent_at, Outreach.detail).where(
            Outreach.account_id == account_id,
            Outreach.status.in_(("sent", "sending", "unknown")),  # unknown: may have gone
            Outreach.sent_at > now - CAP_WINDOW,
        )
    )
    sent = sorted(at for at, detail in found if not (detail or {}).get("transactional"))
    if len(sent) < cap:
        return None
    return sent[len(sent) - cap] + CAP_WINDOW


async def _send(
    database: Database, settings: Settings, claim: _Claim, clock: Any, sms: SmsSender,
    email: EmailSender, sms_limiter: Limiter | None, renderer: SmsRenderer, env: Environment,
    actor: str, report: OutreachReport,
) -> None:
    now = clock.now()
    account, offer = claim.account, claim.offer
    links: dict[str, tuple[str, int]] = {}  # channel -> (url, link id)
    async with database.session() as session:
        language = await texting_language(session, account)
        if claim.kind in OFFER_KINDS and offer is not None:
            for name in claim.channels:
                links[name] = await _mint_link(session, settings, account, offer, now)
            await session.commit()  # the link works before the message that carries it leaves
    context = {**message_context(settings, account, claim.creditor, claim.flow, offer, now),
               **notice_terms(claim.detail)}
    outcomes: dict[str, str] = {}
    sent_sms: tuple[str, str, str] | None = None  # (sid, body, status)
    message_id: str | None = None
    for name in claim.channels:
        url = links.get(name, ("", 0))[0]
        if name == "sms":
            assert account.phone is not None
            body = compose_sms(renderer, claim.kind, {**context, "link_url": url},
                               disclosure=context["disclosure"] if claim.first_text else "",
                               language=language)
            try:
                if sms_limiter is not None:
                    await sms_limiter.acquire()
                result = await sms.send(
                    to=account.phone, body=body,
                    status_callback=f"{settings.public_base_url}/webhooks/twilio/status",
                )
            except RecipientOptedOut:
                outcomes[name] = "opted_out_at_carrier"
                async with database.session() as session:
                    await ledger.set_opt_out(session, account.phone, opted_out=True,
                                             keyword="carrier 21610", channel="carrier", at=now)
                    await session.commit()
            except SmsError as exc:
                outcomes[name] = f"failed: {exc.code or 'error'}"
            else:
                outcomes[name] = "sent"
                sent_sms = (result.sid, body, result.status)
        else:
            assert account.email is not None
            message = compose_email(env, claim.kind, {**context, "link_url": url},
                                    language=account.language)
            try:
                result_email = await email.send(to=account.email, **message)
            except EmailError:
                outcomes[name] = "failed: email"
            else:
                outcomes[name] = "sent"
                message_id = result_email.message_id
    await _write_back(database, claim, outcomes, links, sent_sms, message_id, now, actor, report)


async def _mint_link(
    session: AsyncSession, settings: Settings, account: Account, offer: Offer, now: datetime
) -> tuple[str, int]:
    """A fresh personal link that ends with the offer. A plan offer's link opens the agreement
    (purpose ``plan_offer``); a settlement's opens the payment flow, where the settlement is the
    offer to choose (a preset, locked amount would pay the sum without settling the account)."""
    lifetime = (offer.expires_at - now) if offer.expires_at is not None else timedelta(
        hours=settings.link_lifetime_hours)
    token = await ledger.create_link(
        session, account_id=account.id, at=now, lifetime=lifetime,
        purpose="plan_offer" if offer.kind == "plan" else "payment", offer_id=offer.id,
    )
    link = await ledger.link_for_token(session, token)  # flushes: the row exists
    assert link is not None
    return f"{settings.public_base_url}/p/{token}", link.id


async def _write_back(
    database: Database, claim: _Claim, outcomes: dict[str, str],
    links: dict[str, tuple[str, int]], sent_sms: tuple[str, str, str] | None,
    message_id: str | None, now: datetime, actor: str, report: OutreachReport,
) -> None:
    account = claim.account
    delivered = [name for name, outcome in outcomes.items() if outcome == "sent"]
    async with database.session() as session:
        row = await session.get(Outreach, claim.outreach_id)
        assert row is not None
        detail = {**(row.detail or {}), "outcomes": outcomes}
        if claim.not_reached:
            detail["not_reached"] = claim.not_reached
        detail.pop("held", None)
        # Links of channels that did not go out are of no use to anyone.
        unused = [link_id for name, (_, link_id) in links.items() if outcomes.get(name) != "sent"]
        if unused:
            await session.execute(
                update(Link).where(Link.id.in_(unused)).values(revoked_at=now)
                .execution_options(synchronize_session=False)
            )
        if delivered:
            row.status, row.sent_at = "sent", now
            report.sent += 1
            if claim.kind == "offer" and claim.offer is not None:
                await session.execute(
                    update(Offer).where(Offer.id == claim.offer.id, Offer.sent_at.is_(None))
                    .values(sent_at=now).execution_options(synchronize_session=False)
                )
            if sent_sms is not None:
                await _record_text(session, account, sent_sms, now)
            await ledger.audit(session, "outreach_sent", at=now, actor=actor[:40],
                               account_id=account.id, outreach_id=row.id, message=row.kind,
                               channels=delivered, message_id=message_id,
                               offer_id=claim.offer.id if claim.offer else None)
        elif all(o == "opted_out_at_carrier" for o in outcomes.values()):
            row.status, row.sent_at = "skipped", None
            detail["reason"] = "opted_out_at_carrier"
            report.skipped += 1
        elif claim.attempts + 1 < MAX_ATTEMPTS:
            row.status, row.sent_at = "held", None
            row.not_before = now + RETRY_AFTER
            detail["attempts"] = claim.attempts + 1
            report.held += 1
        else:
            row.status, row.sent_at = "failed", None
            detail["attempts"] = claim.attempts + 1
            report.failed += 1
        row.detail = detail
        await session.commit()
    log.info("outreach %d (%s): %s", claim.outreach_id, claim.kind,
             ", ".join(f"{k} {v}" for k, v in outcomes.items()))


async def _record_text(
    session: AsyncSession, account: Account, sent: tuple[str, str, str], now: datetime
) -> None:
    """The text in the number's conversation (so a reply, PLAN or LINK, is about this account)."""
    sid, body, status = sent
    assert account.phone is not None
    conversation = await ledger.conversation_for(session, account.phone, at=now)
    if conversation.account_id != account.id and conversation.status in ("bot", "resolved"):
        conversation.account_id = account.id
        conversation.flow, conversation.state, conversation.context = "payment", "idle", {}
        conversation.updated_at = now
    session.add(Message(conversation_id=conversation.id, direction="outbound", channel="sms",
                        provider_sid=sid, phone=account.phone, body=body, status=status,
                        author="bot", created_at=now))
