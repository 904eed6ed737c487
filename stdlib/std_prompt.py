"""std::prompt — prompt templates and token estimates (spec 19).

template() fills `{{name}}` placeholders (spaces inside the braces allowed)
and `${name}` placeholders from a Map. In an ordinary Concerto string literal
`${name}` is interpolated by the compiler before template() ever runs, so the
`{{name}}` form is the one to use there; `${name}` is honoured for text that
reaches template() literally (raw strings, text read from files, strings built
at run time). Single braces are left alone because prompts routinely contain
JSON examples. A placeholder whose name is not in the map is kept verbatim,
so a missing variable is visible in the output rather than silently blank.

from_file is not provided here (it belongs with std::fs).
"""

from __future__ import annotations

import re
from typing import Any

from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.stdlib.support import string_check, want_map, want_str
from concerto.vm.interrupts import poll
from concerto.vm.values import CHUNK, display

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}|\$\{\s*([^{}\s]+)\s*\}")


@REGISTRY.function("std::prompt::template", 2)
def template(ctx: NativeContext, text: str, variables: dict) -> str:
    want_str(text, "prompt::template")
    want_map(variables, "prompt::template")
    shown: dict[str, str] = {}
    pieces: list[str] = []
    size = 0
    at = 0
    for match in _PLACEHOLDER.finditer(text):
        if not len(pieces) % CHUNK:  # two pieces a placeholder
            poll()
        name = match.group(1) or match.group(2)
        if name in variables:
            filled = shown.get(name)
            if filled is None:
                value = variables[name]
                filled = shown[name] = value if type(value) is str else display(value)
        else:
            filled = match.group(0)
        literal = text[at:match.start()]
        pieces.append(literal)
        pieces.append(filled)
        size += len(literal) + len(filled)
        at = match.end()
    pieces.append(text[at:])
    string_check(size + len(text) - at, "prompt::template")
    return "".join(pieces)


@REGISTRY.function("std::prompt::count_tokens", 1, 2)
def count_tokens(ctx: NativeContext, text: str, model: Any = None) -> int:
    """A deterministic estimate, not a real tokenizer: one token per four
    characters, rounded up (so any non-empty text counts at least 1). `model`
    is accepted for the spec's signature and does not change the estimate."""
    if model is not None:
        want_str(model, "prompt::count_tokens")
    return -(-len(want_str(text, "prompt::count_tokens")) // 4)
