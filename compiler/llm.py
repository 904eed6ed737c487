"""Code generation for the LLM parts of the language: model calls (spec 07),
schemas -> JSON Schema (spec 12), memories (spec 24), and the IR `models`,
`schemas`, `memories` and `connections` sections.

Model method calls compile to spec 16's model opcodes:

    M.execute(p)                  CALL_MODEL        name=M arg="execute"  argc=1
    M.execute_with_schema<S>(p)   CALL_MODEL_SCHEMA name=M type_name=S    argc=1|2
    M.stream(p)                   CALL_MODEL_STREAM name=M                argc=1
    M.chat(msgs)                  CALL_MODEL_CHAT   name=M                argc=1
    M.with_memory(mem)            CALL_MODEL        name=M arg="with_memory" argc=1|2
    M.with_tools([A, B])          CALL_MODEL        name=M arg="with_tools"  argc=1
    M.without_tools()             CALL_MODEL        name=M arg="without_tools" argc=0

Without `name` the receiver (a Model or ModelBuilder value) sits under the
arguments: that is how builder chains (`M.with_memory(m).execute(p)`) compile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from concerto import ir
from concerto.compiler import ast as A
from concerto.compiler import types as T
from concerto.compiler.diagnostics import Diagnostic
from concerto.compiler.resolve import schema_mode

if TYPE_CHECKING:
    from concerto.compiler.codegen import FunctionCompiler, ProgramBuilder

# Built-in record types: field name -> type (spec 02 Response/Message, spec 07 stream chunks).
BUILTIN_RECORDS: dict[str, dict[str, str]] = {
    "Response": {"text": "String", "tokens_in": "Int", "tokens_out": "Int", "model": "String",
                 "provider": "String", "latency_ms": "Int"},
    "Message": {"role": "String", "content": "String"},
    "StreamChunk": {"text": "String", "index": "Int"},
    # Errors of the async, emit and pipeline features (spec 10, 15).
    "EmitError": {"message": "String", "channel": "String"},
    "TimeoutError": {"message": "String"},
    "PipelineError": {"message": "String", "pipeline": "String", "stage": "String"},
    "CancelledError": {"message": "String"},
}
MODEL_TYPES = ("Model", "ModelBuilder")

_RESULT_RESPONSE = "Result<Response, AgentError>"

# Model fields (spec 07) and what each must be; `model` is the older name of `base`.
_MODEL_FIELDS: dict[str, str] = {
    "provider": "connection", "base": "String", "model": "String", "temperature": "Float",
    "max_tokens": "Int", "system_prompt": "String", "timeout": "Float", "top_p": "Float",
    "stop_sequences": "Array<String>", "retry_policy": "Map", "tools": "Array", "memory": "memory",
}


class LlmError(Exception):
    """Abandon one construct after its diagnostic was recorded."""


# ---------------------------------------------------------------- model calls
def model_call(fc: "FunctionCompiler", e: A.Call, callee: A.Field, model: str | None) -> str | None:
    """Compile `<model or builder>.method(args)`; with `model` None the receiver
    has already been pushed."""
    method = callee.name
    named = {a.name: a for a in e.args if a.name is not None}
    positional = [a.value for a in e.args if a.name is None]
    kw: dict[str, Any] = {"name": model} if model else {}

    def push_args(expected: int, allowed_named: tuple[str, ...] = ()) -> int:
        for name, arg in named.items():
            if name not in allowed_named:
                fc.error(arg.span, f"`{method}` has no parameter named `{name}`")
                raise LlmError()
        if len(positional) != expected:
            fc.error(e.span, f"`{method}` takes {expected} argument(s), {len(positional)} given")
            raise LlmError()
        for a in positional:
            fc.expr(a)
        argc = expected
        for name in allowed_named:
            if name in named:
                fc.expr(named[name].value)
                argc += 1
        return argc

    if method in ("execute", "stream"):
        t = fc.expr(positional[0]) if len(positional) == 1 and not named else None
        if len(positional) != 1 or named:
            fc.error(e.span, f"`{method}` takes one prompt: {method}(\"...\")")
            raise LlmError()
        _check_prompt(fc, positional[0], t)
        fc.span = e.span
        if method == "execute":
            fc.emit("CALL_MODEL", arg="execute", argc=1, **kw)
            return _RESULT_RESPONSE
        fc.emit("CALL_MODEL_STREAM", argc=1, **kw)
        return "Result<Stream, AgentError>"
    if method == "execute_with_schema":
        if len(e.type_args) != 1:
            fc.error(e.span, "`execute_with_schema` needs the schema: execute_with_schema<Schema>(prompt)")
            raise LlmError()
        schema = fc.type_str(e.type_args[0])
        if schema is None:
            raise LlmError()
        if schema not in fc.symbols.schemas:
            fc.error(e.type_args[0].span, f"`{schema}` is not a schema",
                     hint="declare it with `schema Name { ... }`")
            raise LlmError()
        argc = push_args(1, ("retry_message",))
        fc.span = e.span
        fc.emit("CALL_MODEL_SCHEMA", type_name=schema, argc=argc, **kw)
        return f"Result<{schema}, AgentError>"
    if method == "chat":
        argc = push_args(1)
        fc.span = e.span
        fc.emit("CALL_MODEL_CHAT", argc=argc, **kw)
        return _RESULT_RESPONSE
    if method == "with_memory":
        # with_memory(m), with_memory(m, auto: false) or, as upstream examples write it, with_memory(m, false)
        extra = [a for a in named.values() if a.name != "auto"]
        if not 1 <= len(positional) <= 2 or extra or (len(positional) == 2 and named):
            fc.error(e.span, "`with_memory` takes a memory: with_memory(conversation) or with_memory(conversation, auto: false)")
            raise LlmError()
        t = fc.expr(positional[0])
        if t not in (None, "Memory", "Any"):
            fc.error(positional[0].span, f"`with_memory` needs a Memory, found `{t}`")
        argc = 1
        flag = positional[1] if len(positional) == 2 else (named["auto"].value if "auto" in named else None)
        if flag is not None:
            at = fc.expr(flag)
            if at not in (None, "Bool", "Any"):
                fc.error(flag.span, f"`auto` must be a Bool, found `{at}`")
            argc = 2
        fc.span = e.span
        fc.emit("CALL_MODEL", arg="with_memory", argc=argc, **kw)
        return "ModelBuilder"
    if method == "with_tools":
        # Spec 25: with_tools([A, B]) adds tools for one call.
        if len(positional) != 1 or named:
            fc.error(e.span, "`with_tools` takes a list of tools: with_tools([Calculator])")
            raise LlmError()
        arg = positional[0]
        if isinstance(arg, A.ArrayExpr):
            quals = [_tool_name(fc.pb, fc, item) for item in arg.items]
            if any(q is None for q in quals):
                raise LlmError()
            for item, qual in zip(arg.items, quals):
                fc.span = item.span
                fc.emit("LOAD_GLOBAL", name=qual)
            fc.emit("BUILD_ARRAY", arg=len(quals))
        else:
            t = fc.expr(arg)
            head, args = T.split(t) if t else (None, [])
            if t not in (None, "Any") and not (head == "Array" and (not args or args[0] in ("Any", "Mcp")
                                                                   or args[0] in fc.symbols.tools)):
                fc.error(arg.span, f"`with_tools` needs an Array of tools, found `{t}`")
                raise LlmError()
        fc.span = e.span
        fc.emit("CALL_MODEL", arg="with_tools", argc=1, **kw)
        return "ModelBuilder"
    if method == "without_tools":
        if e.args:
            fc.error(e.span, "`without_tools` takes no arguments")
            raise LlmError()
        fc.span = e.span
        fc.emit("CALL_MODEL", arg="without_tools", argc=0, **kw)
        return "ModelBuilder"
    fc.error(callee.span, f"no method `{method}` on a model",
             hint="models have execute, execute_with_schema<S>, chat, stream, with_memory, with_tools and without_tools")
    raise LlmError()


def _check_prompt(fc: "FunctionCompiler", arg: A.Expr, t: str | None) -> None:
    if t not in (None, "String", "Prompt", "Any"):
        fc.error(arg.span, f"a prompt must be a String, found `{t}`")


# ---------------------------------------------------------------- schemas
def schema_json(pb: "ProgramBuilder", qual: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON Schema of a schema declaration (spec 12 "Schema to JSON Schema").
    Nested schemas are inlined with their own "title"; a schema that contains
    itself is reported by check_schemas before this runs."""
    decl, module = pb.symbols.schemas[qual]
    from concerto.compiler.codegen import FunctionCompiler

    fc = FunctionCompiler(pb, module, "<schema>")
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in decl.fields:
        if f.enum is not None:
            prop: dict[str, Any] = {"type": "string", "enum": list(f.enum)}
        else:
            prop = _type_json(pb, fc.type_str(f.type) or "Any", seen + (qual,))
        if f.default is not None and _const_value(f.default) is not _NOT_CONST:
            prop = {**prop, "default": _const_value(f.default)}
        props[f.name] = prop
        if not f.optional and f.default is None:
            required.append(f.name)
    return {"type": "object", "title": qual, "properties": props, "required": required}


