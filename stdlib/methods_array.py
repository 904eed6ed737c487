"""Built-in methods of Array.

Methods that change the array in place (push, pop, insert, remove, extend,
clear, sort, reverse) are registered with mutates=True; every other method
leaves its receiver alone and returns a new value. The read-only ones accept
any ordered sequence (list, tuple, range) so methods_number can reuse them
for Range.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.stdlib.support import (
    UNCHECKED,
    check_collection,
    check_orderable,
    clamp_index,
    extended,
    grow_check,
    hash_key,
    listed,
    materialize,
    seq_len,
    sorted_values,
    string_check,
    type_fault,
    want_count,
    want_int,
    want_list,
    want_sequence,
    want_str,
)
from concerto.vm.interrupts import poll
from concerto.vm.limits import collection_cap, collection_fault, string_cap
from concerto.vm.values import CHUNK, INT_MAX, NONE, ConcertoError, Some, check_int, chunked, display, values_equal

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
        # A Range holds Ints only; a Float equal to one of them is found too.
        if type(value) is float and value.is_integer():
            value = int(value)
        return xs.index(value) if type(value) is int and value in xs else -1
    if type(value) is str:
        # Fast path: a String never equals a non-String, so `==` is exact here.
        for span in chunked(range(len(xs))):
            try:
                return xs.index(value, span.start, span.stop)
            except ValueError:
                pass
        return -1
    at = 0
    for part in chunked(xs):
        for i, item in enumerate(part, at):
            if values_equal(item, value):
                return i
        at += len(part)
    return -1


# --- size and access -------------------------------------------------------


@REGISTRY.method("Array", "len", 0)
def len_(ctx: NativeContext, xs: Seq) -> int:
    n = seq_len(_seq(xs, "len"))
    if n > INT_MAX:
        raise ConcertoError(f"len: the Range has {n} elements, more than an Int can count", "OverflowError")
    return n


@REGISTRY.method("Array", "is_empty", 0)
def is_empty(ctx: NativeContext, xs: Seq) -> bool:
    return seq_len(_seq(xs, "is_empty")) == 0


@REGISTRY.method("Array", "get", 1)
def get(ctx: NativeContext, xs: Seq, i: int) -> Any:
    _seq(xs, "get")
    if 0 <= want_int(i, "Array.get") < seq_len(xs):
        return Some(xs[i])
    return NONE


@REGISTRY.method("Array", "first", 0)
def first(ctx: NativeContext, xs: Seq) -> Any:
    return Some(xs[0]) if seq_len(_seq(xs, "first")) else NONE


@REGISTRY.method("Array", "last", 0)
def last(ctx: NativeContext, xs: Seq) -> Any:
    return Some(xs[-1]) if seq_len(_seq(xs, "last")) else NONE


@REGISTRY.method("Array", "contains", 1)
def contains(ctx: NativeContext, xs: Seq, value: Any) -> bool:
    return _find_index(_seq(xs, "contains"), value) >= 0


@REGISTRY.method("Array", "index_of", 1)
def index_of(ctx: NativeContext, xs: Seq, value: Any) -> Any:
    i = _find_index(_seq(xs, "index_of"), value)
    return NONE if i < 0 else Some(check_int(i))


# --- in-place changes ------------------------------------------------------


@REGISTRY.method("Array", "push", 1, mutates=True)
def push(ctx: NativeContext, xs: list, value: Any) -> None:
    # The commonest growth point: the type test and the cap are read inline.
    if type(xs) is not list:
        want_list(xs, "Array.push")
    if len(xs) >= UNCHECKED and len(xs) >= collection_cap():
        raise collection_fault(len(xs) + 1, "Array.push")
    xs.append(value)


@REGISTRY.method("Array", "pop", 0, mutates=True)
def pop(ctx: NativeContext, xs: list) -> Any:
    return Some(xs.pop()) if want_list(xs, "Array.pop") else NONE


@REGISTRY.method("Array", "insert", 2, mutates=True)
def insert(ctx: NativeContext, xs: list, i: int, value: Any) -> None:
    want_list(xs, "Array.insert")
    # Inserting at len (the end) is allowed, anything past it is a fault.
    if not 0 <= want_int(i, "Array.insert") <= len(xs):
        raise _index_fault(i, len(xs))
    if len(xs) >= UNCHECKED:
        check_collection(len(xs) + 1, "Array.insert")
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
    more = want_sequence(other, "Array.extend")
    grow_check(len(want_list(xs, "Array.extend")), seq_len(more), "Array.extend")
    extended(xs, more)


@REGISTRY.method("Array", "clear", 0, mutates=True)
def clear(ctx: NativeContext, xs: list) -> None:
    want_list(xs, "Array.clear").clear()


@REGISTRY.method("Array", "sort", 0, mutates=True)
def sort(ctx: NativeContext, xs: list) -> None:
    want_list(xs, "Array.sort")
    xs[:] = sorted_values(xs, where="Array.sort")


@REGISTRY.method("Array", "reverse", 0, mutates=True)
def reverse(ctx: NativeContext, xs: list) -> None:
    want_list(xs, "Array.reverse").reverse()


# --- higher-order ----------------------------------------------------------


@REGISTRY.method("Array", "map", 1)
def map_(ctx: NativeContext, xs: Seq, f: Any) -> list:
    call = ctx.call
    out: list = []
    for part in chunked(materialize(_seq(xs, "map"), "Array.map")):
        out += [call(f, x) for x in part]
    return out


_BOOL_ONLY = {bool}


def _truthy(value: Any, where: str) -> bool:
    """A predicate's answer: Bool only (Python would accept 1, "x", [..])."""
    if value is True:
        return True
    if value is False:
        return False
    raise type_fault(f"{where} callback result", "a Bool", value)


