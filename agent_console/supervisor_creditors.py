"""Creditors for supervisors: the list, and one creditor's form (name, brand, support contact,
Reg F disclosure and every flow setting, typed: a checkbox per switch, a number, a comma list),
with a preview of the first text and the journey those settings produce.

A save goes through ``bot.accounts.creditors.change_creditor``, the same rule as ``paybot
creditors set``: only the fields whose value changed are sent, each key is checked, and one bad
value refuses the whole change, named next to its field, with nothing written. "Preview" runs
the same change in a transaction that is rolled back, so what is previewed has passed the same
checks as what would be saved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from agent_console import creditor_preview
from agent_console.app import HEADERS, page, require_role
from agent_console.supervisor import actor
from bot import appkeys
from bot.accounts.creditors import (
    BRAND_MAX,
    DISCLOSURE_MAX,
    NAME_MAX,
    SUPPORT_MAX,
    CreditorView,
    UnknownCreditor,
    change_creditor,
    creditor_view,
    list_creditors,
)
from bot.config.flow import WORKER_KEYS, FlowSettings, InvalidCreditorSettings
from bot.ledger.models import Creditor

TEXT_FIELDS = {  # key: (label, max length, help)
    "name": ("Name", NAME_MAX, "Opens every text (\"Name: Hi Maria, ...\") unless a brand is set."),
    "brand": ("Brand", BRAND_MAX,
              "The name texts and emails are signed with; empty: the name."),
    "support_contact": ("Support contact", SUPPORT_MAX,
                        "What HELP gives: a phone number or an address; empty: the default."),
    "disclosure": ("Reg F disclosure", DISCLOSURE_MAX,
                   "Carried by the first text to a number: that it is from a debt collector."),
}
HELP = {
    "contact_review": "Ask the customer to check their email before paying.",
    "virtual_collection": "Show the account's offers (settlement, plan) as a step.",
    "allow_skip_offer": "Let the customer skip the offers and pay an amount of their own.",
    "schedule_payment": "Let the customer pick a later date (not for a settlement).",
    "min_payment_cents": "Smallest payment, in cents (2500 = $25.00).",
    "methods_enabled": "card, us_bank_account",
    "quiet_hours_start": "No proactive message from this hour (0-24, customer's time).",
    "quiet_hours_end": "... until this hour (0-23).",
    "reminder_days_before": "Up to three, e.g. 7, 3, 1",
    "decline_retry_days": "Days between retries of a declined payment; empty: the default.",
    "decline_max_retries": "Retries of a declined payment at most; empty: the default.",
}
DONE = {"saved": "Saved. The next conversation follows these settings."}


@dataclass(frozen=True)
class Field:
    key: str
    kind: str  # bool | int | list | text
    value: Any  # what the input shows: a bool for a checkbox, else text
    own: bool  # the creditor's own value (else the default applies)
    help: str = ""


def add_routes(console: web.Application) -> None:
    console.router.add_get("/supervisor/creditors", creditors)
    console.router.add_get("/supervisor/creditors/{code}", edit)
    console.router.add_post("/supervisor/creditors/{code}", submit)


def _kind(default: Any) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, tuple | list):
        return "list"
    return "text"


def _shown(kind: str, value: Any) -> Any:
    if kind == "bool":
        return bool(value)
    if kind == "list":
        return ", ".join(str(item) for item in value)
    return "" if value is None else str(value)


def setting_fields(view: CreditorView) -> list[Field]:
    """Every flow setting (as FlowSettings declares them, so a new one shows up by itself),
    then the worker's decline rules."""
    own = view.creditor.settings or {}
    fields = []
    for key, declared in FlowSettings.model_fields.items():
        kind = _kind(declared.default)
        fields.append(Field(key, kind, _shown(kind, getattr(view.settings, key)), key in own,
                            HELP.get(key, "")))
    for key in WORKER_KEYS:
        fields.append(Field(key, "int", _shown("int", own.get(key)), key in own, HELP.get(key, "")))
    return fields


def _list_json(text: str) -> str:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    return json.dumps([int(part) if part.isdigit() else part for part in parts])


