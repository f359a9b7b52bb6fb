"""Reads and writes of the SQL ledger. Callers own the session and decide when to commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    bindparam,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot import metrics
from bot.ledger.models import (
    Account,
    AuditEvent,
    Conversation,
    Creditor,
    EmailOptOut,
    Link,
    Message,
    Offer,
    OptOut,
    PaymentMethod,
    UTCDateTime,
    VerificationAttempt,
)
from bot.security import new_link_token, token_digest


async def audit(
    session: AsyncSession,
    kind: str,
    *,
    at: datetime,
    actor: str = "bot",
    account_id: int | None = None,
    phone: str | None = None,
    **detail: Any,
) -> None:
    session.add(
        AuditEvent(at=at, actor=actor, kind=kind, account_id=account_id, phone=phone, detail=detail)
    )


# --- messages ---


# Table-level statements: the ORM's bookkeeping (identity map, synchronize_session) buys
# nothing for rows that no session holds.
MESSAGES = Message.__table__


def _insert_inbound(dialect: str) -> Any:
    dialect_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return (
        dialect_insert(MESSAGES)
        .values(
            direction="inbound",
            author="customer",
            channel=bindparam("channel"),
            provider_sid=bindparam("sid"),
            phone=bindparam("phone"),
            body=bindparam("body"),
            created_at=bindparam("at", type_=UTCDateTime()),
        )
        .on_conflict_do_nothing(index_elements=[MESSAGES.c.provider_sid])
        .returning(MESSAGES.c.id)
    )


# Built once: constructing a statement costs more than running a cached one on the hot path.
INSERT_INBOUND = {dialect: _insert_inbound(dialect) for dialect in ("postgresql", "sqlite")}
INBOUND_BY_SID = select(MESSAGES.c.id).where(MESSAGES.c.provider_sid == bindparam("sid"))
CLAIM_INBOUND = (
    update(MESSAGES)
    .where(MESSAGES.c.id == bindparam("message_id"), MESSAGES.c.processed_at.is_(None))
    .values(
        processed_at=bindparam("at", type_=UTCDateTime()),
        conversation_id=bindparam("conversation_id"),
    )
)
INSERT_REPLY = insert(MESSAGES).values(
    direction="outbound",
    author="bot",
    status="replied",
    channel=bindparam("channel"),
    phone=bindparam("phone"),
    body=bindparam("body"),
    conversation_id=bindparam("conversation_id"),
    in_reply_to_id=bindparam("in_reply_to_id"),
    created_at=bindparam("at", type_=UTCDateTime()),
)


async def store_inbound(
    connection: AsyncConnection, *, phone: str, body: str, sid: str, channel: str, at: datetime
) -> tuple[int, bool]:
    """Store an inbound message before anything else; (id, False) when the sid was seen.

    The connection is in autocommit: the row is durable when the statement returns, in one
    round trip. The unique sid decides, not a read before the write."""
    params = {"phone": phone, "body": body, "sid": sid, "channel": channel, "at": at}
    inserted = await connection.scalar(INSERT_INBOUND[connection.dialect.name], params)
    if inserted is not None:
        return inserted, True
    existing = await connection.scalar(INBOUND_BY_SID, {"sid": sid})
    if existing is None:
        raise LookupError("an inbound message was neither stored nor found")
    return existing, False


async def claim_inbound(
    session: AsyncSession, message_id: int, *, conversation_id: int, at: datetime
) -> bool:
    """Mark the inbound message processed, in the turn's own transaction: False when another
    process got to it first (it is then answered from the ledger). A turn that fails rolls its
    claim back with everything else, so the provider's retry processes it again."""
    result = await session.execute(
        CLAIM_INBOUND, {"message_id": message_id, "conversation_id": conversation_id, "at": at}
    )
    return bool(result.rowcount)


