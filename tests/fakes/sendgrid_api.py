"""A local stand-in for SendGrid's v3 Mail Send API, enough for the sendgrid SDK.

Answers ``POST /v3/mail/send`` like SendGrid: 202 with an empty body and an
``X-Message-Id`` header, or 400/401 with ``{"errors": [{"message", "field", "help"}]}``.
Checks the bearer API key and the main rules of the JSON body. Every request is
recorded in ``requests``; accepted bodies in ``messages``.

    fake = SendGridFake()
    await fake.start()     # listens on 127.0.0.1, a free port
    SendGridAPIClient(api_key=fake.api_key, host=fake.base_url)
    await fake.close()
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.local_server import LocalServer

DEFAULT_API_KEY = "SG.fake-key." + "k" * 20


@dataclass
class RecordedMail:
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON body (None when it was not JSON)
    status: int = 0
    message_id: str | None = None


@dataclass
class SendGridFake(LocalServer):
    api_key: str = DEFAULT_API_KEY
    host: str = "127.0.0.1"
    requests: list[RecordedMail] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    _failures: list[tuple[int, str]] = field(default_factory=list)
    # Non-zero: every send answers this status until set back to 0 (an outage, as in bench/chaos).
    refusing: int = 0
    # A number: once this many mails were accepted, the next send waits until `release` is set
    # (`stalled` is set meanwhile): a provider slow at the worst moment.
    stall_after: int | None = None
    stalled: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    port: int = 0

    # -- control -----------------------------------------------------------
    def fail_next(self, status: int = 500, message: str = "Internal Server Error") -> None:
        """The next send (after auth) answers this error instead of 202."""
        self._failures.append((status, message))

    @property
    def last(self) -> dict[str, Any]:
        """The last accepted mail/send JSON body."""
        return self.messages[-1]

    @staticmethod
    def content(body: dict[str, Any], mime_type: str) -> str | None:
        """The ``content`` value of ``mime_type`` ("text/plain", "text/html") in a body."""
        for part in body.get("content", []):
            if part.get("type") == mime_type:
                return part.get("value")
        return None

    @staticmethod
    def attachments(body: dict[str, Any]) -> list[tuple[str, str, bytes]]:
        """(filename, type, decoded bytes) for each attachment of a body."""
        return [
            (a.get("filename", ""), a.get("type", ""), base64.b64decode(a.get("content", "")))
            for a in body.get("attachments", [])
        ]

    # -- server ------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3/mail/send", self._mail_send)
        return app

    # -- handler -----------------------------------------------------------
    @staticmethod
    def _errors(status: int, *errors: tuple[str, str | None]) -> web.Response:
        body = {
            "errors": [{"message": message, "field": fld, "help": None} for message, fld in errors]
        }
        return web.json_response(body, status=status)

    async def _mail_send(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError):
            body = None
        if self.stall_after is not None and len(self.messages) >= self.stall_after:
            self.stalled.set()
            await self.release.wait()
        record = RecordedMail(path=request.path, headers=dict(request.headers), body=body)
        self.requests.append(record)
        response = self._answer(request.headers.get("Authorization", ""), body)
        record.status = response.status
        if response.status == 202:
            record.message_id = response.headers["X-Message-Id"]
            self.messages.append(body)
        return response

    def _answer(self, authorization: str, body: Any) -> web.Response:
        if authorization != f"Bearer {self.api_key}":
            return self._errors(
                401, ("The provided authorization grant is invalid, expired, or revoked", None)
            )
        if not isinstance(body, dict):
            return self._errors(400, ("Bad Request", None))
        problems = _validate(body)
        if problems:
            return self._errors(400, *problems)
        if self.refusing:
            return self._errors(self.refusing, ("Service Unavailable", None))
        if self._failures:
            status, message = self._failures.pop(0)
            return self._errors(status, (message, None))
        message_id = secrets.token_urlsafe(16)[:22]
        return web.Response(status=202, headers={"X-Message-Id": message_id})


def _validate(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    problems: list[tuple[str, str | None]] = []
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        problems.append(("The personalizations field is required.", "personalizations"))
    else:
        for i, p in enumerate(personalizations):
            if not isinstance(p, dict) or not p.get("to"):
                problems.append(
                    (
                        "The to array is required for all personalization objects",
                        f"personalizations.{i}.to",
                    )
                )
            elif not body.get("subject") and not p.get("subject") and not body.get("template_id"):
                problems.append(("The subject is required.", "subject"))
    sender = body.get("from")
    if not isinstance(sender, dict) or not sender.get("email"):
        problems.append(("The from object must be provided for every email send.", "from"))
    content = body.get("content")
    if not body.get("template_id"):
        if not isinstance(content, list) or not content:
            problems.append(
                (
                    "Unless a valid template_id is provided, the content parameter is required.",
                    "content",
                )
            )
        else:
            for i, part in enumerate(content):
                if not isinstance(part, dict) or not part.get("value"):
                    problems.append(
                        (
                            "The content value must be a string at least one character in length.",
                            f"content.{i}.value",
                        )
                    )
            types = [part.get("type") for part in content if isinstance(part, dict)]
            if "text/plain" in types and types[0] != "text/plain":
                problems.append(("If present, text/plain content must be first.", "content"))
    for i, att in enumerate(body.get("attachments") or []):
        if not isinstance(att, dict) or not att.get("filename") or not att.get("content"):
            problems.append(("Attachments must have a filename and content.", f"attachments.{i}"))
            continue
        try:
            base64.b64decode(att["content"], validate=True)
        except ValueError:
            problems.append(
                ("The attachment content must be base64 encoded.", f"attachments.{i}.content")
            )
    return problems
