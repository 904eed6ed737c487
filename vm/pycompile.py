"""Tier 2: compile linked functions to Python source, the way Jinja2 compiles
templates, so hot Concerto code runs as CPython bytecode instead of through the
dispatch loop.

The translation is per function and purely mechanical:

* every stack slot becomes a Python local `s<k>` and every Concerto local a
  Python local `l<k>`; the stack depth at each instruction is known statically
  (the loader's verifier computed it from the opcode table);
* within a basic block the stack is kept symbolically, so `LOAD_LOCAL n;
  LOAD_CONST 2; LT` becomes one expression `l0 < 2` and never touches a list;
* basic blocks are laid out in order inside `while True:` as `if pc <= start:`
  guards, so falling through costs nothing and a jump is `pc = T; continue`;
* the fast path of each operator is inlined (`type(x) is int` plus the 64-bit
  overflow check) and everything else calls the interpreter's own helpers, so
  both tiers share one definition of every operator's semantics.

Errors map back to the IR as Jinja2's `debug.py` maps them back to templates:
each generated line records the instruction it came from, and a function's
`except` clause (zero cost until something is raised) appends the failing
instruction's span to the exception's `concerto_trace`.

Functions that use try-frames (TRY_BEGIN) stay in the interpreter, as does any
opcode this module does not know. A compiled function is stored on its
LinkedFunction as `jit` and takes the machine as its first argument, so one
compiled program serves every Machine that runs it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from concerto.ir import opcodes as O
from concerto.vm.limits import UNCHECKED
from concerto.vm.loader import LinkedFunction, Program
from concerto.vm.values import (
    INT_MAX,
    INT_MIN,
    NONE,
    Closure,
    ConcertoError,
    EnumValue,
    Err,
    Ok,
    Some,
    StructValue,
    display,
    values_equal,
)

# Opcodes the translator understands. Anything else keeps a function interpreted.
_SUPPORTED = {
    O.LOAD_LOCAL, O.STORE_LOCAL, O.LOAD_CONST, O.PUSH, O.LOAD_GLOBAL, O.STORE_GLOBAL,
    O.ADD, O.SUB, O.MUL, O.DIV, O.MOD, O.NEG, O.NOT, O.AND, O.OR,
    O.LT, O.GT, O.LTE, O.GTE, O.EQ, O.NEQ, O.DUP, O.SWAP, O.POP, O.COPY,
    O.CALL, O.CALL_NATIVE, O.CALL_METHOD, O.CALL_VALUE, O.RETURN,
    O.JUMP, O.JUMP_IF_FALSE, O.JUMP_IF_TRUE, O.ITER_INIT, O.ITER_NEXT, O.COALESCE,
    O.BUILD_ARRAY, O.BUILD_TUPLE, O.BUILD_MAP, O.BUILD_STRING, O.BUILD_STRUCT, O.BUILD_VARIANT,
    O.BUILD_RANGE, O.TEST_VARIANT, O.VARIANT_FIELD, O.TEST_LEN, O.SLICE, O.CHECK_TYPE, O.CAST,
    O.FIELD_GET, O.FIELD_SET, O.INDEX_GET, O.INDEX_SET, O.EMIT, O.PROPAGATE, O.THROW,
    O.RETHROW, O.MATCH_FAIL, O.HASH_MAP_GET, O.HASH_MAP_SET, O.HASH_MAP_HAS,
    O.HASH_MAP_DELETE, O.MAKE_CLOSURE, O.CATCH, O.CALL_MODEL,
}
_ENDS_BLOCK = O.STOPS
_BRANCHES = O.CONDITIONAL_JUMPS
_CMP = {O.LT: "<", O.GT: ">", O.LTE: "<=", O.GTE: ">=", O.EQ: "==", O.NEQ: "!="}
_ARITH = {O.ADD: "+", O.SUB: "-", O.MUL: "*"}


class NotCompilable(Exception):
    """This function stays in the interpreter (the reason is for debugging)."""


# -- code generation -----------------------------------------------------------

def _literal(v: Any) -> str | None:
    """Python source for a constant that is safe to inline, else None."""
    t = type(v)
    if v is None or t is bool or t is str:
        return repr(v)
    if t is int or (t is float and math.isfinite(v)):
        return f"({v!r})"  # parenthesised: `(5).x` parses, `5.x` does not
    return None


class _Entry:
    """One symbolic stack entry: a Python expression and what it reads."""

    __slots__ = ("expr", "local", "int_lit")

    # Every entry is side-effect free and cheap (a literal, a local, a slot or a
    # constant reference), so it may be repeated in a guard or dropped by POP.
    def __init__(self, expr: str, local: int = -1, int_lit: bool = False) -> None:
        self.expr = expr
        self.local = local  # slot index when the expression is just `l<k>`
        self.int_lit = int_lit


class _FunctionWriter:
    def __init__(self, fn: LinkedFunction, depths: list[int], index: int, refs: "_Refs",
                 compiled: dict[str, str]) -> None:
        self.fn = fn
        self.depths = depths  # from stack_depths(fn.base_code)
        self.index = index
        self.refs = refs
        self.compiled = compiled  # LinkedFunction name -> python function name
        self.lines: list[str] = []
        self.line_instr: list[int] = []  # python line (relative) -> instruction index
        self.stack: list[_Entry] = []
        self.current = 0

    # -- output ----------------------------------------------------------------
    def out(self, text: str, indent: int = 3) -> None:
        self.lines.append("    " * indent + text)
        self.line_instr.append(self.current)

    # -- the symbolic stack ----------------------------------------------------
    def slot(self, k: int) -> str:
        return f"s{k}"

    def push(self, entry: _Entry) -> None:
        self.stack.append(entry)

    def pop(self) -> _Entry:
        return self.stack.pop()

    def result(self, expr: str) -> None:
        """Assign an expression to the next slot and push that slot."""
        k = len(self.stack)
        self.emit(f"{self.slot(k)} = {expr}")
        self.push(_Entry(self.slot(k)))

    def materialize(self) -> None:
        """Make every entry live in its own slot (before a jump or a label)."""
        self.spill(lambda k, e: e.expr != self.slot(k))

    def flush_local(self, local: int) -> None:
        """Before `l<local>` changes, entries that still read it get their own slot."""
        self.spill(lambda k, e: e.local == local)

    def spill(self, chosen) -> None:
        """Assign the chosen entries to their own slots in one tuple assignment
        (all right-hand sides are read before any slot is written)."""
        names, exprs = [], []
        for k, e in enumerate(self.stack):
            if chosen(k, e):
                names.append(self.slot(k))
                exprs.append(e.expr)
                self.stack[k] = _Entry(self.slot(k))
        if names:
            self.emit(f"{', '.join(names)} = {', '.join(exprs)}")

    def reset_stack(self, depth: int) -> None:
        self.stack = [_Entry(self.slot(k)) for k in range(depth)]

    # -- the function ----------------------------------------------------------
    def write(self) -> list[str]:
        fn = self.fn
        code = fn.base_code
        depths = self.depths
        targets = {0}
        for i, (op, a, b) in enumerate(code):
            if depths[i] == -1:
                continue
            if op in _BRANCHES or op == O.JUMP:
                targets.add(a)
            if op in _ENDS_BLOCK or op in _BRANCHES:
                targets.add(i + 1)
        starts = sorted(t for t in targets if t < len(code) and depths[t] != -1)
        self.block_starts = set(starts)

        nargs = fn.nparams + fn.ncaptures
        params = ", ".join(["vm"] + [f"l{k}" for k in range(nargs)])
        name = self.compiled[fn.name]
        self.lines.append(f"def {name}({params}):")
        self.line_instr.append(0)
        self.out("d = vm.jit_depth", 1)
        self.out("if d >= vm.jit_max_depth: _too_deep(vm)", 1)
        self.out("vm.jit_depth = d + 1", 1)
        self.out("_i = vm.interrupt", 1)
        self.out("if _i[0]: vm.tick()", 1)
        if fn.nlocals > nargs:
            self.out(" = ".join(f"l{k}" for k in range(nargs, fn.nlocals)) + " = None", 1)
        self.out("try:", 1)
        self.out("pc = 0", 2)
        self.out("while True:", 2)
        reachable_end = True
        self.indent = 4
        self.skip = False
        for i, (op, a, b) in enumerate(code):
            self.current = i
            if i in self.block_starts:
                if reachable_end:
                    self.materialize()
                self.out(f"if pc <= {i}:", 3)
                self.reset_stack(depths[i])
                self.indent = 4
                reachable_end = True
            if self.skip:
                self.skip = False
                continue
            if depths[i] == -1 or not reachable_end:
                continue
            reachable_end = self.instr(i, op, a, b)
        self.out("raise AssertionError('fell off the end of a compiled function')", 3)
        self.out("except Exception as e:", 1)
        self.out(f"_note(e, {self.index}, e.__traceback__)", 2)
        self.out("raise", 2)
        self.out("finally:", 1)
        self.out("vm.jit_depth = d", 2)
        return self.lines

    def emit(self, text: str) -> None:
        self.out(text, self.indent)

    def next_is_block(self, i: int) -> bool:
        return (i + 1) in self.block_starts

    def jump(self, target: int, i: int) -> None:
        if target == i + 1:
            self.emit("pass")  # the target is the next instruction
            return
        if target <= i:
            # A loop's back edge: a checkpoint when the interrupt flag is up
            # (vm/interrupts.py), so a loop that never awaits still stops on time.
            self.emit("if _i[0]: vm.tick()")
        self.emit(f"pc = {target}")
        self.emit("continue")

    def instr(self, i: int, op: int, a: Any, b: Any) -> bool:
        """Write one instruction. Returns False when control cannot fall through."""
        refs = self.refs
        e = self.emit
        if op == O.LOAD_LOCAL:
            self.push(_Entry(f"l{a}", local=a))
        elif op == O.STORE_LOCAL:
            v = self.pop()
            self.flush_local(a)
            if v.expr != f"l{a}":
                e(f"l{a} = {v.expr}")
        elif op == O.LOAD_CONST or op == O.PUSH:
            lit = _literal(a)
            if lit is None:
                self.push(_Entry(refs.ref(a)))
            else:
                self.push(_Entry(lit, int_lit=type(a) is int))
        elif op == O.LOAD_GLOBAL:
            cell = refs.ref(a)
            k = len(self.stack)
            e(f"s{k} = {cell}[0]")
            e(f"if s{k} is _UNSET: _unset_global({b!r})")
            self.push(_Entry(f"s{k}"))
        elif op == O.STORE_GLOBAL:
            v = self.pop()
            e(f"{refs.ref(a)}[0] = {v.expr}")
        elif op in _ARITH:
            y, x = self.pop(), self.pop()
            self.arith(_ARITH[op], x, y)
        elif op == O.DIV:
            y, x = self.pop(), self.pop()
            self.result(f"_arith('/', {x.expr}, {y.expr})")
        elif op == O.MOD:
            y, x = self.pop(), self.pop()
            if y.int_lit and int(y.expr.strip("()")) > 0:
                self.result(f"{x.expr} % {y.expr} if type({x.expr}) is int and {x.expr} >= 0 "
                            f"else _arith('%', {x.expr}, {y.expr})")
            else:
                self.result(f"{x.expr} % {y.expr} if type({x.expr}) is int and type({y.expr}) is int "
                            f"and {x.expr} >= 0 and {y.expr} > 0 else _arith('%', {x.expr}, {y.expr})")
        elif op in _CMP:
            y, x = self.pop(), self.pop()
            cond = self.compare(op, x, y)
            nxt = self.fn.base_code[i + 1] if i + 1 < len(self.fn.base_code) else None
            if nxt is not None and nxt[0] == O.JUMP_IF_FALSE and not self.next_is_block(i):
                # compare-and-branch: the Bool never needs a slot
                self.skip = True
                self.materialize()
                self.emit(f"if not ({cond}):")
                self.indent += 1
                self.jump(nxt[1], i + 1)
                self.indent -= 1
            else:
                self.result(cond)
        elif op == O.NEG:
            x = self.pop()
            self.result(f"_neg({x.expr})")
        elif op == O.NOT:
            x = self.pop()
            self.result(f"(not {x.expr}) if type({x.expr}) is bool else _not_bool({x.expr})")
        elif op == O.AND:
            y, x = self.pop(), self.pop()
            self.result(f"{x.expr} and {y.expr}")
        elif op == O.OR:
            y, x = self.pop(), self.pop()
            self.result(f"{x.expr} or {y.expr}")
        elif op == O.DUP:
            x = self.stack[-1]
            if x.expr != self.slot(len(self.stack) - 1):
                self.push(_Entry(x.expr, x.local, x.int_lit))
            else:
                self.result(x.expr)
        elif op == O.SWAP:
            y, x = self.pop(), self.pop()
            k = len(self.stack)
            e(f"s{k}, s{k + 1} = {y.expr}, {x.expr}")
            self.push(_Entry(f"s{k}"))
            self.push(_Entry(f"s{k + 1}"))
        elif op == O.POP:
            self.pop()
        elif op == O.COPY:
            x = self.pop()
            self.result(f"_copy({x.expr})")
        elif op == O.CALL:
            args = self.take(b)
            if a.name in self.compiled and b == a.nparams and a.ncaptures == 0:
                self.result(f"{self.compiled[a.name]}(vm{''.join(', ' + x for x in args)})")
            else:
                self.result(f"vm.run_function({refs.ref(a)}, [{', '.join(args)}])")
        elif op == O.CALL_NATIVE:
            args = self.take(b)
            self.result(f"{refs.ref(a)}(vm{''.join(', ' + x for x in args)})")
        elif op == O.CALL_METHOD:
            args = self.take(b)
            recv = self.pop()
            # The callee is found first and then called with a fixed argument
            # list: CPython runs that call without nesting its C eval loop.
            self.result(f"_method(vm, {recv.expr}, {a!r}, {b})(vm, {recv.expr}{''.join(', ' + x for x in args)})")
        elif op == O.CALL_VALUE:
            args = self.take(a)
            callee = self.pop()
            self.result(f"_callable({callee.expr}, {a})(vm{''.join(', ' + x for x in args)})")
        elif op == O.RETURN:
            v = self.pop()
            e(f"return {v.expr}")
            return False
        elif op == O.JUMP:
            target_code = self.fn.base_code[a] if a < len(self.fn.base_code) else None
            if target_code is not None and target_code[0] == O.RETURN and self.stack:
                e(f"return {self.stack[-1].expr}")  # a jump to RETURN is a RETURN
                return False
            self.materialize()
            if a == i + 1:
                return True
            self.jump(a, i)
            return False
        elif op in (O.JUMP_IF_FALSE, O.JUMP_IF_TRUE):
            v = self.pop()
            self.materialize()
            test = "False" if op == O.JUMP_IF_FALSE else "True"
            e(f"if {v.expr} is {test}:")
            self.indent += 1
            self.jump(a, i)
            self.indent -= 1
        elif op == O.ITER_INIT:
            x = self.pop()
            self.result(f"_iterate({x.expr})")
        elif op == O.ITER_NEXT:
            it = self.pop()
            self.materialize()
            k = len(self.stack)
            # Only ITER_INIT makes iterators, but IR from elsewhere may hand
            # ITER_NEXT anything; the try costs nothing until it raises.
            e("try:")
            e(f"    s{k} = next({it.expr}, _END)")
            e(f"except TypeError: _check_iterator({it.expr}); raise")
            e(f"if s{k} is _END:")
            self.indent += 1
            self.jump(a, i)
            self.indent -= 1
            self.push(_Entry(f"s{k}"))
        elif op == O.COALESCE:
            v = self.pop()
            self.materialize()
            k = len(self.stack)
            e(f"s{k} = {v.expr}")
            e(f"if s{k} is not None and s{k} is not NONE:")
            self.indent += 1
            e(f"if type(s{k}) is Some: s{k} = s{k}.value")
            self.jump(a, i)
            self.indent -= 1
        elif op == O.BUILD_ARRAY:
            self.result("[" + ", ".join(self.take(a)) + "]")
        elif op == O.BUILD_TUPLE:
            items = self.take(a)
            self.result("(" + "".join(x + ", " for x in items) + ")")
        elif op == O.BUILD_MAP:
            items = self.take(2 * a)
            pairs = [f"_map_key({items[j]}): {items[j + 1]}" for j in range(0, len(items), 2)]
            self.result("{" + ", ".join(pairs) + "}")
        elif op == O.BUILD_STRING:
            parts = []
            for x in self.take_entries(a):
                if x.expr.startswith(("'", '"')):
                    parts.append(x.expr)
                else:
                    parts.append(f"({x.expr} if type({x.expr}) is str else _display({x.expr}))")
            # Inline concatenation, then the length cap: the parts are each
            # within the cap, so what is built before the check stays bounded.
            self.result(" + ".join(parts) if parts else "''")
            k = len(self.stack) - 1
            self.emit(f"if len(s{k}) > {UNCHECKED}: _check_string(len(s{k}), 'string interpolation')")
        elif op == O.BUILD_STRUCT:
            values = self.take(len(b))
            body = ", ".join(f"{name!r}: {v}" for name, v in zip(b, values))
            self.result(f"StructValue({a!r}, {{{body}}})")
        elif op == O.BUILD_VARIANT:
            enum, variant, names = a
            if enum == "Option":
                self.result(f"Some({self.pop().expr})" if variant == "Some" else "NONE")
            elif enum == "Result":
                self.result(f"{'Ok' if variant == 'Ok' else 'Err'}({self.pop().expr})")
            else:
                values = self.take(b)
                if names:
                    data = "{" + ", ".join(f"{n!r}: {v}" for n, v in zip(names, values)) + "}"
                else:
                    data = "(" + "".join(v + ", " for v in values) + ")"
                self.result(f"EnumValue({enum!r}, {variant!r}, {data})")
        elif op == O.BUILD_RANGE:
            hi, lo = self.pop(), self.pop()
            self.result(f"_range({lo.expr}, {hi.expr}, {bool(a)!r})")
        elif op == O.TEST_VARIANT:
            x = self.pop().expr
            if a == "Option":
                test = f"type({x}) is Some" if b == "Some" else f"({x} is NONE or {x} is None)"
            elif a == "Result":
                test = f"type({x}) is {'Ok' if b == 'Ok' else 'Err'}"
            else:
                test = f"type({x}) is EnumValue and {x}.enum_name == {a!r} and {x}.variant == {b!r}"
            self.result(test)
        elif op == O.VARIANT_FIELD:
            self.result(f"_variant_field({self.pop().expr}, {a!r})")
        elif op == O.TEST_LEN:
            self.result(f"_test_len({self.pop().expr}, {a!r}, {b!r})")
        elif op == O.SLICE:
            hi, lo, obj = self.pop(), self.pop(), self.pop()
            self.result(f"_slice({obj.expr}, {lo.expr}, {hi.expr}, {a!r})")
        elif op == O.CHECK_TYPE:
            self.result(f"_is_type({self.pop().expr}, {a!r})")
        elif op == O.CAST:
            self.result(f"_cast({self.pop().expr}, {a!r})")
        elif op == O.FIELD_GET:
            x = self.pop().expr
            self.result(f"{x}.fields[{a!r}] if type({x}) is StructValue and {a!r} in {x}.fields "
                        f"else _field_get({x}, {a!r})")
        elif op == O.FIELD_SET:
            v, obj = self.pop(), self.pop()
            e(f"_field_set({obj.expr}, {a!r}, {v.expr})")
        elif op == O.INDEX_GET:
            idx, obj = self.pop().expr, self.pop().expr
            self.result(f"{obj}[{idx}] if type({obj}) is list and type({idx}) is int and "
                        f"0 <= {idx} < len({obj}) else _index_get({obj}, {idx})")
        elif op == O.INDEX_SET:
            v, idx, obj = self.pop(), self.pop(), self.pop()
            e(f"_index_set({obj.expr}, {idx.expr}, {v.expr})")
        elif op == O.EMIT:
            payload, channel = self.pop(), self.pop()
            e(f"_emit(vm, {channel.expr}, {payload.expr})")
        elif op == O.PROPAGATE:
            x = self.pop()
            k = len(self.stack)
            e(f"s{k} = {x.expr}")
            e(f"if type(s{k}) is Ok or type(s{k}) is Some: s{k} = s{k}.value")
            e(f"else: return _propagate(s{k}, {bool(a)!r})")
            self.push(_Entry(f"s{k}"))
        elif op == O.THROW:
            e(f"return Err({self.pop().expr})")
            return False
        elif op == O.RETHROW:
            e(f"raise _Thrown({self.pop().expr})")
            return False
        elif op == O.MATCH_FAIL:
            e(f"raise ConcertoError({a!r}, 'RuntimeError')")
            return False
        elif op == O.HASH_MAP_GET:
            key = self.pop().expr
            self.result(f"_hm_get({refs.ref(a)}[0], {key})")
        elif op == O.HASH_MAP_SET:
            v, key = self.pop(), self.pop()
            e(f"_hm_set({refs.ref(a)}[0], {key.expr}, {v.expr})")
            self.push(_Entry("None"))
        elif op == O.HASH_MAP_HAS:
            key = self.pop().expr
            self.result(f"_hm_has({refs.ref(a)}[0], {key})")
        elif op == O.HASH_MAP_DELETE:
            key = self.pop().expr
            self.result(f"_hm_delete({refs.ref(a)}[0], {key})")
        elif op == O.CALL_MODEL:
            cell, method, schema = a
            args = self.take(b)
            recv = f"{refs.ref(cell)}[0]" if cell is not None else self.pop().expr
            self.result(f"vm.call_model({recv}, {method!r}, {schema!r}, [{', '.join(args)}])")
        elif op == O.MAKE_CLOSURE:
            caps = self.take(b)
            self.result(f"Closure({refs.ref(a)}, ({''.join(c + ', ' for c in caps)}), None, {a.name!r})")
        elif op == O.CATCH:
            pass
        else:  # pragma: no cover - _SUPPORTED guards this
            raise NotCompilable(O.NAMES[op])
        return True

    def take(self, n: int) -> list[str]:
        return [x.expr for x in self.take_entries(n)]

    def take_entries(self, n: int) -> list[_Entry]:
        if n == 0:
            return []
        items = self.stack[-n:]
        del self.stack[-n:]
        return items

    def arith(self, sym: str, x: _Entry, y: _Entry) -> None:
        k = len(self.stack)
        r = f"s{k}"
        helper = "_add" if sym == "+" else "_arith"
        slow = f"{helper}({x.expr}, {y.expr})" if sym == "+" else f"_arith({sym!r}, {x.expr}, {y.expr})"
        if y.int_lit and x.int_lit:
            guard = "True"
        elif y.int_lit:
            guard = f"type({x.expr}) is int"
        elif x.int_lit:
            guard = f"type({y.expr}) is int"
        else:
            guard = f"type({x.expr}) is int and type({y.expr}) is int"
        self.emit(f"if {guard}:")
        self.emit(f"    {r} = {x.expr} {sym} {y.expr}")
        self.emit(f"    if not {INT_MIN} <= {r} <= {INT_MAX}: _overflow({sym!r})")
        self.emit(f"else: {r} = {slow}")
        self.push(_Entry(r))

    def compare(self, op: int, x: _Entry, y: _Entry) -> str:
        sym = _CMP[op]
        xe, ye = x.expr, y.expr
        if op in (O.EQ, O.NEQ):
            slow = f"_equal({xe}, {ye})" if op == O.EQ else f"not _equal({xe}, {ye})"
            if y.int_lit:
                return f"({xe} {sym} {ye}) if type({xe}) is int else {slow}"
            return f"({xe} {sym} {ye}) if type({xe}) is type({ye}) and type({xe}) in _SCALARS else {slow}"
        slow = f"_compare({sym!r}, {xe}, {ye})"
        if y.int_lit:
            return f"({xe} {sym} {ye}) if type({xe}) is int else {slow}"
        if x.int_lit:
            return f"({xe} {sym} {ye}) if type({ye}) is int else {slow}"
        return f"({xe} {sym} {ye}) if type({xe}) is type({ye}) and type({xe}) in _ORDERED else {slow}"


class _Refs:
    """Python objects the generated code refers to by name (`r0`, `r1`, ...)."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.values: dict[str, Any] = {}

    def ref(self, value: Any) -> str:
        key = id(value)
        name = self.names.get(key)
        if name is None:
            name = f"r{len(self.names)}"
            self.names[key] = name
            self.values[name] = value
        return name


