"""The gateway provider against a real local HTTP server (pytest-httpserver), no mock transport."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from engine.config.models import Platform
from engine.delivery.providers import Message, open_provider
from engine.delivery.providers.gateway import CONTENT_MAX, Gateway

TOKEN = "s3cret-token"
FAST = {"backoff_base": 0.001, "backoff_cap": 0.01}

Reply = Callable[[list[dict]], Response]


class FakeGateway:
    """A gateway whose answers each test scripts; it records every request it receives."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.requests: list[dict] = []  # {"headers": ..., "messages": [...]} in arrival order
        self._lock = threading.Lock()
        self.reply: Reply = self.all_sent
        server.expect_request("/send", method="POST").respond_with_handler(self._handle)
        self.url = server.url_for("/send")

    def _handle(self, request: Request) -> Response:
        messages = json.loads(request.get_data())["messages"]
        with self._lock:
            self.requests.append({"headers": dict(request.headers), "messages": messages})
        return self.reply(messages)

    @staticmethod
    def results(rows: list[dict]) -> Response:
        return Response(json.dumps({"result": {"resultStatus": "S", "resultCode": "SUCCESS"}, "messageSendResults": rows}), content_type="application/json")

    @classmethod
    def all_sent(cls, messages: list[dict]) -> Response:
        return cls.results([{"messageId": m["messageId"], "success": True, "retry": False} for m in messages])

    def ids_per_request(self) -> list[list[str]]:
        return [[m["messageId"] for m in r["messages"]] for r in self.requests]


@pytest.fixture(scope="module")
def http_server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)  # threaded: a slow answer blocks no retry
    server.start()
    yield server
    server.stop()


@pytest.fixture
def gateway(http_server: HTTPServer) -> Iterator[FakeGateway]:
    http_server.clear()
    yield FakeGateway(http_server)
    http_server.clear()


def make_messages(count: int, channel: str = "push", prefix: str = "t1:2026-12-01") -> list[Message]:
    return [
        Message(
            message_id=f"{prefix}:{i:06d}",
            task="flash-sale",
            occurrence="2026-12-01",
            user_id=f"u-{i}",
            channel=channel,
            creative="flash-a",
            title=f"Hi user {i}",
            content="Ñoño, 50% off today",
            redirection="https://shop.example/flash" if i % 2 else ["gcash://shop", "https://shop.example"],
        )
        for i in range(count)
    ]


