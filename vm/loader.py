"""Decode, verify and link `.conc-ir`.

Decoding bounds the JSON (concerto/ir/codec.py); the verifier checks every
operand and stack depth against the opcode table (concerto/ir/verify.py), so
linking can trust what it reads. Linking turns each instruction into a tuple
`(opcode_int, a, b)` whose operands are already what the dispatch loop needs:
local names become slot indexes, constants become Python objects, jump
targets stay indexes, callees become LinkedFunction objects, natives become
Python callables, globals become cells. The hot loop then does no name or
dictionary look-up per instruction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from concerto import ir
from concerto.ir import opcodes as O
from concerto.ir.codec import check_value_depth, decode_json
from concerto.ir.credentials import ir_credential_problems
from concerto.ir.errors import IRLoadError
from concerto.ir.verify import Arity, verify_program
from concerto.stdlib import load as load_stdlib
from concerto.stdlib.registry import Registry
from concerto.vm.decorators import chain
from concerto.vm.llm_values import MemoryStore, ModelRef
from concerto.vm.tools import link_tools
from concerto.vm.pipeline import LinkedPipeline, LinkedStage
from concerto.vm.values import Closure, ConcertoError


__all__ = ["IRLoadError", "LinkedFunction", "Program", "load_bytes", "load_object", "link"]


class LinkedFunction:
    __slots__ = ("name", "code", "spans", "nlocals", "nparams", "ncaptures", "self_type", "file", "local_names",
                 "base_code", "base_spans", "depths", "jit", "decorated")

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
        # The verified stack depth before each base_code instruction (-1: unreachable).
        self.depths: list[int] = []
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
    return load_object(decode_json(data), source_file)


def load_object(raw: Any, source_file: str | None = None) -> Program:
    if not isinstance(raw, dict):
        raise IRLoadError("the IR must be a JSON object")
    warnings = check_version(raw.get("version"))
    for section in ir.REQUIRED_SECTIONS:
        if section not in raw:
            raise IRLoadError(f"missing required section `{section}`")
    check_value_depth(raw)
    try:
        program = msgspec.convert(raw, type=ir.Program)
    except msgspec.ValidationError as e:
        raise IRLoadError(_validation_message(str(e))) from None
    except RecursionError:
        raise IRLoadError("the IR is nested too deeply") from None
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


def native_arities(registry: Registry) -> dict[str, Arity]:
    return {name: (n.min_args, n.max_args) for name, n in registry.functions.items()}


def link(program: ir.Program, source_file: str | None = None) -> Program:
    """Verify an IR program and link it (IRLoadError when it cannot run)."""
    registry = load_stdlib()
    depths = verify_program(program, native_arities(registry))
    file = source_file or program.source_file
    functions: dict[str, LinkedFunction] = {}
    for fn in program.functions:
        lf = LinkedFunction(fn.name, file)
        lf.depths = depths[fn.name]
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
        globals_[hm.name] = [{}]
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
    methods: dict[str, dict[str, LinkedFunction]] = {}
    for fn in program.functions:
        if fn.self_type:
            methods.setdefault(fn.self_type, {})[fn.name.rsplit("::", 1)[-1]] = functions[fn.name]
    for fn in program.functions:
        _link_function(fn, functions[fn.name], functions, globals_, constants, registry)
    meta = program.metadata
    entry_name = meta.entry_point if meta else "main"
    init = functions[meta.init] if meta and meta.init else None
    linked = Program(program, functions, globals_, methods, functions[entry_name], init, file)
    linked.pipelines = _link_pipelines(program, functions)
    linked.tools = tools
    return linked


def _raise_load_error(message: str, where: str) -> None:
    raise IRLoadError(message, where)


def _decorated(lf: LinkedFunction, decorators: list[ir.DecoratorDef], what: str) -> Any:
    call = chain(lambda vm, args: vm.run_function(lf, args), decorators, what)

    def decorated(vm: Any, *args: Any) -> Any:
        # Reached through a function value too, where nothing checked the count.
        if len(args) != lf.nparams:
            raise ConcertoError(f"`{lf.name}` takes {lf.nparams} argument(s), {len(args)} given", "TypeError")
        return call(vm, list(args))

    return decorated


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
    registry: Registry,
) -> None:
    slots = {name: i for i, name in enumerate(fn.locals)}
    lf.nlocals = len(fn.locals)
    lf.nparams = len(fn.params)
    lf.ncaptures = len(fn.captures)
    lf.self_type = fn.self_type
    lf.local_names = list(fn.locals)
    code = [_link_instr(ins, slots, functions, globals_, constants, registry) for ins in fn.instructions]
    lf.spans = [tuple(ins.span) for ins in fn.instructions]  # type: ignore[misc]
    lf.base_code, lf.base_spans = code, lf.spans
    lf.code, lf.spans = _fuse(code, lf.spans)


# Jumps of IR opcodes: `arg` is the target. (The fused ones keep theirs elsewhere.)
_JUMPS = O.JUMPS - O.codes_with(O.Flags.LINKED)
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
    # The interpreter tests the interrupt flag on JUMP back edges and calls only,
    # so a conditional jump backwards (never compiled from source, possible in
    # IR from elsewhere) goes through a JUMP appended at the end instead.
    for k in range(len(out)):
        op, a, b = out[k]
        target = b[1] if op == O.LC_LT_JIF else a
        if op in O.CONDITIONAL_JUMPS and target <= k:
            out.append((O.JUMP, target, None))
            out_spans.append(out_spans[k])
            trampoline = len(out) - 1
            out[k] = (op, a, (b[0], trampoline)) if op == O.LC_LT_JIF else (op, trampoline, b)
    return out, out_spans


def _link_instr(
    ins: ir.Instr,
    slots: dict[str, int],
    functions: dict[str, LinkedFunction],
    globals_: dict[str, list[Any]],
    constants: list[ir.Constant],
    registry: Registry,
) -> tuple:
    """One verified instruction -> `(opcode, a, b)` with resolved operands."""
    op = ins.op
    code = O.CODES[op]
    if op == "LOAD_CONST":
        return (code, constants[ins.arg].value, None)
    if op in ("LOAD_LOCAL", "STORE_LOCAL"):
        return (code, slots[ins.name], None)  # type: ignore[index]
    if op in ("LOAD_GLOBAL", "STORE_GLOBAL"):
        name = ins.name
        if name in globals_:
            return (code, globals_[name], name)
        native = registry.functions.get(name)  # type: ignore[arg-type]
        if native is not None and op == "LOAD_GLOBAL":
            # A native used as a value: called through Native.call, which checks the arity.
            return (O.PUSH, Closure(None, (), native.call, name), None)
        cell = globals_.setdefault(name, [_UNSET])  # type: ignore[index]
        return (code, cell, name)
    if op == "CALL":
        callee = functions[ins.name]  # type: ignore[index]
        if callee.decorated is not None:
            return (O.CALL_NATIVE, callee.decorated, O.argc_of(ins))
        return (code, callee, O.argc_of(ins))
    if op == "CALL_NATIVE":
        return (code, registry.functions[ins.name].fn, O.argc_of(ins))  # type: ignore[index]
    if op == "CALL_METHOD":
        return (code, ins.name, O.argc_of(ins))
    if op == "CALL_VALUE":
        return (code, O.argc_of(ins), None)
    if op == "MAKE_CLOSURE":
        return (code, functions[ins.name], O.argc_of(ins))  # type: ignore[index]
    if op in ("BUILD_ARRAY", "BUILD_MAP", "BUILD_TUPLE", "BUILD_STRING", "AWAIT_ALL", "RACE"):
        return (code, O.count_of(ins), None)
    if op == "BUILD_STRUCT":
        return (code, ins.type_name, tuple(ins.names or ()))
    if op == "BUILD_VARIANT":
        return (code, (ins.type_name, ins.name, tuple(ins.names) if ins.names else None), O.argc_of(ins))
    if op == "TEST_VARIANT":
        return (code, ins.type_name, ins.name)
    if op in ("CHECK_TYPE", "CAST"):
        return (code, ins.type_name, None)
    if op == "TEST_LEN":
        return (code, ins.arg, ins.name or "==")
    if op == "MATCH_FAIL":
        return (code, constants[ins.arg].value, None)
    if op.startswith("CALL_MODEL"):
        cell = globals_[ins.name] if ins.name is not None else None
        method = ins.arg if op == "CALL_MODEL" else _MODEL_OPS[op]
        schema = ins.type_name if op == "CALL_MODEL_SCHEMA" else None
        return (O.CALL_MODEL, (cell, method, schema), O.argc_of(ins))
    if op.startswith("HASH_MAP_"):
        return (code, globals_[ins.name], ins.name)  # type: ignore[index]
    # The rest have at most one operand (a jump target, a flag, a field or
    # pipeline name), which the dispatch loop reads as it is.
    operands = O.TABLE[op].operands
    return (code, getattr(ins, operands[0].field) if operands else None, None)


_MODEL_OPS = {"CALL_MODEL_SCHEMA": "schema", "CALL_MODEL_STREAM": "stream", "CALL_MODEL_CHAT": "chat"}


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
    for message, where in ir_credential_problems(program):
        raise IRLoadError(message, where)


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()
