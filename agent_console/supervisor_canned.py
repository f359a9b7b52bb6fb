"""Canned replies, kept by supervisors: the texts agents insert with one click, each under a
shortcut, with placeholders filled from the customer's account when used (bot/inbox/canned.py
checks the shortcut, the body and every placeholder, by name, before anything is saved)."""

from __future__ import annotations

from aiohttp import web

from agent_console.app import current, page, require_role
from bot import appkeys
from bot.inbox import canned

HOME = "/agent/supervisor/canned"


def add_routes(console: web.Application) -> None:
    console.router.add_get("/supervisor/canned", list_page)
    console.router.add_post("/supervisor/canned", save)
    console.router.add_post("/supervisor/canned/{shortcut}/delete", delete)


def _name(request: web.Request) -> str:
    found = current(request)
    assert found is not None  # require_role let the request through
    return found.staff.name


async def _render(request: web.Request, *, status: int = 200, error: str | None = None,
                  shortcut: str = "", body: str = "", done: str | None = None) -> web.Response:
    async with request.config_dict[appkeys.DATABASE].session() as session:
        replies = await canned.list_canned(session)
    return page(
        request, "supervisor_canned.html", status=status, title="Canned replies",
        replies=replies, error=error, shortcut=shortcut, body=body, done=done,
        placeholders=canned.PLACEHOLDERS,
    )


@require_role("supervisor")
async def list_page(request: web.Request) -> web.StreamResponse:
    done = {"saved": "Saved.", "deleted": "Deleted."}.get(request.query.get("done", ""))
    return await _render(request, done=done)


@require_role("supervisor")
async def save(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    shortcut, body = str(form.get("shortcut", "")), str(form.get("body", ""))
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as session:
        try:
            await canned.save_canned(session, shortcut=shortcut, body=body, by=_name(request),
                                     now=now)
        except canned.CannedRefused as refused:
            # What was typed stays in the form, with why it was refused.
            return await _render(request, status=422, error=str(refused), shortcut=shortcut,
                                 body=body)
    raise web.HTTPSeeOther(f"{HOME}?done=saved")


@require_role("supervisor")
async def delete(request: web.Request) -> web.StreamResponse:
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as session:
        try:
            await canned.delete_canned(session, request.match_info["shortcut"],
                                       by=_name(request), now=now)
        except canned.NoSuchCanned:
            return await _render(request, status=404, error="That canned reply is gone.")
    raise web.HTTPSeeOther(f"{HOME}?done=deleted")