async def store_replies(
    session: AsyncSession,
    texts: list[str],
    *,
    inbound_id: int,
    conversation_id: int,
    phone: str,
    channel: str,
    at: datetime,
) -> None:
    if texts:
        await session.execute(
            INSERT_REPLY,
            [
                {
                    "channel": channel,
                    "phone": phone,
                    "body": text,
                    "conversation_id": conversation_id,
                    "in_reply_to_id": inbound_id,
                    "at": at,
                }
                for text in texts
            ],
        )


async def reply_texts(session: AsyncSession, inbound_id: int) -> list[str]:
    rows = await session.scalars(
        select(Message.body)
        .where(Message.in_reply_to_id == inbound_id, Message.direction == "outbound")
        .order_by(Message.id)
    )
    return list(rows)


# Twilio's callbacks can arrive out of order: a status never moves back to an earlier one.
STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "read": 5,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
}


async def record_status(
    session: AsyncSession, *, sid: str, status: str, error_code: str | None
) -> bool:
    message = await session.scalar(
        select(Message).where(Message.provider_sid == sid, Message.direction == "outbound")
    )
    if message is None:
        return False
    if STATUS_RANK.get(status, 0) >= STATUS_RANK.get(message.status or "", -1):
        message.status = status
    if error_code:
        message.error_code = error_code  # a later callback without a code does not erase it
    return True


# --- conversations ---


async def conversation_for(session: AsyncSession, phone: str, *, at: datetime) -> Conversation:
    conversation = await session.scalar(select(Conversation).where(Conversation.phone == phone))
    if conversation is not None:
        return conversation
    conversation = Conversation(phone=phone, context={}, created_at=at, updated_at=at)
    session.add(conversation)
    try:
        await session.flush()
    except IntegrityError:  # created meanwhile by another process
        await session.rollback()
        conversation = await session.scalar(select(Conversation).where(Conversation.phone == phone))
        assert conversation is not None
    return conversation


CONVERSATION_AT_HAND = (
    select(Conversation, Account, OptOut.opted_out)
    .outerjoin(Account, Account.id == Conversation.account_id)
    .outerjoin(OptOut, OptOut.phone == Conversation.phone)
    .where(Conversation.phone == bindparam("phone"))
)


def _claimed_with_conversation_at_hand() -> Any:
    """PostgreSQL: the claim of the inbound row and the read of its conversation, account and
    opt-out in one statement (a data-modifying CTE), where they were two round trips. The row
    always comes back, with the conversation columns empty for a number never seen. (The
    number's parameter is not called `phone`: in an UPDATE that would also set messages.phone.)"""
    conversations = Conversation.__table__
    claim = (
        update(MESSAGES)
        .where(MESSAGES.c.id == bindparam("message_id"), MESSAGES.c.processed_at.is_(None))
        .values(
            processed_at=bindparam("at", type_=UTCDateTime()),
            conversation_id=select(conversations.c.id)
            .where(conversations.c.phone == bindparam("number"))
            .scalar_subquery(),
        )
        .returning(MESSAGES.c.id)
        .cte("claim")
    )
    one_row = select(literal_column("1").label("one")).subquery("one_row")
    claimed = select(func.count()).select_from(claim).scalar_subquery().label("claimed")
    return (
        select(claimed, Conversation, Account, OptOut.opted_out)
        .select_from(one_row)
        .outerjoin(Conversation, Conversation.phone == bindparam("number"))
        .outerjoin(Account, Account.id == Conversation.account_id)
        .outerjoin(OptOut, OptOut.phone == bindparam("number"))
    )


CLAIMED_WITH_CONVERSATION_AT_HAND = _claimed_with_conversation_at_hand()


async def conversation_at_hand(
    session: AsyncSession, phone: str, *, at: datetime
) -> tuple[Conversation, Account | None, bool]:
    """The number's conversation, its account and whether the number opted out, in one round
    trip (the account joins the session's identity map, so a later `session.get` is free)."""
    row = (await session.execute(CONVERSATION_AT_HAND, {"phone": phone})).first()
    if row is None:
        conversation = await conversation_for(session, phone, at=at)
        account = (
            await session.get(Account, conversation.account_id)
            if conversation.account_id is not None
            else None
        )
        return conversation, account, await is_opted_out(session, phone)
    return row[0], row[1], bool(row[2])


