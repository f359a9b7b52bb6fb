"""What a customer may choose on an account, read in one round trip for every turn: the open
offers, the saved methods (the default first) and, when the step needs it, what is open to
collect (the rule of bot/payments/collectable.py), as plain rows (no ORM instances to track for
data the turn only reads).

May import: bot.ledger, bot.payments.collectable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    and_,
    bindparam,
    case,
    exists,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger.models import Account, Offer, Payment, PaymentMethod, UTCDateTime
from bot.payments import collectable

# One statement, built once.
OFFERS, METHODS = Offer.__table__, PaymentMethod.__table__
OPEN_OFFER_TERMS = (
    select(
        OFFERS.c.id,
        OFFERS.c.kind,
        OFFERS.c.total_cents,
        OFFERS.c.installment_count,
        OFFERS.c.frequency,
        OFFERS.c.expires_at,
        OFFERS.c.schedule,
    )
    .where(OFFERS.c.account_id == bindparam("account_id"), OFFERS.c.status == "open")
    .where(
        OFFERS.c.expires_at.is_(None) | (OFFERS.c.expires_at > bindparam("at", type_=UTCDateTime()))
    )
)


# Offers and methods in one round trip: the offers first (by id), then the methods (the default
# first). The first branch gives the columns their types; `rank` tells the rows apart.
OFFER_RANK, DEFAULT_METHOD_RANK, OTHER_METHOD_RANK, COMMITTED_RANK = 0, 1, 2, 3
ACCOUNT_CHOICES = union_all(
    OPEN_OFFER_TERMS.add_columns(
        null().label("brand"), null().label("last4"), null().label("label"),
        literal_column(str(OFFER_RANK)).label("rank"),
    ),
    select(
        METHODS.c.id,
        METHODS.c.kind,
        null(),
        null(),
        null(),
        null(),
        null(),
        METHODS.c.brand,
        METHODS.c.last4,
        METHODS.c.label,
        case(
            (METHODS.c.is_default, literal_column(str(DEFAULT_METHOD_RANK))),
            else_=literal_column(str(OTHER_METHOD_RANK)),
        ),
    ).where(
        METHODS.c.account_id == bindparam("account_id"),
        # A single-use method is listed to a knowledge-only session, until it has paid once.
        or_(
            METHODS.c.single_use.is_(False),
            and_(
                bindparam("knowledge", type_=Boolean()),
                ~exists().where(Payment.method_id == METHODS.c.id),
            ),
        ),
    ),
    # What is committed on the account (bot/payments/collectable.py), in the same round trip for the
    # steps that need what is open; one row always (an aggregate), ignored unless asked for.
    # Its three figures ride in columns of matching types: in_plan as id, the committed cents
    # as total_cents, the settlement flag as installment_count.
    select(
        collectable.IN_PLAN,
        null(),
        collectable.COMMITTED_CENTS,
        collectable.SETTLING,
        null(),
        null(),
        null(),
        null(),
        null(),
        null(),
        literal_column(str(COMMITTED_RANK)),
    )
    .select_from(Payment)
    .outerjoin(Offer, Offer.id == Payment.offer_id)
    .where(
        Payment.account_id == bindparam("account_id"),
        Payment.status.in_(collectable.COMMITTED),
        bindparam("with_open", type_=Boolean()),
    ),
).order_by(literal_column("rank"), literal_column("id"))


async def account_choices(
    session: AsyncSession,
    account: Account,
    *,
    at: datetime,
    knowledge: bool = False,
    with_open: bool = False,
) -> tuple[list[Any], list[Any], collectable.Collectable | None]:
    """The account's open offers (id, kind, total_cents, installment_count, frequency,
    expires_at, schedule), its saved methods (id, kind, brand, last4, label; the default first), as
    rows, and with ``with_open`` what is open on it (bot/payments/collectable.py), in one round
    trip.
    ``knowledge``: for a session proved only by knowledge answers, which also sees the
    single-use methods not yet used."""
    offers, methods, state = [], [], None
    params = {"account_id": account.id, "at": at, "knowledge": knowledge, "with_open": with_open}
    for row in await session.execute(ACCOUNT_CHOICES, params):
        if row.rank == COMMITTED_RANK:
            if with_open:
                state = collectable.Collectable(
                    account.balance_cents,
                    int(row.total_cents),
                    bool(row.installment_count),
                    bool(row.id),
                )
        else:
            (offers if row.rank == OFFER_RANK else methods).append(row)
    return offers, methods, state