# -- building and running ------------------------------------------------------

def compile_program(program: Program) -> int:
    """Compile every function that qualifies; returns how many did. Idempotent."""
    if program.jit_compiled is not None:
        return program.jit_compiled
    eligible: list[tuple[LinkedFunction, list[int]]] = []
    for fn in program.functions.values():
        if len(fn.base_code) <= MAX_FUNCTION_SIZE and all(op in _SUPPORTED for op, _a, _b in fn.base_code):
            eligible.append((fn, fn.depths))
    names = {fn.name: f"f{i}" for i, (fn, _depths) in enumerate(eligible)}
    refs = _Refs()
    source: list[str] = []
    tables: list[tuple[LinkedFunction, int, list[int]]] = []
    for i, (fn, depths) in enumerate(eligible):
        writer = _FunctionWriter(fn, depths, i, refs, names)
        lines = writer.write()
        tables.append((fn, len(source) + 1, writer.line_instr))
        source.extend(lines)
        source.append("")
    namespace = _namespace(tables)
    namespace.update(refs.values)
    filename = f"<concerto-jit {program.source_file}>"
    text = "\n".join(source)
    try:
        with warnings.catch_warnings():
            # IR may test a literal (`if 5 is False:`): legal, and no business of the user's stderr.
            warnings.simplefilter("ignore", SyntaxWarning)
            exec(compile(text, filename, "exec"), namespace)  # noqa: S102 - our own generated code
    except (SyntaxError, RecursionError, MemoryError, ValueError) as e:
        # A translator bug must not stop a program that the interpreter can run.
        program.jit_failures.append(f"{type(e).__name__}: {e}")
        program.jit_compiled = 0
        return 0
    for fn, _depths in eligible:
        fn.jit = namespace[names[fn.name]]
    program.jit_compiled = len(eligible)
    program.jit_source = text
    return len(eligible)