async def claim_with_conversation_at_hand(
    session: AsyncSession, message_id: int, phone: str, *, at: datetime
) -> tuple[Conversation, Account | None, bool] | None:
    """Claim the inbound message and read what its turn works on, in the turn's transaction:
    None when another process got to the message first (it is then answered from the ledger).

    On PostgreSQL this is one round trip; elsewhere, and for a number's very first message
    (its conversation is created here), the read and the claim go one after the other."""
    if session.bind.dialect.name == "postgresql":
        row = (
            await session.execute(
                CLAIMED_WITH_CONVERSATION_AT_HAND,
                {"message_id": message_id, "number": phone, "at": at},
            )
        ).one()
        if not row.claimed:
            return None
        if row[1] is not None:
            return row[1], row[2], bool(row[3])
        await session.rollback()  # a number never seen: undo the claim, take the general path
    conversation, account, opted_out = await conversation_at_hand(session, phone, at=at)
    if not await claim_inbound(session, message_id, conversation_id=conversation.id, at=at):
        return None
    return conversation, account, opted_out


# --- accounts ---


async def account_by_phone(session: AsyncSession, phone: str) -> Account | None:
    # Several accounts may share a number: the one with the most owed is the one we text about.
    return await session.scalar(
        select(Account)
        .where(Account.phone == phone)
        .order_by(Account.balance_cents.desc(), Account.id)
        .limit(1)
    )


async def account_by_ref(session: AsyncSession, account_ref: str) -> Account | None:
    return await session.scalar(
        select(Account).where(func.lower(Account.account_ref) == account_ref.strip().lower())
    )


async def creditor_of(session: AsyncSession, account: Account) -> Creditor | None:
    if account.creditor_code is None:
        return None
    return await session.get(Creditor, account.creditor_code)


async def payment_methods(session: AsyncSession, account_id: int) -> list[PaymentMethod]:
    """The account's methods on file, the default first (single-use ones are not: see
    `PaymentMethod.single_use`)."""
    rows = await session.scalars(
        select(PaymentMethod)
        .where(PaymentMethod.account_id == account_id, PaymentMethod.single_use.is_(False))
        .order_by(PaymentMethod.is_default.desc(), PaymentMethod.id)
    )
    return list(rows)


# --- consent ---


async def is_opted_out(session: AsyncSession, phone: str) -> bool:
    row = await session.get(OptOut, phone)
    return bool(row and row.opted_out)


async def set_opt_out(
    session: AsyncSession, phone: str, *, opted_out: bool, keyword: str, channel: str, at: datetime
) -> None:
    row = await session.get(OptOut, phone)
    if opted_out and (row is None or not row.opted_out):
        metrics.OPT_OUTS.labels(channel).inc()
    if row is None:
        session.add(
            OptOut(
                phone=phone,
                opted_out=opted_out,
                keyword=keyword[:160],
                channel=channel,
                updated_at=at,
            )
        )
    else:
        row.opted_out, row.keyword, row.channel, row.updated_at = (
            opted_out,
            keyword[:160],
            channel,
            at,
        )
    await audit(
        session,
        "opt_out" if opted_out else "opt_in",
        at=at,
        phone=phone,
        keyword=keyword[:160],
        channel=channel,
    )


async def is_email_opted_out(session: AsyncSession, address: str) -> bool:
    row = await session.get(EmailOptOut, address.strip().lower())
    return bool(row and row.opted_out)


