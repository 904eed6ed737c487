"""The table of native functions and built-in methods.

A std:: function is registered under its full path (`std::string::split`);
a built-in method under the receiver's type name (`String`, `Array`, `Map`,
`Option`, `Result`, `Int`, `Float`, `Bool`, `Tuple`, `Range`, `Set`, ...).

Every native receives a `NativeContext` first, then its arguments as plain
runtime values (see concerto.vm.values). Methods receive the receiver after
the context. A native signals a runtime fault by raising ConcertoError; a
recoverable failure is returned as `Err(error_value(...))`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from concerto.vm.values import ConcertoError, StructValue


class NativeContext(Protocol):
    """What a native may ask of the running machine."""

    def call(self, function: Any, *args: Any) -> Any:
        """Call a Concerto callable value (closure or function) and return its result."""

    def log(self, level: str, message: str) -> None:
        """Write a developer log line (std::log)."""

    def emit(self, channel: str, payload: Any) -> None:
        """Send a fire-and-forget emit to the host."""

    def sleep(self, ms: int) -> None:
        """Pause the program for `ms` milliseconds (std::time::sleep)."""

    def convert(self, value: Any, type_name: str) -> Any:
        """Turn JSON-shaped data (maps, arrays, scalars) into a value of the
        declared type `type_name` (a struct becomes a StructValue); raises
        ConcertoError(kind="TypeError") naming the field that does not fit."""


NativeFn = Callable[..., Any]


@dataclass(frozen=True)
class Native:
    name: str
    fn: NativeFn
    # Arity bounds, checked by the compiler when the call site is static.
    min_args: int
    max_args: int | None
    # True for methods that change their receiver (push, insert, ...): the
    # compiler then requires a `mut` binding.
    mutates: bool = False
    # A built-in method: `fn(ctx, receiver, *args)`; the bounds count `args` only.
    method: bool = False

    def accepts(self, count: int) -> bool:
        """Whether `count` arguments (after the receiver, for a method) fit."""
        return self.min_args <= count and (self.max_args is None or count <= self.max_args)

    def arity_fault(self, count: int) -> ConcertoError:
        lo, hi = self.min_args, self.max_args
        wanted = f"{lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
        what = "method" if self.method else "function"
        return ConcertoError(f"{what} `{self.name}` takes {wanted} argument(s), {count} given", "TypeError")

    def call(self, ctx: Any, *args: Any) -> Any:
        """Call with the arity checked first: the path for calls the compiler
        could not check (a receiver typed Any, a native used as a value).
        For a method, args[0] is the receiver."""
        count = len(args) - 1 if self.method else len(args)
        if not self.accepts(count) or (self.method and not args):
            raise self.arity_fault(max(count, 0))
        return self.fn(ctx, *args)


@dataclass
class Registry:
    functions: dict[str, Native] = field(default_factory=dict)
    methods: dict[str, dict[str, Native]] = field(default_factory=dict)

    def function(self, path: str, min_args: int, max_args: int | None = -1) -> Callable[[NativeFn], NativeFn]:
        """Register `fn(ctx, *args)` as the std:: function `path`.

        max_args defaults to min_args; pass None for variadic."""

        def register(fn: NativeFn) -> NativeFn:
            hi = min_args if max_args == -1 else max_args
            self.functions[path] = Native(path, fn, min_args, hi)
            return fn

        return register

    def method(
        self,
        type_names: str | tuple[str, ...],
        name: str,
        min_args: int,
        max_args: int | None = -1,
        mutates: bool = False,
    ) -> Callable[[NativeFn], NativeFn]:
        """Register `fn(ctx, receiver, *args)` as method `name` of each type."""

        def register(fn: NativeFn) -> NativeFn:
            hi = min_args if max_args == -1 else max_args
            names = (type_names,) if isinstance(type_names, str) else type_names
            for type_name in names:
                self.methods.setdefault(type_name, {})[name] = Native(name, fn, min_args, hi, mutates, method=True)
            return fn

        return register

    def modules(self) -> set[str]:
        return {path.rsplit("::", 1)[0] for path in self.functions}


REGISTRY = Registry()


def error_value(type_name: str, message: str, **extra: Any) -> StructValue:
    """A built-in error value (ParseError, JsonError, EnvError, ...).

    Errors are structs with at least a `message` field, so `e.message`, typed
    `catch ParseError(e)` and `Err(ParseError { message, .. })` all work."""
    return StructValue(type_name, {"message": message, **extra})
