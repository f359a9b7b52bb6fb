"""Signing a plan offer on the web (journey 3): review -> Get Started -> payment method ->
terms and E-SIGN consent -> sign (typed or drawn) -> confirmation.

The offer comes from the link that opened the session (a ``plan_offer`` link names it). Where the
customer stands between steps (the method chosen, when they consented, the hash of the text they
consented to) lives in a small cookie signed with the server's secret and bound to this web
session and offer: no schema change, nothing for another process to share, and a tampered or
replayed cookie is simply ignored. Nothing in it is trusted for money: signing re-checks that the
method is the account's and the offer still open, and the domain (``accept_plan_offer``) commits
the plan, its installments and the agreement in one transaction, idempotently.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import appkeys
from bot.accounts.loading import record_saved_method
from bot.ledger.models import Account, Agreement, Link, Offer, Payment, PaymentMethod, Plan
from bot.plans.agreement_copy import PNG_DATA_URL_PREFIX, PNG_MAGIC, send_agreement_copy
from bot.plans.signing import (
    OfferNotOpen,
    PlanError,
    Signature,
    accept_plan_offer,
    agreement_digest,
    offer_schedule,
    plan_for_offer,
    plan_installments,
)
from bot.plans.terms import plan_agreement_text
from bot.providers.payments import MethodRejected, PaymentError
from bot.security import mask_email
from bot.text.i18n import N_, gettext
from portal_fallback import history
from portal_fallback.app import page
from portal_fallback.audience import BRAND
from portal_fallback.method_entry import (
    METHOD_REF_PREFIXES,
    MethodNotTaken,
    flow_of,
    method_entry_context,
    save_entered_method,
)
from portal_fallback.sessions import SESSION, client_ip

log = logging.getLogger(__name__)

PROGRESS_COOKIE = "paybot_plan"
PROGRESS_PATH = "/portal/plan"
SIGNER_NAME_MAX = 120
# The application takes request bodies up to 64 KB (bot/app.py), and the PNG travels in base64:
# 45 KB of PNG is the most that fits. A 600 x 200 signature is typically 5 to 20 KB.
SIGNATURE_PNG_MAX_BYTES = 45 * 1024
SIGNATURE_MAX_PIXELS = 2000 * 1000
SIGNATURE_MIN_INK_PIXELS = 30


NOTICES = {
    "choose_method": N_("Please choose how you will pay."),
    "method_failed": N_(
        "That card or account could not be saved. Please check it or use another one."
    ),
    "consent_required": N_("Please tick both boxes to accept the agreement."),
    "terms_changed": N_("The terms changed since you accepted them. Please accept them again."),
    "choose_signature": N_("Please type your name or draw your signature."),
    "name_required": N_("Please type your full name to sign."),
    "name_too_long": "name_too_long",  # with its number: see notice_text
    "name_mismatch": N_("Please sign with the name of the account holder."),
    "signature_missing": N_("Please draw your signature in the box before you sign."),
    "signature_blank": N_("The signature box looks empty. Please draw your signature."),
    "signature_invalid": N_("Your signature could not be read. Please clear the box, draw again."),
    "signature_too_large": N_("Your signature image is too large. Please clear it, draw again."),
}


def add_routes(portal: web.Application) -> None:
    portal.router.add_get("/plan", review)
    portal.router.add_post("/plan/start", get_started)
    portal.router.add_get("/plan/method", choose_method)
    portal.router.add_post("/plan/method", method_chosen)
    portal.router.add_post("/plan/methods", save_new_method)
    portal.router.add_get("/plan/terms", show_terms)
    portal.router.add_post("/plan/terms", terms_accepted)
    portal.router.add_get("/plan/sign", show_sign)
    portal.router.add_post("/plan/sign", sign)


# ---------------------------------------------------------------- where the customer stands


@dataclass(frozen=True)
class Progress:
    method_id: int | None = None
    consent_at: datetime | None = None
    text_sha256: str | None = None


def _mac(request: web.Request, payload: bytes) -> str:
    secret = request.config_dict[appkeys.SETTINGS].secret_key.encode()
    return hmac.new(secret, b"plan-progress:" + payload, hashlib.sha256).hexdigest()


def read_progress(request: web.Request, offer_id: int) -> Progress:
    raw = request.cookies.get(PROGRESS_COOKIE, "")
    payload_b64, _, mac = raw.partition(".")
    if not payload_b64 or len(raw) > 600:
        return Progress()
    try:
        payload = base64.urlsafe_b64decode(payload_b64.encode())
    except (binascii.Error, ValueError):
        return Progress()
    if not hmac.compare_digest(mac, _mac(request, payload)):
        return Progress()
    try:
        data = json.loads(payload)
        if data.get("w") != request[SESSION].id or data.get("o") != offer_id:
            return Progress()  # another session's or another offer's progress
        consent = data.get("c")
        return Progress(
            method_id=int(data["m"]) if data.get("m") is not None else None,
            consent_at=datetime.fromisoformat(consent) if consent else None,
            text_sha256=data.get("h"),
        )
    except (ValueError, TypeError, KeyError):
        return Progress()


def store_progress(
    request: web.Request, response: web.StreamResponse, offer_id: int, progress: Progress
) -> None:
    data = {
        "w": request[SESSION].id,
        "o": offer_id,
        "m": progress.method_id,
        "c": progress.consent_at.isoformat() if progress.consent_at else None,
        "h": progress.text_sha256,
    }
    payload = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    value = f"{base64.urlsafe_b64encode(payload).decode()}.{_mac(request, payload)}"
    settings = request.config_dict[appkeys.SETTINGS]
    response.set_cookie(
        PROGRESS_COOKIE,
        value,
        httponly=True,
        secure=settings.public_base_url.startswith("https://"),
        samesite="Lax",
        path=PROGRESS_PATH,
        max_age=30 * 60,
    )


def go(
    request: web.Request, path: str, offer_id: int, progress: Progress | None
) -> web.HTTPSeeOther:
    response = web.HTTPSeeOther(path)
    if progress is not None:
        store_progress(request, response, offer_id, progress)
    return response


# ---------------------------------------------------------------- the offer this session signs


@dataclass
class Signing:
    account: Account
    offer: Offer
    link: Link
    brand: str
    terms_version: str
    now: datetime

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.account.timezone or "America/New_York")

    @property
    def schedule(self) -> list[tuple[date, int]]:
        return offer_schedule(self.offer)


def offer_is_open(offer: Offer, now: datetime) -> bool:
    return (
        offer.kind == "plan"
        and offer.status == "open"
        and (offer.expires_at is None or offer.expires_at > now)
    )


async def load_signing(request: web.Request, db: AsyncSession) -> Signing:
    """The account and the offer of this session's plan link; elsewhere when there is none."""
    row = request.get(SESSION)
    if row is None or row.account_id is None:
        raise web.HTTPSeeOther("/portal/")
    link = await db.get(Link, row.link_id) if row.link_id else None
    if link is None or link.purpose != "plan_offer" or link.offer_id is None:
        raise web.HTTPSeeOther("/portal/pay")
    offer = await db.get(Offer, link.offer_id)
    account = await db.get(Account, row.account_id)
    if offer is None or account is None or offer.account_id != account.id:
        raise web.HTTPSeeOther("/portal/pay")
    engine = request.config_dict[appkeys.ENGINE]
    flow_settings = await engine.flow_settings(db, account)
    return Signing(
        account=account,
        offer=offer,
        link=link,
        brand=await engine.brand_for(db, account),
        terms_version=flow_settings.terms_version,
        now=request.config_dict[appkeys.CLOCK].now(),
    )


