"""Shared helpers for the native modules: argument checks, hashing and ordering.

The compiler checks most argument types statically, but values typed `Any`
(parsed JSON, tool payloads) reach natives unchecked; these guards turn what
would be a Python TypeError (or, worse, a silently wrong answer such as
`"ab" * True`) into a Concerto TypeError fault with a readable message.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from concerto.vm.values import (
    ConcertoError,
    EnumValue,
    Err,
    Ok,
    Some,
    StructValue,
    display,
    type_name,
)


def type_fault(where: str, expected: str, value: Any) -> ConcertoError:
    return ConcertoError(f"{where} expects {expected}, got {type_name(value)}", "TypeError")


def want_int(value: Any, where: str) -> int:
    # `type(...) is int` on purpose: Bool is an int subclass in Python but not in Concerto.
    if type(value) is not int:
        raise type_fault(where, "an Int", value)
    return value


def want_count(value: Any, where: str) -> int:
    """A non-negative Int (repeat counts, widths, byte counts)."""
    if type(value) is not int:
        raise type_fault(where, "an Int", value)
    if value < 0:
        raise ConcertoError(f"{where} expects a non-negative Int, got {value}", "RuntimeError")
    return value


def want_number(value: Any, where: str) -> int | float:
    t = type(value)
    if t is not int and t is not float:
        raise type_fault(where, "a number", value)
    return value


def want_str(value: Any, where: str) -> str:
    if type(value) is not str:
        raise type_fault(where, "a String", value)
    return value


def want_list(value: Any, where: str) -> list:
    if type(value) is not list:
        raise type_fault(where, "an Array", value)
    return value


def want_map(value: Any, where: str) -> dict:
    if type(value) is not dict:
        raise type_fault(where, "a Map", value)
    return value


def want_sequence(value: Any, where: str) -> list | tuple | range:
    """Anything a Concerto `for` loop walks in order (Array, Tuple, Range, Set, ...)."""
    t = type(value)
    if t is list or t is tuple or t is range:
        return value
    if hasattr(value, "concerto_type") and hasattr(value, "__iter__"):
        return list(value)
    raise type_fault(where, "an Array", value)


def clamp_index(index: Any, length: int, where: str) -> int:
    """Clamp a slice bound into [0, length]; slicing past either end is not a fault."""
    want_int(index, where)
    if index < 0:
        return 0
    return length if index > length else index


# Tags for `hash_key`; fresh objects, so they can never collide with user data.
_BOOL = object()
_LIST = object()
_MAP = object()
_STRUCT = object()
_ENUM = object()
_SOME = object()
_OK = object()
_ERR = object()


def hash_key(value: Any) -> Any:
    """A hashable stand-in with Concerto equality: `true` and `1` stay apart
    (Python would merge them) and Arrays/Maps/structs become hashable."""
    t = type(value)
    if t is str or t is int or t is float or value is None:
        return value
    if t is bool:
        return (_BOOL, value)
    if t is list:
        return (_LIST, tuple(hash_key(v) for v in value))
    if t is tuple:
        return tuple(hash_key(v) for v in value)
    if t is dict:
        return (_MAP, frozenset((hash_key(k), hash_key(v)) for k, v in value.items()))
    if t is StructValue:
        return (_STRUCT, value.type_name, tuple((k, hash_key(v)) for k, v in value.fields.items()))
    if t is EnumValue:
        data = value.data
        inner = tuple((k, hash_key(v)) for k, v in data.items()) if isinstance(data, dict) else hash_key(data)
        return (_ENUM, value.enum_name, value.variant, inner)
    if t is Some:
        return (_SOME, hash_key(value.value))
    if t is Ok:
        return (_OK, hash_key(value.value))
    if t is Err:
        return (_ERR, hash_key(value.value))
    try:
        hash(value)
    except TypeError:
        raise ConcertoError(f"a {type_name(value)} cannot be used as a set element", "TypeError") from None
    return value


def sorted_values(values: Iterable[Any], key: Callable[[Any], Any] | None = None, where: str = "sort") -> list:
    """Sort with Python's natural order, reporting unorderable values as a fault."""
    try:
        return sorted(values, key=key)
    except TypeError:
        raise ConcertoError(f"{where}: values cannot be compared with each other", "TypeError") from None


def compare_fault(where: str, a: Any, b: Any) -> ConcertoError:
    return ConcertoError(f"{where}: cannot compare {type_name(a)} with {type_name(b)}", "TypeError")


def error_message(error: Any) -> str:
    """The human text inside an error value, for `context` and unwrap faults.

    Built-in errors are structs with a `message` field; user enums usually wrap
    a single String (`InvalidInput("...")`); anything else is displayed."""
    t = type(error)
    if t is str:
        return error
    if t is StructValue and "message" in error.fields:
        return display(error.fields["message"])
    if t is EnumValue:
        data = error.data
        if isinstance(data, dict) and "message" in data:
            return display(data["message"])
        if isinstance(data, tuple) and len(data) == 1 and type(data[0]) is str:
            return f"{error.enum_name}::{error.variant}: {data[0]}"
    return display(error)
