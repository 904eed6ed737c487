"""The loader's verifier: IR that passes runs without the VM tripping over it.

The VM trusts verified code the way CPython trusts its own bytecode, so the
checks here are what keeps a hand-written or damaged `.conc-ir` file from
reaching the dispatch loop as an IndexError deep inside it. Per function:

* every instruction's operands have the kind the opcode table
  (concerto/ir/opcodes.py) gives them: counts, constant and local indexes,
  jump targets on instruction boundaries, names that resolve;
* abstract interpretation over the control-flow graph gives every reachable
  instruction one stack depth and one stack of open try-frames, whatever path
  reaches it; nothing pops below the function's own stack; control never runs
  off the end;
* try-frames nest: TRY_END closes one that is open on every path, and each
  handler starts with the stack cut back to its TRY_BEGIN plus the error.

Program level: constants match their declared type (Int within 64 bits), the
entry point and init function exist and take no parameters, parameters are
the first locals and captures follow them. The depths found are returned: the
second execution tier (vm/pycompile.py) uses them instead of its own guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from concerto.ir import format as F
from concerto.ir.errors import IRLoadError
from concerto.ir.opcodes import LEN_MODES, MODEL_METHODS, TABLE, Flags, Kind, OpInfo, argc_of, variant_pops

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
CONSTANT_TYPES = {"string": str, "int": int, "float": float, "bool": bool, "nil": type(None)}

# (min, max) argument counts of a native; max None means any number.
Arity = tuple[int, int | None]


def verify_program(program: F.Program, natives: Mapping[str, Arity]) -> dict[str, list[int]]:
    """Check the whole program; returns each function's stack depth before
    every instruction (-1 where unreachable). Raises IRLoadError."""
    _check_constants(program.constants)
    names = _Names(program, natives)
    for i, hm in enumerate(program.hashmaps):
        if hm.name in names.bound:
            raise IRLoadError(f"hashmap `{hm.name}` clashes with another global of that name", f"hashmaps[{i}]")
    depths: dict[str, list[int]] = {}
    for fn in program.functions:
        if fn.name in depths:
            raise IRLoadError(f"function `{fn.name}` is defined twice", "functions")
        depths[fn.name] = verify_function(fn, names)
    meta = program.metadata
    entry = meta.entry_point if meta is not None else "main"
    for role, name in (("entry point", entry), ("init function", meta.init if meta is not None else None)):
        if name is None:
            continue
        fn = names.functions.get(name)
        if fn is None:
            raise IRLoadError(f"{role} `{name}` is not among the functions", "metadata")
        if fn.params or fn.captures:
            raise IRLoadError(f"{role} `{name}` must take no parameters", "metadata")
    return depths


class _Names:
    """What operand names may refer to."""

    def __init__(self, program: F.Program, natives: Mapping[str, Arity]) -> None:
        self.program = program
        self.constants = program.constants
        self.functions = {fn.name: fn for fn in program.functions}
        self.natives = natives
        self.models = {m.name for m in program.models}
        self.schemas = {s.name for s in program.schemas}
        self.hashmaps = {h.name for h in program.hashmaps}
        self.pipelines = {p.name for p in program.pipelines}
        self.enums = {t.name: {v.name: v for v in t.variants or ()} for t in program.types if t.kind == "enum"}
        # Globals the loader binds; only the init function may set a hashmap.
        self.bound = (set(self.functions) | self.models | {m.name for m in program.memories}
                      | {t.name for t in program.tools} | {m.name for m in program.mcp_connections})
        self.init = program.metadata.init if program.metadata is not None else None


def _check_constants(constants: list[F.Constant]) -> None:
    for i, c in enumerate(constants):
        where = f"constants[{i}]"
        if c.index != i:
            raise IRLoadError(f"constant {i} has index {c.index}", where)
        want = CONSTANT_TYPES.get(c.type)
        if want is None:
            raise IRLoadError(f"unknown constant type {c.type!r} (string, int, float, bool or nil)", where)
        value = c.value
        if c.type == "float" and type(value) is int and not isinstance(value, bool):
            value = c.value = float(value)  # JSON writes 2.0 as 2 in some producers
        if type(value) is not want:
            raise IRLoadError(f"a {c.type} constant holds {_json_kind(value)}", where)
        if want is int and not INT_MIN <= value <= INT_MAX:
            raise IRLoadError(f"integer constant {value} is outside the 64-bit range", where)
        if want is float and not math.isfinite(value):
            raise IRLoadError("float constant is not finite", where)


def verify_function(fn: F.Function, names: _Names) -> list[int]:
    where_fn = f"function `{fn.name}`"
    _check_locals(fn, where_fn)
    code = fn.instructions
    if not code:
        raise IRLoadError("a function needs at least one instruction", where_fn)
    slots = set(fn.locals)
    infos: list[OpInfo] = []
    for pc, ins in enumerate(code):
        info = TABLE.get(ins.op)
        where = f"{where_fn}, instruction {pc} ({ins.op})"
        if info is None:
            raise IRLoadError(f"unknown opcode `{ins.op}`", where)
        if info.has(Flags.LINKED):
            raise IRLoadError(f"`{ins.op}` is made by the linker and cannot appear in IR", where)
        for operand in info.operands:
            _check_operand(ins, operand, len(code), slots, names, where)
        _check_consistency(ins, code[pc - 1] if pc else None, fn.name, names, where)
        infos.append(info)
    return _flow(fn, infos, where_fn)


def _check_locals(fn: F.Function, where: str) -> None:
    if len(set(fn.locals)) != len(fn.locals):
        seen: set[str] = set()
        dup = next(n for n in fn.locals if n in seen or seen.add(n))  # type: ignore[func-returns-value]
        raise IRLoadError(f"local `{dup}` is listed twice in `locals`", where)
    params = [p.name for p in fn.params]
    if fn.locals[: len(params)] != params:
        raise IRLoadError(f"the parameters ({', '.join(params)}) must be the first `locals`, in order", where)
    after = fn.locals[len(params): len(params) + len(fn.captures)]
    if after != list(fn.captures):
        raise IRLoadError("the captured names must follow the parameters in `locals`", where)


def _check_operand(ins: F.Instr, operand: Any, n: int, slots: set[str], names: _Names, where: str) -> None:
    field = operand.field
    value = getattr(ins, field)
    if value is None:
        if operand.required:
            raise IRLoadError(f"needs `{field}` ({operand.kind.value})", where)
        return
    kind = operand.kind
    label = f"`{field}`"
    if kind is Kind.COUNT:
        _int(value, label, where)
        if value < 0:
            raise IRLoadError(f"{label} must not be negative", where)
    elif kind is Kind.TARGET:
        _int(value, label, where)
        if not 0 <= value < n:
            raise IRLoadError(f"jump target {value} is outside the function (0..{n - 1})", where)
    elif kind in (Kind.CONST, Kind.MESSAGE):
        _int(value, label, where)
        if not 0 <= value < len(names.constants):
            raise IRLoadError(f"constant index {value} out of range (the pool has {len(names.constants)})", where)
        if kind is Kind.MESSAGE and type(names.constants[value].value) is not str:
            raise IRLoadError(f"constant {value} must be a string (the message)", where)
    elif kind is Kind.LITERAL:
        if type(value) not in (int, float, str, bool):
            raise IRLoadError(f"{label} must be a scalar, not {_json_kind(value)}", where)
        if type(value) is int and not INT_MIN <= value <= INT_MAX:
            raise IRLoadError(f"integer {value} is outside the 64-bit range", where)
    elif kind is Kind.BOOL:
        if type(value) is not bool:
            raise IRLoadError(f"{label} must be true or false, not {_json_kind(value)}", where)
    elif kind is Kind.NAMES:
        if type(value) is not list or not all(type(x) is str and x for x in value):
            raise IRLoadError(f"{label} must be a list of names", where)
    elif kind is Kind.SLICE_MODE:
        if type(value) is not bool and value != "rest":
            raise IRLoadError(f"{label} must be true, false or \"rest\"", where)
    elif kind is Kind.POSITION:
        if not (type(value) is int and value >= 0 or type(value) is str and value):
            raise IRLoadError(f"{label} must be a position (Int >= 0) or a field name", where)
    elif kind is Kind.LEN_MODE:
        if value not in LEN_MODES:
            raise IRLoadError(f"{label} must be one of {', '.join(LEN_MODES)}", where)
    else:
        _check_name(value, kind, label, slots, names, where)


def _check_name(value: Any, kind: Kind, label: str, slots: set[str], names: _Names, where: str) -> None:
    if type(value) is not str or not value:
        raise IRLoadError(f"{label} must be a non-empty name, not {_json_kind(value)}", where)
    known: Any = None
    what = kind.value
    if kind is Kind.LOCAL:
        known, what = slots, "local"
    elif kind is Kind.FUNCTION:
        known = names.functions
    elif kind is Kind.NATIVE:
        known, what = names.natives, "native function"
    elif kind is Kind.MODEL:
        known = names.models
    elif kind is Kind.MODEL_METHOD:
        known, what = MODEL_METHODS, "model method"
    elif kind is Kind.SCHEMA:
        known = names.schemas
    elif kind is Kind.HASHMAP:
        known = names.hashmaps
    elif kind is Kind.PIPELINE:
        known = names.pipelines
    if known is not None and value not in known:
        raise IRLoadError(f"unknown {what} `{value}`", where)


def _check_consistency(ins: F.Instr, previous: F.Instr | None, fn_name: str, names: _Names, where: str) -> None:
    """Rules that tie one operand to another or to the rest of the program."""
    op = ins.op
    if op in ("CALL", "MAKE_CLOSURE"):
        callee = names.functions[ins.name]  # type: ignore[index]
        want = len(callee.params) if op == "CALL" else len(callee.captures)
        what = "parameter(s)" if op == "CALL" else "captured value(s)"
        if argc_of(ins) != want:
            raise IRLoadError(f"`{ins.name}` takes {want} {what}; argc is {argc_of(ins)}", where)
    elif op == "CALL_NATIVE":
        lo, hi = names.natives[ins.name]  # type: ignore[index]
        argc = argc_of(ins)
        if argc < lo or hi is not None and argc > hi:
            bounds = f"{lo}" if hi == lo else f"{lo} or more" if hi is None else f"{lo} to {hi}"
            raise IRLoadError(f"native `{ins.name}` takes {bounds} argument(s); argc is {argc}", where)
    elif op == "BUILD_STRUCT":
        if ins.argc is not None and ins.argc != len(ins.names or ()):
            raise IRLoadError(f"argc {ins.argc} does not match the {len(ins.names or ())} field names", where)
    elif op in ("BUILD_VARIANT", "TEST_VARIANT"):
        _check_variant(ins, names, where)
    elif op == "CALL_MODEL" and ins.arg == "with_memory" and argc_of(ins) not in (1, 2):
        raise IRLoadError("with_memory takes 1 or 2 arguments", where)
    elif op == "STORE_GLOBAL":
        if ins.name in names.bound:
            raise IRLoadError(f"`{ins.name}` is a function, model, memory or tool and cannot be assigned", where)
        if ins.name in names.hashmaps and (fn_name != names.init or previous is None or previous.op != "BUILD_MAP"):
            raise IRLoadError(f"hashmap `{ins.name}` can be set only by the init function, to a new map "
                              "(BUILD_MAP right before)", where)


_BUILT_IN_VARIANTS = {"Option": ("Some", "None"), "Result": ("Ok", "Err")}


def _check_variant(ins: F.Instr, names: _Names, where: str) -> None:
    enum, variant = ins.type_name, ins.name
    builtin = _BUILT_IN_VARIANTS.get(enum)  # type: ignore[arg-type]
    if builtin is not None:
        if variant not in builtin:
            raise IRLoadError(f"`{enum}` has no variant `{variant}` ({' or '.join(builtin)})", where)
    else:
        variants = names.enums.get(enum)  # type: ignore[arg-type]
        if variants is None:
            raise IRLoadError(f"unknown enum `{enum}` (not in `types`)", where)
        if variant not in variants:
            raise IRLoadError(f"enum `{enum}` has no variant `{variant}`", where)
    if ins.op != "BUILD_VARIANT":
        return
    if ins.argc is not None and builtin is not None and ins.argc != variant_pops(ins):
        raise IRLoadError(f"`{enum}::{variant}` carries {variant_pops(ins)} value(s); argc is {ins.argc}", where)
    if ins.names is not None and len(ins.names) != argc_of(ins):
        raise IRLoadError(f"argc {argc_of(ins)} does not match the {len(ins.names)} field names", where)


# -- control flow -----------------------------------------------------------------

# A state: the stack depth, and the open try-frames as (handler pc, depth at TRY_BEGIN).
State = tuple[int, tuple[tuple[int, int], ...]]


def _flow(fn: F.Function, infos: list[OpInfo], where_fn: str) -> list[int]:
    code = fn.instructions
    n = len(code)
    states: list[State | None] = [None] * n
    work: list[tuple[int, State, int]] = [(0, (0, ()), -1)]

    def reach(pc: int, state: State, source: int) -> None:
        seen = states[pc]
        if seen is None:
            states[pc] = state
            work.append((pc, state, source))
        elif seen != state:
            where = f"{where_fn}, instruction {pc} ({code[pc].op})"
            came = f"from instruction {source}" if source >= 0 else "at entry"
            if seen[0] != state[0]:
                raise IRLoadError(f"stack depth is {seen[0]} on one path but {state[0]} {came}", where)
            raise IRLoadError(f"the open try-frames differ between paths (reached {came})", where)

    states[0] = (0, ())
    while work:
        pc, (depth, tries), _source = work.pop()
        ins, info = code[pc], infos[pc]
        where = f"{where_fn}, instruction {pc} ({ins.op})"
        pops = info.popped(ins)
        if pops > depth:
            raise IRLoadError(f"stack underflow: pops {pops} value(s) but the stack holds {depth}", where)
        base = depth - pops
        if info.has(Flags.TRY_POP):
            if not tries:
                raise IRLoadError("TRY_END without an open TRY_BEGIN", where)
            tries = tries[:-1]
        if info.jump_pushes is not None:
            target = ins.arg
            if info.has(Flags.TRY_PUSH):
                reach(target, (depth + 1, tries), pc)  # the handler: stack cut back, error pushed
                tries = tries + ((target, depth),)
            else:
                reach(target, (base + info.jump_pushes, tries), pc)
        if info.has(Flags.STOP):
            continue
        if pc + 1 >= n:
            raise IRLoadError("control runs off the end of the function (the last instruction must "
                              "return, jump or throw)", where)
        reach(pc + 1, (base + info.pushes, tries), pc)
    return [s[0] if s is not None else -1 for s in states]


# -- helpers ----------------------------------------------------------------------

def _int(value: Any, label: str, where: str) -> None:
    if type(value) is not int:
        raise IRLoadError(f"{label} must be an integer, not {_json_kind(value)}", where)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)