async def closed_or_signed(
    request: web.Request, db: AsyncSession, signing: Signing, *, forget_progress: bool = False
) -> None:
    """Signed already: the confirmation (without the progress cookie when ``forget_progress``).
    No longer open: the 410 page. Else carry on."""
    plan = await plan_for_offer(db, signing.offer.id)
    if plan is not None:
        confirmation_page = web.HTTPSeeOther("/portal/plan")
        raise _clear(confirmation_page) if forget_progress else confirmation_page
    if not offer_is_open(signing.offer, signing.now):
        response = closed_page(request, signing)
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
        raise web.HTTPGone(text=response.text, content_type="text/html", headers=headers)


def closed_page(request: web.Request, signing: Signing | None) -> web.Response:
    reason = "expired"
    if signing is not None and signing.offer.status == "withdrawn":
        reason = "withdrawn"
    return page(
        request,
        "plan_closed.html",
        410,
        title=N_("Offer no longer available"),
        reason=reason,
        brand=signing.brand if signing else request.get(BRAND) or "",
    )


async def methods_taken(
    request: web.Request, db: AsyncSession, account: Account
) -> list[PaymentMethod]:
    """The account's saved methods of the kinds its creditor takes, the default first."""
    kinds = (await flow_of(request, db, account)).methods_enabled
    return [m for m in await methods_of(db, account.id) if m.kind in kinds]


