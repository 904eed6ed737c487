"""Behaviour of the stdio MCP client (vm/mcp.py) against tests/fake_mcp_server.py."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from concerto.vm.mcp import McpClient, McpError, McpResult, McpTool

SERVER = str(Path(__file__).resolve().parent / "fake_mcp_server.py")


def client(mode: str = "normal", log: Path | None = None, timeout: float = 5.0) -> McpClient:
    command = [sys.executable, SERVER, "--mode", mode]
    if log is not None:
        command += ["--log", str(log)]
    return McpClient("Fake", command, timeout=timeout)


def run(scenario: Callable[[], Awaitable[object]]) -> object:
    return anyio.run(scenario, backend="asyncio")


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_reaped(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# ------------------------------------------------------------------ handshake
def test_handshake_sends_initialize_then_initialized(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"

    async def scenario() -> McpClient:
        async with client(log=log) as c:
            await c.list_tools()
        return c

    c = run(scenario)
    assert c.server_info == {"name": "fake-mcp", "version": "1.2.3"}
    assert c.server_capabilities == {"tools": {}}
    assert c.protocol_version == "2025-06-18"
    messages = read_log(log)
    first, second = messages[0], messages[1]
    assert first["method"] == "initialize" and first["jsonrpc"] == "2.0"
    assert first["params"]["protocolVersion"] == "2025-06-18"
    assert first["params"]["capabilities"] == {}
    assert first["params"]["clientInfo"]["name"] == "concerto"
    assert second == {"jsonrpc": "2.0", "method": "notifications/initialized"}
    request_ids = [m["id"] for m in messages if "method" in m and "id" in m]
    assert len(request_ids) == len(set(request_ids)) and request_ids == sorted(request_ids)
    assert all(isinstance(i, int) for i in request_ids)
    assert messages[-1] == {"event": "stdin-eof"}  # aclose closed stdin politely


def test_list_tools_follows_pagination(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"

    async def scenario() -> list[McpTool]:
        async with client(log=log) as c:
            return await c.list_tools()

    tools = run(scenario)
    assert [t.name for t in tools] == ["echo", "add", "structured", "fail", "slow",
                                       "log_noise", "mixed", "ping_status"]
    echo = tools[0]
    assert echo.description == "Echo the text back."
    assert echo.input_schema["properties"] == {"text": {"type": "string"}}
    cursors = [m["params"].get("cursor") for m in read_log(log) if m.get("method") == "tools/list"]
    assert cursors == [None, "2", "4", "6"]


# ------------------------------------------------------------------ results
def test_call_tool_results() -> None:
    async def scenario() -> dict[str, McpResult]:
        async with client() as c:
            return {
                "echo": await c.call_tool("echo", {"text": "hi\nthere"}),
                "add": await c.call_tool("add", {"a": 2, "b": 40}),
                "structured": await c.call_tool("structured", {}),
                "fail": await c.call_tool("fail", {}),
                "mixed": await c.call_tool("mixed", {}),
            }

    results = run(scenario)
    assert results["echo"] == McpResult(text="hi\nthere", is_error=False)
    assert results["add"] == McpResult(text="42", is_error=False)
    assert json.loads(results["structured"].text) == {"rows": [1, 2], "ok": True}
    assert results["fail"] == McpResult(text="the tool failed on purpose", is_error=True)
    assert results["mixed"].text == (
        "a chart:\n[image/png]\n[resource file:///data.bin (application/octet-stream)]")


def test_json_rpc_error_becomes_error_result() -> None:
    async def scenario() -> tuple[McpResult, McpResult]:
        async with client() as c:
            bad = await c.call_tool("nope", {})
            # The connection is still usable afterwards.
            return bad, await c.call_tool("echo", {"text": "still here"})

    bad, good = run(scenario)
    assert bad == McpResult(text="error: Unknown tool: nope", is_error=True)
    assert good.text == "still here"


def test_concurrent_calls_from_many_tasks_get_their_own_answers() -> None:
    async def scenario() -> tuple[dict[int, str], float]:
        answers: dict[int, str] = {}
        async with client() as c:

            async def one(i: int) -> None:
                # Slow calls first: their answers arrive after the fast ones.
                if i % 3 == 0:
                    answers[i] = (await c.call_tool("slow", {"seconds": 0.3})).text
                else:
                    answers[i] = (await c.call_tool("echo", {"text": f"#{i}"})).text

            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                for i in range(12):
                    tg.start_soon(one, i)
            return answers, time.monotonic() - started

    answers, elapsed = run(scenario)
    assert answers == {i: "slept" if i % 3 == 0 else f"#{i}" for i in range(12)}
    assert elapsed < 1.0  # four 0.3 s calls overlapped


# ------------------------------------------------------------------ server behaviour
def test_server_ping_is_answered_and_other_requests_refused(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"

    async def scenario() -> None:
        async with client(log=log) as c:
            await c.list_tools()

    run(scenario)
    answers = {e["message"]["id"]: e["message"] for e in read_log(log)
               if e.get("event") == "client-answered"}
    assert answers["srv-ping-1"] == {"jsonrpc": "2.0", "id": "srv-ping-1", "result": {}}
    assert answers["srv-sample-2"]["error"]["code"] == -32601


def test_non_json_stdout_and_notifications_are_skipped() -> None:
    async def scenario() -> tuple[McpResult, list[str]]:
        async with client() as c:
            result = await c.call_tool("log_noise", {})
            return result, c.diagnostics

    result, diagnostics = run(scenario)
    assert result == McpResult(text="quiet now", is_error=False)
    assert "stdout: DEBUG loading plugins..." in diagnostics


def test_garbage_lines_and_stray_ids_do_not_disturb_answers() -> None:
    async def scenario() -> tuple[list[McpTool], McpResult, list[str]]:
        async with client("garbage") as c:
            return await c.list_tools(), await c.call_tool("add", {"a": 1, "b": 2}), c.diagnostics

    tools, result, diagnostics = run(scenario)
    assert len(tools) == 8
    assert result.text == "3"
    assert "stdout: garbage: not json at all" in diagnostics
    assert "stdout: [1, 2, 3]" in diagnostics


# ------------------------------------------------------------------ failures
def test_timeout_raises_cancels_on_server_and_connection_survives(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"

    async def scenario() -> tuple[str, McpResult, int]:
        async with client(log=log, timeout=0.3) as c:
            with pytest.raises(McpError) as info:
                await c.call_tool("slow", {"seconds": 1})
            after = await c.call_tool("echo", {"text": "ok"})
            return str(info.value), after, len(c._pending)

    message, after, pending = run(scenario)
    assert message == "MCP server `Fake`: did not answer `tools/call` within 0.3 s"
    assert after.text == "ok"
    assert pending == 0
    messages = read_log(log)
    slow_id = next(m["id"] for m in messages if m.get("params", {}).get("name") == "slow")
    cancels = [m for m in messages if m.get("method") == "notifications/cancelled"]
    assert [m["params"]["requestId"] for m in cancels] == [slow_id]


def test_initialize_timeout_raises_and_reaps() -> None:
    c = client("no-init", timeout=0.3)

    async def scenario() -> None:
        with pytest.raises(McpError, match="did not answer `initialize` within 0.3 s"):
            await c.start()

    run(scenario)
    assert c.returncode is not None
    assert_reaped(c.pid)


def test_crash_on_call_reports_exit_code_and_stderr() -> None:
    c = client("crash-on-call")

    async def scenario() -> tuple[str, str]:
        await c.start()
        try:
            with pytest.raises(McpError) as first:
                await c.call_tool("echo", {"text": "x"})
            with pytest.raises(McpError) as later:  # no hanging after the crash
                await c.list_tools()
        finally:
            await c.aclose()
        return str(first.value), str(later.value)

    first, later = run(scenario)
    assert first == "MCP server `Fake`: process exited with code 3: fatal: tool handler blew up"
    assert later == first
    assert c.returncode == 3
    assert_reaped(c.pid)


def test_crash_on_start_reports_stderr_line() -> None:
    c = client("crash-on-start")

    async def scenario() -> None:
        await c.start()

    with pytest.raises(McpError) as info:
        run(scenario)
    assert str(info.value) == (
        "MCP server `Fake`: process exited with code 1: fatal: missing GITHUB_TOKEN")
    assert_reaped(c.pid)


def test_missing_command_names_the_command() -> None:
    async def scenario() -> None:
        await McpClient("Ghost", ["no-such-mcp-server-xyz", "--stdio"],
                        env={"API_KEY": "s3cret-value"}).start()

    with pytest.raises(McpError) as info:
        run(scenario)
    message = str(info.value)
    assert message.startswith("MCP server `Ghost`: cannot start `no-such-mcp-server-xyz`")
    assert "s3cret-value" not in message and "\n" not in message


# ------------------------------------------------------------------ lifecycle
def test_aclose_reaps_process_and_leaves_no_tasks() -> None:
    async def scenario() -> tuple[McpClient, int]:
        c = client()
        await c.start()
        await c.call_tool("echo", {"text": "x"})
        await c.aclose()
        await c.aclose()  # idempotent
        return c, len(asyncio.all_tasks())

    c, tasks = run(scenario)
    assert c.returncode == 0  # exited on its own after stdin EOF
    assert_reaped(c.pid)
    assert tasks == 1  # only the scenario itself


def test_aclose_kills_a_server_that_ignores_eof_and_sigterm() -> None:
    async def scenario() -> tuple[McpClient, float]:
        c = client("stubborn")
        c.shutdown_grace = 0.2
        await c.start()
        started = time.monotonic()
        await c.aclose()
        return c, time.monotonic() - started

    c, elapsed = run(scenario)
    assert c.returncode == -9
    assert_reaped(c.pid)
    assert elapsed < 2.0


def test_cancelled_caller_removes_pending_and_aclose_still_reaps() -> None:
    async def scenario() -> tuple[McpClient, int, McpResult]:
        async with client() as c:
            with anyio.move_on_after(0.2):
                await c.call_tool("slow", {"seconds": 0.5})
            pending = len(c._pending)  # private: the only way to see the leak we guard against
            after = await c.call_tool("echo", {"text": "after"})
        return c, pending, after

    c, pending, after = run(scenario)
    assert pending == 0
    assert after.text == "after"
    assert_reaped(c.pid)


def test_cancelled_async_with_body_still_reaps() -> None:
    holder: list[McpClient] = []

    async def scenario() -> None:
        with anyio.move_on_after(0.3):
            async with client() as c:
                holder.append(c)
                await c.call_tool("slow", {"seconds": 5})

    started = time.monotonic()
    run(scenario)
    assert time.monotonic() - started < 3.0
    assert holder[0].returncode is not None
    assert_reaped(holder[0].pid)


def test_pending_call_from_another_task_fails_when_client_closes() -> None:
    async def scenario() -> str:
        error: list[str] = []
        opened: list[McpClient] = []
        ready = anyio.Event()

        async def caller() -> None:
            await ready.wait()
            try:
                await opened[0].call_tool("slow", {"seconds": 5})
            except McpError as exc:
                error.append(str(exc))

        # The caller's task group is entered before the client's, so the
        # client's task group nests inside it as start()/aclose() require.
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            async with client() as c:
                opened.append(c)
                c.shutdown_grace = 0.2
                ready.set()
                await anyio.sleep(0.2)
        return error[0]

    assert run(scenario) == "MCP server `Fake`: client was closed"


def test_calls_before_start_and_after_close_raise() -> None:
    async def scenario() -> tuple[str, str]:
        c = client()
        with pytest.raises(McpError) as before:
            await c.list_tools()
        async with c:
            pass
        with pytest.raises(McpError) as after:
            await c.call_tool("echo", {"text": "x"})
        return str(before.value), str(after.value)

    before, after = run(scenario)
    assert before == "MCP server `Fake`: client is not started"
    assert after == "MCP server `Fake`: client was closed"
