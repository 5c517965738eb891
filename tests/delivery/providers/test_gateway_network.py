"""The gateway's own asyncio network layer under httpx (engine/delivery/providers/aionet.py),
against real local servers: what a plain HTTP/1.1 server does to keep-alive connections and
big replies must not cost a message an extra attempt or hang the request."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sandbox_gateway import SandboxGateway

from engine.delivery.providers import Message
from engine.delivery.providers.aionet import READ_HIGH_WATER
from engine.delivery.providers.gateway import REPLY_MAX_BYTES, Gateway, message_content
from engine.delivery.render import _json_bound

FAST = {"backoff_base": 0.001, "backoff_cap": 0.01, "timeout": 2.0}


def messages(count: int, start: int = 0) -> list[Message]:
    return [
        Message(f"t1:once:{i:06d}", "t1", "once", f"u{i:05d}", "push", "c1", f"Hi {i}", f"Body {i}", f"https://shop.example/p/{i}")
        for i in range(start, start + count)
    ]


class OneShotServer:
    """HTTP/1.1 on a raw socket: answers each connection's first request with ``reply(body)``
    (keep-alive promised), then hangs up, as servers do with idle keep-alive connections."""

    def __init__(self, reply) -> None:
        self.reply = reply
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v2/platform/message/send"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
                while len(body) < length:
                    body += conn.recv(65536)
                payload = self.reply(json.loads(body))
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                    + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                conn.shutdown(socket.SHUT_RDWR)  # then closed: the pooled connection is dead

    def close(self) -> None:
        self.sock.close()


def all_sent(request: dict, padding: int = 0) -> bytes:
    results = [{"messageId": m["messageId"], "success": True, "retry": False} for m in request["messages"]]
    words = "x" * padding
    return json.dumps({"result": {"resultStatus": "S", "resultCode": "SUCCESS", "resultMessage": words}, "messageSendResults": results}).encode()


@pytest.fixture
def one_shot() -> Iterator[OneShotServer]:
    server = OneShotServer(all_sent)
    yield server
    server.close()


def test_a_keep_alive_connection_the_server_closed_is_not_reused(one_shot: OneShotServer) -> None:
    with Gateway(one_shot.url, "t", "push", concurrency=1, **FAST) as provider:
        first = provider.send(messages(20))
        time.sleep(0.2)  # the server's hang-up arrives while the connection sits in the pool
        second = provider.send(messages(20, start=20))
    assert [d.attempts for d in first + second] == [1] * 40  # no request went down the dead connection
    assert all(d.status == "sent" for d in first + second)
    assert one_shot.connections == 2


def test_a_reply_bigger_than_the_read_buffer_is_read_whole() -> None:
    padding = 3 * READ_HIGH_WATER  # the socket is paused and resumed while the reply is read
    assert padding < REPLY_MAX_BYTES
    server = OneShotServer(lambda request: all_sent(request, padding))
    try:
        with Gateway(server.url, "t", "push", concurrency=1, **FAST) as provider:
            deliveries = provider.send(messages(20))
    finally:
        server.close()
    assert [(d.status, d.attempts) for d in deliveries] == [("sent", 1)] * 20


def test_many_requests_in_flight_over_few_connections_all_arrive_once() -> None:
    with SandboxGateway(token="t", latency=0.002) as sandbox:
        with Gateway(sandbox.url, "t", "push", concurrency=4, **FAST) as provider:
            deliveries = provider.send(messages(2000))  # 100 requests over 4 pooled connections
        assert [d.status for d in deliveries] == ["sent"] * 2000
        assert sandbox.delivered_count == 2000 and sandbox.stats.messages == 2000
        assert not sandbox.conflicts


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(st.none(), st.text()),
    st.one_of(st.none(), st.text()),
    st.one_of(st.none(), st.text(), st.lists(st.text(), max_size=4)),
    st.sampled_from(["push", "sms", "inbox-ewallet", "inbox-miniprogram"]),
)
def test_the_quick_content_length_bound_is_never_below_the_real_json(title, content, redirection, channel) -> None:
    """Render skips building ``messageContent`` when this bound is under 4,096: it must never
    let a message through that the real JSON text would put over the limit."""
    message = Message("", "", "", "", channel, "c1", title, content, redirection)
    assert len(message_content(message)) <= _json_bound(title, content, redirection)
