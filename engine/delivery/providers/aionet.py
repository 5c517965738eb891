"""A plain-asyncio network backend for httpcore, so the gateway's httpx client skips anyio.

httpx's ``AsyncClient`` runs httpcore over anyio. Profiling ``campaigns run --once`` against
the sandbox gateway at 0 ms latency put a third of the gateway thread's CPU in that layer: anyio's
typed-attribute lookups for every ``is_readable`` check of every pooled connection on every
request, and its socket wrappers on each read and write. This backend implements httpcore's
``AsyncNetworkBackend`` with an ``asyncio.Protocol``: reads and writes go straight to the
transport, and ``is_readable`` (httpcore's "did the server hang up on this idle connection")
is the protocol's own buffer and end-of-file flag, no system call.

Everything above it is still httpx and httpcore (HTTP/1.1 parsing with h11, the connection pool,
timeouts mapped to httpx's exceptions). Reads pause the socket once ``READ_HIGH_WATER`` bytes
wait unread, so a huge reply never piles up in memory faster than it is consumed. It is used
for ``http://`` gateways; ``https://`` ones keep httpcore's own backend (TLS there).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

READ_HIGH_WATER = 256 * 1024
"""Unread bytes at which the socket stops being read until the client catches up."""


class _Stream(asyncio.Protocol):
    """One TCP connection: what arrived (``_buffer``), whether the peer is gone (``_eof``)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._unsent: list[bytes] = []  # written, not yet handed to the socket (see ``write``)
        self._unsent_size = 0

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= READ_HIGH_WATER and not self._paused_reading and self._transport is not None:
            self._paused_reading = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self._eof = True
        self._error = exc
        self._wake()
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- httpcore.AsyncNetworkStream ---------------------------------------------------------

    def _flush(self) -> None:
        """Hand what was written to the socket in one call (one system call, one TCP segment)."""
        if not self._unsent:
            return
        data = self._unsent[0] if len(self._unsent) == 1 else b"".join(self._unsent)
        self._unsent.clear()
        self._unsent_size = 0
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._flush()
        if not self._buffer and not self._eof:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            except TimeoutError:
                raise httpcore.ReadTimeout(f"no data within {timeout} s") from None
        if self._buffer:
            if len(self._buffer) <= max_bytes:
                data = bytes(self._buffer)
                self._buffer.clear()
            else:
                data = bytes(self._buffer[:max_bytes])
                del self._buffer[:max_bytes]
            if self._paused_reading and len(self._buffer) < READ_HIGH_WATER // 2 and self._transport is not None:
                self._paused_reading = False
                self._transport.resume_reading()
            return data
        if self._error is not None:
            raise httpcore.ReadError(str(self._error) or type(self._error).__name__)
        return b""  # the peer closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Queue ``buffer``; it goes out when this task next waits (a read, or the loop's next
        turn). h11 writes a request's head and body separately: sent together they cost one
        system call instead of two, about a tenth of the client's CPU per request."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise httpcore.WriteError(str(self._error) if self._error else "the connection is closed")
        if not buffer:
            return
        if not self._unsent:
            asyncio.get_running_loop().call_soon(self._flush)
        self._unsent.append(buffer)
        self._unsent_size += len(buffer)
        if self._unsent_size < READ_HIGH_WATER:
            return
        self._flush()
        drain = self._drain
        if drain is not None:
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(drain)
            except TimeoutError:
                raise httpcore.WriteTimeout(f"could not send within {timeout} s") from None
            if self._error is not None:
                raise httpcore.WriteError(str(self._error))

    async def aclose(self) -> None:
        self._flush()
        if self._transport is not None:
            self._transport.close()

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the plain-asyncio backend does not do TLS")  # https uses httpcore's backend

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return bool(self._buffer) or self._eof
        transport = self._transport
        if transport is None:
            return None
        if info == "socket":
            return transport.get_extra_info("socket")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        return None  # ssl_object and the rest: no TLS here


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend over ``loop.create_connection`` (see the module doc)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, stream = await loop.create_connection(
                    _Stream, host, port, local_addr=(local_address, 0) if local_address else None
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection to {host}:{port} within {timeout} s") from None
        except OSError as problem:
            raise httpcore.ConnectError(str(problem) or type(problem).__name__) from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return stream

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the plain-asyncio backend does not do unix sockets")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def transport(url: str, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport for ``url`` with ``limits``: over ``AsyncioBackend`` for ``http://``,
    httpcore's own backend (anyio, TLS) otherwise."""
    made = httpx.AsyncHTTPTransport(limits=limits)
    if not url.lower().startswith("http://") or not isinstance(getattr(made, "_pool", None), httpcore.AsyncConnectionPool):
        return made
    made._pool = httpcore.AsyncConnectionPool(
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        network_backend=AsyncioBackend(),
    )
    return made