def _type_json(pb: "ProgramBuilder", t: str, seen: tuple[str, ...]) -> dict[str, Any]:

    head, args = T.split(t)
    simple = {"String": "string", "Int": "integer", "Float": "number", "Bool": "boolean", "Nil": "null"}
    if head in simple:
        return {"type": simple[head]}
    if head == "Array":
        return {"type": "array", "items": _type_json(pb, args[0], seen) if args else {}}
    if head == "Map":
        return {"type": "object", "additionalProperties": _type_json(pb, args[1], seen) if len(args) == 2 else {}}
    if head == "Option":
        inner = _type_json(pb, args[0], seen) if args else {}
        return {"anyOf": [inner, {"type": "null"}]}
    if head in pb.symbols.schemas and head not in seen:
        return schema_json(pb, head, seen)
    if head in pb.symbols.enums:
        decl = pb.symbols.enums[head]
        if all(v.kind == "unit" for v in decl.variants):
            return {"type": "string", "enum": [v.name for v in decl.variants]}
    return {}


def check_schemas(pb: "ProgramBuilder") -> None:
    """Field types a JSON object can carry; defaults are literals; no schema
    contains itself (an LLM cannot produce an infinite object)."""
    from concerto.compiler.codegen import FunctionCompiler

    files = {m.path: m.file for m in pb.symbols.modules}
    for qual, (decl, module) in pb.symbols.schemas.items():
        file = files.get(module.path, module.file)
        if decl.generics:
            pb.error(file, decl.span, f"generic schemas are not supported yet: `{decl.name}<{', '.join(decl.generics)}>`",
                     hint="declare one schema per concrete type")
        fc = FunctionCompiler(pb, module, "<schema>")
        for f in decl.fields:
            if f.default is not None and _const_value(f.default) is _NOT_CONST:
                pb.error(file, f.default.span, f"the default of schema field `{f.name}` must be a literal",
                         hint="numbers, strings, booleans, and arrays or maps of them")
            if f.type is None:
                continue
            t = fc.type_str(f.type)
            if t is None:
                continue
            bad = _unrepresentable(pb, t, (qual,))
            if bad:
                pb.error(file, f.type.span, f"schema field `{f.name}` has type `{t}`, which {bad}")
            elif f.default is not None and isinstance(f.default, A.Literal):
                from concerto.compiler.codegen import literal_type

                if not T.compatible(t, literal_type(f.default.value)):
                    pb.error(file, f.default.span, f"default of `{f.name}` must be `{t}`, found `{literal_type(f.default.value)}`")


