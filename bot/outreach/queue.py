"""Proactive messages (offers, reminders, expiry and cancellation notices), each at most once.

Anything that wants to reach a customer unprompted queues an Outreach row here with a dedupe key;
the worker delivers queued rows when they may go out (opt-outs, quiet hours in the customer's
time zone, the per-customer frequency cap). See docs/outreach.md.

Each worker pass runs two steps after charging:

* ``plan_outreach``: expires open offers whose ``expires_at`` has passed (status ``expired``,
  their links revoked so ``/p/{token}`` answers 410, one ``expired`` notice queued when the offer
  had gone out) and queues up to three reminders before an unsigned offer expires
  (``reminder_days_before``, in the customer's wall-clock time). Idempotent: dedupe keys.
* ``deliver_due``: every ``held`` row whose ``not_before`` has come, oldest first. A row is
  claimed (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, then the portable conditional
  ``UPDATE ... SET status='sending' WHERE status='held'``) and committed before anything is sent,
  so of several workers only one ever sends it. A worker that dies between the claim and the
  write-back leaves the row ``sending``: it is never sent again (at most once); a later pass marks
  it ``unknown`` and counts it in its report, for a person to look at.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from jinja2 import Environment
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.settings import FlowSettings, Settings
from bot.ledger import queries as ledger
from bot.ledger.db import Database
from bot.ledger.models import Account, Creditor, Link, Message, Offer, Outreach
from bot.outreach.campaigns import email_environment, format_local_time
from bot.outreach.compliance import DEFAULT_DISCLOSURE, in_quiet_hours, zone_or_none
from bot.payments.collectable import collectable, worth_offering
from bot.providers.email import EmailError, EmailSender
from bot.providers.sms import RecipientOptedOut, SmsError, SmsSender
from bot.text.gsm7 import segment_count
from bot.text.rendering import SmsRenderer
from states.replies import Reply

log = logging.getLogger(__name__)

CHANNELS = ("sms", "email", "both")
VIA = {"sms": ("sms",), "email": ("email",), "both": ("sms", "email")}
# Kinds about an offer that is still open: not sent once it was signed, withdrawn or expired.
OFFER_KINDS = frozenset({"offer", "reminder"})
CAP_WINDOW = timedelta(days=7)
SMS_SEGMENTS = 2  # without the disclosure; only the legal text may make a first text longer
MAX_ATTEMPTS = 3  # a send that failed (provider error) is tried again this many times in all
RETRY_AFTER = timedelta(minutes=15)
SUBJECT_LIMIT = 200
REMINDER_HOUR = 10  # reminders go out at 10 a.m. in the customer's zone


class Limiter(Protocol):
    async def acquire(self) -> None: ...


async def enqueue(
    session: AsyncSession,
    *,
    dedupe_key: str,
    account_id: int,
    kind: str,
    channel: str,
    at: datetime,
    offer_id: int | None = None,
    plan_id: int | None = None,
    not_before: datetime | None = None,
    detail: dict[str, Any] | None = None,
) -> Outreach:
    """Queue one proactive message (no commit). The same dedupe key again returns the row already
    queued: a retried request or a second worker never queues a message twice."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    existing = await session.scalar(select(Outreach).where(Outreach.dedupe_key == dedupe_key))
    if existing is not None:
        return existing
    row = Outreach(
        dedupe_key=dedupe_key,
        account_id=account_id,
        offer_id=offer_id,
        plan_id=plan_id,
        kind=kind,
        channel=channel,
        status="held",
        not_before=not_before or at,
        detail=detail or {},
        created_at=at,
    )
    session.add(row)
    return row


@dataclass
class OutreachReport:
    queued: int = 0  # reminders and expiry notices queued by the scheduling pass
    expired: int = 0  # offers that reached their expiry
    sent: int = 0
    held: int = 0  # examined and held again (quiet hours, frequency cap, a send to retry)
    skipped: int = 0  # offer no longer open, opted out, nothing to send to
    failed: int = 0  # the providers refused every channel, MAX_ATTEMPTS times

    def add(self, other: OutreachReport) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


# --------------------------------------------------------------------------- time rules


def window_opens(now: datetime, timezone: str | None, flow: FlowSettings) -> datetime:
    """The first moment from ``now`` outside quiet hours in the customer's zone (``now`` itself
    when it is not quiet). An unreadable zone counts as every US zone, as in compliance.py: the
    first top of an hour at which it is daytime in all of them."""
    if not in_quiet_hours(now, timezone, flow):
        return now
    zone = zone_or_none(timezone)
    if zone is not None:
        local = now.astimezone(zone)
        opens = datetime.combine(local.date(), time(flow.quiet_hours_end), tzinfo=zone)
        if opens <= local:
            opens = datetime.combine(
                local.date() + timedelta(days=1), time(flow.quiet_hours_end), tzinfo=zone
            )
        candidate = opens.astimezone(UTC)
        if not in_quiet_hours(candidate, timezone, flow):
            return candidate
    candidate = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    for _ in range(72):
        candidate += timedelta(hours=1)
        if not in_quiet_hours(candidate, timezone, flow):
            return candidate
    return now + timedelta(days=1)  # quiet around the clock: look again tomorrow


