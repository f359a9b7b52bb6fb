"""The baseline for `bench.sms_load`: a bare aiohttp handler that does only what any Twilio
webhook must do (parse the form, check X-Twilio-Signature with the SDK's RequestValidator
against PUBLIC_BASE_URL + path, answer TwiML built with the SDK's MessagingResponse) and
nothing else: no database, no Redis, no conversation.

    python -m bench.bare_server --port 8099   # env: TWILIO_AUTH_TOKEN, PUBLIC_BASE_URL
"""

from __future__ import annotations

import argparse
import os

from aiohttp import web
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

# About the length of a typical PayBot reply, so both servers send similar bytes.
REPLY = ("How much would you like to pay? Reply an amount from $25.00 to $1,250.00, or FULL. "
         "Reply STOP to opt out.")


def create_app(auth_token: str, public_base_url: str) -> web.Application:
    validator = RequestValidator(auth_token)
    base = public_base_url.rstrip("/")

    async def inbound_sms(request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not validator.validate(base + request.path_qs, form, signature):
            return web.Response(status=403, text="invalid signature")
        response = MessagingResponse()
        response.message(REPLY)
        return web.Response(text=str(response), content_type="application/xml")

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_post("/webhooks/twilio/sms", inbound_sms)
    app.router.add_get("/healthz", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    app = create_app(os.environ["TWILIO_AUTH_TOKEN"], os.environ["PUBLIC_BASE_URL"])
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
