"""Run the compiler where a maximally nested program fits on the stack.

The passes after parsing recurse over the AST. The parser bounds how deeply a
program may nest (compiler/nesting.py, MAX_NESTING levels), and each level
costs the deepest pass a bounded number of Python frames (FRAMES_PER_LEVEL,
measured by tests/test_nesting.py). So the compiler runs in a worker thread
with a stack sized for that many frames, and Python's recursion limit is
raised to match only while a compile is running, then put back (never below
what a run of the VM has required: concerto/recursion.py): code outside the
compiler never runs with a limit its stack cannot take. The calling thread
waits for the worker meanwhile.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import TypeVar

from concerto import recursion
from concerto.compiler.nesting import MAX_NESTING

R = TypeVar("R")

#: Python frames one nesting level may take in the deepest pass, with margin.
FRAMES_PER_LEVEL = 25
#: Frames the compiler needs besides the nesting (driver, resolver, callers).
BASE_FRAMES = 3000
#: Bytes of C stack per Python frame: frames that go through C (calls of
#: objects with __call__, generators, some builtins) take a few hundred bytes
#: in CPython 3.11; this allows for several times that.
BYTES_PER_FRAME = 2048

RECURSION_LIMIT = BASE_FRAMES + MAX_NESTING * FRAMES_PER_LEVEL
STACK_BYTES = RECURSION_LIMIT * BYTES_PER_FRAME

_local = threading.local()
_start_lock = threading.Lock()


def _start(target: Callable[[], None]) -> threading.Thread | None:
    with _start_lock:  # threading.stack_size is process-wide: set, start, put back
        old = threading.stack_size()
        try:
            threading.stack_size(STACK_BYTES)
            thread = threading.Thread(target=target, name="concerto-compile", daemon=True)
            thread.start()
            return thread
        except (ValueError, RuntimeError, MemoryError):
            return None
        finally:
            threading.stack_size(old)


def call(fn: Callable[..., R], *args: object, **kwargs: object) -> R:
    """fn(*args, **kwargs) on a worker thread with room for MAX_NESTING levels."""
    if getattr(_local, "inside", False):  # already on a worker (a nested compile)
        return fn(*args, **kwargs)
    outcome: dict[str, object] = {}
    context = contextvars.copy_context()

    def work() -> None:
        _local.inside = True
        try:
            outcome["value"] = context.run(fn, *args, **kwargs)
        except BaseException as e:  # handed to the caller's thread below
            outcome["error"] = e

    recursion.raise_for_compile(RECURSION_LIMIT)
    try:
        thread = _start(work)
        if thread is not None:
            thread.join()
    finally:
        recursion.lower_after_compile()
    if thread is None:
        # No thread of that size here: compile in place with the usual limit. A
        # program too deep for it ends in RecursionError, which the driver reports.
        return fn(*args, **kwargs)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
