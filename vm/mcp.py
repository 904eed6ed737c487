"""A Model Context Protocol (MCP) client for the stdio transport.

The VM uses it when a model calls a tool that an external MCP server provides.
The server is a child process; we speak to it over its stdin/stdout.

Wire protocol (the subset we use)
---------------------------------
* Framing: newline-delimited JSON-RPC 2.0, one JSON object per line, UTF-8.
  `json.dumps` escapes newlines inside strings, so a message never spans lines.
  Lines on stdout that are not JSON objects are skipped (some servers log
  there) but kept in `McpClient.diagnostics`; stderr is never parsed, only
  remembered (the last ~20 lines) for error messages.
* Client -> server requests: `initialize`, `tools/list` (following
  `nextCursor`), `tools/call`. Ids are increasing integers.
* Client -> server notification: `notifications/initialized`, sent once right
  after the `initialize` response.
* Server -> client notifications (`notifications/message`, progress, list
  changes, ...) are ignored.
* Server -> client requests: `ping` is answered with `{}`; anything else gets
  JSON-RPC error -32601 (method not found), since we advertise no capabilities.

Lifecycle
---------
    async with McpClient("GitHub", ["github-mcp-server", "stdio"]) as client:
        tools = await client.list_tools()
        result = await client.call_tool("search", {"q": "anyio"})

`start()` spawns the process and performs the handshake; `aclose()` closes the
server's stdin, waits up to `shutdown_grace` seconds for it to exit, then
terminates it, then kills it, and always reaps it.

The background readers (stdout, stderr, process exit) run in an anyio task
group that `start()` enters and `aclose()` exits. anyio task groups are cancel
scopes, which must be exited by the task that entered them, in nesting order:
so `start()` and `aclose()` must be called from the same task, with nothing
entered in between left open (the `async with` form guarantees both). Many
tasks may call `list_tools()` / `call_tool()` concurrently in between: a single
reader dispatches each response to its waiting request by id.

Errors: transport problems (cannot start, process exited, timeout, malformed
answers) raise `McpError`, whose one-line message names the server. A JSON-RPC
error answer to `tools/call` is not an exception: it becomes an error
`McpResult` the model reads and can react to. Messages never contain
environment values.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

PROTOCOL_VERSION = "2025-06-18"
# Tool results can be large (file contents, search dumps); a line longer than
# this is cut so a runaway server cannot exhaust memory.
MAX_LINE_BYTES = 64 * 1024 * 1024
DIAGNOSTIC_LINES = 20
_DIAGNOSTIC_LINE_CHARS = 500
# `nextCursor` pagination is server-driven; a buggy server could loop forever.
_MAX_PAGES = 1000

_METHOD_NOT_FOUND = -32601


# Reported when the package metadata cannot be read (a source checkout that
# was never installed); keep it in step with pyproject.toml.
FALLBACK_VERSION = "0.1.0"
DISTRIBUTION = "concerto-lang"  # [project] name in pyproject.toml


def client_version() -> str:
    """This package's version, as installed (reported in MCP `clientInfo`)."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python >= 3.8 has it
        return FALLBACK_VERSION
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return FALLBACK_VERSION


class McpError(Exception):
    """A transport or protocol failure talking to one MCP server."""


@dataclass(frozen=True)
class McpTool:
    name: str
    description: str
    input_schema: dict


@dataclass(frozen=True)
class McpResult:
    text: str
    is_error: bool


