"""Tools at compile time (spec 08, 25): the rules the spec makes compile
errors, the IR `tools` section with its function schemas, and tool state and
methods called directly from Concerto."""

from __future__ import annotations

import json
import textwrap

import pytest

from concerto import ir
from concerto.compiler import compile_source
from conftest import emitted, rendered

CALC = """
tool Calculator {
    description: "Basic math",
    calls: Int = 0,
    last: Option<String>,

    @describe("Add two numbers")
    @param("a", "First number")
    @param("b", "Second number")
    pub fn add(mut self, a: Int, b: Int = 2) -> Int {
        self.calls += 1;
        a + b
    }

    @describe("Divide a by b")
    @param("a", "Dividend")
    @param("b", "Divisor, 1 when left out")
    pub fn div(self, a: Float, b: Option<Float>) -> Result<Float, ToolError> {
        let d = b ?? 1.0;
        if d == 0.0 { return Err(ToolError::new("Division by zero")); }
        Ok(a / d)
    }

    @describe("Label some items")
    @param("items", "The items")
    @param("sep", "Separator")
    pub fn join(self, items: Array<String>, sep: String = ", ") -> String { items.join(sep) }

    fn helper(self) -> Int { 1 }
}
"""


def errors_of(src: str) -> list[str]:
    result = compile_source(textwrap.dedent(src), "main.conc")
    assert not result.ok, "expected compile errors"
    return [f"{d.line}:{d.col}: {d.message}" for d in result.diagnostics]


def one_error(src: str, fragment: str) -> str:
    found = errors_of(src)
    hits = [e for e in found if fragment in e]
    assert hits, f"no error containing {fragment!r} in {found}"
    return hits[0]


# ---------------------------------------------------------------- IR
def test_tool_ir_section_snapshot(snapshot):
    result = compile_source(CALC + 'fn main() {}\n', "main.conc")
    assert result.ok, rendered(result)
    tools = json.loads(ir.encode(result.program))["tools"]
    assert tools == snapshot


def test_function_schema_follows_the_spec_08_type_table():
    result = compile_source(CALC + 'fn main() {}\n', "main.conc")
    assert result.ok, rendered(result)
    schemas = {s.method_name: s.parameters for s in result.program.tools[0].tool_schemas}
    # Private helpers are not shown to the model.
    assert set(schemas) == {"Calculator::add", "Calculator::div", "Calculator::join"}
    add = schemas["Calculator::add"]
    assert add["properties"]["a"] == {"type": "integer", "description": "First number"}
    assert add["properties"]["b"] == {"type": "integer", "default": 2, "description": "Second number"}
    assert add["required"] == ["a"]  # a default makes a parameter optional
    div = schemas["Calculator::div"]
    assert div["properties"]["b"]["type"] == "number"  # Option<T> is T, not required
    assert div["required"] == ["a"]
    join = schemas["Calculator::join"]
    assert join["properties"]["items"]["type"] == "array"
    assert join["properties"]["items"]["items"] == {"type": "string"}


def test_model_tools_are_listed_in_the_ir_models_section(tmp_path):
    result = compile_source(CALC + 'model M { provider: demo, tools: [Calculator] }\nfn main() {}\n',
                            "main.conc", mock=True)
    assert result.ok, rendered(result)
    assert result.program.models[0].tools == ["Calculator"]


# ---------------------------------------------------------------- state and direct calls
def test_tool_state_lives_for_the_run_and_mut_self_changes_it():
    out = emitted(CALC + """
    fn main() {
        emit("a", Calculator.add(1, 2));
        emit("b", Calculator.add(5));
        emit("calls", Calculator.calls);
        emit("last", Calculator.last);
        emit("div", Calculator.div(1.0, Some(0.0)));
        emit("join", Calculator.join(["x", "y"]));
    }
    """)
    assert out == [3, 7, 2, None, {"err": {"message": "Division by zero"}}, "x, y"]


