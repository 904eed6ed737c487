"""Built-in methods of String.

Strings are Python `str`, so lengths and indices count Unicode code points,
never bytes. Every function here also serves as the matching `std::string::`
function (see std_string): a method gets the receiver where the function gets
its first argument, so one implementation fits both.
"""

from __future__ import annotations

import re
from typing import Any

from concerto.stdlib.registry import REGISTRY, NativeContext, error_value
from concerto.stdlib.support import clamp_index, want_count, want_int, want_str
from concerto.vm.values import INT_MAX, INT_MIN, NONE, Err, Ok, Some, debug, display

method = REGISTRY.method


@method("String", "len", 0)
def len_(ctx: NativeContext, s: str) -> int:
    return len(want_str(s, "String.len"))


@method("String", "is_empty", 0)
def is_empty(ctx: NativeContext, s: str) -> bool:
    return len(want_str(s, "String.is_empty")) == 0


@method("String", "to_upper", 0)
def to_upper(ctx: NativeContext, s: str) -> str:
    return want_str(s, "String.to_upper").upper()


@method("String", "to_lower", 0)
def to_lower(ctx: NativeContext, s: str) -> str:
    return want_str(s, "String.to_lower").lower()


@method("String", "trim", 0)
def trim(ctx: NativeContext, s: str) -> str:
    return want_str(s, "String.trim").strip()


@method("String", "trim_start", 0)
def trim_start(ctx: NativeContext, s: str) -> str:
    return want_str(s, "String.trim_start").lstrip()


@method("String", "trim_end", 0)
def trim_end(ctx: NativeContext, s: str) -> str:
    return want_str(s, "String.trim_end").rstrip()


@method("String", "contains", 1)
def contains(ctx: NativeContext, s: str, sub: str) -> bool:
    return want_str(sub, "String.contains") in want_str(s, "String.contains")


@method("String", "starts_with", 1)
def starts_with(ctx: NativeContext, s: str, prefix: str) -> bool:
    return want_str(s, "String.starts_with").startswith(want_str(prefix, "String.starts_with"))


@method("String", "ends_with", 1)
def ends_with(ctx: NativeContext, s: str, suffix: str) -> bool:
    return want_str(s, "String.ends_with").endswith(want_str(suffix, "String.ends_with"))


@method("String", "split", 0, 1)
def split(ctx: NativeContext, s: str, sep: Any = None) -> list[str]:
    """`split()` splits on runs of whitespace (dropping empty pieces);
    `split("")` splits into characters, which Python alone would reject."""
    want_str(s, "String.split")
    if sep is None:
        return s.split()
    if want_str(sep, "String.split") == "":
        return list(s)
    return s.split(sep)


@method("String", "replace", 2)
def replace(ctx: NativeContext, s: str, old: str, new: str) -> str:
    where = "String.replace"
    return want_str(s, where).replace(want_str(old, where), want_str(new, where))


@method("String", "repeat", 1)
def repeat(ctx: NativeContext, s: str, n: int) -> str:
    return want_str(s, "String.repeat") * want_count(n, "String.repeat")


@method("String", "reverse", 0)
def reverse(ctx: NativeContext, s: str) -> str:
    return want_str(s, "String.reverse")[::-1]


@method("String", "chars", 0)
def chars(ctx: NativeContext, s: str) -> list[str]:
    return list(want_str(s, "String.chars"))


@method("String", "lines", 0)
def lines(ctx: NativeContext, s: str) -> list[str]:
    # Only \n and \r\n end a line: str.splitlines would also split on form
    # feeds and Unicode separators, which surprises people parsing LLM output.
    want_str(s, "String.lines")
    if s == "":
        return []
    parts = s.split("\n")
    if parts[-1] == "":
        parts.pop()
    return [p[:-1] if p.endswith("\r") else p for p in parts]


# Strict grammars: Python's int()/float() also accept "1_000" and other
# spellings Concerto source would not, so parse only plain decimal text.
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)", re.I)


@method("String", "parse_int", 0)
def parse_int(ctx: NativeContext, s: str) -> Ok | Err:
    text = want_str(s, "String.parse_int").strip()
    if not _INT_TEXT.fullmatch(text):
        return Err(error_value("ParseError", f"invalid integer: {debug(s)}"))
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        return Err(error_value("ParseError", f"integer out of range: {debug(s)}"))
    return Ok(value)


@method("String", "parse_float", 0)
def parse_float(ctx: NativeContext, s: str) -> Ok | Err:
    text = want_str(s, "String.parse_float").strip()
    if not _FLOAT_TEXT.fullmatch(text):
        return Err(error_value("ParseError", f"invalid float: {debug(s)}"))
    return Ok(float(text))


@method("String", "to_string", 0)
def to_string(ctx: NativeContext, s: str) -> str:
    return display(s)


@method("String", "substring", 1, 2)
def substring(ctx: NativeContext, s: str, start: int, end: Any = None) -> str:
    """Bounds are clamped to the string, like slicing: `"abc".substring(1, 99)`
    is "bc", not a fault, so truncating text of unknown length is safe."""
    want_str(s, "String.substring")
    n = len(s)
    lo = clamp_index(start, n, "String.substring")
    hi = n if end is None else clamp_index(end, n, "String.substring")
    return s[lo:hi] if lo < hi else ""


@method("String", "index_of", 1)
def index_of(ctx: NativeContext, s: str, sub: str) -> Any:
    at = want_str(s, "String.index_of").find(want_str(sub, "String.index_of"))
    return NONE if at < 0 else Some(at)


@method("String", "last_index_of", 1)
def last_index_of(ctx: NativeContext, s: str, sub: str) -> Any:
    at = want_str(s, "String.last_index_of").rfind(want_str(sub, "String.last_index_of"))
    return NONE if at < 0 else Some(at)


@method("String", "get", 1)
def get(ctx: NativeContext, s: str, i: int) -> Any:
    want_str(s, "String.get")
    if 0 <= want_int(i, "String.get") < len(s):
        return Some(s[i])
    return NONE


@method("String", "count", 1)
def count(ctx: NativeContext, s: str, sub: str) -> int:
    """Non-overlapping occurrences of `sub`."""
    return want_str(s, "String.count").count(want_str(sub, "String.count"))