@REGISTRY.method("Array", "filter", 1)
def filter_(ctx: NativeContext, xs: Seq, pred: Any) -> list:
    call = ctx.call
    if type(_seq(xs, "filter")) is range and seq_len(xs) > UNCHECKED:
        # Only a Range can be longer than the cap; its output is checked as it grows.
        out: list = []
        for part in chunked(xs):
            for x in part:
                if _truthy(call(pred, x), "Array.filter"):
                    if len(out) >= UNCHECKED:
                        check_collection(len(out) + 1, "Array.filter")
                    out.append(x)
        return out
    verdicts: list = []
    for part in chunked(xs):
        verdicts += [call(pred, x) for x in part]
    for part in chunked(verdicts):
        if not set(map(type, part)) <= _BOOL_ONLY:  # Python would take 1 or "x" as true
            odd = next(v for v in part if type(v) is not bool)
            raise type_fault("Array.filter callback result", "a Bool", odd)
    kept: list = []
    for span in chunked(range(len(verdicts))):
        kept += [x for x, verdict in zip(xs[span.start:span.stop], verdicts[span.start:span.stop]) if verdict]
    return kept


@REGISTRY.method("Array", "reduce", 2)
def reduce(ctx: NativeContext, xs: Seq, init: Any, f: Any) -> Any:
    """`reduce(init, |acc, x| ...)`, the spec's argument order (init first)."""
    acc = init
    for part in chunked(_seq(xs, "reduce")):
        for x in part:
            acc = ctx.call(f, acc, x)
    return acc


REGISTRY.method("Array", "fold", 2)(reduce)


@REGISTRY.method("Array", "for_each", 1)
def for_each(ctx: NativeContext, xs: Seq, f: Any) -> None:
    for part in chunked(_seq(xs, "for_each")):
        for x in part:
            ctx.call(f, x)


@REGISTRY.method("Array", "find", 1)
def find(ctx: NativeContext, xs: Seq, pred: Any) -> Any:
    for part in chunked(_seq(xs, "find")):
        for x in part:
            if _truthy(ctx.call(pred, x), "Array.find"):
                return Some(x)
    return NONE


@REGISTRY.method("Array", "find_index", 1)
def find_index(ctx: NativeContext, xs: Seq, pred: Any) -> Any:
    at = 0
    for part in chunked(_seq(xs, "find_index")):
        for i, x in enumerate(part, at):
            if _truthy(ctx.call(pred, x), "Array.find_index"):
                return Some(i)
        at += len(part)
    return NONE


@REGISTRY.method("Array", "any", 1)
def any_(ctx: NativeContext, xs: Seq, pred: Any) -> bool:
    return any(_truthy(ctx.call(pred, x), "Array.any") for part in chunked(_seq(xs, "any")) for x in part)


@REGISTRY.method("Array", "all", 1)
def all_(ctx: NativeContext, xs: Seq, pred: Any) -> bool:
    return all(_truthy(ctx.call(pred, x), "Array.all") for part in chunked(_seq(xs, "all")) for x in part)


