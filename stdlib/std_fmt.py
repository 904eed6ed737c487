"""std::fmt — string formatting (spec 19)."""

from __future__ import annotations

import re
from typing import Any

from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.stdlib.support import want_count, want_list, want_str
from concerto.vm.values import ConcertoError, debug, display

# `{{` and `}}` are literal braces; `{}` takes the next argument, `{2}` a given
# one. Any other brace text (a JSON sample in a prompt, say) is left alone.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{(\d*)\}")


@REGISTRY.function("std::fmt::format", 2)
def format_(ctx: NativeContext, template: str, args: list) -> str:
    want_str(template, "fmt::format")
    want_list(args, "fmt::format")
    next_index = 0

    def fill(match: re.Match[str]) -> str:
        nonlocal next_index
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        digits = match.group(1)
        if digits:
            index = int(digits)
        else:
            index = next_index
            next_index += 1
        if index >= len(args):
            raise ConcertoError(
                f"fmt::format: placeholder {{{index if digits else ''}}} needs argument {index}, "
                f"but only {len(args)} given",
                "RuntimeError",
            )
        value = args[index]
        return value if type(value) is str else display(value)

    return _PLACEHOLDER.sub(fill, template)


def _fill_char(fill: Any, where: str) -> str:
    if want_str(fill, where) and len(fill) == 1:
        return fill
    raise ConcertoError(f"{where}: the fill must be a single character, got {debug(fill)}", "RuntimeError")


@REGISTRY.function("std::fmt::pad_left", 2, 3)
def pad_left(ctx: NativeContext, s: str, width: int, fill: str = " ") -> str:
    """Pad on the left to `width` characters; longer strings are returned as-is."""
    return want_str(s, "fmt::pad_left").rjust(want_count(width, "fmt::pad_left"), _fill_char(fill, "fmt::pad_left"))


@REGISTRY.function("std::fmt::pad_right", 2, 3)
def pad_right(ctx: NativeContext, s: str, width: int, fill: str = " ") -> str:
    return want_str(s, "fmt::pad_right").ljust(want_count(width, "fmt::pad_right"), _fill_char(fill, "fmt::pad_right"))


@REGISTRY.function("std::fmt::truncate", 2)
def truncate(ctx: NativeContext, s: str, max_len: int) -> str:
    """The first `max_len` characters, with no ellipsis added (spec: "Long tex")."""
    return want_str(s, "fmt::truncate")[: want_count(max_len, "fmt::truncate")]


@REGISTRY.function("std::fmt::indent", 2)
def indent(ctx: NativeContext, s: str, spaces: int) -> str:
    """Prefix every non-blank line with `spaces` spaces; blank lines stay empty
    so the result carries no trailing whitespace."""
    prefix = " " * want_count(spaces, "fmt::indent")
    lines = want_str(s, "fmt::indent").split("\n")
    return "\n".join(prefix + line if line.strip() else line for line in lines)
