"""Decode, validate and link `.conc-ir`.

Linking turns each instruction into a tuple `(opcode_int, a, b)` whose operands
are already what the dispatch loop needs: local names become slot indexes,
constants become Python objects, jump targets stay indexes, callees become
LinkedFunction objects, natives become Python callables, globals become cells.
The hot loop then does no name or dictionary look-up per instruction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from concerto import ir
from concerto.stdlib import load as load_stdlib
from concerto.stdlib.registry import Native
from concerto.vm import opcodes as O
from concerto.vm.decorators import chain
from concerto.vm.llm_values import MemoryStore, ModelRef
from concerto.vm.tools import link_tools
from concerto.vm.pipeline import LinkedPipeline, LinkedStage
from concerto.vm.values import Closure


class IRLoadError(Exception):
    """The IR cannot be run. `where` names the section, function and instruction."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.message = message
        self.where = where


class LinkedFunction:
    __slots__ = ("name", "code", "spans", "nlocals", "nparams", "ncaptures", "self_type", "file", "local_names",
                 "base_code", "base_spans", "jit", "decorated")

    def __init__(self, name: str, file: str) -> None:
        self.name = name
        self.file = file
        self.code: list[tuple] = []
        self.spans: list[tuple[int, int]] = []
        self.nlocals = 0
        self.nparams = 0
        self.ncaptures = 0
        self.self_type: str | None = None
        self.local_names: list[str] = []
        # The linked code before superinstructions: what vm/pycompile.py translates.
        self.base_code: list[tuple] = []
        self.base_spans: list[tuple[int, int]] = []
        # The tier-2 Python function, `jit(vm, *args, *captures)`, once compiled.
        self.jit: Any = None
        # `(vm, *args) -> value` through the function's decorators, when it has any.
        self.decorated: Any = None

    def __repr__(self) -> str:
        return f"<function {self.name}>"


@dataclass
class Program:
    """A linked program, ready to run."""

    ir: ir.Program
    functions: dict[str, LinkedFunction]
    globals: dict[str, list[Any]]  # name -> one-element cell
    methods: dict[str, dict[str, LinkedFunction]]  # type name -> method -> function
    entry: LinkedFunction
    init: LinkedFunction | None
    source_file: str
    warnings: list[str] = field(default_factory=list)
    jit_compiled: int | None = None  # functions compiled to Python (vm/pycompile.py)
    jit_source: str = ""
    jit_failures: list[str] = field(default_factory=list)  # the interpreter ran instead
    pipelines: dict[str, LinkedPipeline] = field(default_factory=dict)
    # tool name -> (definition, instance, methods): see vm/tools.py
    tools: dict[str, Any] = field(default_factory=dict)


def load_bytes(data: bytes | str, source_file: str | None = None) -> Program:
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError as e:
        raise IRLoadError(f"not valid JSON ({e})") from None
    except UnicodeDecodeError as e:
        raise IRLoadError(f"not valid UTF-8 (byte {e.start}: {e.reason})") from None
    return load_object(raw, source_file)


def load_object(raw: Any, source_file: str | None = None) -> Program:
    if not isinstance(raw, dict):
        raise IRLoadError("the IR must be a JSON object")
    warnings = check_version(raw.get("version"))
    for section in ir.REQUIRED_SECTIONS:
        if section not in raw:
            raise IRLoadError(f"missing required section `{section}`")
    try:
        program = msgspec.convert(raw, type=ir.Program)
    except msgspec.ValidationError as e:
        raise IRLoadError(_validation_message(str(e))) from None
    linked = link(program, source_file)
    linked.warnings = warnings + linked.warnings
    return linked


