"""What agents read: the queue of conversations (waiting, mine, all live, resolved, a search) and
one conversation whole (its transcript, notes and an account panel that knows the account:
balance and what is open, payments, offers, plans, opt-out, the customer's local time).

Reads only, each a few statements: the list is one, the transcript one, the panel a handful.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.flow import FlowSettings
from bot.ledger.models import (
    Account,
    Conversation,
    Creditor,
    Message,
    Note,
    Offer,
    OptOut,
    Payment,
    PaymentMethod,
    Plan,
)
from bot.outreach.compliance import in_quiet_hours, zone_or_none
from bot.payments.collectable import collectable
from bot.payments.service import STATUS_LABELS
from bot.plans.offers import offer_status
from bot.security import mask_email, mask_phone
from bot.text.i18n import LANGUAGE_NAMES

STATUSES = ("waiting", "agent", "bot", "resolved")
PREVIEW_CHARS = 80
# The customer wrote this recently: a reply answers them, it is not a proactive message.
ANSWERING_WINDOW_SECONDS = 3600


@dataclass(frozen=True)
class ConversationRow:
    """One line of an inbox view."""

    phone: str
    account_id: str | None  # the account's reference (account_ref), None for an unknown number
    customer_name: str | None
    status: str  # bot | waiting | agent | resolved
    reason: str | None  # asked | confused | wrong_number | hardship | dispute | ...
    waiting_since: datetime | None
    assignee: str | None  # the owning agent's NAME
    flow: str
    state: str  # the flow step
    updated_at: datetime
    last_message_at: datetime | None
    last_message_preview: str | None
    last_message_direction: str | None  # in | out


@dataclass(frozen=True)
class TranscriptLine:
    id: int
    direction: str  # in | out
    author: str  # customer | bot | agent:NAME | system
    body: str
    at: datetime
    channel: str  # sms | web
    status: str | None  # Twilio's delivery status ("replied" for a TwiML reply)
    error_code: str | None


@dataclass(frozen=True)
class NoteLine:
    id: int
    author: str
    body: str
    at: datetime


@dataclass(frozen=True)
class PaymentLine:
    reference: str
    amount_cents: int
    scheduled_for: date
    status: str  # as a person reads it: Scheduled, Pending, Paid, Declined, ...
    method: str | None  # "Visa ending 4242"
    channel: str
    plan_id: int | None
    installment_number: int | None
    refunded_cents: int


@dataclass(frozen=True)
class OfferLine:
    id: int
    kind: str  # settlement | plan
    status: str  # open | expired | accepted | withdrawn ...
    total_cents: int
    installment_count: int
    frequency: str | None
    expires_at: datetime | None
    sent_at: datetime | None


@dataclass(frozen=True)
class PlanLine:
    id: int
    status: str
    frequency: str
    total_cents: int
    installment_count: int
    created_at: datetime
    installments: tuple[PaymentLine, ...]


@dataclass(frozen=True)
class AccountPanel:
    account_id: str
    first_name: str
    last_name: str
    description: str
    creditor: str | None  # the creditor's name (its code where it has none)
    phone: str | None  # masked
    email: str | None  # masked
    balance_cents: int
    open_cents: int  # what may still be collected (bot/payments/collectable.py)
    settling: bool  # a settlement payment is on its way
    payments: tuple[PaymentLine, ...]  # one-off payments (installments are under their plan)
    offers: tuple[OfferLine, ...]
    plans: tuple[PlanLine, ...]
    timezone: str | None
    local_time: datetime | None  # None where the zone is unknown
    quiet_hours: bool  # Reg F: a message now would be in the customer's quiet hours
    language: str = "English"  # what the bot writes to them in (the account's; by text: ESPAÑOL)


@dataclass(frozen=True)
class ConversationDetail:
    row: ConversationRow
    opted_out: bool
    last_inbound_at: datetime | None
    messages: tuple[TranscriptLine, ...]
    notes: tuple[NoteLine, ...]
    account: AccountPanel | None  # None for a number not linked to an account (or panel=False)
    quiet_hours: bool  # a reply now is blocked unless the customer wrote within the hour
    may_reply_in_quiet_hours: bool  # ... and they did


def author_of(direction: str, author: str | None) -> str:
    """Rows written before authors were stamped: inbound is the customer, outbound the bot."""
    if author:
        return author
    return "customer" if direction == "inbound" else "bot"


def _direction(direction: str | None) -> str | None:
    if direction is None:
        return None
    return "in" if direction == "inbound" else "out"


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _search(term: str) -> Any:
    term = term.strip()
    full_name = Account.first_name + " " + Account.last_name
    clauses = [
        func.lower(Account.account_ref) == term.lower(),
        func.lower(full_name).like(_like(term.lower()), escape="\\"),
    ]
    if term.isascii() and term.isdigit() and len(term) == 4:
        clauses.append(Conversation.phone.like(f"%{term}"))
    return or_(*clauses)


_LAST_MESSAGE_ID = (
    select(func.max(Message.id))
    .where(Message.conversation_id == Conversation.id)
    .correlate(Conversation)
    .scalar_subquery()
)
_ROW_COLUMNS = (
    Conversation,
    Account.account_ref,
    Account.first_name,
    Account.last_name,
    Message.created_at,
    func.substr(Message.body, 1, PREVIEW_CHARS + 1),
    Message.direction,
)


def _rows_query() -> Any:
    return (
        select(*_ROW_COLUMNS)
        .outerjoin(Account, Account.id == Conversation.account_id)
        .outerjoin(Message, Message.id == _LAST_MESSAGE_ID)
    )


def _row(conv: Conversation, ref: str | None, first: str | None, last: str | None,
         last_at: datetime | None, preview: str | None, direction: str | None) -> ConversationRow:
    if preview is not None and len(preview) > PREVIEW_CHARS:
        preview = preview[: PREVIEW_CHARS - 3] + "..."
    name = f"{first} {last}".strip() if first is not None else None
    return ConversationRow(
        phone=conv.phone, account_id=ref, customer_name=name or None, status=conv.status,
        reason=conv.reason, waiting_since=conv.waiting_since, assignee=conv.assignee,
        flow=conv.flow, state=conv.state, updated_at=conv.updated_at, last_message_at=last_at,
        last_message_preview=preview, last_message_direction=_direction(direction),
    )


async def conversation_row(session: AsyncSession, phone: str) -> ConversationRow | None:
    """One conversation's inbox row by its phone (the unique index): the same row the views
    list, so a row the live feed redraws matches the listed one."""
    found = (await session.execute(_rows_query().where(Conversation.phone == phone))).first()
    return _row(*found) if found is not None else None


async def list_conversations(
    session: AsyncSession,
    *,
    status: str | None = None,
    assignee: str | None = None,
    search: str | None = None,
    limit: int = 200,
    now: datetime | None = None,
) -> list[ConversationRow]:
    """An inbox view in one statement. ``status``: one of STATUSES (None: all); ``assignee``:
    an agent's NAME ("Mine"); ``search``: an account ID (exact, any case), part of the
    customer's name, or the last 4 digits of the phone. Waiting conversations come oldest
    first (the queue's order); every other view the latest activity first. ``now`` is taken
    for the callers' symmetry (a view that shows ages computes them from it)."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown conversation status {status!r}")
    query = _rows_query()
    if status is not None:
        query = query.where(Conversation.status == status)
    if assignee is not None:
        query = query.where(Conversation.assignee == assignee)
    if search is not None and search.strip():
        query = query.where(_search(search))
    if status == "waiting":
        query = query.order_by(Conversation.waiting_since, Conversation.id)
    else:
        query = query.order_by(Conversation.updated_at.desc(), Conversation.id.desc())
    result = await session.execute(query.limit(max(1, min(limit, 1000))))
    return [_row(*row) for row in result.all()]


async def get_conversation(
    session: AsyncSession, phone: str, *, for_update: bool = False
) -> Conversation | None:
    """The conversation row on ``phone`` (+E.164), for an action (replies, notes) to act on.
    ``for_update``: locked until the action commits (PostgreSQL), so of two agents claiming at
    once the second sees the first's claim and is refused; SQLite's writers already queue."""
    query = select(Conversation).where(Conversation.phone == phone)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def counts(session: AsyncSession, *, assignee: str | None = None) -> dict[str, int]:
    """How many conversations each status holds (every status named, 0 where none), in one
    statement: the views' badges. With ``assignee``: that agent's only."""
    query = select(Conversation.status, func.count()).group_by(Conversation.status)
    if assignee is not None:
        query = query.where(Conversation.assignee == assignee)
    found = {status: count for status, count in (await session.execute(query)).all()}
    return {status: int(found.get(status, 0)) for status in STATUSES}


_DETAIL = (
    select(*_ROW_COLUMNS, OptOut.opted_out, Account, Creditor)
    .outerjoin(Account, Account.id == Conversation.account_id)
    .outerjoin(Message, Message.id == _LAST_MESSAGE_ID)
    .outerjoin(OptOut, OptOut.phone == Conversation.phone)
    .outerjoin(Creditor, Creditor.code == Account.creditor_code)
)


async def conversation_detail(
    session: AsyncSession,
    phone: str,
    *,
    now: datetime,
    flow: FlowSettings,
    panel: bool = True,
) -> ConversationDetail | None:
    """The conversation on ``phone`` (normalized, +E.164) whole, or None when there is none.
    ``flow``: the deployment's flow settings (Settings.flow); the account's creditor's own
    apply over them (quiet hours). ``panel=False`` leaves the account panel out (the REST
    document has none)."""
    found = (await session.execute(_DETAIL.where(Conversation.phone == phone))).first()
    if found is None:
        return None
    conv, ref, first, last, last_at, preview, direction, opted_out, account, creditor = found
    lines = await session.execute(
        select(Message.id, Message.direction, Message.author, Message.body, Message.created_at,
               Message.channel, Message.status, Message.error_code)
        .where(Message.conversation_id == conv.id)
        .order_by(Message.created_at, Message.id)
    )
    messages = tuple(
        TranscriptLine(id=i, direction="in" if d == "inbound" else "out", author=author_of(d, a),
                       body=b, at=at, channel=c, status=s, error_code=e)
        for i, d, a, b, at, c, s, e in lines.all()
    )
    notes = tuple(
        NoteLine(id=n.id, author=n.author, body=n.body, at=n.created_at)
        for n in await session.scalars(
            select(Note).where(Note.conversation_id == conv.id).order_by(Note.id)
        )
    )
    settings = flow.for_creditor(creditor)
    quiet = in_quiet_hours(now, account.timezone if account else None, settings)
    answering = customer_wrote_recently(conv, now)
    return ConversationDetail(
        row=_row(conv, ref, first, last, last_at, preview, direction),
        opted_out=bool(opted_out),
        last_inbound_at=conv.last_inbound_at,
        messages=messages,
        notes=notes,
        account=await account_panel(session, account, creditor, now=now, quiet=quiet)
        if panel and account is not None else None,
        quiet_hours=quiet,
        may_reply_in_quiet_hours=answering,
    )


def customer_wrote_recently(conv: Conversation, now: datetime) -> bool:
    if conv.last_inbound_at is None:
        return False
    return (now - conv.last_inbound_at).total_seconds() <= ANSWERING_WINDOW_SECONDS


def _payment_line(p: Payment, m: PaymentMethod | None) -> PaymentLine:
    return PaymentLine(
        reference=p.reference, amount_cents=p.amount_cents, scheduled_for=p.scheduled_for,
        status=STATUS_LABELS.get(p.status, p.status),
        method=m.description if m else None, channel=p.channel,
        plan_id=p.plan_id, installment_number=p.installment_number,
        refunded_cents=p.refunded_cents,
    )


async def account_panel(
    session: AsyncSession, account: Account, creditor: Creditor | None, *, now: datetime,
    quiet: bool,
) -> AccountPanel:
    """What the agent sees of the account: contacts masked, never an SSN, card or bank number."""
    state = await collectable(session, account.id, balance_cents=account.balance_cents)
    paid = await session.execute(
        select(Payment, PaymentMethod)
        .outerjoin(PaymentMethod, Payment.method_id == PaymentMethod.id)
        .where(Payment.account_id == account.id)
        .order_by(Payment.scheduled_for, Payment.id)
    )
    payments = [(p, m) for p, m in paid.all()]
    offers = await session.scalars(
        select(Offer).where(Offer.account_id == account.id).order_by(Offer.id)
    )
    plans = await session.scalars(
        select(Plan).where(Plan.account_id == account.id).order_by(Plan.id)
    )
    zone = zone_or_none(account.timezone)
    return AccountPanel(
        account_id=account.account_ref,
        first_name=account.first_name,
        last_name=account.last_name,
        description=account.description,
        creditor=(creditor.name or creditor.code) if creditor else account.creditor_code,
        phone=mask_phone(account.phone),
        email=mask_email(account.email),
        balance_cents=account.balance_cents,
        open_cents=state.open_cents,
        settling=state.settling,
        payments=tuple(_payment_line(p, m) for p, m in payments if p.plan_id is None),
        offers=tuple(
            OfferLine(id=o.id, kind=o.kind, status=offer_status(o, now),
                      total_cents=o.total_cents, installment_count=o.installment_count,
                      frequency=o.frequency, expires_at=o.expires_at, sent_at=o.sent_at)
            for o in offers
        ),
        plans=tuple(
            PlanLine(
                id=plan.id, status=plan.status, frequency=plan.frequency,
                total_cents=plan.total_cents, installment_count=plan.installment_count,
                created_at=plan.created_at,
                installments=tuple(
                    _payment_line(p, m)
                    for p, m in sorted(
                        ((p, m) for p, m in payments if p.plan_id == plan.id),
                        key=lambda pm: (pm[0].installment_number or 0, pm[0].id),
                    )
                ),
            )
            for plan in plans
        ),
        timezone=account.timezone,
        local_time=now.astimezone(zone) if zone is not None else None,
        quiet_hours=quiet,
        language=LANGUAGE_NAMES.get(account.language or "en", "English"),
    )


# Kept for the console's search box: what the list may be searched by, in words.
SEARCH_HINT = "account ID, name, or the last 4 digits of the phone"
