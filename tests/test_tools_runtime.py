"""Tools at run time (spec 08, 25): the tool loop over both wire formats on the
loopback fake provider, through the host API and the CLI. The fake server
rejects a conversation the real APIs would reject (a tool result without its
call, a call left unanswered), so a pass here means the turns are well formed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from concerto import RunError, Runtime, RuntimeConfig
from tests.conftest import cli
from tests.fake_provider import FakeProvider, JsonObject, Text, ToolCall, ToolCalls
from tests.test_models import KEYS, anthropic_conn, openai_conn, project

TOOLS = """
tool Calculator {
    description: "Basic arithmetic",
    calls: Int = 0,

    @describe("Add two integers")
    @param("a", "First integer")
    @param("b", "Second integer")
    pub fn add(mut self, a: Int, b: Int = 10) -> Int {
        self.calls += 1;
        a + b
    }

    @describe("Divide a by b")
    @param("a", "Dividend")
    @param("b", "Divisor")
    pub fn div(self, a: Int, b: Int) -> Result<Int, ToolError> {
        if b == 0 { return Err(ToolError::new("Division by zero")); }
        Ok(a / b)
    }

    @describe("Crash on purpose")
    pub fn crash(self) -> Int {
        let xs = [1];
        xs[5]
    }
}

tool Notes {
    description: "Notes kept by the host",

    @describe("Look a note up")
    @param("key", "The note's key")
    pub fn lookup(self, key: String) -> Result<String, ToolError> {
        let found = await emit("notes:get", { "key": key });
        Ok("note ${key}: ${found}")
    }
}
"""

ALL = {"*": True}


def runtime(tmp_path: Path, fake: FakeProvider, main_src: str, flavour: str = "openai",
            model: str = "model M { provider: llm, tools: [Calculator] }", **config) -> Runtime:
    conn = openai_conn(fake, "llm") if flavour == "openai" else anthropic_conn(fake, "llm")
    path = project(tmp_path, TOOLS + model + "\n" + main_src, conn)
    rt = Runtime(RuntimeConfig(environ=KEYS, **config))
    rt.load_source(path)
    return rt


def run(rt: Runtime) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []
    rt.on("*", lambda channel, payload: seen.append((channel, payload)))
    rt.run()
    return seen


EXECUTE = """
fn main() {
    match M.execute("What is 1 + 2?") {
        Ok(r) => emit("text", r.text),
        Err(e) => emit("error", e.message),
    }
    emit("calls", Calculator.calls);
}
"""


def offered(request) -> list[str]:
    tools = request.body.get("tools") or []
    return [t["function"]["name"] if "function" in t else t["name"] for t in tools]


# ---------------------------------------------------------------- the loop
@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
def test_a_tool_call_runs_the_method_and_sends_the_result_back(tmp_path, fake, flavour):
    fake.script(ToolCall("Calculator__add", {"a": 1, "b": 2}), Text("It is 3."))
    rt = runtime(tmp_path, fake, EXECUTE, flavour, tool_permissions=ALL)
    assert run(rt) == [("text", "It is 3."), ("calls", 1)]
    first, second = fake.requests
    assert offered(first) == ["Calculator__add", "Calculator__div", "Calculator__crash"]
    schema = first.body["tools"][0]
    params = schema["function"]["parameters"] if flavour == "openai" else schema["input_schema"]
    assert params["required"] == ["a"] and params["properties"]["b"]["default"] == 10
    assert [(text, err) for _, text, err in second.tool_results()] == [("3", False)]
    stats = rt.metrics()["models"]["M"]
    assert stats["tool_calls"] == 1 and stats["requests"] == 2


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
def test_parallel_calls_are_all_answered_in_order(tmp_path, fake, flavour):
    fake.script(ToolCalls([ToolCall("Calculator__add", {"a": 1}), ToolCall("Calculator__div", {"a": 9, "b": 3}),
                           ToolCall("Calculator__div", {"a": 1, "b": 0})], text="Working."),
                Text("done"))
    rt = runtime(tmp_path, fake, EXECUTE, flavour, tool_permissions=ALL)
    assert run(rt) == [("text", "done"), ("calls", 1)]
    results = fake.requests[-1].tool_results()
    assert [text for _, text, _ in results] == ["11", "3", "error: Division by zero"]
    if flavour == "anthropic":
        assert [err for _, _, err in results] == [False, False, True]


@pytest.mark.parametrize("arguments, reply", [
    ({"b": 2}, "bad arguments for `add`"),
    ({"a": "five"}, "bad arguments for `add`"),
    ({"a": 1, "c": 3}, "`add` has no parameter `c`"),
])
def test_bad_arguments_go_back_to_the_model_as_errors(tmp_path, fake, arguments, reply):
    fake.script(ToolCall("Calculator__add", arguments), Text("sorry"))
    rt = runtime(tmp_path, fake, EXECUTE, tool_permissions=ALL)
    assert run(rt) == [("text", "sorry"), ("calls", 0)]
    (_, text, _), = fake.requests[-1].tool_results()
    assert text.startswith("error: ") and reply in text


def test_numeric_text_arguments_are_coerced(tmp_path, fake):
    fake.script(ToolCall("Calculator__add", {"a": "5", "b": 2.0}), Text("ok"))
    run(runtime(tmp_path, fake, EXECUTE, tool_permissions=ALL))
    assert [t for _, t, _ in fake.requests[-1].tool_results()] == ["7"]


def test_a_tool_that_faults_reports_the_fault_and_the_program_goes_on(tmp_path, fake):
    fake.script(ToolCall("Calculator__crash", {}), Text("it broke"))
    assert run(runtime(tmp_path, fake, EXECUTE, tool_permissions=ALL))[0] == ("text", "it broke")
    (_, text, _), = fake.requests[-1].tool_results()
    assert text.startswith("error: ") and "index" in text.lower()


def test_a_call_to_an_unknown_tool_is_answered_with_an_error(tmp_path, fake):
    fake.script(ToolCall("Shell__exec", {"command": "rm -rf /"}), Text("ok"))
    run(runtime(tmp_path, fake, EXECUTE, tool_permissions=ALL))
    (_, text, _), = fake.requests[-1].tool_results()
    assert "there is no tool `Shell__exec`" in text


def test_the_loop_stops_after_ten_rounds_with_an_agent_error(tmp_path, fake):
    fake.script(*[ToolCall("Calculator__add", {"a": i}) for i in range(11)])
    seen = run(runtime(tmp_path, fake, EXECUTE, tool_permissions=ALL))
    assert seen[0][0] == "error" and "after 10 rounds of tool calls" in seen[0][1]
    assert seen[1] == ("calls", 10)
    assert len(fake.requests) == 11


def test_a_tool_can_await_the_host_while_the_model_waits(tmp_path, fake):
    fake.script(ToolCall("Notes__lookup", {"key": "k1"}), Text("found it"))
    rt = runtime(tmp_path, fake, EXECUTE, model="model M { provider: llm, tools: [Notes] }",
                 tool_permissions={"Notes": True})

    async def get(payload):
        return f"value-of-{payload['key']}"

    rt.on_emit("notes:get", get)
    # Listeners see the awaited emit too, before the answer.
    assert run(rt)[:2] == [("notes:get", {"key": "k1"}), ("text", "found it")]
    assert [t for _, t, _ in fake.requests[-1].tool_results()] == ["note k1: value-of-k1"]


def test_tool_rounds_add_up_in_the_response(tmp_path, fake):
    fake.script(ToolCall("Calculator__add", {"a": 1}), Text("eleven"))
    rt = runtime(tmp_path, fake, """
    fn main() {
        let r = M.execute("sum").unwrap();
        emit("tokens", r.tokens_in);
    }
    """, tool_permissions=ALL)
    (_, tokens), = run(rt)
    per_request = [r for r in fake.requests]
    assert tokens > 0 and len(per_request) == 2
    assert tokens == rt.metrics()["models"]["M"]["tokens_in"]


# ---------------------------------------------------------------- permissions
def test_tools_are_disabled_until_the_host_enables_them(tmp_path, fake):
    fake.script(Text("no tools"))
    rt = runtime(tmp_path, fake, EXECUTE)
    logs: list[tuple[str, str]] = []
    rt.on_log = lambda level, message: logs.append((level, message))
    assert run(rt)[0] == ("text", "no tools")
    assert "tools" not in fake.requests[0].body
    assert logs and logs[0][0] == "warn" and "tool `Calculator` is disabled" in logs[0][1]


def test_a_disabled_tool_the_model_calls_anyway_is_refused(tmp_path, fake):
    fake.script(ToolCall("Calculator__div", {"a": 1, "b": 1}), Text("ok"))
    rt = runtime(tmp_path, fake, EXECUTE, tool_permissions={"Calculator": ["add"]})
    rt.on_log = lambda level, message: None
    run(rt)
    assert offered(fake.requests[0]) == ["Calculator__add"]
    (_, text, _), = fake.requests[-1].tool_results()
    assert "there is no tool `Calculator__div`" in text


@pytest.mark.parametrize("grant, names", [
    ({"Calculator": True}, ["Calculator__add", "Calculator__div", "Calculator__crash"]),
    ({"Calculator": {"add": True, "div": False}}, ["Calculator__add"]),
    ({"*": True, "Calculator": False}, []),
])
def test_permission_forms(tmp_path, fake, grant, names):
    fake.script(Text("ok"))
    rt = runtime(tmp_path, fake, EXECUTE, tool_permissions=grant)
    rt.on_log = lambda level, message: None
    run(rt)
    assert offered(fake.requests[0]) == names


def test_a_bad_permission_table_is_a_config_error(tmp_path, fake):
    rt = runtime(tmp_path, fake, EXECUTE, tool_permissions={"Calculator": 3})
    with pytest.raises(RunError) as info:
        rt.run()
    assert info.value.kind == "ConfigError" and "tool_permissions['Calculator']" in info.value.message


# ---------------------------------------------------------------- with_tools / without_tools
def test_with_tools_and_without_tools_choose_what_one_call_offers(tmp_path, fake):
    fake.script(*[Text(f"r{i}") for i in range(5)])
    rt = runtime(tmp_path, fake, """
    fn main() {
        let a = M.execute("static");
        let b = M.with_tools([Notes]).execute("added");
        let c = M.without_tools().execute("none");
        let d = M.without_tools().with_tools([Notes, Calculator, Notes]).execute("chained");
        let keep = M.without_tools();
        let e = keep.with_tools([Notes]);
        let f = keep.execute("builder unchanged");
    }
    """, tool_permissions={"Calculator": ["add"], "Notes": True})
    run(rt)
    assert [offered(r) for r in fake.requests] == [
        ["Calculator__add"],
        ["Calculator__add", "Notes__lookup"],
        [],
        ["Notes__lookup", "Calculator__add"],
        [],
    ]


# ---------------------------------------------------------------- structured output and chat
SCHEMA = """
schema Sum { total: Int, note: String }
fn main() {
    match M.execute_with_schema<Sum>("Add 1 and 2") {
        Ok(s) => emit("sum", s.total),
        Err(e) => emit("error", e.message),
    }
}
"""


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
def test_execute_with_schema_can_use_tools_first(tmp_path, fake, flavour):
    fake.script(ToolCall("Calculator__add", {"a": 1, "b": 2}), JsonObject({"total": 3, "note": "used add"}))
    rt = runtime(tmp_path, fake, SCHEMA, flavour, tool_permissions={"Calculator": ["add"]})
    assert run(rt) == [("sum", 3)]
    assert [t for _, t, _ in fake.requests[1].tool_results()] == ["3"]
    first = fake.requests[0].body
    if flavour == "anthropic":
        # The model may call a tool or the output tool, so the choice is "any".
        assert first["tool_choice"] == {"type": "any"}
        assert offered(fake.requests[0]) == ["Calculator__add", "Sum"]
    else:
        assert first["response_format"]["type"] == "json_schema"
        assert offered(fake.requests[0]) == ["Calculator__add"]


def test_chat_runs_the_tool_loop_too(tmp_path, fake):
    fake.script(ToolCall("Calculator__add", {"a": 4, "b": 4}), Text("eight"))
    rt = runtime(tmp_path, fake, """
    fn main() {
        let r = M.chat([Message::user("4 + 4?")]).unwrap();
        emit("text", r.text);
    }
    """, tool_permissions=ALL)
    assert run(rt) == [("text", "eight")]
    assert [t for _, t, _ in fake.requests[-1].tool_results()] == ["8"]


def test_memory_keeps_the_prompt_and_the_final_answer_only(tmp_path, fake):
    fake.script(ToolCall("Calculator__add", {"a": 1}), Text("eleven"))
    rt = runtime(tmp_path, fake, """
    memory log: Memory = Memory::new();
    fn main() {
        let r = M.with_memory(log).execute("1 + 10?");
        emit("n", log.len());
        emit("last", log.messages()[1].content);
    }
    """, tool_permissions=ALL)
    assert run(rt) == [("n", 2), ("last", "eleven")]


def test_tool_state_is_fresh_for_every_run(tmp_path, fake):
    rt = runtime(tmp_path, fake, EXECUTE, tool_permissions=ALL)
    fake.script(ToolCall("Calculator__add", {"a": 1}), Text("a"))
    assert run(rt)[-1] == ("calls", 1)
    fake.script(ToolCall("Calculator__add", {"a": 1}), Text("b"))
    assert run(rt)[-1] == ("calls", 1)


# ---------------------------------------------------------------- CLI
def cli_run(path: Path, *args: str) -> tuple[int, list, str]:
    code, out, err = cli("run", str(path), "--emit-format", "jsonl", *args, env_extra=KEYS)
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def test_cli_allow_tool_enables_a_tool(tmp_path, fake):
    fake.script(ToolCall("Calculator__add", {"a": 2, "b": 2}), Text("four"))
    path = project(tmp_path, TOOLS + "model M { provider: llm, tools: [Calculator] }\n" + EXECUTE,
                   openai_conn(fake, "llm"))
    code, emits, err = cli_run(path, "--allow-tool", "Calculator.add", "--metrics")
    assert code == 0, err
    assert emits == [{"channel": "text", "payload": "four"}, {"channel": "calls", "payload": 1}]
    assert offered(fake.requests[0]) == ["Calculator__add"]
    assert "tool calls" in err.lower()


def test_cli_without_allow_tool_warns_and_offers_nothing(tmp_path, fake):
    fake.script(Text("plain"))
    path = project(tmp_path, TOOLS + "model M { provider: llm, tools: [Calculator] }\n" + EXECUTE,
                   openai_conn(fake, "llm"))
    code, emits, err = cli_run(path)
    assert code == 0, err
    assert "tools" not in fake.requests[0].body
    assert "--allow-tool Calculator" in err


@pytest.mark.parametrize("flag, message", [
    ("Nope", "the program has no tool `Nope`"),
    ("Calculator.nope", "tool `Calculator` has no method `nope`"),
])
def test_cli_allow_tool_names_are_checked(tmp_path, fake, flag, message):
    path = project(tmp_path, TOOLS + "model M { provider: llm, tools: [Calculator] }\n" + EXECUTE,
                   openai_conn(fake, "llm"))
    code, _, err = cli_run(path, "--allow-tool", flag)
    assert code == 1 and message in err and "Traceback" not in err
    assert fake.requests == []


def test_the_tools_example_runs_offline():
    example = Path(__file__).parent.parent / "examples" / "tools" / "main.conc"
    code, out, err = cli("run", str(example), "--emit-format", "jsonl",
                         "--allow-tool", "Calculator", "--allow-tool", "Notebook")
    assert code == 0, err
    emits = [(e["channel"], e["payload"]) for e in map(json.loads, out.splitlines())]
    assert emits == [
        ("answer", "12 / 4 + 5 = 8."),
        ("answer", "1 / 0 has no value: division by zero is undefined."),
        ("noted", True),
        ("notes", ["12 / 4 + 5 = 8"]),
        ("answer", "Hello!"),
    ]


def test_a_tool_in_a_module_is_allowed_by_its_short_name_on_the_mock_provider(tmp_path):
    (tmp_path / "main.conc").write_text("""
mod helpers {
    pub tool Clock {
        description: "Time",
        @describe("Now")
        pub fn now(self) -> Int { 42 }
    }
}
model M { provider: demo, tools: [helpers::Clock] }
fn main() { emit("r", M.execute("time?").unwrap().text); }
""")
    (tmp_path / "r.json").write_text(json.dumps([{"tool_calls": [{"name": "helpers__Clock__now"}]}, "It is 42."]))
    code, emits, err = cli_run(tmp_path / "main.conc", "--mock-replies", str(tmp_path / "r.json"),
                               "--allow-tool", "Clock", "--metrics")
    assert code == 0, err
    assert emits == [{"channel": "r", "payload": "It is 42."}]
    row = next(line for line in err.splitlines() if "model M" in line)
    assert [c.strip() for c in row.split("│") if c.strip()][5] == "1"  # tool calls
