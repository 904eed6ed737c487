"""Per-run caps on how large one value may grow.

A program can ask for more memory than the machine has in a single
expression (`"x".repeat(10^13)`, `(0..10^12).to_array()`, a string doubled
in a loop). Every place where a value grows asks `check_string` or
`check_collection` with the size the result *would* have, before building
it, so an oversized value is a catchable `ResourceError` fault instead of a
Python MemoryError.

The caps reach pure helpers (vm/operators.py has no machine at hand) through
a ContextVar: the host sets it for the run (`applied`), and every VM task runs
in a copy of the host's context, so the value is visible inside VM code.

Cost: sizes up to `UNCHECKED` never read the ContextVar, so the checks on
ordinary small values are an integer comparison.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

RESOURCE_ERROR = "ResourceError"

# Below this size no check reads the configured caps; so no cap may be lower.
UNCHECKED = 1024


@dataclass(frozen=True)
class ResourceLimits:
    #: Characters (code points) in one String.
    max_string_length: int = 100_000_000
    #: Elements of one Array, Map, Set, Queue or Stack.
    max_collection_size: int = 10_000_000

    def problems(self) -> list[str]:
        """What is wrong with these settings (empty when they are usable)."""
        out = []
        for name in ("max_string_length", "max_collection_size"):
            value = getattr(self, name)
            if type(value) is not int or value < UNCHECKED:
                out.append(f"{name} must be an integer >= {UNCHECKED}, got {value!r}")
        return out


DEFAULT = ResourceLimits()
_CURRENT: ContextVar[ResourceLimits] = ContextVar("concerto_resource_limits", default=DEFAULT)


def current() -> ResourceLimits:
    return _CURRENT.get()


@contextmanager
def applied(limits: ResourceLimits) -> Iterator[None]:
    """Make `limits` the caps of the code run inside (and of tasks it starts)."""
    token = _CURRENT.set(limits)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def _fault(message: str) -> Any:
    # Imported here: vm/values.py imports this module for its renderers.
    from concerto.vm.values import ConcertoError

    return ConcertoError(message, RESOURCE_ERROR)


def string_fault(size: int, where: str) -> Any:
    cap = _CURRENT.get().max_string_length
    return _fault(f"{where}: a string of {size} characters exceeds max_string_length ({cap})")


def collection_fault(size: int, where: str) -> Any:
    cap = _CURRENT.get().max_collection_size
    return _fault(f"{where}: a collection of {size} elements exceeds max_collection_size ({cap})")


def text_fault(what: str, cap: int) -> Any:
    return _fault(f"{what} would exceed max_string_length ({cap} characters)")


def check_string(size: int, where: str) -> None:
    """Raise ResourceError if a String of `size` characters is over the cap."""
    if size > UNCHECKED and size > _CURRENT.get().max_string_length:
        raise string_fault(size, where)


def check_collection(size: int, where: str) -> None:
    """Raise ResourceError if a collection of `size` elements is over the cap."""
    if size > UNCHECKED and size > _CURRENT.get().max_collection_size:
        raise collection_fault(size, where)


def string_cap() -> int:
    return _CURRENT.get().max_string_length


def collection_cap() -> int:
    return _CURRENT.get().max_collection_size
