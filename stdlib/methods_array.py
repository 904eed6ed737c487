"""Built-in methods of Array.

Methods that change the array in place (push, pop, insert, remove, extend,
clear, sort, reverse) are registered with mutates=True; every other method
leaves its receiver alone and returns a new value. The read-only ones accept
any ordered sequence (list, tuple, range) so methods_number can reuse them
for Range.
"""

from __future__ import annotations

from typing import Any

from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.stdlib.support import (
    clamp_index,
    hash_key,
    sorted_values,
    type_fault,
    want_count,
    want_int,
    want_list,
    want_sequence,
    want_str,
)
from concerto.vm.values import NONE, ConcertoError, Some, check_int, display, values_equal

Seq = list | tuple | range


def _seq(xs: Any, where: str) -> Seq:
    t = type(xs)
    if t is list or t is range or t is tuple:
        return xs
    raise type_fault(where, "an Array", xs)


def _index_fault(i: int, length: int) -> ConcertoError:
    return ConcertoError(f"Array index {i} out of range for length {length}", "IndexError")


def _find_index(xs: Seq, value: Any) -> int:
    if type(xs) is range:
        return xs.index(value) if type(value) is int and value in xs else -1
    if type(value) is str:
        # Fast path: a String never equals a non-String, so `==` is exact here.
        try:
            return xs.index(value)
        except ValueError:
            return -1
    for i, item in enumerate(xs):
        if values_equal(item, value):
            return i
    return -1


# --- size and access -------------------------------------------------------


@REGISTRY.method("Array", "len", 0)
def len_(ctx: NativeContext, xs: Seq) -> int:
    return len(_seq(xs, "len"))


@REGISTRY.method("Array", "is_empty", 0)
def is_empty(ctx: NativeContext, xs: Seq) -> bool:
    return len(_seq(xs, "is_empty")) == 0


@REGISTRY.method("Array", "get", 1)
def get(ctx: NativeContext, xs: Seq, i: int) -> Any:
    _seq(xs, "get")
    if 0 <= want_int(i, "Array.get") < len(xs):
        return Some(xs[i])
    return NONE


@REGISTRY.method("Array", "first", 0)
def first(ctx: NativeContext, xs: Seq) -> Any:
    return Some(xs[0]) if len(_seq(xs, "first")) else NONE


@REGISTRY.method("Array", "last", 0)
def last(ctx: NativeContext, xs: Seq) -> Any:
    return Some(xs[-1]) if len(_seq(xs, "last")) else NONE


@REGISTRY.method("Array", "contains", 1)
def contains(ctx: NativeContext, xs: Seq, value: Any) -> bool:
    return _find_index(_seq(xs, "contains"), value) >= 0


@REGISTRY.method("Array", "index_of", 1)
def index_of(ctx: NativeContext, xs: Seq, value: Any) -> Any:
    i = _find_index(_seq(xs, "index_of"), value)
    return NONE if i < 0 else Some(i)


# --- in-place changes ------------------------------------------------------


@REGISTRY.method("Array", "push", 1, mutates=True)
def push(ctx: NativeContext, xs: list, value: Any) -> None:
    want_list(xs, "Array.push").append(value)


@REGISTRY.method("Array", "pop", 0, mutates=True)
def pop(ctx: NativeContext, xs: list) -> Any:
    return Some(xs.pop()) if want_list(xs, "Array.pop") else NONE


@REGISTRY.method("Array", "insert", 2, mutates=True)
def insert(ctx: NativeContext, xs: list, i: int, value: Any) -> None:
    want_list(xs, "Array.insert")
    # Inserting at len (the end) is allowed, anything past it is a fault.
    if not 0 <= want_int(i, "Array.insert") <= len(xs):
        raise _index_fault(i, len(xs))
    xs.insert(i, value)


@REGISTRY.method("Array", "remove", 1, mutates=True)
def remove(ctx: NativeContext, xs: list, i: int) -> Any:
    """Remove by index and return the removed element (a fault if out of range)."""
    want_list(xs, "Array.remove")
    if not 0 <= want_int(i, "Array.remove") < len(xs):
        raise _index_fault(i, len(xs))
    return xs.pop(i)


@REGISTRY.method("Array", "extend", 1, mutates=True)
def extend(ctx: NativeContext, xs: list, other: Any) -> None:
    want_list(xs, "Array.extend").extend(want_sequence(other, "Array.extend"))


