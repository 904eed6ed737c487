"""Concerto: compiler, VM and host API.

Hosts embed programs with `from concerto import Runtime, RuntimeConfig`
(see concerto/host.py); the CLI is `concerto` (concerto/cli.py).
"""

from typing import Any

__all__ = ["Runtime", "RuntimeConfig", "ConnectionOverride", "RunError", "LoadError"]


def __getattr__(name: str) -> Any:
    # Lazy: `concerto --help` and the compiler never pay for the VM's imports.
    if name in __all__:
        from concerto import host

        return getattr(host, name)
    raise AttributeError(f"module 'concerto' has no attribute {name!r}")
