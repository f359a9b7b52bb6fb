"""Outbound email: one small interface, a SendGrid implementation and a sandbox.

``SendGridEmail`` is a thin layer over the official ``sendgrid`` SDK, which is
synchronous: each send runs in a worker thread (``asyncio.to_thread``).
``SandboxEmail`` needs no network: it writes each message as a ``.eml`` file
(text, HTML and attachments, readable by any mail program) into an outbox folder.
Errors come out as ``EmailError``; no message carries the API key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from bot.providers.sandbox_ids import SandboxIds


class EmailError(Exception):
    """Sending an email failed. ``status`` is the HTTP status when the provider answered."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "application/pdf", "text/calendar", ...
    data: bytes


@dataclass(frozen=True)
class SentEmail:
    message_id: str  # SendGrid's X-Message-Id (prefix of the events' sg_message_id)
    to: str
    subject: str


@dataclass(frozen=True)
class SandboxEmailMessage(SentEmail):
    """What ``SandboxEmail`` keeps in its outbox: the ``SentEmail`` plus its content."""

    text: str = ""
    html: str = ""
    attachments: tuple[Attachment, ...] = ()
    path: Path | None = None  # the .eml file, when the sandbox has an outbox folder
    sender: str = ""  # the From header as written: "Northwind Recovery <paybot@example.com>"


@runtime_checkable
class EmailSender(Protocol):
    async def send(
        self,
        *,
        to: str,
        subject: str,
        text: str,
        html: str,
        attachments: tuple[Attachment, ...] = (),
        from_name: str | None = None,
    ) -> SentEmail: ...

    async def close(self) -> None: ...


_HEADER_UNSAFE = re.compile(r"[\r\n]")


def _check(to: str, subject: str, text: str, html: str) -> None:
    if not to or "@" not in to or _HEADER_UNSAFE.search(to):
        raise EmailError(f"invalid recipient address {to!r}")
    try:
        Address(addr_spec=to)
    except (ValueError, IndexError, HeaderParseError):
        raise EmailError(f"invalid recipient address {to!r}") from None
    if _HEADER_UNSAFE.search(subject):
        raise EmailError("the subject must be one line")
    if not subject.strip():
        raise EmailError("the subject is empty")
    if not text and not html:
        raise EmailError("the message has no text and no HTML")


def _display_name(name: str | None) -> str | None:
    """A From display name on one line (a creditor's name is the operator's text: no header
    may be smuggled in with it), at most 78 characters; None when there is nothing left."""
    if not name:
        return None
    return " ".join(_HEADER_UNSAFE.sub(" ", name).split())[:78] or None


def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return slug[:limit].rstrip("-") or "message"


def _attachment_name(filename: str) -> str:
    """A safe file name for an attachment: no folders, no odd characters, its extension kept."""
    stem, dot, extension = Path(filename).name.rpartition(".")
    if not dot:
        stem, extension = extension, "bin"
    extension = re.sub(r"[^A-Za-z0-9]", "", extension)[:10] or "bin"
    return f"{_slug(stem, 60)}.{extension.lower()}"


