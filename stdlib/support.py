"""Shared helpers for the native modules: argument checks, hashing and ordering.

The compiler checks most argument types statically, but values typed `Any`
(parsed JSON, tool payloads) reach natives unchecked; these guards turn what
would be a Python TypeError (or, worse, a silently wrong answer such as
`"ab" * True`) into a Concerto TypeError fault with a readable message.
"""

from __future__ import annotations

from typing import Any, Callable

from concerto.stdlib.sorting import sort_in_steps
from concerto.vm.limits import UNCHECKED, check_collection, check_string
from concerto.vm.values import (
    CHUNK,
    ConcertoError,
    EnumValue,
    Err,
    Ok,
    Some,
    StructValue,
    batches,
    chunked,
    display,
    public_key,
    range_list,
    range_size,
    type_name,
    walked,
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
    if hasattr(value, "concerto_type") and hasattr(value, "__iter__") and hasattr(value, "__len__"):
        return list(value)
    raise type_fault(where, "an Array", value)


def seq_len(xs: list | tuple | range | str) -> int:
    """len() that also works for a Range of more than 2**63 - 1 Ints (Python's
    len() of such a range raises OverflowError)."""
    if type(xs) is range:
        return range_size(xs)
    return len(xs)


def materialize(xs: Any, where: str) -> Any:
    """`xs` before a native builds a list as long as it: a Range is lazy and can
    name 10**12 Ints, so its length is checked against the collection cap."""
    if type(xs) is range:
        n = seq_len(xs)
        if n > UNCHECKED:
            check_collection(n, where)
    return xs


def listed(xs: list | tuple | range) -> list:
    """A new list of the items; a Range (which list() would expand in one C
    call of a third of a second at the cap) in slices, polling between them."""
    return range_list(xs) if type(xs) is range else list(xs)


def extended(out: list, more: list | tuple | range) -> None:
    """`out += more`, in slices with a poll between them (and counted when
    short: flatten copies many short parts)."""
    if len(more) <= CHUNK:
        walked(len(more))
        out += more
        return
    for part in chunked(more):
        out += part


def grow_check(current: int, added: int, where: str) -> None:
    """Before adding `added` elements to a collection of `current`."""
    size = current + added
    if size > UNCHECKED:
        check_collection(size, where)


def string_check(size: int, where: str) -> None:
    if size > UNCHECKED:
        check_string(size, where)


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
        return (_LIST, _hashed(value))
    if t is tuple:
        return _hashed(value)
    if t is dict:
        walked(len(value))
        pairs: list = []
        for batch in batches(value.items(), len(value)):
            pairs += [(hash_key(public_key(k)), hash_key(v)) for k, v in batch]
        return (_MAP, frozenset(pairs))
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


def _hashed(values: list | tuple) -> tuple:
    if len(values) <= CHUNK:
        walked(len(values))
        return tuple([hash_key(v) for v in values])
    keys: list = []
    for part in chunked(values):
        keys += [hash_key(v) for v in part]
    return tuple(keys)


def _order_class(value: Any) -> Any:
    t = type(value)
    return float if t is int else t


_NUMBERS = frozenset({int, float})


def check_orderable(values: list, where: str) -> bool:
    """Concerto orders numbers with numbers, Strings with Strings and Bools with
    Bools; Python would also order `true` against `1` (as 1), so mixtures are
    refused here, before sorting.

    True when `<` is a total order on the values (numbers without NaN,
    Strings, Bools), so that sorting.sort_in_steps gives what sorted() does."""
    if len(values) <= CHUNK:
        kinds = set(map(type, values))
    else:
        kinds = set()
        for part in chunked(values):
            kinds.update(map(type, part))
    if len(kinds) > 1 and not kinds <= _NUMBERS:
        first = _order_class(values[0])
        for part in chunked(values):
            for v in part:
                if _order_class(v) is not first:
                    raise ConcertoError(f"{where}: values cannot be compared with each other "
                                        f"({type_name(values[0])} with {type_name(v)})", "TypeError")
    if kinds <= _NUMBERS:
        return float not in kinds or not _has_nan(values)
    return kinds == {str} or kinds == {bool}


def _has_nan(numbers: list) -> bool:
    for part in chunked(numbers):
        for x in part:
            if x != x:
                return True
    return False


def sorted_values(values: list | tuple | range, key: Callable[[Any], Any] | None = None, where: str = "sort") -> list:
    """A stable sort in Concerto's order, reporting unorderable values as a fault.

    With `key`, every key is computed first (the callback may fault on its
    own), then the values are ordered by their keys. Totally ordered values
    are sorted in steps that poll the interrupt flag (stdlib/sorting.py);
    others (NaN among numbers, Arrays, ...) by one sorted() call."""
    # Nothing here changes `items`; a copy would be one more long C call.
    items = values if type(values) is list else listed(values)
    if key is None:
        total = check_orderable(items, where)
        try:
            return sort_in_steps(items) if total else sorted(items)
        except TypeError:
            # Only the comparisons run inside sorted(): values with no order.
            raise ConcertoError(f"{where}: values cannot be compared with each other", "TypeError") from None
    keys: list = []
    for part in chunked(items):
        keys += [key(v) for v in part]
    total = check_orderable(keys, where)
    try:
        order = sort_in_steps(range(len(items)), keys.__getitem__) if total else \
            sorted(range(len(items)), key=keys.__getitem__)
    except TypeError:
        raise ConcertoError(f"{where}: keys cannot be compared with each other", "TypeError") from None
    if len(order) <= CHUNK:
        return [items[i] for i in order]
    out: list = []
    for part in chunked(order):
        out += map(items.__getitem__, part)
    return out


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