def _validation_message(text: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.functions[0].instructions[2].arg`"
    if " - at `" in text:
        what, where = text.rsplit(" - at `", 1)
        return f"{where.rstrip('`')}: {what}"
    return text


def check_version(version: Any) -> list[str]:
    if not isinstance(version, str):
        raise IRLoadError("missing or invalid `version` (expected a string like \"0.1.0\")")
    try:
        major, minor, *_ = (int(p) for p in version.split("."))
    except ValueError:
        raise IRLoadError(f"invalid IR version {version!r}") from None
    want_major, want_minor, _ = (int(p) for p in ir.IR_VERSION.split("."))
    if major != want_major:
        raise IRLoadError(f"IR version {version} is not supported: this VM runs IR {want_major}.x")
    if minor != want_minor:
        return [f"IR version {version} differs from this VM's {ir.IR_VERSION} in the minor version; running anyway"]
    return []


def link(program: ir.Program, source_file: str | None = None) -> Program:
    registry = load_stdlib()
    file = source_file or program.source_file
    functions: dict[str, LinkedFunction] = {}
    for fn in program.functions:
        if fn.name in functions:
            raise IRLoadError(f"function `{fn.name}` is defined twice", "functions")
        lf = LinkedFunction(fn.name, file)
        functions[fn.name] = lf
    globals_: dict[str, list[Any]] = {}
    for fn in program.functions:
        lf = functions[fn.name]
        if fn.decorators:
            lf.decorated = _decorated(lf, fn.decorators, f"`{fn.name}`")
            globals_[fn.name] = [Closure(None, (), lf.decorated, fn.name)]
        else:
            globals_[fn.name] = [Closure(lf, (), None, fn.name)]
    for hm in program.hashmaps:
        globals_.setdefault(hm.name, [None])
    for model in program.models:
        if model.name in globals_:
            raise IRLoadError(f"model `{model.name}` clashes with another global of that name", "models")
        globals_[model.name] = [ModelRef(model.name)]
    for mem in program.memories:
        if mem.name in globals_:
            raise IRLoadError(f"memory `{mem.name}` clashes with another global of that name", "memories")
        if mem.max_messages is not None and mem.max_messages < 1:
            raise IRLoadError(f"memory `{mem.name}`: max_messages must be at least 1", "memories")
        globals_[mem.name] = [MemoryStore(mem.name, mem.max_messages)]
    _check_llm_sections(program)
    tools = link_tools(program, functions, globals_, _raise_load_error)
    constants = program.constants
    for i, c in enumerate(constants):
        if c.index != i:
            raise IRLoadError(f"constant {i} has index {c.index}", "constants")
    pipeline_names = frozenset(p.name for p in program.pipelines)
    methods: dict[str, dict[str, LinkedFunction]] = {}
    for fn in program.functions:
        if fn.self_type:
            methods.setdefault(fn.self_type, {})[fn.name.rsplit("::", 1)[1]] = functions[fn.name]
    for fn in program.functions:
        _link_function(fn, functions[fn.name], functions, globals_, constants, registry, pipeline_names)
    meta = program.metadata
    entry_name = meta.entry_point if meta else "main"
    if entry_name not in functions:
        raise IRLoadError(f"entry point `{entry_name}` is not among the functions", "metadata")
    init = None
    if meta and meta.init:
        if meta.init not in functions:
            raise IRLoadError(f"init function `{meta.init}` is not among the functions", "metadata")
        init = functions[meta.init]
    linked = Program(program, functions, globals_, methods, functions[entry_name], init, file)
    linked.pipelines = _link_pipelines(program, functions)
    linked.tools = tools
    return linked


def _raise_load_error(message: str, where: str) -> None:
    raise IRLoadError(message, where)


def _decorated(lf: LinkedFunction, decorators: list[ir.DecoratorDef], what: str) -> Any:
    call = chain(lambda vm, args: vm.run_function(lf, args), decorators, what)
    return lambda vm, *args: call(vm, list(args))


def _link_pipelines(program: ir.Program, functions: dict[str, LinkedFunction]) -> dict[str, LinkedPipeline]:
    out: dict[str, LinkedPipeline] = {}
    for p in program.pipelines:
        where = f"pipeline `{p.name}`"
        if p.name in out:
            raise IRLoadError("pipeline is defined twice", where)
        if not p.stages:
            raise IRLoadError("a pipeline needs at least one stage", where)
        stages = []
        for st in p.stages:
            lf = functions.get(st.function)
            if lf is None:
                raise IRLoadError(f"stage `{st.name}` names unknown function `{st.function}`", where)
            if lf.nparams != 1:
                raise IRLoadError(f"stage `{st.name}`: its function must take one parameter", where)
            base = (lambda f: lambda vm, args: vm.run_function(f, args))(lf)
            stages.append(LinkedStage(st.name, chain(base, st.decorators, f"stage `{st.name}` of `{p.name}`")))
        out[p.name] = LinkedPipeline(p.name, stages)
    return out


def _link_function(
    fn: ir.Function,
    lf: LinkedFunction,
    functions: dict[str, LinkedFunction],
    globals_: dict[str, list[Any]],
    constants: list[ir.Constant],
    registry: Any,
    pipelines: frozenset[str],
) -> None:
    slots = {name: i for i, name in enumerate(fn.locals)}
    for p in fn.params:
        if p.name not in slots and p.name != "self":
            raise IRLoadError(f"parameter `{p.name}` is not in `locals`", f"function `{fn.name}`")
    lf.nlocals = len(fn.locals)
    lf.nparams = len(fn.params)
    lf.ncaptures = len(fn.captures)
    lf.self_type = fn.self_type
    lf.local_names = list(fn.locals)
    n = len(fn.instructions)
    code: list[tuple] = []
    for i, ins in enumerate(fn.instructions):
        where = f"function `{fn.name}`, instruction {i} ({ins.op})"
        op = ins.op
        if op not in ir.ALL_OPCODES:
            raise IRLoadError(f"unknown opcode `{op}`", where)
        code.append(_link_instr(ins, where, n, slots, functions, globals_, constants, registry, pipelines))
        lf.spans.append(tuple(ins.span))  # type: ignore[arg-type]
    if not code or code[-1][0] not in (O.RETURN, O.JUMP, O.MATCH_FAIL, O.THROW, O.RETHROW):
        raise IRLoadError("the last instruction must be RETURN (or a jump)", f"function `{fn.name}`")
    lf.base_code, lf.base_spans = code, lf.spans
    lf.code, lf.spans = _fuse(code, lf.spans)


_JUMPS = {O.JUMP, O.JUMP_IF_FALSE, O.JUMP_IF_TRUE, O.TRY_BEGIN, O.ITER_NEXT, O.COALESCE}
_CMPS = {O.LT, O.GT, O.LTE, O.GTE, O.EQ, O.NEQ}
_CONST_ARITH = {O.ADD: O.C_ADD, O.SUB: O.C_SUB, O.MUL: O.C_MUL, O.MOD: O.C_MOD}


def _fuse(code: list[tuple], spans: list) -> tuple[list[tuple], list]:
    """Peephole superinstructions for the commonest sequences.

    A sequence is fused only when no jump lands inside it; jump targets are
    then renumbered. The fused instruction keeps the span of the operation
    that can fail, so runtime errors still point at the right column."""
    n = len(code)
    targets = {ins[1] for ins in code if ins[0] in _JUMPS}
    out: list[tuple] = []
    out_spans: list = []
    remap = [0] * (n + 1)

    def free(i: int, k: int) -> bool:
        return i + k <= n and all((i + j) not in targets for j in range(1, k))

    i = 0
    while i < n:
        op, a, b = code[i]
        start = len(out)
        remap[i] = start
        nxt = code[i + 1] if i + 1 < n else None
        if (op == O.LOAD_LOCAL and free(i, 4) and nxt[0] == O.LOAD_CONST and type(nxt[1]) is int
                and code[i + 2][0] == O.ADD and code[i + 3][0] == O.STORE_LOCAL and code[i + 3][1] == a):
            out.append((O.INC_LOCAL, a, nxt[1]))
            out_spans.append(spans[i + 2])
            width = 4
        elif (op == O.LOAD_LOCAL and free(i, 4) and nxt[0] == O.LOAD_CONST and code[i + 2][0] == O.LT
              and code[i + 3][0] == O.JUMP_IF_FALSE):
            out.append((O.LC_LT_JIF, a, (nxt[1], code[i + 3][1])))
            out_spans.append(spans[i + 2])
            width = 4
        elif op in _CMPS and free(i, 2) and nxt[0] == O.JUMP_IF_FALSE:
            out.append((O.CMP_JIF, nxt[1], op))
            out_spans.append(spans[i])
            width = 2
        elif op == O.LOAD_CONST and type(a) is int and free(i, 2) and nxt[0] in _CONST_ARITH:
            out.append((_CONST_ARITH[nxt[0]], a, None))
            out_spans.append(spans[i + 1])
            width = 2
        else:
            out.append(code[i])
            out_spans.append(spans[i])
            width = 1
        for j in range(1, width):
            remap[i + j] = start
        i += width
    remap[n] = len(out)
    for k, (op, a, b) in enumerate(out):
        if op == O.JUMP and a < n and code[a][0] == O.RETURN:
            out[k] = code[a]  # a jump to RETURN is a RETURN
            continue
        if op in _JUMPS or op == O.CMP_JIF:
            out[k] = (op, remap[a], b)
        elif op == O.LC_LT_JIF:
            out[k] = (op, a, (b[0], remap[b[1]]))
    return out, out_spans


def _need(value: Any, kind: type, what: str, where: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise IRLoadError(f"needs {what}", where)
    return value


def _link_instr(
    ins: ir.Instr,
    where: str,
    n: int,
    slots: dict[str, int],
    functions: dict[str, LinkedFunction],
    globals_: dict[str, list[Any]],
    constants: list[ir.Constant],
    registry: Any,
    pipelines: frozenset[str],
) -> tuple:
    op = ins.op
    code = O.CODES[op]

    def slot() -> int:
        name = _need(ins.name, str, "a `name` naming a local", where)
        if name not in slots:
            raise IRLoadError(f"unknown local `{name}`", where)
        return slots[name]

    def target() -> int:
        t = _need(ins.arg, int, "an `arg` jump target", where)
        if not 0 <= t <= n:
            raise IRLoadError(f"jump target {t} is outside the function (0..{n})", where)
        return t

    def count() -> int:
        c = ins.arg if ins.arg is not None else ins.argc
        c = _need(c, int, "a count", where)
        if c < 0:
            raise IRLoadError("count must not be negative", where)
        return c

    def argc() -> int:
        c = _need(ins.argc if ins.argc is not None else 0, int, "an `argc`", where)
        if c < 0:
            raise IRLoadError("argc must not be negative", where)
        return c

    if op == "LOAD_CONST":
        idx = _need(ins.arg, int, "an `arg` constant index", where)
        if not 0 <= idx < len(constants):
            raise IRLoadError(f"constant index {idx} out of range (pool has {len(constants)})", where)
        return (code, constants[idx].value, None)
    if op == "PUSH":
        return (code, ins.arg, None)
    if op in ("LOAD_LOCAL", "STORE_LOCAL"):
        return (code, slot(), None)
    if op in ("LOAD_GLOBAL", "STORE_GLOBAL"):
        name = _need(ins.name, str, "a `name`", where)
        if name in globals_:
            return (code, globals_[name], name)
        native = registry.functions.get(name)
        if native is not None and op == "LOAD_GLOBAL":
            return (O.PUSH, Closure(None, (), native.fn, name), None)
        cell = globals_.setdefault(name, [_UNSET])
        return (code, cell, name)
    if op in ("JUMP", "JUMP_IF_TRUE", "JUMP_IF_FALSE", "TRY_BEGIN", "ITER_NEXT", "COALESCE"):
        return (code, target(), None)
    if op == "CALL":
        name = _need(ins.name, str, "a `name`", where)
        if name not in functions:
            raise IRLoadError(f"call to unknown function `{name}`", where)
        if functions[name].decorated is not None:
            return (O.CALL_NATIVE, functions[name].decorated, argc())
        return (code, functions[name], argc())
    if op == "CALL_NATIVE":
        name = _need(ins.name, str, "a `name`", where)
        native = registry.functions.get(name) or _BUILTIN_NATIVES.get(name)
        if native is None:
            raise IRLoadError(f"unknown native function `{name}`", where)
        fn = native.fn if isinstance(native, Native) else native
        return (code, fn, argc())
    if op == "CALL_METHOD":
        return (code, _need(ins.name, str, "a method `name`", where), argc())
    if op == "CALL_VALUE":
        return (code, argc(), None)
    if op == "MAKE_CLOSURE":
        name = _need(ins.name, str, "a `name`", where)
        if name not in functions:
            raise IRLoadError(f"closure of unknown function `{name}`", where)
        return (code, functions[name], argc())
    if op in ("BUILD_ARRAY", "BUILD_MAP", "BUILD_TUPLE", "BUILD_STRING"):
        return (code, count(), None)
    if op == "BUILD_STRUCT":
        names = tuple(ins.names or ())
        return (code, _need(ins.type_name, str, "a `type_name`", where), names)
    if op == "BUILD_VARIANT":
        type_name = _need(ins.type_name, str, "a `type_name`", where)
        variant = _need(ins.name, str, "a variant `name`", where)
        return (code, (type_name, variant, tuple(ins.names) if ins.names else None), argc())
    if op == "TEST_VARIANT":
        return (code, _need(ins.type_name, str, "a `type_name`", where), _need(ins.name, str, "a `name`", where))
    if op in ("FIELD_GET", "FIELD_SET"):
        return (code, _need(ins.name, str, "a field `name`", where), None)
    if op in ("CHECK_TYPE", "CAST"):
        return (code, _need(ins.type_name or ins.arg, str, "a `type_name`", where), None)
    if op == "TEST_LEN":
        return (code, _need(ins.arg, int, "an `arg` length", where), ins.name or "==")
    if op in ("BUILD_RANGE", "SLICE"):
        return (code, ins.arg, None)
    if op == "VARIANT_FIELD":
        return (code, ins.arg, None)
    if op == "MATCH_FAIL":
        idx = ins.arg
        message = constants[idx].value if isinstance(idx, int) and 0 <= idx < len(constants) else "no pattern matched"
        return (code, message, None)
    if op.startswith("CALL_MODEL"):
        cell = None
        if ins.name is not None:
            cell = globals_.get(ins.name)
            if cell is None or not isinstance(cell[0], ModelRef):
                raise IRLoadError(f"unknown model `{ins.name}`", where)
        if op == "CALL_MODEL":
            method = _need(ins.arg, str, "an `arg` naming the model method", where)
            if method not in MODEL_METHODS:
                raise IRLoadError(f"unknown model method `{method}` (known: {', '.join(MODEL_METHODS)})", where)
        else:
            method = {"CALL_MODEL_SCHEMA": "schema", "CALL_MODEL_STREAM": "stream", "CALL_MODEL_CHAT": "chat"}[op]
        schema = None
        if op == "CALL_MODEL_SCHEMA":
            schema = _need(ins.type_name, str, "a `type_name` naming the schema", where)
        return (O.CALL_MODEL, (cell, method, schema), argc())
    if op in ("AWAIT_ALL", "RACE"):
        c = count()
        if c < 1:
            raise IRLoadError(f"{op} needs at least one task", where)
        return (code, c, None)
    if op == "RUN_PIPELINE":
        name = _need(ins.name, str, "a pipeline `name`", where)
        if name not in pipelines:
            raise IRLoadError(f"unknown pipeline `{name}`", where)
        return (code, name, None)
    if op.startswith("HASH_MAP_"):
        name = _need(ins.name, str, "a hashmap `name`", where)
        if name not in globals_:
            raise IRLoadError(f"unknown hashmap `{name}`", where)
        return (code, globals_[name], name)
    return (code, ins.arg, None)


MODEL_METHODS = ("execute", "chat", "stream", "with_memory", "with_tools", "without_tools")


def _check_llm_sections(program: ir.Program) -> None:
    """Cross-references msgspec cannot check: models name known connections
    and memories, schema names are unique, modes are known."""
    connections = {c.name for c in program.connections}
    memories = {m.name for m in program.memories}
    tools = {t.name for t in program.tools} | {s.name for s in program.mcp_connections}
    for i, m in enumerate(program.models):
        for t in m.tools:
            if t not in tools:
                raise IRLoadError(f"model `{m.name}` uses tool `{t}`, which is not in `tools`", f"models[{i}]")
        if m.connection not in connections:
            raise IRLoadError(f"model `{m.name}` uses connection `{m.connection}`, which is not in `connections`", f"models[{i}]")
        if m.memory is not None and m.memory not in memories:
            raise IRLoadError(f"model `{m.name}` uses memory `{m.memory}`, which is not in `memories`", f"models[{i}]")
    seen: set[str] = set()
    for i, s in enumerate(program.schemas):
        if s.name in seen:
            raise IRLoadError(f"schema `{s.name}` is defined twice", f"schemas[{i}]")
        seen.add(s.name)
        if s.validation_mode not in ("strict", "partial", "coerce"):
            raise IRLoadError(f"unknown validation_mode {s.validation_mode!r} (strict, partial or coerce)", f"schemas[{i}]")
    for i, c in enumerate(program.connections):
        if c.config.provider not in ("openai", "anthropic", "ollama", "custom", "mock"):
            raise IRLoadError(f"connection `{c.name}`: unknown provider {c.config.provider!r}", f"connections[{i}]")
        if "api_key" in c.config.headers or any(k.lower() in ("authorization", "x-api-key") for k in c.config.headers):
            raise IRLoadError(f"connection `{c.name}`: credentials do not belong in the IR; name an environment variable in api_key_env", f"connections[{i}]")


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()

# Natives that belong to the VM rather than a std:: module.
_BUILTIN_NATIVES: dict[str, Any] = {}


def builtin_native(name: str):
    def register(fn):
        _BUILTIN_NATIVES[name] = fn
        return fn

    return register
