"""The HTTP transport behind each connection's httpx.AsyncClient.

httpx's default transport (httpcore) re-examines every pooled connection for
every idle one each time a request starts or ends, O(connections^2) work per
request, and its h11 state machine plus anyio socket wrappers add about half
a millisecond of CPU per request on a small machine. Model calls are always
the same shape (a POST of JSON, a reply with Content-Length or a chunked SSE
stream), so this transport speaks exactly that much HTTP/1.1 over asyncio
streams, with a keep-alive pool per origin. Measured by bench/llm_overhead.py.

The client stays an httpx.AsyncClient: requests, responses, headers, timeouts
and exceptions (httpx.ConnectError, ReadTimeout, RemoteProtocolError, ...)
are httpx's, so callers cannot tell the difference. It needs the asyncio
event loop, which is anyio's default; ConnectionManager falls back to the
stock transport elsewhere.

A request is sent at most once. A pooled connection is checked before it is
written to (closed by the server, unexpected bytes waiting, idle too long):
such a connection is dropped and another taken, since nothing was sent on it.
Once the request has been written, any failure is the caller's to handle: a
POST the provider may have received is never re-sent here (RFC 9110 9.2.2).
Replies that break HTTP/1.1 framing raise MalformedReply; bodies are read in
pieces of at most _PIECE bytes, so a caller capping a body never has more
than that in memory beyond its cap.
"""

from __future__ import annotations

import asyncio
import re
import select
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

_MAX_HEAD = 64 * 1024
_PIECE = 64 * 1024
# An idle pooled connection older than this is not reused: servers close
# idle keep-alive connections (uvicorn after 5 s), and a request written just
# as the server closes could not be told apart from one it received.
_IDLE_LIMIT = 4.0
_DIGITS = re.compile(rb"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]+")


class MalformedReply(httpx.RemoteProtocolError):
    """The reply breaks HTTP/1.1 framing (a bad content-length, chunk size or
    status line): not a cut connection, so not worth a retry."""


