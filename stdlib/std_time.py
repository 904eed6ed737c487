"""std::time (spec 19). Sleeping goes through the context so the machine (or a
test) decides what a pause means."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.stdlib.support import want_count


@REGISTRY.function("std::time::now", 0)
def now(ctx: NativeContext) -> str:
    """ISO 8601 in UTC with millisecond precision, e.g. 2025-01-31T09:15:02.250Z."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@REGISTRY.function("std::time::now_ms", 0)
def now_ms(ctx: NativeContext) -> int:
    return time.time_ns() // 1_000_000


@REGISTRY.function("std::time::sleep", 1)
def sleep(ctx: NativeContext, ms: int) -> None:
    ctx.sleep(want_count(ms, "time::sleep"))


@REGISTRY.function("std::time::measure", 1)
def measure(ctx: NativeContext, f: Any) -> tuple[Any, int]:
    """(f's result, elapsed whole milliseconds), timed on a monotonic clock."""
    start = time.perf_counter_ns()
    result = ctx.call(f)
    return (result, (time.perf_counter_ns() - start) // 1_000_000)
