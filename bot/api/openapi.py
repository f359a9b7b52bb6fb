"""The OpenAPI 3.1 document at /api/v1/openapi.json, generated: its schemas are the request and
response models' (pydantic's models_json_schema), its paths name each operation's models,
parameters, status codes and security. Only the paths are written here.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from pydantic_core import core_schema

from bot import appkeys
from bot.api import documents, fields, models
from bot.api.problems import MAX_ROW_ID

REF = "#/components/schemas/{model}"

REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    models.AccountInput, models.LinkInput, models.CancelPlanInput, models.WithdrawOfferInput,
    models.OfferInput, models.ClaimInput, models.AgentMessageInput, models.HandBackInput,
)
RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    documents.Account, documents.Offer, documents.OfferList, documents.Link,
    documents.PlanCanceled, documents.HandedBack, documents.Error, documents.Conversation,
    documents.ConversationList, documents.ConversationMessage, documents.ConversationDetail,
)


class _Schemas(GenerateJsonSchema):
    """Pydantic's schemas without what the document never said: a title on each property, and
    `"default": null` on a field that may be left out but is never null."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> dict[str, Any]:
        if schema.get("default", ...) is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


def _component_schemas() -> dict[str, Any]:
    # Requests as validated; responses as serialized (times and dates are strings there).
    wanted = [(m, "validation") for m in REQUEST_MODELS]
    wanted += [(m, "serialization") for m in RESPONSE_MODELS]
    _, top = models_json_schema(wanted, ref_template=REF, schema_generator=_Schemas)
    return top["$defs"]


def _json(schema_name: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=schema_name)}}},
    }


def _error(description: str) -> dict[str, Any]:
    return _json("Error", description)


def _body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    return {
        "required": required,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}},
    }


