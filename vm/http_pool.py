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
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx

_MAX_HEAD = 64 * 1024


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass

    @property
    def stale(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing()


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
        except (ConnectionError, OSError) as e:
            raise httpx.ReadError(str(e) or type(e).__name__) from None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reader = self._conn.reader
        if self._chunked:
            while True:
                line = await self._read(reader.readuntil(b"\r\n"))
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise httpx.RemoteProtocolError("bad chunk size in the reply") from None
                if size == 0:
                    while (await self._read(reader.readuntil(b"\r\n"))) != b"\r\n":
                        pass  # trailers
                    break
                data = await self._read(reader.readexactly(size + 2))
                yield data[:-2]
        elif self._length is not None:
            if self._length:
                yield await self._read(reader.readexactly(self._length))
        else:  # delimited by the server closing the connection
            while True:
                data = await self._read(reader.read(65536))
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
        idle = self._idle.get(origin)
        # A pooled connection may have been closed by the server since its last
        # use; if it fails before any reply byte, try once more on a fresh one.
        for fresh in (False, True):
            conn = None
            while idle and not fresh:
                candidate = idle.pop()
                if not candidate.stale:
                    conn = candidate
                    break
                self._open.discard(candidate)
                candidate.close()
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin, timeouts.get("connect"))
            try:
                conn.writer.write(head + body)
                status, headers = await self._read_head(conn, timeouts.get("read"))
            except BaseException as e:
                self._open.discard(conn)
                conn.close()
                if reused and isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError)):
                    continue
                raise
            break
        keep_alive = not any(k == b"connection" and v.lower() == b"close" for k, v in headers)
        length = None
        chunked = False
        for k, v in headers:
            if k == b"content-length":
                length = int(v)
            elif k == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
        if request.method == "HEAD" or status in (204, 304):
            length = 0
        stream = _Body(self, origin, conn, length, chunked, keep_alive, timeouts.get("read"))
        return httpx.Response(status, headers=headers, stream=stream, extensions={"http_version": b"HTTP/1.1"})

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
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise httpx.RemoteProtocolError("the reply is not HTTP/1.1")
        headers = []
        for line in header_lines:
            name, sep, value = line.partition(b":")
            if not sep:
                raise httpx.RemoteProtocolError("malformed header in the reply")
            headers.append((name.strip().lower(), value.strip()))
        return int(parts[1]), headers

    async def aclose(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()