class _RpcError(Exception):
    """A JSON-RPC error answer; callers decide whether it is fatal."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Pending:
    """One request waiting for its answer (or for the connection to fail)."""

    done: anyio.Event = field(default_factory=anyio.Event)
    message: dict[str, Any] | None = None
    failure: str | None = None  # why the connection ended, if it did


class McpClient:
    """One stdio MCP server process. See the module docstring for lifecycle rules."""

    # Seconds aclose() waits after closing stdin, and again after terminating.
    shutdown_grace: float = 2.0

    def __init__(self, name: str, command: list[str], env: Mapping[str, str] | None = None,
                 timeout: float = 30.0, cwd: str | None = None) -> None:
        self.name = name
        self.command = list(command)
        # The server's whole environment (None: ours). The VM passes a small
        # one, so API keys in our environment never reach a third-party server.
        self.env = dict(env) if env is not None else None
        self.timeout = timeout
        self.cwd = cwd
        self.server_info: dict[str, Any] = {}
        self.server_capabilities: dict[str, Any] = {}
        self.protocol_version: str | None = None

        self._process: anyio.abc.Process | None = None
        self._stack: AsyncExitStack | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        self._owner: anyio.TaskInfo | None = None
        self._state = "new"  # -> "running" -> "closed"
        self._next_id = 1
        self._pending: dict[int, _Pending] = {}
        self._send_lock = anyio.Lock()
        # Why the connection ended. A message, not an exception object: one
        # instance raised in several tasks would share and grow one traceback.
        self._dead: str | None = None
        self._exited = anyio.Event()
        self._stdout_done = anyio.Event()
        self._stderr_done = anyio.Event()
        self._ring: deque[tuple[str, str]] = deque(maxlen=DIAGNOSTIC_LINES)
        self._last_stderr = ""

    # ---------------------------------------------------------------- public
    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    @property
    def diagnostics(self) -> list[str]:
        """The last lines the server wrote to stderr, or to stdout that were not JSON."""
        return [f"{source}: {text}" for source, text in self._ring]

    async def __aenter__(self) -> "McpClient":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Spawn the server and perform the `initialize` handshake."""
        if self._state != "new":
            raise McpError(self._msg("start() called twice"))
        self._state = "running"
        try:
            await self._spawn()
        except BaseException:
            self._state = "closed"
            raise
        self._owner = anyio.get_current_task()
        try:
            self._stack = AsyncExitStack()
            self._tasks = await self._stack.enter_async_context(anyio.create_task_group())
            self._tasks.start_soon(self._read_stdout)
            self._tasks.start_soon(self._read_stderr)
            self._tasks.start_soon(self._watch_exit)
            await self._handshake()
        except BaseException:
            await self.aclose()
            raise

    async def list_tools(self) -> list[McpTool]:
        """Every tool the server offers, across all `tools/list` pages."""
        tools: list[McpTool] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            params = {"cursor": cursor} if cursor is not None else {}
            result = await self._checked_request("tools/list", params)
            tools.extend(self._parse_tool(raw) for raw in result.get("tools") or [])
            cursor = result.get("nextCursor")
            if not cursor:
                return tools
        raise McpError(self._msg(f"`tools/list` returned more than {_MAX_PAGES} pages"))

    async def call_tool(self, name: str, arguments: dict) -> McpResult:
        """Call one tool. A JSON-RPC error answer becomes an error result."""
        try:
            result = await self._request("tools/call", {"name": name, "arguments": arguments})
        except _RpcError as exc:
            return McpResult(text=f"error: {exc.message}", is_error=True)
        return _parse_result(result)

    async def aclose(self) -> None:
        """Stop the server (stdin EOF, then SIGTERM, then SIGKILL) and the readers."""
        if self._state == "closed":
            return
        self._state = "closed"
        self._fail_all(self._msg("client was closed"))
        # Shielded: a cancelled caller must still reap the process.
        with anyio.CancelScope(shield=True):
            await self._stop_process()
        await self._close_task_group()

    # ---------------------------------------------------------------- process
    async def _spawn(self) -> None:
        if not self.command:
            raise McpError(self._msg("empty command"))
        env = self.env
        try:
            self._process = await anyio.open_process(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=env, cwd=self.cwd,
                # Own process group, so stopping it also stops helpers it
                # spawned (npx -> node) and a terminal ^C does not hit it first.
                start_new_session=os.name == "posix")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise McpError(self._msg(f"cannot start `{self.command[0]}`: {reason}")) from None

    async def _stop_process(self) -> None:
        process = self._process
        if process is None:
            return
        # Bounded: closing could wait on a full pipe the server never reads.
        with anyio.move_on_after(self.shutdown_grace), contextlib.suppress(Exception):
            await process.stdin.aclose()  # type: ignore[union-attr]
        with anyio.move_on_after(self.shutdown_grace):
            await process.wait()
        # The server's own process group holds whatever it started (npx ->
        # node -> ...); those outlive a server that exits on EOF, so the group
        # is ended too: SIGTERM, a grace period, then SIGKILL.
        for sig in (signal.SIGTERM, getattr(signal, "SIGKILL", signal.SIGTERM)):
            if process.returncode is not None and not self._group_alive():
                break
            self._signal(process, sig)
            with anyio.move_on_after(self.shutdown_grace):
                await process.wait()
                while self._group_alive():
                    await anyio.sleep(0.02)
        await process.wait()
        with contextlib.suppress(Exception):
            await process.aclose()  # closes our ends of stdout/stderr

    def _group_alive(self) -> bool:
        """Whether any process of the server's group is still running."""
        if os.name != "posix" or self._process is None:
            return False
        return process_group_alive(self._process.pid)

    def _signal(self, process: anyio.abc.Process, sig: int) -> None:
        try:
            if os.name == "posix":
                os.killpg(process.pid, sig)
            else:
                process.terminate() if sig == signal.SIGTERM else process.kill()
        except (ProcessLookupError, PermissionError):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()

    async def _close_task_group(self) -> None:
        if self._stack is None:
            return
        stack, self._stack = self._stack, None
        if anyio.get_current_task() != self._owner:
            # The readers end by themselves now that the pipes are closed, but
            # the task group's scope can only be exited by the task that entered it.
            raise RuntimeError(self._msg("aclose() must be called from the task that called start()"))
        assert self._tasks is not None
        self._tasks.cancel_scope.cancel()
        await stack.aclose()

    # ---------------------------------------------------------------- readers
    async def _read_stdout(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        try:
            async for line in _lines(self._process.stdout, MAX_LINE_BYTES):
                self._dispatch_line(line)
        except Exception as exc:  # noqa: BLE001 - must not cancel the owner's task
            self._fail_all(self._msg(f"reading stdout failed: {exc}"))
        self._stdout_done.set()
        with anyio.move_on_after(self.shutdown_grace):
            await self._exited.wait()
        if not self._exited.is_set():
            self._fail_all(self._msg("closed its stdout but did not exit"))

    async def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        with contextlib.suppress(Exception):
            async for raw in _lines(self._process.stderr, 64 * 1024):
                text = _clip(raw.decode("utf-8", "replace").rstrip("\r"))
                if text.strip():
                    self._ring.append(("stderr", text))
                    self._last_stderr = text.strip()
        self._stderr_done.set()

    async def _watch_exit(self) -> None:
        assert self._process is not None
        code = await self._process.wait()
        self._exited.set()
        # Let the readers drain: a last response on stdout still counts, and
        # the last stderr line is usually the reason.
        with anyio.move_on_after(1.0):
            await self._stdout_done.wait()
        with anyio.move_on_after(0.5):
            await self._stderr_done.wait()
        self._fail_all(self._msg(self._exit_reason(code)))

    def _exit_reason(self, code: int) -> str:
        reason = (f"process was killed by signal {-code}" if code < 0
                  else f"process exited with code {code}")
        return f"{reason}: {self._last_stderr}" if self._last_stderr else reason

    # ---------------------------------------------------------------- dispatch
    def _dispatch_line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if isinstance(message, list):  # a JSON-RPC batch (older protocol versions)
            for item in message:
                self._dispatch(item, line)
        else:
            self._dispatch(message, line)

    def _dispatch(self, message: Any, line: bytes) -> None:
        if not isinstance(message, dict):
            self._ring.append(("stdout", _clip(line.decode("utf-8", "replace"))))
        elif "method" in message:
            if "id" in message:  # a request; without an id it is a notification
                assert self._tasks is not None
                # In its own task: the reader must keep draining stdout while we
                # write, or a server blocked on a full stdout pipe would deadlock.
                self._tasks.start_soon(self._answer_server_request, message)
        elif "id" in message:
            slot = self._pending.get(message["id"]) if isinstance(message["id"], int) else None
            if slot is not None:
                slot.message = message
                slot.done.set()
            elif message["id"] is None:  # an error the server could not tie to a request
                self._ring.append(("stdout", _clip(line.decode("utf-8", "replace"))))
            # else: a late answer to a request that timed out or was cancelled

    async def _answer_server_request(self, request: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
        if request["method"] == "ping":
            reply["result"] = {}
        else:
            reply["error"] = {"code": _METHOD_NOT_FOUND,
                              "message": f"method not found: {request['method']}"}
        await self._write_quietly(reply)

    # ---------------------------------------------------------------- requests
    async def _handshake(self) -> None:
        params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                  "clientInfo": {"name": "concerto", "version": client_version()}}
        result = await self._checked_request("initialize", params)
        self.server_info = _as_dict(result.get("serverInfo"))
        self.server_capabilities = _as_dict(result.get("capabilities"))
        self.protocol_version = result.get("protocolVersion")
        await self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def _checked_request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """A request whose JSON-RPC error is a failure, not something a model reads."""
        try:
            return await self._request(method, params)
        except _RpcError as exc:
            raise McpError(self._msg(f"`{method}` failed: {exc.message}")) from None

    async def _request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._check_open()
        request_id = self._next_id
        self._next_id += 1
        slot = _Pending()
        self._pending[request_id] = slot
        try:
            with anyio.move_on_after(self.timeout):
                await self._send({"jsonrpc": "2.0", "id": request_id, "method": method,
                                  "params": params})
                await slot.done.wait()
        finally:
            # Also on cancellation: a late answer then finds no one and is dropped.
            self._pending.pop(request_id, None)
            if not slot.done.is_set():
                self._cancel_on_server(request_id, method)
        if not slot.done.is_set():
            raise McpError(self._msg(f"did not answer `{method}` within {self.timeout:g} s"))
        if slot.failure is not None:
            raise McpError(slot.failure)
        return self._unwrap(method, slot.message or {})

    def _cancel_on_server(self, request_id: int, method: str) -> None:
        """Tell the server to stop work nobody waits for (MCP `notifications/cancelled`)."""
        # The spec forbids cancelling `initialize`; a dead server cannot listen.
        if method == "initialize" or self._dead is not None or self._tasks is None:
            return
        notice = {"jsonrpc": "2.0", "method": "notifications/cancelled",
                  "params": {"requestId": request_id, "reason": "client stopped waiting"}}
        # In a task of our own: the caller may be cancelled and unable to await.
        with contextlib.suppress(RuntimeError):  # task group already closed
            self._tasks.start_soon(self._write_quietly, notice)

    async def _write_quietly(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # a dead server is reported elsewhere
            await self._write(message)

    def _unwrap(self, method: str, message: dict[str, Any]) -> dict[str, Any]:
        error = message.get("error")
        if error is not None:
            error = _as_dict(error)
            raise _RpcError(code=error.get("code", 0),
                            message=str(error.get("message") or "unknown error"))
        result = message.get("result")
        if not isinstance(result, dict):
            raise McpError(self._msg(f"malformed answer to `{method}`: result is not an object"))
        return result

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            await self._write(message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            # The process is probably gone; wait briefly so we can say why.
            with anyio.move_on_after(2.0):
                while self._dead is None:
                    await anyio.sleep(0.01)
            raise McpError(self._dead or self._msg("cannot write to the server's stdin")) from None

    async def _write(self, message: dict[str, Any]) -> None:
        assert self._process is not None and self._process.stdin is not None
        data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        async with self._send_lock:  # one whole line at a time
            await self._process.stdin.send(data)

    def _check_open(self) -> None:
        if self._dead is not None:
            raise McpError(self._dead)
        if self._state != "running":
            raise McpError(self._msg("client is not started" if self._state == "new"
                                     else "client was closed"))

    def _fail_all(self, reason: str) -> None:
        """The connection is over: fail everything waiting, now and later."""
        if self._dead is None:
            self._dead = reason
        for slot in self._pending.values():
            slot.failure = self._dead
            slot.done.set()

    def _msg(self, text: str) -> str:
        return f"MCP server `{self.name}`: {text}"

    def _parse_tool(self, raw: Any) -> McpTool:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise McpError(self._msg("malformed tool in `tools/list`"))
        schema = raw.get("inputSchema")
        return McpTool(name=raw["name"], description=str(raw.get("description") or ""),
                       input_schema=schema if isinstance(schema, dict) else {"type": "object"})


# ------------------------------------------------------------------ helpers
def process_group_alive(pgid: int) -> bool:
    """Whether process group `pgid` has a member that has not exited.

    A zombie (exited, not yet reaped by its parent) still counts for
    killpg(pgid, 0), and an orphan's zombie may never be reaped where PID 1
    does not reap; so on Linux the members are read from /proc and zombies
    are ignored."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = "/proc"
    if not os.path.isdir(f"{proc}/self"):
        return True
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] != b"Z":
            return True
    return False


def _parse_result(result: dict[str, Any]) -> McpResult:
    parts = [_content_text(item) for item in result.get("content") or []]
    text = "\n".join(part for part in parts if part is not None)
    structured = result.get("structuredContent")
    if not text and structured is not None:
        text = json.dumps(structured, ensure_ascii=False)
    return McpResult(text=text, is_error=bool(result.get("isError")))


def _content_text(item: Any) -> str | None:
    """A model-readable form of one content item; binary data is only named."""
    if not isinstance(item, dict):
        return None
    kind = item.get("type")
    if kind == "text":
        return str(item.get("text", ""))
    if kind in ("image", "audio"):
        return f"[{item.get('mimeType') or kind}]"
    if kind == "resource":
        resource = _as_dict(item.get("resource"))
        if isinstance(resource.get("text"), str):
            return resource["text"]
        return f"[resource {resource.get('uri', '')} ({resource.get('mimeType') or 'binary'})]"
    if kind == "resource_link":
        return f"[resource link {item.get('uri', '')}]"
    return f"[{kind}]"


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _clip(text: str) -> str:
    return text if len(text) <= _DIAGNOSTIC_LINE_CHARS else text[:_DIAGNOSTIC_LINE_CHARS] + "..."


async def _lines(stream: anyio.abc.ByteReceiveStream, limit: int) -> AsyncIterator[bytes]:
    """Split a byte stream on b"\\n"; a line longer than `limit` is cut into pieces."""
    buffer = bytearray()
    while True:
        try:
            chunk = await stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            break
        scan_from = len(buffer)  # only the new bytes can hold a newline
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", scan_from)) >= 0:
            yield bytes(buffer[start:end])
            start = scan_from = end + 1
        del buffer[:start]
        if len(buffer) > limit:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)