def open_gateway(url: str, channel: str = "push", **kwargs) -> Gateway:
    options = {"timeout": 2.0, "max_attempts": 5, **FAST, **kwargs}
    return Gateway(url, TOKEN, channel, **options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the request ----------------------------------------------------------------------------


def test_batches_of_at_most_twenty_with_bearer_token_and_spec_shape(gateway: FakeGateway) -> None:
    messages = make_messages(45)
    with open_gateway(gateway.url) as provider:
        deliveries = provider.send(messages)

    assert sorted(len(ids) for ids in gateway.ids_per_request()) == [5, 20, 20]  # in flight together, any order
    assert [d.message_id for d in deliveries] == [m.message_id for m in messages]
    assert all(d.status == "sent" and d.attempts == 1 and d.error is None for d in deliveries)
    posted = sorted((m for request in gateway.requests for m in request["messages"]), key=lambda m: m["messageId"])
    assert [m["messageId"] for m in posted] == [m.message_id for m in messages]
    for request in gateway.requests:
        assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
        assert request["headers"]["Content-Type"].startswith("application/json")
    for sent, message in zip(posted, messages):
        assert set(sent) == {"messageId", "customerId", "messageChannel", "redirectUrl", "messageContent"}
        assert sent["customerId"] == message.user_id
        assert sent["messageChannel"] == "PUSH"
        urls = message.redirection if isinstance(message.redirection, list) else [message.redirection]
        assert sent["redirectUrl"] == urls[0]  # top level, not inside messageContent
        assert isinstance(sent["messageContent"], str)
        content = json.loads(sent["messageContent"])
        expected = {"title": message.title, "content": message.content}
        if len(urls) > 1:
            expected["redirections"] = urls
        assert content == expected


def test_batch_size_and_token_come_from_platform_yaml(gateway: FakeGateway, tmp_path: Path) -> None:
    platform = Platform.model_validate(
        {
            "sites": {"ph": {"name": "PH", "timezone": "Asia/Manila", "channels": ["sms"]}},
            "providers": {"sms": {"type": "gateway", "url": gateway.url, "token_env": "SMS_TOKEN", "batch_size": 7}},
        }
    )
    provider = open_provider("sms", platform, tmp_path, env={"SMS_TOKEN": "from-env"})
    try:
        deliveries = provider.send(make_messages(16, channel="sms"))
    finally:
        provider.close()
    # (requests after the first are in flight together: the order they arrive in is the server's)
    assert sorted((len(ids) for ids in gateway.ids_per_request()), reverse=True) == [7, 7, 2]
    assert {r["headers"]["Authorization"] for r in gateway.requests} == {"Bearer from-env"}
    assert {m["messageChannel"] for r in gateway.requests for m in r["messages"]} == {"SMS"}
    assert all(d.status == "sent" for d in deliveries)


@pytest.mark.parametrize(
    ("channel", "gateway_channel", "inbox"),
    [
        ("push", "PUSH", None),
        ("sms", "SMS", None),
        ("inbox-ewallet", "INBOX", "ewallet"),
        ("inbox-miniprogram", "INBOX", "miniprogram"),
    ],
)
def test_channel_mapping_and_inbox_in_content(
    gateway: FakeGateway, channel: str, gateway_channel: str, inbox: str | None
) -> None:
    with open_gateway(gateway.url, channel=channel) as provider:
        [delivery] = provider.send(make_messages(1, channel=channel))
    assert delivery.status == "sent"
    [[posted]] = [r["messages"] for r in gateway.requests]
    assert posted["messageChannel"] == gateway_channel
    content = json.loads(posted["messageContent"])
    assert content.get("inbox") == inbox
    assert ("inbox" in content) == (inbox is not None)


def test_content_over_4096_characters_is_failed_and_never_posted(gateway: FakeGateway) -> None:
    ok, too_long = make_messages(2)
    too_long = Message(**{**{f: getattr(too_long, f) for f in too_long.__slots__}, "content": "é" * CONTENT_MAX})
    with open_gateway(gateway.url) as provider:
        first, second = provider.send([ok, too_long])
    assert first.status == "sent"
    assert second.status == "failed" and second.attempts == 0
    assert "4096" in second.error
    assert gateway.ids_per_request() == [[ok.message_id]]


def test_content_limit_counts_characters_not_bytes(gateway: FakeGateway) -> None:
    """Non-ASCII text is sent as itself, so 4,000 accented letters still fit."""
    [message] = make_messages(1)
    message = Message(**{**{f: getattr(message, f) for f in message.__slots__}, "content": "ñ" * 4000})
    with open_gateway(gateway.url) as provider:
        [delivery] = provider.send([message])
    assert delivery.status == "sent"
    assert json.loads(gateway.requests[0]["messages"][0]["messageContent"])["content"] == "ñ" * 4000


def test_any_text_is_sent_without_raising(gateway: FakeGateway) -> None:
    [message] = make_messages(1)
    odd = "emoji \U0001f389, quote \", lone surrogate \udc80, newline \n"
    message = Message(**{**{f: getattr(message, f) for f in message.__slots__}, "title": odd})
    with open_gateway(gateway.url) as provider:
        [delivery] = provider.send([message])
    assert delivery.status == "sent"
    assert json.loads(gateway.requests[0]["messages"][0]["messageContent"])["title"] == odd


# --- whole-request failures --------------------------------------------------------------------


def test_500_twice_then_200_delivers_everything_with_the_same_ids(gateway: FakeGateway) -> None:
    calls = {"n": 0}

    def flaky(messages: list[dict]) -> Response:
        calls["n"] += 1
        if calls["n"] <= 2:
            return Response("upstream down", status=500)
        return FakeGateway.all_sent(messages)

    gateway.reply = flaky
    messages = make_messages(30)
    with open_gateway(gateway.url, concurrency=1) as provider:  # one request at a time: a fixed order
        deliveries = provider.send(messages)

    assert [d.status for d in deliveries] == ["sent"] * 30
    ids = gateway.ids_per_request()
    batches = [[m.message_id for m in messages[:20]], [m.message_id for m in messages[20:]]]
    assert all(request in batches for request in ids)  # a failed request is retried whole, with the same ids
    assert len(ids) == 4  # two 500s, then each batch once
    assert sum(d.attempts for d in deliveries) == sum(len(request) for request in ids)


def test_429_is_retried_and_retry_after_is_honoured(gateway: FakeGateway) -> None:
    calls = {"n": 0}

    def limited(messages: list[dict]) -> Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return Response("slow down", status=429, headers={"Retry-After": "0.3"})
        return FakeGateway.all_sent(messages)

    gateway.reply = limited
    slept: list[float] = []
    with open_gateway(gateway.url, sleep=slept.append) as provider:
        deliveries = provider.send(make_messages(3))
    assert all(d.status == "sent" and d.attempts == 2 for d in deliveries)
    assert slept == [0.01]  # Retry-After 0.3 s, bounded by the 0.01 s cap of FAST


def test_other_4xx_fails_the_request_at_once_with_the_status(gateway: FakeGateway) -> None:
    gateway.reply = lambda messages: Response('{"error": "bad token"}', status=401)
    with open_gateway(gateway.url) as provider:
        deliveries = provider.send(make_messages(3))
    assert len(gateway.requests) == 1
    assert all(d.status == "failed" and d.attempts == 1 for d in deliveries)
    assert all("HTTP 401" in d.error and "bad token" in d.error for d in deliveries)


def test_unreadable_reply_is_retried(gateway: FakeGateway) -> None:
    calls = {"n": 0}

    def garbled(messages: list[dict]) -> Response:
        calls["n"] += 1
        return Response("<html>oops</html>", status=200) if calls["n"] == 1 else FakeGateway.all_sent(messages)

    gateway.reply = garbled
    with open_gateway(gateway.url) as provider:
        deliveries = provider.send(make_messages(2))
    assert [d.status for d in deliveries] == ["sent", "sent"]
    assert gateway.ids_per_request()[0] == gateway.ids_per_request()[1]


def test_slow_gateway_times_out_is_retried_and_then_succeeds(gateway: FakeGateway) -> None:
    calls = {"n": 0}

    def slow_once(messages: list[dict]) -> Response:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(1.5)
        return FakeGateway.all_sent(messages)

    gateway.reply = slow_once
    messages = make_messages(5)
    started = time.monotonic()
    with open_gateway(gateway.url, timeout=0.3) as provider:
        deliveries = provider.send(messages)
    assert time.monotonic() - started < 1.4  # the client gave up on the slow answer
    assert all(d.status == "sent" and d.attempts == 2 for d in deliveries)
    deadline = time.monotonic() + 3
    while len(gateway.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gateway.ids_per_request() == [[m.message_id for m in messages]] * 2


def test_slow_gateway_every_time_fails_with_a_timeout_error(gateway: FakeGateway) -> None:
    def always_slow(messages: list[dict]) -> Response:
        time.sleep(0.6)
        return FakeGateway.all_sent(messages)

    gateway.reply = always_slow
    with open_gateway(gateway.url, timeout=0.2, max_attempts=2) as provider:
        deliveries = provider.send(make_messages(2))
    assert all(d.status == "failed" and d.attempts == 2 for d in deliveries)
    assert all("within 0.2 s" in d.error and "gave up after 2 attempts" in d.error for d in deliveries)


def test_connection_refused_is_retried_then_failed_with_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/send"
    slept: list[float] = []
    with open_gateway(url, max_attempts=3, sleep=slept.append, concurrency=1) as provider:
        deliveries = provider.send(make_messages(25))
    assert all(d.status == "failed" and d.reason == "provider-unavailable" for d in deliveries)
    assert all(f"cannot reach the gateway {url}" in d.error for d in deliveries)
    # Each request retries on its own (its backoff holds no slot), three tries at most; once one
    # has given up, the other stops after its current try or is held back unposted.
    assert [d.attempts for d in deliveries[:20]] == [3] * 20
    assert all("gave up after 3 attempts" in d.error for d in deliveries[:20])
    second = {d.attempts for d in deliveries[20:]}
    assert len(second) == 1 and second <= {0, 1, 2, 3}
    assert len(slept) <= 4  # two waits per request at most


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    url = f"http://127.0.0.1:{free_port()}/send"
    slept: list[float] = []
    provider = Gateway(url, TOKEN, "push", max_attempts=8, backoff_base=1.0, backoff_cap=10.0, sleep=slept.append)
    with provider:
        provider.send(make_messages(1))
    ceilings = [1, 2, 4, 8, 10, 10, 10]
    assert len(slept) == len(ceilings)
    assert all(c / 2 <= s <= c for s, c in zip(slept, ceilings))
    assert len(set(slept)) > 1


# --- per-message verdicts -------------------------------------------------------------------


def test_retry_false_is_failed_at_once_and_others_are_sent(gateway: FakeGateway) -> None:
    def refuse_even(messages: list[dict]) -> Response:
        return FakeGateway.results(
            [
                {"messageId": m["messageId"], "success": int(m["messageId"][-1]) % 2 == 1, "retry": False}
                | ({} if int(m["messageId"][-1]) % 2 else {"error": "unknown customer"})
                for m in messages
            ]
        )

    gateway.reply = refuse_even
    messages = make_messages(10)
    with open_gateway(gateway.url) as provider:
        deliveries = provider.send(messages)
    assert len(gateway.requests) == 1
    for message, delivery in zip(messages, deliveries):
        refused = int(message.message_id[-1]) % 2 == 0
        assert delivery.status == ("failed" if refused else "sent")
        assert delivery.attempts == 1
        if refused:
            assert "retry=false" in delivery.error and "unknown customer" in delivery.error
        else:
            assert delivery.error is None


def test_retry_true_is_retried_until_sent(gateway: FakeGateway) -> None:
    seen: dict[str, int] = {}

    def busy_twice(messages: list[dict]) -> Response:
        rows = []
        for m in messages:
            seen[m["messageId"]] = seen.get(m["messageId"], 0) + 1
            rows.append({"messageId": m["messageId"], "success": seen[m["messageId"]] >= 3, "retry": True})
        return FakeGateway.results(rows)

    gateway.reply = busy_twice
    with open_gateway(gateway.url) as provider:
        deliveries = provider.send(make_messages(4))
    assert all(d.status == "sent" and d.attempts == 3 for d in deliveries)


def test_retry_true_forever_is_failed_after_max_attempts(gateway: FakeGateway) -> None:
    gateway.reply = lambda messages: FakeGateway.results(
        [{"messageId": m["messageId"], "success": False, "retry": True} for m in messages]
    )
    messages = make_messages(3)
    with open_gateway(gateway.url, max_attempts=4) as provider:
        deliveries = provider.send(messages)
    assert gateway.ids_per_request() == [[m.message_id for m in messages]] * 4
    assert all(d.status == "failed" and d.attempts == 4 for d in deliveries)
    assert all("gave up after 4 attempts" in d.error for d in deliveries)


def test_message_missing_from_the_reply_is_retried(gateway: FakeGateway) -> None:
    calls = {"n": 0}

    def forgetful(messages: list[dict]) -> Response:
        calls["n"] += 1
        shown = messages[1:] if calls["n"] == 1 else messages
        return FakeGateway.all_sent(shown)

    gateway.reply = forgetful
    messages = make_messages(3)
    with open_gateway(gateway.url) as provider:
        deliveries = provider.send(messages)
    assert [d.status for d in deliveries] == ["sent"] * 3
    assert [d.attempts for d in deliveries] == [2, 1, 1]
    assert gateway.ids_per_request()[1] == [messages[0].message_id]


def test_message_for_another_channel_is_refused(gateway: FakeGateway) -> None:
    with open_gateway(gateway.url, channel="push") as provider:
        [delivery] = provider.send(make_messages(1, channel="sms"))
    assert delivery.status == "failed" and "sms" in delivery.error
    assert gateway.requests == []


def test_connection_is_pooled_across_requests() -> None:
    """Werkzeug's test server closes every connection, so a keep-alive stdlib server checks reuse."""
    peers: list[tuple[str, int]] = []

    class KeepAlive(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            peers.append(self.client_address)
            messages = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["messages"]
            rows = [{"messageId": m["messageId"], "success": True, "retry": False} for m in messages]
            body = json.dumps({"result": {"resultStatus": "S", "resultCode": "SUCCESS"}, "messageSendResults": rows}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        with open_gateway(f"http://127.0.0.1:{server.server_address[1]}/send", concurrency=1) as provider:
            deliveries = provider.send(make_messages(60))
    finally:
        server.shutdown()
        server.server_close()
    assert all(d.status == "sent" for d in deliveries)
    assert len(peers) == 3
    assert len(set(peers)) == 1  # one TCP connection carried all three requests