class SandboxEmail:
    """An email sender that sends nothing.

    Each message is kept in ``outbox`` (``SandboxEmailMessage``: message_id, to, subject,
    text, html, attachments, path) and, when ``outbox_dir`` is given, written there as
    ``NNNN-subject-slug.eml`` (multipart/alternative text + HTML, inside
    multipart/mixed when there are attachments), each attachment also beside it as
    ``NNNN-filename.ext``. A file takes the number after the highest in the folder, claimed
    before it is written, so a restarted demo, or another process writing to the same folder,
    overwrites nothing. Message ids are ``sandbox_<random>_0001``...: never another process's.
    """

    def __init__(
        self,
        outbox_dir: str | Path | None = None,
        *,
        from_email: str = "paybot@example.com",
        from_name: str | None = "PayBot",
        domain: str = "paybot.sandbox",
    ):
        self.outbox_dir = Path(outbox_dir) if outbox_dir is not None else None
        self.from_email = from_email
        self.from_name = from_name
        self.domain = domain
        self.outbox: list[SandboxEmailMessage] = []
        self._ids = SandboxIds()

    def _claim(self, slug: str) -> tuple[int, Path]:
        """The next free number in the folder, taken by creating its file: another process
        numbering the same folder gets the one after."""
        assert self.outbox_dir is not None
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        while True:
            numbers = [
                int(m.group(1))
                for p in self.outbox_dir.glob("*.eml")
                if (m := re.match(r"(\d+)-", p.name))
            ]
            number = max(numbers, default=0) + 1
            path = self.outbox_dir / f"{number:04d}-{slug}.eml"
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except FileExistsError:
                continue
            return number, path

    def clear(self) -> None:
        """Forget the in-memory outbox (files are kept)."""
        self.outbox.clear()

    def build_message(
        self,
        *,
        message_id: str,
        to: str,
        subject: str,
        text: str,
        html: str,
        attachments: tuple[Attachment, ...] = (),
        from_name: str | None = None,
    ) -> EmailMessage:
        msg = EmailMessage()
        name = _display_name(from_name) or self.from_name
        msg["From"] = formataddr((name, self.from_email)) if name else self.from_email
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = f"<{message_id}@{self.domain}>"
        if text:
            msg.set_content(text)
            if html:
                msg.add_alternative(html, subtype="html")
        else:
            msg.set_content(html, subtype="html")
        for att in attachments:
            maintype, _, subtype = att.content_type.partition("/")
            if not subtype:
                maintype, subtype = "application", "octet-stream"
            msg.add_attachment(att.data, maintype=maintype, subtype=subtype, filename=att.filename)
        return msg

    async def send(
        self,
        *,
        to: str,
        subject: str,
        text: str,
        html: str,
        attachments: tuple[Attachment, ...] = (),
        from_name: str | None = None,
    ) -> SentEmail:
        _check(to, subject, text, html)
        message_id = self._ids.next("sandbox")
        attachments = tuple(attachments)
        msg = self.build_message(
            message_id=message_id,
            to=to,
            subject=subject,
            text=text,
            html=html,
            attachments=attachments,
            from_name=from_name,
        )
        path = None
        if self.outbox_dir is not None:
            number, path = await asyncio.to_thread(self._claim, _slug(subject))
            await asyncio.to_thread(self._write, path, msg.as_bytes())
            # Each attachment also as a file beside the .eml, so a PDF opens with one click.
            for att in attachments:
                beside = self.outbox_dir / f"{number:04d}-{_attachment_name(att.filename)}"
                await asyncio.to_thread(self._write, beside, att.data)
        self.outbox.append(
            SandboxEmailMessage(
                message_id=message_id,
                to=to,
                subject=subject,
                text=text,
                html=html,
                attachments=attachments,
                path=path,
                sender=str(msg["From"]),
            )
        )
        return SentEmail(message_id=message_id, to=to, subject=subject)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    async def close(self) -> None:
        return None


