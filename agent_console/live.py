"""The live feed to the consoles: server-sent events (aiohttp-sse) fed by the Redis agents'
feed (bot.coordination.AGENT_FEED), so an event published by any web process on any host
reaches every console; with the in-process Redis (fakeredis) it works within the one process.

Each process subscribes once and fans events out to its open consoles. A console is sent what
names the change (its type, the conversation's phone, status, agent) and the conversation's
inbox row as every view shows it (rendered once per process, not per console: any staff member
may see any row), so an inbox puts it on the screen without asking again; never a message body
or a note. A conversation page asks the server again for its transcript, through its own
session.
An open console does not keep its session alive: the session is checked every ``RECHECK``
seconds without being touched, and the stream ends when it has lapsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError
from aiohttp_sse import EventSourceResponse, sse_response
from redis.asyncio import Redis
from redis.exceptions import RedisError

from agent_console.app import COOKIE, HEADERS, PAGES, idle_limit
from agent_console.inbox import REASONS, waited
from bot import appkeys
from bot.coordination import AGENT_FEED
from bot.inbox import reads
from bot.staff import sessions

log = logging.getLogger(__name__)

RECHECK = 15.0
QUEUE_LIMIT = 200  # a console this far behind misses events (and reloads on the next one)
SHOWN_KEYS = ("type", "phone", "agent", "previous", "reason", "by", "state", "at")


class Hub:
    """One Redis subscription per process, fanned out to each open console's queue."""

    def __init__(self) -> None:
        self.consoles: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self._config: Any = None

    def start(self, request: web.Request) -> None:
        if self._task is None or self._task.done():
            self.subscribed.clear()
            self._config = request.config_dict
            self._task = asyncio.create_task(
                self._listen(request.config_dict[appkeys.COORDINATOR].redis))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self, redis: Redis) -> None:
        while True:
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.subscribe(AGENT_FEED)
                    self.subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._fan_out(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                self.subscribed.clear()
                log.warning("agents' feed lost; subscribing again", exc_info=True)
                await asyncio.sleep(1.0)

    async def _fan_out(self, data: bytes | str) -> None:
        try:
            event = json.loads(data)
        except (ValueError, TypeError):
            return
        if not isinstance(event, dict) or not self.consoles:
            return
        shown = {key: event[key] for key in SHOWN_KEYS if key in event}
        if isinstance(event.get("phone"), str):
            try:
                shown.update(await self._rows(event["phone"]))
            except Exception:  # a row the page cannot show now: it still hears of the change
                log.warning("inbox row for the live feed not rendered", exc_info=True)
        serialized = json.dumps(shown)  # once, for every console
        for queue in list(self.consoles):
            if queue.qsize() < QUEUE_LIMIT:
                queue.put_nowait(serialized)

    async def _rows(self, phone: str) -> dict[str, Any]:
        """The conversation's status, owner and inbox row (the queue's and the other views')."""
        config = self._config
        async with config[appkeys.DATABASE].session() as db:
            row = await reads.conversation_row(db, phone)
        if row is None:
            return {}
        template = config[PAGES].get_template("inbox_row.html")
        context = {"row": row, "now": config[appkeys.CLOCK].now(), "waited": waited,
                   "reasons": REASONS}
        return {
            "status": row.status, "assignee": row.assignee,
            "rows": {view: template.render(view=view, **context)
                     for view in ("waiting", "other")},
        }

    @contextlib.asynccontextmanager
    async def console(self, request: web.Request) -> AsyncIterator[asyncio.Queue[str]]:
        self.start(request)
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.consoles.add(queue)
        try:
            yield queue
        finally:
            self.consoles.discard(queue)


HUB = web.AppKey("console_live_hub", Hub)


def add_routes(console: web.Application) -> None:
    console[HUB] = Hub()
    console.on_shutdown.append(_stop)  # before the database closes (cleanup)
    console.router.add_get("/live", stream)


async def _stop(console: web.Application) -> None:
    await console[HUB].stop()


async def _still_signed_in(request: web.Request) -> bool:
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        found = await sessions.load(db, request.cookies.get(COOKIE), at=now,
                                    idle=idle_limit(request), touch=False)
    return found is not None


async def stream(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    async with hub.console(request) as queue:
        await asyncio.wait_for(hub.subscribed.wait(), timeout=5.0)
        headers = {k: v for k, v in HEADERS.items() if k != "Cache-Control"}
        async with sse_response(request, headers=headers, ping_interval=RECHECK) as response:
            try:
                await _pump(request, response, queue)
            except (ConnectionResetError, ClientConnectionResetError):
                pass  # the console went away (a page left, a tab closed)
    return response


async def _pump(request: web.Request, response: EventSourceResponse,
                queue: asyncio.Queue[str]) -> None:
    await response.send(json.dumps({"type": "hello"}), event="feed")
    while response.is_connected():
        try:
            event = await asyncio.wait_for(queue.get(), timeout=RECHECK)
        except TimeoutError:
            if not await _still_signed_in(request):
                await response.send(json.dumps({"type": "signed_out"}), event="feed")
                return
            continue
        await response.send(event, event="feed")