def _path_parameter(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    # Without a schema: a row id (the databases' 32-bit integers).
    schema = schema or {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID}
    return {"name": name, "in": "path", "required": True, "schema": schema}


_ACCOUNT_ID = _path_parameter(
    "account_id", {"type": "string", "pattern": fields.ACCOUNT_ID_PATTERN, "maxLength": 64}
)
_PHONE = _path_parameter(
    "phone", {"type": "string", "pattern": models.PHONE_PATH_PATTERN,
              "description": "E.164 (+15555550100), or a US number's 10 digits"}
)
_AUTH_ERRORS = {
    "401": _error("no or wrong API key"),
    "503": _error("the API is disabled: no API key is configured"),
}
_NOT_JSON = {"400": _error("the body is not a JSON object")}
_TOO_LARGE = {"413": _error("the body is too large")}

PATHS: dict[str, Any] = {
    "/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document (no key needed)",
            "security": [],
            "responses": {
                "200": {"description": "the OpenAPI document", "content": {"application/json": {}}}
            },
        }
    },
    "/accounts": {
        "post": {
            "operationId": "upsertAccount",
            "summary": "Create or update an account (upsert by account_id)",
            "requestBody": _body(models.AccountInput),
            "responses": {
                "200": _json("Account", "updated (contacts masked, no payments)"),
                "201": _json("Account", "created (contacts masked, no payments)"),
                **_NOT_JSON, **_AUTH_ERRORS, **_TOO_LARGE,
                "422": _error("the account is not valid; the message says why"),
            },
        }
    },
    "/accounts/{account_id}": {
        "get": {
            "operationId": "getAccount",
            "summary": "Balance, masked contacts and payments with their status",
            "parameters": [_ACCOUNT_ID],
            "responses": {
                "200": _json("Account", "the account"),
                **_AUTH_ERRORS,
                "404": _error("unknown account"),
            },
        }
    },
    "/accounts/{account_id}/links": {
        "post": {
            "operationId": "createLink",
            "summary": "A personalized payment link (preset or open amount, fee, due date)",
            "parameters": [_ACCOUNT_ID],
            "requestBody": _body(models.LinkInput),
            "responses": {
                "201": _json("Link", "the link (shown once: only its hash is kept)"),
                **_NOT_JSON, **_AUTH_ERRORS,
                "404": _error("unknown account"),
                **_TOO_LARGE,
                "422": _error(
                    "the terms are not valid, or the amount is more than the balance; "
                    "the message says why"
                ),
            },
        }
    },
    "/plans/{plan_id}/cancel": {
        "post": {
            "operationId": "cancelPlan",
            "summary": "Cancel a plan: nothing more is debited, the customer is emailed",
            "parameters": [_path_parameter("plan_id")],
            "requestBody": _body(models.CancelPlanInput, required=False),
            "responses": {
                "200": _json("PlanCanceled", "canceled"),
                "400": _error("the body is not a JSON object, or reason/actor is not valid"),
                **_AUTH_ERRORS, **_TOO_LARGE,
                "404": _error("no such plan"),
                "409": _error("already canceled"),
            },
        }
    },
    "/accounts/{account_id}/offers": {
        "post": {
            "operationId": "createOffer",
            "summary": "Make a plan or settlement offer (with send_via: sent by the worker)",
            "parameters": [_ACCOUNT_ID],
            "requestBody": _body(models.OfferInput),
            "responses": {
                "201": _json("Offer", "the offer, with its exact schedule"),
                **_NOT_JSON, **_AUTH_ERRORS,
                "404": _error("unknown account"),
                **_TOO_LARGE,
                "422": _error("the terms break a rule; the message names the field"),
            },
        },
        "get": {
            "operationId": "listOffers",
            "summary": "The account's offers, oldest first",
            "parameters": [_ACCOUNT_ID],
            "responses": {
                "200": _json("OfferList", "the offers"),
                **_AUTH_ERRORS,
                "404": _error("unknown account"),
            },
        },
    },
    "/offers/{offer_id}": {
        "get": {
            "operationId": "getOffer",
            "summary": "One offer: terms, schedule, status and the plan once signed",
            "parameters": [_path_parameter("offer_id")],
            "responses": {
                "200": _json("Offer", "the offer"),
                **_AUTH_ERRORS,
                "404": _error("no such offer"),
            },
        }
    },
    "/offers/{offer_id}/withdraw": {
        "post": {
            "operationId": "withdrawOffer",
            "summary": "Withdraw an open offer: it can no longer be signed, its links stop",
            "parameters": [_path_parameter("offer_id")],
            "requestBody": _body(models.WithdrawOfferInput, required=False),
            "responses": {
                "200": _json("Offer", "withdrawn"),
                **_NOT_JSON, **_AUTH_ERRORS,
                "404": _error("no such offer"),
                "409": _error("the offer is not open (signed, expired or withdrawn)"),
                **_TOO_LARGE,
                "422": _error("the actor is not a short name"),
            },
        }
    },
    "/conversations": {
        "get": {
            "operationId": "listConversations",
            "summary": "Conversations, by status: waiting for a person (oldest first), with an "
                       "agent, with the bot, resolved (latest activity first)",
            "parameters": [{
                "name": "status", "in": "query", "required": False,
                "schema": {"type": "string", "enum": ["waiting", "agent", "bot", "resolved"]},
            }],
            "responses": {
                "200": _json("ConversationList", "the conversations (at most 1,000)"),
                "400": _error("status is not one of waiting, agent, bot, resolved"),
                **_AUTH_ERRORS,
            },
        }
    },
    "/conversations/{phone}": {
        "get": {
            "operationId": "getConversation",
            "summary": "A conversation with its whole transcript (customer, bot and agents)",
            "parameters": [_PHONE],
            "responses": {
                "200": _json("ConversationDetail", "the conversation"),
                "400": _error("not a phone number"),
                **_AUTH_ERRORS,
                "404": _error("no such conversation"),
            },
        }
    },
    "/conversations/{phone}/claim": {
        "post": {
            "operationId": "claimConversation",
            "summary": "An agent takes the conversation: the bot stays quiet, the customer's "
                       "messages are the agent's",
            "parameters": [_PHONE],
            "requestBody": _body(models.ClaimInput),
            "responses": {
                "200": _json("Conversation", "claimed (or already this agent's)"),
                "400": _error("not a phone number, or the body is not a JSON object"),
                **_AUTH_ERRORS,
                "404": _error("no such conversation"),
                "409": _error("another agent owns the conversation"),
                **_TOO_LARGE,
                "422": _error("agent is not a name"),
            },
        }
    },
    "/conversations/{phone}/messages": {
        "post": {
            "operationId": "sendConversationMessage",
            "summary": "An agent's text to the customer, sent through the SMS provider with "
                       "its delivery status tracked; claims the conversation when no agent "
                       "owns it",
            "parameters": [_PHONE],
            "requestBody": _body(models.AgentMessageInput),
            "responses": {
                "201": _json("ConversationMessage", "queued to the SMS provider"),
                "400": _error("not a phone number, or the body is not a JSON object"),
                **_AUTH_ERRORS,
                "404": _error("no such conversation"),
                "409": _error(
                    "the number opted out, another agent owns the conversation, or it is the "
                    "customer's quiet hours and they have not written within the last hour"
                ),
                **_TOO_LARGE,
                "422": _error("the body is empty or longer than 2 SMS segments"),
                "502": _error("the SMS provider did not take the message; nothing was stored"),
            },
        }
    },
    "/conversations/{phone}/handback": {
        "post": {
            "operationId": "handBackConversation",
            "summary": "Hand a conversation back to the bot (main menu); the customer is told "
                       "they are back with the automated assistant",
            "parameters": [_PHONE],
            "requestBody": _body(models.HandBackInput, required=False),
            "responses": {
                "200": _json("HandedBack", "handed back"),
                "400": _error("not a phone number, or the body is not a JSON object"),
                **_AUTH_ERRORS,
                "404": _error("no such conversation"),
                **_TOO_LARGE,
                "422": _error("agent is not a name"),
            },
        }
    },
}


@lru_cache(maxsize=4)
def document(today: date) -> dict[str, Any]:
    """The document as served on `today` (the date of birth's last day is yesterday)."""
    schemas = _component_schemas()
    schemas["AccountInput"]["properties"]["dob"]["pattern"] = models.dob_pattern(today)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "PayBot API",
            "version": "1",
            "description": (
                "Operators' API: accounts, offers, plans and conversations. "
                'Errors are {"error": "..."}.'
            ),
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "security": [{"bearer": []}],
        "paths": PATHS,
    }


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document(request.config_dict[appkeys.CLOCK].now().date()))