def changes_from(form: MultiDictProxy[Any], view: CreditorView) -> tuple[dict[str, str],
                                                                          dict[str, Any]]:
    """(the changes to send, what the form showed): only what differs from what is in force.
    Values go as JSON text, typed by the field (a number field's "abc" stays text, so the rule
    refuses it by name instead of it being guessed at)."""
    def text(key: str, limit: int = 2000) -> str:
        value = form.get(key)
        return value[:limit] if isinstance(value, str) else ""

    changes: dict[str, str] = {}
    shown: dict[str, Any] = {}
    for key, (_, limit, _) in TEXT_FIELDS.items():
        value = text(key, limit * 2)
        shown[key] = value
        if value.strip() != (getattr(view.creditor, key) or "").strip():
            changes[key] = value
    for field in setting_fields(view):
        if form.get(f"default:{field.key}") == "1" and field.own:
            changes[field.key] = ""  # back to the default
            shown[field.key] = field.value
            continue
        if field.kind == "bool":
            value: Any = form.get(field.key) == "true"
            shown[field.key] = value
            if value != field.value:
                changes[field.key] = json.dumps(value)
            continue
        raw = text(field.key).strip()
        shown[field.key] = raw
        if raw == "":
            if field.own:
                changes[field.key] = ""
            continue
        if field.kind == "list":
            if _list_json(raw) != _list_json(str(field.value)):
                changes[field.key] = _list_json(raw)
        elif field.kind == "int":
            if raw != field.value:
                changes[field.key] = raw
        elif raw != field.value:
            changes[field.key] = json.dumps(raw)
    return changes, shown


@require_role("supervisor")
async def creditors(request: web.Request) -> web.StreamResponse:
    settings = request.config_dict[appkeys.SETTINGS]
    async with request.config_dict[appkeys.DATABASE].session() as db:
        views = await list_creditors(db, settings.flow)
    return page(request, "supervisor_creditors.html", title="Creditors", views=views)


def _preview(request: web.Request, creditor: Creditor, flow: FlowSettings
             ) -> creditor_preview.Preview:
    settings = request.config_dict[appkeys.SETTINGS]
    today = request.config_dict[appkeys.CLOCK].now().date()
    return creditor_preview.build(settings, creditor, flow, today)


async def _form(request: web.Request, *, status: int = 200, problems: dict[str, str] | None = None,
                shown: dict[str, Any] | None = None, previewing: bool = False
                ) -> web.StreamResponse:
    code = request.match_info["code"]
    settings = request.config_dict[appkeys.SETTINGS]
    async with request.config_dict[appkeys.DATABASE].session() as db:
        try:
            view = await creditor_view(db, code, settings.flow)
        except UnknownCreditor:
            raise web.HTTPNotFound() from None
        preview = _preview(request, view.creditor, view.settings)
    fields = setting_fields(view)
    order = [*TEXT_FIELDS, *(f.key for f in fields)]
    # Named in the form's order (a key the form does not show, last).
    problems = dict(sorted((problems or {}).items(),
                           key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    return page(
        request, "supervisor_creditor.html", status, title=f"Creditor {code}", view=view,
        text_fields=TEXT_FIELDS, fields=fields, problems=problems,
        shown=shown or {}, preview=preview, previewing=previewing,
        done=DONE.get(request.query.get("done", "")),
    )


@require_role("supervisor")
async def edit(request: web.Request) -> web.StreamResponse:
    return await _form(request)


@require_role("supervisor")
async def submit(request: web.Request) -> web.StreamResponse:
    code = request.match_info["code"]
    form = await request.post()
    settings = request.config_dict[appkeys.SETTINGS]
    now = request.config_dict[appkeys.CLOCK].now()
    previewing = form.get("action") == "preview"
    async with request.config_dict[appkeys.DATABASE].session() as db:
        try:
            view = await creditor_view(db, code, settings.flow)
        except UnknownCreditor:
            raise web.HTTPNotFound() from None
        changes, shown = changes_from(form, view)
        if not changes and not previewing:
            raise web.HTTPSeeOther(f"/agent/supervisor/creditors/{code}", headers=HEADERS)
        try:
            creditor = await change_creditor(db, code, changes, actor=actor(request), at=now)
        except InvalidCreditorSettings as exc:
            await db.rollback()
            return await _show_refusal(request, view, exc.problems, shown)
        if previewing:
            # The proposed settings, checked by the same rule, shown and never stored.
            proposed = settings.flow.for_creditor(creditor)
            preview = _preview(request, creditor, proposed)
            await db.rollback()
            return await _show_proposed(request, code, preview, shown)
        await db.commit()
    raise web.HTTPSeeOther(f"/agent/supervisor/creditors/{code}?done=saved", headers=HEADERS)


async def _show_refusal(request: web.Request, view: CreditorView, problems: dict[str, str],
                        shown: dict[str, Any]) -> web.StreamResponse:
    return await _form(request, status=422, problems=problems, shown=shown)


async def _show_proposed(request: web.Request, code: str, preview: creditor_preview.Preview,
                         shown: dict[str, Any]) -> web.StreamResponse:
    settings = request.config_dict[appkeys.SETTINGS]
    async with request.config_dict[appkeys.DATABASE].session() as db:
        view = await creditor_view(db, code, settings.flow)
    return page(
        request, "supervisor_creditor.html", title=f"Creditor {code}", view=view,
        text_fields=TEXT_FIELDS, fields=setting_fields(view), problems={}, shown=shown,
        preview=preview, previewing=True, done=None,
    )
