"""MCP servers as model tools (spec 08, 20, 22): an `mcp` block's typed tools,
the server from Concerto.toml [mcp.NAME], started on first use and stopped
with the run; the fake LLM provider asks for the calls, tests/fake_mcp_server.py
answers them over stdio."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from concerto import Runtime, RuntimeConfig
from concerto.compiler import compile_source
from conftest import rendered
from tests.fake_provider import Text, ToolCall, ToolCalls
from tests.test_models import KEYS, openai_conn, project
from tests.test_tools_runtime import run

SERVER = Path(__file__).parent / "fake_mcp_server.py"

MCP = """
mcp Fake {
    @describe("Echo the text back")
    @param("text", "What to echo")
    fn echo(text: String) -> Result<String, ToolError>;

    @describe("Add two numbers")
    @param("a", "First")
    @param("b", "Second")
    fn add(a: Float, b: Float = 1.0) -> Result<Float, ToolError>;

    @describe("Always fails")
    fn fail() -> Result<String, ToolError>;
}
model M { provider: llm, tools: [Fake] }
fn main() {
    match M.execute("use the server") {
        Ok(r) => emit("text", r.text),
        Err(e) => emit("error", e.message),
    }
}
"""


def mcp_table(extra: str = "", command: str | None = None) -> str:
    command = command or f"{sys.executable} {SERVER}"
    return f'[mcp.Fake]\ntransport = "stdio"\ncommand = {json.dumps(command)}\n{extra}\n'


def runtime(tmp_path: Path, fake, source: str = MCP, table: str | None = None, **config) -> Runtime:
    path = project(tmp_path, source, openai_conn(fake, "llm") + (mcp_table() if table is None else table))
    rt = Runtime(RuntimeConfig(environ={**KEYS, "PATH": "/usr/bin:/bin"}, **config))
    rt.load_source(path)
    return rt


def test_the_ir_carries_the_server_and_its_typed_tools(tmp_path):
    result = compile_source(MCP, "main.conc", mock=True)
    assert result.ok, rendered(result)
    (server,) = result.program.mcp_connections
    assert server.name == "Fake" and [t.name for t in server.tools] == ["echo", "add", "fail"]
    add = next(s for s in server.tool_schemas if s.method_name == "Fake::add")
    assert add.parameters["required"] == ["a"] and add.parameters["properties"]["b"]["default"] == 1.0
    assert result.program.models[0].tools == ["Fake"]
    # Without a transport the program still compiles, with a warning (spec 22).
    assert any(d.severity == "warning" and "has no transport" in d.message for d in result.diagnostics)


def test_a_model_calls_mcp_tools_and_reads_their_results(tmp_path, fake):
    fake.script(ToolCalls([ToolCall("Fake__echo", {"text": "hi"}), ToolCall("Fake__add", {"a": 2, "b": 3}),
                           ToolCall("Fake__fail", {})]), Text("done"))
    rt = runtime(tmp_path, fake, tool_permissions={"Fake": True})
    assert run(rt) == [("text", "done")]
    assert [name for name in (t["function"]["name"] for t in fake.requests[0].body["tools"])] == \
        ["Fake__echo", "Fake__add", "Fake__fail"]
    echo, add, fail = [text for _, text, _ in fake.requests[-1].tool_results()]
    assert (echo, add) == ("hi", "5.0")
    assert fail == "error: the tool failed on purpose"  # isError, marked as for local tools
    assert rt.metrics()["models"]["M"]["tool_calls"] == 3


def test_a_server_lacking_a_declared_tool_fails_the_call_naming_it(tmp_path, fake):
    source = MCP.replace("fn fail()", "fn missing_tool()")
    rt = runtime(tmp_path, fake, source, tool_permissions={"Fake": True})
    (channel, message), = run(rt)
    assert channel == "error" and "MCP server `Fake` does not provide tool `missing_tool`" in message
    assert fake.requests == []  # nothing was sent to the model


def test_a_server_that_cannot_start_fails_the_call(tmp_path, fake):
    rt = runtime(tmp_path, fake, table=mcp_table(command="no-such-mcp-server-xyz"), tool_permissions={"Fake": True})
    (channel, message), = run(rt)
    assert channel == "error" and "cannot start `no-such-mcp-server-xyz`" in message


def test_a_disabled_server_is_never_started(tmp_path, fake):
    fake.script(Text("plain"))
    rt = runtime(tmp_path, fake, table=mcp_table(command="no-such-mcp-server-xyz"))
    rt.on_log = lambda level, message: None
    assert run(rt) == [("text", "plain")]
    assert "tools" not in fake.requests[0].body


def test_the_server_gets_only_the_variables_its_env_table_names(tmp_path, fake):
    fake.script(ToolCall("Fake__echo", {"text": "x"}), Text("ok"))
    table = mcp_table('[mcp.Fake.env]\nSERVER_TOKEN = "MY_TOKEN"\n')
    rt = runtime(tmp_path, fake, table=table, tool_permissions={"Fake": True})
    rt.config.environ = {**KEYS, "PATH": "/usr/bin:/bin"}  # MY_TOKEN is not set
    (channel, message), = run(rt)
    assert channel == "error" and "needs environment variable MY_TOKEN" in message


def test_mcp_tools_cannot_be_called_directly_yet():
    result = compile_source(MCP.replace('match M.execute("use the server")', 'match Fake.echo("x")'), "main.conc", mock=True)
    assert not result.ok
    assert "is an MCP tool: models call it" in rendered(result)