@REGISTRY.method("Array", "count", 0, 1)
def count(ctx: NativeContext, xs: Seq, pred: Any = None) -> int:
    """`count()` is the length; `count(pred)` counts elements matching pred."""
    _seq(xs, "count")
    if pred is None:
        return len_(ctx, xs)
    return sum(1 for part in chunked(xs) for x in part if _truthy(ctx.call(pred, x), "Array.count"))


@REGISTRY.method("Array", "flat_map", 1)
def flat_map(ctx: NativeContext, xs: Seq, f: Any) -> list:
    out: list = []
    for part in chunked(_seq(xs, "flat_map")):
        for x in part:
            more = want_sequence(ctx.call(f, x), "flat_map callback result")
            grow_check(len(out), seq_len(more), "Array.flat_map")
            extended(out, more)
    return out


@REGISTRY.method("Array", "sort_by", 1)
def sort_by(ctx: NativeContext, xs: Seq, key: Any) -> list:
    """A new array ordered by `key(x)`; stable, and the receiver is untouched."""
    return sorted_values(materialize(_seq(xs, "sort_by"), "Array.sort_by"), key=lambda x: ctx.call(key, x),
                         where="Array.sort_by")


@REGISTRY.method("Array", "partition", 1)
def partition(ctx: NativeContext, xs: Seq, pred: Any) -> tuple[list, list]:
    yes: list = []
    no: list = []
    for part in chunked(materialize(_seq(xs, "partition"), "Array.partition")):
        for x in part:
            (yes if _truthy(ctx.call(pred, x), "Array.partition") else no).append(x)
    return (yes, no)


# --- new arrays from old ---------------------------------------------------


@REGISTRY.method("Array", "enumerate", 0)
def enumerate_(ctx: NativeContext, xs: Seq) -> list[tuple[int, Any]]:
    materialize(_seq(xs, "enumerate"), "Array.enumerate")
    if seq_len(xs) <= CHUNK:
        return list(enumerate(xs))
    out: list = []
    for part in chunked(xs):
        out += enumerate(part, len(out))
    return out


@REGISTRY.method("Array", "join", 0, 1)
def join(ctx: NativeContext, xs: Seq, sep: str = "") -> str:
    # Elements are shown as interpolation shows them, so [1, 2].join("-") is "1-2".
    want_str(sep, "Array.join")
    if seq_len(materialize(_seq(xs, "join"), "Array.join")) <= CHUNK:
        pieces = [x if type(x) is str else display(x) for x in xs]
        size = len(sep) * max(0, len(pieces) - 1)
        for piece in pieces:
            size += len(piece)
        string_check(size, "Array.join")
        return sep.join(pieces)
    # Joined a slice at a time: no single join runs long, and no list of ten
    # million small strings is built (nor freed when the run is stopped).
    texts: list[str] | None = []
    size = 0
    count = 0
    cap = string_cap()
    for part in chunked(xs):
        shown = [x if type(x) is str else display(x) for x in part]
        size += sum(map(len, shown))
        count += len(shown)
        if texts is not None:
            if size + len(sep) * (count - 1) > cap:
                texts = None  # refused below; only the size is still counted, for the message
            else:
                texts.append(sep.join(shown))
    string_check(size + len(sep) * max(0, count - 1), "Array.join")
    return sep.join(texts or [])


@REGISTRY.method("Array", "slice", 1, 2)
def slice_(ctx: NativeContext, xs: Seq, start: int, end: Any = None) -> list:
    """Bounds are clamped like String.substring: slicing never faults."""
    n = seq_len(_seq(xs, "slice"))
    lo = clamp_index(start, n, "Array.slice")
    hi = n if end is None else clamp_index(end, n, "Array.slice")
    return listed(materialize(xs[lo:hi], "Array.slice")) if lo < hi else []


@REGISTRY.method("Array", "concat", 1)
def concat(ctx: NativeContext, xs: Seq, other: Any) -> list:
    more = want_sequence(other, "Array.concat")
    size = seq_len(_seq(xs, "concat")) + seq_len(more)
    grow_check(0, size, "Array.concat")
    if size <= CHUNK:
        return [*xs, *more]
    out = listed(xs)
    extended(out, more)
    return out


