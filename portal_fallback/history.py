"""What the customer has paid and will pay: the statuses in the page's words, "Your payments",
a receipt per payment (only the session's own account's), "Email my receipt", and the overview
the landing page shows (the active plan's next installment, scheduled payments, declines).

The statuses are the ones customers were promised: Paid (processed), Pending (not yet processed:
in flight, or scheduled, with its date), Declined (failed); and Canceled or Refunded where a
person changed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import appkeys
from bot.ledger.models import Account, Agreement, Payment, PaymentMethod, Plan
from bot.outreach import email_outbox
from bot.payments.service import PaymentOutcome
from bot.security import mask_email
from bot.text import i18n
from bot.text.i18n import N_, gettext
from portal_fallback.app import page
from portal_fallback.sessions import SESSION

# Three a session's account may ask for in an hour: enough to retry a typo'd inbox, too few to
# make the portal a way to flood someone's mailbox.
EMAILS_PER_HOUR = 3
EMAIL_WINDOW_SECONDS = 3600
_PENDING = {"processing", "pending"}


def add_routes(portal: web.Application) -> None:
    portal.router.add_get("/payments", payments)
    portal.router.add_get("/receipt/{reference}", receipt)
    portal.router.add_post("/receipt/{reference}/email", email_receipt)


def status_words(payment: Payment) -> str:
    """A payment's status as the customer reads it, in the language of the moment."""
    if payment.status == "scheduled":
        return gettext("Pending (scheduled for %(day)s)") % {
            "day": i18n.format_month_day(payment.scheduled_for)
        }
    if payment.status in _PENDING:
        return gettext("Pending")
    if payment.status == "paid":
        if payment.refunded_cents and payment.refunded_cents >= payment.amount_cents:
            return gettext("Refunded")
        return gettext("Paid")
    if payment.status == "declined":
        return gettext("Declined")
    if payment.status == "canceled":
        return gettext("Canceled")
    return payment.status


# Crockford's base 32: no I, L, O or U, so a reference read aloud or copied by hand survives.
_REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def agreement_reference(agreement: Agreement) -> str:
    """A short reference a person can read out ("A-7K3Q2M"): the first 30 bits of the signed
    text's SHA-256, so the reference names that very text; the hash stays in the record."""
    bits = int(agreement.text_sha256[:8], 16) >> 2
    chars = []
    for _ in range(6):
        bits, digit = divmod(bits, 32)
        chars.append(_REFERENCE_ALPHABET[digit])
    return "A-" + "".join(reversed(chars))


def method_words(method: PaymentMethod | None) -> str:
    if method is None:
        return ""
    if method.kind == "paypal":
        return method.description  # "PayPal (m***@example.com)": a name and an address
    return gettext("%(brand)s ending %(last4)s") % {"brand": method.brand, "last4": method.last4}


@dataclass
class Overview:
    """What the landing page says beside the balance."""

    plan: Plan | None = None
    next_installment: Payment | None = None
    plan_paid_cents: int = 0
    scheduled: list[Payment] = field(default_factory=list)  # one-off payments still to come
    declined: list[Payment] = field(default_factory=list)  # installments that did not go through


async def overview(db: AsyncSession, account_id: int) -> Overview:
    view = Overview()
    view.plan = await db.scalar(
        select(Plan)
        .where(Plan.account_id == account_id, Plan.status == "active")
        .order_by(Plan.created_at.desc())
        .limit(1)
    )
    rows = list(
        await db.scalars(
            select(Payment)
            .where(Payment.account_id == account_id)
            .order_by(Payment.scheduled_for, Payment.id)
        )
    )
    retried = {p.idempotency_key.rsplit("~r", 1)[0] for p in rows if "~r" in p.idempotency_key}
    for payment in rows:
        in_plan = view.plan is not None and payment.plan_id == view.plan.id
        if in_plan and payment.status == "paid":
            view.plan_paid_cents += payment.amount_cents - (payment.refunded_cents or 0)
        if payment.status == "scheduled":
            if in_plan:
                if view.next_installment is None:
                    view.next_installment = payment
            elif payment.plan_id is None:
                view.scheduled.append(payment)
        if payment.status == "declined" and payment.plan_id is not None:
            # A declined installment retried later is told once, with its retry pending.
            if payment.idempotency_key not in retried or in_plan:
                view.declined.append(payment)
    return view


def _account_id(request: web.Request) -> int:
    row = request.get(SESSION)
    if row is None or row.account_id is None:
        raise web.HTTPSeeOther("/portal/")
    return row.account_id


