"""std::collections — Set, Queue and Stack (spec 19).

Each is a small mutable runtime value with a `concerto_type`, which is how
values.type_name, debug and to_json recognise it. Constructors are registered
as `std::collections::Set::new` etc. and take an optional Array of initial
elements; methods are registered on the type names "Set", "Queue", "Stack".
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterator

from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.stdlib.sorting import sort_in_steps
from concerto.stdlib.support import (
    UNCHECKED,
    check_collection,
    grow_check,
    hash_key,
    listed,
    seq_len,
    type_fault,
    want_sequence,
)
from concerto.vm.values import NONE, Some, batches, chunked, display, listed_batches, to_json, values_equal

_TOTAL_KINDS = ({int}, {float}, {int, float}, {str}, {bool})


def _sorted_if_possible(values: list) -> list:
    # Sets have no order of their own; sorting makes output reproducible.
    kinds: set = set()
    for part in chunked(values):
        kinds.update(map(type, part))
    if kinds in _TOTAL_KINDS and (float not in kinds or all(v == v for part in chunked(values) for v in part)):
        return sort_in_steps(values)
    try:
        return sorted(values)
    except TypeError:
        return values


class SetValue:
    """Elements keyed by support.hash_key, so `true` and `1` stay distinct and
    Arrays or structs can be members."""

    __slots__ = ("items",)
    concerto_type = "Set"

    def __init__(self, values: Any = ()) -> None:
        self.items: dict[Any, Any] = {}
        for part in chunked(values):
            for v in part:
                self.items.setdefault(hash_key(v), v)

    def elements(self) -> list:
        """Members in sorted order when they are orderable, else insertion order."""
        return _sorted_if_possible(listed_batches(self.items.values(), len(self.items)))

    def __iter__(self) -> Iterator[Any]:
        return iter(self.elements())

    def __len__(self) -> int:
        return len(self.items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SetValue) or len(self.items) != len(other.items):
            return False
        theirs = other.items
        return all(all(map(theirs.__contains__, batch)) for batch in batches(self.items, len(self.items)))

    def concerto_parts(self) -> tuple[str, list, str]:
        return "Set {", self.elements(), "}"

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self) -> "SetValue":
        clone = SetValue()
        clone.items = dict(self.items)
        return clone

    def concerto_json(self) -> list:
        return to_json(self.elements())

    def __repr__(self) -> str:
        return display(self)


class QueueValue:
    """First in, first out."""

    __slots__ = ("items",)
    concerto_type = "Queue"

    def __init__(self, values: Any = ()) -> None:
        self.items: deque[Any] = deque(listed(values) if type(values) is range else values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, QueueValue) and values_equal(list(self.items), list(other.items))

    def concerto_parts(self) -> tuple[str, Any, str]:
        return "Queue [", self.items, "]"

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> "QueueValue":
        return QueueValue(self.items)

    def concerto_json(self) -> list:
        """Front of the queue first."""
        return to_json(list(self.items))

    def __repr__(self) -> str:
        return display(self)


class StackValue:
    """Last in, first out."""

    __slots__ = ("items",)
    concerto_type = "Stack"

    def __init__(self, values: Any = ()) -> None:
        self.items: list[Any] = listed(values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StackValue) and values_equal(self.items, other.items)

    def concerto_parts(self) -> tuple[str, list, str]:
        return "Stack [", self.items, "]"

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> "StackValue":
        return StackValue(self.items)

    def concerto_json(self) -> list:
        """Bottom of the stack first, top last (push order)."""
        return to_json(self.items)

    def __repr__(self) -> str:
        return display(self)


def _want(value: Any, cls: type, where: str) -> Any:
    if type(value) is not cls:
        raise type_fault(where, f"a {cls.concerto_type}", value)
    return value


def _initial(values: Any, where: str) -> Any:
    if values is None:
        return ()
    values = want_sequence(values, where)
    grow_check(0, seq_len(values), where)
    return values


def _grow(size: int, where: str) -> None:
    if size >= UNCHECKED:
        check_collection(size + 1, where)


# --- Set -------------------------------------------------------------------

_MISSING = object()


@REGISTRY.function("std::collections::Set::new", 0, 1)
def set_new(ctx: NativeContext, values: Any = None) -> SetValue:
    return SetValue(_initial(values, "Set::new"))


@REGISTRY.method("Set", "insert", 1, mutates=True)
def set_insert(ctx: NativeContext, s: SetValue, value: Any) -> bool:
    """True if the value was not already present."""
    items = _want(s, SetValue, "Set.insert").items
    key = hash_key(value)
    if key in items:
        return False
    _grow(len(items), "Set.insert")
    items[key] = value
    return True


@REGISTRY.method("Set", "remove", 1, mutates=True)
def set_remove(ctx: NativeContext, s: SetValue, value: Any) -> bool:
    """True if the value was present."""
    return _want(s, SetValue, "Set.remove").items.pop(hash_key(value), _MISSING) is not _MISSING


@REGISTRY.method("Set", "contains", 1)
def set_contains(ctx: NativeContext, s: SetValue, value: Any) -> bool:
    return hash_key(value) in _want(s, SetValue, "Set.contains").items


@REGISTRY.method("Set", "union", 1)
def set_union(ctx: NativeContext, s: SetValue, other: SetValue) -> SetValue:
    mine = _want(s, SetValue, "Set.union").items
    theirs = _want(other, SetValue, "Set.union").items
    if len(mine) + len(theirs) > UNCHECKED:
        added = sum(sum(1 for k in batch if k not in mine) for batch in batches(theirs, len(theirs)))
        grow_check(len(mine), added, "Set.union")
    result = s.copy()
    for batch in batches(theirs.items(), len(theirs)):
        for key, value in batch:
            result.items.setdefault(key, value)
    return result


@REGISTRY.method("Set", "intersection", 1)
def set_intersection(ctx: NativeContext, s: SetValue, other: SetValue) -> SetValue:
    theirs = _want(other, SetValue, "Set.intersection").items
    mine = _want(s, SetValue, "Set.intersection").items
    result = SetValue()
    for batch in batches(mine.items(), len(mine)):
        result.items.update({k: v for k, v in batch if k in theirs})
    return result


@REGISTRY.method("Set", "difference", 1)
def set_difference(ctx: NativeContext, s: SetValue, other: SetValue) -> SetValue:
    """Members of the receiver that are not in `other`."""
    theirs = _want(other, SetValue, "Set.difference").items
    mine = _want(s, SetValue, "Set.difference").items
    result = SetValue()
    for batch in batches(mine.items(), len(mine)):
        result.items.update({k: v for k, v in batch if k not in theirs})
    return result


# --- Queue -----------------------------------------------------------------


@REGISTRY.function("std::collections::Queue::new", 0, 1)
def queue_new(ctx: NativeContext, values: Any = None) -> QueueValue:
    return QueueValue(_initial(values, "Queue::new"))


@REGISTRY.method("Queue", "enqueue", 1, mutates=True)
def enqueue(ctx: NativeContext, q: QueueValue, value: Any) -> None:
    items = _want(q, QueueValue, "Queue.enqueue").items
    _grow(len(items), "Queue.enqueue")
    items.append(value)


@REGISTRY.method("Queue", "dequeue", 0, mutates=True)
def dequeue(ctx: NativeContext, q: QueueValue) -> Any:
    items = _want(q, QueueValue, "Queue.dequeue").items
    return Some(items.popleft()) if items else NONE


@REGISTRY.method("Queue", "peek", 0)
def queue_peek(ctx: NativeContext, q: QueueValue) -> Any:
    items = _want(q, QueueValue, "Queue.peek").items
    return Some(items[0]) if items else NONE


# --- Stack -----------------------------------------------------------------


@REGISTRY.function("std::collections::Stack::new", 0, 1)
def stack_new(ctx: NativeContext, values: Any = None) -> StackValue:
    """Initial elements are pushed in order, so the last one is on top."""
    return StackValue(_initial(values, "Stack::new"))


@REGISTRY.method("Stack", "push", 1, mutates=True)
def stack_push(ctx: NativeContext, s: StackValue, value: Any) -> None:
    items = _want(s, StackValue, "Stack.push").items
    _grow(len(items), "Stack.push")
    items.append(value)


@REGISTRY.method("Stack", "pop", 0, mutates=True)
def stack_pop(ctx: NativeContext, s: StackValue) -> Any:
    items = _want(s, StackValue, "Stack.pop").items
    return Some(items.pop()) if items else NONE


@REGISTRY.method("Stack", "peek", 0)
def stack_peek(ctx: NativeContext, s: StackValue) -> Any:
    items = _want(s, StackValue, "Stack.peek").items
    return Some(items[-1]) if items else NONE


# --- shared by all three ---------------------------------------------------

_COLLECTIONS = ("Set", "Queue", "Stack")
_CLASSES = (SetValue, QueueValue, StackValue)


def _collection(value: Any, where: str) -> SetValue | QueueValue | StackValue:
    if type(value) not in _CLASSES:
        raise type_fault(where, "a Set, Queue or Stack", value)
    return value


@REGISTRY.method(_COLLECTIONS, "len", 0)
def len_(ctx: NativeContext, c: Any) -> int:
    return len(_collection(c, "len"))


@REGISTRY.method(_COLLECTIONS, "is_empty", 0)
def is_empty(ctx: NativeContext, c: Any) -> bool:
    return len(_collection(c, "is_empty")) == 0


@REGISTRY.method(_COLLECTIONS, "clear", 0, mutates=True)
def clear(ctx: NativeContext, c: Any) -> None:
    _collection(c, "clear").items.clear()


@REGISTRY.method(_COLLECTIONS, "to_array", 0)
def to_array(ctx: NativeContext, c: Any) -> list:
    """Set: sorted when orderable; Queue: front first; Stack: bottom first."""
    return list(_collection(c, "to_array"))


@REGISTRY.method(_COLLECTIONS, "to_string", 0)
def to_string(ctx: NativeContext, c: Any) -> str:
    return display(_collection(c, "to_string"))
