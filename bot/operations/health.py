"""`/healthz` and `/readyz`.

`/healthz` says the process is up and answering: no dependency is asked, so a load balancer or
an orchestrator's liveness probe never restarts a healthy process because the database was slow.
`/readyz` says whether this process can do its work: the database answers, Redis answers, and the
database's schema is at the migrations' head. Each check has `CHECK_SECONDS`: a dependency that
hangs makes the answer 503 naming it, never a probe that hangs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot import appkeys

log = logging.getLogger(__name__)

CHECK_SECONDS = 2.0


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def readyz(request: web.Request) -> web.Response:
    database = request.config_dict[appkeys.DATABASE]
    coordinator = request.config_dict[appkeys.COORDINATOR]

    async def migrations() -> str:
        current, heads = await database.revisions()
        if current != heads:
            return f"at {_named(current)}, head is {_named(heads)}"
        return "ok"

    checks: dict[str, Callable[[], Awaitable[object]]] = {
        "database": database.ping,
        "redis": coordinator.ping,
        "migrations": migrations,
    }
    names = list(checks)
    results = await asyncio.gather(*(_bounded(name, checks[name]) for name in names))
    report = dict(zip(names, results, strict=True))
    ready = all(result == "ok" for result in results)
    if not ready:
        log.warning("not ready: %s", ", ".join(n for n, r in report.items() if r != "ok"))
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": report},
        status=200 if ready else 503,
    )


async def _bounded(name: str, check: Callable[[], Awaitable[object]]) -> str:
    """"ok", or a short reason: the kind of error, never its text (which may carry a URL with
    its password)."""
    try:
        result = await asyncio.wait_for(check(), CHECK_SECONDS)
    except TimeoutError:
        return f"no answer within {CHECK_SECONDS:g} s"
    except Exception as error:
        log.warning("readiness check %s failed: %s", name, type(error).__name__)
        return f"unreachable ({type(error).__name__})"
    return result if isinstance(result, str) else "ok"


def _named(revisions: set[str]) -> str:
    return ", ".join(sorted(revisions)) or "none"
