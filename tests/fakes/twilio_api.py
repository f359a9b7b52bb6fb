"""A local stand-in for Twilio's Messages API, enough for the twilio SDK to send SMS.

Answers ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form-encoded,
HTTP Basic auth) like Twilio does: 201 with the Message resource JSON, or Twilio's
error JSON (``code``, ``message``, ``more_info``, ``status``). Every request is
recorded in ``requests``; accepted messages in ``messages``.

    fake = TwilioFake()
    await fake.start()          # listens on 127.0.0.1, a free port
    client.api.base_url = fake.base_url
    fake.opt_out("+15550001111")  # sending there -> 400, error 21610
    await fake.close()
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from aiohttp import BasicAuth, web

from bot.text.gsm7 import segment_count
from tests.fakes.local_server import LocalServer

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "0" * 31 + "1"
DEFAULT_AUTH_TOKEN = "fake-auth-token-" + "3" * 16
DEFAULT_FROM = "+15005550006"


@dataclass
class RecordedRequest:
    method: str
    path: str
    account_sid: str
    form: dict[str, str]
    auth: tuple[str, str] | None  # (username, password) from Basic auth, if any
    headers: dict[str, str]
    status: int = 0  # what the fake answered


@dataclass
class TwilioFake(LocalServer):
    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: str = DEFAULT_AUTH_TOKEN
    host: str = "127.0.0.1"
    requests: list[RecordedRequest] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    opted_out: set[str] = field(default_factory=set)
    _failures: list[tuple[int, int, str]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    # -- control -----------------------------------------------------------
    def opt_out(self, number: str) -> None:
        """Sending to ``number`` now fails with Twilio error 21610."""
        self.opted_out.add(number)

    def opt_in(self, number: str) -> None:
        self.opted_out.discard(number)

    def fail_next(
        self, status: int = 500, code: int = 20500, message: str = "Internal Server Error"
    ) -> None:
        """The next send (after auth) answers this error instead of queueing the message."""
        self._failures.append((status, code, message))

    @property
    def last(self) -> dict[str, Any]:
        """The last accepted message resource."""
        return self.messages[-1]

    # -- server ------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(
            f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json", self._create_message
        )
        return app

    # -- handler -----------------------------------------------------------
    @staticmethod
    def _error(status: int, code: int, message: str, **extra: Any) -> web.Response:
        body = {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
            **extra,
        }
        return web.json_response(body, status=status)

    async def _create_message(self, request: web.Request) -> web.Response:
        account_sid = request.match_info["account_sid"]
        form = {k: str(v) for k, v in (await request.post()).items()}
        auth: tuple[str, str] | None = None
        header = request.headers.get("Authorization", "")
        if header:
            try:
                decoded = BasicAuth.decode(header)
                auth = (decoded.login, decoded.password)
            except ValueError:
                auth = None
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            account_sid=account_sid,
            form=form,
            auth=auth,
            headers=dict(request.headers),
        )
        self.requests.append(record)
        response = self._answer(account_sid, form, auth)
        record.status = response.status
        return response

    def _answer(
        self, account_sid: str, form: dict[str, str], auth: tuple[str, str] | None
    ) -> web.Response:
        if auth != (self.account_sid, self.auth_token):
            return self._error(
                401, 20003, "Authenticate", detail="Your AccountSid or AuthToken was incorrect."
            )
        if account_sid != self.account_sid:
            return self._error(
                404,
                20404,
                f"The requested resource /{API_VERSION}/Accounts/{account_sid}/Messages.json "
                "was not found",
            )
        to = form.get("To", "")
        body = form.get("Body", "")
        sender = form.get("From", "")
        service = form.get("MessagingServiceSid", "")
        if not to:
            return self._error(400, 21604, "A 'To' phone number is required.")
        if not sender and not service:
            return self._error(400, 21603, "A 'From' phone number is required.")
        if not body and not form.get("MediaUrl") and not form.get("ContentSid"):
            return self._error(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return self._error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if to in self.opted_out:
            return self._error(400, 21610, "Attempt to send to unsubscribed recipient")
        if self._failures:
            status, code, message = self._failures.pop(0)
            return self._error(status, code, message)

        sid = "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True).replace("GMT", "+0000")
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json"
        resource: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "num_media": "0",
            "num_segments": "0" if service and not sender else str(segment_count(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service and not sender else "queued",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": to,
            "uri": uri,
        }
        self.messages.append(resource)
        return web.json_response(resource, status=201)
