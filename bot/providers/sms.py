"""Outbound SMS: one small interface, a Twilio implementation and a sandbox.

``TwilioSms`` is a thin layer over the official ``twilio`` SDK (async client);
``SandboxSms`` needs no network and keeps what it "sent" for the demo and tests.
Errors come out as ``SmsError``; Twilio's 21610 (the recipient replied STOP to our
sender, so the carrier blocks us) as ``RecipientOptedOut``, which the caller records
as an opt-out. No error message carries the auth token.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client as TwilioClient

from bot.providers.sandbox_ids import SandboxIds

# Twilio error codes we act on.
TWILIO_OPTED_OUT = 21610  # "Attempt to send to unsubscribed recipient"
TWILIO_INVALID_TO = 21211  # "Invalid 'To' Phone Number"
TWILIO_BODY_REQUIRED = 21602  # "Message body is required"
TWILIO_BODY_TOO_LONG = 21617  # "The concatenated message body exceeds the 1600 character limit"
MAX_BODY_CHARS = 1600

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")


class SmsError(Exception):
    """Sending an SMS failed. ``code`` is Twilio's error code, ``status`` the HTTP status."""

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class RecipientOptedOut(SmsError):
    """Twilio error 21610: the number opted out at the carrier; record it as an opt-out."""

    def __init__(self, to: str, *, status: int | None = 400):
        super().__init__(
            f"recipient {to} has opted out (Twilio error {TWILIO_OPTED_OUT})",
            code=TWILIO_OPTED_OUT,
            status=status,
        )
        self.to = to


@dataclass(frozen=True)
class SentSms:
    sid: str
    to: str
    body: str
    status: str  # as Twilio reports it: "queued", "accepted", "sending", ...


@runtime_checkable
class SmsSender(Protocol):
    async def send(self, *, to: str, body: str, status_callback: str | None = None) -> SentSms: ...

    async def close(self) -> None: ...


class SandboxSms:
    """An SMS sender that sends nothing.

    Every message lands in ``outbox`` (a list of ``SentSms``) and, when ``path`` is
    given, is appended to that file as one JSON line (``sid``, ``to``, ``from``,
    ``body``, ``status``, ``status_callback``, ``segments``, ``sent_at``). Sids read
    ``SMsandbox_3fa94c1b2e7d_0001``, ``..._0002``...: a random token per sandbox, so a restarted
    demo, or another process writing to the same file, never reuses one.

    ``block(number)`` makes the number behave as opted out at the carrier: sending to it
    raises ``RecipientOptedOut`` (Twilio's 21610) and nothing is recorded. Like Twilio it
    refuses an empty body, one over 1600 characters and a ``to`` that is not E.164.
    """

    def __init__(self, path: str | Path | None = None, *, from_number: str = "+15005550006"):
        self.path = Path(path) if path is not None else None
        self.from_number = from_number
        self.outbox: list[SentSms] = []
        self.status_callbacks: dict[str, str] = {}
        self.blocked: set[str] = set()
        self._ids = SandboxIds()

    def block(self, number: str) -> None:
        """Simulate a carrier-level opt-out (Twilio 21610) for ``number``."""
        self.blocked.add(number)

    def unblock(self, number: str) -> None:
        """The number texted START: sending to it works again."""
        self.blocked.discard(number)

    def clear(self) -> None:
        """Forget the in-memory outbox (the JSONL file is kept)."""
        self.outbox.clear()
        self.status_callbacks.clear()

    async def send(self, *, to: str, body: str, status_callback: str | None = None) -> SentSms:
        if not _E164.match(to or ""):
            raise SmsError(
                f"invalid 'To' phone number {to!r} (Twilio error {TWILIO_INVALID_TO})",
                code=TWILIO_INVALID_TO,
                status=400,
            )
        if not body:
            raise SmsError("message body is required", code=TWILIO_BODY_REQUIRED, status=400)
        if len(body) > MAX_BODY_CHARS:
            raise SmsError(
                f"message body exceeds {MAX_BODY_CHARS} characters",
                code=TWILIO_BODY_TOO_LONG,
                status=400,
            )
        if to in self.blocked:
            raise RecipientOptedOut(to)
        sent = SentSms(sid=self._ids.next("SMsandbox"), to=to, body=body, status="queued")
        self.outbox.append(sent)
        if status_callback:
            self.status_callbacks[sent.sid] = status_callback
        if self.path is not None:
            self._append(sent, status_callback)
        return sent

    def _append(self, sent: SentSms, status_callback: str | None) -> None:
        from bot.text.gsm7 import segment_count

        record: dict[str, Any] = asdict(sent)
        record["from"] = self.from_number
        record["status_callback"] = status_callback
        record["segments"] = segment_count(sent.body)
        record["sent_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        line = json.dumps(record, ensure_ascii=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One small append per message, kept synchronous so lines stay in send order.
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)

    async def close(self) -> None:
        return None


