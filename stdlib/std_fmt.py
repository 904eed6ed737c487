"""std::fmt — string formatting (spec 19)."""

from __future__ import annotations

import re
from typing import Any

from concerto.stdlib.methods_string import split_on
from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.stdlib.support import string_check, want_count, want_list, want_str
from concerto.vm.interrupts import poll
from concerto.vm.values import CHUNK, ConcertoError, chunked, debug, display

# `{{` and `}}` are literal braces; `{}` takes the next argument, `{2}` a given
# one. Any other brace text (a JSON sample in a prompt, say) is left alone.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{(\d*)\}")


@REGISTRY.function("std::fmt::format", 2)
def format_(ctx: NativeContext, template: str, args: list) -> str:
    want_str(template, "fmt::format")
    want_list(args, "fmt::format")
    shown: dict[int, str] = {}  # each argument's text, made once
    pieces: list[str] = []
    size = 0
    next_index = 0
    at = 0
    for match in _PLACEHOLDER.finditer(template):
        if not len(pieces) % CHUNK:  # two pieces a placeholder
            poll()
        token = match.group(0)
        if token == "{{":
            text = "{"
        elif token == "}}":
            text = "}"
        else:
            digits = match.group(1)
            if digits:
                # More digits than any Array can index: out of range, and int()
                # of an absurdly long text would fail in Python itself.
                index = int(digits) if len(digits) <= 18 else len(args)
            else:
                index = next_index
                next_index += 1
            if index >= len(args):
                raise ConcertoError(
                    f"fmt::format: placeholder {{{digits if digits else ''}}} needs argument {index}, "
                    f"but only {len(args)} given",
                    "RuntimeError",
                )
            text = shown.get(index)
            if text is None:
                value = args[index]
                text = shown[index] = value if type(value) is str else display(value)
        literal = template[at:match.start()]
        pieces.append(literal)
        pieces.append(text)
        size += len(literal) + len(text)
        at = match.end()
    pieces.append(template[at:])
    string_check(size + len(template) - at, "fmt::format")
    return "".join(pieces)


def _fill_char(fill: Any, where: str) -> str:
    if want_str(fill, where) and len(fill) == 1:
        return fill
    raise ConcertoError(f"{where}: the fill must be a single character, got {debug(fill)}", "RuntimeError")


@REGISTRY.function("std::fmt::pad_left", 2, 3)
def pad_left(ctx: NativeContext, s: str, width: int, fill: str = " ") -> str:
    """Pad on the left to `width` characters; longer strings are returned as-is."""
    want_str(s, "fmt::pad_left")
    string_check(want_count(width, "fmt::pad_left"), "fmt::pad_left")
    return s.rjust(width, _fill_char(fill, "fmt::pad_left"))


@REGISTRY.function("std::fmt::pad_right", 2, 3)
def pad_right(ctx: NativeContext, s: str, width: int, fill: str = " ") -> str:
    want_str(s, "fmt::pad_right")
    string_check(want_count(width, "fmt::pad_right"), "fmt::pad_right")
    return s.ljust(width, _fill_char(fill, "fmt::pad_right"))


@REGISTRY.function("std::fmt::truncate", 2)
def truncate(ctx: NativeContext, s: str, max_len: int) -> str:
    """The first `max_len` characters, with no ellipsis added (spec: "Long tex")."""
    return want_str(s, "fmt::truncate")[: want_count(max_len, "fmt::truncate")]


@REGISTRY.function("std::fmt::indent", 2)
def indent(ctx: NativeContext, s: str, spaces: int) -> str:
    """Prefix every non-blank line with `spaces` spaces; blank lines stay empty
    so the result carries no trailing whitespace."""
    want_count(spaces, "fmt::indent")
    lines = split_on(want_str(s, "fmt::indent"), "\n")
    filled = sum(sum(1 for line in part if line.strip()) for part in chunked(lines))
    string_check(len(s) + filled * spaces, "fmt::indent")
    prefix = " " * spaces
    return "\n".join(["\n".join([prefix + line if line.strip() else line for line in part])
                      for part in chunked(lines)])
