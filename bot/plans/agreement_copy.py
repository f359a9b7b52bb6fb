"""The customer's copy of a signed plan agreement: an email (text and HTML) with the payment
schedule and the authorization as signed, and the signed agreement as a PDF attachment.

Whatever channel the plan was signed on (web or text), the signing's own transaction queues an
Outreach row with the dedupe key ``agreement_copy:{agreement_id}`` (``queue_copy``);
``send_agreement_copy`` then claims it and sends the copy, at most once per agreement. When the
signing process stopped before sending it, or the mailer refused it, the worker's next pass sends
it (``deliver_overdue_copies``), on the same schedule as receipts (bot/outreach/email_outbox.py).
It is transactional email (the customer's record of what they signed), so an email opt-out does not
hold it back.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from fpdf import FPDF
from jinja2 import Environment
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger import queries as ledger
from bot.ledger.models import Account, Agreement, Outreach, Payment, PaymentMethod, Plan
from bot.money import format_cents
from bot.outreach import email_outbox
from bot.outreach import queue as outreach
from bot.outreach.email_texts import account_label, method_words, render_email
from bot.plans.terms import plan_summary_lines
from bot.providers.email import Attachment
from bot.security import mask_email
from bot.text import i18n
from bot.text.i18n import N_, gettext
from bot.text.rendering import format_day

if TYPE_CHECKING:
    from bot.ledger.db import Database
    from bot.outreach.notifications import Notifier

log = logging.getLogger(__name__)

PNG_DATA_URL_PREFIX = "data:image/png;base64,"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOW_SIGNED = {
    "typed": N_("typed name, on the web"),
    "drawn": N_("signature drawn on the web"),
    "sms_reply": N_("reply by text message"),
    "click": N_("clicked I agree, on the web"),
}


@dataclass(frozen=True)
class SignedPlan:
    plan: Plan
    account: Account
    agreement: Agreement
    installments: list[Payment]
    method: PaymentMethod | None

    @property
    def schedule(self) -> list[tuple[date, int]]:
        return [(p.scheduled_for, p.amount_cents) for p in self.installments]

    @property
    def total_cents(self) -> int:
        return sum(p.amount_cents for p in self.installments)

    @property
    def method_label(self) -> str:
        return self.method.description if self.method else "-"

    @property
    def agreement_ref(self) -> str:
        return f"AG-{self.agreement.id:06d}"

    @property
    def how_signed(self) -> str:
        """In the language of the moment."""
        kind = self.agreement.signature_kind
        return gettext(HOW_SIGNED[kind]) if kind in HOW_SIGNED else kind

    @property
    def signed_utc(self) -> str:
        return f"{self.agreement.signed_at:%Y-%m-%d %H:%M:%S} UTC"

    @property
    def signed_local(self) -> str:
        zone = ZoneInfo(self.account.timezone or "America/New_York")
        local = self.agreement.signed_at.astimezone(zone)
        return f"{format_day(local.date())} {local:%I:%M %p} {local.tzname()}"

    @property
    def signature_png(self) -> bytes | None:
        if self.agreement.signature_kind != "drawn":
            return None
        return png_from_data_url(self.agreement.signature_data or "")


async def load_signed_plan(session: AsyncSession, plan_id: int) -> SignedPlan | None:
    plan = await session.get(Plan, plan_id)
    if plan is None:
        return None
    agreement = await session.scalar(
        select(Agreement).where(Agreement.plan_id == plan.id).order_by(Agreement.id).limit(1)
    )
    account = await session.get(Account, plan.account_id)
    if agreement is None or account is None:
        return None
    installments = list(
        await session.scalars(
            select(Payment)
            .where(Payment.plan_id == plan.id, Payment.installment_number.is_not(None))
            .order_by(Payment.installment_number, Payment.scheduled_for)
        )
    )
    method = await session.get(PaymentMethod, plan.method_id) if plan.method_id else None
    return SignedPlan(plan, account, agreement, installments, method)


def png_from_data_url(data_url: str) -> bytes | None:
    """The PNG bytes of a ``data:image/png;base64,`` URL, or None when it is not one."""
    if not data_url.startswith(PNG_DATA_URL_PREFIX):
        return None
    try:
        raw = base64.b64decode(data_url[len(PNG_DATA_URL_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if raw.startswith(PNG_MAGIC) else None


def _latin1(text: str) -> str:
    # The PDF's built-in fonts cover Latin-1 only; anything else prints as "?".
    return text.encode("latin-1", "replace").decode("latin-1")


def agreement_pdf(signed: SignedPlan, *, brand: str, compress: bool = True) -> bytes:
    """The signed agreement as a PDF: the terms, the schedule and the signature record."""
    return bytes(agreement_document(signed, brand=brand, compress=compress).output())


def agreement_document(signed: SignedPlan, *, brand: str, compress: bool = True) -> FPDF:
    """The PDF before it is written out, in the account's language (the agreement quoted as
    signed). The signature block is never split across pages: it is measured first and starts a
    page of its own when it would not fit. fpdf2's core fonts are Latin-1, which holds every
    Spanish letter (á é í ó ú ü ñ ¿ ¡), so no font file is needed."""
    with i18n.using(signed.account.language):
        return _document(signed, brand=brand, compress=compress)


def _document(signed: SignedPlan, *, brand: str, compress: bool) -> FPDF:
    agreement = signed.agreement
    pdf = FPDF(format="Letter")
    pdf.set_compression(compress)
    pdf.set_creation_date(agreement.signed_at)
    pdf.set_title(_latin1(gettext("%(brand)s payment plan agreement %(reference)s")
                          % {"brand": brand, "reference": signed.agreement_ref}))
    pdf.set_author(_latin1(brand))
    pdf.set_lang(i18n.current_language())
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(True, margin=20)
    pdf.add_page()
    width = pdf.epw

    def heading(doc: Any, text: str) -> None:
        doc.ln(3)
        doc.set_font("Helvetica", "B", 12)
        doc.multi_cell(width, 7, _latin1(text), new_x="LMARGIN", new_y="NEXT")
        doc.set_font("Helvetica", "", 10)

    def line(doc: Any, text: str) -> None:
        doc.multi_cell(width, 5, _latin1(text), new_x="LMARGIN", new_y="NEXT")

    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(width, 8, _latin1(brand), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    line(pdf, gettext("Signed payment plan agreement %(reference)s (plan %(plan)s)")
         % {"reference": signed.agreement_ref, "plan": signed.plan.id})

    heading(pdf, gettext("Payment schedule"))
    for installment in signed.installments:
        line(pdf, gettext("%(number)s. %(day)s: %(amount)s (reference %(reference)s)") % {
            "number": installment.installment_number,
            "day": format_day(installment.scheduled_for),
            "amount": format_cents(installment.amount_cents),
            "reference": installment.reference,
        })
    line(pdf, gettext("Total: %(total)s, charged to %(method)s") % {
        "total": format_cents(signed.total_cents), "method": method_words(signed.method_label)})

    heading(pdf, gettext("Agreement and authorization as signed"))
    for text_line in agreement.text.split("\n"):
        if text_line.strip():
            line(pdf, text_line)
        else:
            pdf.ln(2)

    # The record of the signature reads as one block: fpdf2 renders it once unseen to measure
    # it, and breaks the page before it when it would not fit.
    with pdf.unbreakable() as doc:
        heading(doc, gettext("Signature"))
        line(doc, gettext("Signed by: %(name)s") % {"name": agreement.signer_name})
        line(doc, gettext("How: %(how)s") % {"how": signed.how_signed})
        line(doc, gettext("When: %(utc)s (%(local)s)")
             % {"utc": signed.signed_utc, "local": signed.signed_local})
        if agreement.esign_consent_at is not None:
            line(doc, gettext("Consent to electronic records: %(at)s")
                 % {"at": f"{agreement.esign_consent_at:%Y-%m-%d %H:%M:%S} UTC"})
        line(doc, gettext("IP address: %(ip)s") % {"ip": agreement.ip_address or "-"})
        line(doc, gettext("Device: %(device)s") % {"device": (agreement.user_agent or "-")[:200]})
        line(doc, gettext("Terms version: %(version)s") % {"version": agreement.terms_version})
        line(doc, gettext("SHA-256 of the agreement text: %(sha)s")
             % {"sha": agreement.text_sha256})
        doc.ln(3)
        png = signed.signature_png
        if png is not None:
            doc.image(io.BytesIO(png), w=70)
        elif agreement.signature_kind == "typed":
            doc.set_font("Times", "I", 22)
            doc.multi_cell(width, 11, _latin1(agreement.signature_data or ""))
        else:
            line(doc, gettext("Reply received: %(reply)s")
                 % {"reply": agreement.signature_data or ""})
    return pdf


def agreement_email(env: Environment, signed: SignedPlan, *, brand: str) -> dict[str, str]:
    """The copy's subject, text and HTML, in the account's language (the agreement itself is
    quoted as signed)."""
    account = signed.account
    with i18n.using(account.language):
        context = {
            "brand": brand,
            "account": account,
            "account_label": account_label(account),
            "agreement": signed.agreement,
            "schedule": signed.schedule,
            "schedule_lines": plan_summary_lines(signed.schedule),
            "total_cents": signed.total_cents,
            "method_label": method_words(signed.method_label),
            "how_signed": signed.how_signed,
            "signed_utc": signed.signed_utc,
            "signed_local": signed.signed_local,
            "agreement_ref": signed.agreement_ref,
        }
    return render_email(env, "plan_agreement", context, language=account.language)


def copy_key(agreement_id: int) -> str:
    return f"agreement_copy:{agreement_id}"


async def queue_copy(session: AsyncSession, agreement: Agreement, *, at: datetime) -> Outreach:
    """The copy's record, ``held``, in the caller's transaction (the signing's own): if the
    process stops before the email leaves, the worker finds it. The same agreement again
    returns the record already made."""
    return await outreach.enqueue(
        session,
        dedupe_key=copy_key(agreement.id),
        account_id=agreement.account_id,
        kind="agreement_copy",
        channel="email",
        at=at,
        not_before=at + email_outbox.GRACE,  # the worker leaves it to the signing process a while
        offer_id=agreement.offer_id,
        plan_id=agreement.plan_id,
        detail={"agreement_id": agreement.id, "transactional": True},
    )


async def send_agreement_copy(
    database: Database, notifier: Notifier, *, plan_id: int, clock: Any, default_brand: str
) -> bool:
    """Email the customer the copy of plan ``plan_id``'s signed agreement, once: True when this
    call handed it to the mailer; False when it was sent already (or is being sent), there is no
    email address, or the mailer refused it (then the worker tries again later)."""
    async with database.writer(), database.session() as session:
        signed = await load_signed_plan(session, plan_id)
        if signed is None:
            return False
        record = await queue_copy(session, signed.agreement, at=clock.now())
        if record in session.new:  # a plan signed before copies were queued with the signing
            try:
                await session.commit()
            except IntegrityError:  # queued meanwhile by a concurrent call: that one sends it
                return False
        record_id = record.id
    return await deliver_copy(database, notifier, record_id, clock=clock,
                              default_brand=default_brand) == "sent"


async def recent_copies(
    session: AsyncSession, *, account_id: int | None = None, every_status: bool = False,
    limit: int = 50,
) -> list[Outreach]:
    """Agreement copies, newest first: given up or cut off mid-send, or with ``every_status``
    all (the operator's view, beside ``email_outbox.recent``)."""
    query = (select(Outreach).where(Outreach.kind == "agreement_copy")
             .order_by(Outreach.id.desc()).limit(limit))
    if not every_status:
        query = query.where(Outreach.status.in_(email_outbox.NEEDS_A_LOOK))
    if account_id is not None:
        query = query.where(Outreach.account_id == account_id)
    return list(await session.scalars(query))


async def requeue_copy(session: AsyncSession, plan_id: int, *, at: datetime) -> Outreach:
    """Queue plan ``plan_id``'s agreement copy again, due now, its tries counted afresh (no
    commit): one given up, cut off, or sent and lost by the customer."""
    signed = await load_signed_plan(session, plan_id)
    if signed is None:
        raise email_outbox.CannotResend(f"no signed plan {plan_id}")
    if not signed.account.email:
        raise email_outbox.CannotResend(f"plan {plan_id}: the account has no email address")
    record = await queue_copy(session, signed.agreement, at=at)
    if record.status == "sending":
        raise email_outbox.CannotResend(f"the copy of plan {plan_id} is on its way already")
    record.status, record.sent_at, record.not_before = "held", None, at
    record.detail = {**(record.detail or {}), "attempts": 0}
    return record


async def deliver_overdue_copies(
    database: Database, notifier: Notifier, *, clock: Any, default_brand: str, limit: int = 100
) -> email_outbox.EmailReport:
    """The worker's share: copies whose signing process stopped first, refusals due again."""
    async with database.session() as session:
        ids = list(await session.scalars(
            select(Outreach.id)
            .where(Outreach.kind == "agreement_copy", Outreach.status == "held",
                   Outreach.not_before <= clock.now())
            .order_by(Outreach.not_before, Outreach.id)
            .limit(limit)
        ))
    report = email_outbox.EmailReport()
    for record_id in ids:
        outcome = await deliver_copy(database, notifier, record_id, clock=clock,
                                     default_brand=default_brand)
        if outcome is not None:
            setattr(report, outcome, getattr(report, outcome) + 1)
    return report


async def deliver_copy(
    database: Database, notifier: Notifier, record_id: int, *, clock: Any, default_brand: str
) -> str | None:
    """Claim the record (``held`` -> ``sending``, committed before the mailer is called, so one
    caller sends it), send, write the outcome back: ``sent``, ``skipped`` (no email address),
    ``retrying`` (held again, later) or ``failed``; None when someone else has it."""
    async with database.writer(), database.session() as session:
        claimed = await session.execute(
            update(Outreach)
            .where(Outreach.id == record_id, Outreach.status == "held")
            .values(status="sending", sent_at=clock.now())  # as outreach claims: when it went
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return None
        record = await session.get(Outreach, record_id)
        assert record is not None
        signed = await load_signed_plan(session, record.plan_id) if record.plan_id else None
        creditor = await ledger.creditor_of(session, signed.account) if signed else None
        attempts = int((record.detail or {}).get("attempts", 0))
        await session.commit()
    if signed is None or not signed.account.email:
        await _write_back(database, record_id, status="skipped", detail={"reason": "no_email"})
        return "skipped"
    brand = (creditor.shown_name if creditor is not None else "") or default_brand
    try:
        message = agreement_email(notifier.env, signed, brand=brand)
        pdf = agreement_pdf(signed, brand=brand)
        sent = await notifier.send_email(
            to=signed.account.email,
            subject=message["subject"],
            text=message["text"],
            html=message["html"],
            transactional=True,  # the customer's record of what they signed
            attachments=(Attachment(f"{signed.agreement_ref}.pdf", "application/pdf", pdf),),
            from_name=brand,
        )
    except Exception:  # left `sending`: never sent twice; a person looks
        log.exception("agreement copy %d: the send broke off", record_id)
        return "failed"
    now = clock.now()
    attempts += 1
    if sent:
        log.info("agreement copy sent to %s", mask_email(signed.account.email))
        await _write_back(database, record_id, status="sent", sent_at=now,
                          detail={"attempts": attempts, "message_id": sent.message_id})
        return "sent"
    retry_at = email_outbox.next_try(attempts, now, f"agreement copy {record_id}")
    if retry_at is not None:
        await _write_back(database, record_id, status="held", not_before=retry_at,
                          detail={"attempts": attempts, "error": "mailer"})
        return "retrying"
    await _write_back(database, record_id, status="failed",
                      detail={"attempts": attempts, "error": "mailer"})
    return "failed"


async def _write_back(
    database: Database, record_id: int, *, status: str, detail: dict[str, Any],
    sent_at: datetime | None = None, not_before: datetime | None = None,
) -> None:
    async with database.writer(), database.session() as session:
        record = await session.get(Outreach, record_id)
        assert record is not None
        record.status, record.sent_at = status, sent_at
        if not_before is not None:
            record.not_before = not_before
        record.detail = {**(record.detail or {}), **detail}
        await session.commit()
