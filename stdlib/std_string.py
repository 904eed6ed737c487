"""std::string — the String methods as free functions (spec 19).

`string::trim(s)` and `s.trim()` share one implementation (methods_string);
the function form takes the string as its first argument.
"""

from __future__ import annotations

from typing import Any

from concerto.stdlib import methods_array, methods_string as m
from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.stdlib.support import want_list

# name -> (implementation, required args, optional args), counted after the string.
_SHARED = {
    "split": (m.split, 1, 0),
    "trim": (m.trim, 0, 0),
    "trim_start": (m.trim_start, 0, 0),
    "trim_end": (m.trim_end, 0, 0),
    "replace": (m.replace, 2, 0),
    "to_upper": (m.to_upper, 0, 0),
    "to_lower": (m.to_lower, 0, 0),
    "contains": (m.contains, 1, 0),
    "starts_with": (m.starts_with, 1, 0),
    "ends_with": (m.ends_with, 1, 0),
    "substring": (m.substring, 2, 0),
    "len": (m.len_, 0, 0),
    "repeat": (m.repeat, 1, 0),
    "reverse": (m.reverse, 0, 0),
    "parse_int": (m.parse_int, 0, 0),
    "parse_float": (m.parse_float, 0, 0),
}

for _name, (_fn, _required, _optional) in _SHARED.items():
    REGISTRY.function(f"std::string::{_name}", 1 + _required, 1 + _required + _optional)(_fn)


@REGISTRY.function("std::string::join", 2)
def join(ctx: NativeContext, parts: Any, separator: Any) -> str:
    return methods_array.join(ctx, want_list(parts, "string::join"), separator)
