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
from concerto.stdlib.support import (
    UNCHECKED,
    check_collection,
    clamp_index,
    string_check,
    want_count,
    want_int,
    want_str,
)
from concerto.vm.interrupts import poll
from concerto.vm.limits import collection_cap
from concerto.vm.values import INT_MAX, INT_MIN, NONE, Err, Ok, Some, chunked, debug, display

method = REGISTRY.method


@method("String", "len", 0)
def len_(ctx: NativeContext, s: str) -> int:
    return len(want_str(s, "String.len"))


@method("String", "is_empty", 0)
def is_empty(ctx: NativeContext, s: str) -> bool:
    return len(want_str(s, "String.is_empty")) == 0


def _recase(s: str, result: str, where: str) -> str:
    # Case mapping can lengthen text ("ß" -> "SS", at most 3 characters per
    # character), so a long input is checked again once converted.
    if len(s) > UNCHECKED // 3:
        string_check(len(result), where)
    return result


@method("String", "to_upper", 0)
def to_upper(ctx: NativeContext, s: str) -> str:
    want_str(s, "String.to_upper")
    string_check(len(s), "String.to_upper")
    return _recase(s, s.upper(), "String.to_upper")


@method("String", "to_lower", 0)
def to_lower(ctx: NativeContext, s: str) -> str:
    want_str(s, "String.to_lower")
    string_check(len(s), "String.to_lower")
    return _recase(s, s.lower(), "String.to_lower")


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
        if len(s) <= UNCHECKED:
            return s.split()
        # At most cap + 1 pieces are built: that many already proves the cap is passed.
        cap = collection_cap()
        pieces = _split_blank(s, cap)
        if len(pieces) > cap:
            check_collection(cap + 1, "String.split")
        return pieces
    if want_str(sep, "String.split") == "":
        if len(s) > UNCHECKED:
            check_collection(len(s), "String.split")
        return list(s)
    if len(s) > UNCHECKED:
        check_collection(s.count(sep) + 1, "String.split")
    return split_on(s, sep)


# Characters split by one C call: ten million pieces take a second to build,
# so a long String is split a window at a time, polling between windows.
_WINDOW = 1 << 16


def split_on(s: str, sep: str) -> list[str]:
    """s.split(sep). Each window starts just after a separator the whole
    scan would also find (or at 0): its pieces but the last are final, and
    its last separator is one of the whole scan's."""
    pieces: list[str] = []
    lo = 0
    width = _WINDOW
    while len(s) - lo > width:
        poll()
        parts = s[lo:lo + width].split(sep)
        if len(parts) == 1:  # no separator yet: look further
            width *= 2
            continue
        last = parts.pop()
        pieces += parts
        lo += width - len(last)
        width = _WINDOW
    pieces += s[lo:].split(sep)
    return pieces


def _split_blank(s: str, cap: int) -> list[str]:
    """s.split(), stopping once more than `cap` pieces are found. Windows
    start where a word starts or after whitespace; a word running past a
    window's end is left for the next."""
    pieces: list[str] = []
    lo = 0
    width = _WINDOW
    while len(s) - lo > width and len(pieces) <= cap:
        poll()
        hi = lo + width
        words = s[lo:hi].split()
        if words and not s[hi - 1].isspace() and not s[hi].isspace():
            cut = hi - len(words.pop())
            if cut == lo:  # one word fills the window: look further
                width *= 2
                continue
            hi = cut
        pieces += words
        lo = hi
        width = _WINDOW
    if len(pieces) <= cap:
        pieces += s[lo:].split()
    return pieces


@method("String", "replace", 2)
def replace(ctx: NativeContext, s: str, old: str, new: str) -> str:
    where = "String.replace"
    want_str(s, where)
    want_str(old, where)
    want_str(new, where)
    growth = len(new) - len(old)
    if growth > 0 and len(s) + (len(s) + 1) * growth > UNCHECKED:
        hits = s.count(old)  # "" matches between every character and at both ends
        string_check(len(s) + hits * growth, where)
    return s.replace(old, new)


@method("String", "repeat", 1)
def repeat(ctx: NativeContext, s: str, n: int) -> str:
    want_str(s, "String.repeat")
    want_count(n, "String.repeat")
    string_check(len(s) * n, "String.repeat")
    return s * n


@method("String", "reverse", 0)
def reverse(ctx: NativeContext, s: str) -> str:
    return want_str(s, "String.reverse")[::-1]


@method("String", "chars", 0)
def chars(ctx: NativeContext, s: str) -> list[str]:
    if len(want_str(s, "String.chars")) > UNCHECKED:
        check_collection(len(s), "String.chars")
    return list(s)


@method("String", "lines", 0)
def lines(ctx: NativeContext, s: str) -> list[str]:
    # Only \n and \r\n end a line: str.splitlines would also split on form
    # feeds and Unicode separators, which surprises people parsing LLM output.
    want_str(s, "String.lines")
    if s == "":
        return []
    if len(s) > UNCHECKED:
        check_collection(s.count("\n") + 1, "String.lines")
    parts = split_on(s, "\n")
    if parts[-1] == "":
        parts.pop()
    out: list[str] = []
    for part in chunked(parts):
        out += [p[:-1] if p.endswith("\r") else p for p in part]
    return out


# Strict grammars: Python's int()/float() also accept "1_000" and other
# spellings Concerto source would not, so parse only plain decimal text.
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
# Unambiguous on purpose: `[0-9]+\.?[0-9]*` backtracks quadratically on a long
# run of digits followed by junk.
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)", re.I)
# An Int has at most 19 significant digits; int() of a longer text would also
# hit Python's limit on digits (ValueError) for absurd lengths.
_INT_DIGITS = 19


@method("String", "parse_int", 0)
def parse_int(ctx: NativeContext, s: str) -> Ok | Err:
    text = want_str(s, "String.parse_int").strip()
    if not _INT_TEXT.fullmatch(text):
        return Err(error_value("ParseError", f"invalid integer: {debug(_excerpt(s))}"))
    digits = text.lstrip("+-").lstrip("0")
    if len(digits) > _INT_DIGITS:
        return Err(error_value("ParseError", f"integer out of range: {debug(_excerpt(s))}"))
    value = -int(digits or "0") if text.startswith("-") else int(digits or "0")
    if not INT_MIN <= value <= INT_MAX:
        return Err(error_value("ParseError", f"integer out of range: {debug(_excerpt(s))}"))
    return Ok(value)


def _excerpt(s: str) -> str:
    """The start of a long text, for error messages."""
    return s if len(s) <= 80 else s[:77] + "..."


@method("String", "parse_float", 0)
def parse_float(ctx: NativeContext, s: str) -> Ok | Err:
    text = want_str(s, "String.parse_float").strip()
    if not _FLOAT_TEXT.fullmatch(text):
        return Err(error_value("ParseError", f"invalid float: {debug(_excerpt(s))}"))
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