@REGISTRY.method("Array", "clear", 0, mutates=True)
def clear(ctx: NativeContext, xs: list) -> None:
    want_list(xs, "Array.clear").clear()


@REGISTRY.method("Array", "sort", 0, mutates=True)
def sort(ctx: NativeContext, xs: list) -> None:
    want_list(xs, "Array.sort")[:] = sorted_values(xs, where="Array.sort")


@REGISTRY.method("Array", "reverse", 0, mutates=True)
def reverse(ctx: NativeContext, xs: list) -> None:
    want_list(xs, "Array.reverse").reverse()


# --- higher-order ----------------------------------------------------------


@REGISTRY.method("Array", "map", 1)
def map_(ctx: NativeContext, xs: Seq, f: Any) -> list:
    call = ctx.call
    return [call(f, x) for x in _seq(xs, "map")]


@REGISTRY.method("Array", "filter", 1)
def filter_(ctx: NativeContext, xs: Seq, pred: Any) -> list:
    call = ctx.call
    return [x for x in _seq(xs, "filter") if call(pred, x)]


@REGISTRY.method("Array", "reduce", 2)
def reduce(ctx: NativeContext, xs: Seq, init: Any, f: Any) -> Any:
    """`reduce(init, |acc, x| ...)`, the spec's argument order (init first)."""
    acc = init
    for x in _seq(xs, "reduce"):
        acc = ctx.call(f, acc, x)
    return acc


REGISTRY.method("Array", "fold", 2)(reduce)


@REGISTRY.method("Array", "for_each", 1)
def for_each(ctx: NativeContext, xs: Seq, f: Any) -> None:
    for x in _seq(xs, "for_each"):
        ctx.call(f, x)


@REGISTRY.method("Array", "find", 1)
def find(ctx: NativeContext, xs: Seq, pred: Any) -> Any:
    for x in _seq(xs, "find"):
        if ctx.call(pred, x):
            return Some(x)
    return NONE


@REGISTRY.method("Array", "find_index", 1)
def find_index(ctx: NativeContext, xs: Seq, pred: Any) -> Any:
    for i, x in enumerate(_seq(xs, "find_index")):
        if ctx.call(pred, x):
            return Some(i)
    return NONE


@REGISTRY.method("Array", "any", 1)
def any_(ctx: NativeContext, xs: Seq, pred: Any) -> bool:
    return any(ctx.call(pred, x) for x in _seq(xs, "any"))


@REGISTRY.method("Array", "all", 1)
def all_(ctx: NativeContext, xs: Seq, pred: Any) -> bool:
    return all(ctx.call(pred, x) for x in _seq(xs, "all"))


@REGISTRY.method("Array", "count", 0, 1)
def count(ctx: NativeContext, xs: Seq, pred: Any = None) -> int:
    """`count()` is the length; `count(pred)` counts elements matching pred."""
    _seq(xs, "count")
    if pred is None:
        return len(xs)
    return sum(1 for x in xs if ctx.call(pred, x))


@REGISTRY.method("Array", "flat_map", 1)
def flat_map(ctx: NativeContext, xs: Seq, f: Any) -> list:
    out: list = []
    for x in _seq(xs, "flat_map"):
        out.extend(want_sequence(ctx.call(f, x), "flat_map callback result"))
    return out


@REGISTRY.method("Array", "sort_by", 1)
def sort_by(ctx: NativeContext, xs: Seq, key: Any) -> list:
    """A new array ordered by `key(x)`; stable, and the receiver is untouched."""
    return sorted_values(_seq(xs, "sort_by"), key=lambda x: ctx.call(key, x), where="Array.sort_by")


@REGISTRY.method("Array", "partition", 1)
def partition(ctx: NativeContext, xs: Seq, pred: Any) -> tuple[list, list]:
    yes: list = []
    no: list = []
    for x in _seq(xs, "partition"):
        (yes if ctx.call(pred, x) else no).append(x)
    return (yes, no)


# --- new arrays from old ---------------------------------------------------


@REGISTRY.method("Array", "enumerate", 0)
def enumerate_(ctx: NativeContext, xs: Seq) -> list[tuple[int, Any]]:
    return list(enumerate(_seq(xs, "enumerate")))


