"""The inbox views: Waiting (the queue, oldest first, with the waiting time and reason), Mine,
All live (bot-handled, with the flow step), Resolved, and a search by account ID, name or the
last 4 digits of the phone. Each page lists rows; the live feed asks for the rows again
(``?rows=1``: the table body alone) when something changes."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from agent_console.app import current, page
from bot import appkeys
from bot.inbox import reads

VIEWS = {
    "waiting": ("Waiting for a person", "No one is waiting."),
    "mine": ("Mine", "No conversation is yours right now."),
    "live": ("All live", "No live conversation."),
    "resolved": ("Resolved", "Nothing resolved yet."),
    "search": ("Search", "Nothing found."),
}
REASONS = {
    "asked": "asked for a person", "confused": "confused", "wrong_number": "wrong number",
    "hardship": "hardship", "dispute": "dispute", "opt_out_unclear": "opt-out unclear",
    "agent_opened": "opened by an agent",
}


def add_routes(console: web.Application) -> None:
    console.router.add_get("/inbox/{view}", view)


def waited(since: datetime | None, now: datetime) -> str:
    if since is None:
        return ""
    minutes = max(0, int((now - since).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


async def rows_for(request: web.Request, name: str, term: str) -> list[reads.ConversationRow]:
    me = current(request)
    assert me is not None
    async with request.config_dict[appkeys.DATABASE].session() as db:
        if name == "mine":
            return await reads.list_conversations(db, status="agent", assignee=me.staff.name)
        if name == "live":  # everything not resolved: the bot's, the queue's and the agents'
            found = await reads.list_conversations(db)
            return [row for row in found if row.status != "resolved"]
        if name == "search":
            return await reads.list_conversations(db, search=term)
        return await reads.list_conversations(db, status=name)


async def view(request: web.Request) -> web.StreamResponse:
    name = request.match_info["view"]
    if name not in VIEWS:
        raise web.HTTPNotFound()
    term = request.query.get("q", "").strip()[:80]
    rows = await rows_for(request, name, term) if name != "search" or term else []
    counts = None
    if not request.query.get("rows"):
        async with request.config_dict[appkeys.DATABASE].session() as db:
            counts = await reads.counts(db)
            me = current(request)
            assert me is not None
            counts["mine"] = (await reads.counts(db, assignee=me.staff.name))["agent"]
    now = request.config_dict[appkeys.CLOCK].now()
    title, empty = VIEWS[name]
    template = "inbox_rows.html" if request.query.get("rows") else "inbox.html"
    return page(request, template, title=title, view=name, rows=rows, empty=empty, term=term,
                now=now, waited=waited, reasons=REASONS, counts=counts)
