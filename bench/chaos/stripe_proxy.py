"""Stripe as the run's PayBot meets it: localstripe behind a proxy that fails on command, keeps
Stripe's idempotency (which localstripe lacks), and delivers Stripe's events late, twice and out
of order.

Imports only the standard library, aiohttp and bench.chaos.stage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from bench.chaos.stage import ChargeRecord

# Headers a proxy must not pass along as they came (aiohttp sets its own).
HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive",
              "accept-encoding", "content-encoding"}
STRIPE_ERROR = json.dumps({"error": {"type": "api_error",
                                     "message": "An unknown error occurred (chaos)."}})


@dataclass
class _Answer:
    status: int
    body: bytes
    content_type: str


@dataclass
class ProxyStats:
    requests: int = 0
    refused_500: int = 0
    hung: int = 0
    replayed: int = 0  # a retry with a key already answered: the first answer again
    events_received: int = 0
    deliveries: int = 0
    delivered_twice: int = 0
    delivered_out_of_order: int = 0
    delivery_failures: int = 0  # attempts refused or cut off (then tried again, as Stripe does)
    max_event_delay: float = 0.0


@dataclass
class StripeProxy:
    """`mode` is "ok", "error" (Stripe answers 500 before doing anything) or "hang" (the request
    is done, its answer held `hang_for` seconds: the caller gives up not knowing the outcome)."""

    localstripe_url: str
    charges: list[ChargeRecord]
    pick_web: Callable[[], str | None]
    rng: random.Random
    max_event_delay: float = 20.0
    twice_share: float = 0.3
    hang_for: float = 40.0
    mode: str = "ok"
    stats: ProxyStats = field(default_factory=ProxyStats)
    port: int = 0
    _answers: dict[tuple[str, str], asyncio.Future[tuple[_Answer, bool]]] = field(
        default_factory=dict)
    _runner: web.AppRunner | None = None
    _client: aiohttp.ClientSession | None = None
    _deliveries: set[asyncio.Task[None]] = field(default_factory=set)
    _received: int = 0
    _last_delivered: int = -1
    _closing: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def relay_url(self) -> str:
        """Where localstripe sends its events; they go on to PayBot from here."""
        return f"{self.url}/_relay/stripe"

    async def start(self) -> StripeProxy:
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/_relay/stripe", self._event)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        self._closing = True
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    # ------------------------------------------------------------------ the API

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        api_call = request.path.startswith("/v1/")
        mode = self.mode if api_call else "ok"
        if mode == "error":
            self.stats.refused_500 += 1
            return web.Response(status=500, text=STRIPE_ERROR, content_type="application/json")
        body = await request.read()
        key = request.headers.get("Idempotency-Key") or ""
        # What localstripe does happens whether or not the caller waits for it (a caller that
        # times out cuts its request, and aiohttp cancels this handler): the forwarding runs
        # in a task of its own, so its answer is always recorded and kept for the key.
        answer, replayed = await asyncio.shield(self._through(request, body, key, mode))
        if replayed:
            self.stats.replayed += 1
        if mode == "hang":
            self.stats.hung += 1
            await asyncio.sleep(self.hang_for)  # the caller has long given up
        return web.Response(status=answer.status, body=answer.body,
                            content_type=answer.content_type)

    def _through(self, request: web.Request, body: bytes, key: str, mode: str,
                 ) -> asyncio.Future[tuple[_Answer, bool]]:
        """Forward once per idempotency key (Stripe's rule: a later request with the key gets
        the first one's answer; Stripe keeps keys 24 hours, a run is shorter)."""
        if request.method != "POST" or not key or not request.path.startswith("/v1/"):
            return asyncio.ensure_future(self._forwarded(request, body, key, mode))
        slot = (key, request.path)
        known = self._answers.get(slot)
        if known is not None:
            return asyncio.ensure_future(self._replay(known))
        first = asyncio.ensure_future(self._forwarded(request, body, key, mode))
        self._answers[slot] = first
        # A forwarding that failed (localstripe unreachable) did nothing: the key is free again.
        first.add_done_callback(
            lambda done: self._answers.pop(slot, None)
            if done.cancelled() or done.exception() else None)
        return first

    @staticmethod
    async def _replay(known: asyncio.Future[tuple[_Answer, bool]]) -> tuple[_Answer, bool]:
        answer, _ = await known
        return answer, True

    async def _forwarded(self, request: web.Request, body: bytes, key: str, mode: str,
                         ) -> tuple[_Answer, bool]:
        answer = await self._send(request, body)
        if request.method == "POST" and request.path == "/v1/payment_intents":
            self._record(key, answer, answered=0 if mode == "hang" else answer.status)
        return answer, False

    async def _send(self, request: web.Request, body: bytes) -> _Answer:
        assert self._client is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self._client.request(request.method, self.localstripe_url + request.path_qs,
                                        data=body, headers=headers) as response:
            return _Answer(response.status, await response.read(),
                           response.content_type or "application/json")

    def _record(self, key: str, answer: _Answer, *, answered: int) -> None:
        try:
            data = json.loads(answer.body)
        except ValueError:
            return
        intent = data.get("error", {}).get("payment_intent") if "error" in data else data
        if not isinstance(intent, dict) or not str(intent.get("id", "")).startswith("pi_"):
            return
        self.charges.append(ChargeRecord(
            idempotency_key=key, intent_id=intent["id"], status=str(intent.get("status")),
            amount_cents=int(intent.get("amount") or 0), customer=str(intent.get("customer")),
            answered=answered))

    # ------------------------------------------------------------------ the events

    async def _event(self, request: web.Request) -> web.Response:
        """localstripe sends each event once; Stripe sends it until it is taken, sometimes more
        than once, in no promised order. Here: later, sometimes twice, interleaved."""
        body = await request.read()
        signature = request.headers.get("Stripe-Signature", "")
        self.stats.events_received += 1
        number = self._received
        self._received += 1
        copies = 2 if self.rng.random() < self.twice_share else 1
        if copies == 2:
            self.stats.delivered_twice += 1
        for _ in range(copies):
            delay = self.rng.uniform(0, self.max_event_delay)
            task = asyncio.get_running_loop().create_task(
                self._deliver(number, body, signature, delay))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
        return web.Response(status=200)

    async def _deliver(self, number: int, body: bytes, signature: str, delay: float) -> None:
        received = time.monotonic()
        await asyncio.sleep(delay)
        backoff = 0.5
        assert self._client is not None
        while not self._closing:
            base = self.pick_web()
            if base is not None:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with self._client.post(
                        f"{base}/webhooks/stripe", data=body,
                        headers={"Stripe-Signature": signature,
                                 "Content-Type": "application/json"},
                        timeout=aiohttp.ClientTimeout(total=20),
                    ) as response:
                        if response.status < 300:
                            self.stats.deliveries += 1
                            if number < self._last_delivered:
                                self.stats.delivered_out_of_order += 1
                            self._last_delivered = max(self._last_delivered, number)
                            self.stats.max_event_delay = max(self.stats.max_event_delay,
                                                             time.monotonic() - received)
                            return
            self.stats.delivery_failures += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def drain(self, within: float) -> bool:
        """Wait until every event is taken (or `within` seconds pass); True when all were."""
        deadline = time.monotonic() + within
        while self._deliveries:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.wait(set(self._deliveries), timeout=left)
        return True