async def methods_of(db: AsyncSession, account_id: int) -> list[PaymentMethod]:
    return list(
        await db.scalars(
            select(PaymentMethod)
            .where(PaymentMethod.account_id == account_id, PaymentMethod.single_use.is_(False))
            .order_by(PaymentMethod.is_default.desc(), PaymentMethod.id)
        )
    )


async def chosen_method(
    db: AsyncSession, signing: Signing, progress: Progress
) -> PaymentMethod | None:
    if progress.method_id is None:
        return None
    method = await db.get(PaymentMethod, progress.method_id)
    return method if method is not None and method.account_id == signing.account.id else None


async def open_signing(
    request: web.Request, db: AsyncSession, *, forget_progress_if_signed: bool = False
) -> Signing:
    """How every step but the review starts: this session's offer, unsigned and still open.
    Otherwise it raises the page to show instead (see load_signing and closed_or_signed)."""
    signing = await load_signing(request, db)
    await closed_or_signed(request, db, signing, forget_progress=forget_progress_if_signed)
    return signing


class MethodStep(NamedTuple):
    """Where a customer past the method step stands."""

    signing: Signing
    progress: Progress
    method: PaymentMethod


async def open_signing_with_method(
    request: web.Request,
    db: AsyncSession,
    *,
    consent_needed: bool = False,
    forget_progress_if_signed: bool = False,
) -> MethodStep:
    """How the steps after the payment method start: the open offer and the method chosen for
    it. A customer who skipped a step (no method, or no consent where ``consent_needed``) is
    sent back to it."""
    signing = await open_signing(request, db, forget_progress_if_signed=forget_progress_if_signed)
    progress = read_progress(request, signing.offer.id)
    method = await chosen_method(db, signing, progress)
    if method is None:
        raise web.HTTPSeeOther("/portal/plan/method")
    if consent_needed and progress.consent_at is None:
        raise web.HTTPSeeOther("/portal/plan/terms")
    return MethodStep(signing, progress, method)


def notice_text(notice: str | None) -> str | None:
    """A notice key's sentence; a message that is not a key (a PlanError's) as it is."""
    if not notice:
        return None
    if notice == "name_too_long":
        return gettext("Please type your name in %(count)d characters or fewer.") % {
            "count": SIGNER_NAME_MAX
        }
    return gettext(NOTICES.get(notice, notice))


def method_label(method: PaymentMethod) -> str:
    return history.method_words(method)


def agreement_text_for(request: web.Request, signing: Signing, method: PaymentMethod) -> str:
    return plan_agreement_text(
        env=request.config_dict[appkeys.ENGINE].notifier.env,
        account=signing.account,
        offer=signing.offer,
        schedule=signing.schedule,
        method_label=method_label(method),
        method_kind=method.kind,
        terms_version=signing.terms_version,
        brand=signing.brand,
    )


def base_context(signing: Signing, **extra: Any) -> dict[str, Any]:
    schedule = signing.schedule
    total = sum(cents for _, cents in schedule)
    return {
        "account": signing.account,
        "offer": signing.offer,
        "brand": signing.brand,
        "status_of": history.status_words,
        "schedule": schedule,
        "total_cents": total,
        # A discounted plan settles the balance in full; otherwise what is left is still owed.
        "balance_after_cents": 0
        if signing.offer.discount_bps
        else max(signing.account.balance_cents - total, 0),
        "expires_local": signing.offer.expires_at.astimezone(signing.zone)
        if signing.offer.expires_at
        else None,
        **extra,
    }


# ---------------------------------------------------------------- the steps


async def review(request: web.Request) -> web.Response:
    async with request.config_dict[appkeys.DATABASE].session() as db:
        signing = await load_signing(request, db)
        plan = await plan_for_offer(db, signing.offer.id)
        if plan is not None:
            return await confirmation(request, db, signing, plan)
        if not offer_is_open(signing.offer, signing.now):
            return closed_page(request, signing)
        return page(
            request,
            "plan_review.html",
            **base_context(signing, title=N_("Complete Payment Agreement"), step=1),
        )


async def get_started(request: web.Request) -> web.StreamResponse:
    async with request.config_dict[appkeys.DATABASE].session() as db:
        signing = await open_signing(request, db)
    raise go(request, "/portal/plan/method", signing.offer.id, Progress())


