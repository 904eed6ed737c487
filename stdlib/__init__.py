"""Concerto's native standard library: std:: functions and built-in methods.

`load()` imports every module once (importing is what registers the natives)
and returns the shared registry. std::fs and std::http are not provided.
"""

from __future__ import annotations

import importlib

from concerto.stdlib.registry import REGISTRY, Registry

# Order matters only where a module reuses another's registrations:
# methods_number copies Array methods onto Range, std_string/std_math reuse methods.
_MODULES = (
    "builtins",
    "methods_string",
    "methods_array",
    "methods_map",
    "methods_option_result",
    "methods_number",
    "std_string",
    "std_math",
    "std_json",
    "std_fmt",
    "std_collections",
    "std_crypto",
    "std_env",
    "std_time",
    "std_log",
    "std_prompt",
    "llm",
)


def load() -> Registry:
    for name in _MODULES:
        # Python caches modules, so repeated load() calls register nothing twice.
        importlib.import_module(f"{__name__}.{name}")
    return REGISTRY


__all__ = ["load", "Registry", "REGISTRY"]
