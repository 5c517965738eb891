"""A small HTTP/1.1 client on plain asyncio for the gateway: one POST at a time per connection.

Profiling ``campaigns run --once`` against the sandbox gateway at 0 ms latency put two thirds of
the executor's CPU per message in httpx and httpcore (about 1.5 ms a request): URL and header
models for every request, and a connection pool that walks every connection several times per
request (``_assign_requests_to_connections``: 660 ``is_idle`` calls a request at concurrency 32).
The gateway needs little of that: POST one JSON body to one URL and read one bounded reply. This
client does just that, about a tenth of the cost:

- ``Client`` keeps up to ``size`` keep-alive connections (the provider's ``concurrency``), each
  carrying one request at a time (no pipelining); an idle connection the server has hung up on
  (end of file or unexpected bytes seen by its protocol, no system call) is dropped, not reused;
- the request line and the fixed headers are built once; a request is one write (one system call);
- a reply is read with ``Content-Length``, chunked transfer coding or up to the end of the
  connection, 1xx replies skipped, and ``gzip``/``deflate`` decoded; what is read and what is
  decoded are both capped (``TooLarge``), so a huge or inflating reply never piles up in memory;
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
    """One TCP connection: what arrived (``buffer``), whether the peer is gone (``eof``)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
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

    # --- reading ---------------------------------------------------------------------------

    @property
    def reusable(self) -> bool:
        """Idle and still open: nothing arrived since its last reply and the peer has not hung up."""
        return not self.eof and not self.buffer and self.transport is not None and not self.transport.is_closing()

    async def _more(self) -> None:
        """Wait for more bytes; ``NetworkError`` when the peer hung up instead."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        if self.eof:
            raise NetworkError(_lost(self.error))
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        await waiter
        if not self.buffer and self.eof:
            raise NetworkError(_lost(self.error))

    def _take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def _line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = self._take(end)
                del self.buffer[:2]
                return line
            if len(self.buffer) > HEAD_MAX:
                raise NetworkError("a chunk line of the reply is too long")
            await self._more()

    async def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._more()
        return self._take(size)

    async def reply(self, max_bytes: int) -> tuple[int, Headers, bytes, bool]:
        """The next reply: status, headers, body (as sent, not decoded) and whether the
        connection may carry another request."""
        while True:
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end >= 0:
                    break
                if len(self.buffer) > HEAD_MAX:
                    raise NetworkError(f"the reply's head is over {HEAD_MAX:,} bytes")
                if self.eof and not self.buffer:
                    raise NetworkError("the server closed the connection without sending a reply")
                await self._more()
            head = self._take(end).decode("latin-1")
            del self.buffer[:4]
            lines = head.split("\r\n")
            status_line = lines[0].split(" ", 2)
            if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not _number(status_line[1]) or len(status_line[1]) != 3:
                raise NetworkError(f"not an HTTP/1.x reply: {lines[0][:80]!r}")
            status = int(status_line[1])
            headers = Headers()
            for line in lines[1:]:
                name, colon, value = line.partition(":")
                if not colon:
                    raise NetworkError(f"a reply header line without a colon: {line[:80]!r}")
                key = name.strip().lower()
                value = value.strip()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            if 100 <= status < 200:  # 100 Continue and friends: the real reply follows
                continue
            break
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection and (status_line[0] != "HTTP/1.0" or "keep-alive" in connection)
        if status in (204, 304):
            return status, headers, b"", keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            size = 0
            while True:
                line = await self._line()
                try:
                    length = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    length = -1
                if length < 0:
                    raise NetworkError(f"a chunk size that is not hexadecimal: {line[:40]!r}")
                if length == 0:
                    while await self._line():  # trailers, up to the empty line
                        pass
                    return status, headers, b"".join(parts), keep
                size += length
                if size > max_bytes:
                    raise TooLarge(None)
                parts.append(await self._exactly(length))
                if await self._exactly(2) != b"\r\n":
                    raise NetworkError("a chunk of the reply does not end with CRLF")
        declared = headers.get("content-length")
        if declared is not None:
            if not _number(declared):
                raise NetworkError(f"a Content-Length that is not a number: {declared[:40]!r}")
            length = int(declared)
            if length > max_bytes:
                raise TooLarge(length)
            return status, headers, await self._exactly(length), keep
        while not self.eof:  # no length: the body ends with the connection
            if len(self.buffer) > max_bytes:
                raise TooLarge(None)
            try:
                await self._more()
            except NetworkError:
                break
        if len(self.buffer) > max_bytes:
            raise TooLarge(None)
        return status, headers, self._take(len(self.buffer)), False

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _number(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also takes superscripts, which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def _lost(error: BaseException | None) -> str:
    if error is not None:
        return str(error) or type(error).__name__
    return "the server closed the connection before its reply was complete"


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
        self._head = (f"POST {target} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in fixed.items())).encode("latin-1")
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(size)
        self._open: set[_Connection] = set()

    async def post(self, body: bytes, headers: Mapping[str, str] | None, max_bytes: int) -> tuple[int, Headers, bytes]:
        """Status, headers and decoded body of the reply to one POST of ``body``.

        Raises ``NetworkError`` (connection refused, lost, not HTTP), ``TooLarge`` (over
        ``max_bytes``, as sent or as decoded) or ``DecodeError``."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items()) if headers else ""
        request = self._head + f"{extra}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body
        async with self._slots:
            connection = await self._connection()
            keep = False
            try:
                assert connection.transport is not None
                connection.transport.write(request)
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
