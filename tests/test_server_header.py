"""The Server header names no software version, on any answer: pages, the API, webhooks, static
files, errors, and the 400 to a request too malformed to reach a route."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from tests.conftest import API_KEY


async def test_no_answer_names_a_version(client: TestClient) -> None:
    answers = [
        await client.get("/healthz"),
        await client.get("/portal/"),  # a page of the portal sub-app
        await client.get("/static/portal.css"),  # a static file (FileResponse)
        await client.get("/api/v1/openapi.json"),
        await client.get("/api/v1/accounts/NOPE", headers={"Authorization": f"Bearer {API_KEY}"}),
        await client.get("/api/v1/accounts/NOPE"),  # 401
        await client.get("/no/such/page"),  # 404 from the router
        await client.delete("/healthz"),  # 405
        await client.get("/p/not-a-token"),  # an unknown link's page
        await client.post("/webhooks/twilio/sms", data={"Body": "hi"}),  # 403, unsigned
        await client.post("/webhooks/stripe", data=b"{}"),  # 400, unsigned
        await client.post("/webhooks/twilio/sms", data={"Body": "x" * 128 * 1024}),  # 413
    ]
    seen = {(response.status, response.headers.get("Server")) for response in answers}
    assert {status for status, _ in seen} >= {200, 401, 403, 404, 405, 413}
    assert {server for _, server in seen} == {"PayBot"}


async def test_a_malformed_request_names_no_version(client: TestClient) -> None:
    # Answered by aiohttp's parser before any route or middleware of ours runs.
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        await writer.drain()
        head = (await reader.read(4096)).decode("latin-1")
    finally:
        writer.close()
    status_line, *headers = head.split("\r\n\r\n")[0].split("\r\n")
    assert status_line.split(" ", 2)[1] == "400"
    assert [h for h in headers if h.lower().startswith("server:")] == ["Server: PayBot"]
