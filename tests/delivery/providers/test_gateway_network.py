"""The gateway's own HTTP/1.1 client on asyncio (engine/delivery/providers/aionet.py), against
real local servers: what a plain HTTP/1.1 server does to keep-alive connections, big replies and
the ways a reply's body can be framed and encoded must not cost a message an extra attempt, lose
a result or hang the request."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sandbox_gateway import SandboxGateway

from engine.delivery.providers import Message
from engine.delivery.providers.aionet import READ_HIGH_WATER
from engine.delivery.providers.gateway import REPLY_MAX_BYTES, Gateway, message_content, plain_http
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

    def __init__(self, reply, frame=None, piece: int | None = None) -> None:
        self.reply = reply
        self.frame = frame or keep_alive_with_length  # the reply's bytes on the wire, head included
        self.piece = piece  # the reply is written in sends of this many bytes (all at once: None)
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
                data = self.frame(self.reply(json.loads(body)))
                step = self.piece or max(len(data), 1)
                try:
                    for start in range(0, len(data), step):
                        conn.sendall(data[start : start + step])
                    conn.shutdown(socket.SHUT_RDWR)  # then closed: the pooled connection is dead
                except OSError:  # the client gave up on a broken reply and hung up first
                    pass

    def close(self) -> None:
        self.sock.close()


def keep_alive_with_length(payload: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )


def chunked(payload: bytes) -> bytes:
    """Chunked transfer coding in pieces of 7 bytes, a chunk extension and a trailer."""
    pieces = [payload[start : start + 7] for start in range(0, len(payload), 7)]
    body = b"".join(f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n" for piece in pieces)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\nX-Trailer: yes\r\n\r\n"


def until_close(payload: bytes) -> bytes:
    """HTTP/1.0 style: no length, the body ends when the server hangs up."""
    return b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + payload


def continue_first(payload: bytes) -> bytes:
    return b"HTTP/1.1 100 Continue\r\n\r\n" + keep_alive_with_length(payload)


def encoded(coding: str, compress):
    def frame(payload: bytes) -> bytes:
        data = compress(payload)
        return f"HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data

    return frame


def raw_deflate(payload: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(payload) + packer.flush()


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


@pytest.mark.parametrize(
    "frame",
    [chunked, until_close, continue_first, encoded("gzip", gzip.compress), encoded("deflate", zlib.compress), encoded("deflate", raw_deflate)],
    ids=["chunked", "until-close", "100-continue", "gzip", "deflate", "raw-deflate"],
)
def test_every_framing_and_encoding_of_a_reply_is_read_whole(frame) -> None:
    server = OneShotServer(lambda request: all_sent(request, padding=1000), frame)
    try:
        with Gateway(server.url, "t", "push", concurrency=1, **FAST) as provider:
            first = provider.send(messages(20))
            second = provider.send(messages(20, start=20))  # over a new connection: the first one was closed
    finally:
        server.close()
    assert [(d.status, d.attempts) for d in first + second] == [("sent", 1)] * 40
    assert server.connections == 2


@pytest.mark.parametrize(
    "frame,error",
    [
        (lambda payload: b"HTTP/1.1 200 OK\r\nContent-Length: 9999\r\n\r\n" + payload, "cannot reach the gateway"),
        (lambda payload: b"SMTP ready\r\n\r\n", "not an HTTP/1.x reply"),
        (lambda payload: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size that is not hexadecimal"),
        (encoded("br", lambda payload: payload), "unreadable reply (unsupported Content-Encoding 'br')"),
    ],
    ids=["cut-short", "not-http", "bad-chunk", "unknown-encoding"],
)
def test_a_reply_that_breaks_http_is_an_unknown_result_never_sent(frame, error) -> None:
    server = OneShotServer(all_sent, frame)
    try:
        with Gateway(server.url, "t", "push", concurrency=1, max_attempts=2, **FAST) as provider:
            deliveries = provider.send(messages(20))
    finally:
        server.close()
    assert all(d.status == "failed" and d.reason == "provider-unavailable" and d.attempts == 2 for d in deliveries)
    assert all(error in d.error for d in deliveries)


def test_https_and_proxied_gateways_go_through_httpx_plain_http_through_the_own_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    assert plain_http("http://gw.example:8080/v2/platform/message/send")
    assert not plain_http("https://gw.example/v2/platform/message/send")
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "direct.example")
    assert not plain_http("http://gw.example/v2/platform/message/send")
    assert plain_http("http://direct.example/v2/platform/message/send")


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


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda head, body: head + b"\r\n\r\n" + body,
            st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", b"HTTP/1.1 200 OK\r\nContent-Length: 5", b"HTTP/1.0 100 Continue", b"HTTP/1.1 20"]),
            st.binary(max_size=100),
        ),
    ),
    st.integers(min_value=1, max_value=50),
)
def test_any_bytes_from_the_server_are_a_reply_or_a_network_error_never_a_crash_or_a_hang(data: bytes, piece: int) -> None:
    """The reply reader meets whatever a hostile or broken server sends, in any split, then the
    end of the connection: a reply within the cap, or one of its own errors."""
    import asyncio

    from engine.delivery.providers import aionet

    server = OneShotServer(lambda request: b"", lambda _payload: data, piece=piece)

    async def read() -> None:
        client = aionet.Client(server.url, 1, {})
        try:
            async with asyncio.timeout(2):
                status, headers, body = await client.post(b"{}", None, 64)
        except (aionet.NetworkError, aionet.TooLarge, aionet.DecodeError):
            return
        finally:
            await client.aclose()
        assert 200 <= status <= 999 and len(body) <= 64 and isinstance(headers, dict)

    try:
        asyncio.run(read())
    finally:
        server.close()
