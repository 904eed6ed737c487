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

Deadlines hold whatever the program does: the run's interrupt flag
(vm/interrupts.py) makes running code reach `checkpoint()` every few
milliseconds of wall time; there the run's deadline and a cancel request are
looked at directly (an event loop busy with a thousand ready tasks would
notice its own timer only after serving them all), and once the run is
stopping no task computes another slice: each one unwinds at its next
checkpoint or the moment it is resumed.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from greenlet import greenlet, getcurrent

from concerto.vm.interrupts import CLOCK, CURRENT
from concerto.vm.values import Closure, ConcertoError

T = TypeVar("T")

# How long compute-bound code may run before it lets the loop breathe (seconds).
CHECKPOINT_INTERVAL = 0.01


class VMGreenlet(greenlet):
    """A greenlet running VM code; its parent is the greenlet of the event loop."""

    executor: "Executor | None" = None


class RunStopped(Exception):
    """The run was ended from outside: `reason` is "timeout" or "cancelled"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def in_task() -> bool:
    return type(getcurrent()) is VMGreenlet


def suspend(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """From VM code: await fn(*args) on the event loop and return its result.
    Exceptions (including cancellation) are raised here, in the VM's frame.
    A task resumed after its run began stopping unwinds instead of going on."""
    current = getcurrent()
    if type(current) is not VMGreenlet:
        raise ConcertoError("an await point was reached outside the async executor", "RuntimeError")
    result = current.parent.switch((fn, args))
    executor = current.executor
    if executor is not None and executor.stop_reason is not None:
        executor.stop_here()
    return result


async def drive(entry: Callable[..., T], *args: Any, executor: "Executor | None" = None) -> T:
    """Run entry(*args) on a fresh VM greenlet, serving its awaits on this task.
    The greenlet starts in a copy of this task's context, so the host's
    contextvars are visible to VM code and to the handlers it calls."""
    if executor is not None and executor.stop_reason is not None:
        await executor.stopped()  # a task that would start after the run began stopping never does
    glet = VMGreenlet(entry)
    glet.gr_context = contextvars.copy_context()
    glet.executor = executor
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
    """One run's task tree. The Machine calls these from VM code (its greenlet).

    `timeout` (seconds) bounds the whole run; `cancel()` ends it from any
    thread. Either way execute() sees RunStopped once every task has unwound."""

    def __init__(self, limits: Limits | None = None, timeout: float | None = None) -> None:
        self.limits = limits or Limits()
        self.timeout = timeout
        self.tasks: anyio.abc.TaskGroup | None = None
        self.spawned: list[TaskHandle] = []
        self._last_yield = time.monotonic()
        # Raised by the interrupt clock while the run is active; every fork of
        # the run's Machine tests this same list.
        self.interrupt: list[bool] = [False]
        self.deadline: float | None = None  # time.monotonic() value
        self.stop_reason: str | None = None  # "timeout" | "cancelled"
        self._scope: anyio.CancelScope | None = None
        self._call_soon: Callable[[Callable[[], Any]], Any] | None = None  # thread-safe, never blocks
        self._loop_thread: int | None = None

    # -- run -------------------------------------------------------------------
    async def run(self, entry: Callable[..., T], *args: Any,
                  helpers: tuple[Callable[[], Awaitable[Any]], ...] = (),
                  finish: Callable[[], Awaitable[Any]] | None = None) -> T:
        """Drive entry(*args) (the main task), then wait for every spawned task
        and `finish()`; `helpers` run alongside and are cancelled at the end.
        A spawned task that failed and was never awaited fails the run; a
        timeout or cancel() raises RunStopped."""
        error: Exception | None = None
        result: Any = None
        self._call_soon = _thread_safe_call_soon()
        self._loop_thread = threading.get_ident()
        if self.timeout is not None:
            self.deadline = time.monotonic() + self.timeout
        CLOCK.register(self.interrupt)
        current = CURRENT.set(self)  # for poll(): every VM task starts in a copy of this context
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self.timeout is not None:
                    scope.deadline = anyio.current_time() + self.timeout
                if self.stop_reason is not None:
                    scope.cancel()
                async with anyio.create_task_group() as tg:
                    self.tasks = tg
                    for helper in helpers:
                        tg.start_soon(helper)
                    try:
                        result = await drive(entry, *args, executor=self)
                        for handle in self.spawned:
                            await handle.done.wait()
                        if finish is not None:
                            await finish()
                    except Exception as exc:  # noqa: BLE001 - raised below, unwrapped from the task group
                        error = exc
                    finally:
                        self.tasks = None
                        tg.cancel_scope.cancel()
            if scope.cancelled_caught or self.stop_reason is not None:
                raise RunStopped(self.stop_reason or "timeout")
        finally:
            CLOCK.unregister(self.interrupt)
            CURRENT.reset(current)
            self._scope = None
        if error is not None:
            raise error
        for handle in self.spawned:
            if handle.error is not None and not handle.observed:
                raise handle.error
        return result

    def cancel(self) -> None:
        """End the run (thread-safe). Code that is computing stops at its next
        checkpoint, within a few milliseconds; awaits are cancelled at once."""
        if self.stop_reason is None:
            self.stop_reason = "cancelled"
        self.interrupt[0] = True
        scope = self._scope
        if scope is None:
            return  # not started yet (run() cancels at once) or already over
        if threading.get_ident() == self._loop_thread:
            scope.cancel()
        elif self._call_soon is not None:
            # Schedule, never wait: the loop's thread may itself be waiting for
            # this one (a handler joining the canceller, a shared lock).
            try:
                self._call_soon(scope.cancel)
            except RuntimeError:
                pass  # the loop is closed: the run is over

    def stop_here(self) -> None:
        """In a VM task of a stopping run: unwind by raising the scope's own
        cancellation (never returns while the scope is cancelled)."""
        getcurrent().parent.switch((self.stopped, ()))

    async def stopped(self) -> None:
        """On the loop, in a task of a stopping run: raise its cancellation."""
        if self._scope is not None:
            self._scope.cancel()
        while True:  # the scope delivers cancellation to this task within a step or two
            await anyio.lowlevel.checkpoint()

    # -- await points ------------------------------------------------------------
    def checkpoint(self, may_yield: bool = True) -> None:
        """Reached from running VM code when the interrupt flag was up: stop
        when the run is past its deadline or cancelled; yield to the loop when
        this task has been computing for a while (unless `may_yield` is False:
        a native in the middle of its work must not let other tasks change
        what it is working on)."""
        now = time.monotonic()
        if self.stop_reason is None and self.deadline is not None and now >= self.deadline:
            self.stop_reason = "timeout"
        if not in_task():
            return
        if self.stop_reason is not None:
            self.stop_here()
        if may_yield and now - self._last_yield >= CHECKPOINT_INTERVAL:
            self._last_yield = now
            suspend(anyio.lowlevel.checkpoint)

    def sleep(self, seconds: float) -> None:
        suspend(anyio.sleep, max(0.0, seconds))

    def await_value(self, value: Any) -> Any:
        if type(value) is TaskHandle:
            return suspend(value.wait)
        return value

    def await_all(self, vm: Any, thunks: list[Any]) -> tuple:
        for thunk in thunks:
            _need_callable(thunk, "await")
        return tuple(suspend(self._gather, vm, [(t, []) for t in thunks]))

    def race(self, vm: Any, thunks: list[Any]) -> Any:
        return suspend(self._race, vm, thunks)

    def parallel_for(self, vm: Any, body: Any, items: list[Any]) -> list[Any]:
        _need_callable(body, "parallel for")
        return suspend(self._gather, vm, _OneEach(body, items), self.limits.max_parallel)

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
        result = await drive(child.call_value, closure, args, executor=self)
        if type(result) is TaskHandle:
            result = await result.wait()
        return result

    async def _gather(self, vm: Any, calls: "Sequence[tuple[Any, list[Any]]]", limit: int | None = None) -> list[Any]:
        """Run every call concurrently, at most `limit` at a time; results in
        order; the first fault cancels the rest. Workers (one task, greenlet
        and forked machine each) take the next call as they finish one, so a
        million-item `parallel for` costs `limit` tasks, not a million."""
        results: list[Any] = [None] * len(calls)
        failure: list[BaseException] = []
        pending = iter(range(len(calls)))

        def work(machine: Any) -> None:  # on a VM greenlet
            for i in pending:
                closure, args = calls[i]
                result = machine.call_value(closure, args)
                results[i] = suspend(result.wait) if type(result) is TaskHandle else result

        async def worker() -> None:
            try:
                await drive(work, vm.fork(), executor=self)
            except Exception as exc:  # noqa: BLE001 - the first fault cancels the siblings
                if not failure:
                    failure.append(exc)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for _ in range(min(limit or len(calls), len(calls))):
                tg.start_soon(worker)
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
            return await drive(call, vm.fork(), executor=self)
        if scope.cancelled_caught:
            raise ConcertoError(f"{what} timed out after {_seconds(seconds)}", "TimeoutError")
        raise AssertionError("unreachable")  # pragma: no cover


def _thread_safe_call_soon() -> Callable[[Callable[[], Any]], Any]:
    """For the running event loop: a function that schedules a callback on it
    from any thread and returns at once (anyio's from_thread.run_sync waits)."""
    import asyncio

    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:  # not asyncio: anyio's other backend
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon


class _OneEach:
    """The calls of a `parallel for`: the body once per item, made as taken."""

    def __init__(self, body: Any, items: list[Any]) -> None:
        self.body = body
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Any, list[Any]]:
        return self.body, [self.items[i]]


def _need_callable(value: Any, what: str) -> None:
    if type(value) is not Closure:
        raise ConcertoError(f"{what}: expected a function, found {type(value).__name__}", "TypeError")


def _seconds(s: float) -> str:
    return f"{s:g} s" if s != math.inf else "forever"
