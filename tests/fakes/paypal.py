"""A local stand-in for PayPal's REST API, enough for paypal-server-sdk and the portal's button.

* ``POST /v1/oauth2/token``: client credentials (Basic auth) -> a bearer token.
* ``POST /v3/vault/setup-tokens`` -> a token waiting for the payer (``PAYER_ACTION_REQUIRED``);
  ``POST /_fake/approve/{id}`` (what the payer's "approve" does; CORS open) approves it.
* ``POST /v3/vault/payment-tokens`` exchanges an approved setup token for a vault id.
* ``POST /v2/checkout/orders`` with ``payment_source.paypal.vault_id``: captured at once;
  the same ``PayPal-Request-Id`` replays the first answer. ``GET /v2/checkout/orders/{id}``,
  ``POST /v2/checkout/orders/{id}/capture``, ``POST /v2/payments/captures/{id}/refund``.
* ``GET /sdk/js``: a stand-in for PayPal's JS SDK (``paypal.Buttons``) whose button approves
  the setup token here, then calls ``onApprove``.
* ``GET /certs/fake.pem``: the certificate webhooks are signed with; ``signed(event, url)``
  builds PayPal's headers (transmission id, time, CRC32 of the body, RSA-SHA256).

Switches: ``decline = True`` declines every capture (``decline_as = "instrument"``: with a 422
INSTRUMENT_DECLINED instead of a DECLINED capture); ``fail_next(status)`` answers one API call
with an error.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.fakes.local_server import LocalServer

CLIENT_ID = "fake-paypal-client"
CLIENT_SECRET = "fake-paypal-secret"
WEBHOOK_ID = "WH-FAKE-0001"
PAYER_EMAIL = "maria.lopez@example.com"

STANDIN_JS = """"use strict";
// Stand-in for PayPal's JS SDK (tests): paypal.Buttons with the vault callbacks.
window.paypal = {
  Buttons: function (options) {
    return {
      render: async function (target) {
        const box = typeof target === "string" ? document.querySelector(target) : target;
        const button = document.createElement("button");
        button.type = "button";
        button.className = "paypal-standin";
        button.textContent = "PayPal";
        button.addEventListener("click", async function () {
          const token = await options.createVaultSetupToken();
          await fetch("__BASE__/_fake/approve/" + encodeURIComponent(token), { method: "POST" });
          await options.onApprove({ vaultSetupToken: token });
        });
        box.appendChild(button);
      },
    };
  },
};
"""


def _new_id(prefix: str = "") -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(17 - len(prefix)))


def _error(status: int, name: str, issue: str | None = None) -> web.Response:
    body: dict[str, Any] = {"name": name, "message": name.replace("_", " ").lower(),
                            "debug_id": _new_id().lower()}
    if issue:
        body["details"] = [{"issue": issue, "description": issue.replace("_", " ").lower()}]
    return web.json_response(body, status=status)


def _self_signed() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.fake")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class PayPalFake(LocalServer):
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    webhook_id: str = WEBHOOK_ID
    payer_email: str = PAYER_EMAIL
    host: str = "127.0.0.1"
    port: int = 0
    decline: bool = False
    decline_as: str = "capture"  # or "instrument": a 422 INSTRUMENT_DECLINED
    setup_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    vault: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    _by_request_id: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _tokens: set[str] = field(default_factory=set)
    _failures: list[int] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        self._key, self.cert_pem = _self_signed()

    # -- control -------------------------------------------------------------------------
    def fail_next(self, status: int = 503) -> None:
        self._failures.append(status)

    @property
    def cert_url(self) -> str:
        return f"{self.base_url}/certs/fake.pem"

    @property
    def captures(self) -> list[dict[str, Any]]:
        return [c for order in self.orders.values() for c in _captures(order)]

    def capture_event(self, event_type: str, capture: dict[str, Any],
                      event_id: str | None = None) -> dict[str, Any]:
        """A webhook event about a capture, as PayPal sends it."""
        return {
            "id": event_id or f"WH-{_new_id()}",
            "event_version": "1.0",
            "create_time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resource_type": "capture" if "REFUNDED" not in event_type else "refund",
            "event_type": event_type,
            "summary": event_type.lower(),
            "resource": capture,
        }

    def signed(self, body: bytes, *, webhook_id: str | None = None,
               key: rsa.RSAPrivateKey | None = None) -> dict[str, str]:
        """PayPal's webhook headers for this exact body."""
        transmission_id = secrets.token_hex(16)
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = f"{transmission_id}|{when}|{webhook_id or self.webhook_id}|{zlib.crc32(body)}"
        signature = (key or self._key).sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
        return {
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-TIME": when,
            "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
            "PAYPAL-CERT-URL": self.cert_url,
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            "Content-Type": "application/json",
        }

    # -- the API -------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/v1/oauth2/token", self._token)
        app.router.add_post("/v3/vault/setup-tokens", self._setup_token)
        app.router.add_post("/v3/vault/payment-tokens", self._payment_token)
        app.router.add_post("/v2/checkout/orders", self._create_order)
        app.router.add_get("/v2/checkout/orders/{id}", self._get_order)
        app.router.add_post("/v2/checkout/orders/{id}/capture", self._capture_order)
        app.router.add_post("/v2/payments/captures/{id}/refund", self._refund)
        app.router.add_route("*", "/_fake/approve/{id}", self._approve)
        app.router.add_get("/sdk/js", self._js)
        app.router.add_get("/certs/fake.pem", self._cert)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.headers)))
        api = request.path.startswith(("/v1/", "/v2/", "/v3/"))
        if api and not request.path.startswith("/v1/oauth2"):
            auth = request.headers.get("Authorization", "")
            if auth.removeprefix("Bearer ") not in self._tokens:
                return _error(401, "AUTHENTICATION_FAILURE")
            if self._failures:
                return _error(self._failures.pop(0), "INTERNAL_SERVER_ERROR")
        return await handler(request)

    async def _token(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"error": "invalid_client",
                                      "error_description": "Client Authentication failed"},
                                     status=401)
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        token = secrets.token_urlsafe(24)
        self._tokens.add(token)
        return web.json_response({"scope": "https://uri.paypal.com/services/vault",
                                  "access_token": token, "token_type": "Bearer",
                                  "app_id": "APP-FAKE", "expires_in": 32400,
                                  "nonce": secrets.token_hex(8)})

    async def _setup_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        paypal = (body.get("payment_source") or {}).get("paypal")
        if not isinstance(paypal, dict):
            return _error(400, "INVALID_REQUEST", "MISSING_REQUIRED_PARAMETER")
        token_id = _new_id()
        self.setup_tokens[token_id] = {"id": token_id, "status": "PAYER_ACTION_REQUIRED",
                                       "customer": {"id": _new_id("C")}}
        return web.json_response({
            **self.setup_tokens[token_id],
            "payment_source": {"paypal": {"usage_type": paypal.get("usage_type", "MERCHANT")}},
            "links": [{"href": f"{self.base_url}/agreements/approve?approval_session_id="
                               f"{token_id}", "rel": "approve", "method": "GET"}],
        }, status=201)

    async def _approve(self, request: web.Request) -> web.Response:
        cors = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST"}
        if request.method == "OPTIONS":
            return web.Response(headers=cors)
        token = self.setup_tokens.get(request.match_info["id"])
        if token is None:
            return web.json_response({"approved": False}, status=404, headers=cors)
        token["status"] = "APPROVED"
        return web.json_response({"approved": True}, headers=cors)

    async def _payment_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        source = (body.get("payment_source") or {}).get("token") or {}
        token = self.setup_tokens.get(str(source.get("id")))
        if token is None or source.get("type") != "SETUP_TOKEN":
            return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
        if token["status"] != "APPROVED":
            return _error(422, "UNPROCESSABLE_ENTITY", "SETUP_TOKEN_NOT_APPROVED")
        vault_id = token.get("vault_id") or _new_id()
        token["vault_id"] = vault_id
        saved = {"id": vault_id, "customer": token["customer"],
                 "payment_source": {"paypal": {"email_address": self.payer_email,
                                               "payer_id": "PAYER" + vault_id[:8]}}}
        self.vault[vault_id] = saved
        return web.json_response(saved, status=201)

    async def _create_order(self, request: web.Request) -> web.Response:
        request_id = request.headers.get("PayPal-Request-Id")
        if request_id and request_id in self._by_request_id:
            status, first = self._by_request_id[request_id]
            return web.json_response(first, status=200 if status < 300 else status)
        body = await request.json()
        vault_id = ((body.get("payment_source") or {}).get("paypal") or {}).get("vault_id")
        units = body.get("purchase_units") or []
        if body.get("intent") != "CAPTURE" or len(units) != 1:
            return _error(400, "INVALID_REQUEST", "MISSING_REQUIRED_PARAMETER")
        if vault_id is None:
            return _error(422, "UNPROCESSABLE_ENTITY", "PAYMENT_SOURCE_INFO_CANNOT_BE_VERIFIED")
        if not request_id:  # PayPal requires it on a single-step (vault) order
            return _error(400, "INVALID_REQUEST", "PAYPAL_REQUEST_ID_REQUIRED")
        if vault_id not in self.vault:
            return _error(422, "UNPROCESSABLE_ENTITY", "INVALID_RESOURCE_ID")
        if self.decline and self.decline_as == "instrument":
            answer = (422, {"name": "UNPROCESSABLE_ENTITY", "debug_id": "fake",
                            "details": [{"issue": "INSTRUMENT_DECLINED"}]})
            self._by_request_id[request_id] = answer
            return web.json_response(answer[1], status=422)
        order = self._order(units[0], status="DECLINED" if self.decline else "COMPLETED")
        order["payment_source"] = {"paypal": {"email_address": self.payer_email,
                                              "attributes": {"vault": {"id": vault_id}}}}
        self._by_request_id[request_id] = (201, order)
        return web.json_response(order, status=201)

    def _order(self, unit: dict[str, Any], *, status: str) -> dict[str, Any]:
        order_id = _new_id()
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        capture = {
            "id": _new_id(), "status": status, "amount": unit.get("amount"),
            "custom_id": unit.get("custom_id"), "final_capture": True,
            "create_time": now, "update_time": now,
            "supplementary_data": {"related_ids": {"order_id": order_id}},
        }
        if status == "DECLINED":
            capture["status_details"] = {"reason": "DECLINED_BY_RISK_FRAUD_FILTERS"}
        order = {
            "id": order_id, "intent": "CAPTURE", "status": "COMPLETED", "create_time": now,
            "purchase_units": [{**unit, "payments": {"captures": [capture]}}],
            "links": [{"href": f"{self.base_url}/v2/checkout/orders/{order_id}",
                       "rel": "self", "method": "GET"}],
        }
        self.orders[order_id] = order
        return order

    async def _get_order(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["id"])
        if order is None:
            return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
        return web.json_response(order)

    async def _capture_order(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["id"])
        if order is None:
            return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
        return _error(422, "UNPROCESSABLE_ENTITY", "ORDER_ALREADY_CAPTURED")

    async def _refund(self, request: web.Request) -> web.Response:
        request_id = request.headers.get("PayPal-Request-Id")
        if request_id and request_id in self._by_request_id:
            return web.json_response(self._by_request_id[request_id][1])
        capture = next((c for c in self.captures if c["id"] == request.match_info["id"]), None)
        if capture is None:
            return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
        if capture["status"] not in ("COMPLETED", "PARTIALLY_REFUNDED"):
            return _error(422, "UNPROCESSABLE_ENTITY", "CAPTURE_FULLY_REFUNDED")
        body = await request.json() if request.can_read_body else {}
        amount = body.get("amount") or capture["amount"]
        refund = {"id": _new_id(), "status": "COMPLETED", "amount": amount,
                  "custom_id": body.get("custom_id") or capture.get("custom_id"),
                  "links": [{"href": f"{self.base_url}/v2/payments/captures/{capture['id']}",
                             "rel": "up", "method": "GET"}]}
        self.refunds[refund["id"]] = refund
        capture["status"] = ("REFUNDED" if amount == capture["amount"]
                             else "PARTIALLY_REFUNDED")
        if request_id:
            self._by_request_id[request_id] = (201, refund)
        return web.json_response(refund, status=201)

    async def _js(self, request: web.Request) -> web.Response:
        if request.query.get("client-id") != self.client_id:
            return web.Response(status=400, text="client-id is required")
        return web.Response(text=STANDIN_JS.replace("__BASE__", self.base_url),
                            content_type="application/javascript")

    async def _cert(self, request: web.Request) -> web.Response:
        return web.Response(body=self.cert_pem, content_type="application/x-pem-file")


def _captures(order: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for unit in order.get("purchase_units") or []
            for c in (unit.get("payments") or {}).get("captures") or []]


def dumps(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()
