"""How the model runtime reaches the async world.

The interpreter runs plain Python; model calls are coroutines on the run's
anyio event loop (one httpx.AsyncClient per connection lives there). A Bridge
runs a coroutine function to completion for the VM, and starts background
tasks (a streamed reply keeps arriving while the program handles earlier
chunks). Inside a run that is the TaskBridge (vm/executor.py suspends the
calling task); before a run, NoBridge says why nothing can be called.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Bridge(Protocol):
    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run fn(*args) on the event loop and wait for its result."""

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start fn(*args) on the event loop without waiting for it."""


class NoBridge:
    """Before a run starts: model calls need the run's event loop."""

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        raise RuntimeError("model calls run inside a run of the async executor")

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        raise RuntimeError("model calls run inside a run of the async executor")


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
