"""std::env — environment variables (spec 19), behind the host's permission.

Every read goes through the run's EnvironmentGate (vm/environment.py),
`ctx.config.environment`: a program sees only the variables the host
allowed, never the credentials of its connections. A variable that is not
allowed reads as unset; `require` says which permission is missing.
"""

from __future__ import annotations

from typing import Any

from concerto.stdlib.registry import REGISTRY, NativeContext, error_value
from concerto.stdlib.support import want_str
from concerto.vm.environment import EnvironmentGate
from concerto.vm.values import NONE, Err, Ok, Some

_CLOSED = EnvironmentGate.closed()


def gate(ctx: NativeContext) -> EnvironmentGate:
    """The run's gate; a context without one (a bare test double) grants nothing."""
    found = getattr(getattr(ctx, "config", None), "environment", None)
    return found if isinstance(found, EnvironmentGate) else _CLOSED


def _read(ctx: NativeContext, name: Any, where: str) -> str | None:
    want_str(name, where)
    env = gate(ctx)
    if env.readable(name):
        return env.get(name)
    if env.first_denial(name):
        ctx.log("warn", f"{where}: {env.denial(name)}")
    return None


@REGISTRY.function("std::env::get", 1)
def get(ctx: NativeContext, name: str) -> object:
    value = _read(ctx, name, "env::get")
    return NONE if value is None else Some(value)


@REGISTRY.function("std::env::require", 1)
def require(ctx: NativeContext, name: str) -> Ok | Err:
    want_str(name, "env::require")
    env = gate(ctx)
    if not env.readable(name):
        return Err(error_value("EnvError", env.denial(name)))
    value = env.get(name)
    if value is None:
        return Err(error_value("EnvError", f"environment variable {name} is not set"))
    return Ok(value)


@REGISTRY.function("std::env::all", 0)
def all_(ctx: NativeContext) -> dict[str, str]:
    """The readable variables, sorted by name so the map's order does not
    depend on the platform."""
    return gate(ctx).visible()


@REGISTRY.function("std::env::has", 1)
def has(ctx: NativeContext, name: str) -> bool:
    return _read(ctx, name, "env::has") is not None
