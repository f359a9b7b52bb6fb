"""Run localstripe (GPL, a separate process only: never imported) for tests and the demo.

    server = LocalStripe.start()          # free port, waits until it answers
    server.url                            # "http://127.0.0.1:PORT"
    server.flush()                        # DELETE /_config/data (webhook targets stay)
    server.register_webhook("paybot", "http://127.0.0.1:8080/webhooks/stripe", "whsec_x")
    server.stop()

Set LOCALSTRIPE_URL to use an instance that is already running instead of starting one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import aiohttp
import stripe

LOCALSTRIPE_KEY = "sk_test_paybot"
START_TIMEOUT = 20.0


def localstripe_executable() -> str:
    exe = Path(sys.executable).parent / "localstripe"
    if not exe.exists():
        raise RuntimeError(f"localstripe not installed next to {sys.executable}")
    return str(exe)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(method: str, url: str, data: dict[str, object] | None = None) -> int:
    body = None
    headers = {}
    if data is not None:
        body = urllib.parse.urlencode(data, doseq=True).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (local test server)
        return resp.status


class LocalStripe:
    def __init__(
        self,
        url: str,
        process: subprocess.Popen[bytes] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.process = process
        self.log_path = log_path

    @property
    def js_url(self) -> str:
        """localstripe's fake Stripe.js (card element, confirmCardSetup)."""
        return f"{self.url}/js.stripe.com/v3/"

    @classmethod
    def start(cls, *, attempts: int = 3) -> LocalStripe:
        existing = os.environ.get("LOCALSTRIPE_URL")
        if existing:
            server = cls(existing)
            server.wait_ready(time.monotonic() + START_TIMEOUT)
            return server
        last_error: Exception | None = None
        for _ in range(attempts):  # the free port may be taken between probe and bind
            port = free_port()
            fd, log_name = tempfile.mkstemp(prefix="localstripe-", suffix=".log")
            log_path = Path(log_name)
            with os.fdopen(fd, "wb") as log_file:
                process = subprocess.Popen(
                    [localstripe_executable(), "--port", str(port), "--from-scratch"],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            server = cls(f"http://127.0.0.1:{port}", process, log_path)
            try:
                server.wait_ready(time.monotonic() + START_TIMEOUT)
            except RuntimeError as exc:
                last_error = exc
                server.stop()
                continue
            return server
        raise RuntimeError(f"localstripe did not start: {last_error}")

    def wait_ready(self, deadline: float) -> None:
        """Poll the HTTP port until localstripe answers (or died, or the deadline passed)."""
        delay = 0.02
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"localstripe exited with {self.process.returncode}: {self.log_tail()}"
                )
            try:
                if _request("GET", self.js_url) == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"localstripe not answering at {self.url}: {self.log_tail()}")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def log_tail(self, chars: int = 2000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def flush(self) -> None:
        """Forget every object (customers, methods, intents...). Webhook targets stay."""
        _request("DELETE", f"{self.url}/_config/data")

    async def flush_async(self) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.delete(f"{self.url}/_config/data") as resp:
                resp.raise_for_status()

    def register_webhook(
        self, name: str, url: str, secret: str, events: list[str] | None = None
    ) -> None:
        """Send signed events to ``url`` (once, about 1 s after the change, never retried)."""
        data: dict[str, object] = {"url": url, "secret": secret}
        if events:
            data["events[]"] = events
        _request("POST", f"{self.url}/_config/webhooks/{urllib.parse.quote(name)}", data)

    async def register_webhook_async(
        self, name: str, url: str, secret: str, events: list[str] | None = None
    ) -> None:
        data: list[tuple[str, str]] = [("url", url), ("secret", secret)]
        data += [("events[]", event) for event in events or []]
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{self.url}/_config/webhooks/{urllib.parse.quote(name)}", data=data
            ) as resp:
                resp.raise_for_status()

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=5)
            self.process = None
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    def __enter__(self) -> LocalStripe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


async def create_card_method(
    url: str,
    number: str,
    *,
    exp_month: int = 12,
    exp_year: int = 2030,
    cvc: str = "123",
) -> str:
    """Create a card PaymentMethod from a raw test number (tests only: production code never
    sees a card number; Stripe.js creates methods in the browser)."""
    http = stripe.AIOHTTPClient()
    client = stripe.StripeClient(
        LOCALSTRIPE_KEY, base_addresses={"api": url}, http_client=http, max_network_retries=0
    )
    try:
        pm = await client.v1.payment_methods.create_async(
            params={
                "type": "card",
                "card": {
                    "number": number,
                    "exp_month": exp_month,
                    "exp_year": exp_year,
                    "cvc": cvc,
                },
            }
        )
    finally:
        await http.close_async()
    return pm.id


def _serve_forever() -> None:
    """``python -m bot.providers.localstripe``: run one for the demo until Ctrl-C or SIGTERM."""
    import signal

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    with LocalStripe.start() as server:
        print(f"localstripe at {server.url} (Stripe.js at {server.js_url})", flush=True)
        try:
            if server.process is not None:
                server.process.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    _serve_forever()