@REGISTRY.method("Array", "join", 0, 1)
def join(ctx: NativeContext, xs: Seq, sep: str = "") -> str:
    # Elements are shown as interpolation shows them, so [1, 2].join("-") is "1-2".
    return want_str(sep, "Array.join").join(
        x if type(x) is str else display(x) for x in _seq(xs, "join")
    )


@REGISTRY.method("Array", "slice", 1, 2)
def slice_(ctx: NativeContext, xs: Seq, start: int, end: Any = None) -> list:
    """Bounds are clamped like String.substring: slicing never faults."""
    n = len(_seq(xs, "slice"))
    lo = clamp_index(start, n, "Array.slice")
    hi = n if end is None else clamp_index(end, n, "Array.slice")
    return list(xs[lo:hi]) if lo < hi else []


@REGISTRY.method("Array", "concat", 1)
def concat(ctx: NativeContext, xs: Seq, other: Any) -> list:
    return [*_seq(xs, "concat"), *want_sequence(other, "Array.concat")]


@REGISTRY.method("Array", "flatten", 0)
def flatten(ctx: NativeContext, xs: Seq) -> list:
    out: list = []
    for x in _seq(xs, "flatten"):
        out.extend(want_sequence(x, "Array.flatten element"))
    return out


@REGISTRY.method("Array", "zip", 1)
def zip_(ctx: NativeContext, xs: Seq, other: Any) -> list[tuple]:
    return list(zip(_seq(xs, "zip"), want_sequence(other, "Array.zip")))


@REGISTRY.method("Array", "take", 1)
def take(ctx: NativeContext, xs: Seq, n: int) -> list:
    return list(_seq(xs, "take")[: want_count(n, "Array.take")])


@REGISTRY.method("Array", "skip", 1)
def skip(ctx: NativeContext, xs: Seq, n: int) -> list:
    return list(_seq(xs, "skip")[want_count(n, "Array.skip") :])


@REGISTRY.method("Array", "chunks", 1)
def chunks(ctx: NativeContext, xs: Seq, size: int) -> list[list]:
    _seq(xs, "chunks")
    if want_int(size, "Array.chunks") <= 0:
        raise ConcertoError(f"Array.chunks expects a positive size, got {size}", "RuntimeError")
    return [list(xs[i : i + size]) for i in range(0, len(xs), size)]


@REGISTRY.method("Array", "sorted", 0)
def sorted_(ctx: NativeContext, xs: Seq) -> list:
    return sorted_values(_seq(xs, "sorted"), where="Array.sorted")


@REGISTRY.method("Array", "reversed", 0)
def reversed_(ctx: NativeContext, xs: Seq) -> list:
    return list(reversed(_seq(xs, "reversed")))


@REGISTRY.method("Array", "unique", 0)
def unique(ctx: NativeContext, xs: Seq) -> list:
    """First occurrence of each value, in order (`true` and `1` stay distinct)."""
    seen: set = set()
    out: list = []
    for x in _seq(xs, "unique"):
        k = hash_key(x)
        if k not in seen:
            seen.add(k)
            out.append(x)
    return out


# --- aggregates ------------------------------------------------------------


@REGISTRY.method("Array", "sum", 0)
def sum_(ctx: NativeContext, xs: Seq) -> int | float:
    _seq(xs, "sum")
    for x in xs:
        t = type(x)
        if t is not int and t is not float:
            raise type_fault("Array.sum", "numbers", x)
    total = sum(xs)
    return check_int(total) if type(total) is int else total


def _extreme(xs: Seq, pick: Any, where: str) -> Any:
    if not len(_seq(xs, where)):
        return NONE
    try:
        return Some(pick(xs))
    except TypeError:
        raise ConcertoError(f"Array.{where}: values cannot be compared with each other", "TypeError") from None


@REGISTRY.method("Array", "min", 0)
def min_(ctx: NativeContext, xs: Seq) -> Any:
    return _extreme(xs, min, "min")


@REGISTRY.method("Array", "max", 0)
def max_(ctx: NativeContext, xs: Seq) -> Any:
    return _extreme(xs, max, "max")


@REGISTRY.method("Array", "to_string", 0)
def to_string(ctx: NativeContext, xs: Seq) -> str:
    return display(_seq(xs, "to_string"))
