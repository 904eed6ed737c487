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

from concerto.vm.values import StructValue


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
                self.methods.setdefault(type_name, {})[name] = Native(name, fn, min_args, hi, mutates)
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
