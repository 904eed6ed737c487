"""The dispatch loop: one shared value stack, call frames, try-frames.

Calls between Concerto functions never recurse in Python: a call pushes the
caller's (code, pc, locals, function, stack base) onto `frames` and switches,
so recursion depth is bounded by `max_call_depth`, not Python's stack.
A native that calls back into Concerto (Array.map with a closure) runs a
nested loop that returns when its frame returns.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from concerto.stdlib import load as load_stdlib
from concerto.vm import opcodes as O
from concerto.vm.loader import LinkedFunction, Program, builtin_native
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
    type_name,
    values_equal,
)

EmitHandler = Callable[[str, Any], None]
LogHandler = Callable[[str, str], None]

FAULT_KINDS = {"RuntimeError", "IndexError", "KeyError", "TypeError", "ArithmeticError", "OverflowError"}
_END = object()
_CMP_TEXT = {6: "<", 11: ">", 12: "<=", 13: ">=", 14: "==", 15: "!="}

# The dispatch loop compares against literal opcode numbers (fastest in CPython);
# this keeps them honest.
assert all(O.CODES[name] == num for name, num in {
    "LOAD_LOCAL": 0, "LOAD_CONST": 1, "STORE_LOCAL": 2, "JUMP_IF_FALSE": 3, "ADD": 4, "SUB": 5,
    "LT": 6, "CALL": 7, "RETURN": 8, "JUMP": 9, "MUL": 10, "GT": 11, "LTE": 12, "GTE": 13,
    "EQ": 14, "NEQ": 15, "FIELD_GET": 16, "CALL_METHOD": 17, "POP": 18, "INDEX_GET": 19,
    "ITER_NEXT": 20, "JUMP_IF_TRUE": 21, "DIV": 22, "MOD": 23, "LOAD_GLOBAL": 24, "DUP": 25,
    "CALL_VALUE": 26, "CALL_NATIVE": 27, "BUILD_STRING": 28, "BUILD_STRUCT": 29, "NOT": 30,
    "LC_LT_JIF": 31, "C_ADD": 32, "C_SUB": 33, "C_MUL": 34, "C_MOD": 35, "INC_LOCAL": 36,
    "CMP_JIF": 37,
}.items())


@dataclass
class TraceEntry:
    function: str
    file: str
    line: int
    col: int


class VMError(Exception):
    """A run ended with an error. Carries the failing instruction's position."""

    def __init__(self, message: str, kind: str, trace: list[TraceEntry], value: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.trace = trace
        self.value = value

    @property
    def location(self) -> TraceEntry | None:
        return self.trace[0] if self.trace else None


class Panic(Exception):
    """`panic(msg)`: not catchable (spec 13)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Thrown(ConcertoError):
    """An error value no catch clause matched, travelling to an outer try."""

    def __init__(self, value: Any) -> None:
        msg = value.fields.get("message") if isinstance(value, StructValue) else None
        super().__init__(str(msg) if msg is not None else display(value), type_name(value))
        self.value = value


@dataclass
class RunConfig:
    max_call_depth: int = 10_000
    max_steps: int | None = None


@dataclass
class Machine:
    program: Program
    on_emit: EmitHandler = lambda channel, payload: None
    on_log: LogHandler = lambda level, message: print(f"[{level}] {message}", file=sys.stderr)
    config: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        self.stack: list[Any] = []
        self.frames: list[tuple] = []
        self.tries: list[tuple[int, int, int]] = []  # (frame depth, catch pc, stack height)
        self.registry = load_stdlib()

    # -- NativeContext -------------------------------------------------------
    def call(self, function: Any, *args: Any) -> Any:
        return self.call_value(function, list(args))

    def log(self, level: str, message: str) -> None:
        self.on_log(level, message)

    def emit(self, channel: str, payload: Any) -> None:
        self.on_emit(channel, payload)

    def sleep(self, ms: int) -> None:
        time.sleep(max(0, ms) / 1000)

    def convert(self, value: Any, type_name_: str) -> Any:
        return convert_value(self.program, value, type_name_)

    # -- entry points ----------------------------------------------------------
    def run_main(self) -> Any:
        if self.program.init is not None:
            self.run_function(self.program.init, [])
        result = self.run_function(self.program.entry, [])
        if type(result) is Err:
            value = result.value
            message = value.fields.get("message") if isinstance(value, StructValue) else None
            raise VMError(f"main returned Err: {message if message is not None else display(value)}",
                          type_name(value), [], value)
        return result

    def run_function(self, fn: LinkedFunction, args: list[Any]) -> Any:
        locals_ = args + [None] * (fn.nlocals - len(args))
        return self._execute(fn, locals_)

    def call_value(self, callee: Any, args: list[Any]) -> Any:
        if type(callee) is not Closure:
            raise ConcertoError(f"`{type_name(callee)}` is not callable", "TypeError")
        if callee.native is not None:
            return callee.native(self, *args)
        fn = callee.function
        if len(args) != fn.nparams:
            raise ConcertoError(f"`{callee.name}` takes {fn.nparams} argument(s), {len(args)} given", "TypeError")
        locals_ = args + list(callee.captures) + [None] * (fn.nlocals - fn.nparams - fn.ncaptures)
        return self._execute(fn, locals_)

    # -- the loop --------------------------------------------------------------
    def _execute(self, fn: LinkedFunction, locals_: list[Any]) -> Any:
        stack = self.stack
        frames = self.frames
        tries = self.tries
        stop_depth = len(frames)
        entry_stack = len(stack)
        base = entry_stack
        code = fn.code
        pc = 0
        max_depth = self.config.max_call_depth
        call_method = self._call_method

        while True:
            try:
                while True:
                    op, a, b = code[pc]
                    pc += 1
                    if op == 0:  # LOAD_LOCAL
                        stack.append(locals_[a])
                    elif op == 1:  # LOAD_CONST
                        stack.append(a)
                    elif op == 2:  # STORE_LOCAL
                        locals_[a] = stack.pop()
                    elif op == 31:  # LC_LT_JIF: local < const, jump when false
                        x = locals_[a]
                        c, t = b
                        if type(x) is type(c) and type(x) is not bool:
                            if not x < c:
                                pc = t
                        elif not _compare("<", x, c):
                            pc = t
                    elif op == 32:  # C_ADD
                        x = stack[-1]
                        if type(x) is int:
                            r = x + a
                            if INT_MIN <= r <= INT_MAX:
                                stack[-1] = r
                            else:
                                raise ConcertoError("integer overflow in `+`", "OverflowError")
                        else:
                            stack[-1] = _add(x, a)
                    elif op == 36:  # INC_LOCAL: x += const
                        x = locals_[a]
                        if type(x) is int:
                            r = x + b
                            if INT_MIN <= r <= INT_MAX:
                                locals_[a] = r
                            else:
                                raise ConcertoError("integer overflow in `+`", "OverflowError")
                        else:
                            locals_[a] = _add(x, b)
                    elif op == 33:  # C_SUB
                        x = stack[-1]
                        if type(x) is int:
                            r = x - a
                            if INT_MIN <= r <= INT_MAX:
                                stack[-1] = r
                            else:
                                raise ConcertoError("integer overflow in `-`", "OverflowError")
                        else:
                            stack[-1] = _arith("-", x, a)
                    elif op == 37:  # CMP_JIF: compare the top two, jump when false
                        y = stack.pop()
                        x = stack.pop()
                        if b == 14:
                            ok = x == y if type(x) is type(y) else values_equal(x, y)
                        elif b == 15:
                            ok = x != y if type(x) is type(y) else not values_equal(x, y)
                        elif type(x) is type(y) and type(x) is not bool:
                            ok = x < y if b == 6 else x > y if b == 11 else x <= y if b == 12 else x >= y
                        else:
                            ok = _compare(_CMP_TEXT[b], x, y)
                        if not ok:
                            pc = a
                    elif op == 34:  # C_MUL
                        stack[-1] = _arith("*", stack[-1], a)
                    elif op == 35:  # C_MOD
                        x = stack[-1]
                        if type(x) is int and x >= 0 and a > 0:
                            stack[-1] = x % a
                        else:
                            stack[-1] = _arith("%", x, a)
                    elif op == 23:  # MOD
                        y = stack.pop()
                        x = stack[-1]
                        if type(x) is int and type(y) is int and x >= 0 and y > 0:
                            stack[-1] = x % y
                        else:
                            stack[-1] = _arith("%", x, y)
                    elif op == 22:  # DIV
                        y = stack.pop()
                        stack[-1] = _arith("/", stack[-1], y)
                    elif op == 3:  # JUMP_IF_FALSE
                        if stack.pop() is False:
                            pc = a
                    elif op == 4:  # ADD
                        y = stack.pop()
                        x = stack[-1]
                        if type(x) is int and type(y) is int:
                            r = x + y
                            if INT_MIN <= r <= INT_MAX:
                                stack[-1] = r
                            else:
                                raise ConcertoError("integer overflow in `+`", "OverflowError")
                        else:
                            stack[-1] = _add(x, y)
                    elif op == 5:  # SUB
                        y = stack.pop()
                        x = stack[-1]
                        if type(x) is int and type(y) is int:
                            r = x - y
                            if INT_MIN <= r <= INT_MAX:
                                stack[-1] = r
                            else:
                                raise ConcertoError("integer overflow in `-`", "OverflowError")
                        else:
                            stack[-1] = _arith("-", x, y)
                    elif op == 6:  # LT
                        y = stack.pop()
                        x = stack[-1]
                        if type(x) is type(y) and type(x) is not bool:
                            stack[-1] = x < y
                        else:
                            stack[-1] = _compare("<", x, y)
                    elif op == 7:  # CALL
                        # a: LinkedFunction, b: argc
                        if len(frames) >= max_depth:
                            raise ConcertoError(f"call depth exceeded ({max_depth} nested calls)", "RuntimeError")
                        frames.append((code, pc, locals_, fn, base))
                        fn = a
                        if b:
                            locals_ = stack[-b:]
                            del stack[-b:]
                        else:
                            locals_ = []
                        extra = a.nlocals - b
                        if extra:
                            locals_ += [None] * extra
                        base = len(stack)
                        code = a.code
                        pc = 0
                    elif op == 8:  # RETURN
                        rv = stack.pop()
                        if len(stack) > base:
                            del stack[base:]
                        depth = len(frames)
                        while tries and tries[-1][0] >= depth:
                            tries.pop()
                        if depth == stop_depth:
                            return rv
                        code, pc, locals_, fn, base = frames.pop()
                        stack.append(rv)
                    elif op == 9:  # JUMP
                        pc = a
                    elif op == 10:  # MUL
                        y = stack.pop()
                        x = stack[-1]
                        if type(x) is int and type(y) is int:
                            r = x * y
                            if INT_MIN <= r <= INT_MAX:
                                stack[-1] = r
                            else:
                                raise ConcertoError("integer overflow in `*`", "OverflowError")
                        else:
                            stack[-1] = _arith("*", x, y)
                    elif op == 11:  # GT
                        y = stack.pop()
                        x = stack[-1]
                        if type(x) is type(y) and type(x) is not bool:
                            stack[-1] = x > y
                        else:
                            stack[-1] = _compare(">", x, y)
                    elif op == 12:  # LTE
                        y = stack.pop()
                        x = stack[-1]
                        if type(x) is type(y) and type(x) is not bool:
                            stack[-1] = x <= y
                        else:
                            stack[-1] = _compare("<=", x, y)
                    elif op == 13:  # GTE
                        y = stack.pop()
                        x = stack[-1]
                        if type(x) is type(y) and type(x) is not bool:
                            stack[-1] = x >= y
                        else:
                            stack[-1] = _compare(">=", x, y)
                    elif op == 14:  # EQ
                        y = stack.pop()
                        x = stack[-1]
                        stack[-1] = x == y if type(x) is type(y) else values_equal(x, y)
                    elif op == 15:  # NEQ
                        y = stack.pop()
                        x = stack[-1]
                        stack[-1] = x != y if type(x) is type(y) else not values_equal(x, y)
                    elif op == 16:  # FIELD_GET
                        obj = stack[-1]
                        if type(obj) is StructValue:
                            try:
                                stack[-1] = obj.fields[a]
                            except KeyError:
                                raise ConcertoError(f"`{obj.type_name}` has no field `{a}`", "TypeError") from None
                        else:
                            stack[-1] = _field_get(obj, a)
                    elif op == 17:  # CALL_METHOD
                        if b:
                            args = stack[-b:]
                            del stack[-b:]
                        else:
                            args = []
                        recv = stack.pop()
                        target = call_method(recv, a)
                        if type(target) is LinkedFunction:
                            if len(frames) >= max_depth:
                                raise ConcertoError(f"call depth exceeded ({max_depth} nested calls)", "RuntimeError")
                            if len(args) + 1 != target.nparams:
                                raise ConcertoError(f"method `{a}` takes {target.nparams - 1} argument(s), {len(args)} given", "TypeError")
                            frames.append((code, pc, locals_, fn, base))
                            fn = target
                            locals_ = [recv] + args
                            extra = target.nlocals - len(locals_)
                            if extra:
                                locals_ += [None] * extra
                            base = len(stack)
                            code = target.code
                            pc = 0
                        else:
                            stack.append(target(self, recv, *args))
                    elif op == 18:  # POP
                        stack.pop()
                    elif op == 19:  # INDEX_GET
                        idx = stack.pop()
                        obj = stack[-1]
                        if type(obj) is list and type(idx) is int and 0 <= idx < len(obj):
                            stack[-1] = obj[idx]
                        else:
                            stack[-1] = _index_get(obj, idx)
                    elif op == 20:  # ITER_NEXT
                        item = next(stack.pop(), _END)
                        if item is _END:
                            pc = a
                        else:
                            stack.append(item)
                    elif op == 21:  # JUMP_IF_TRUE
                        if stack.pop() is True:
                            pc = a
                    elif op == 24:  # LOAD_GLOBAL
                        value = a[0]
                        if value.__class__.__name__ == "_Unset":
                            raise ConcertoError(f"global `{b}` is used before it is set", "RuntimeError")
                        stack.append(value)
                    elif op == 25:  # DUP
                        stack.append(stack[-1])
                    elif op == 26:  # CALL_VALUE
                        if a:
                            args = stack[-a:]
                            del stack[-a:]
                        else:
                            args = []
                        callee = stack.pop()
                        if type(callee) is Closure and callee.function is not None:
                            target = callee.function
                            if len(args) != target.nparams:
                                raise ConcertoError(
                                    f"`{callee.name}` takes {target.nparams} argument(s), {len(args)} given", "TypeError")
                            if len(frames) >= max_depth:
                                raise ConcertoError(f"call depth exceeded ({max_depth} nested calls)", "RuntimeError")
                            frames.append((code, pc, locals_, fn, base))
                            fn = target
                            locals_ = args
                            if callee.captures:
                                locals_ += callee.captures
                            extra = target.nlocals - len(locals_)
                            if extra:
                                locals_ += [None] * extra
                            base = len(stack)
                            code = target.code
                            pc = 0
                        else:
                            stack.append(self.call_value(callee, args))
                    elif op == 27:  # CALL_NATIVE
                        if b:
                            args = stack[-b:]
                            del stack[-b:]
                        else:
                            args = []
                        stack.append(a(self, *args))
                    elif op == 28:  # BUILD_STRING
                        parts = stack[-a:]
                        del stack[-a:]
                        stack.append("".join([p if type(p) is str else display(p) for p in parts]))
                    elif op == 29:  # BUILD_STRUCT
                        n = len(b)
                        if n:
                            values = stack[-n:]
                            del stack[-n:]
                            stack.append(StructValue(a, dict(zip(b, values))))
                        else:
                            stack.append(StructValue(a, {}))
                    elif op == 30:  # NOT
                        v = stack[-1]
                        if type(v) is not bool:
                            raise ConcertoError(f"`!` needs a Bool, found {type_name(v)}", "TypeError")
                        stack[-1] = not v
                    else:
                        r = self._slow_op(op, a, b, code, pc, locals_, fn, base)
                        if r is not None:
                            kind, value = r
                            if kind == "jump":
                                pc = value
                            elif kind == "return":
                                rv = value
                                if len(stack) > base:
                                    del stack[base:]
                                depth = len(frames)
                                while tries and tries[-1][0] >= depth:
                                    tries.pop()
                                if depth == stop_depth:
                                    return rv
                                code, pc, locals_, fn, base = frames.pop()
                                stack.append(rv)
            except Panic:
                raise
            except VMError:
                raise
            except Exception as exc:  # noqa: BLE001 - every fault is turned into a Concerto error
                fault = _as_fault(exc)
                if fault is None:
                    raise
                # The innermost try at or above this run's entry frame handles it.
                if tries and tries[-1][0] >= stop_depth:
                    depth, catch_pc, height = tries.pop()
                    while len(frames) > depth:
                        code, pc, locals_, fn, base = frames.pop()
                    del stack[height:]
                    stack.append(fault_value(fault))
                    pc = catch_pc
                    continue
                trace = self._trace(fn, pc, stop_depth)
                del frames[stop_depth:]
                del stack[entry_stack:]
                if stop_depth == 0:
                    value = fault.value if isinstance(fault, _Thrown) else None
                    raise VMError(fault.message, fault.kind, trace, value) from None
                fault.trace = getattr(fault, "trace", None) or trace  # type: ignore[attr-defined]
                raise fault from None

    def _trace(self, fn: LinkedFunction, pc: int, stop_depth: int) -> list[TraceEntry]:
        entries = [_entry(fn, pc)]
        for frame in reversed(self.frames):
            entries.append(_entry(frame[3], frame[1]))
        return entries

    # -- rarely used opcodes ---------------------------------------------------
    def _slow_op(self, op: int, a: Any, b: Any, code: list, pc: int, locals_: list, fn: LinkedFunction, base: int):
        stack = self.stack
        if op == O.DIV:
            y = stack.pop()
            stack[-1] = _arith("/", stack[-1], y)
        elif op == O.MOD:
            y = stack.pop()
            stack[-1] = _arith("%", stack[-1], y)
        elif op == O.NEG:
            v = stack[-1]
            if type(v) is int:
                if v == INT_MIN:
                    raise ConcertoError("integer overflow in negation", "OverflowError")
                stack[-1] = -v
            elif type(v) is float:
                stack[-1] = -v
            else:
                raise ConcertoError(f"cannot negate a value of type {type_name(v)}", "TypeError")
        elif op == O.PUSH:
            stack.append(a)
        elif op == O.SWAP:
            stack[-1], stack[-2] = stack[-2], stack[-1]
        elif op == O.STORE_GLOBAL:
            a[0] = stack.pop()
        elif op == O.AND:
            y = stack.pop()
            stack[-1] = stack[-1] and y
        elif op == O.OR:
            y = stack.pop()
            stack[-1] = stack[-1] or y
        elif op == O.EMIT:
            payload = stack.pop()
            channel = stack.pop()
            if type(channel) is not str:
                raise ConcertoError(f"emit channel must be a String, found {type_name(channel)}", "TypeError")
            self.on_emit(channel, payload)
        elif op == O.BUILD_ARRAY:
            if a:
                items = stack[-a:]
                del stack[-a:]
            else:
                items = []
            stack.append(items)
        elif op == O.BUILD_TUPLE:
            items = tuple(stack[-a:]) if a else ()
            if a:
                del stack[-a:]
            stack.append(items)
        elif op == O.BUILD_MAP:
            items = stack[-2 * a:] if a else []
            if a:
                del stack[-2 * a:]
            m: dict[Any, Any] = {}
            for i in range(0, len(items), 2):
                m[_map_key(items[i])] = items[i + 1]
            stack.append(m)
        elif op == O.BUILD_RANGE:
            hi = stack.pop()
            lo = stack.pop()
            if lo is None:
                lo = 0
            if hi is None:
                raise ConcertoError("a range needs an end here", "RuntimeError")
            if type(lo) is not int or type(hi) is not int:
                raise ConcertoError("range bounds must be Int", "TypeError")
            stack.append(range(lo, hi + 1 if a else hi))
        elif op == O.BUILD_VARIANT:
            enum, variant, names = a
            if enum == "Option":
                stack.append(Some(stack.pop()) if variant == "Some" else NONE)
            elif enum == "Result":
                v = stack.pop()
                stack.append(Ok(v) if variant == "Ok" else Err(v))
            else:
                if b:
                    values = stack[-b:]
                    del stack[-b:]
                else:
                    values = []
                data = dict(zip(names, values)) if names else tuple(values)
                stack.append(EnumValue(enum, variant, data))
        elif op == O.TEST_VARIANT:
            v = stack.pop()
            stack.append(_is_variant(v, a, b))
        elif op == O.VARIANT_FIELD:
            v = stack.pop()
            t = type(v)
            if t is Some or t is Ok or t is Err:
                stack.append(v.value)
            elif t is EnumValue:
                stack.append(v.data[a])
            else:
                raise ConcertoError(f"{type_name(v)} has no variant data", "TypeError")
        elif op == O.TEST_LEN:
            v = stack.pop()
            if b == "tuple":
                stack.append(type(v) is tuple and len(v) == a)
            elif b == ">=":
                stack.append(type(v) in (list, tuple) and len(v) >= a)
            else:
                stack.append(type(v) in (list, tuple) and len(v) == a)
        elif op == O.SLICE:
            hi = stack.pop()
            lo = stack.pop()
            obj = stack.pop()
            stack.append(_slice(obj, lo, hi, a))
        elif op == O.ITER_INIT:
            stack.append(_iterate(stack.pop()))
        elif op == O.COPY:
            v = stack[-1]
            t = type(v)
            if t is list:
                stack[-1] = list(v)
            elif t is dict:
                stack[-1] = dict(v)
            elif t is StructValue:
                stack[-1] = v.copy()
        elif op == O.FIELD_SET:
            value = stack.pop()
            obj = stack.pop()
            if type(obj) is StructValue:
                if a not in obj.fields:
                    raise ConcertoError(f"`{obj.type_name}` has no field `{a}`", "TypeError")
                obj.fields[a] = value
            elif type(obj) is dict:
                obj[a] = value
            else:
                raise ConcertoError(f"cannot set field `{a}` on {type_name(obj)}", "TypeError")
        elif op == O.INDEX_SET:
            value = stack.pop()
            idx = stack.pop()
            obj = stack.pop()
            _index_set(obj, idx, value)
        elif op == O.CHECK_TYPE:
            v = stack.pop()
            stack.append(_is_type(v, a))
        elif op == O.CAST:
            stack[-1] = _cast(stack[-1], a)
        elif op == O.COALESCE:
            v = stack.pop()
            if v is None or v is NONE:
                return None
            stack.append(v.value if type(v) is Some else v)
            return ("jump", a)
        elif op == O.TRY_BEGIN:
            self.tries.append((len(self.frames), a, len(stack)))
        elif op == O.TRY_END:
            if self.tries:
                self.tries.pop()
        elif op == O.PROPAGATE:
            v = stack.pop()
            t = type(v)
            if t is Ok or t is Some:
                stack.append(v.value)
                return None
            if t is Err or v is NONE:
                if self.tries and self.tries[-1][0] == len(self.frames):
                    err = v.value if t is Err else StructValue("RuntimeError", {"message": "`?` found None"})
                    return self._catch(err)
                if v is NONE and a:
                    return ("return", Err(StructValue("RuntimeError", {"message": "`?` found None"})))
                return ("return", v)
            raise ConcertoError(f"`?` needs a Result or Option, found {type_name(v)}", "TypeError")
        elif op == O.THROW:
            e = stack.pop()
            if self.tries and self.tries[-1][0] == len(self.frames):
                return self._catch(e)
            return ("return", Err(e))
        elif op == O.RETHROW:
            raise _Thrown(stack.pop())
        elif op == O.MATCH_FAIL:
            raise ConcertoError(a, "RuntimeError")
        elif op == O.HASH_MAP_GET:
            key = stack.pop()
            d = a[0]
            stack.append(Some(d[key]) if key in d else NONE)
        elif op == O.HASH_MAP_SET:
            value = stack.pop()
            key = stack.pop()
            a[0][_map_key(key)] = value
            stack.append(None)
        elif op == O.HASH_MAP_HAS:
            stack.append(stack.pop() in a[0])
        elif op == O.HASH_MAP_DELETE:
            key = stack.pop()
            d = a[0]
            stack.append(Some(d.pop(key)) if key in d else NONE)
        elif op == O.MAKE_CLOSURE:
            captures = tuple(stack[-b:]) if b else ()
            if b:
                del stack[-b:]
            stack.append(Closure(a, captures, None, a.name))
        elif op == O.CATCH:
            pass  # catch blocks are reached by TRY_BEGIN's target; nothing to do
        else:
            raise ConcertoError(f"opcode {O.NAMES.get(op, op)} is not implemented", "RuntimeError")
        return None

    def _catch(self, err: Any) -> tuple[str, int]:
        depth, catch_pc, height = self.tries.pop()
        del self.stack[height:]
        self.stack.append(err)
        return ("jump", catch_pc)

    def _call_method(self, recv: Any, name: str) -> Any:
        t = type(recv)
        if t is StructValue or t is EnumValue:
            owner = recv.type_name if t is StructValue else recv.enum_name
            fn = self.program.methods.get(owner, {}).get(name)
            if fn is not None:
                return fn
        tname = type_name(recv)
        table = self.registry.methods.get(tname)
        if table is not None:
            native = table.get(name)
            if native is not None:
                return native.fn
        if t is StructValue and name in recv.fields and type(recv.fields[name]) is Closure:
            closure = recv.fields[name]
            return lambda vm, _recv, *args: vm.call_value(closure, list(args))
        raise ConcertoError(f"no method `{name}` on {tname}", "TypeError")


def _entry(fn: LinkedFunction, pc: int) -> TraceEntry:
    idx = max(0, min(pc - 1, len(fn.spans) - 1))
    line, col = fn.spans[idx] if fn.spans else (0, 0)
    return TraceEntry(fn.name, fn.file, line, col)


def _as_fault(exc: Exception) -> ConcertoError | None:
    if isinstance(exc, ConcertoError):
        return exc
    if isinstance(exc, RecursionError):
        return ConcertoError("call depth exceeded (nested native calls)", "RuntimeError")
    if isinstance(exc, ZeroDivisionError):
        return ConcertoError("division by zero", "ArithmeticError")
    if isinstance(exc, (TypeError, ValueError)):
        return ConcertoError(f"invalid operation: {exc}", "TypeError")
    if isinstance(exc, OverflowError):
        return ConcertoError("number too large", "OverflowError")
    return None


def fault_value(fault: ConcertoError) -> Any:
    if isinstance(fault, _Thrown):
        return fault.value
    return StructValue(fault.kind, {"message": fault.message})


def _add(x: Any, y: Any) -> Any:
    tx, ty = type(x), type(y)
    if tx is str and ty is str:
        return x + y
    return _arith("+", x, y)


def _arith(op: str, x: Any, y: Any) -> Any:
    tx, ty = type(x), type(y)
    if tx is int and ty is int:
        if op == "/":
            if y == 0:
                raise ConcertoError("division by zero", "ArithmeticError")
            q = abs(x) // abs(y)
            r = q if (x >= 0) == (y >= 0) else -q
        elif op == "%":
            if y == 0:
                raise ConcertoError("remainder by zero", "ArithmeticError")
            r = abs(x) % abs(y)
            r = r if x >= 0 else -r
        elif op == "+":
            r = x + y
        elif op == "-":
            r = x - y
        else:
            r = x * y
        if not INT_MIN <= r <= INT_MAX:
            raise ConcertoError(f"integer overflow in `{op}`", "OverflowError")
        return r
    if tx in (int, float) and ty in (int, float):
        fx, fy = float(x), float(y)
        if op == "+":
            return fx + fy
        if op == "-":
            return fx - fy
        if op == "*":
            return fx * fy
        if op == "/":
            if fy == 0.0:
                if fx == 0.0 or math.isnan(fx):
                    return math.nan
                return math.copysign(math.inf, fx) * math.copysign(1.0, fy)
            return fx / fy
        if fy == 0.0:
            return math.nan
        return math.fmod(fx, fy)
    if op == "+" and tx is str and ty is str:
        return x + y
    raise ConcertoError(f"cannot apply `{op}` to {type_name(x)} and {type_name(y)}", "TypeError")


def _compare(op: str, x: Any, y: Any) -> bool:
    tx, ty = type(x), type(y)
    ok = (tx in (int, float) and ty in (int, float)) or (tx is ty and tx in (str, bool))
    if not ok:
        raise ConcertoError(f"cannot compare {type_name(x)} with {type_name(y)} using `{op}`", "TypeError")
    if op == "<":
        return x < y
    if op == ">":
        return x > y
    if op == "<=":
        return x <= y
    return x >= y


def _map_key(k: Any) -> Any:
    if type(k) in (str, int, bool):
        return k
    raise ConcertoError(f"map keys must be String, Int or Bool, found {type_name(k)}", "TypeError")


def _field_get(obj: Any, name: str) -> Any:
    if type(obj) is dict:
        if name in obj:
            return obj[name]
        raise ConcertoError(f"map has no key `{name}`", "KeyError")
    if type(obj) is EnumValue and isinstance(obj.data, dict) and name in obj.data:
        return obj.data[name]
    getter = getattr(obj, "concerto_field", None)
    if getter is not None:
        return getter(name)
    raise ConcertoError(f"{type_name(obj)} has no field `{name}`", "TypeError")


def _index_get(obj: Any, idx: Any) -> Any:
    t = type(obj)
    if t is list or t is tuple or t is str:
        if type(idx) is not int:
            raise ConcertoError(f"index must be an Int, found {type_name(idx)}", "TypeError")
        if not 0 <= idx < len(obj):
            kind = {list: "Array", tuple: "Tuple", str: "String"}[t]
            raise ConcertoError(f"{kind} index {idx} out of range for length {len(obj)}", "IndexError")
        return obj[idx]
    if t is dict:
        if idx in obj:
            return obj[idx]
        raise ConcertoError(f"key {display(idx)!s} not found in map", "KeyError")
    raise ConcertoError(f"cannot index into {type_name(obj)}", "TypeError")


def _index_set(obj: Any, idx: Any, value: Any) -> None:
    t = type(obj)
    if t is list:
        if type(idx) is not int:
            raise ConcertoError(f"index must be an Int, found {type_name(idx)}", "TypeError")
        if not 0 <= idx < len(obj):
            raise ConcertoError(f"Array index {idx} out of range for length {len(obj)}", "IndexError")
        obj[idx] = value
    elif t is dict:
        obj[_map_key(idx)] = value
    else:
        raise ConcertoError(f"cannot assign into {type_name(obj)} by index", "TypeError")


def _slice(obj: Any, lo: Any, hi: Any, mode: Any) -> Any:
    if type(obj) not in (list, str, tuple):
        raise ConcertoError(f"cannot slice {type_name(obj)}", "TypeError")
    n = len(obj)
    if mode == "rest":  # array patterns: `[a, ..rest, z]` (hi counts from the end)
        return obj[lo:hi] if hi is not None else obj[lo:]
    start = 0 if lo is None else lo
    end = n if hi is None else (hi + 1 if mode else hi)
    if type(start) is not int or type(end) is not int:
        raise ConcertoError("slice bounds must be Int", "TypeError")
    if not 0 <= start <= end <= n:
        raise ConcertoError(f"slice {start}..{end} out of range for length {n}", "IndexError")
    return obj[start:end]


def _iterate(v: Any) -> Any:
    t = type(v)
    if t is list or t is range or t is str or t is tuple:
        return iter(v)
    if t is dict:
        return iter(list(v.items()))
    to_array = getattr(v, "to_list", None)
    if to_array is not None:
        return iter(to_array())
    if hasattr(v, "__iter__") and getattr(v, "concerto_type", None):
        return iter(list(v))
    raise ConcertoError(f"cannot iterate over {type_name(v)}", "TypeError")


def _is_variant(v: Any, enum: str, variant: str) -> bool:
    if enum == "Option":
        if variant == "Some":
            return type(v) is Some
        return v is NONE or v is None
    if enum == "Result":
        return type(v) is (Ok if variant == "Ok" else Err)
    return type(v) is EnumValue and v.enum_name == enum and v.variant == variant


def _is_type(v: Any, name: str) -> bool:
    actual = type_name(v)
    if actual == name:
        return True
    if name == "Any":
        return True
    if name == "Error":
        return isinstance(v, StructValue) and "message" in v.fields
    if name == "RuntimeError":
        return isinstance(v, StructValue) and v.type_name in FAULT_KINDS
    return False


def _cast(v: Any, target: str) -> Any:
    t = type(v)
    if target == "Float":
        if t is int or t is float:
            return float(v)
    elif target == "Int":
        if t is int:
            return v
        if t is float:
            if math.isnan(v) or math.isinf(v):
                raise ConcertoError(f"cannot cast {display(v)} to Int", "ArithmeticError")
            r = int(v)
            if not INT_MIN <= r <= INT_MAX:
                raise ConcertoError("cast to Int overflows", "OverflowError")
            return r
    elif target == "String":
        return display(v)
    elif target == "Any" or _is_type(v, target) or target.split("<")[0] == type_name(v):
        return v
    raise ConcertoError(f"cannot cast {type_name(v)} as {target}", "TypeError")


def convert_value(program: Program, value: Any, type_name_: str) -> Any:
    """JSON-shaped data -> a value of a declared type (structs from maps)."""
    decl = next((t for t in program.ir.types if t.name == type_name_), None)
    if decl is None or decl.kind != "struct":
        return value
    if not isinstance(value, dict):
        raise ConcertoError(f"expected an object for `{type_name_}`, found {type_name(value)}", "TypeError")
    fields = {}
    for f in decl.fields or []:
        if f.name not in value:
            raise ConcertoError(f"missing field `{f.name}` for `{type_name_}`", "TypeError")
        fields[f.name] = value[f.name]
    return StructValue(type_name_, fields)


# -- VM-level natives ---------------------------------------------------------
@builtin_native("panic")
def _panic(vm: Machine, message: Any = "explicit panic") -> Any:
    vm.on_emit("panic", display(message))
    raise Panic(display(message))


@builtin_native("assert")
def _assert(vm: Machine, cond: Any, message: Any = None) -> Any:
    if cond is not True:
        raise ConcertoError(display(message) if message is not None else "assertion failed", "RuntimeError")
    return None


@builtin_native("assert_eq")
def _assert_eq(vm: Machine, left: Any, right: Any, message: Any = None) -> Any:
    if not values_equal(left, right):
        text = f"assertion failed: {display(left)} != {display(right)}"
        if message is not None:
            text += f": {display(message)}"
        raise ConcertoError(text, "RuntimeError")
    return None
