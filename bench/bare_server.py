"""The baseline for `bench.sms_load`: a bare aiohttp handler that does only what any Twilio
webhook must do (parse the form, check X-Twilio-Signature with the SDK's RequestValidator
against PUBLIC_BASE_URL + path, answer TwiML built with the SDK's MessagingResponse) and
nothing else: no database, no Redis, no conversation.

    python -m bench.bare_server --port 8099   # env: TWILIO_AUTH_TOKEN, PUBLIC_BASE_URL

With --store POSTGRES_URL it also does the one thing PayBot's guarantees make unavoidable:
each inbound message is INSERTed (raw asyncpg, one durable commit) into a table of its own,
`bench_inbound`, before the answer. That is the floor for "stored before answered".
"""

from __future__ import annotations

import argparse
import os

from aiohttp import web
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

# About the length of a typical PayBot reply, so both servers send similar bytes.
REPLY = (
    "How much would you like to pay? Reply an amount from $25.00 to $1,250.00, or FULL. "
    "Reply STOP to opt out."
)


STORE = web.AppKey("store", object)


def create_app(auth_token: str, public_base_url: str, store: str | None = None) -> web.Application:
    validator = RequestValidator(auth_token)
    base = public_base_url.rstrip("/")

    async def inbound_sms(request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not validator.validate(base + request.path_qs, form, signature):
            return web.Response(status=403, text="invalid signature")
        if store:
            await request.app[STORE].execute(  # type: ignore[attr-defined]
                "INSERT INTO bench_inbound (sid, phone, body) VALUES ($1, $2, $3)"
                " ON CONFLICT (sid) DO NOTHING",
                form.get("MessageSid", ""),
                form.get("From", ""),
                form.get("Body", ""),
            )
        response = MessagingResponse()
        response.message(REPLY)
        return web.Response(text=str(response), content_type="application/xml")

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def pool_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        import asyncpg

        pool = await asyncpg.create_pool(store, min_size=2, max_size=10)
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS bench_inbound (sid text PRIMARY KEY, "
            "phone text, body text, at timestamptz DEFAULT now())"
        )
        app[STORE] = pool
        yield
        await pool.close()

    app = web.Application(client_max_size=64 * 1024)
    if store:
        app.cleanup_ctx.append(pool_ctx)
    app.router.add_post("/webhooks/twilio/sms", inbound_sms)
    app.router.add_get("/healthz", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument(
        "--store",
        metavar="POSTGRES_URL",
        help="also INSERT each message (one commit) before answering",
    )
    args = parser.parse_args()
    app = create_app(os.environ["TWILIO_AUTH_TOKEN"], os.environ["PUBLIC_BASE_URL"], args.store)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
