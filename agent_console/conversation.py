"""One conversation: the transcript, the flow step, the account beside it, and the agent's
actions on it."""

from __future__ import annotations

from aiohttp import web

from agent_console.app import page


def add_routes(console: web.Application) -> None:
    console.router.add_get("/c/{digits}", show)


def phone_of(request: web.Request) -> str:
    digits = request.match_info["digits"]
    if not digits.isdigit() or not 8 <= len(digits) <= 15:
        raise web.HTTPNotFound()
    return "+" + digits


async def show(request: web.Request) -> web.StreamResponse:
    phone = phone_of(request)
    return page(request, "not_found.html", 404, title=phone)