def reminder_due(expires_at: datetime, days: int, timezone: str | None) -> datetime:
    """``days`` calendar days before the offer's last day, at REMINDER_HOUR (10 a.m.) local time:
    the same local hour whatever DST does in between. With an unreadable zone: that many days
    before the expiry itself (quiet hours then hold it until it is daytime everywhere)."""
    zone = zone_or_none(timezone)
    if zone is None:
        return expires_at - timedelta(days=days)
    last_day = expires_at.astimezone(zone).date()
    due = datetime.combine(last_day - timedelta(days=days), time(REMINDER_HOUR), tzinfo=zone)
    return due.astimezone(UTC)


def _local_date(at: datetime, timezone: str | None) -> date:
    return at.astimezone(zone_or_none(timezone) or ZoneInfo("UTC")).date()


# --------------------------------------------------------------------------- scheduling


async def plan_outreach(
    *, database: Database, settings: Settings, clock: Any, actor: str = "worker"
) -> OutreachReport:
    """Expire offers past their expiry and queue the reminders of open offers. Idempotent."""
    report = OutreachReport()
    now = clock.now()
    async with database.session() as session:
        due_to_expire = list(await session.scalars(
            select(Offer.id).where(
                Offer.status == "open", Offer.expires_at.is_not(None), Offer.expires_at <= now
            ).order_by(Offer.expires_at, Offer.id)
        ))
        to_remind = list(await session.scalars(
            select(Offer.id).where(
                Offer.status == "open", Offer.sent_at.is_not(None), Offer.expires_at > now
            ).order_by(Offer.id)
        ))
    for offer_id in due_to_expire:
        await _expire(database, offer_id, now, actor, report)
    for offer_id in to_remind:
        await _queue_reminders(database, settings, offer_id, now, report)
    return report


