"""The dispatch loop: one shared value stack, call frames, try-frames.

Calls between Concerto functions never recurse in Python: a call pushes the
caller's (code, pc, locals, function, stack base) onto `frames` and switches,
so recursion depth is bounded by `max_call_depth`, not Python's stack.
A native that calls back into Concerto (Array.map with a closure) runs a
nested loop that returns when its frame returns.
"""

from __future__ import annotations

import copy
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import anyio

from concerto import recursion
from concerto.stdlib import load as load_stdlib
from concerto.stdlib.builtins import Panic
from concerto.vm.bridge import TaskBridge
from concerto.vm.emit import emit_error
from concerto.vm.environment import EnvironmentGate
from concerto.vm.limits import ResourceLimits
from concerto.vm.limits import applied as applied_limits
from concerto.vm.executor import Executor, RunStopped, in_task
from concerto.vm.pipeline import run_pipeline
from concerto.ir import opcodes as O
from concerto.vm.loader import LinkedFunction, Program
from concerto.vm.operators import (
    END,
    ORDERED_TYPES,
    SCALAR_TYPES,
    NONE_FOUND,
    Thrown,
    add_values,
    arith,
    as_fault,
    build_range,
    build_string,
    check_iterator,
    cast,
    check_channel,
    compare,
    copy_value,
    fault_value,
    field_get,
    field_set,
    hashmap_delete,
    hashmap_get,
    hashmap_has,
    hashmap_set,
    index_get,
    index_set,
    is_type,
    is_variant,
    iterate,
    map_key,
    negate,
    propagated,
    slice_value,
    test_len,
    variant_field,
)
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

    def __init__(self, message: str, kind: str, trace: list[TraceEntry], value: Any = None,
                 python_traceback: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.trace = trace
        self.value = value
        # For kind InternalError: the Python traceback of the defect.
        self.python_traceback = python_traceback

    @property
    def location(self) -> TraceEntry | None:
        return self.trace[0] if self.trace else None


@dataclass
class RunConfig:
    max_call_depth: int = 10_000
    max_steps: int | None = None
    # Compile functions to Python source before running (vm/pycompile.py).
    # Off means every instruction goes through the dispatch loop.
    jit: bool = True
    # What std::env may read (vm/environment.py); nothing unless a host grants it.
    environment: EnvironmentGate = field(default_factory=EnvironmentGate.closed)
    # Caps on string length and collection size (vm/limits.py), made current
    # for the run with `limits.applied(config.limits)`.
    limits: ResourceLimits = field(default_factory=ResourceLimits)


# Natives that call back into Concerto (Array.map with a closure) nest Python
# calls; this bounds that nesting well inside what the C stack can hold.
MAX_NATIVE_REENTRY = 400


@dataclass
class Machine:
    program: Program
    on_emit: EmitHandler = lambda channel, payload: None
    on_log: LogHandler = lambda level, message: print(f"[{level}] {message}", file=sys.stderr)
    config: RunConfig = field(default_factory=RunConfig)
    # The model runtime (vm/models.py) for programs that call models.
    models: Any = None
    # The emit channel (vm/emit.py) when a host runtime owns the run: it
    # replaces on_emit and answers awaited emits.
    emits: Any = None
    # The run's executor (vm/executor.py); set when a run starts.
    executor: Any = None

    def __post_init__(self) -> None:
        if self.emits is not None:
            self.on_emit = self.emits.send
        self.stack: list[Any] = []
        self.frames: list[tuple] = []
        self.tries: list[tuple[int, int, int]] = []  # (frame depth, catch pc, stack height)
        self.registry = load_stdlib()
        self.reentry = 0
        # Compiled functions are plain Python calls: they count their own depth
        # against the same limit, and Python's recursion limit must sit above it.
        self.jit_depth = 0
        self.jit_max_depth = self.config.max_call_depth
        # The run's interrupt flag (vm/interrupts.py), tested at every loop back
        # edge and call in both tiers; shared by every fork of this machine.
        self.interrupt: list[bool] = self.executor.interrupt if self.executor is not None else [False]
        if self.config.jit:
            from concerto.vm.pycompile import compile_program

            compile_program(self.program)
            recursion.require(self.config.max_call_depth + 50 * MAX_NATIVE_REENTRY + 1000)

    def fork(self) -> "Machine":
        """A machine for another task of the same run: shared program, globals,
        handlers and runtime; its own stack, frames and try-frames."""
        child = copy.copy(self)
        child.stack = []
        child.frames = []
        child.tries = []
        child.reentry = 0
        child.jit_depth = 0
        return child

    # -- NativeContext -------------------------------------------------------
    def call(self, function: Any, *args: Any) -> Any:
        return self.call_value(function, list(args))

    def log(self, level: str, message: str) -> None:
        self.on_log(level, message)

    def emit(self, channel: str, payload: Any) -> None:
        self.on_emit(channel, payload)

    def sleep(self, ms: int) -> None:
        self.sleep_seconds(max(0, ms) / 1000)

    def sleep_seconds(self, seconds: float) -> None:
        if self.executor is not None and in_task():
            self.executor.sleep(seconds)
        else:
            time.sleep(max(0.0, seconds))

    def tick(self) -> None:
        """The interrupt flag was up: a checkpoint (deadline, cancel, time slice)."""
        self.interrupt[0] = False
        if self.executor is not None:
            self.executor.checkpoint()

    def ask(self, channel: Any, payload: Any) -> Any:
        """`await emit(channel, payload)`."""
        channel = check_channel(channel)
        if self.emits is None:
            raise emit_error(channel, f"no listener for awaited channel `{channel}`")
        return self.emits.ask(channel, payload)

    def flush_emits(self) -> None:
        if self.emits is not None:
            self.emits.flush()

    def convert(self, value: Any, type_name_: str) -> Any:
        return convert_value(self.program, value, type_name_)

    # -- entry points ----------------------------------------------------------
    def run_main(self) -> Any:
        """Run the program to the end on a fresh event loop (blocking)."""
        async def main() -> Any:
            try:
                return await self.arun_main()
            finally:
                if self.models is not None:
                    await self.models.manager.aclose()

        return anyio.run(main)

    async def arun_main(self) -> Any:
        """Run the init function and `main` as the main task of a run on the
        current event loop; a fault that nothing caught becomes a VMError."""
        if self.executor is None:
            self.executor = Executor()
        self.interrupt = self.executor.interrupt
        if self.models is not None:
            self.models.bridge = TaskBridge(self.executor)
        emits = self.emits
        helpers = []
        if emits is not None:
            helpers.append(emits.deliver_forever)
            if emits.mode == "buffered" and emits.flush_interval:
                helpers.append(emits.flush_periodically)
        try:
            # The run's size caps reach every task: each starts in a copy of this context.
            with applied_limits(self.config.limits):
                return await self.executor.run(self._run_main_task, helpers=tuple(helpers),
                                               finish=emits.drain if emits is not None else None)
        except (Panic, VMError, RunStopped):
            raise
        except Exception as exc:  # noqa: BLE001 - a spawned task's or a handler's fault
            raise _vm_error(exc) from None

    def _run_main_task(self) -> Any:
        try:
            if self.program.init is not None:
                self.run_function(self.program.init, [])
            result = self.run_function(self.program.entry, [])
        except (Panic, VMError):
            raise
        except Exception as exc:  # noqa: BLE001 - faults become VMError, the rest propagates
            raise _vm_error(exc) from None
        finally:
            del self.frames[:]
            del self.stack[:]
            del self.tries[:]
            self.jit_depth = 0
            self.reentry = 0
        if type(result) is Err:
            value = result.value
            message = value.fields.get("message") if isinstance(value, StructValue) else None
            raise VMError(f"main returned Err: {message if message is not None else display(value)}",
                          type_name(value), [], value)
        return result

    def run_function(self, fn: LinkedFunction, args: list[Any]) -> Any:
        """Call `fn` from Python (a native, the host, or compiled code)."""
        if self.reentry >= MAX_NATIVE_REENTRY:
            raise ConcertoError(f"call depth exceeded ({MAX_NATIVE_REENTRY} calls nested through natives)",
                                "RuntimeError")
        self.reentry += 1
        try:
            if fn.jit is not None and len(args) == fn.nparams + fn.ncaptures:
                return fn.jit(self, *args)
            locals_ = args + [None] * (fn.nlocals - len(args))
            return self._execute(fn, locals_)
        finally:
            self.reentry -= 1

    def call_value(self, callee: Any, args: list[Any]) -> Any:
        if type(callee) is not Closure:
            raise ConcertoError(f"`{type_name(callee)}` is not callable", "TypeError")
        if callee.native is not None:
            return callee.native(self, *args)
        fn = callee.function
        if len(args) != fn.nparams:
            raise ConcertoError(f"`{callee.name}` takes {fn.nparams} argument(s), {len(args)} given", "TypeError")
        return self.run_function(fn, args + list(callee.captures) if callee.captures else args)

    # -- the loop --------------------------------------------------------------
    def _execute(self, fn: LinkedFunction, locals_: list[Any]) -> Any:
        stack = self.stack
        frames = self.frames
        tries = self.tries
        # A boundary marker: code run by this call sits one frame deeper than
        # whoever called in from Python, so it never sees (or pops) their try-frames.
        frames.append(None)
        stop_depth = len(frames)
        entry_stack = len(stack)
        base = entry_stack
        code = fn.code
        pc = 0
        max_depth = self.config.max_call_depth
        call_method = self._call_method
        interrupt = self.interrupt
        if interrupt[0]:
            self.tick()

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
                        if type(x) is type(c) and type(x) in ORDERED_TYPES:
                            if not x < c:
                                pc = t
                        elif not compare("<", x, c):
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
                            stack[-1] = add_values(x, a)
                    elif op == 36:  # INC_LOCAL: x += const
                        x = locals_[a]
                        if type(x) is int:
                            r = x + b
                            if INT_MIN <= r <= INT_MAX:
                                locals_[a] = r
                            else:
                                raise ConcertoError("integer overflow in `+`", "OverflowError")
                        else:
                            locals_[a] = add_values(x, b)
                    elif op == 33:  # C_SUB
                        x = stack[-1]
                        if type(x) is int:
                            r = x - a
                            if INT_MIN <= r <= INT_MAX:
                                stack[-1] = r
                            else:
                                raise ConcertoError("integer overflow in `-`", "OverflowError")
                        else:
                            stack[-1] = arith("-", x, a)
                    elif op == 37:  # CMP_JIF: compare the top two, jump when false
                        y = stack.pop()
                        x = stack.pop()
                        if b == 14:
                            ok = x == y if type(x) is type(y) and type(x) in SCALAR_TYPES else values_equal(x, y)
                        elif b == 15:
                            ok = x != y if type(x) is type(y) and type(x) in SCALAR_TYPES else not values_equal(x, y)
                        elif type(x) is type(y) and type(x) in ORDERED_TYPES:
                            ok = x < y if b == 6 else x > y if b == 11 else x <= y if b == 12 else x >= y
                        else:
                            ok = compare(_CMP_TEXT[b], x, y)
                        if not ok:
                            pc = a
                    elif op == 34:  # C_MUL
                        stack[-1] = arith("*", stack[-1], a)
                    elif op == 35:  # C_MOD
                        x = stack[-1]
                        if type(x) is int and x >= 0 and a > 0:
                            stack[-1] = x % a
                        else:
                            stack[-1] = arith("%", x, a)
                    elif op == 23:  # MOD
                        y = stack.pop()
                        x = stack[-1]
                        if type(x) is int and type(y) is int and x >= 0 and y > 0:
                            stack[-1] = x % y
                        else:
                            stack[-1] = arith("%", x, y)
                    elif op == 22:  # DIV
                        y = stack.pop()
                        stack[-1] = arith("/", stack[-1], y)
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
                            stack[-1] = add_values(x, y)
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
                            stack[-1] = arith("-", x, y)
                    elif op == 6:  # LT
                        y = stack.pop()
                        x = stack[-1]
                        if type(x) is type(y) and type(x) in ORDERED_TYPES:
                            stack[-1] = x < y
                        else:
                            stack[-1] = compare("<", x, y)
                    elif op == 7:  # CALL
                        # a: LinkedFunction, b: argc
                        if a.jit is not None and b == a.nparams:
                            # compiled (vm/pycompile.py): a plain Python call
                            if b == 1:
                                stack[-1] = a.jit(self, stack[-1])
                            elif b:
                                args = stack[-b:]
                                del stack[-b:]
                                stack.append(a.jit(self, *args))
                            else:
                                stack.append(a.jit(self))
                            continue
                        if len(frames) >= max_depth:
                            raise ConcertoError(f"call depth exceeded ({max_depth} nested calls)", "RuntimeError")
                        if interrupt[0]:
                            self.tick()
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
                            frames.pop()
                            return rv
                        code, pc, locals_, fn, base = frames.pop()
                        stack.append(rv)
                    elif op == 9:  # JUMP
                        if a < pc and interrupt[0]:  # a loop's back edge
                            self.tick()
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
                            stack[-1] = arith("*", x, y)
                    elif op == 11:  # GT
                        y = stack.pop()
                        x = stack[-1]
                        if type(x) is type(y) and type(x) in ORDERED_TYPES:
                            stack[-1] = x > y
                        else:
                            stack[-1] = compare(">", x, y)
                    elif op == 12:  # LTE
                        y = stack.pop()
                        x = stack[-1]
                        if type(x) is type(y) and type(x) in ORDERED_TYPES:
                            stack[-1] = x <= y
                        else:
                            stack[-1] = compare("<=", x, y)
                    elif op == 13:  # GTE
                        y = stack.pop()
                        x = stack[-1]
                        if type(x) is type(y) and type(x) in ORDERED_TYPES:
                            stack[-1] = x >= y
                        else:
                            stack[-1] = compare(">=", x, y)
                    elif op == 14:  # EQ
                        y = stack.pop()
                        x = stack[-1]
                        stack[-1] = x == y if type(x) is type(y) and type(x) in SCALAR_TYPES else values_equal(x, y)
                    elif op == 15:  # NEQ
                        y = stack.pop()
                        x = stack[-1]
                        stack[-1] = x != y if type(x) is type(y) and type(x) in SCALAR_TYPES else not values_equal(x, y)
                    elif op == 16:  # FIELD_GET
                        obj = stack[-1]
                        if type(obj) is StructValue:
                            try:
                                stack[-1] = obj.fields[a]
                            except KeyError:
                                raise ConcertoError(f"`{obj.type_name}` has no field `{a}`", "TypeError") from None
                        else:
                            stack[-1] = field_get(obj, a)
                    elif op == 17:  # CALL_METHOD
                        if b:
                            args = stack[-b:]
                            del stack[-b:]
                        else:
                            args = []
                        recv = stack.pop()
                        target = call_method(recv, a, b)
                        if type(target) is LinkedFunction:
                            if len(frames) >= max_depth:
                                raise ConcertoError(f"call depth exceeded ({max_depth} nested calls)", "RuntimeError")
                            if len(args) + 1 != target.nparams:
                                raise ConcertoError(f"method `{a}` takes {target.nparams - 1} argument(s), {len(args)} given", "TypeError")
                            if target.jit is not None:
                                stack.append(target.jit(self, recv, *args))
                                continue
                            if interrupt[0]:
                                self.tick()
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
                            stack[-1] = index_get(obj, idx)
                    elif op == 20:  # ITER_NEXT
                        it = stack.pop()
                        try:
                            item = next(it, END)
                        except TypeError:
                            check_iterator(it)
                            raise
                        if item is END:
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
                            if target.jit is not None:
                                stack.append(target.jit(self, *args, *callee.captures))
                                continue
                            if interrupt[0]:
                                self.tick()
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
                        stack.append(build_string(parts))
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
                                if value < pc and interrupt[0]:
                                    self.tick()
                                pc = value
                            elif kind == "return":
                                rv = value
                                if len(stack) > base:
                                    del stack[base:]
                                depth = len(frames)
                                while tries and tries[-1][0] >= depth:
                                    tries.pop()
                                if depth == stop_depth:
                                    frames.pop()
                                    return rv
                                code, pc, locals_, fn, base = frames.pop()
                                stack.append(rv)
            except Panic:
                raise
            except VMError:
                raise
            except Exception as exc:  # noqa: BLE001 - every fault is turned into a Concerto error
                fault = as_fault(exc)
                # The innermost try at or above this run's entry frame handles a fault.
                if fault is not None and tries and tries[-1][0] >= stop_depth:
                    depth, catch_pc, height = tries.pop()
                    while len(frames) > depth:
                        code, pc, locals_, fn, base = frames.pop()
                    del stack[height:]
                    stack.append(fault_value(fault))
                    pc = catch_pc
                    if interrupt[0]:  # a handler can be a loop's way back, too
                        self.tick()
                    continue
                # Unwind this call: its frames (inner frames first) join the trace
                # that compiled or nested calls may already have started. A bug
                # (no fault) unwinds the same way, so it too is reported where it
                # happened; nothing catches it.
                inner = getattr(exc, "concerto_trace", None) or []
                trace = inner + self._trace(fn, pc, stop_depth)
                del frames[stop_depth - 1:]
                del stack[entry_stack:]
                if fault is None:
                    while tries and tries[-1][0] >= stop_depth:
                        tries.pop()
                    _attach_trace(exc, trace)
                    raise
                fault.concerto_trace = trace  # type: ignore[attr-defined]
                raise fault from None

    def _trace(self, fn: LinkedFunction, pc: int, stop_depth: int) -> list[TraceEntry]:
        entries = [_entry(fn, pc)]
        for frame in reversed(self.frames[stop_depth:]):
            entries.append(_entry(frame[3], frame[1]))
        return entries

    # -- rarely used opcodes ---------------------------------------------------
    def _slow_op(self, op: int, a: Any, b: Any, code: list, pc: int, locals_: list, fn: LinkedFunction, base: int):
        stack = self.stack
        if op == O.DIV:
            y = stack.pop()
            stack[-1] = arith("/", stack[-1], y)
        elif op == O.MOD:
            y = stack.pop()
            stack[-1] = arith("%", stack[-1], y)
        elif op == O.NEG:
            stack[-1] = negate(stack[-1])
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
            self.on_emit(check_channel(channel), payload)
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
                m[map_key(items[i])] = items[i + 1]
            stack.append(m)
        elif op == O.BUILD_RANGE:
            hi = stack.pop()
            stack[-1] = build_range(stack[-1], hi, a)
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
            stack.append(is_variant(v, a, b))
        elif op == O.VARIANT_FIELD:
            stack[-1] = variant_field(stack[-1], a)
        elif op == O.TEST_LEN:
            stack[-1] = test_len(stack[-1], a, b)
        elif op == O.SLICE:
            hi = stack.pop()
            lo = stack.pop()
            obj = stack.pop()
            stack.append(slice_value(obj, lo, hi, a))
        elif op == O.ITER_INIT:
            stack.append(iterate(stack.pop()))
        elif op == O.COPY:
            stack[-1] = copy_value(stack[-1])
        elif op == O.FIELD_SET:
            value = stack.pop()
            field_set(stack.pop(), a, value)
        elif op == O.INDEX_SET:
            value = stack.pop()
            idx = stack.pop()
            obj = stack.pop()
            index_set(obj, idx, value)
        elif op == O.CHECK_TYPE:
            v = stack.pop()
            stack.append(is_type(v, a))
        elif op == O.CAST:
            stack[-1] = cast(stack[-1], a)
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
                    err = v.value if t is Err else StructValue("RuntimeError", {"message": NONE_FOUND})
                    return self._catch(err)
            return ("return", propagated(v, a))
        elif op == O.THROW:
            e = stack.pop()
            if self.tries and self.tries[-1][0] == len(self.frames):
                return self._catch(e)
            return ("return", Err(e))
        elif op == O.RETHROW:
            raise Thrown(stack.pop())
        elif op == O.MATCH_FAIL:
            raise ConcertoError(a, "RuntimeError")
        elif op == O.HASH_MAP_GET:
            stack[-1] = hashmap_get(a[0], stack[-1])
        elif op == O.HASH_MAP_SET:
            value = stack.pop()
            key = stack.pop()
            hashmap_set(a[0], key, value)
            stack.append(None)
        elif op == O.HASH_MAP_HAS:
            stack.append(hashmap_has(a[0], stack.pop()))
        elif op == O.HASH_MAP_DELETE:
            stack[-1] = hashmap_delete(a[0], stack[-1])
        elif op == O.MAKE_CLOSURE:
            captures = tuple(stack[-b:]) if b else ()
            if b:
                del stack[-b:]
            stack.append(Closure(a, captures, None, a.name))
        elif op == O.CALL_MODEL:
            cell, method, schema = a
            if b:
                args = stack[-b:]
                del stack[-b:]
            else:
                args = []
            recv = cell[0] if cell is not None else stack.pop()
            stack.append(self.call_model(recv, method, schema, args))
        elif op == O.EMIT_AWAIT:
            payload = stack.pop()
            stack[-1] = self.ask(stack[-1], payload)
        elif op == O.AWAIT:
            stack[-1] = self.executor.await_value(stack[-1])
        elif op == O.AWAIT_ALL:
            thunks = stack[-a:]
            del stack[-a:]
            stack.append(self.executor.await_all(self, thunks))
        elif op == O.RACE:
            thunks = stack[-a:]
            del stack[-a:]
            stack.append(self.executor.race(self, thunks))
        elif op == O.PARALLEL_FOR:
            body = stack.pop()
            stack[-1] = self.executor.parallel_for(self, body, list(iterate(stack[-1])))
        elif op == O.SPAWN_ASYNC:
            stack[-1] = self.executor.spawn(self, stack[-1])
        elif op == O.RUN_PIPELINE:
            stack[-1] = run_pipeline(self, self.program.pipelines[a], stack[-1])
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

    def call_model(self, recv: Any, method: str, schema: str | None, args: list[Any]) -> Any:
        if self.models is None:
            raise ConcertoError("this program calls a model, but the VM was started without a model runtime", "RuntimeError")
        models = self.models
        if models.decorated and method != "with_memory":
            name = getattr(recv, "name", None) or getattr(recv, "model", None)
            wrapped = models.decorated.get(name)
            if wrapped is not None:
                return wrapped(self, [recv, method, schema, args])
        return models.call(recv, method, schema, args, self)

    def _call_method(self, recv: Any, name: str, argc: int) -> Any:
        """The method `name` of the receiver: a LinkedFunction (the caller checks
        its parameter count), or `(vm, recv, *args)` for a native (its arity is
        checked here) or a closure held in a struct field."""
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
                # Native.accepts, inlined: this runs on every built-in method call.
                if argc < native.min_args or (native.max_args is not None and argc > native.max_args):
                    raise native.arity_fault(argc)
                return native.fn
        if t is StructValue and name in recv.fields and type(recv.fields[name]) is Closure:
            closure = recv.fields[name]
            return lambda vm, _recv, *args: vm.call_value(closure, list(args))
        raise ConcertoError(f"no method `{name}` on {tname}", "TypeError")


def _vm_error(exc: Exception) -> VMError:
    """What ends a run, as a VMError: a fault nothing caught keeps its kind;
    running out of memory is a MemoryError; any other Python exception is a
    defect of the runtime, an InternalError that says where it happened."""
    trace = list(getattr(exc, "concerto_trace", None) or [])
    fault = as_fault(exc)
    if fault is not None:
        value = fault.value if isinstance(fault, Thrown) else None
        return VMError(fault.message, fault.kind, list(getattr(fault, "concerto_trace", None) or trace), value)
    if isinstance(exc, MemoryError):
        return VMError("out of memory", "MemoryError", trace)
    return VMError(f"{type(exc).__name__}: {exc}", "InternalError", trace,
                   python_traceback="".join(traceback.format_exception(exc)))


def _attach_trace(exc: BaseException, trace: list[TraceEntry]) -> None:
    try:
        exc.concerto_trace = trace  # type: ignore[attr-defined]
    except AttributeError:  # an exception type without a __dict__
        pass


def _entry(fn: LinkedFunction, pc: int) -> TraceEntry:
    idx = max(0, min(pc - 1, len(fn.spans) - 1))
    line, col = fn.spans[idx] if fn.spans else (0, 0)
    return TraceEntry(fn.name, fn.file, line, col)


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
