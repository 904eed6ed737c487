"""The MCP servers of one run (spec 08 "MCP Tool Integration", spec 22 [mcp.*]).

A server starts the first time a model call offers its tools, and lives
until the run ends: it is hosted by a task in the run's task group (an
McpClient must be opened and closed by the same task), which the end of the
run cancels, closing the client and reaping the process. On start the server
must list every tool the `mcp` block declares (spec 20 "Runtime
Validation"); a server that cannot start or lacks a tool fails the model
call that wanted it, with a message naming the server.

The server process gets a small environment (PATH, HOME, locale, ...) plus
the variables its `env` table names, never the rest of ours: API keys stay
with the VM.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from concerto import ir
from concerto.vm.mcp import McpClient, McpError, McpResult

DEFAULT_TIMEOUT = 30.0
# What a server needs from our environment to run at all.
_PASSED_THROUGH = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LC_ALL", "LC_CTYPE",
                   "TMPDIR", "TEMP", "TMP", "TZ", "SYSTEMROOT", "APPDATA", "LOCALAPPDATA", "USERPROFILE")


@dataclass
class _Session:
    ready: anyio.Event = field(default_factory=anyio.Event)
    client: McpClient | None = None
    error: McpError | None = None


class McpServers:
    def __init__(self, servers: list[ir.McpDef], environ: Mapping[str, str] | None = None) -> None:
        self.defs = {s.name: s for s in servers}
        self.environ = os.environ if environ is None else environ
        self._sessions: dict[str, _Session] = {}

    async def ready(self, name: str, spawn: Any) -> McpClient:
        """The running client of server `name`, started (with `spawn(fn, *args)`,
        the run's task starter) if it is not yet. Raises McpError."""
        session = self._sessions.get(name)
        if session is None:
            session = self._sessions[name] = _Session()
            spawn(self._host, name, session)
        await session.ready.wait()
        if session.error is not None:
            raise session.error
        assert session.client is not None
        return session.client

    async def call(self, name: str, tool: str, arguments: dict[str, Any], spawn: Any) -> McpResult:
        client = await self.ready(name, spawn)
        return await client.call_tool(tool, arguments)

    async def _host(self, name: str, session: _Session) -> None:
        definition = self.defs[name]
        try:
            command, env = self._launch(definition)
            async with McpClient(name, command, env, definition.timeout or DEFAULT_TIMEOUT) as client:
                offered = {t.name for t in await client.list_tools()}
                missing = [t.name for t in definition.tools if t.name not in offered]
                if missing:
                    raise McpError(f"MCP server `{name}` does not provide tool `{missing[0]}` "
                                   f"(it offers: {', '.join(sorted(offered)) or 'nothing'})")
                session.client = client
                session.ready.set()
                await anyio.sleep_forever()  # until the run ends and cancels this task
        except McpError as exc:
            session.error = exc
        except Exception as exc:  # noqa: BLE001 - a server problem must not end the run
            session.error = McpError(f"MCP server `{name}`: {exc}")
        finally:
            if session.client is None and session.error is None:
                session.error = McpError(f"MCP server `{name}` stopped before it was ready")
            session.ready.set()

    def _launch(self, d: ir.McpDef) -> tuple[list[str], dict[str, str]]:
        if d.transport is None:
            raise McpError(f"MCP server `{d.name}` has no transport: add [mcp.{d.name}] to Concerto.toml")
        if d.transport != "stdio":
            raise McpError(f"MCP server `{d.name}`: transport {d.transport!r} is not supported yet (use \"stdio\")")
        if not d.command:
            raise McpError(f"MCP server `{d.name}` has no command to start it")
        try:
            command = shlex.split(d.command) + list(d.args)
        except ValueError as exc:
            raise McpError(f"MCP server `{d.name}`: cannot read its command: {exc}") from None
        env = {k: v for k, v in self.environ.items() if k in _PASSED_THROUGH}
        for server_var, our_var in d.env.items():
            if our_var not in self.environ:
                raise McpError(f"MCP server `{d.name}` needs environment variable {our_var} "
                               f"(for its {server_var}); set it, or fix [mcp.{d.name}.env]")
            env[server_var] = self.environ[our_var]
        return command, env