class SendGridEmail:
    """Sends email through SendGrid's v3 Mail Send API with the official SDK.

    ``host`` replaces ``https://api.sendgrid.com`` (tests point it at a local fake).
    ``timeout`` bounds each HTTP call (seconds). The SDK call runs in a worker thread.
    """

    def __init__(
        self,
        *,
        api_key: str,
        from_email: str,
        from_name: str | None = None,
        reply_to: str | None = None,
        host: str | None = None,
        timeout: float = 15.0,
    ):
        if not api_key:
            raise ValueError("SendGridEmail needs an API key")
        if not from_email:
            raise ValueError("SendGridEmail needs a from address")
        from sendgrid import SendGridAPIClient

        self.from_email = from_email
        self.from_name = from_name
        self.reply_to = reply_to
        self.host = host
        self.timeout = timeout
        self._api_key = api_key
        kwargs: dict[str, Any] = {"api_key": api_key}
        if host:
            kwargs["host"] = host.rstrip("/")
        self._client = SendGridAPIClient(**kwargs)
        self._client.client.timeout = timeout

    def __repr__(self) -> str:
        return f"<SendGridEmail from={self.from_email} host={self.host or 'default'}>"

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def build_mail(
        self,
        *,
        to: str,
        subject: str,
        text: str,
        html: str,
        attachments: tuple[Attachment, ...] = (),
        from_name: str | None = None,
    ) -> Any:
        """The SDK's ``Mail`` object for one message (its ``.get()`` is the JSON body).
        ``from_name``: the creditor the customer knows, at our configured address."""
        from sendgrid.helpers.mail import (
            Attachment as SgAttachment,
        )
        from sendgrid.helpers.mail import (
            Disposition,
            FileContent,
            FileName,
            FileType,
            From,
            Mail,
            ReplyTo,
            To,
        )

        mail = Mail(
            from_email=From(self.from_email, _display_name(from_name) or self.from_name),
            to_emails=To(to),
            subject=subject,
            plain_text_content=text or None,
            html_content=html or None,
        )
        if self.reply_to:
            mail.reply_to = ReplyTo(self.reply_to)
        # Mail.add_attachment inserts at the front: add in reverse to keep our order.
        for att in reversed(attachments):
            mail.add_attachment(
                SgAttachment(
                    FileContent(base64.b64encode(att.data).decode("ascii")),
                    FileName(att.filename),
                    FileType(att.content_type),
                    Disposition("attachment"),
                )
            )
        return mail

    async def send(
        self,
        *,
        to: str,
        subject: str,
        text: str,
        html: str,
        attachments: tuple[Attachment, ...] = (),
        from_name: str | None = None,
    ) -> SentEmail:
        _check(to, subject, text, html)
        try:
            mail = self.build_mail(
                to=to, subject=subject, text=text, html=html, attachments=tuple(attachments),
                from_name=from_name,
            )
            response = await asyncio.to_thread(self._client.send, mail)
        except EmailError:
            raise
        except Exception as exc:  # the SDK raises python_http_client / urllib / its own errors
            raise self._error(exc) from None
        status = getattr(response, "status_code", None)
        if status is None or not 200 <= int(status) < 300:
            raise EmailError(f"SendGrid answered HTTP {status}", status=status)
        headers = getattr(response, "headers", None)
        message_id = (headers.get("X-Message-Id") if headers is not None else None) or ""
        return SentEmail(message_id=message_id, to=to, subject=subject)

    def _error(self, exc: Exception) -> EmailError:
        from python_http_client.exceptions import HTTPError

        if isinstance(exc, HTTPError):
            status = getattr(exc, "status_code", None)
            detail = _sendgrid_error_text(getattr(exc, "body", b""))
            text = f"SendGrid refused the message (HTTP {status})"
            if detail:
                text += f": {self._scrub(detail)}"
            return EmailError(text, status=status)
        if isinstance(exc, TimeoutError):
            return EmailError(f"SendGrid did not answer within {self.timeout:g} s")
        if isinstance(exc, OSError):  # urllib.error.URLError, connection refused, DNS...
            return EmailError(f"could not reach SendGrid: {type(exc).__name__}")
        # SendGridException (e.g. an API key pasted into the content), ValueError, ...
        return EmailError(f"SendGrid call failed: {self._scrub(str(exc))[:200]}")

    async def close(self) -> None:
        return None  # the SDK opens a connection per request: nothing to close


def _sendgrid_error_text(body: bytes | str | None) -> str:
    """Join the ``errors[].message`` of a SendGrid error body (at most 300 characters)."""
    if not body:
        return ""
    try:
        raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        payload = json.loads(raw)
        messages = [
            str(e.get("message", "")) for e in payload.get("errors", []) if isinstance(e, dict)
        ]
        return "; ".join(m for m in messages if m)[:300]
    except (ValueError, AttributeError):
        return ""