class _AsyncHttpClient(AsyncTwilioHttpClient):
    """The SDK's aiohttp client, sending Basic auth as a header.

    twilio 9.13 passes ``aiohttp.BasicAuth`` / ``auth=``, both deprecated since aiohttp
    3.14 (a DeprecationWarning on every request; twilio-python issue #931). This
    override builds the ``Authorization`` header itself, and applies ``timeout``
    (the SDK passes ``timeout=None``, which aiohttp reads as "no timeout at all").
    """

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the SDK's HttpClient signature)
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        if timeout is not None and timeout <= 0:
            raise ValueError(timeout)
        headers = dict(headers or {})
        if auth is not None:
            # latin-1, as the SDK's BasicAuth did
            headers["Authorization"] = aiohttp.encode_basic_auth(auth[0], auth[1], "latin1")
        kwargs: dict[str, Any] = {
            "method": method.upper(),
            "url": url,
            "params": params,
            "data": data,
            "headers": headers,
            "allow_redirects": allow_redirects,
        }
        total = timeout if timeout is not None else self.timeout
        if total is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=total)
        self.log_request(kwargs)
        self._test_only_last_response = None
        self._test_only_last_request = None
        if self.session is None:
            raise RuntimeError("the Twilio HTTP client is closed")
        async with self.session.request(**kwargs) as response:
            text = await response.text()
        self.log_response(response.status, response)
        self._test_only_last_response = TwilioResponse(response.status, text, response.headers)
        return self._test_only_last_response


class TwilioSms:
    """Sends SMS through Twilio's Messages API with the official async SDK client.

    Give ``from_number`` (a Twilio number or sender ID) or ``messaging_service_sid``
    (or both). ``api_base`` replaces ``https://api.twilio.com`` (tests point it at a
    local fake). ``edge``/``region`` are only what is passed here: the TWILIO_EDGE and
    TWILIO_REGION environment variables are not read. ``timeout`` bounds each send
    (the SDK's async client has none of its own).

    The SDK's aiohttp session is opened on the first send, inside the running loop,
    and ``close()`` closes it.
    """

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        api_base: str | None = None,
        edge: str | None = None,
        region: str | None = None,
        timeout: float = 15.0,
    ):
        if not account_sid or not auth_token:
            raise ValueError("TwilioSms needs an account SID and an auth token")
        if not from_number and not messaging_service_sid:
            raise ValueError("TwilioSms needs from_number or messaging_service_sid")
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.api_base = api_base.rstrip("/") if api_base else None
        self.edge = None if api_base else edge
        self.region = None if api_base else region
        self.timeout = timeout
        self._client: Any = None  # twilio.rest.Client, made on first use
        self._http: Any = None  # twilio.http.async_http_client.AsyncTwilioHttpClient

    def __repr__(self) -> str:
        return f"<TwilioSms account={self.account_sid} from={self.from_number}>"

    def _ensure_client(self) -> Any:
        if self._client is None:
            http = _AsyncHttpClient(timeout=self.timeout)  # opens an aiohttp session: needs a loop
            client = TwilioClient(self.account_sid, self._auth_token, http_client=http)
            # Only what we were given counts, never TWILIO_EDGE / TWILIO_REGION from os.environ.
            client.edge = self.edge
            client.region = self.region
            if self.api_base:
                client.api.base_url = self.api_base
            self._http, self._client = http, client
        return self._client

    def _scrub(self, text: str) -> str:
        return text.replace(self._auth_token, "***") if self._auth_token else text

    async def send(self, *, to: str, body: str, status_callback: str | None = None) -> SentSms:
        client = self._ensure_client()
        params: dict[str, Any] = {"to": to, "body": body}
        if self.from_number:
            params["from_"] = self.from_number
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        if status_callback:
            params["status_callback"] = status_callback
        try:
            async with asyncio.timeout(self.timeout):
                message = await client.messages.create_async(**params)
        except TwilioRestException as exc:
            if exc.code == TWILIO_OPTED_OUT:
                raise RecipientOptedOut(to, status=exc.status) from None
            detail = self._scrub(str(exc.msg or "")) or "no detail"
            raise SmsError(
                f"Twilio refused the message (HTTP {exc.status}, error {exc.code}): {detail}",
                code=_int_or_none(exc.code),
                status=exc.status,
            ) from None
        except TwilioServiceException as exc:
            if exc.code == TWILIO_OPTED_OUT:
                raise RecipientOptedOut(to, status=exc.status) from None
            detail = self._scrub(str(exc.detail or exc.title or "")) or "no detail"
            raise SmsError(
                f"Twilio refused the message (HTTP {exc.status}, error {exc.code}): {detail}",
                code=_int_or_none(exc.code),
                status=exc.status,
            ) from None
        except TimeoutError:
            raise SmsError(f"Twilio did not answer within {self.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise SmsError(f"could not reach Twilio: {type(exc).__name__}") from None
        except (TwilioException, ValueError) as exc:
            # e.g. a non-JSON answer from a proxy; keep only what is safe to show
            raise SmsError(f"Twilio call failed: {self._scrub(str(exc))[:200]}") from None
        return SentSms(
            sid=str(message.sid),
            to=str(message.to or to),
            body=str(message.body if message.body is not None else body),
            status=str(message.status or "queued"),
        )

    async def close(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close()

    async def __aenter__(self) -> TwilioSms:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
