"""Structured logs (structlog): one format for every line, ours and the libraries'.

`configure(settings)` runs once at process start (`paybot ...`, each `serve --workers`
process). Our modules keep `logging.getLogger(__name__)`; the standard library's records go
through structlog's `ProcessorFormatter`, so aiohttp's, SQLAlchemy's and ours read alike:
readable console lines by default, one JSON object a line with `PAYBOT_LOG_FORMAT=json`.

Each line carries what is bound in the context (`scope`, `bind`): the request id (the app's
middleware), the conversation's tag (a keyed hash of the phone, never the phone) and the account
id (the engine's turn, the worker's charge). `redact` runs last on every line, over the event
and every field, exception text included: phones, emails, link and bearer tokens, secrets, and
anything like a card number or an SSN never reach the output.

Bottom layer: the standard library, structlog and `bot/config` only.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from bot.config.settings import Settings

# Libraries' chatter: `transitions` says INFO for every callback, aiohttp one access line per
# request (on only with PAYBOT_ACCESS_LOG), Alembic each migration step.
QUIET = ("transitions", "alembic", "aiohttp.access")
ACCESS_LOGGER = "aiohttp.access"
REQUEST_ID_HEADER = "X-Request-Id"
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


# --------------------------------------------------------------------------- context


def request_id(given: str | None) -> str:
    """The client's `X-Request-Id` when it is a short safe token (letters, digits, `._:-`, at
    most 64), else a new one: a header with spaces, newlines or 500 characters is replaced, never
    logged or echoed raw."""
    if given and _SAFE_REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def conversation_tag(secret_key: str, phone: str) -> str:
    """A conversation's short name in the logs: 10 hex characters of an HMAC of its phone, keyed
    with SECRET_KEY (a bare hash of a phone is undone by trying every number)."""
    digest = hmac.new(secret_key.encode(), b"log:" + phone.encode(), hashlib.sha256)
    return digest.hexdigest()[:10]


def bind(**values: Any) -> None:
    """Add these fields (None ones left out) to every line logged from here in this context."""
    structlog.contextvars.bind_contextvars(
        **{key: value for key, value in values.items() if value is not None}
    )


@contextmanager
def scope(**values: Any) -> Iterator[None]:
    """`bind` for a block: on leaving it, the fields are as they were before it, whatever was
    bound within (one turn's account does not follow the next turn of `paybot chat`)."""
    before = structlog.contextvars.get_contextvars()
    bind(**values)
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**before)


# --------------------------------------------------------------------------- redaction

_DIGITS_BEFORE = r"(?<![\w])(?<!\d\.)"  # not inside a word or an id, not a decimal's fraction
_DIGITS_AFTER = r"(?![\w])"
_SENSITIVE_NAME = re.compile(
    r"password|passwd|secret|token|api_?key|authorization|cookie|signature|ssn|card_?number|"
    r"cvc|cvv|^key$|^code$|^otp$|^dob$|^pan$|^phone$|^email$|^to$", re.IGNORECASE)
# 13 to 19 digits together, or grouped as printed: 4-4-4-4(-3) or American Express's 4-6-5
_CARD = re.compile(r"(?<![\w+])(?<!\d\.)(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?"
                   r"|\d{4}([ -])\d{6}\2\d{5})" + _DIGITS_AFTER)
