"""The inbox views: Waiting (the queue, oldest first, with the waiting time and reason), Mine,
All live (bot-handled, with the flow step), Resolved, and a search by account ID, name or the
last 4 digits of the phone. Each page lists rows; the live feed asks for the rows again
(``?rows=1``: the table body alone) when something changes."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from sqlalchemy import select

from agent_console.app import current, page
from bot import appkeys
from bot.ledger.models import Account, Conversation

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


async def rows_for(request: web.Request, name: str, term: str) -> list[dict[str, object]]:
    me = current(request)
    assert me is not None
    query = select(Conversation, Account).outerjoin(Account, Account.id == Conversation.account_id)
    if name == "waiting":
        query = query.where(Conversation.status == "waiting").order_by(
            Conversation.waiting_since, Conversation.id)
    elif name == "mine":
        query = query.where(Conversation.status == "agent", Conversation.assignee == me.staff.name)
    elif name == "live":
        query = query.where(Conversation.status.in_(("bot", "waiting", "agent")))
    elif name == "resolved":
        query = query.where(Conversation.status == "resolved")
    if name != "waiting":
        query = query.order_by(Conversation.updated_at.desc(), Conversation.id.desc())
    async with request.config_dict[appkeys.DATABASE].session() as db:
        found = (await db.execute(query.limit(200))).all()
    return [
        {"phone": conv.phone, "account_id": account.account_ref if account else None,
         "customer_name": f"{account.first_name} {account.last_name}" if account else None,
         "status": conv.status, "reason": conv.reason, "waiting_since": conv.waiting_since,
         "assignee": conv.assignee, "flow": conv.flow, "state": conv.state}
        for conv, account in found
    ]


async def view(request: web.Request) -> web.StreamResponse:
    name = request.match_info["view"]
    if name not in VIEWS:
        raise web.HTTPNotFound()
    term = request.query.get("q", "").strip()[:80]
    rows = await rows_for(request, name, term) if name != "search" or term else []
    now = request.config_dict[appkeys.CLOCK].now()
    title, empty = VIEWS[name]
    template = "inbox_rows.html" if request.query.get("rows") else "inbox.html"
    return page(request, template, title=title, view=name, rows=rows, empty=empty, term=term,
                now=now, waited=waited, reasons=REASONS)