async def payments(request: web.Request) -> web.Response:
    account_id = _account_id(request)
    async with request.config_dict[appkeys.DATABASE].session() as db:
        account = await db.get(Account, account_id)
        rows = (
            await db.execute(
                select(Payment, PaymentMethod)
                .outerjoin(PaymentMethod, Payment.method_id == PaymentMethod.id)
                .where(Payment.account_id == account_id)
                .order_by(Payment.scheduled_for.desc(), Payment.id.desc())
            )
        ).all()
    return page(
        request,
        "payments.html",
        title=N_("Your payments"),
        account=account,
        rows=[(p, method_words(m), status_words(p)) for p, m in rows],
    )


async def _payment_of(db: AsyncSession, account_id: int, reference: str):  # type: ignore[no-untyped-def]
    """The payment with this reference on the session's own account, else 404: another
    account's reference is answered exactly as one that does not exist."""
    row = (
        await db.execute(
            select(Payment, PaymentMethod, Account)
            .outerjoin(PaymentMethod, Payment.method_id == PaymentMethod.id)
            .join(Account, Payment.account_id == Account.id)
            .where(Payment.reference == reference[:16], Payment.account_id == account_id)
        )
    ).first()
    if row is None:
        raise web.HTTPNotFound()
    return row


async def receipt(request: web.Request, *, status: int = 200, notice: str = "") -> web.Response:
    account_id = _account_id(request)
    async with request.config_dict[appkeys.DATABASE].session() as db:
        reference = request.match_info["reference"]
        payment, method, account = await _payment_of(db, account_id, reference)
        schedule: list[Payment] = []
        if payment.plan_id is not None:
            schedule = list(
                await db.scalars(
                    select(Payment)
                    .where(Payment.plan_id == payment.plan_id)
                    .order_by(Payment.installment_number, Payment.id)
                )
            )
    if not notice and request.query.get("emailed") == "1" and account.email:
        notice = gettext("Your receipt is on its way to %(email)s.") % {
            "email": mask_email(account.email)
        }
    return page(
        request,
        "receipt.html",
        status,
        payment=payment,
        account=account,
        schedule=[(p, status_words(p)) for p in schedule],
        method_label=method_words(method),
        status_label=status_words(payment),
        can_email=bool(account.email) and payment.status in email_outbox.RECEIPT_STATUSES,
        notice=notice,
        notice_error=status != 200,
        title=N_("Receipt"),
    )


async def too_many_emails(request: web.Request, account_id: int) -> bool:
    """Counted per account (a session's account; a new session does not reset it), in Redis
    as the portal's other limits are."""
    redis = request.config_dict[appkeys.COORDINATOR].redis
    key = f"paybot:rate:receipt_email:{account_id}"
    count = await redis.incr(key)
    if count == 1:
        await redis.expire(key, EMAIL_WINDOW_SECONDS)
    return count > EMAILS_PER_HOUR


async def email_receipt(request: web.Request) -> web.StreamResponse:
    account_id = _account_id(request)
    reference = request.match_info["reference"]
    engine = request.config_dict[appkeys.ENGINE]
    database = request.config_dict[appkeys.DATABASE]
    async with database.session() as db:
        payment, method, account = await _payment_of(db, account_id, reference)
        brand = await engine.brand_for(db, account)
        disclosure = await email_outbox.creditor_disclosure(db, account)
    if not account.email or payment.status not in email_outbox.RECEIPT_STATUSES:
        notice = gettext("We have no email address to send this receipt to.")
        if account.email:
            notice = gettext("There is no receipt to email for this payment.")
        return await receipt(request, status=422, notice=notice)
    if await too_many_emails(request, account_id):
        notice = gettext(
            "You have asked for %(count)d receipts by email in the last hour, which is as many "
            "as we send. Please try again later, or print this page."
        ) % {"count": EMAILS_PER_HOUR}
        return await receipt(request, status=429, notice=notice)
    outcome = PaymentOutcome(
        reference=payment.reference,
        status=payment.status,
        amount_cents=payment.amount_cents,
        method_label=method_words(method),
        pay_on=payment.scheduled_for if payment.status == "scheduled" else None,
        fee_cents=payment.fee_cents,
    )
    # The same receipt as when the payment was recorded: its day, the creditor's disclosure.
    email = engine.notifier.receipt(account, outcome, brand=brand, at=payment.created_at,
                                    disclosure=disclosure)
    await email_outbox.send_now(
        database, engine.notifier, email, kind="receipt", account_id=account.id,
        clock=request.config_dict[appkeys.CLOCK],
    )
    raise web.HTTPSeeOther(f"/portal/receipt/{payment.reference}?emailed=1")
