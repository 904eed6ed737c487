"""std::env — environment variables (spec 19)."""

from __future__ import annotations

import os

from concerto.stdlib.registry import REGISTRY, NativeContext, error_value
from concerto.stdlib.support import want_str
from concerto.vm.values import NONE, Err, Ok, Some


@REGISTRY.function("std::env::get", 1)
def get(ctx: NativeContext, name: str) -> object:
    value = os.environ.get(want_str(name, "env::get"))
    return NONE if value is None else Some(value)


@REGISTRY.function("std::env::require", 1)
def require(ctx: NativeContext, name: str) -> Ok | Err:
    value = os.environ.get(want_str(name, "env::require"))
    if value is None:
        return Err(error_value("EnvError", f"environment variable {name} is not set"))
    return Ok(value)


@REGISTRY.function("std::env::all", 0)
def all_(ctx: NativeContext) -> dict[str, str]:
    """Sorted by name so the map's order does not depend on the platform."""
    return dict(sorted(os.environ.items()))


@REGISTRY.function("std::env::has", 1)
def has(ctx: NativeContext, name: str) -> bool:
    return want_str(name, "env::has") in os.environ