def _unrepresentable(pb: "ProgramBuilder", t: str, path: tuple[str, ...]) -> str | None:

    head, args = T.split(t)
    if head in ("String", "Int", "Float", "Bool", "Any"):
        return None
    if head in ("Array", "Option"):
        return _unrepresentable(pb, args[0], path) if args else None
    if head == "Map":
        if args and args[0] != "String":
            return "has non-String keys (JSON object keys are strings)"
        return _unrepresentable(pb, args[1], path) if len(args) == 2 else None
    if head in pb.symbols.schemas:
        if head in path:
            return f"contains `{head}` again (a schema cannot contain itself)"
        decl, module = pb.symbols.schemas[head]
        from concerto.compiler.codegen import FunctionCompiler

        fc = FunctionCompiler(pb, module, "<schema>")
        # Only a way back into a schema on `path` matters here: any other fault
        # of a nested schema is reported at that schema's own field.
        for f in decl.fields:
            inner = fc.type_str(f.type) if f.type is not None else None
            reason = _unrepresentable(pb, inner, path + (head,)) if inner else None
            if reason and reason.startswith("contains `"):
                return reason
        return None
    if head in pb.symbols.enums and all(v.kind == "unit" for v in pb.symbols.enums[head].variants):
        return None
    return "has no JSON form (use String, Int, Float, Bool, Array, Map<String, _>, Option or another schema)"


def schema_defs(pb: "ProgramBuilder") -> list[dict[str, Any]]:
    out = []
    for qual, (decl, _module) in pb.symbols.schemas.items():
        out.append({"name": qual, "json_schema": schema_json(pb, qual), "validation_mode": schema_mode(decl)})
    return out


