"""Built-in methods of Map (a Python dict, which keeps insertion order).

`set`, `insert`, `delete`, `remove` and `clear` change the map in place;
`merge` and `filter` return a new map.

Keys are Strings, Ints or Bools. A Bool key is stored under a marker
(values.stored_key) so that `true` and `1` stay two keys, as `==` says they
are different; keys are turned back into Concerto values on the way out.
"""

from __future__ import annotations

from typing import Any

from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.stdlib.support import UNCHECKED, grow_check, type_fault, want_map
from concerto.vm.operators import map_insert, map_key
from concerto.vm.values import NONE, Some, batches, chunked, display, listed_batches, map_items, map_keys, public_key


@REGISTRY.method("Map", "len", 0)
def len_(ctx: NativeContext, m: dict) -> int:
    return len(want_map(m, "Map.len"))


@REGISTRY.method("Map", "is_empty", 0)
def is_empty(ctx: NativeContext, m: dict) -> bool:
    return len(want_map(m, "Map.is_empty")) == 0


@REGISTRY.method("Map", "get", 1)
def get(ctx: NativeContext, m: dict, key: Any) -> Any:
    k = map_key(key)
    if k in want_map(m, "Map.get"):
        return Some(m[k])
    return NONE


@REGISTRY.method("Map", "has", 1)
def has(ctx: NativeContext, m: dict, key: Any) -> bool:
    return map_key(key) in want_map(m, "Map.has")


REGISTRY.method("Map", "contains_key", 1)(has)


@REGISTRY.method("Map", "set", 2, mutates=True)
def set_(ctx: NativeContext, m: dict, key: Any, value: Any) -> None:
    map_insert(want_map(m, "Map.set"), key, value)


@REGISTRY.method("Map", "insert", 2, mutates=True)
def insert(ctx: NativeContext, m: dict, key: Any, value: Any) -> Any:
    """Like `set`, but returns the value it replaced (Some) or None, as Rust's
    HashMap::insert does."""
    old = get(ctx, m, key)
    map_insert(m, key, value)
    return old


@REGISTRY.method("Map", "delete", 1, mutates=True)
def delete(ctx: NativeContext, m: dict, key: Any) -> Any:
    """Remove `key`; returns Some(old value), or None if it was absent."""
    k = map_key(key)
    if k in want_map(m, "Map.delete"):
        return Some(m.pop(k))
    return NONE


REGISTRY.method("Map", "remove", 1, mutates=True)(delete)


@REGISTRY.method("Map", "clear", 0, mutates=True)
def clear(ctx: NativeContext, m: dict) -> None:
    want_map(m, "Map.clear").clear()


@REGISTRY.method("Map", "keys", 0)
def keys(ctx: NativeContext, m: dict) -> list:
    return map_keys(want_map(m, "Map.keys"))


@REGISTRY.method("Map", "values", 0)
def values(ctx: NativeContext, m: dict) -> list:
    return listed_batches(want_map(m, "Map.values").values(), len(m))


@REGISTRY.method("Map", "entries", 0)
def entries(ctx: NativeContext, m: dict) -> list[tuple[Any, Any]]:
    return map_items(want_map(m, "Map.entries"))


@REGISTRY.method("Map", "merge", 1)
def merge(ctx: NativeContext, m: dict, other: dict) -> dict:
    """A new map: the receiver's entries, then `other`'s (which win on clashes)."""
    want_map(m, "Map.merge")
    want_map(other, "Map.merge")
    if len(m) + len(other) <= UNCHECKED:
        return {**m, **other}
    grow_check(len(m), sum(sum(1 for k in batch if k not in m) for batch in batches(other, len(other))),
               "Map.merge")
    merged = dict(m)
    for batch in batches(other.items(), len(other)):
        merged.update(batch)
    return merged


@REGISTRY.method("Map", "for_each", 1)
def for_each(ctx: NativeContext, m: dict, f: Any) -> None:
    # Snapshot the entries: the callback may legally change the map.
    for part in chunked(map_items(want_map(m, "Map.for_each"))):
        for k, v in part:
            ctx.call(f, k, v)


@REGISTRY.method("Map", "filter", 1)
def filter_(ctx: NativeContext, m: dict, pred: Any) -> dict:
    """A new map of the entries for which `pred(key, value)` is true."""
    out = {}
    for part in chunked(listed_batches(want_map(m, "Map.filter").items(), len(m))):
        for k, v in part:
            keep = ctx.call(pred, public_key(k), v)
            if keep is not True and keep is not False:
                raise type_fault("Map.filter callback result", "a Bool", keep)
            if keep:
                out[k] = v
    return out


@REGISTRY.method("Map", "to_string", 0)
def to_string(ctx: NativeContext, m: dict) -> str:
    return display(want_map(m, "Map.to_string"))
