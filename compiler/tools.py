"""Tools (spec 08, 25): the checks the spec makes compile errors, and the IR
`tools` section with each method's function schema.

A tool's state fields and methods compile as a struct and its impl (the
resolver registers both); this module only adds what makes it a tool: the
`description`, `@describe` / `@param` on every `pub fn`, literal defaults,
parameter types a JSON object can carry, and the schemas the model is shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from concerto import ir
from concerto.compiler import ast as A
from concerto.compiler import types as T
from concerto.compiler.manifest import MCP_TRANSPORTS

if TYPE_CHECKING:
    from concerto.compiler.codegen import FunctionCompiler, ProgramBuilder
    from concerto.compiler.resolve import ModuleInfo

TOOL_DECORATORS = ("describe", "param")


def tool_defs(pb: "ProgramBuilder") -> list[ir.ToolDef]:
    files = {m.path: m.file for m in pb.symbols.modules}
    out = []
    for qual, (decl, module) in pb.symbols.tools.items():
        out.append(_tool_def(pb, qual, decl, module, files.get(module.path, module.file)))
    return out


# `mcp` block settings (spec 08); spec 22 moves them to Concerto.toml [mcp.NAME],
# which wins where both are given.
_MCP_SETTINGS = ("transport", "command", "url")


def mcp_defs(pb: "ProgramBuilder", manifest: dict[str, dict[str, Any]] | None) -> list[ir.McpDef]:
    from concerto.compiler.codegen import FunctionCompiler
    from concerto.compiler.llm import _const_value

    files = {m.path: m.file for m in pb.symbols.modules}
    out = []
    for qual, (decl, module) in pb.symbols.mcps.items():
        file = files.get(module.path, module.file)
        fc = FunctionCompiler(pb, module, "<mcp>")
        config: dict[str, Any] = {}
        for setting in decl.settings:
            value = _const_value(setting.value)
            if setting.name not in _MCP_SETTINGS:
                pb.error(file, setting.span, f"unknown mcp setting `{setting.name}`",
                         hint="settings: transport, command, url (or [mcp." + decl.name + "] in Concerto.toml)")
            elif setting.name == "transport" and value not in MCP_TRANSPORTS:
                pb.error(file, setting.value.span, "transport is " + " or ".join(f'"{t}"' for t in MCP_TRANSPORTS))
            else:
                config[setting.name] = value
        for f in decl.fields:
            pb.error(file, f.span, "an mcp block declares tools, not state",
                     hint="declare tools as `fn name(param: Type) -> Result<T, ToolError>;`")
        for d in decl.decorators:
            pb.error(file, d.span, f"`@{d.name}` cannot decorate an mcp block")
        config.update((manifest or {}).get(decl.name, {}))
        if "transport" not in config:
            pb.warning(file, decl.span, f"mcp `{decl.name}` has no transport: add [mcp.{decl.name}] to Concerto.toml",
                       hint="models can use its tools only once it says how to start the server")
        tools = []
        schemas = []
        for m in decl.methods:
            method = _method(pb, fc, file, decl, m, mcp=True)
            if method is None:
                continue
            tools.append(ir.McpToolDef(m.name, method.description, method.params, method.return_type))
            schemas.append(ir.ToolSchemaEntry(f"{qual}::{m.name}", method.description, _parameters(pb, method)))
        if not decl.methods:
            pb.error(file, decl.span, f"mcp `{decl.name}` declares no tools",
                     hint="declare each tool the model may use: `fn name(param: Type) -> Result<T, ToolError>;`")
        timeout = config.get("timeout")
        out.append(ir.McpDef(qual, module.path or "main", config.get("transport"), config.get("command"),
                             list(config.get("args", [])), dict(config.get("env", {})), config.get("url"),
                             float(timeout) if timeout is not None else None, tools, schemas))
    return out


def _tool_def(pb: "ProgramBuilder", qual: str, decl: A.ToolDecl, module: "ModuleInfo", file: str) -> ir.ToolDef:
    from concerto.compiler.codegen import FunctionCompiler

    fc = FunctionCompiler(pb, module, "<tool>")
    description = _description(pb, file, decl)
    for d in decl.decorators:
        pb.error(file, d.span, f"`@{d.name}` cannot decorate a tool", hint="decorate its methods or the model instead")
    fields = [f for f in (_field(pb, fc, file, decl, f) for f in decl.fields) if f is not None]
    methods: list[ir.ToolMethod] = []
    schemas: list[ir.ToolSchemaEntry] = []
    for m in decl.methods:
        if not m.public:
            continue  # a private helper: not shown to the model, no decorators needed
        method = _method(pb, fc, file, decl, m)
        if method is None:
            continue
        methods.append(method)
        schemas.append(ir.ToolSchemaEntry(f"{qual}::{m.name}", method.description, _parameters(pb, method)))
    if not any(m.public for m in decl.methods):
        pb.error(file, decl.span, f"tool `{decl.name}` has no `pub fn` methods, so a model could never call it",
                 hint="add `@describe(\"...\") pub fn name(self, ...) { ... }`")
    return ir.ToolDef(qual, module.path or "main", description, fields, methods, schemas)


def _description(pb: "ProgramBuilder", file: str, decl: A.ToolDecl) -> str:
    from concerto.compiler.llm import _const_value

    found: str | None = None
    for s in decl.settings:
        if s.name != "description":
            pb.error(file, s.span, f"unknown tool setting `{s.name}`",
                     hint="a tool has `description: \"...\"`; state fields are written `name: Type = value`")
            continue
        value = _const_value(s.value)
        if found is not None:
            pb.error(file, s.span, f"tool `{decl.name}` has two descriptions")
        elif not isinstance(value, str) or not value.strip():
            pb.error(file, s.value.span, "a tool's description must be a non-empty string literal")
        else:
            found = value
    if found is None and not any(s.name == "description" for s in decl.settings):
        pb.error(file, decl.span, f"tool `{decl.name}` needs a `description`",
                 hint="add `description: \"what the tool is for\",`: the model reads it to decide when to use the tool")
    return found or ""


def _field(pb: "ProgramBuilder", fc: "FunctionCompiler", file: str, decl: A.ToolDecl,
           f: A.FieldDecl) -> ir.ToolField | None:
    from concerto.compiler.llm import _NOT_CONST, _const_value

    t = fc.type_str(f.type)
    if t is None:
        return None
    if f.default is None:
        if T.split(t)[0] == "Option":
            return ir.ToolField(f.name, t, None)
        pb.error(file, f.span, f"tool state `{f.name}` needs a starting value",
                 hint=f"write `{f.name}: {t} = ...`")
        return None
    value = _const_value(f.default)
    if value is _NOT_CONST:
        pb.error(file, f.default.span, f"the starting value of tool state `{f.name}` must be a literal",
                 hint="numbers, strings, booleans, and arrays or maps of them")
        return None
    found = _json_type(value)
    head, args = T.split(t)
    if found is not None and not T.compatible(args[0] if head == "Option" and args else t, found):
        pb.error(file, f.default.span, f"mismatched types: `{f.name}` is `{t}`, found `{found}`")
        return None
    return ir.ToolField(f.name, t, value)


def _json_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, int):
        return "Int"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "String"
    return None  # arrays and maps: their element types are checked no further


def _method(pb: "ProgramBuilder", fc: "FunctionCompiler", file: str, decl: A.ToolDecl | A.McpDecl,
            m: A.FnDecl, mcp: bool = False) -> ir.ToolMethod | None:
    from concerto.compiler.llm import _NOT_CONST, _const_value, _unrepresentable

    where = f"{'MCP tool' if mcp else 'tool method'} `{decl.name}.{m.name}`"
    ok = True
    if mcp and (m.has_self or m.body is not None):
        pb.error(file, m.span, f"{where} is implemented by the server: no `self`, no body",
                 hint=f"write `fn {m.name}(param: Type) -> Result<T, ToolError>;`")
        ok = False
    elif not mcp and not m.has_self:
        pb.error(file, m.span, f"{where} must take `self`", hint=f"write `pub fn {m.name}(self, ...)`")
        ok = False
    describe = [d for d in m.decorators if d.name == "describe"]
    params_d = [d for d in m.decorators if d.name == "param"]
    for d in m.decorators:
        if d.name not in TOOL_DECORATORS:
            pb.error(file, d.span, f"`@{d.name}` is not supported on {where}",
                     hint="tool methods take @describe(\"...\") and @param(\"name\", \"...\")")
            ok = False
    description = ""
    if not describe:
        pb.error(file, m.span, f"{where} needs `@describe(\"...\")`",
                 hint="the model reads it to decide when to call the method")
        ok = False
    elif len(describe) > 1:
        pb.error(file, describe[1].span, f"{where} has two `@describe` decorators")
        ok = False
    else:
        texts = _string_args(describe[0])
        if texts is None or len(texts) != 1 or not texts[0].strip():
            pb.error(file, describe[0].span, "`@describe` takes one non-empty string: @describe(\"what it does\")")
            ok = False
        else:
            description = texts[0]
    names = [p.name for p in m.params]
    described: dict[str, str] = {}
    for d in params_d:
        texts = _string_args(d)
        if texts is None or len(texts) != 2:
            pb.error(file, d.span, "`@param` takes the parameter's name and its description: "
                     "@param(\"name\", \"what it is\")")
            ok = False
            continue
        pname, text = texts
        if pname not in names:
            pb.error(file, d.span, f"`@param(\"{pname}\", ...)`: {where} has no parameter `{pname}`",
                     hint="parameters: " + (", ".join(names) or "none besides self"))
            ok = False
        elif pname in described:
            pb.error(file, d.span, f"parameter `{pname}` of {where} is described twice")
            ok = False
        else:
            described[pname] = text
    for p in m.params:
        if p.name not in described:
            pb.error(file, p.span, f"parameter `{p.name}` of {where} needs `@param(\"{p.name}\", \"...\")`",
                     hint="the model reads it to know what to pass")
            ok = False
    params = []
    for p in m.params:
        t = fc.type_str(p.type) if p.type is not None else None
        if t is None:
            ok = False
            continue
        bad = _unrepresentable(pb, t, ())
        if bad:
            pb.error(file, p.type.span if p.type else p.span,
                     f"parameter `{p.name}` of {where} has type `{t}`, which {bad}")
            ok = False
            continue
        required = p.default is None and T.split(t)[0] != "Option"
        default = None
        if p.default is not None:
            default = _const_value(p.default)
            if default is _NOT_CONST:
                pb.error(file, p.default.span, f"the default of tool parameter `{p.name}` must be a literal",
                         hint="the model is shown it in the schema")
                ok = False
                continue
        params.append(ir.ToolParam(p.name, t, described.get(p.name, ""), required, default))
    if not ok:
        return None
    ret = fc.type_str(m.ret) if m.ret else "Nil"
    return ir.ToolMethod(m.name, f"{decl_qual(fc, decl)}::{m.name}", description, params, ret or "any")


def decl_qual(fc: "FunctionCompiler", decl: A.ToolDecl) -> str:
    return f"{fc.module.path}::{decl.name}" if fc.module.path else decl.name


def _string_args(d: A.Decorator) -> list[str] | None:
    from concerto.compiler.llm import _const_value

    out = []
    for a in d.args:
        value = _const_value(a.value)
        if a.name is not None or not isinstance(value, str):
            return None
        out.append(value)
    return out


def _parameters(pb: "ProgramBuilder", method: ir.ToolMethod) -> dict[str, Any]:
    """Spec 08 "Auto-Generated Parameter Schemas": Option<T> is T, not required;
    a default is shown and makes the parameter optional."""
    from concerto.compiler.llm import _type_json

    props: dict[str, Any] = {}
    for p in method.params:
        head, args = T.split(p.type)
        inner = args[0] if head == "Option" and args else p.type
        prop = dict(_type_json(pb, inner, ()))
        if p.default is not None:
            prop["default"] = p.default
        if p.description:
            prop["description"] = p.description
        props[p.name] = prop
    return {"type": "object", "properties": props, "required": [p.name for p in method.params if p.required]}
