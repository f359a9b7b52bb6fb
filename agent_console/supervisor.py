"""Supervisors' pages: only supervisors reach them (``require_role``); agents get 403.

The home page links the parts, each in its own module: creditors and their settings with a
preview (``supervisor_creditors.py``), payments across accounts with cancel and refund
(``supervisor_payments.py``), the dashboard and the wrong-number report
(``supervisor_dashboard.py``), canned replies (``supervisor_canned.py``). Every change goes
through the domain (bot/accounts, bot/payments, bot/inbox) with the actor ``staff:NAME``, as the
sign-in's own audit rows name staff (canned replies keep bot/inbox's ``agent:NAME``); reads come
from bot/reports.
"""

from __future__ import annotations

from aiohttp import web

from agent_console.app import current, page, require_role


def add_routes(console: web.Application) -> None:
    from agent_console import (
        supervisor_canned,
        supervisor_creditors,
        supervisor_dashboard,
        supervisor_payments,
    )

    console.router.add_get("/supervisor/", home)
    supervisor_creditors.add_routes(console)
    supervisor_payments.add_routes(console)
    supervisor_dashboard.add_routes(console)
    supervisor_canned.add_routes(console)


def actor(request: web.Request) -> str:
    """Who the audit trail names for a change made on these pages."""
    found = current(request)
    assert found is not None  # require_role let the request through
    return f"staff:{found.staff.name}"


@require_role("supervisor")
async def home(request: web.Request) -> web.StreamResponse:
    return page(request, "supervisor.html", title="Supervisor")
