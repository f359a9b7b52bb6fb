"""Supervisors' pages (creditors, payments, refunds, the dashboard): only supervisors reach them
(``require_role``); agents get 403."""

from __future__ import annotations

from aiohttp import web

from agent_console.app import page, require_role


def add_routes(console: web.Application) -> None:
    console.router.add_get("/supervisor/", home)


@require_role("supervisor")
async def home(request: web.Request) -> web.StreamResponse:
    return page(request, "supervisor.html", title="Supervisor")
