"""std::json (spec 19), using the spec 20 value mapping.

parse() returns plain data — objects as Maps, arrays as Arrays, numbers as
Int or Float — with no Ok/Err or enum reinterpretation; parse_as() then shapes
that data into a declared type through ctx.convert.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from concerto.stdlib import json_text
from concerto.stdlib.registry import REGISTRY, NativeContext, error_value
from concerto.stdlib.support import UNCHECKED, check_collection, seq_len, string_check, want_count, want_str
from concerto.vm.interrupts import poll
from concerto.vm.limits import collection_cap, string_cap, text_fault
from concerto.vm.values import (
    CHUNK,
    INT_MAX,
    INT_MIN,
    ConcertoError,
    EnumValue,
    Err,
    Ok,
    Some,
    StructValue,
    batches,
    chunked,
    public_key,
    to_json,
    walked,
)


class _Invalid(ValueError):
    """Input Python's json module accepts but JSON (and Concerto) does not."""


def _reject_constant(name: str) -> Any:
    # Python accepts NaN/Infinity/-Infinity by default; they are not JSON.
    raise _Invalid(f"{name} is not valid JSON")


def _checked_int(text: str) -> int:
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise _Invalid(f"integer {text} does not fit in a 64-bit Int")
    return value


# A surrogate escape (\ud800-\udfff) or a raw surrogate in the text.
_SURROGATE_HINT = re.compile(r"\\[uU][dD][89a-fA-F]|[\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


# json.loads is one C call; its callbacks for numbers and objects are where a
# long parse can stop. Texts up to _QUICK characters parse in a few ms without
# them. They poll every CHUNK values: a counter costs a third of a poll.
_QUICK = 1 << 16
_parsed = 0


def _polled_int(text: str) -> int:
    global _parsed
    _parsed += 1
    if _parsed > CHUNK:
        _parsed = 0
        poll()
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise _Invalid(f"integer {text} does not fit in a 64-bit Int")
    return value


def _polled_float(text: str) -> float:
    global _parsed
    _parsed += 1
    if _parsed > CHUNK:
        _parsed = 0
        poll()
    return float(text)


def _polled_object(pairs: dict) -> dict:
    global _parsed
    _parsed += 1
    if _parsed > CHUNK:
        _parsed = 0
        poll()
    return pairs


def _decode(text: str) -> Any:
    """Parse JSON text; raises _Invalid or json.JSONDecodeError."""
    if len(text) <= _QUICK:
        data = json.loads(text, parse_constant=_reject_constant, parse_int=_checked_int)
    else:
        data = json.loads(text, parse_constant=_reject_constant, parse_int=_polled_int, parse_float=_polled_float,
                          object_hook=_polled_object)
    if _has_surrogate_hint(text):
        _reject_lone_surrogates(data)
    # Each element costs at least one character and a comma, so only a text
    # this long can hold a container over the cap; the parsed data is
    # proportional to the text, which the string cap already bounds.
    if len(text) > 2 * collection_cap() and text.count(",") >= collection_cap():
        _check_sizes(data)
    return data


# Characters one regex search covers: the pattern scans ~100 MB a second.
_SEARCH_WINDOW = 1 << 20


def _has_surrogate_hint(text: str) -> bool:
    """_SURROGATE_HINT.search(text), a window at a time; windows overlap by
    the pattern's longest match less one, so no match is cut in two."""
    if len(text) <= _SEARCH_WINDOW:
        return _SURROGATE_HINT.search(text) is not None
    for lo in range(0, len(text), _SEARCH_WINDOW):
        poll()
        if _SURROGATE_HINT.search(text, lo, lo + _SEARCH_WINDOW + 3):
            return True
    return False


def _reject_lone_surrogates(data: Any) -> None:
    """A paired escape ("\ud83d\ude00") decodes to one character; a lone one
    would leave a String that is not Unicode text, which no output can encode
    (serde_json refuses it too)."""
    pending = [data]
    visited = 0
    while pending:
        visited += 1
        if not visited % CHUNK:
            poll()
        item = pending.pop()
        t = type(item)
        if t is str:
            found = _SURROGATE.search(item)
            if found:
                code = ord(found.group())
                raise _Invalid(f"lone surrogate \\u{code:04x} in a string: JSON text must be valid Unicode")
        elif t is list:
            pending.extend(item)
        elif t is dict:
            pending.extend(item)
            pending.extend(item.values())


def _check_sizes(data: Any) -> None:
    pending = [data]
    visited = 0
    while pending:
        visited += 1
        if not visited % CHUNK:
            poll()
        item = pending.pop()
        t = type(item)
        if t is list or t is dict:
            if len(item) > UNCHECKED:
                check_collection(len(item), "json::parse")
            pending.extend(item.values() if t is dict else item)


def _json_error(exc: Exception) -> Err:
    if isinstance(exc, json.JSONDecodeError):
        message = f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    else:
        message = str(exc)
    return Err(error_value("JsonError", message))


@REGISTRY.function("std::json::parse", 1)
def parse(ctx: NativeContext, text: str) -> Ok | Err:
    try:
        return Ok(_decode(want_str(text, "json::parse")))
    except (ValueError, RecursionError) as exc:
        return _json_error(exc)


@REGISTRY.function("std::json::parse_as", 2)
def parse_as(ctx: NativeContext, text: str, type_name: str) -> Ok | Err:
    """`json::parse_as<T>(s)`; the compiler appends T's name as a String argument.
    Data that parses but does not fit T is a JsonError too, not a fault."""
    parsed = parse(ctx, text)
    if type(parsed) is Err:
        return parsed
    try:
        return Ok(ctx.convert(parsed.value, want_str(type_name, "json::parse_as")))
    except ConcertoError as exc:
        if exc.kind != "TypeError":
            raise
        return Err(error_value("JsonError", exc.message))


def _finite(data: Any) -> Any:
    """Replace NaN and infinities by null, as JavaScript's JSON.stringify does."""
    t = type(data)
    if t is float:
        return data if math.isfinite(data) else None
    if t is list:
        walked(len(data))
        out: list = []
        for part in chunked(data):
            out += [_finite(v) for v in part]
        return out
    if t is dict:
        walked(len(data))
        cleaned: dict = {}
        for batch in batches(data.items(), len(data)):
            cleaned.update({k: _finite(v) for k, v in batch})
        return cleaned
    return data


def _dumps(value: Any, indent: int | None) -> str:
    estimate = _refuse_oversized(value, indent or 0)
    data = to_json(value)
    # The estimate counts at least a character a node: below json_text.STEP
    # one json.dumps call is short, and cheaper than looking for pieces.
    dumps = _dumps_whole if estimate <= json_text.STEP else json_text.dumps
    try:
        text = dumps(data, indent, allow_nan=False)
    except ValueError:
        # Only non-finite floats get here; the second pass is paid only then.
        text = dumps(_finite(data), indent, allow_nan=True)
    string_check(len(text), "json::stringify")
    return text


def _dumps_whole(data: Any, indent: int | None, allow_nan: bool) -> str:
    separators = (",", ":") if indent is None else (",", ": ")
    return json.dumps(data, separators=separators, indent=indent, ensure_ascii=False, allow_nan=allow_nan)


def _refuse_oversized(value: Any, indent: int) -> int:
    """Raise ResourceError before converting a value whose JSON text would
    certainly pass max_string_length; otherwise return that estimate.

    The estimate is a lower bound (every scalar counts one character, a
    String its length) computed once per distinct container, so an Array
    holding one big Array a million times is refused in a million steps,
    not after building its text."""
    cap = 0  # read once a text gets long enough to matter
    memo: dict[tuple[int, int], int] = {}

    def over(total: int) -> bool:
        nonlocal cap
        if total <= UNCHECKED:
            return False
        if not cap:
            cap = string_cap()
        return total > cap

    def size(v: Any, depth: int) -> int:
        t = type(v)
        if t is str:
            return len(v) + 2
        if t is int or t is float or v is None or t is bool:
            return 1
        if t is list or t is tuple or t is dict or t is range or hasattr(v, "concerto_parts"):
            key = (id(v), depth)
            known = memo.get(key)
            if known is not None:
                return known
            if t is range:
                n = seq_len(v)
                total = 2 + 2 * n + n * indent * (depth + 1)
            else:
                items = v.items() if t is dict else v.concerto_parts()[1] if t not in (list, tuple) else v
                walked(len(items))
                total = 2
                for batch in batches(items, len(items)):
                    for item in batch:
                        if t is dict:
                            k, item = item
                            total += len(str(public_key(k))) + 3
                        total += size(item, depth + 1) + 1 + indent * (depth + 1)
                        if over(total):
                            break
                    if over(total):
                        break
            memo[key] = total
            if over(total):
                raise text_fault("json::stringify: the JSON text", cap)
            return total
        if t is StructValue:
            return size(v.fields, depth)
        if t is Some or t is Ok or t is Err:
            return size(v.value, depth)
        if t is EnumValue:
            return size(v.data, depth + 1)
        return 1

    return size(value, 0)


@REGISTRY.function("std::json::stringify", 1)
def stringify(ctx: NativeContext, value: Any) -> str:
    """Compact JSON, e.g. {"a":1,"b":[true,null]}."""
    return _dumps(value, None)


@REGISTRY.function("std::json::stringify_pretty", 1, 2)
def stringify_pretty(ctx: NativeContext, value: Any, indent: int = 2) -> str:
    # json.dumps builds the indent text before anything else.
    string_check(want_count(indent, "json::stringify_pretty"), "json::stringify_pretty")
    return _dumps(value, indent)


@REGISTRY.function("std::json::is_valid", 1)
def is_valid(ctx: NativeContext, text: str) -> bool:
    try:
        _decode(want_str(text, "json::is_valid"))
    except (ValueError, RecursionError):
        return False
    return True
