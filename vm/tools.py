"""The tool registry (spec 08, 25): what a model may call, and calling it.

A `tool` declaration is a struct type (its state) with methods; the loader
makes its one instance, a global that lives for the whole run. Here:

    ToolPermissions  which tools and methods the host lets models call
                     (nothing until the host enables it)
    ToolBox          the linked tools of a program: the schemas a request
                     carries, and running one call a model asked for
    ToolSet          the tools of one model call: wire names -> methods

A tool call never crashes the program: bad arguments, a tool that throws or
returns Err, and a call to an unknown or disabled tool all become an error
result the model reads and can react to (spec 08 "Tool Error Handling").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from concerto import ir
from concerto.vm.operators import as_fault, fault_value
from concerto.vm.values import NONE, Err, Ok, Some, StructValue, display, to_json

# Spec 25: the loop ends after this many rounds of tool calls.
MAX_TOOL_ROUNDS = 10
_BAD_WIRE_CHARS = str.maketrans({c: "_" for c in ":. <>,"})


def wire_name(method_name: str) -> str:
    """`Calculator::add` -> `Calculator__add`: both APIs want ^[a-zA-Z0-9_-]{1,64}$."""
    return method_name.translate(_BAD_WIRE_CHARS)[:64]


# ---------------------------------------------------------------- permissions
Permission = bool | Iterable[str] | Mapping[str, bool]


@dataclass(frozen=True)
class ToolPermissions:
    """The host's grant: tool name -> True (every method), False, a list of
    method names, or {method: bool}. `"*"` stands for every tool. Anything not
    granted is disabled: it is left out of the schemas a model sees, and a call
    to it anyway is answered with an error."""

    grants: Mapping[str, Permission] = field(default_factory=dict)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None) -> "ToolPermissions":
        grants: dict[str, Permission] = {}
        for name, value in (raw or {}).items():
            if not isinstance(name, str):
                raise TypeError(f"tool_permissions keys are tool names, got {name!r}")
            if isinstance(value, bool):
                grants[name] = value
            elif isinstance(value, Mapping):
                if not all(isinstance(k, str) and isinstance(v, bool) for k, v in value.items()):
                    raise TypeError(f"tool_permissions[{name!r}]: a map of method name -> bool")
                grants[name] = dict(value)
            elif isinstance(value, Iterable) and not isinstance(value, str):
                methods = list(value)
                if not all(isinstance(m, str) for m in methods):
                    raise TypeError(f"tool_permissions[{name!r}]: a list of method names")
                grants[name] = tuple(methods)
            else:
                raise TypeError(f"tool_permissions[{name!r}] must be a bool, a list of methods "
                                f"or a map of method -> bool, got {type(value).__name__}")
        return cls(grants)

    def allows(self, tool: str, method: str) -> bool:
        grant = self.grants.get(tool)
        if grant is None:
            grant = self.grants.get(tool.rsplit("::", 1)[-1], self.grants.get("*", False))
        if isinstance(grant, bool):
            return grant
        if isinstance(grant, Mapping):
            return bool(grant.get(method, False))
        return method in grant  # type: ignore[operator]


# ---------------------------------------------------------------- linked tools
@dataclass(frozen=True)
class LinkedMethod:
    tool: str
    name: str
    function: Any  # vm.loader.LinkedFunction; None for an MCP server's tool
    params: tuple[ir.ToolParam, ...]
    schema: ir.ToolSchemaEntry
    server: str | None = None  # the MCP server that runs it


class McpRef:
    """An `mcp` declaration as a value (`with_tools([GitHub])`)."""

    __slots__ = ("name",)
    concerto_type = "Mcp"

    def __init__(self, name: str) -> None:
        self.name = name

    def concerto_debug(self) -> str:
        return f"<mcp {self.name}>"

    def concerto_json(self) -> Any:
        return {"mcp": self.name}


@dataclass
class ToolSet:
    """The tools one model call offers, by the name the model calls them."""

    methods: dict[str, LinkedMethod] = field(default_factory=dict)

    def specs(self) -> list[Any]:
        from concerto.vm.providers.base import ToolSpec

        return [ToolSpec(wire, m.schema.description, m.schema.parameters) for wire, m in self.methods.items()]

    def __bool__(self) -> bool:
        return bool(self.methods)


@dataclass(frozen=True)
class ToolOutcome:
    """What the model reads back: `content`, and whether it reports a failure."""

    content: str
    is_error: bool


class ToolBox:
    def __init__(self, tools: dict[str, tuple[Any, Any, dict[str, LinkedMethod]]],
                 permissions: ToolPermissions | None = None, mcp: Any = None) -> None:
        # name -> (definition, instance or McpRef, methods by name)
        self.tools = tools
        self.permissions = permissions or ToolPermissions()
        self.mcp = mcp  # vm.mcp_servers.McpServers when the program declares servers
        self._warned: set[str] = set()

    def tool_of(self, value: Any) -> str | None:
        """The tool a value names (`[Calculator]` evaluates to instances)."""
        if isinstance(value, StructValue) and value.type_name in self.tools:
            return value.type_name
        if isinstance(value, McpRef) and value.name in self.tools:
            return value.name
        if isinstance(value, str) and value in self.tools:
            return value
        return None

    def toolset(self, names: Iterable[str], warn: Any = None) -> ToolSet:
        """The enabled methods of `names`, deduplicated (spec 25). `warn(text)`
        hears once per run about each tool the host has not enabled."""
        out = ToolSet()
        for name in dict.fromkeys(names):
            entry = self.tools.get(name)
            if entry is None:
                continue
            _, _, methods = entry
            enabled = [m for m in methods.values() if self.permissions.allows(name, m.name)]
            for method in enabled:
                out.methods[wire_name(method.schema.method_name)] = method
            # A tool the host granted in part was a choice; one it never
            # mentioned is more likely forgotten, so say so (once per run).
            if not enabled and warn is not None and name not in self._warned:
                self._warned.add(name)
                warn(f"tool `{name}` is disabled, so models cannot call it: enable it with "
                     f"`--allow-tool {name}` or RuntimeConfig(tool_permissions={{\"{name}\": True}})")
        return out

    def servers(self, tools: ToolSet) -> list[str]:
        """The MCP servers whose tools `tools` offers."""
        return list(dict.fromkeys(m.server for m in tools.methods.values() if m.server))

    def run(self, vm: Any, tools: ToolSet, wire: str, arguments: Mapping[str, Any], bridge: Any = None) -> ToolOutcome:
        """Run the call a model asked for, on `vm` (the calling task's machine);
        an MCP server's tool goes to the server through `bridge`."""
        method = tools.methods.get(wire)
        if method is None:
            known = ", ".join(tools.methods) or "none"
            return ToolOutcome(f"error: there is no tool `{wire}` (available: {known})", True)
        if method.server is not None:
            return self._run_mcp(method, arguments, bridge)
        try:
            args = _arguments(method, arguments)
        except _BadArguments as bad:
            return ToolOutcome(f"error: {bad}", True)
        try:
            result = vm.run_function(method.function, [self.tools[method.tool][1], *args])
        except Exception as exc:  # noqa: BLE001 - a Concerto fault goes back to the model
            fault = as_fault(exc)
            if fault is None:
                raise
            return ToolOutcome(f"error: {_message(fault_value(fault))}", True)
        if type(result) is Err:
            return ToolOutcome(f"error: {_message(result.value)}", True)
        if type(result) is Ok:
            result = result.value
        if isinstance(result, str):
            return ToolOutcome(result, False)
        return ToolOutcome(json.dumps(to_json(result), ensure_ascii=False), False)

    def _run_mcp(self, method: LinkedMethod, arguments: Mapping[str, Any], bridge: Any) -> ToolOutcome:
        from concerto.vm.mcp import McpError

        try:
            cleaned = _validated(method, arguments)
        except _BadArguments as bad:
            return ToolOutcome(f"error: {bad}", True)
        try:
            result = bridge.call(self.mcp.call, method.server, method.name, cleaned, bridge.spawn)
        except McpError as exc:
            return ToolOutcome(f"error: {exc}", True)
        if result.is_error and not result.text.startswith("error"):
            # OpenAI's wire format has no error flag: say it in the text, as for local tools.
            return ToolOutcome(f"error: {result.text}", True)
        return ToolOutcome(result.text, result.is_error)


class _BadArguments(Exception):
    pass


def _validated(method: LinkedMethod, given: Mapping[str, Any]) -> dict[str, Any]:
    """The model's JSON arguments checked against the method's schema, in
    coerce mode ("5" for an Int is 5): local and MCP tools alike."""
    from concerto.vm import schema as schemas

    unknown = sorted(set(given) - {p.name for p in method.params})
    if unknown:
        raise _BadArguments(f"`{method.name}` has no parameter `{unknown[0]}` "
                            f"(parameters: {', '.join(p.name for p in method.params) or 'none'})")
    cleaned, issues = schemas.validate(dict(given), method.schema.parameters, "coerce")
    if issues:
        raise _BadArguments(f"bad arguments for `{method.name}`: " + "; ".join(i.message for i in issues))
    return cleaned


def _arguments(method: LinkedMethod, given: Mapping[str, Any]) -> list[Any]:
    """The model's JSON arguments -> the method's parameters, in order."""
    from concerto.vm.models import to_value

    cleaned = _validated(method, given)
    props = method.schema.parameters.get("properties", {})
    out = []
    for p in method.params:
        optional = isinstance(p.type, str) and p.type.startswith("Option<")
        present = p.name in cleaned and cleaned[p.name] is not None
        if present:
            value = to_value(cleaned[p.name], props.get(p.name, {}), p.name)
            out.append(Some(value) if optional else value)
        elif optional:
            out.append(NONE)
        elif not p.required:
            out.append(to_value(p.default, props.get(p.name, {}), p.name))
        else:
            raise _BadArguments(f"`{method.name}` needs `{p.name}`")
    return out


def _message(err: Any) -> str:
    if isinstance(err, StructValue) and isinstance(err.fields.get("message"), str):
        return err.fields["message"]
    return display(err)


def link_tools(program: ir.Program, functions: Mapping[str, Any], globals_: dict[str, list[Any]],
               error: Any) -> dict[str, tuple[ir.ToolDef, Any, dict[str, LinkedMethod]]]:
    """Check the IR `tools` section, make each tool's instance (a global of
    the tool's name) and link its methods. `error(message, where)` raises.
    Runs before the functions are linked, so LOAD_GLOBAL finds the instances."""
    out: dict[str, tuple[ir.ToolDef, Any, dict[str, LinkedMethod]]] = {}
    declared = {f.name: f for f in program.functions}
    for tool in program.tools:
        where = f"tool `{tool.name}`"
        if tool.name in out or tool.name in globals_:
            error("clashes with another global of that name", where)
        state: dict[str, Any] = {}
        for f in tool.fields:
            state[f.name] = _initial(f)
        schemas = {s.method_name: s for s in tool.tool_schemas}
        methods: dict[str, LinkedMethod] = {}
        for m in tool.methods:
            fn = functions.get(m.function)
            if fn is None:
                error(f"method `{m.name}` names function `{m.function}`, which is not among the functions", where)
            nparams = len(declared[m.function].params)
            if nparams != len(m.params) + 1:
                error(f"method `{m.name}`: function `{m.function}` takes {nparams} parameter(s), "
                      f"expected self and {len(m.params)}", where)
            entry = schemas.get(f"{tool.name}::{m.name}") or schemas.get(m.name)
            if entry is None:
                entry = ir.ToolSchemaEntry(f"{tool.name}::{m.name}", m.description, _parameters(m.params))
            methods[m.name] = LinkedMethod(tool.name, m.name, fn, tuple(m.params), entry)
        instance = StructValue(tool.name, state)
        globals_[tool.name] = [instance]
        out[tool.name] = (tool, instance, methods)
    for server in program.mcp_connections:
        where = f"mcp server `{server.name}`"
        if server.name in out or server.name in globals_:
            error("clashes with another global of that name", where)
        schemas = {s.method_name: s for s in server.tool_schemas}
        methods = {}
        for t in server.tools:
            entry = schemas.get(f"{server.name}::{t.name}") or ir.ToolSchemaEntry(
                f"{server.name}::{t.name}", t.description, _parameters(t.params))
            methods[t.name] = LinkedMethod(server.name, t.name, None, tuple(t.params), entry, server.name)
        ref = McpRef(server.name)
        globals_[server.name] = [ref]
        out[server.name] = (server, ref, methods)
    return out


def _initial(f: ir.ToolField) -> Any:
    if isinstance(f.type, str) and f.type.startswith("Option<"):
        return NONE if f.default is None else Some(f.default)
    if f.type == "Float" and isinstance(f.default, int) and not isinstance(f.default, bool):
        return float(f.default)
    return f.default


def _parameters(params: Iterable[ir.ToolParam]) -> dict[str, Any]:
    """A plain schema for IR written without tool_schemas (every value allowed)."""
    props = {p.name: {"description": p.description} if p.description else {} for p in params}
    return {"type": "object", "properties": props, "required": [p.name for p in params if p.required]}
