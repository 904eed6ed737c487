"""std::log — developer logging (spec 19), routed to the host via ctx.log."""

from __future__ import annotations

from typing import Any, Callable

from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.vm.values import display


def _logger(level: str) -> Callable[[NativeContext, Any], None]:
    def log(ctx: NativeContext, message: Any) -> None:
        # Non-String messages are shown as interpolation would show them.
        ctx.log(level, message if type(message) is str else display(message))

    log.__name__ = level
    return log


for _level in ("info", "warn", "error", "debug"):
    REGISTRY.function(f"std::log::{_level}", 1)(_logger(_level))
