"""A sandbox of the wallet's message API, for tests, benchmarks and users trying a configuration.

It is a real HTTP/1.1 server (asyncio, keep-alive) that speaks ``POST /v2/platform/message/send``
as SPEC section 6 describes it:

- checks each request: at most 20 messages, ``messageId`` <= 64, ``customerId`` <= 32,
  ``messageChannel`` PUSH/SMS/INBOX, ``redirectUrl`` <= 1,024 and present for PUSH and INBOX,
  ``messageContent`` JSON text <= 4,096 with a title and content (an ``inbox`` for INBOX);
  a request that breaks them is answered ``F`` ``PARAM_ILLEGAL``;
- authenticates: a bearer ``token`` and/or Alipay+ signatures checked with the partner's public
  key (``client_public_key``; a bad or missing one is ``F`` ``INVALID_SIGNATURE``), and signs its
  replies with the wallet's private key (``wallet_private_key``) as ``Response-Time`` /
  ``Signature`` headers;
- deduplicates by ``messageId``: a message id delivered before is answered ``success`` again and
  not delivered twice; the same id with different content or customer is recorded in
  ``conflicts`` (exactly-once tests assert it stays empty);
- waits ``latency`` seconds before each reply, and follows a failure script.

The failure script: ``script`` is a list of actions used by the next requests, one each, in
order (then every request is normal again); ``fail`` maps a ``customerId`` to what its messages
get (``"retry"`` or ``"reject"``, optionally ``"retry:N"`` for only the first N times). Actions:

    "S"                      normal
    "U"                      result U (unknown; nothing delivered)
    "U-after"                result U although the messages were delivered (a lost reply)
    "F:<CODE>"               result F with resultCode CODE (REQUEST_TRAFFIC_EXCEED_LIMIT ...)
    "http:<status>"          that HTTP status, nothing delivered (500, 503, 429, 400 ...)
    "drop"                   S, but the reply leaves out the first message (still undelivered)
    "bad-signature"          the reply's signature is garbage (messages delivered)
    "slow:<seconds>"         this reply waits that long instead of ``latency``
    "close"                  the connection is closed without an answer

Use it in a thread of the test process::

    with SandboxGateway(token="t", latency=0.05) as sandbox:
        sandbox.url        # http://127.0.0.1:<port>/v2/platform/message/send
        sandbox.delivered  # messageId -> (customerId, channel, redirectUrl, messageContent)

or in its own process (``python tests/helpers/sandbox_gateway.py --help``), where
``GET /_sandbox/stats`` answers its counters as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.delivery.providers.signing import Signer, Verifier

PATH = "/v2/platform/message/send"
CHANNELS = {"PUSH", "SMS", "INBOX"}
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Stats:
    requests: int = 0
    messages: int = 0  # message entries received, repeats included
    in_flight: int = 0
    max_in_flight: int = 0
    results: Counter = field(default_factory=Counter)  # S / F:<code> / U / http:<n> per request
    signatures_checked: int = 0


class SandboxGateway:
    """The sandbox server; ``start()``/``stop()`` or a ``with`` block run it on a thread."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = PATH,
        token: str | None = None,
        client_id: str | None = None,
        client_public_key: str | bytes | None = None,
        wallet_private_key: str | bytes | None = None,
        latency: float = 0.0,
        script: list[str] | None = None,
        fail: dict[str, str] | None = None,
        record: bool = True,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.token = token
        self.client_id = client_id
        self.verifier = Verifier(client_public_key) if client_public_key else None
        self.signer = Signer(wallet_private_key, client_id or "wallet") if wallet_private_key else None
        self.latency = latency
        self.script: list[str] = list(script or [])
        self.fail: dict[str, str] = dict(fail or {})
        self.record = record
        self.delivered: dict[str, tuple[str, str, str | None, str]] = {}
        self.delivered_count = 0
        self.conflicts: list[tuple[str, Any, Any]] = []
        self.received: list[tuple[str, str]] = []  # (messageId, customerId) of every entry, repeats included
        self.arrivals: list[float] = []  # time.monotonic() of each POST's arrival
        self.stats = Stats()
        self.lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    # --- running ------------------------------------------------------------------------------

    def start(self) -> SandboxGateway:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(asyncio.start_server(self._connection, self.host, self.port, backlog=512))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="sandbox-gateway", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None

    def __enter__(self) -> SandboxGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def customers(self) -> dict[str, set[str]]:
        """customerId -> the message ids delivered to it (one each, when exactly-once holds)."""
        found: dict[str, set[str]] = {}
        with self.lock:
            for message_id, (customer, *_rest) in self.delivered.items():
                found.setdefault(customer, set()).add(message_id)
        return found

    def counters(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.stats.requests,
                "messages": self.stats.messages,
                "delivered": self.delivered_count,
                "conflicts": len(self.conflicts),
                "max_in_flight": self.stats.max_in_flight,
                "results": dict(self.stats.results),
            }

    # --- HTTP ---------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _version = (lines[0].split(" ", 2) + ["", ""])[:3]
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                answer = await self._handle(method, target, headers, body)
                if answer is None:  # "close": hang up without a word
                    break
                status, reply_headers, payload = answer
                out = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"Content-Length: {len(payload)}", "Content-Type: application/json"]
                out += [f"{name}: {value}" for name, value in reply_headers.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + payload)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the peer is gone
                pass

    async def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes] | None:
        if method == "GET" and target == "/_sandbox/stats":
            return 200, {}, json.dumps(self.counters()).encode()
        if method != "POST" or target != self.path:
            return 404, {}, b'{"error": "not found"}'
        with self.lock:
            self.stats.requests += 1
            if self.record:
                self.arrivals.append(time.monotonic())
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            action = self.script.pop(0) if self.script else "S"
        try:
            return await self._answer(action, headers, body)
        finally:
            with self.lock:
                self.stats.in_flight -= 1

    async def _answer(self, action: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes] | None:
        try:
            messages = json.loads(body)["messages"]
            problem = _request_problem(messages)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            messages, problem = [], f"not a request: {error}"
        with self.lock:
            if problem is None:
                self.stats.messages += len(messages)
                if self.record:
                    self.received.extend((m["messageId"], m["customerId"]) for m in messages)
        delay = float(action.split(":", 1)[1]) if action.startswith("slow:") else self.latency
        if delay:
            await asyncio.sleep(delay)
        if action == "close":
            self._count("close")
            return None
        if action.startswith("http:"):
            status = int(action.split(":", 1)[1])
            self._count(action)
            return status, ({"Retry-After": "0"} if status == 429 else {}), b'{"error": "scripted"}'
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return self._result("F", "INVALID_ACCESS_TOKEN", status_code=401)
        if self.verifier is not None:
            problem = self.verifier.problem(_Headers(headers), self.path, self.client_id or "", body, "Request-Time")
            with self.lock:
                self.stats.signatures_checked += 1
            if problem is None and self.client_id is not None and headers.get("client-id") != self.client_id:
                problem = f"unknown Client-Id {headers.get('client-id')!r}"
            if problem is not None:
                return self._result("F", "INVALID_SIGNATURE", problem)
        if problem is not None:
            return self._result("F", "PARAM_ILLEGAL", problem)
        if action == "U":
            return self._result("U", "UNKNOWN_EXCEPTION", "scripted")
        if action.startswith("F:"):
            return self._result("F", action[2:], "scripted")
        rows = []
        dropped = action == "drop"
        for message in messages:
            if dropped:
                dropped = False
                continue
            rows.append(self._deliver(message))
        if action == "U-after":
            return self._result("U", "UNKNOWN_EXCEPTION", "scripted after delivery")
        return self._result("S", "SUCCESS", "success", rows=rows, bad_signature=action == "bad-signature")

    def _deliver(self, message: dict[str, Any]) -> dict[str, Any]:
        message_id, customer = message["messageId"], message["customerId"]
        rule = self.fail.get(customer)
        with self.lock:
            if rule:
                verdict, _, times = rule.partition(":")
                if times:
                    left = int(times) - 1
                    if left <= 0:
                        del self.fail[customer]
                    else:
                        self.fail[customer] = f"{verdict}:{left}"
                if verdict == "reject":
                    return {"messageId": message_id, "success": False, "retry": False, "resultCode": "USER_NOT_EXIST"}
                return {"messageId": message_id, "success": False, "retry": True, "resultCode": "SYSTEM_BUSY"}
            entry = (customer, message["messageChannel"], message.get("redirectUrl"), message["messageContent"])
            known = self.delivered.get(message_id)
            if known is None:
                self.delivered_count += 1
                if self.record:
                    self.delivered[message_id] = entry
            elif known != entry:
                self.conflicts.append((message_id, known, entry))
        return {"messageId": message_id, "success": True, "retry": False}

    def _count(self, what: str) -> None:
        with self.lock:
            self.stats.results[what] += 1

    def _result(
        self, status: str, code: str, words: str = "", *, rows: list[dict] | None = None, status_code: int = 200, bad_signature: bool = False, **_: Any
    ) -> tuple[int, dict[str, str], bytes]:
        self._count(status if status != "F" else f"F:{code}")
        reply: dict[str, Any] = {"result": {"resultStatus": status, "resultCode": code, "resultMessage": words}}
        if rows is not None:
            reply["messageSendResults"] = rows
        payload = json.dumps(reply, separators=(",", ":")).encode()
        headers: dict[str, str] = {}
        if self.signer is not None:
            headers = self.signer.headers(self.path, payload)
            headers["Response-Time"] = headers.pop("Request-Time")
            if bad_signature:
                headers["Signature"] = "algorithm=RSA256, keyVersion=1, signature=" + "A" * 344
        return status_code, headers, payload


