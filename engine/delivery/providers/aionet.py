"""A small HTTP/1.1 client on plain asyncio for the gateway: one POST at a time per connection.

Profiling ``campaigns run --once`` against the sandbox gateway at 0 ms latency put two thirds of
the executor's CPU per message in httpx and httpcore (about 1.5 ms a request): URL and header
models for every request, and a connection pool that walks every connection several times per
request (``_assign_requests_to_connections``: 660 ``is_idle`` calls a request at concurrency 32).
The gateway needs little of that: POST one JSON body to one URL and read one bounded reply. This
client does just that, about a tenth of the cost, with ``h11`` (the HTTP/1.1 state machine
httpcore itself uses) writing requests and parsing replies:

- ``Client`` keeps up to ``size`` keep-alive connections (the provider's ``concurrency``), each
  carrying one request at a time (no pipelining); an idle connection the server has hung up on
  (end of file or unexpected bytes seen by its protocol, no system call) is dropped, not reused;
- the fixed headers are encoded once; a request is one write (one system call);
- ``h11`` frames a reply (``Content-Length``, chunked transfer coding or up to the end of the
  connection, 1xx replies skipped) and says whether the connection may carry the next request;
  ``gzip``/``deflate`` are decoded here; what is read and what is decoded are both capped
  (``TooLarge``), so a huge or inflating reply never piles up in memory;
- reads pause the socket once ``READ_HIGH_WATER`` bytes wait unread.

It speaks ``http://`` only: ``https://`` gateways (TLS) and gateways behind a proxy set in the
environment go through httpx (see ``Gateway``). Deadlines are the caller's (``asyncio.timeout``
around ``post``); a connection is closed when its request is cancelled or fails.
"""

from __future__ import annotations

import asyncio
import socket
import zlib
from collections.abc import Mapping
from urllib.parse import urlsplit

import h11

READ_HIGH_WATER = 256 * 1024
"""Unread bytes at which the socket stops being read until the client catches up."""
HEAD_MAX = 64 * 1024
"""Bytes of a reply's status line and headers; more is no HTTP reply."""


class NetworkError(Exception):
    """The connection failed, or the server broke HTTP/1.1 (no answer can be trusted)."""


class DecodeError(Exception):
    """The reply's body cannot be decoded as its ``Content-Encoding`` says."""


class TooLarge(Exception):
    """The reply is over the cap; ``declared`` is its ``Content-Length`` when that said so."""

    def __init__(self, declared: int | None) -> None:
        super().__init__(declared)
        self.declared = declared


class Headers(dict):
    """A reply's headers by lower-case name; ``get`` takes any case (``Signature``, ``Retry-After``)."""

    def get(self, name: str, default: str | None = None) -> str | None:
        return dict.get(self, name.lower(), default)


class _Connection(asyncio.Protocol):
    """One TCP connection: its HTTP/1.1 state (``http``, an ``h11`` client), what arrived and is
    not parsed yet (``buffer``), whether the peer is gone (``eof``)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_MAX)
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= READ_HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- one exchange ----------------------------------------------------------------------

    @property
    def reusable(self) -> bool:
        """Idle and still open: between requests, nothing arrived since its last reply and the
        peer has not hung up."""
        return self.http.our_state is h11.IDLE and not self.eof and not self.buffer and self.transport is not None and not self.transport.is_closing()

    def send(self, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Write a POST of ``body`` to ``target`` in one system call."""
        assert self.transport is not None
        http = self.http
        try:
            request = h11.Request(method=b"POST", target=target, headers=headers)
            data = http.send(request) + http.send(h11.Data(data=body)) + http.send(h11.EndOfMessage())
        except h11.LocalProtocolError as problem:  # a header value HTTP cannot carry (as httpx reports it)
            raise NetworkError(f"the request cannot be sent ({problem})") from None
        self.transport.write(data)

    async def _event(self) -> object:
        """The next event of the reply, fed from the socket as ``h11`` needs it."""
        http = self.http
        while True:
            event = http.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self.buffer:
                data = bytes(self.buffer)
                self.buffer.clear()
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                http.receive_data(data)
            elif self.eof:
                if self.error is not None:
                    raise NetworkError(str(self.error) or type(self.error).__name__)
                http.receive_data(b"")  # the end of the connection: h11 says what it cut short
            else:
                waiter = self._waiter = asyncio.get_running_loop().create_future()
                await waiter

    async def reply(self, max_bytes: int) -> tuple[int, Headers, bytes, bool]:
        """The next reply to the request sent: status, headers, body (as sent, not decoded) and
        whether the connection may carry another request."""
        try:
            return await self._reply(max_bytes)
        except h11.RemoteProtocolError as problem:
            raise NetworkError(_broken(str(problem))) from None

    async def _reply(self, max_bytes: int) -> tuple[int, Headers, bytes, bool]:
        event = await self._event()
        while isinstance(event, h11.InformationalResponse):  # 100 Continue and friends: the real reply follows
            event = await self._event()
        if not isinstance(event, h11.Response):
            raise NetworkError("the server closed the connection without sending a reply")
        status = event.status_code
        headers = Headers()
        for raw_name, raw_value in event.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        declared = None if "transfer-encoding" in headers else headers.get("content-length")  # chunked wins, as in h11
        if declared is not None and int(declared) > max_bytes:  # h11 has checked it is one number
            raise TooLarge(int(declared))
        parts: list[bytes] = []
        size = 0
        while True:
            event = await self._event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > max_bytes:
                    raise TooLarge(None)
                parts.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise NetworkError("the server closed the connection before its reply was complete")
        http = self.http
        keep = http.our_state is h11.DONE and http.their_state is h11.DONE
        if keep:
            http.start_next_cycle()
        return status, headers, b"".join(parts), keep

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