async def choose_method(
    request: web.Request, *, notice: str | None = None, status: int = 200
) -> web.Response:
    async with request.config_dict[appkeys.DATABASE].session() as db:
        signing = await open_signing(request, db)
        progress = read_progress(request, signing.offer.id)
        methods = await methods_taken(request, db, signing.account)
        context = base_context(
            signing,
            title=N_("Payment method"),
            step=2,
            methods=methods,
            selected=progress.method_id or (methods[0].id if methods else None),
            notice=notice_text(notice),
        )
        context.update(await method_entry_context(request, db, signing.account))
    return page(request, "plan_method.html", status, **context)


async def method_chosen(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        signing = await open_signing(request, db)
        choice = _text(form, "method")
        method = await db.get(PaymentMethod, int(choice)) if choice.isdigit() else None
        if method is None or method not in await methods_taken(request, db, signing.account):
            return await choose_method(request, notice="choose_method", status=422)
    raise go(request, "/portal/plan/terms", signing.offer.id, Progress(method_id=method.id))


async def save_new_method(request: web.Request) -> web.StreamResponse:
    """A card saved with Stripe.js (or a sandbox test method): keep it, sign with it."""
    form = await request.post()
    method_ref = _text(form, "payment_method")
    async with request.config_dict[appkeys.DATABASE].session() as db:
        signing = await open_signing(request, db)
        if not method_ref.startswith(METHOD_REF_PREFIXES) or len(method_ref) > 64:
            return await choose_method(request, notice="method_failed", status=422)
        account = signing.account
        try:
            saved = await save_entered_method(request, db, account, method_ref)
        except (MethodRejected, PaymentError):
            return await choose_method(request, notice="method_failed", status=422)
        except MethodNotTaken as refused:
            return await choose_method(request, notice=refused.notice, status=422)
        method = await record_saved_method(
            db, account, saved, at=signing.now, default=None, channel="web"
        )
        await db.commit()
    raise go(request, "/portal/plan/terms", signing.offer.id, Progress(method_id=method.id))


async def show_terms(
    request: web.Request, *, notice: str | None = None, status: int = 200
) -> web.Response:
    async with request.config_dict[appkeys.DATABASE].session() as db:
        signing, _, method = await open_signing_with_method(request, db)
        context = base_context(
            signing,
            title=N_("Terms and Conditions"),
            step=3,
            method_label=method_label(method),
            agreement_text=agreement_text_for(request, signing, method),
            notice=notice_text(notice),
        )
    return page(request, "plan_terms.html", status, **context)


async def terms_accepted(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        signing, progress, method = await open_signing_with_method(request, db)
        if _text(form, "esign_consent") != "yes" or _text(form, "accept") != "yes":
            return await show_terms(request, notice="consent_required", status=422)
        text = agreement_text_for(request, signing, method)
    progress = Progress(
        method_id=method.id, consent_at=signing.now, text_sha256=agreement_digest(text)
    )
    raise go(request, "/portal/plan/sign", signing.offer.id, progress)


async def show_sign(
    request: web.Request,
    *,
    notice: str | None = None,
    status: int = 200,
    typed_name: str = "",
) -> web.Response:
    async with request.config_dict[appkeys.DATABASE].session() as db:
        signing, _, method = await open_signing_with_method(request, db, consent_needed=True)
        account = signing.account
        context = base_context(
            signing,
            title=N_("Sign your agreement"),
            step=4,
            method_label=method_label(method),
            notice=notice_text(notice),
            typed_name=typed_name or f"{account.first_name} {account.last_name}",
            name_max=SIGNER_NAME_MAX,
        )
    return page(request, "plan_sign.html", status, **context)


async def sign(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    engine = request.config_dict[appkeys.ENGINE]
    async with request.config_dict[appkeys.DATABASE].session() as db:
        # Signed already (a second tap, or another tab): that plan stands, the progress goes.
        signing, progress, method = await open_signing_with_method(
            request, db, consent_needed=True, forget_progress_if_signed=True
        )
        account = signing.account
        text = agreement_text_for(request, signing, method)
        if progress.text_sha256 != agreement_digest(text):
            # The terms changed since they were accepted: accept what will be signed.
            return await show_terms(request, notice="terms_changed", status=409)
        kind = _text(form, "kind")
        if kind == "typed":
            name = " ".join(_text(form, "signer_name", limit=SIGNER_NAME_MAX + 1).split())
            problem = typed_signature_problem(name, account)
            if problem:
                return await show_sign(request, notice=problem, status=422, typed_name=name)
            data, signer = name, name
        elif kind == "drawn":
            raw = form.get("signature_data")
            problem = drawn_signature_problem(raw if isinstance(raw, str) else "")
            if problem:
                return await show_sign(request, notice=problem, status=422)
            assert isinstance(raw, str)
            data, signer = raw, f"{account.first_name} {account.last_name}"
        else:
            return await show_sign(request, notice="choose_signature", status=422)
        signature = Signature(
            kind=kind,
            data=data,
            signer_name=signer,
            channel="web",
            esign_consent_at=progress.consent_at,
            ip_address=client_ip(request),
            user_agent=(request.headers.get("User-Agent") or "")[:400] or None,
        )
        try:
            plan = await accept_plan_offer(
                db,
                offer=signing.offer,
                account=account,
                method=method,
                signature=signature,
                agreement_text=text,
                terms_version=signing.terms_version,
                at=signing.now,
            )
        except OfferNotOpen:
            # Closed between the check above and the signing (a race): nothing was written.
            await db.rollback()
            await db.refresh(signing.offer)
            return closed_page(request, signing)
        except PlanError as exc:
            await db.rollback()
            message = str(exc)
            return await show_sign(request, notice=message, status=422)
        try:
            await send_agreement_copy(engine.db, engine.notifier, plan_id=plan.id,
                                      clock=engine.clock, default_brand=engine.settings.brand)
        except Exception:
            # The plan is signed and committed; a copy that fails is logged, never a 500.
            log.exception("the agreement copy of plan %s could not be prepared", plan.id)
    raise _clear(web.HTTPSeeOther("/portal/plan"))


def _clear(response: web.HTTPSeeOther) -> web.HTTPSeeOther:
    response.del_cookie(PROGRESS_COOKIE, path=PROGRESS_PATH)
    return response


async def confirmation(
    request: web.Request, db: AsyncSession, signing: Signing, plan: Plan
) -> web.Response:
    agreement = await db.scalar(
        select(Agreement).where(Agreement.plan_id == plan.id).order_by(Agreement.id).limit(1)
    )
    installments: list[Payment] = await plan_installments(db, plan.id)
    method = await db.get(PaymentMethod, plan.method_id) if plan.method_id else None
    signed_local = agreement.signed_at.astimezone(signing.zone) if agreement else None
    return page(
        request,
        "plan_confirmation.html",
        **base_context(
            signing,
            title=N_("Your payment plan is set up"),
            plan=plan,
            agreement=agreement,
            agreement_ref=history.agreement_reference(agreement) if agreement else "",
            installments=installments,
            method_label=method_label(method) if method else "",
            signed_local=signed_local,
            masked_email=mask_email(signing.account.email),
        ),
    )


# ---------------------------------------------------------------- signatures


def typed_signature_problem(name: str, account: Account) -> str | None:
    if not name:
        return "name_required"
    if len(name) > SIGNER_NAME_MAX:
        return "name_too_long"
    if not any(ch.isalpha() for ch in name):
        return "name_required"
    # Reasonably the account holder: the last name (or, failing that, the first) appears.
    words = {w.strip(".,'-").casefold() for w in name.split()}
    holder = {account.first_name.casefold(), account.last_name.casefold()}
    if not words & holder and account.last_name.casefold() not in name.casefold():
        return "name_mismatch"
    return None


def drawn_signature_problem(data_url: str) -> str | None:
    """Why a drawn signature is refused, or None: a PNG data URL, small, and not blank."""
    if not data_url:
        return "signature_missing"
    if not data_url.startswith(PNG_DATA_URL_PREFIX):
        return "signature_invalid"
    encoded = data_url[len(PNG_DATA_URL_PREFIX) :]
    if len(encoded) > (SIGNATURE_PNG_MAX_BYTES * 4) // 3 + 4:
        return "signature_too_large"
    try:
        png = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "signature_invalid"
    if not png.startswith(PNG_MAGIC):
        return "signature_invalid"
    if len(png) > SIGNATURE_PNG_MAX_BYTES:
        return "signature_too_large"
    return image_problem(png)


def image_problem(png: bytes) -> str | None:
    """A PNG that opens, of a sensible size, with a stroke on it: enough dark pixels once laid
    on white paper (the pad's background is transparent)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(png)) as image:
            width, height = image.size  # read from the header: nothing decoded yet
            if image.format != "PNG":
                return "signature_invalid"
            if width * height > SIGNATURE_MAX_PIXELS:
                return "signature_too_large"
            rgba = image.convert("RGBA")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return "signature_invalid"
    paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    grey = Image.alpha_composite(paper, rgba).convert("L")
    dark = sum(grey.histogram()[:160])
    return None if dark >= SIGNATURE_MIN_INK_PIXELS else "signature_blank"


def _text(form: MultiDictProxy[Any], name: str, *, limit: int = 300) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""