def test_builtin_errors_have_a_new_constructor():
    out = emitted("""
    fn main() {
        let e = ToolError::new("nope");
        emit("m", e.message);
        let a = AgentError::new("down");
        emit("a", a.message);
    }
    """)
    assert out == ["nope", "down"]


# ---------------------------------------------------------------- rules the compiler enforces
TOOL_HEAD = 'tool T {\n    description: "d",\n'


@pytest.mark.parametrize("body, fragment", [
    ('tool T {\n    @describe("x")\n    pub fn f(self) {}\n}\n', "tool `T` needs a `description`"),
    ('tool T {\n    description: "",\n    @describe("x")\n    pub fn f(self) {}\n}\n', "description must be a non-empty string"),
    ('tool T {\n    description: "a",\n    description: "b",\n    @describe("x")\n    pub fn f(self) {}\n}\n', "two descriptions"),
    ('tool T {\n    description: "a",\n    label: "b",\n    @describe("x")\n    pub fn f(self) {}\n}\n', "unknown tool setting `label`"),
    (TOOL_HEAD + '    pub fn f(self) {}\n}\n', "needs `@describe(\"...\")`"),
    (TOOL_HEAD + '    @describe(1)\n    pub fn f(self) {}\n}\n', "`@describe` takes one non-empty string"),
    (TOOL_HEAD + '    @describe("x")\n    @describe("y")\n    pub fn f(self) {}\n}\n', "two `@describe`"),
    (TOOL_HEAD + '    @describe("x")\n    pub fn f(self, a: Int) {}\n}\n', "parameter `a` of tool method `T.f` needs `@param"),
    (TOOL_HEAD + '    @describe("x")\n    @param("b", "y")\n    pub fn f(self) {}\n}\n', "has no parameter `b`"),
    (TOOL_HEAD + '    @describe("x")\n    @param("a", "y")\n    @param("a", "z")\n    pub fn f(self, a: Int) {}\n}\n',
     "described twice"),
    (TOOL_HEAD + '    @describe("x")\n    @param("a")\n    pub fn f(self, a: Int) {}\n}\n', "`@param` takes the parameter's name"),
    (TOOL_HEAD + '    @describe("x")\n    pub fn f() {}\n}\n', "must take `self`"),
    (TOOL_HEAD + '    @describe("x")\n    @retry(max: 2)\n    pub fn f(self) {}\n}\n', "`@retry` is not supported on tool method"),
    (TOOL_HEAD + '    n: Int,\n    @describe("x")\n    pub fn f(self) {}\n}\n', "tool state `n` needs a starting value"),
    (TOOL_HEAD + '    n: Int = 1 + 1,\n    @describe("x")\n    pub fn f(self) {}\n}\n', "must be a literal"),
    (TOOL_HEAD + '    n: Int = "one",\n    @describe("x")\n    pub fn f(self) {}\n}\n', "`n` is `Int`, found `String`"),
    (TOOL_HEAD + '    @describe("x")\n    @param("g", "y")\n    pub fn f(self, g: fn(Int) -> Int) {}\n}\n', "has no JSON form"),
    (TOOL_HEAD + '    @describe("x")\n    @param("a", "y")\n    pub fn f(self, a: Int = 1 + 2) {}\n}\n',
     "default of tool parameter `a` must be a literal"),
    (TOOL_HEAD + '    fn f(self) {}\n}\n', "has no `pub fn` methods"),
    ('@log\n' + TOOL_HEAD + '    @describe("x")\n    pub fn f(self) {}\n}\n', "`@log` cannot decorate a tool"),
])
def test_tool_rules_are_compile_errors(body, fragment):
    one_error(body + "fn main() {}\n", fragment)


def test_describe_errors_point_at_the_method():
    err = one_error(TOOL_HEAD + '    pub fn f(self) {}\n}\nfn main() {}\n', "needs `@describe")
    assert err.startswith("3:5:")