def _namespace(tables: list[tuple[LinkedFunction, int, list[int]]]) -> dict[str, Any]:
    """The globals of the generated module: operator helpers and value types."""
    from concerto.vm import operators as ops
    from concerto.vm.limits import check_string
    from concerto.vm.loader import _UNSET
    from concerto.vm.machine import TraceEntry

    def note(exc: BaseException, index: int, tb: Any) -> None:
        # `tb` starts at the compiled function's own frame: its line is the
        # generated line that was running, which maps to one instruction.
        fn, first_line, line_instr = tables[index]
        trace = exc.__dict__.setdefault("concerto_trace", [])
        if len(trace) >= TRACE_LIMIT:
            return
        rel = tb.tb_lineno - first_line if tb is not None else 0
        instr = line_instr[rel] if 0 <= rel < len(line_instr) else 0
        line, col = fn.base_spans[instr] if fn.base_spans else (0, 0)
        trace.append(TraceEntry(fn.name, fn.file, line, col))

    def too_deep(vm: Any) -> None:
        raise ConcertoError(f"call depth exceeded ({vm.jit_max_depth} nested calls)", "RuntimeError")

    def unset_global(name: str) -> None:
        raise ConcertoError(f"global `{name}` is used before it is set", "RuntimeError")

    def method(vm: Any, recv: Any, name: str, argc: int) -> Any:
        target = vm._call_method(recv, name, argc)
        if type(target) is not LinkedFunction:
            return target  # a native: (vm, recv, *args)
        if argc + 1 != target.nparams:
            raise ConcertoError(f"method `{name}` takes {target.nparams - 1} argument(s), {argc} given",
                                "TypeError")
        if target.jit is not None:
            return target.jit
        return lambda vm, *args: vm.run_function(target, list(args))

    def callable_(callee: Any, argc: int) -> Any:
        if type(callee) is Closure:
            fn = callee.function
            if fn is not None and fn.jit is not None and not callee.captures and fn.nparams == argc:
                return fn.jit
            if callee.native is not None:
                return callee.native
        return lambda vm, *args: vm.call_value(callee, list(args))

    def emit(vm: Any, channel: Any, payload: Any) -> None:
        vm.on_emit(ops.check_channel(channel), payload)

    return {
        "__builtins__": __builtins__,
        "_note": note, "_too_deep": too_deep, "_UNSET": _UNSET, "_unset_global": unset_global,
        "_method": method, "_callable": callable_, "_emit": emit,
        "_add": ops.add_values, "_arith": ops.arith, "_compare": ops.compare, "_equal": values_equal,
        "_overflow": ops.overflow, "_neg": ops.negate, "_not_bool": ops.not_bool, "_copy": ops.copy_value,
        "_iterate": ops.iterate, "_END": ops.END, "_check_iterator": ops.check_iterator, "_map_key": ops.map_key, "_display": display,
        "_range": ops.build_range, "_variant_field": ops.variant_field, "_test_len": ops.test_len,
        "_slice": ops.slice_value, "_is_type": ops.is_type, "_cast": ops.cast,
        "_field_get": ops.field_get, "_field_set": ops.field_set,
        "_index_get": ops.index_get, "_index_set": ops.index_set, "_propagate": ops.propagated,
        "_hm_get": ops.hashmap_get, "_hm_delete": ops.hashmap_delete,
        "_hm_set": ops.hashmap_set, "_hm_has": ops.hashmap_has, "_check_string": check_string,
        "_SCALARS": ops.SCALAR_TYPES, "_ORDERED": ops.ORDERED_TYPES, "_Thrown": ops.Thrown,
        "ConcertoError": ConcertoError, "StructValue": StructValue, "EnumValue": EnumValue,
        "Some": Some, "NONE": NONE, "Ok": Ok, "Err": Err, "Closure": Closure,
    }


# Functions longer than this (in IR instructions) stay interpreted: CPython's
# compiler needs about 18 KB per instruction of such a function (a 100,000-term
# `+` chain took 2 GB), and code that long is rarely a hot loop.
MAX_FUNCTION_SIZE = 5000

# A fault that unwinds through thousands of compiled frames keeps only the
# innermost entries; the CLI shows a dozen anyway.
TRACE_LIMIT = 64
