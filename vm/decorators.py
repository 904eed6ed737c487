"""`@retry`, `@timeout`, `@cache` and `@log` on functions, pipeline stages and models.

A decorated callable is a chain of layers, each `(vm, args) -> value`, the
first decorator written outermost (as in Python). The loader links every call
of a decorated function to its chain, so direct calls, calls through a
function value and pipeline stages all go through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from concerto import ir
from concerto.vm.connection_config import RetryPlan
from concerto.vm.operators import as_fault
from concerto.vm.values import ConcertoError, Err, debug

Call = Callable[[Any, list[Any]], Any]

DEFAULT_RETRY_DELAY_MS = 100
MAX_RETRY_DELAY_S = 30.0


def chain(base: Call, decorators: list[ir.DecoratorDef], what: str, log_channel: str = "log") -> Call:
    call = base
    for d in reversed(decorators):
        layer = _LAYERS.get(d.name)
        if layer is not None:
            call = layer(call, d.args, what, log_channel)
    return call


def _retry(inner: Call, args: dict[str, Any], what: str, _log: str) -> Call:
    attempts = max(1, int(args.get("max", 3)))
    plan = RetryPlan(attempts, str(args.get("backoff", "exponential")),
                     float(args.get("delay_ms", DEFAULT_RETRY_DELAY_MS)) / 1000, MAX_RETRY_DELAY_S)

    def call(vm: Any, argv: list[Any]) -> Any:
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            try:
                result = inner(vm, argv)
            except ConcertoError:
                if last:
                    raise
            except Exception as exc:  # noqa: BLE001 - only Concerto faults are retried
                if as_fault(exc) is None or last:
                    raise
            else:
                if type(result) is not Err or last:
                    return result
            vm.sleep_seconds(plan.planned(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    return call


def _timeout(inner: Call, args: dict[str, Any], what: str, _log: str) -> Call:
    seconds = float(args.get("seconds", 30))

    def call(vm: Any, argv: list[Any]) -> Any:
        return vm.executor.with_deadline(vm, seconds, what, lambda child: inner(child, argv))

    return call


def _cache(inner: Call, args: dict[str, Any], what: str, _log: str) -> Call:
    ttl = args.get("ttl_seconds")
    entries: dict[str, tuple[float, Any]] = {}

    def call(vm: Any, argv: list[Any]) -> Any:
        key = debug(tuple(argv))
        now = time.monotonic()
        hit = entries.get(key)
        if hit is not None and (ttl is None or now - hit[0] < float(ttl)):
            return hit[1]
        result = inner(vm, argv)
        if type(result) is not Err:  # a failure is worth trying again
            entries[key] = (now, result)
        return result

    return call


def _log(inner: Call, args: dict[str, Any], what: str, default_channel: str) -> Call:
    channel = str(args.get("channel", default_channel))

    def call(vm: Any, argv: list[Any]) -> Any:
        started = time.perf_counter()
        try:
            result = inner(vm, argv)
        except Exception as exc:
            fault = as_fault(exc)
            if fault is not None:
                vm.emit(channel, {"call": what, "args": list(argv), "error": fault.message,
                                  "duration_ms": elapsed_ms(started)})
            raise
        vm.emit(channel, {"call": what, "args": list(argv), "result": result, "duration_ms": elapsed_ms(started)})
        return result

    return call


def elapsed_ms(started: float) -> float:
    """Milliseconds since `started` (a perf_counter reading), as emits report them."""
    return round((time.perf_counter() - started) * 1000, 3)


_LAYERS: dict[str, Callable[[Call, dict[str, Any], str, str], Call]] = {
    "retry": _retry, "timeout": _timeout, "cache": _cache, "log": _log,
}
