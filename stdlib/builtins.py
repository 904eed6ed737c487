"""The prelude natives every program may call without `use`: `panic`,
`assert`, `assert_eq` and `flush_emits`. They are registered like any std::
function (under their bare names), so the loader resolves and arity-checks
them from the same table whatever was imported before.
"""

from __future__ import annotations

from typing import Any

from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.vm.values import ConcertoError, display, values_equal


class Panic(Exception):
    """`panic(msg)`: ends the run; no `catch` sees it (spec 13)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@REGISTRY.function("panic", 0, 1)
def panic(ctx: NativeContext, message: Any = "explicit panic") -> Any:
    ctx.emit("panic", display(message))
    raise Panic(display(message))


@REGISTRY.function("flush_emits", 0)
def flush_emits(ctx: Any) -> Any:
    ctx.flush_emits()
    return None


@REGISTRY.function("assert", 1, 2)
def assert_(ctx: NativeContext, cond: Any, message: Any = None) -> Any:
    if cond is not True:
        raise ConcertoError(display(message) if message is not None else "assertion failed", "RuntimeError")
    return None


@REGISTRY.function("assert_eq", 2, 3)
def assert_eq(ctx: NativeContext, left: Any, right: Any, message: Any = None) -> Any:
    if not values_equal(left, right):
        text = f"assertion failed: {display(left)} != {display(right)}"
        if message is not None:
            text += f": {display(message)}"
        raise ConcertoError(text, "RuntimeError")
    return None