async def set_email_opt_out(
    session: AsyncSession, address: str, *, opted_out: bool, reason: str, at: datetime
) -> None:
    key = address.strip().lower()[:254]
    row = await session.get(EmailOptOut, key)
    if row is None:
        session.add(
            EmailOptOut(address=key, opted_out=opted_out, reason=reason[:40], updated_at=at)
        )
    else:
        row.opted_out, row.reason, row.updated_at = opted_out, reason[:40], at
    await audit(
        session, "email_opt_out" if opted_out else "email_opt_in", at=at, reason=reason[:40]
    )


# --- links ---


async def create_link(
    session: AsyncSession,
    *,
    account_id: int,
    at: datetime,
    lifetime: timedelta,
    purpose: str = "payment",
    resume_state: str | None = None,
    amount_cents: int | None = None,
    allow_amount_change: bool = True,
    fee_cents: int = 0,
    due_on: date | None = None,
    offer_id: int | None = None,
) -> str:
    """Mint a personalized link token. Only its hash is stored: the raw token is returned once.

    A link minted for an offer (``offer_id``) is revoked when the offer expires or is withdrawn.
    """
    token, _link = mint_link(
        session, account_id=account_id, at=at, lifetime=lifetime, purpose=purpose,
        resume_state=resume_state, amount_cents=amount_cents,
        allow_amount_change=allow_amount_change, fee_cents=fee_cents, due_on=due_on,
        offer_id=offer_id,
    )
    return token


def mint_link(
    session: AsyncSession,
    *,
    account_id: int,
    at: datetime,
    lifetime: timedelta,
    purpose: str = "payment",
    resume_state: str | None = None,
    amount_cents: int | None = None,
    allow_amount_change: bool = True,
    fee_cents: int = 0,
    due_on: date | None = None,
    offer_id: int | None = None,
) -> tuple[str, Link]:
    """As ``create_link``, with the row too (added, not flushed: no round trip of its own), for a
    caller that keeps a reference to it."""
    token = new_link_token()
    link = Link(
        token_sha256=token_digest(token),
        account_id=account_id,
        purpose=purpose,
        offer_id=offer_id,
        resume_state=resume_state,
        amount_cents=amount_cents,
        allow_amount_change=allow_amount_change,
        fee_cents=fee_cents,
        due_on=due_on,
        expires_at=at + lifetime,
        created_at=at,
    )
    session.add(link)
    return token, link


async def link_for_token(session: AsyncSession, token: str) -> Link | None:
    return await session.scalar(select(Link).where(Link.token_sha256 == token_digest(token)))


# Why a link no longer opens anything (None from link_standing: it still does).
LINK_EXPIRED = "expired"  # its time is up, or it was revoked
LINK_WITHDRAWN = "withdrawn"  # the offer it was sent for was withdrawn
LINK_ACCEPTED = "accepted"  # the offer it was sent for was accepted
LINK_USED = "used"  # its preset payment was made
LINK_PAID_OFF = "paid_off"  # nothing is owed any more


async def link_standing(session: AsyncSession, link: Link, now: datetime) -> str | None:
    """None while the link may still do what it was sent for; else why it may not.

    A link sent for an offer lives as long as the offer is open; one with a preset amount until
    that payment is made; any other payment link while something is still owed."""
    if link.revoked_at is not None or link.expires_at <= now:
        return LINK_EXPIRED
    if link.offer_id is not None:
        offer = await session.get(Offer, link.offer_id)
        if offer is None or offer.account_id != link.account_id:
            return LINK_EXPIRED
        if offer.status == "withdrawn":
            return LINK_WITHDRAWN
        if offer.status == "accepted":
            return LINK_ACCEPTED
        if offer.status != "open" or (offer.expires_at is not None and offer.expires_at <= now):
            return LINK_EXPIRED
    if link.used_at is not None:
        return LINK_USED
    if link.purpose != "plan_offer":
        account = await session.get(Account, link.account_id)
        if account is None or account.balance_cents <= 0:
            return LINK_PAID_OFF
    return None


