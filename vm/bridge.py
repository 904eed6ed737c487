"""How the synchronous dispatch loop reaches the async world.

The interpreter runs plain Python; model calls are coroutines on an anyio
event loop (one httpx.AsyncClient per connection lives there). A Bridge runs a
coroutine function to completion for the VM, and starts background tasks (a
streamed reply keeps arriving while the program handles earlier chunks).

PortalBridge owns a loop on a helper thread (anyio's blocking portal): the CLI
uses it, and a program that never calls a model never starts it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

T = TypeVar("T")


class Bridge(Protocol):
    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run fn(*args) on the event loop and wait for its result."""

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start fn(*args) on the event loop without waiting for it."""

    def close(self) -> None:
        """Stop the loop (after the owner closed its clients)."""


class PortalBridge:
    def __init__(self) -> None:
        self._cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None

    def _ensure(self) -> BlockingPortal:
        if self._portal is None:
            self._cm = start_blocking_portal()
            self._portal = self._cm.__enter__()
        return self._portal

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self._ensure().call(fn, *args)

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._ensure().start_task_soon(fn, *args)

    @property
    def started(self) -> bool:
        return self._portal is not None

    def close(self) -> None:
        if self._cm is not None:
            cm, self._cm, self._portal = self._cm, None, None
            cm.__exit__(None, None, None)


class TaskBridge:
    """The bridge inside a run of the async executor: a call suspends the
    calling VM task (its greenlet) while the loop awaits; a spawned coroutine
    joins the run's task group, so cancelling the run stops it too."""

    def __init__(self, executor: Any) -> None:
        self.executor = executor

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        from concerto.vm.executor import suspend

        return suspend(fn, *args)

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        tasks = self.executor.tasks
        if tasks is None:
            raise RuntimeError("the run is over")
        tasks.start_soon(fn, *args)

    def close(self) -> None:
        pass