async def expire_offer(
    session: AsyncSession, offer: Offer, *, at: datetime, actor: str = "worker"
) -> bool:
    """Mark an open offer expired, revoke its links, queue its expiry notice (no commit). False
    when the offer was no longer open (someone else got there first)."""
    changed = await session.execute(
        update(Offer)
        .where(Offer.id == offer.id, Offer.status == "open")
        .values(status="expired")
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        return False
    await session.execute(
        update(Link)
        .where(Link.offer_id == offer.id, Link.revoked_at.is_(None))
        .values(revoked_at=at)
        .execution_options(synchronize_session=False)
    )
    await ledger.audit(session, "offer_expired", at=at, actor=actor[:40],
                       account_id=offer.account_id, offer_id=offer.id)
    if offer.sent_at is not None:  # the customer was told of the offer: tell them it ended
        await enqueue(
            session, dedupe_key=f"expired:{offer.id}", account_id=offer.account_id,
            kind="expired", channel=await _offer_channel(session, offer.id), at=at,
            offer_id=offer.id,
        )
    return True


async def _expire(
    database: Database, offer_id: int, now: datetime, actor: str, report: OutreachReport
) -> None:
    async with database.session() as session:
        offer = await session.get(Offer, offer_id)
        if offer is None:
            return
        try:
            if not await expire_offer(session, offer, at=now, actor=actor):
                return
            queued = any(isinstance(o, Outreach) for o in session.new)
            await session.commit()
        except IntegrityError:  # another worker queued the same notice first
            await session.rollback()
            return
    report.expired += 1
    report.queued += int(queued)


async def _offer_channel(session: AsyncSession, offer_id: int) -> str:
    """Reminders and the expiry notice go the way the offer went (both when unknown)."""
    channel = await session.scalar(
        select(Outreach.channel)
        .where(Outreach.offer_id == offer_id, Outreach.kind == "offer")
        .order_by(Outreach.id)
        .limit(1)
    )
    return channel or "both"


async def _queue_reminders(
    database: Database, settings: Settings, offer_id: int, now: datetime, report: OutreachReport
) -> None:
    async with database.session() as session:
        found = (await session.execute(
            select(Offer, Account).join(Account, Account.id == Offer.account_id)
            .where(Offer.id == offer_id, Offer.status == "open")
        )).first()
        if found is None:
            return
        offer, account = found
        flow = await _flow(session, settings, account)
        try:
            added = await _add_reminders(session, offer, account, flow, now)
            if added:
                await session.commit()
        except IntegrityError:  # queued meanwhile by another worker
            await session.rollback()
            return
    report.queued += added


async def _add_reminders(
    session: AsyncSession, offer: Offer, account: Account, flow: FlowSettings, now: datetime
) -> int:
    assert offer.expires_at is not None and offer.sent_at is not None
    existing = set(await session.scalars(
        select(Outreach.dedupe_key).where(Outreach.offer_id == offer.id,
                                          Outreach.kind == "reminder")
    ))
    channel: str | None = None
    added = 0
    offsets = sorted(set(flow.reminder_days_before), reverse=True)[:3]
    for number, days in enumerate(offsets, start=1):
        key = f"reminder:{offer.id}:{number}"
        if key in existing or days <= 0:
            continue
        due = reminder_due(offer.expires_at, days, account.timezone)
        if due <= offer.sent_at:
            continue  # already past when the offer went out: never a burst of reminders
        channel = channel or await _offer_channel(session, offer.id)
        await enqueue(
            session, dedupe_key=key, account_id=account.id, kind="reminder",
            channel=channel, at=now, offer_id=offer.id, not_before=due,
            detail={"n": number, "days_before": days, "due_at": due.isoformat()},
        )
        added += 1
    return added


async def _flow(session: AsyncSession, settings: Settings, account: Account) -> FlowSettings:
    creditor = await ledger.creditor_of(session, account)
    return settings.flow.for_creditor(creditor)


# --------------------------------------------------------------------------- delivery


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
) -> OutreachReport:
    """Send every held message whose time has come (oldest ``not_before`` first), at most
    ``limit`` a call; each text first takes a permit from ``sms_limiter`` (the SMS send rate)."""
    report = OutreachReport()
    now = clock.now()
    async with database.session() as session:
        ids = list(await session.scalars(
            select(Outreach.id)
            .where(Outreach.status == "held", Outreach.not_before <= now,
                   Outreach.kind.in_(DELIVERED_KINDS))
            .order_by(Outreach.not_before, Outreach.id)
            .limit(limit)
        ))
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
        if flow.max_proactive_per_week == 0:
            return await _skip(session, row, "proactive_messages_off", report)
        release = await _cap_release(session, account.id, now, flow.max_proactive_per_week)
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
                  first_text, not_reached, attempts)


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
    if claim.kind in OFFER_KINDS and offer is not None:
        async with database.session() as session:
            for name in claim.channels:
                links[name] = await _mint_link(session, settings, account, offer, now)
            await session.commit()  # the link works before the message that carries it leaves
    context = message_context(settings, account, claim.creditor, claim.flow, offer, now)
    outcomes: dict[str, str] = {}
    sent_sms: tuple[str, str, str] | None = None  # (sid, body, status)
    message_id: str | None = None
    for name in claim.channels:
        url = links.get(name, ("", 0))[0]
        if name == "sms":
            assert account.phone is not None
            body = compose_sms(renderer, claim.kind, {**context, "link_url": url},
                               disclosure=context["disclosure"] if claim.first_text else "")
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
            message = compose_email(env, claim.kind, {**context, "link_url": url})
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
    if conversation.account_id != account.id and conversation.handled_by == "bot":
        conversation.account_id = account.id
        conversation.flow, conversation.state, conversation.context = "payment", "idle", {}
        conversation.updated_at = now
    session.add(Message(conversation_id=conversation.id, direction="outbound", channel="sms",
                        provider_sid=sid, phone=account.phone, body=body, status=status,
                        created_at=now))


# --------------------------------------------------------------------------- the messages


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
    brand = " ".join((creditor.name if creditor and creditor.name else settings.brand).split())
    context: dict[str, Any] = {
        "brand": brand,
        "first_name": account.first_name,
        "support_contact": settings.support_contact,
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
    expires_on = _local_date(offer.expires_at, timezone) if offer.expires_at else None
    days_left = None
    if offer.expires_at is not None:
        days_left = max(0, (expires_on - _local_date(now, timezone)).days)  # type: ignore[operator]
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


SMS_TEMPLATES = {"offer": "offer", "reminder": "reminder", "expired": "offer_expired"}
EMAIL_TEMPLATES = {"offer": "offer", "reminder": "reminder", "expired": "offer_expired"}
# Rows of other kinds are recorded by whoever sends them (e.g. the agreement copy): left alone.
DELIVERED_KINDS = tuple(SMS_TEMPLATES)


def compose_sms(
    renderer: SmsRenderer, kind: str, context: dict[str, Any], *, disclosure: str
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


def compose_email(env: Environment, kind: str, context: dict[str, Any]) -> dict[str, str]:
    name = EMAIL_TEMPLATES[kind]
    subject = " ".join(env.get_template(f"email/{name}_subject.txt").render(context).split())
    context = {**context, "subject": subject[:SUBJECT_LIMIT]}
    return {
        "subject": subject[:SUBJECT_LIMIT],
        "text": env.get_template(f"email/{name}.txt").render(context).strip() + "\n",
        "html": env.get_template(f"email/{name}.html").render(context),
    }
