"""The async executor: one run of a program on an anyio event loop.

The dispatch loop is synchronous Python. Each Concerto task (the main
function, every branch of `await (a, b)`, `race`, `parallel for` and every
`spawn`) runs on its own greenlet with its own value stack and frames (a
forked Machine). When VM code reaches an await point (a model call, an
emit-await, a sleep, waiting for another task) it calls `suspend(fn, *args)`:
the greenlet switches back to the anyio task driving it, which awaits
`fn(*args)` on the loop and switches back in with the result. Everything else
runs without touching the loop, so the VM yields only at awaits, plus a
periodic checkpoint (`Executor.checkpoint`) so that cancellation and
timeouts reach code that never awaits.

Every task has an owner: branch tasks belong to the task group of the
instruction that started them, spawned tasks to the run. Cancelling the run
(host `cancel()`, `execution_timeout`) cancels the run's scope, which reaches
every task and every pending request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from greenlet import greenlet, getcurrent

from concerto.vm.values import Closure, ConcertoError

T = TypeVar("T")

# How long compute-bound code may run before it lets the loop breathe (seconds).
CHECKPOINT_INTERVAL = 0.01


class VMGreenlet(greenlet):
    """A greenlet running VM code; its parent is the greenlet of the event loop."""


def in_task() -> bool:
    return type(getcurrent()) is VMGreenlet


def suspend(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """From VM code: await fn(*args) on the event loop and return its result.
    Exceptions (including cancellation) are raised here, in the VM's frame."""
    current = getcurrent()
    if type(current) is not VMGreenlet:
        raise ConcertoError("an await point was reached outside the async executor", "RuntimeError")
    return current.parent.switch((fn, args))


async def drive(entry: Callable[..., T], *args: Any) -> T:
    """Run entry(*args) on a fresh VM greenlet, serving its awaits on this task."""
    glet = VMGreenlet(entry)
    request = glet.switch(*args)
    while not glet.dead:
        fn, fargs = request
        try:
            result = await fn(*fargs)
        except BaseException as exc:  # noqa: BLE001 - cancellation too: the VM must unwind
            request = glet.throw(exc)
        else:
            request = glet.switch(result)
    return request


class TaskHandle:
    """What `spawn(f)` returns; `.await` on it waits for the task's result."""

    concerto_type = "Task"

    def __init__(self, number: int) -> None:
        self.number = number
        self.done = anyio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.observed = False

    async def wait(self) -> Any:
        await self.done.wait()
        self.observed = True
        if self.error is not None:
            raise self.error
        return self.result

    def concerto_debug(self) -> str:
        return f"<task {self.number}>"

    def concerto_json(self) -> Any:
        return {"task": self.number}


@dataclass
class Limits:
    # At most this many `parallel for` iterations run at once (model calls
    # inside are further bounded by their connection's limits).
    max_parallel: int = 100