class _Conn:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass

    @property
    def stale(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing()

    def reusable_now(self) -> bool:
        """Can a request go out on this idle connection with nothing already
        waiting to be read? A FIN the loop has not processed yet, or a stray
        reply (a 408) the server sent while we were idle, makes the socket
        readable; either way the connection is done."""
        if self.stale or time.monotonic() - self.idle_since > _IDLE_LIMIT:
            return False
        # What the StreamReader holds but has not handed out, and its EOF flag.
        if getattr(self.reader, "_buffer", b"") or getattr(self.reader, "_eof", False):
            return False
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return True
        try:
            return not _readable(sock.fileno())
        except (OSError, ValueError):
            return False


def _readable(fd: int) -> bool:
    """Whether `fd` has something to read right now. poll() has no limit on
    the descriptor's number; select() fails from 1024 on, which in a busy host
    process would quietly turn every request into a new connection."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


class _Body(httpx.AsyncByteStream):
    """A response body read straight off the connection, as it arrives."""

    def __init__(self, transport: "AsyncioTransport", origin: tuple, conn: _Conn, length: int | None,
                 chunked: bool, keep_alive: bool, read_timeout: float | None) -> None:
        self._t = transport
        self._origin = origin
        self._conn = conn
        self._length = length
        self._chunked = chunked
        self._keep_alive = keep_alive
        self._timeout = read_timeout
        self._complete = False
        self._released = False

    async def _read(self, coro: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await coro
        except TimeoutError:
            raise httpx.ReadTimeout("timed out reading the reply") from None
        except asyncio.IncompleteReadError:
            raise httpx.RemoteProtocolError("the server closed the connection mid-reply") from None
        except asyncio.LimitOverrunError:
            raise MalformedReply("a line of the reply's chunked framing is too long") from None
        except (ConnectionError, OSError) as e:
            raise httpx.ReadError(str(e) or type(e).__name__) from None

    async def _exactly(self, n: int) -> AsyncIterator[bytes]:
        """n bytes of body, in pieces of at most _PIECE."""
        reader = self._conn.reader
        while n > 0:
            data = await self._read(reader.read(min(n, _PIECE)))
            if not data:
                raise httpx.RemoteProtocolError("the server closed the connection mid-reply")
            n -= len(data)
            yield data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reader = self._conn.reader
        if self._chunked:
            while True:
                line = await self._read(reader.readuntil(b"\r\n"))
                size_text = line[:-2].split(b";", 1)[0].strip()
                if not _HEX.fullmatch(size_text) or len(size_text) > 15:
                    raise MalformedReply("bad chunk size in the reply")
                size = int(size_text, 16)
                if size == 0:
                    while (await self._read(reader.readuntil(b"\r\n"))) != b"\r\n":
                        pass  # trailers
                    break
                async for piece in self._exactly(size):
                    yield piece
                if await self._read(reader.readexactly(2)) != b"\r\n":
                    raise MalformedReply("a chunk of the reply is longer than its size says")
        elif self._length is not None:
            async for piece in self._exactly(self._length):
                yield piece
        else:  # delimited by the server closing the connection
            while True:
                data = await self._read(reader.read(_PIECE))
                if not data:
                    break
                yield data
            self._keep_alive = False
        self._complete = True

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._t._release(self._origin, self._conn, reusable=self._complete and self._keep_alive)


class AsyncioTransport(httpx.AsyncBaseTransport):
    def __init__(self, max_connections: int = 100) -> None:
        self._idle: dict[tuple, list[_Conn]] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._ssl: ssl.SSLContext | None = None
        self._open: set[_Conn] = set()

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    async def _connect(self, origin: tuple, timeout: float | None) -> _Conn:
        scheme, host, port = origin
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=self._ssl_context() if scheme == "https" else None, limit=_MAX_HEAD)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except (OSError, ssl.SSLError) as e:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {e.strerror or type(e).__name__ if isinstance(e, OSError) else e}") from None
        conn = _Conn(reader, writer)
        self._open.add(conn)
        return conn

    def _release(self, origin: tuple, conn: _Conn, reusable: bool) -> None:
        if reusable and not conn.stale:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(origin, []).append(conn)
        else:
            self._open.discard(conn)
            conn.close()
        self._slots.release()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        port = url.port or (443 if scheme == "https" else 80)
        origin = (scheme, url.host, port)
        timeouts = request.extensions.get("timeout", {})
        await self._slots.acquire()
        try:
            return await self._exchange(request, origin, timeouts)
        except BaseException:
            self._slots.release()
            raise

    async def _exchange(self, request: httpx.Request, origin: tuple, timeouts: dict) -> httpx.Response:
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()
        target = request.url.raw_path.decode("ascii")
        lines = [f"{request.method} {target} HTTP/1.1"]
        for name, value in request.headers.raw:
            lines.append(f"{name.decode('latin-1')}: {value.decode('latin-1')}")
        if "content-length" not in request.headers and body:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        conn = self._idle_connection(origin)
        if conn is None:
            conn = await self._connect(origin, timeouts.get("connect"))
        try:
            conn.writer.write(head + body)
            status, headers = await self._read_head(conn, timeouts.get("read"))
            while 100 <= status < 200:
                if status == 101:
                    raise MalformedReply("the server switched protocols")
                status, headers = await self._read_head(conn, timeouts.get("read"))  # interim (100 Continue)
            length, chunked, keep_alive = _framing(headers)
        except BaseException:
            # Written (or partly written): never sent again from here.
            self._open.discard(conn)
            conn.close()
            raise
        if request.method == "HEAD" or status in (204, 304):
            length, chunked = 0, False
        stream = _Body(self, origin, conn, length, chunked, keep_alive, timeouts.get("read"))
        return httpx.Response(status, headers=headers, stream=stream, extensions={"http_version": b"HTTP/1.1"})

    def _idle_connection(self, origin: tuple) -> _Conn | None:
        """A pooled connection that nothing has been sent on since its last
        reply and that is still good; unusable ones are closed on the way."""
        idle = self._idle.get(origin)
        while idle:
            candidate = idle.pop()
            if candidate.reusable_now():
                return candidate
            self._open.discard(candidate)
            candidate.close()
        return None

    async def _read_head(self, conn: _Conn, timeout: float | None) -> tuple[int, list[tuple[bytes, bytes]]]:
        try:
            async with asyncio.timeout(timeout):
                raw = await conn.reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            raise httpx.ReadTimeout("timed out waiting for the reply") from None
        except asyncio.IncompleteReadError:
            raise httpx.RemoteProtocolError("the server closed the connection without replying") from None
        except asyncio.LimitOverrunError:
            raise httpx.RemoteProtocolError("the reply's headers are too large") from None
        except (ConnectionError, OSError) as e:
            raise httpx.ReadError(str(e) or type(e).__name__) from None
        status_line, *header_lines = raw[:-4].split(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not _DIGITS.fullmatch(parts[1]) \
                or len(parts[1]) != 3:
            raise MalformedReply("the reply is not HTTP/1.1")
        headers = []
        for line in header_lines:
            name, sep, value = line.partition(b":")
            if not sep or not name.strip():
                raise MalformedReply("malformed header in the reply")
            headers.append((name.strip().lower(), value.strip()))
        return int(parts[1]), headers

    async def aclose(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()


def _framing(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool, bool]:
    """(content length, chunked, keep-alive) of a reply head (RFC 9112 6.3).
    A malformed or conflicting Content-Length is a MalformedReply; with a
    Transfer-Encoding the length is ignored and the connection not reused."""
    keep_alive = True
    lengths: set[bytes] = set()
    codings: list[bytes] = []
    for k, v in headers:
        if k == b"connection" and b"close" in v.lower():
            keep_alive = False
        elif k == b"content-length":
            lengths.update(part.strip() for part in v.split(b","))
        elif k == b"transfer-encoding":
            codings.extend(c.strip().lower() for c in v.split(b",") if c.strip())
    if codings:
        # Chunked must be the last coding; otherwise the body runs to the close.
        return None, codings[-1] == b"chunked", keep_alive and codings == [b"chunked"] and not lengths
    if not lengths:
        return None, False, keep_alive
    if len(lengths) != 1:
        raise MalformedReply("the reply has conflicting Content-Length headers")
    (text,) = lengths
    if not _DIGITS.fullmatch(text) or len(text) > 18:
        raise MalformedReply("the reply has an invalid Content-Length")
    return int(text), False, keep_alive
