"""Python's recursion limit is one per process, and two parts need it higher:
the compiler for a while (a compile runs on a worker thread sized for the
deepest nesting it accepts, compiler/headroom.py), and the VM for as long as
the process lives (compiled Concerto recursion is Python recursion,
vm/machine.py). Both go through here, so putting back the compiler's raise
never drops below what a run has required.
"""

from __future__ import annotations

import sys
import threading

_lock = threading.Lock()
_floor = 0  # the highest limit a run has required
_compiles = 0  # compiles in progress
_saved = 0  # the limit before the first of them raised it
_raised_to = 0


def require(limit: int) -> None:
    """From now on the limit is at least `limit`."""
    global _floor
    with _lock:
        _floor = max(_floor, limit)
        if sys.getrecursionlimit() < limit:
            sys.setrecursionlimit(limit)


def raise_for_compile(limit: int) -> None:
    """Until the matching lower_after_compile(): the limit is at least `limit`."""
    global _compiles, _saved, _raised_to
    with _lock:
        if _compiles == 0:
            _saved = sys.getrecursionlimit()
            _raised_to = max(_saved, limit)
            sys.setrecursionlimit(_raised_to)
        _compiles += 1


def lower_after_compile() -> None:
    global _compiles
    with _lock:
        _compiles -= 1
        # Someone may have set a limit of their own meanwhile: keep theirs.
        if _compiles == 0 and sys.getrecursionlimit() == _raised_to:
            sys.setrecursionlimit(max(_saved, _floor))
