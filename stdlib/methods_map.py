"""Built-in methods of Map (a Python dict, which keeps insertion order).

`set`, `insert`, `delete`, `remove` and `clear` change the map in place;
`merge` and `filter` return a new map.
"""

from __future__ import annotations

from typing import Any

from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.stdlib.support import want_map
from concerto.vm.values import NONE, ConcertoError, Some, display, type_name


def _bad_key(key: Any) -> ConcertoError:
    return ConcertoError(f"a {type_name(key)} cannot be a Map key", "TypeError")


@REGISTRY.method("Map", "len", 0)
def len_(ctx: NativeContext, m: dict) -> int:
    return len(want_map(m, "Map.len"))


@REGISTRY.method("Map", "is_empty", 0)
def is_empty(ctx: NativeContext, m: dict) -> bool:
    return len(want_map(m, "Map.is_empty")) == 0


@REGISTRY.method("Map", "get", 1)
def get(ctx: NativeContext, m: dict, key: Any) -> Any:
    try:
        if key in want_map(m, "Map.get"):
            return Some(m[key])
    except TypeError:
        raise _bad_key(key) from None
    return NONE


@REGISTRY.method("Map", "has", 1)
def has(ctx: NativeContext, m: dict, key: Any) -> bool:
    try:
        return key in want_map(m, "Map.has")
    except TypeError:
        raise _bad_key(key) from None


REGISTRY.method("Map", "contains_key", 1)(has)


@REGISTRY.method("Map", "set", 2, mutates=True)
def set_(ctx: NativeContext, m: dict, key: Any, value: Any) -> None:
    try:
        want_map(m, "Map.set")[key] = value
    except TypeError:
        raise _bad_key(key) from None


@REGISTRY.method("Map", "insert", 2, mutates=True)
def insert(ctx: NativeContext, m: dict, key: Any, value: Any) -> Any:
    """Like `set`, but returns the value it replaced (Some) or None, as Rust's
    HashMap::insert does."""
    old = get(ctx, m, key)
    m[key] = value
    return old


@REGISTRY.method("Map", "delete", 1, mutates=True)
def delete(ctx: NativeContext, m: dict, key: Any) -> Any:
    """Remove `key`; returns Some(old value), or None if it was absent."""
    old = get(ctx, m, key)
    if old is not NONE:
        del m[key]
    return old


REGISTRY.method("Map", "remove", 1, mutates=True)(delete)


@REGISTRY.method("Map", "clear", 0, mutates=True)
def clear(ctx: NativeContext, m: dict) -> None:
    want_map(m, "Map.clear").clear()


@REGISTRY.method("Map", "keys", 0)
def keys(ctx: NativeContext, m: dict) -> list:
    return list(want_map(m, "Map.keys"))


@REGISTRY.method("Map", "values", 0)
def values(ctx: NativeContext, m: dict) -> list:
    return list(want_map(m, "Map.values").values())


@REGISTRY.method("Map", "entries", 0)
def entries(ctx: NativeContext, m: dict) -> list[tuple[Any, Any]]:
    return list(want_map(m, "Map.entries").items())


@REGISTRY.method("Map", "merge", 1)
def merge(ctx: NativeContext, m: dict, other: dict) -> dict:
    """A new map: the receiver's entries, then `other`'s (which win on clashes)."""
    return {**want_map(m, "Map.merge"), **want_map(other, "Map.merge")}


@REGISTRY.method("Map", "for_each", 1)
def for_each(ctx: NativeContext, m: dict, f: Any) -> None:
    # Snapshot the entries: the callback may legally change the map.
    for k, v in list(want_map(m, "Map.for_each").items()):
        ctx.call(f, k, v)


@REGISTRY.method("Map", "filter", 1)
def filter_(ctx: NativeContext, m: dict, pred: Any) -> dict:
    """A new map of the entries for which `pred(key, value)` is true."""
    return {k: v for k, v in list(want_map(m, "Map.filter").items()) if ctx.call(pred, k, v)}


@REGISTRY.method("Map", "to_string", 0)
def to_string(ctx: NativeContext, m: dict) -> str:
    return display(want_map(m, "Map.to_string"))