class Executor:
    """One run's task tree. The Machine calls these from VM code (its greenlet)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.tasks: anyio.abc.TaskGroup | None = None
        self.spawned: list[TaskHandle] = []
        self._last_yield = time.monotonic()

    # -- run -------------------------------------------------------------------
    async def run(self, entry: Callable[..., T], *args: Any,
                  helpers: tuple[Callable[[], Awaitable[Any]], ...] = (),
                  finish: Callable[[], Awaitable[Any]] | None = None) -> T:
        """Drive entry(*args) (the main task), then wait for every spawned task
        and `finish()`; `helpers` run alongside and are cancelled at the end.
        A spawned task that failed and was never awaited fails the run."""
        error: Exception | None = None
        result: Any = None
        async with anyio.create_task_group() as tg:
            self.tasks = tg
            for helper in helpers:
                tg.start_soon(helper)
            try:
                result = await drive(entry, *args)
                for handle in self.spawned:
                    await handle.done.wait()
                if finish is not None:
                    await finish()
            except Exception as exc:  # noqa: BLE001 - raised below, unwrapped from the task group
                error = exc
            finally:
                self.tasks = None
                tg.cancel_scope.cancel()
        if error is not None:
            raise error
        for handle in self.spawned:
            if handle.error is not None and not handle.observed:
                raise handle.error
        return result

    # -- await points ------------------------------------------------------------
    def checkpoint(self) -> None:
        """Called every few thousand backward jumps / calls: yield to the loop when
        this task has been computing for a while, so cancellation can land."""
        now = time.monotonic()
        if now - self._last_yield >= CHECKPOINT_INTERVAL and in_task():
            self._last_yield = now
            suspend(anyio.lowlevel.checkpoint)

    def sleep(self, seconds: float) -> None:
        suspend(anyio.sleep, max(0.0, seconds))

    def await_value(self, value: Any) -> Any:
        if type(value) is TaskHandle:
            return suspend(value.wait)
        return value

    def await_all(self, vm: Any, thunks: list[Any]) -> tuple:
        return tuple(suspend(self._gather, vm, [(t, []) for t in thunks]))

    def race(self, vm: Any, thunks: list[Any]) -> Any:
        return suspend(self._race, vm, thunks)

    def parallel_for(self, vm: Any, body: Any, items: list[Any]) -> list[Any]:
        return suspend(self._gather, vm, [(body, [x]) for x in items], self.limits.max_parallel)

    def spawn(self, vm: Any, closure: Any) -> TaskHandle:
        _need_callable(closure, "spawn")
        if self.tasks is None:
            raise ConcertoError("spawn: the run is over", "RuntimeError")
        handle = TaskHandle(len(self.spawned) + 1)
        self.spawned.append(handle)

        async def body() -> None:
            try:
                handle.result = await self._child(vm, closure, [])
            except Exception as exc:  # noqa: BLE001 - kept for whoever awaits the task
                handle.error = exc
            finally:
                handle.done.set()

        self.tasks.start_soon(body)
        return handle

    def with_deadline(self, vm: Any, seconds: float, what: str, call: Callable[[Any], T]) -> T:
        """Run call(machine) as a child task (on a fork of vm) that is cancelled
        after `seconds`; the deadline is real: an in-flight request is cancelled."""
        return suspend(self._deadline, vm, seconds, what, call)

    # -- on the loop ----------------------------------------------------------------
    async def _child(self, vm: Any, closure: Any, args: list[Any]) -> Any:
        child = vm.fork()
        result = await drive(child.call_value, closure, args)
        if type(result) is TaskHandle:
            result = await result.wait()
        return result

    async def _gather(self, vm: Any, calls: list[tuple[Any, list[Any]]], limit: int | None = None) -> list[Any]:
        for closure, _args in calls:
            _need_callable(closure, "await")
        results: list[Any] = [None] * len(calls)
        failure: list[BaseException] = []
        limiter = anyio.CapacityLimiter(limit) if limit else None

        async def one(i: int, closure: Any, args: list[Any]) -> None:
            try:
                if limiter is None:
                    results[i] = await self._child(vm, closure, args)
                else:
                    async with limiter:
                        results[i] = await self._child(vm, closure, args)
            except Exception as exc:  # noqa: BLE001 - the first fault cancels the siblings
                if not failure:
                    failure.append(exc)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for i, (closure, args) in enumerate(calls):
                tg.start_soon(one, i, closure, args)
        if failure:
            raise failure[0]
        return results

    async def _race(self, vm: Any, thunks: list[Any]) -> Any:
        for closure in thunks:
            _need_callable(closure, "race")
        outcome: list[tuple[bool, Any]] = []

        async def one(closure: Any) -> None:
            try:
                value = await self._child(vm, closure, [])
            except Exception as exc:  # noqa: BLE001 - a fault can win the race too
                if not outcome:
                    outcome.append((False, exc))
            else:
                if not outcome:
                    outcome.append((True, value))
            tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for closure in thunks:
                tg.start_soon(one, closure)
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    async def _deadline(self, vm: Any, seconds: float, what: str, call: Callable[[Any], T]) -> T:
        with anyio.move_on_after(seconds) as scope:
            return await drive(call, vm.fork())
        if scope.cancelled_caught:
            raise ConcertoError(f"{what} timed out after {_seconds(seconds)}", "TimeoutError")
        raise AssertionError("unreachable")  # pragma: no cover


def _need_callable(value: Any, what: str) -> None:
    if type(value) is not Closure:
        raise ConcertoError(f"{what}: expected a function, found {type(value).__name__}", "TypeError")


def _seconds(s: float) -> str:
    return f"{s:g} s" if s != math.inf else "forever"