@REGISTRY.method("Array", "flatten", 0)
def flatten(ctx: NativeContext, xs: Seq) -> list:
    parts: list = []
    size = 0
    for chunk in chunked(_seq(xs, "flatten")):
        more = [want_sequence(x, "Array.flatten element") for x in chunk]
        size += sum(map(seq_len, more))
        parts += more
    grow_check(0, size, "Array.flatten")
    out: list = []
    for chunk in chunked(parts):
        for part in chunk:
            extended(out, part)
    return out


@REGISTRY.method("Array", "zip", 1)
def zip_(ctx: NativeContext, xs: Seq, other: Any) -> list[tuple]:
    other = want_sequence(other, "Array.zip")
    n = min(seq_len(_seq(xs, "zip")), seq_len(other))
    grow_check(0, n, "Array.zip")
    if n <= CHUNK:
        return list(zip(xs, other))
    out: list = []
    for span in chunked(range(n)):
        out += zip(xs[span.start:span.stop], other[span.start:span.stop])
    return out


@REGISTRY.method("Array", "take", 1)
def take(ctx: NativeContext, xs: Seq, n: int) -> list:
    return listed(materialize(_seq(xs, "take")[: want_count(n, "Array.take")], "Array.take"))


@REGISTRY.method("Array", "skip", 1)
def skip(ctx: NativeContext, xs: Seq, n: int) -> list:
    return listed(materialize(_seq(xs, "skip")[want_count(n, "Array.skip") :], "Array.skip"))


@REGISTRY.method("Array", "chunks", 1)
def chunks(ctx: NativeContext, xs: Seq, size: int) -> list[list]:
    _seq(xs, "chunks")
    if want_int(size, "Array.chunks") <= 0:
        raise ConcertoError(f"Array.chunks expects a positive size, got {size}", "RuntimeError")
    materialize(xs, "Array.chunks")
    n = seq_len(xs)
    span = size * max(1, CHUNK // size)  # items copied between two polls: about CHUNK
    out: list = []
    for lo in range(0, n, span):
        if lo:
            poll()
        out += [_piece(xs, i, i + size) for i in range(lo, min(n, lo + span), size)]
    return out


def _piece(xs: Seq, lo: int, hi: int) -> list:
    part = xs[lo:hi]
    return part if type(part) is list else listed(part)


@REGISTRY.method("Array", "sorted", 0)
def sorted_(ctx: NativeContext, xs: Seq) -> list:
    return sorted_values(materialize(_seq(xs, "sorted"), "Array.sorted"), where="Array.sorted")


@REGISTRY.method("Array", "reversed", 0)
def reversed_(ctx: NativeContext, xs: Seq) -> list:
    backwards = materialize(_seq(xs, "reversed"), "Array.reversed")[::-1]
    return backwards if type(backwards) is list else listed(backwards)


@REGISTRY.method("Array", "unique", 0)
def unique(ctx: NativeContext, xs: Seq) -> list:
    """First occurrence of each value, in order (`true` and `1` stay distinct)."""
    seen: set = set()
    out: list = []
    for part in chunked(materialize(_seq(xs, "unique"), "Array.unique")):
        for x in part:
            k = hash_key(x)
            if k not in seen:
                seen.add(k)
                out.append(x)
    return out


# --- aggregates ------------------------------------------------------------


@REGISTRY.method("Array", "sum", 0)
def sum_(ctx: NativeContext, xs: Seq) -> int | float:
    if type(_seq(xs, "sum")) is range:
        n = seq_len(xs)
        # Closed form: a long Range must not be walked one Int at a time.
        return check_int(n * (xs[0] + xs[-1]) // 2) if n else 0
    for part in chunked(xs):
        for x in part:
            t = type(x)
            if t is not int and t is not float:
                raise type_fault("Array.sum", "numbers", x)
    total = sum(xs)
    return check_int(total) if type(total) is int else total


def _extreme(xs: Seq, pick: Any, where: str) -> Any:
    if not seq_len(_seq(xs, where)):
        return NONE
    if type(xs) is range:  # ascending, so the ends are the answer
        return Some(xs[0] if pick is min else xs[-1])
    check_orderable(xs, f"Array.{where}")
    try:
        # Slice after slice, each continuing the fold from the best so far:
        # the same comparisons, in the same order, as one pick(xs).
        parts = iter(chunked(xs))
        best = pick(next(parts))
        for part in parts:
            best = pick(chain((best,), part))
        return Some(best)
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