_SAID = (
    ("illegal status line", "not an HTTP/1.x reply"),
    ("no response line received", "not an HTTP/1.x reply"),
    ("illegal header line", "a reply header line that is not HTTP"),
    ("illegal chunk header", "a chunk size that is not hexadecimal"),
    ("malformed chunk footer", "a chunk of the reply does not end with CRLF"),
    ("bad Content-Length", "a Content-Length that is not a number"),
    ("Receive buffer too long", f"the reply's head is over {HEAD_MAX:,} bytes"),
    ("peer unexpectedly closed connection", "the server closed the connection before its reply was complete"),
    ("can't handle event type ConnectionClosed", "the server closed the connection without sending a reply"),
)
"""h11's words for a broken reply, and ours (what the gateway's errors have always said)."""


def _broken(problem: str) -> str:
    for prefix, said in _SAID:
        if problem.startswith(prefix):
            rest = problem[len(prefix) :]
            return said + rest[:100] if rest.startswith(":") else said  # h11 quotes the line whole
    return problem


def decode(body: bytes, encoding: str, max_bytes: int) -> bytes:
    """``body`` decoded as ``Content-Encoding`` ``encoding`` (gzip, deflate, identity), at most
    ``max_bytes`` of it (``TooLarge`` beyond); ``DecodeError`` when it is not what it says."""
    codings = [coding.strip() for coding in encoding.lower().split(",") if coding.strip() and coding.strip() != "identity"]
    for coding in reversed(codings):
        if coding in ("gzip", "x-gzip"):
            decoders = [zlib.decompressobj(16 + zlib.MAX_WBITS)]
        elif coding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send it
            decoders = [zlib.decompressobj(), zlib.decompressobj(-zlib.MAX_WBITS)]
        else:
            raise DecodeError(f"unsupported Content-Encoding {coding!r}")
        for number, decoder in enumerate(decoders):
            try:
                decoded = decoder.decompress(body, max_bytes + 1)
            except zlib.error as problem:
                if number + 1 < len(decoders):
                    continue
                raise DecodeError(f"the reply is not valid {coding} ({problem})") from None
            break
        if len(decoded) > max_bytes or decoder.unconsumed_tail:
            raise TooLarge(None)
        body = decoded
    return body


class Client:
    """POSTs to one ``http://`` URL over up to ``size`` keep-alive connections.

    ``headers`` go with every request; ``post`` adds the per-request ones (signatures). Create
    and use it on one event loop."""

    def __init__(self, url: str, size: int, headers: Mapping[str, str]) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() != "http" or not parts.hostname:
            raise ValueError(f"the plain-asyncio client speaks http:// only, not {url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        fixed = {"Host": host, "Accept": "*/*", "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive", **headers}
        self._target = target.encode("latin-1")
        self._headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in fixed.items()]
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(size)
        self._open: set[_Connection] = set()

    async def post(self, body: bytes, headers: Mapping[str, str] | None, max_bytes: int) -> tuple[int, Headers, bytes]:
        """Status, headers and decoded body of the reply to one POST of ``body``.

        Raises ``NetworkError`` (connection refused, lost, not HTTP), ``TooLarge`` (over
        ``max_bytes``, as sent or as decoded) or ``DecodeError``."""
        fields = [*self._headers, *((name.encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items())]
        fields.append((b"Content-Length", str(len(body)).encode("ascii")))
        async with self._slots:
            connection = await self._connection()
            keep = False
            try:
                connection.send(self._target, fields, body)
                status, reply_headers, raw, keep = await connection.reply(max_bytes)
            finally:
                if keep and connection.reusable:
                    self._idle.append(connection)
                else:
                    self._open.discard(connection)
                    connection.close()
        encoding = reply_headers.get("content-encoding")
        if encoding:
            raw = decode(raw, encoding, max_bytes)
        return status, reply_headers, raw

    async def _connection(self) -> _Connection:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if connection.reusable:
                return connection
            self._open.discard(connection)
            connection.close()
        loop = asyncio.get_running_loop()
        try:
            transport, connection = await loop.create_connection(_Connection, self._host, self._port)
        except OSError as problem:
            raise NetworkError(str(problem) or type(problem).__name__) from None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._open.add(connection)
        return connection

    async def aclose(self) -> None:
        for connection in self._open:
            connection.close()
        self._open.clear()
        self._idle.clear()