async def link_used(session: AsyncSession, link_id: int, *, at: datetime) -> None:
    """A payment was made through a link with a preset amount: that link is done (no commit)."""
    link = await session.get(Link, link_id)
    if link is not None and link.amount_cents and link.used_at is None:
        link.used_at = at
        await audit(session, "link_used", at=at, account_id=link.account_id, purpose=link.purpose)


# --- verification ---


async def verification_failures(
    session: AsyncSession, *, subject: str, client: str, since: datetime
) -> tuple[int, datetime | None]:
    """How many times this client failed on this subject since `since` and since its last
    success, and when it last failed. Other clients' failures do not count: a stranger failing
    on an account never slows down its owner."""
    mine = (
        VerificationAttempt.subject == subject,
        VerificationAttempt.client == client,
        VerificationAttempt.attempted_at >= since,
    )
    # By id, not time: attempts in the same instant still come in the order they were made.
    last_success = await session.scalar(
        select(func.max(VerificationAttempt.id)).where(
            *mine, VerificationAttempt.succeeded.is_(True)
        )
    )
    count, last = (
        await session.execute(
            select(func.count(), func.max(VerificationAttempt.attempted_at)).where(
                *mine,
                VerificationAttempt.succeeded.is_(False),
                VerificationAttempt.id > (last_success or 0),
            )
        )
    ).one()
    return int(count or 0), last


async def challenge_failures(session: AsyncSession, challenge: str) -> int:
    return int(
        await session.scalar(
            select(func.count()).where(
                VerificationAttempt.challenge == challenge,
                VerificationAttempt.succeeded.is_(False),
            )
        )
        or 0
    )


# --- a turn that failed part way (a Twilio retry gets the same apology) ---


@dataclass(frozen=True)
class InboundStanding:
    """Where an inbound message stands for the engine's failure and retry paths."""

    claimed_at: datetime | None  # None: no turn kept its claim; a retry processes it anew
    replies: list[str]
    # The conversation's last_inbound_at is written by a turn's final commit only: older than
    # the claim, the claiming turn never finished (a commit inside it, a payment's, kept the
    # claim). Equal or later: it finished, perhaps in silence (an opted-out number, an agent's).
    finished: bool
    conversation: Conversation | None
    account: Account | None
    opted_out: bool


async def inbound_standing(session: AsyncSession, message_id: int, phone: str) -> InboundStanding:
    claimed_at = await session.scalar(
        select(MESSAGES.c.processed_at).where(MESSAGES.c.id == message_id)
    )
    row = (await session.execute(CONVERSATION_AT_HAND, {"phone": phone})).first()
    if row is not None:
        conversation, account, opted_out = row[0], row[1], bool(row[2])
    else:  # a number whose very first message failed
        conversation, account, opted_out = None, None, await is_opted_out(session, phone)
    last = conversation.last_inbound_at if conversation is not None else None
    return InboundStanding(
        claimed_at=claimed_at,
        replies=await reply_texts(session, message_id) if claimed_at is not None else [],
        finished=claimed_at is None or (last is not None and last >= claimed_at),
        conversation=conversation,
        account=account,
        opted_out=opted_out,
    )


async def store_apology(
    session: AsyncSession, message_id: int, texts: list[str], *, at: datetime
) -> list[str]:
    """Store `texts` as the reply of a claimed inbound message that has none; the replies it has
    when it has some (its turn answered meanwhile). The inbound row is locked first, so two
    attempts never both add theirs. The caller commits."""
    inbound = (
        await session.execute(
            select(MESSAGES.c.phone, MESSAGES.c.channel, MESSAGES.c.conversation_id)
            .where(MESSAGES.c.id == message_id, MESSAGES.c.processed_at.is_not(None))
            .with_for_update()
        )
    ).first()
    if inbound is None:
        return texts  # not claimed: said, not stored, as the retry processes the message
    if existing := await reply_texts(session, message_id):
        return existing
    await store_replies(
        session, texts, inbound_id=message_id, conversation_id=inbound.conversation_id,
        phone=inbound.phone, channel=inbound.channel, at=at,
    )
    return texts