# ---------------------------------------------------------------- models
def model_defs(pb: "ProgramBuilder", connections: dict[str, ir.ConnectionConfig] | None,
               mock_missing: bool) -> tuple[list[dict[str, Any]], dict[str, ir.ConnectionConfig]]:
    """The IR `models` section, and the connections the models use.

    connections is the manifest's table (None when there is no Concerto.toml);
    with mock_missing, a connection the manifest lacks becomes a mock one
    (`concerto run --mock` on a program without a manifest)."""
    files = {m.path: m.file for m in pb.symbols.modules}
    out: list[dict[str, Any]] = []
    used: dict[str, ir.ConnectionConfig] = {}
    for qual, (decl, module) in pb.symbols.models.items():
        file = files.get(module.path, module.file)
        fields = {f.name: f for f in decl.fields}
        if decl.keyword == "agent" and "provider" not in fields:
            if any(k in fields for k in ("command", "connector", "transport")):
                pb.error(file, decl.span, f"`agent {decl.name}` is an external process agent (spec 26), which this runtime does not run yet",
                         hint="LLM-backed agents are written `model Name { provider: ..., base: ... }`")
            else:
                pb.error(file, decl.span, f"`agent {decl.name}` needs a `provider`")
            continue
        config: dict[str, Any] = {}
        connection = None
        memory = None
        tools: list[str] = []
        for f in decl.fields:
            kind = _MODEL_FIELDS.get(f.name)
            if kind is None:
                import difflib

                close = difflib.get_close_matches(f.name, list(_MODEL_FIELDS), n=1)
                pb.error(file, f.span, f"unknown model field `{f.name}`",
                         hint=f"did you mean `{close[0]}`?" if close else "fields: " + ", ".join(_MODEL_FIELDS))
                continue
            if kind == "connection":
                if not isinstance(f.value, A.Name):
                    pb.error(file, f.value.span, "`provider` names a connection from Concerto.toml: provider: openai")
                    continue
                connection = f.value.name
                continue
            if kind == "memory":
                if not isinstance(f.value, A.Name) or f"{module.path + '::' if module.path else ''}{f.value.name}" not in pb.symbols.memories:
                    pb.error(file, f.value.span, "`memory` names a `memory` declaration")
                    continue
                memory = f"{module.path + '::' if module.path else ''}{f.value.name}"
                continue
            if f.name == "tools":
                tools = tool_refs(pb, module, file, f.value)
                continue
            value = _const_value(f.value)
            if value is _NOT_CONST:
                pb.error(file, f.value.span, f"model field `{f.name}` must be a literal")
                continue
            err = _check_field_value(f.name, kind, value)
            if err:
                pb.error(file, f.value.span, err)
                continue
            config["model" if f.name in ("base", "model") else f.name] = value
        if connection is None:
            pb.error(file, decl.span, f"model `{decl.name}` needs a `provider` naming a connection",
                     hint="add `provider: openai,` and [connections.openai] to Concerto.toml")
            continue
        conn = (connections or {}).get(connection)
        if conn is None:
            if mock_missing:
                conn = ir.ConnectionConfig(provider="mock")
            else:
                span = fields["provider"].value.span
                if connections is None:
                    pb.error(file, span, f"model `{decl.name}` uses connection `{connection}`, but no Concerto.toml was found",
                             hint="create Concerto.toml with [project] and [connections." + connection + "] beside or above the source, or run with --mock")
                else:
                    pb.error(file, span, f"model `{decl.name}` references unknown connection `{connection}`",
                             hint=f"add [connections.{connection}] to Concerto.toml (known: {', '.join(connections) or 'none'})")
                continue
        used[connection] = conn
        if "model" in config:
            config["model"] = conn.models.get(config["model"], config["model"])
        elif conn.default_model:
            config["model"] = conn.default_model
        from concerto.compiler.concurrency import check_decorators

        # @retry/@timeout/@cache/@log are checked and take named arguments; others pass as written.
        checked = {d.name: d.args for d in check_decorators(pb, file, decl.decorators, f"model `{decl.name}`")}
        decorators = [{"name": d.name, "args": checked[d.name] if d.name in checked else _decorator_args(d)}
                      for d in decl.decorators]
        out.append({"name": qual, "module": module.path or "main", "connection": connection, "config": config,
                    "tools": tools, "memory": memory, "decorators": decorators, "methods": []})
    return out, used


