"""What may still be collected on an account: the one rule every path that creates or charges a
payment checks (Reg F 1006.22(b): never collect more than the debt allows).

    open = balance - Pending - Processing - Scheduled   (one-off payments and plan installments)

Paid is already in the balance: ``payments.apply_charge_result`` lowers it in the transaction
that marks a payment Paid. A settlement payment that is Scheduled, Processing or Pending settles
the account by itself: while it lives nothing is open; once Paid the balance is 0.

A check is only as good as its serialization: ``locked_collectable`` takes the account row first
(PostgreSQL: SELECT ... FOR UPDATE, so a second writer of the same account waits until the first
commits and then reads what it wrote; SQLite: a write to the row, which takes the database's one
write lock at once, so no other connection can slip a payment in between the read and the
write). The caller then writes its payment in the same transaction and commits.

Entry points: ``locked_collectable(session, account_id)`` (before a write) and
``collectable(session, account_id)`` (a read, to show the customer what is open); both cost one
aggregate query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, and_, case, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger.models import Account, Offer, Payment, Plan
from bot.text.i18n import gettext

# Statuses of money taken or promised that the balance does not show yet.
COMMITTED = ("scheduled", "processing", "pending")
CUT_TO_NOTHING = "nothing_owed"  # failure_code of an installment canceled by fit_scheduled


class NotCollectable(Exception):
    """The amount asked for is more than is open; ``str()`` says why, in the customer's words."""

    def __init__(self, state: Collectable, asked_cents: int) -> None:
        self.state = state
        self.asked_cents = asked_cents
        super().__init__(state.explanation())


@dataclass(frozen=True)
class Collectable:
    balance_cents: int
    committed_cents: int  # Scheduled + Processing + Pending
    settling: bool  # a settlement payment is on its way: it settles everything
    in_plan: bool = False  # some of what is committed are a plan's installments

    @property
    def open_cents(self) -> int:
        if self.settling:
            return 0
        return max(0, self.balance_cents - self.committed_cents)

    @property
    def reduced(self) -> bool:
        """Something already on its way lowers what the customer may pay now."""
        return self.open_cents < self.balance_cents

    def explanation(self) -> str:
        """Why no more (or only this much) may be paid, as the customer reads it."""
        # In the language of the moment (bot.text.i18n): the SMS turn's, the portal page's.
        if self.settling:
            return gettext(
                "Your settlement payment is on its way and settles this account, so nothing "
                "more is due."
            )
        if self.committed_cents == 0:
            return gettext("You owe %(amount)s.") % {"amount": dollars(self.open_cents)}
        if self.open_cents == 0:
            return gettext(
                "You owe %(amount)s after your scheduled and pending payments, so nothing "
                "more is due."
            ) % {"amount": dollars(0)}
        return gettext("You owe %(amount)s after your scheduled and pending payments.") % {
            "amount": dollars(self.open_cents)
        }

    def require(self, amount_cents: int, *, also_open_cents: int = 0) -> None:
        """Refuse ``amount_cents`` beyond what is open (plus ``also_open_cents``: scheduled
        installments this very payment takes the place of, as EXTRA does)."""
        if self.settling or amount_cents > self.open_cents + also_open_cents:
            raise NotCollectable(self, amount_cents)


def worth_offering(kind: str, total_cents: int, open_cents: int) -> bool:
    """Offers are measured against what is open: a settlement must save something, a plan must
    not promise more than is open."""
    if kind == "settlement":
        return total_cents < open_cents
    return 0 < total_cents <= open_cents


