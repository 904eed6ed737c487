"""JSON in, with bounds: what reaches the verifier is a JSON object whose
free-form parts (JSON Schemas, type descriptors, decorator arguments) are
nested no deeper than the code that walks them can follow.

msgspec decodes nested JSON recursively and stops with a RecursionError at
the interpreter's recursion limit. At the default limit that is a clean stop,
but a process that raised the limit (the VM does, for compiled Concerto
recursion) would let a file of 100,000 nested `[` overflow the C stack
instead. So when the limit is high, the nesting is measured first, without
recursion and at C speed.
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec

from concerto.ir.errors import IRLoadError

# Deepest JSON document accepted when the decoder cannot be trusted to stop
# by itself (about what msgspec manages at the default recursion limit).
MAX_DOCUMENT_DEPTH = 900
# Recursion limits up to this leave msgspec's own RecursionError as the guard.
SAFE_RECURSION_LIMIT = 4000
# Free-form values (schemas, type descriptors, ...) are walked recursively by
# the VM; deeper than this is refused.
MAX_VALUE_DEPTH = 128

_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def decode_json(data: bytes | str) -> Any:
    """Decode IR JSON into plain Python values; IRLoadError on anything else."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if sys.getrecursionlimit() > SAFE_RECURSION_LIMIT and _too_deep(data, MAX_DOCUMENT_DEPTH):
        raise IRLoadError(f"JSON is nested more than {MAX_DOCUMENT_DEPTH} levels deep")
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as e:
        raise IRLoadError(f"not valid JSON ({e})") from None
    except UnicodeDecodeError as e:
        raise IRLoadError(f"not valid UTF-8 (byte {e.start}: {e.reason})") from None
    except RecursionError:
        raise IRLoadError("JSON is nested too deeply") from None


def _too_deep(data: bytes, limit: int) -> bool:
    """Whether the brackets outside strings nest deeper than `limit`. Each
    pass removes the innermost `[]` pairs, so `limit` passes empty any
    document that is nested no deeper; every step is one C-level bytes op."""
    # Drop escaped backslashes and quotes, then the strings themselves (the
    # odd pieces between quotes), then everything but brackets.
    text = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(text.split(b'"')[::2]).translate(None, _NOT_BRACKETS)
    brackets = brackets.replace(b"{", b"[").replace(b"}", b"]")
    for _ in range(limit):
        if not brackets:
            return False
        inner = brackets.replace(b"[]", b"")
        if len(inner) == len(brackets):
            return False  # unbalanced: the decoder reports where
        brackets = inner
    return bool(brackets)


def check_value_depth(raw: dict[str, Any]) -> None:
    """Refuse free-form values nested deeper than MAX_VALUE_DEPTH, naming the
    section. Instruction lists, constants and the source map are skipped:
    the verifier admits only scalars and name lists there, and nothing else
    reads them."""
    for section, value in raw.items():
        if section in ("constants", "source_map"):
            continue
        if section == "functions" and isinstance(value, list):
            for i, fn in enumerate(value):
                if isinstance(fn, dict):
                    rest = {k: v for k, v in fn.items() if k != "instructions"}
                    _walk(rest, f"functions[{i}]")
        else:
            _walk(value, section)


def _walk(value: Any, where: str) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_VALUE_DEPTH:
            raise IRLoadError(f"a value is nested more than {MAX_VALUE_DEPTH} levels deep", where)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