def test_model_tools_must_name_tools():
    src = CALC + "struct P { x: Int }\n"
    assert "is not a tool" in one_error(src + 'model M { provider: demo, tools: [P] }\nfn main() {}\n', "not a tool")
    one_error(src + 'model M { provider: demo, tools: [Nope] }\nfn main() {}\n', "cannot find tool `Nope`")
    one_error(src + 'model M { provider: demo, tools: [Calculator, Calculator] }\nfn main() {}\n', "listed twice")
    one_error(src + 'model M { provider: demo, tools: Calculator }\nfn main() {}\n', "`tools` is a list of tools")


def test_with_tools_takes_tools_and_without_tools_takes_nothing():
    src = CALC + 'struct P { x: Int }\nmodel M { provider: demo }\n'
    one_error(src + 'fn main() { let r = M.with_tools([P]).execute("x"); }\n', "`P` is not a tool")
    one_error(src + 'fn main() { let r = M.with_tools(1).execute("x"); }\n', "needs an Array of tools")
    one_error(src + 'fn main() { let r = M.without_tools(1).execute("x"); }\n', "takes no arguments")
    ok = compile_source(src + 'fn main() {\n    let r = M.without_tools().with_tools([Calculator]).execute("x");\n}\n',
                        "main.conc", mock=True)
    assert ok.ok, rendered(ok)


def test_error_new_needs_one_string():
    one_error('fn main() { let e = ToolError::new(1); }\n', "an error message must be a String")
    one_error('fn main() { let e = ToolError::new("a", "b"); }\n', "takes one message")


def test_tool_and_mcp_stay_usable_as_names():
    out = emitted("""
    fn tool(x: Int) -> Int { x + 1 }
    fn main() {
        let mcp = 2;
        emit("a", tool(mcp));
        let tool = 5;
        emit("b", tool);
    }
    """)
    assert out == [3, 5]


@pytest.mark.parametrize("damage, message", [
    (lambda d: d["tools"][0]["methods"][0].update(function="Calculator::gone"),
     "tool `Calculator`: method `add` names function `Calculator::gone`, which is not among the functions"),
    (lambda d: d["tools"][0]["methods"][0]["params"].pop(),
     "function `Calculator::add` takes 3 parameter(s), expected self and 1"),
    (lambda d: d["models"][0]["tools"].append("Ghost"),
     "model `M` uses tool `Ghost`, which is not in `tools`"),
])
def test_the_loader_checks_the_tools_section(damage, message):
    from concerto.vm.loader import IRLoadError, load_object

    result = compile_source(CALC + 'model M { provider: demo, tools: [Calculator] }\nfn main() {}\n',
                            "main.conc", mock=True)
    assert result.ok, rendered(result)
    data = json.loads(ir.encode(result.program))
    damage(data)
    with pytest.raises(IRLoadError) as info:
        load_object(data)
    assert message in str(info.value)


MCP_HEAD = 'mcp S {\n    transport: "stdio",\n    command: "srv",\n'


@pytest.mark.parametrize("body, fragment", [
    (MCP_HEAD + '    port: "1",\n    @describe("x")\n    fn f();\n}\n', "unknown mcp setting `port`"),
    ('mcp S {\n    transport: "pipe",\n    @describe("x")\n    fn f();\n}\n', 'transport is "stdio" or "sse"'),
    (MCP_HEAD + '    n: Int = 1,\n    @describe("x")\n    fn f();\n}\n', "declares tools, not state"),
    (MCP_HEAD + '}\n', "declares no tools"),
    (MCP_HEAD + '    @describe("x")\n    fn f(self);\n}\n', "implemented by the server: no `self`, no body"),
    (MCP_HEAD + '    @describe("x")\n    fn f() { }\n}\n', "implemented by the server: no `self`, no body"),
    (MCP_HEAD + '    fn f();\n}\n', "MCP tool `S.f` needs `@describe"),
    (MCP_HEAD + '    @describe("x")\n    fn f(q: String);\n}\n', "parameter `q` of MCP tool `S.f` needs `@param"),
])
def test_mcp_block_rules_are_compile_errors(body, fragment):
    one_error(body + "fn main() {}\n", fragment)
