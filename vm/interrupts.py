"""The interrupt clock: time, not instruction counts, decides when running
code looks up from its work.

Every active run owns a one-element list, its interrupt flag. The dispatch
loop and compiled code test the flag at each loop back edge and call (one
list read, cheaper than the instruction counter it replaced); a daemon thread
sets every active flag every INTERVAL seconds. Whoever sees the flag set
clears it and runs a checkpoint (vm/executor.py): is the run past its
deadline or cancelled, and has this task computed long enough to let others
run? So a slow iteration (a blocking emit handler, a long native) can delay a
checkpoint by at most one INTERVAL plus that iteration, never by thousands of
them. CPython sets its own eval breaker from another thread the same way.

The thread runs only while some run is registered.

Natives that loop over large values in Python (a join over ten million
items) call `poll()` every few thousand items: it reaches the run's executor
through a context variable, so natives need no handle on the machine, and
importing this module loads neither anyio nor greenlet.
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Any

# Seconds between two raisings of every active flag.
INTERVAL = 0.005


class InterruptClock:
    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._flags: dict[int, list[bool]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self, flag: list[bool]) -> None:
        """Raise `flag[0]` every interval until unregister(flag)."""
        with self._lock:
            self._flags[id(flag)] = flag
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(target=self._run, name="concerto-interrupts", daemon=True)
                self._thread.start()
        self._wake.set()

    def unregister(self, flag: list[bool]) -> None:
        with self._lock:
            self._flags.pop(id(flag), None)

    def active(self) -> int:
        with self._lock:
            return len(self._flags)

    def _run(self) -> None:
        while True:
            with self._lock:
                flags = list(self._flags.values())
                if not flags:
                    self._wake.clear()  # under the lock: a register() after this sets it again
            if not flags:
                self._wake.wait()
                continue
            for flag in flags:
                flag[0] = True
            time.sleep(self.interval)


CLOCK = InterruptClock()


# The executor (vm/executor.py) of the run the current VM task belongs to; set
# for the run, and every VM task starts in a copy of that context.
CURRENT: contextvars.ContextVar[Any] = contextvars.ContextVar("concerto_executor", default=None)


def poll() -> None:
    """When the run's interrupt flag is up: stop here if the run is past its
    deadline or cancelled. Never yields to other tasks, so a native may call it
    in the middle of its work. Cheap enough for every few thousand items."""
    executor = CURRENT.get()
    if executor is not None and executor.interrupt[0]:
        executor.interrupt[0] = False
        executor.checkpoint(may_yield=False)