class _Headers(dict):
    """Lower-cased request headers read with the names the verifier uses."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


def _request_problem(messages: Any) -> str | None:
    """What makes a request one the wallet refuses (PARAM_ILLEGAL), or None."""
    if not isinstance(messages, list) or not 1 <= len(messages) <= 20:
        return "messages must be a list of 1 to 20"
    for message in messages:
        message_id, customer, channel = message.get("messageId"), message.get("customerId"), message.get("messageChannel")
        if not isinstance(message_id, str) or not 1 <= len(message_id) <= 64:
            return f"messageId {message_id!r}: 1 to 64 characters"
        if not isinstance(customer, str) or not 1 <= len(customer) <= 32:
            return f"customerId {customer!r}: 1 to 32 characters"
        if channel not in CHANNELS:
            return f"messageChannel {channel!r}: PUSH, SMS or INBOX"
        url = message.get("redirectUrl")
        if url is not None and (not isinstance(url, str) or len(url) > 1024):
            return "redirectUrl: at most 1,024 characters"
        if channel in ("PUSH", "INBOX") and not url:
            return f"redirectUrl is required for {channel}"
        content = message.get("messageContent")
        if not isinstance(content, str) or len(content) > 4096:
            return "messageContent: JSON text of at most 4,096 characters"
        parsed = json.loads(content)
        if not isinstance(parsed, dict) or "title" not in parsed or "content" not in parsed:
            return "messageContent: a JSON object with title and content"
        if channel == "INBOX" and parsed.get("inbox") not in ("ewallet", "miniprogram"):
            return "messageContent of an INBOX message names its inbox"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the sandbox of the wallet's message API until killed.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free one)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="milliseconds before each reply")
    parser.add_argument("--token", help="bearer token requests must carry")
    parser.add_argument("--client-id", help="Client-Id signed requests must carry")
    parser.add_argument("--client-public-key", type=Path, help="PEM file: the partner's public key; requests must be signed with it")
    parser.add_argument("--wallet-private-key", type=Path, help="PEM file: the wallet's private key that signs replies")
    parser.add_argument("--port-file", type=Path, help="write the port here once listening")
    parser.add_argument("--no-record", action="store_true", help="count messages without keeping each id (long benchmarks)")
    args = parser.parse_args(argv)
    sandbox = SandboxGateway(
        host=args.host,
        port=args.port,
        token=args.token,
        client_id=args.client_id,
        client_public_key=args.client_public_key.read_bytes() if args.client_public_key else None,
        wallet_private_key=args.wallet_private_key.read_bytes() if args.wallet_private_key else None,
        latency=args.latency_ms / 1000,
        record=not args.no_record,
    ).start()
    if args.port_file:
        args.port_file.write_text(str(sandbox.port))
    print(f"sandbox gateway at {sandbox.url} ({dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
