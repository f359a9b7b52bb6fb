"""A Stripe API peer for a `paybot serve` or `paybot worker` of its own process: it answers a
PaymentIntent only when the test lets it (``release``), and tells the test when one arrived
(``charging``). Enough of Stripe for an off-session charge of a saved card, nothing more."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.local_server import LocalServer


@dataclass
class SlowStripe(LocalServer):
    host: str = "127.0.0.1"
    port: int = 0
    charging: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    intents: list[dict[str, str]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/payment_intents", self._payment_intent)
        app.router.add_get("/v1/payment_methods/{id}", self._payment_method)
        return app

    async def _payment_intent(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.intents.append({k: str(v) for k, v in form.items()})
        self.charging.set()
        await self.release.wait()
        return web.json_response({
            "id": f"pi_slow_{len(self.intents)}", "object": "payment_intent",
            "status": "succeeded", "amount": int(str(form["amount"])), "currency": "usd",
            "customer": form.get("customer"), "payment_method": form.get("payment_method"),
            "metadata": {},
        })

    async def _payment_method(self, request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"], "object": "payment_method",
                                  "type": "card"})