def tool_refs(pb: "ProgramBuilder", module: Any, file: str, value: A.Expr) -> list[str]:
    """`tools: [A, B]` -> the tools' qualified names (spec 08 "Attaching Tools")."""
    if not isinstance(value, A.ArrayExpr):
        pb.error(file, value.span, "`tools` is a list of tools: tools: [Calculator, FileManager]")
        return []
    from concerto.compiler.codegen import FunctionCompiler

    fc = FunctionCompiler(pb, module, "<model>")
    out: list[str] = []
    for item in value.items:
        qual = _tool_name(pb, fc, item)
        if qual is None:
            continue
        if qual in out:
            pb.error(file, item.span, f"tool `{qual}` is listed twice")
            continue
        out.append(qual)
    return out


def _tool_name(pb: "ProgramBuilder", fc: Any, item: A.Expr) -> str | None:
    segments = [item.name] if isinstance(item, A.Name) else item.segments if isinstance(item, A.Path) else None
    if segments is None:
        fc.error(item.span, "`tools` lists tools by name: tools: [Calculator]")
        return None
    qual = "::".join(fc.resolve_path(segments))
    kind = pb.symbols.item_kind(qual)
    if kind in ("tool", "mcp"):
        fc.check_visible(qual, item.span)
        return qual
    fc.error(item.span, f"`{'::'.join(segments)}` is not a tool" if kind else f"cannot find tool `{'::'.join(segments)}`",
             hint="declare it with `tool Name { description: \"...\", ... }`")
    return None


def _decorator_args(d: A.Decorator) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for i, a in enumerate(d.args):
        v = _const_value(a.value)
        args[a.name or str(i)] = None if v is _NOT_CONST else v
    return args


_NOT_CONST = object()


def _const_value(e: A.Expr) -> Any:
    if isinstance(e, A.Literal):
        return e.value
    if isinstance(e, A.Unary) and e.op == "-" and isinstance(e.operand, A.Literal) and isinstance(e.operand.value, (int, float)):
        return -e.operand.value
    if isinstance(e, A.ArrayExpr):
        items = [_const_value(i) for i in e.items]
        return _NOT_CONST if any(i is _NOT_CONST for i in items) else items
    if isinstance(e, A.MapExpr):
        out = {}
        for k, v in e.entries:
            kv, vv = _const_value(k) if not isinstance(k, A.Name) else k.name, _const_value(v)
            if kv is _NOT_CONST or vv is _NOT_CONST:
                return _NOT_CONST
            out[str(kv)] = vv
        return out
    if isinstance(e, A.Interp) and all(isinstance(p, str) for p in e.parts):
        return "".join(e.parts)
    return _NOT_CONST


def _check_field_value(name: str, kind: str, value: Any) -> str | None:
    ok = {
        "String": isinstance(value, str),
        "Int": isinstance(value, int) and not isinstance(value, bool),
        "Float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "Array<String>": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "Map": isinstance(value, dict),
    }.get(kind, True)
    if not ok:
        return f"model field `{name}` must be {kind}"
    if name == "temperature" and not 0.0 <= float(value) <= 2.0:
        return "temperature must be between 0.0 and 2.0"
    if name in ("max_tokens",) and value < 1:
        return "max_tokens must be at least 1"
    if name == "timeout" and value <= 0:
        return "timeout must be more than 0 seconds"
    return None


# ---------------------------------------------------------------- memories
def memory_defs(pb: "ProgramBuilder") -> list[dict[str, Any]]:
    files = {m.path: m.file for m in pb.symbols.modules}
    out = []
    for qual, (decl, module) in pb.symbols.memories.items():
        file = files.get(module.path, module.file)
        value = decl.value
        limit: Any = None
        ok = (isinstance(value, A.Call) and isinstance(value.callee, A.Path)
              and value.callee.segments == ["Memory", "new"] and len(value.args) <= 1)
        if ok and value.args:
            limit = _const_value(value.args[0].value)
            ok = isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1
        if not ok:
            pb.error(file, value.span, f"memory `{decl.name}` is created with Memory::new() or Memory::new(N) (N >= 1)")
            continue
        if decl.type is not None and decl.type.name != "Memory":
            pb.error(file, decl.type.span, f"memory `{decl.name}` has type Memory, not `{decl.type}`")
        out.append({"name": qual, "max_messages": limit})
    return out


def connect_block_errors(pb: "ProgramBuilder") -> list[Diagnostic]:
    out = []
    for decl, module in pb.symbols.connect_blocks:
        out.append(Diagnostic(module.file, decl.span.line, decl.span.col,
                              f"`connect {decl.name}` blocks were removed by spec 22: connections live in Concerto.toml",
                              hint=f"move it to [connections.{decl.name}] in Concerto.toml (api_key: env(\"X\") becomes api_key_env = \"X\")"))
    return out
