"""One page per state of the payment flow; each form post fires the flow's own triggers.

The page is always drawn from the flow's current state, so a customer who started by text sees
the step the conversation is at, and the next text continues from the step the web left.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from bot import appkeys
from bot.ledger.models import Account, Link
from bot.money import format_cents
from bot.phones import InvalidPhone, normalize_phone
from bot.providers.payments import MethodRejected, PaymentError
from bot.sms.engine import WebStep
from bot.sms.parsing import Meaning, parse_reply
from bot.text.i18n import N_, format_month_day, gettext
from portal_fallback import history
from portal_fallback.app import page
from portal_fallback.audience import BRAND
from portal_fallback.method_entry import (
    METHOD_REF_PREFIXES,
    MethodNotTaken,
    method_entry_context,
    save_entered_method,
)
from portal_fallback.sessions import SESSION, client_ip
from states.payment import CONTACT_PENDING, PaymentFlow

log = logging.getLogger(__name__)

STEP_TITLES = {
    "idle": N_("Your balance"),
    "contact_review": N_("Your contact details"),
    "offers": N_("Choose an offer"),
    "amount": N_("How much"),
    "method": N_("Payment method"),
    "awaiting_method": N_("Payment method"),
    "schedule": N_("When"),
    # One final step: the agreement with its consent and the Pay button (the flow's confirm and
    # agreement states are answered together on the web).
    "confirm": N_("Review and pay"),
    "agreement": N_("Review and pay"),
}
FINAL_STEPS = {"confirm", "agreement"}
# The nouns method_entry.py names the method to add by, for the catalog ("Add a card").
METHOD_NOUNS = (N_("card"), N_("bank account"))


def add_routes(portal: web.Application) -> None:
    portal.router.add_get("/pay", show)
    portal.router.add_post("/pay", answer)
    portal.router.add_post("/methods", save_method)
    portal.router.add_post("/sign-out", sign_out)


def account_id_of(request: web.Request) -> int:
    row = request.get(SESSION)
    if row is None or row.account_id is None:
        raise web.HTTPSeeOther("/portal/")
    return row.account_id


async def session_link(request: web.Request) -> Link | None:
    row = request.get(SESSION)
    if row is None or row.link_id is None:
        return None
    async with request.config_dict[appkeys.DATABASE].session() as db:
        return await db.get(Link, row.link_id)


async def link_terms(request: web.Request) -> dict[str, Any] | None:
    """What the link this session came by presets: amount (maybe locked), fee."""
    link = await session_link(request)
    if link is None:
        return None
    terms: dict[str, Any] = {}
    if link.amount_cents:
        terms["preset_amount_cents"] = link.amount_cents
        terms["amount_locked"] = not link.allow_amount_change
        terms["link_id"] = link.id  # its payment made, the link is done
    if link.fee_cents:
        terms["fee_cents"] = link.fee_cents
    return terms or None


def proof_of(request: web.Request) -> str | None:
    row = request.get(SESSION)
    return row.verified_by if row is not None else None


async def show(request: web.Request) -> web.Response:
    step = await request.config_dict[appkeys.ENGINE].web_view(
        account_id_of(request), verified_by=proof_of(request)
    )
    return await render_step(request, step)


async def answer(request: web.Request) -> web.StreamResponse:
    engine = request.config_dict[appkeys.ENGINE]
    account_id = account_id_of(request)
    form = await request.post()
    current = await engine.web_view(account_id, verified_by=proof_of(request))
    if form.get("state") != current.flow.state:
        # Another tab or a text moved the flow on: show where it stands, change nothing.
        return await render_step(request, current, notices=[("stale", {})], status=409)
    if form.get("action") == "start_over":
        step = await engine.web_step(account_id, restart=True, verified_by=proof_of(request))
        raise web.HTTPSeeOther("/portal/pay")
    meaning = meaning_from_form(current.flow, form)
    terms = await link_terms(request)
    step = await _step(request, meaning, terms, current.flow.state)
    if meaning.kind == "yes" and current.flow.state == "confirm" and not step.stale:
        if step.flow.state == "agreement":
            # The one final step: the consent ticked and Pay pressed is the agreement too. The
            # agreement is recorded by the flow's own AGREE, exactly as a text's would be.
            step = await _step(request, Meaning("agree"), terms, "agreement")
    if step.stale:  # a second click got here after the first moved the flow on
        return await render_step(request, step, notices=[("stale", {})], status=409)
    if step.outcome is not None and step.outcome.status != "declined":
        raise web.HTTPSeeOther(f"/portal/receipt/{step.outcome.reference}")
    problems = [(r.template, r.context) for r in step.notices if r.template in PROBLEMS]
    informs = any(
        r.template in INFORMS or (r.template == "contact_code_sent" and r.context.get("failed"))
        for r in step.notices
    )
    if problems or informs or (step.outcome and step.outcome.status == "declined"):
        return await render_step(
            request, step, notices=notices_of(step), status=422 if problems else 200
        )
    raise web.HTTPSeeOther("/portal/pay")


async def _step(
    request: web.Request, meaning: Meaning, terms: dict[str, Any] | None, expected: str
) -> WebStep:
    step = await request.config_dict[appkeys.ENGINE].web_step(
        account_id_of(request),
        meaning,
        link_terms=terms,
        verified_by=request[SESSION].verified_by,
        ip_address=client_ip(request),
        user_agent=(request.headers.get("User-Agent") or "")[:400],
        expected_state=expected,
    )
    # One line per step, as a text's turn has: the conversation's tag and the account are bound
    # by the portal's session middleware.
    log.info("portal step answered", extra={
        "channel": "web", "asked": meaning.kind, "from_state": expected,
        "state": step.flow.state, "stale": step.stale,
    })
    return step


PROBLEMS = {
    "did_not_understand", "amount_too_high", "amount_too_low", "payment_refused", "not_open",
}
# Said on the page, not an error: why no payment starts (nothing owed, or nothing open), or that
# a new contact waits for its code (nothing was changed yet).
INFORMS = {"nothing_owed", "nothing_open", "preset_lowered", "contact_needs_code"}


def notices_of(step: WebStep) -> list[tuple[str, dict[str, Any]]]:
    return [(r.template, r.context) for r in step.notices]


def meaning_from_form(flow: PaymentFlow, form: MultiDictProxy[Any]) -> Meaning:
    """What a form post means, in the words the flow already understands."""
    action = _text(form, "action")
    today = flow.account.today
    if action == "back":
        return Meaning("no")
    state = flow.state
    if state == "idle":
        return Meaning("pay")
    if state == "contact_review":
        if action == "keep":
            return Meaning("yes")  # go on with the contacts on file; a pending change is dropped
        codes = {
            kind: _text(form, f"{kind}_code").replace(" ", "").replace("-", "")[:12]
            for kind in ("email", "phone")
            if _text(form, f"{kind}_code")
        }
        if codes:
            return Meaning("contact_code", codes)
        email, phone = _text(form, "email"), _text(form, "phone")
        if not email and not phone:
            return Meaning("yes")
        changes: dict[str, str] = {}
        if email:
            meaning = parse_reply(email, "contact", today=today)
            if meaning.kind != "email":
                return Meaning("invalid", reason="bad_email")
            changes["email"] = str(meaning.value)
        if phone:
            try:
                changes["phone"] = normalize_phone(phone)
            except InvalidPhone:
                return Meaning("invalid", reason="bad_phone")
        return Meaning("contact", changes)
    if state in {"offers", "method", "awaiting_method"}:
        choice = _text(form, "choice")
        if choice.isdigit() and len(choice) < 4:
            return Meaning("choice", int(choice))
        return Meaning("invalid", reason="no_such_option")
    if state == "amount":
        if action == "full":
            return Meaning("full")
        meaning = parse_reply(_text(form, "amount"), "amount", today=today)
        return meaning if meaning.kind in {"amount", "full", "invalid"} else Meaning("invalid")
    if state == "schedule":
        if action == "now":
            return Meaning("now")
        try:
            day = date.fromisoformat(_text(form, "date"))
        except ValueError:
            return Meaning("invalid", reason="not_understood")
        if day < today:
            return Meaning("invalid", reason="past_date")
        if day > flow.horizon():
            return Meaning("invalid", reason="beyond_horizon")
        return Meaning("now") if day == today else Meaning("date", day)
    if state in FINAL_STEPS:
        if action in {"change", "cancel"}:
            return Meaning("no")
        if _text(form, "consent") != "yes":
            return Meaning("invalid", reason="consent_required")
        # Confirm's YES; the agreement's AGREE follows in the same post (see `answer`).
        return Meaning("yes") if state == "confirm" else Meaning("agree")
    return Meaning("invalid")


def _text(form: MultiDictProxy[Any], name: str) -> str:
    value = form.get(name)
    return value.strip()[:300] if isinstance(value, str) else ""


async def render_step(
    request: web.Request,
    step: WebStep,
    *,
    notices: list[tuple[str, dict[str, Any]]] | None = None,
    status: int = 200,
) -> web.Response:
    flow = step.flow
    settings = request.config_dict[appkeys.SETTINGS]
    engine = request.config_dict[appkeys.ENGINE]
    context: dict[str, Any] = {
        "flow": flow,
        "state": flow.state,
        "account": flow.account,
        "summary": flow.summary(),
        "title": STEP_TITLES.get(flow.state, N_("Pay")),
        "notices": notices or [],
        "min_cents": flow.min_amount(),
        "horizon": flow.horizon(),
        "link": await session_link(request),
        "brand": step.brand or request.get(BRAND) or settings.brand,
        "skip_option": flow.skip_option(),
        "chosen_method": flow.chosen_method(),
        # New contacts waiting for their code: masked, to show where each code went.
        "contact_pending": {
            kind: entry["masked"]
            for kind, entry in (flow.context.get(CONTACT_PENDING) or {}).items()
        },
    }
    if flow.state in {"method", "awaiting_method"}:
        context.update(await method_context(request, flow))
    if flow.state == "idle":
        async with request.config_dict[appkeys.DATABASE].session() as db:
            context["overview"] = await history.overview(db, account_id_of(request))
        context["status_of"] = history.status_words
    if flow.state in FINAL_STEPS:
        summary = flow.summary()
        context["pay_label"] = pay_label(summary)
        async with request.config_dict[appkeys.DATABASE].session() as db:
            account = await db.get(Account, account_id_of(request))
            context["agreement_text"] = engine.notifier.agreement_text(
                account=account,
                amount_cents=summary["amount_cents"],
                pay_on=summary["pay_on"],
                method_label=summary["method_label"] or "",
                offer=summary["offer"],
                method_kind=summary["method_kind"],
                fee_cents=summary["fee_cents"],
                terms_version=flow.settings.terms_version,
                brand=await engine.brand_for(db, account),
            )
        context["terms_url"] = f"{settings.public_base_url}/t/{flow.settings.terms_version}"
    return page(request, "pay.html", status, **context)


def pay_label(summary: dict[str, Any]) -> str:
    """The final button says what it does: "Pay $40.00", "Schedule $40.00 for Dec 15"."""
    offer = summary["offer"]
    if offer is not None and offer.kind == "plan":
        return gettext("Agree and start my plan")
    total = format_cents(int(summary["amount_cents"] or 0) + int(summary["fee_cents"] or 0))
    if summary["pay_on"] is not None:
        return gettext("Schedule %(amount)s for %(day)s") % {
            "amount": total, "day": format_month_day(summary["pay_on"])
        }
    return gettext("Pay %(amount)s") % {"amount": total}


async def method_context(request: web.Request, flow: PaymentFlow) -> dict[str, Any]:
    async with request.config_dict[appkeys.DATABASE].session() as db:
        account = await db.get(Account, account_id_of(request))
        assert account is not None
        entry = await method_entry_context(request, db, account)
    return {"new_choice": len(flow.account.methods) + 1, **entry}


async def save_method(request: web.Request) -> web.StreamResponse:
    """The browser saved a card with Stripe.js (or picked a sandbox test method): keep it."""
    engine = request.config_dict[appkeys.ENGINE]
    account_id = account_id_of(request)
    form = await request.post()
    method_ref = _text(form, "payment_method")
    if not method_ref.startswith(METHOD_REF_PREFIXES) or len(method_ref) > 64:
        step = await engine.web_step(account_id, verified_by=proof_of(request))
        return await render_step(request, step, notices=[("method_failed", {})], status=422)
    async with request.config_dict[appkeys.DATABASE].session() as db:
        account = await db.get(Account, account_id)
        assert account is not None
        try:
            saved = await save_entered_method(request, db, account, method_ref)
        except (MethodRejected, PaymentError):
            step = await engine.web_step(account_id, verified_by=proof_of(request))
            return await render_step(request, step, notices=[("method_failed", {})], status=422)
        except MethodNotTaken as refused:
            step = await engine.web_step(account_id, verified_by=proof_of(request))
            notice = ("payment_refused", {"reason": refused.notice})
            return await render_step(request, step, notices=[notice], status=422)
    await engine.method_saved(
        account_id,
        saved,
        ip_address=client_ip(request),
        user_agent=(request.headers.get("User-Agent") or "")[:400],
        verified_by=proof_of(request),
    )
    raise web.HTTPSeeOther("/portal/pay")


async def sign_out(request: web.Request) -> web.StreamResponse:
    row = request.get(SESSION)
    if row is not None:
        now = request.config_dict[appkeys.CLOCK].now()
        async with request.config_dict[appkeys.DATABASE].session() as db:
            from bot.ledger.models import WebSession

            stored = await db.get(WebSession, row.id)
            if stored is not None:
                stored.revoked_at = now
                await db.commit()
    response = web.HTTPSeeOther("/portal/")
    response.del_cookie("paybot_session", path="/")
    raise response