# (order matters: secrets and tokens before the digits they may hold; cards before phones)
_TEXT_RULES: list[tuple[re.Pattern[str], str]] = [
    # a personalized link's or a staff setup link's token
    (re.compile(r"(/(?:p|setup)/)[^/?#\s\"'<>]+"), r"\1[token]"),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1 [token]"),
    (re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]+"), "[token]"),  # a JWT
    # Stripe's secret, restricted and publishable keys and webhook secrets; a client secret
    (re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_\w+"), "[secret]"),
    (re.compile(r"\bwhsec_[\w+/=]+"), "[secret]"),
    (re.compile(r"\b((?:pi|seti)_[A-Za-z0-9]+)_secret_\w+"), r"\1_[secret]"),
    (re.compile(r"\bSG\.[\w-]{10,}\.[\w-]{10,}"), "[secret]"),  # a SendGrid API key
    # key=value and "key": "value" where the key names a secret
    (re.compile(r"(?i)\b(password|passwd|secret|token|api_?key|key|otp|session|signature|sig|"
                r"ssn|dob|cvc|cvv|code)((?:\"|')?\s*[=:]\s*(?:\"|')?)([^\s&\"',;]+)"),
     r"\1\2[redacted]"),
    (re.compile(r"[\w.+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), "[email]"),
]
_DIGIT_RULES: list[tuple[re.Pattern[str], str]] = [
    # E.164, compact or spaced (also URL-encoded: %2B), then North American formats
    (re.compile(r"(?:(?<![\w+])\+|%2[Bb])[1-9]\d{7,14}(?!\d)"), "[phone]"),
    (re.compile(r"(?<![\w+])\+[1-9]\d{0,2}(?:[ .-]\(?\d{1,4}\)?){2,5}(?![\w])"), "[phone]"),
    (re.compile(_DIGITS_BEFORE + r"(?:(?:\+|%2[Bb])?1[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}"
                + _DIGITS_AFTER), "[phone]"),
    (re.compile(_DIGITS_BEFORE + r"\d{3}[ -]?\d{2}[ -]?\d{4}" + _DIGITS_AFTER), "[ssn]"),
    # any other long number: a bank account, an unformatted card that fails Luhn
    (re.compile(_DIGITS_BEFORE + r"\d{9,}" + _DIGITS_AFTER), "[number]"),
]


# What each rule above needs to find at least: a text with none of these is kept as it is.
_MAYBE = re.compile(r"[\d@%/=:]|bearer|basic|eyj|sk_|rk_|pk_|whsec_|_secret_|sg\.", re.IGNORECASE)


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        n = int(char)
        if position % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = text.replace(" ", "").replace("-", "")
    if _luhn(digits):
        return "[card]"
    return "[number]"


def redact_text(text: str) -> str:
    """`text` with every phone, email, token, secret, card-like and SSN-like number replaced by
    a word in brackets ([phone], [email], [token], [secret], [card], [ssn], [number])."""
    if not _MAYBE.search(text):
        return text  # most values ("sms", "turn answered"): one search, no rule can match
    for pattern, replacement in _TEXT_RULES:
        text = pattern.sub(replacement, text)
    if any(c.isdigit() for c in text):
        e164, *rest = _DIGIT_RULES  # a number written with its + is a phone, even a long one
        text = _CARD.sub(_card, e164[0].sub(e164[1], text))
        for pattern, replacement in rest:
            text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if abs(value) < 100_000_000 else redact_text(str(value))
    if isinstance(value, Mapping):
        return {key: ("[redacted]" if _SENSITIVE_NAME.search(str(key)) else _redact_value(item))
                for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item) for item in value]
    return redact_text(str(value))


# Our own fields, made by us: never a secret (the conversation tag is 10 hex digits that may
# read as a phone number).
_OURS = frozenset({"timestamp", "level", "logger", "conversation", "account_id", "process"})


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """The processor: the event and every field, nested ones and exception text included."""
    for key, value in event_dict.items():
        if key in _OURS:
            continue
        if _SENSITIVE_NAME.search(key):
            event_dict[key] = "[redacted]"
        else:
            event_dict[key] = _redact_value(value)
    return event_dict


# --------------------------------------------------------------------------- configuration


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of the line (as logging's last resort)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


_HANDLER_NAME = "paybot"


def configure(
    settings: Settings | None = None,
    *,
    stream: IO[str] | None = None,
    now: Callable[[], datetime] | None = None,
    process: str | None = None,
) -> logging.Handler | None:
    """Set up logging for this process: the format of `settings.log_format`, INFO and above,
    libraries' chatter at WARNING (aiohttp's access lines at INFO with PAYBOT_ACCESS_LOG).

    Lines go to `stream`, else to standard error; to standard error only when no one else (a
    test harness capturing records, a program embedding us) has put a handler on the root
    logger. `now` is the clock of the timestamps (tests); `process` names this process on each
    line (`serve --workers`). Returns the handler installed, if one was."""
    settings = settings or Settings()
    timestamps = _timestamper(now)
    static = [_named_process(process)] if process else []
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _not_formatted_twice,
        timestamps,
        *static,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.PositionalArgumentsFormatter(),
            timestamps,
            *static,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == _HANDLER_NAME]:
        root.removeHandler(old)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    if settings.access_log:
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
    if stream is None and root.handlers:
        return None  # their handlers, their level
    root.setLevel(logging.INFO)
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.name = _HANDLER_NAME
    handler.setFormatter(formatter)
    root.addHandler(handler)
    return handler


def _not_formatted_twice(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # Another handler's formatter (a test's capture) may have run first and left these on the
    # record: no `extra` may use these names, so they are never the caller's fields.
    event_dict.pop("message", None)
    event_dict.pop("asctime", None)
    return event_dict


def _timestamper(now: Callable[[], datetime] | None) -> Callable[..., EventDict]:
    if now is None:
        return structlog.processors.TimeStamper(fmt="iso", utc=True)
    clock = now

    def stamp(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        event_dict["timestamp"] = clock().astimezone(UTC).isoformat().replace("+00:00", "Z")
        return event_dict

    return stamp


def _named_process(name: str) -> Callable[..., EventDict]:
    def named(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        event_dict["process"] = name
        return event_dict

    return named
