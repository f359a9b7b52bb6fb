"""The API's answers to what went wrong, and what every request passes first.

Owns the problem document ({"error": "..."}), the middlewares (any exception as a problem, the
bearer API key), reading a body as a JSON object (400 otherwise, 413 over the size limit), the
path ids that name nothing (404), and turning a request model's ValidationError into the one
sentence a 422 says.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from decimal import Decimal
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import appkeys
from bot.api.fields import ACCOUNT_ID_PATTERN, DOMAIN_ERROR, says, unknown_fields
from bot.ledger import queries as ledger
from bot.ledger.models import Account
from bot.operations import outage

log = logging.getLogger(__name__)

PUBLIC_PATHS = {"/api/v1/openapi.json"}
_ACCOUNT_REF = re.compile(ACCOUNT_ID_PATTERN.removesuffix("$") + r"\Z")
# Row ids are the databases' 32-bit integers: a larger one names nothing (PostgreSQL would refuse
# to compare it), and only ASCII digits are digits here.
MAX_ROW_ID = 2**31 - 1
_ROW_ID = re.compile(r"^[0-9]{1,10}$")

Model = TypeVar("Model", bound=BaseModel)


def problem(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def row_id(raw: str) -> int | None:
    if not _ROW_ID.match(raw) or int(raw) > MAX_ROW_ID:
        return None
    return int(raw)


def is_account_ref(raw: str) -> bool:
    return _ACCOUNT_REF.match(raw) is not None


async def path_account(session: AsyncSession, request: web.Request) -> Account | web.Response:
    """The account the path's `{account_id}` names, or the 404 that says there is none (an id
    that could not be one is not looked up)."""
    ref = request.match_info["account_id"]
    account = await ledger.account_by_ref(session, ref) if is_account_ref(ref) else None
    return problem(404, "no account with that account_id") if account is None else account


@web.middleware
async def json_errors(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return problem(413, f"the body is larger than the {request.client_max_size} bytes allowed")
    except web.HTTPException as exc:
        if exc.status >= 400:
            extra = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
            return problem(exc.status, exc.reason, **extra)
        raise
    except Exception as error:
        if outage.is_outage(error):
            log.warning("API request %s %s: 503, the database or Redis is unreachable",
                        request.method, request.path)
            return problem(503, "briefly unavailable; nothing was changed, try again shortly",
                           **{"Retry-After": outage.RETRY_AFTER_SECONDS})
        log.exception("API request %s %s failed", request.method, request.path)
        return problem(500, "internal error; nothing was changed by a failed request")


@web.middleware
async def require_api_key(request: web.Request, handler):  # type: ignore[no-untyped-def]
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    keys = request.config_dict[appkeys.SETTINGS].api_keys
    if not keys:
        return problem(503, "the REST API is disabled: set PAYBOT_API_KEY")
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not one_of(given.strip(), keys):
        return problem(
            401,
            "a valid bearer API key is required (Authorization: Bearer KEY)",
            **{"WWW-Authenticate": "Bearer"},
        )
    return await handler(request)


def one_of(given: str, keys: tuple[str, ...]) -> bool:
    """Whether `given` is one of `keys` (the current API key and, during a rotation, the old
    ones), in a time that tells nothing of which nor of their lengths: every key is compared,
    each as its SHA-256 digest, in constant time."""
    digest = hashlib.sha256(given.encode("utf-8", "replace")).digest()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(digest, hashlib.sha256(key.encode()).digest())
    return matched


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def json_object(request: web.Request) -> dict[str, Any] | web.Response:
    """The body as a JSON object, or the 400 to answer; numbers with a fraction are Decimals."""
    raw = await request.read()  # over client_max_size: HTTPRequestEntityTooLarge -> 413
    try:
        body = json.loads(
            raw.decode("utf-8-sig"), parse_float=Decimal, parse_constant=_reject_constant
        )
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return problem(400, "the body must be a JSON object (UTF-8)")
    if not isinstance(body, dict):
        return problem(400, "the body must be a JSON object")
    return _whole_numbers(body)


async def optional_json_object(request: web.Request) -> dict[str, Any] | web.Response:
    """A body that may be left out: no body is an empty object."""
    return await json_object(request) if request.can_read_body else {}


def _whole_numbers(value: Any) -> Any:
    """JSON numbers with no fraction ("527.0") as the integers JSON Schema says they are; the
    size guard keeps "1E+999999999" from becoming a billion-digit int."""
    if isinstance(value, Decimal):
        if value.is_finite() and value.adjusted() <= 18 and value == value.to_integral_value():
            return int(value)
        return value
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


async def request_model(
    request: web.Request,
    model: type[Model],
    *,
    status: int = 422,
    optional: bool = False,
    context: dict[str, Any] | None = None,
) -> Model | web.Response:
    """The request's body as the model, or the problem to answer (`optional`: no body is {})."""
    body = await (optional_json_object if optional else json_object)(request)
    if isinstance(body, web.Response):
        return body
    checked = validated(model, body, context)
    return problem(status, checked) if isinstance(checked, str) else checked


def validated(
    model: type[Model], body: dict[str, Any], context: dict[str, Any] | None = None
) -> Model | str:
    """The body as the request model, or the sentence that says what to fix (naming the field,
    never its value: it may be an SSN)."""
    try:
        return model.model_validate(body, context=context)
    except ValidationError as exc:
        return _first_problem(model, exc.errors(include_url=False))


def _first_problem(model: type[BaseModel], errors: list[Any]) -> str:
    # Precedence: fields nobody knows, then the domain's own words (a field's value the domain
    # refuses), then what concerns the whole body, then the first field by name.
    unknown = [e["loc"][0] for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        return unknown_fields(dict.fromkeys(unknown), ()) or ""
    for error in errors:
        if error["type"] == DOMAIN_ERROR:
            return error["msg"]
        if error["loc"] and (message := says(model, str(error["loc"][0]), error)):
            return message
    missing = [str(e["loc"][0]) for e in errors if e["type"] == "missing"]
    if missing:
        return f"{', '.join(missing)} is required"
    whole = [e for e in errors if not e["loc"]]
    if whole:
        description = model.model_json_schema().get("description", "")
        return f"the body does not match the schema: {description}"
    field = min(str(e["loc"][0]) for e in errors)[:40]
    return f"{field} is not valid here: see its schema in /api/v1/openapi.json"
