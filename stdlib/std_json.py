"""std::json (spec 19), using the spec 20 value mapping.

parse() returns plain data — objects as Maps, arrays as Arrays, numbers as
Int or Float — with no Ok/Err or enum reinterpretation; parse_as() then shapes
that data into a declared type through ctx.convert.
"""

from __future__ import annotations

import json
import math
from typing import Any

from concerto.stdlib.registry import REGISTRY, NativeContext, error_value
from concerto.stdlib.support import want_count, want_str
from concerto.vm.values import INT_MAX, INT_MIN, ConcertoError, Err, Ok, to_json


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


def _decode(text: str) -> Any:
    """Parse JSON text; raises _Invalid or json.JSONDecodeError."""
    return json.loads(text, parse_constant=_reject_constant, parse_int=_checked_int)


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
        return [_finite(v) for v in data]
    if t is dict:
        return {k: _finite(v) for k, v in data.items()}
    return data


def _dumps(value: Any, indent: int | None) -> str:
    data = to_json(value)
    separators = (",", ":") if indent is None else (",", ": ")
    try:
        return json.dumps(data, separators=separators, indent=indent, ensure_ascii=False, allow_nan=False)
    except ValueError:
        # Only non-finite floats get here; the second pass is paid only then.
        return json.dumps(_finite(data), separators=separators, indent=indent, ensure_ascii=False)


@REGISTRY.function("std::json::stringify", 1)
def stringify(ctx: NativeContext, value: Any) -> str:
    """Compact JSON, e.g. {"a":1,"b":[true,null]}."""
    return _dumps(value, None)


@REGISTRY.function("std::json::stringify_pretty", 1, 2)
def stringify_pretty(ctx: NativeContext, value: Any, indent: int = 2) -> str:
    return _dumps(value, want_count(indent, "json::stringify_pretty"))


@REGISTRY.function("std::json::is_valid", 1)
def is_valid(ctx: NativeContext, text: str) -> bool:
    try:
        _decode(want_str(text, "json::is_valid"))
    except (ValueError, RecursionError):
        return False
    return True