def dollars(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def _settlement_flag() -> object:
    # A one-off payment of a settlement offer (a plan's installments carry their plan's offer).
    return func.max(
        case((and_(Offer.kind == "settlement", Payment.plan_id.is_(None)), 1), else_=0)
    )


# What is committed (as BIGINT: PostgreSQL sums BIGINT to NUMERIC), whether a settlement is on
# its way, whether a plan is among it: one row, whatever the account holds.
COMMITTED_CENTS = cast(func.coalesce(func.sum(Payment.amount_cents), 0), BigInteger)
SETTLING = func.coalesce(_settlement_flag(), 0)
IN_PLAN = func.coalesce(func.max(case((Payment.plan_id.is_not(None), 1), else_=0)), 0)
COMMITTED_TOTALS = (
    select(COMMITTED_CENTS, SETTLING, IN_PLAN)
    .select_from(Payment)
    .outerjoin(Offer, Offer.id == Payment.offer_id)
)


async def collectable(
    session: AsyncSession, account_id: int, *, balance_cents: int | None = None
) -> Collectable:
    """What is open on the account now (a read: no lock; show it, do not write on it)."""
    if balance_cents is None:
        balance_cents = int(
            await session.scalar(select(Account.balance_cents).where(Account.id == account_id))
            or 0
        )
    committed, settling, in_plan = (
        await session.execute(
            COMMITTED_TOTALS.where(
                Payment.account_id == account_id, Payment.status.in_(COMMITTED)
            )
        )
    ).one()
    return Collectable(int(balance_cents), int(committed or 0), bool(settling), bool(in_plan))


async def paid_since(session: AsyncSession, account_id: int, since: datetime) -> tuple[int, bool]:
    """What PayBot collected on the account after ``since`` and whether a settlement was among
    it. A payment became Paid at its ``updated_at``: a Paid row is never written again."""
    cents, settled = (
        await session.execute(
            select(COMMITTED_CENTS, SETTLING)
            .select_from(Payment)
            .outerjoin(Offer, Offer.id == Payment.offer_id)
            .where(
                Payment.account_id == account_id,
                Payment.status == "paid",
                Payment.updated_at >= since,  # at the same instant: taken as not shown
            )
        )
    ).one()
    return int(cents), bool(settled)


def loaded_balance(given_cents: int, *, paid_since_cents: int, settled: bool) -> int:
    """A balance the creditor loads, less what PayBot collected that the creditor's figure may
    not show yet ("Paid not yet reflected"): a settlement Paid since settles it, whatever the
    figure says."""
    return 0 if settled else max(0, given_cents - paid_since_cents)


async def lock_account(session: AsyncSession, account_id: int) -> Account:
    """The account row, locked for the rest of the transaction, read afresh."""
    if session.bind.dialect.name == "sqlite":
        # No row locks: a write takes SQLite's one write lock now, before anything is read.
        await session.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(balance_cents=Account.balance_cents)
            .execution_options(synchronize_session=False)
        )
    account = await session.get(
        Account, account_id, with_for_update=True, populate_existing=True
    )
    if account is None:
        raise LookupError("no such account")
    return account


async def locked_collectable(session: AsyncSession, account_id: int) -> Collectable:
    """Lock the account and say what is open: the caller writes its payment in this same
    transaction, so no other writer can take the same room meanwhile."""
    account = await lock_account(session, account_id)
    return await collectable(session, account_id, balance_cents=account.balance_cents)


async def fit_scheduled(
    session: AsyncSession, account_id: int, *, at: datetime, state: Collectable | None = None
) -> list[tuple[Payment, int]]:
    """Cut Scheduled payments (the latest first) until what is taken or promised fits the
    balance again; one cut to 0 is canceled. Call with the account locked (``state``, when the
    caller has read it since). Returns each changed payment with its amount before.

    Nothing is cut while a settlement is on its way: if its bank debit fails, the installments
    are still owed; once it is Paid, ``settle`` cancels them. Meanwhile the worker holds them."""
    if state is None:
        state = await collectable(
            session,
            account_id,
            balance_cents=int(
                await session.scalar(
                    select(Account.balance_cents).where(Account.id == account_id)
                )
                or 0
            ),
        )
    excess = state.committed_cents - state.balance_cents
    if state.settling or excess <= 0:
        return []
    scheduled = list(
        await session.scalars(
            select(Payment)
            .where(Payment.account_id == account_id, Payment.status == "scheduled")
            .order_by(Payment.scheduled_for.desc(), Payment.id.desc())
            .with_for_update()
        )
    )
    changed = []
    for payment in scheduled:
        if excess <= 0:
            break
        cut = min(excess, payment.amount_cents)
        changed.append((payment, payment.amount_cents))
        payment.amount_cents -= cut
        if payment.amount_cents == 0:
            payment.status = "canceled"
            payment.failure_code = CUT_TO_NOTHING
        payment.updated_at = at
        excess -= cut
    await session.flush()
    return changed


async def close_paid_plans(
    session: AsyncSession, plan_ids: set[int], *, at: datetime
) -> list[Plan]:
    """Plans that ``fit_scheduled`` cut and that have no installment left to charge are paid in
    full: closed as completed (the caller tells the customer). A plan that ran its course
    untouched is left as it was."""
    closed = []
    for plan_id in sorted(plan_ids):
        plan = await session.get(Plan, plan_id, populate_existing=True)
        if plan is None or plan.status != "active":
            continue
        left, cut = (
            await session.execute(
                select(
                    func.count().filter(Payment.status.in_(COMMITTED)),
                    func.count().filter(Payment.failure_code == CUT_TO_NOTHING),
                ).where(Payment.plan_id == plan_id)
            )
        ).one()
        if not left and cut:
            plan.status = "completed"
            closed.append(plan)
    return closed


async def close_plan_run_its_course(session: AsyncSession, plan_id: int) -> bool:
    """A plan whose installments are all Paid (or canceled) has nothing left to take: it is
    completed, so it is no longer shown or changed as a live plan. One with a Declined
    installment is still owed and stays active."""
    plan = await session.get(Plan, plan_id, populate_existing=True)
    if plan is None or plan.status != "active":
        return False
    unsettled = await session.scalar(
        select(func.count()).where(
            Payment.plan_id == plan_id, Payment.status.not_in(("paid", "canceled"))
        )
    )
    if unsettled:
        return False
    plan.status = "completed"
    return True
