"""Runtime values.

Plain values stay plain Python objects so the hot loop never unwraps them:

    Int -> int      Float -> float   String -> str   Bool -> bool
    Nil -> None     Array -> list    Map -> dict     Tuple -> tuple
    Range -> range (Int ranges; `a..=b` is range(a, b + 1))

Only what needs a type is wrapped: structs, enum variants, Option/Result,
closures and function references. Option's `None` is the singleton `NONE`,
distinct from `nil` (Python None).
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from concerto.vm import limits as _limits
from concerto.vm.interrupts import poll

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

# Items a native (or a renderer here) handles between two polls of the run's
# interrupt flag (vm/interrupts.py). A slice this long takes a millisecond or
# so of per-item Python work, so a deadline is seen within a few clock ticks,
# and a value this small never polls on its own account.
CHUNK = 4096

# Items of short containers walked since the last poll, for the recursive
# walkers (rendering, equality, conversion, hashing): nested containers each
# within CHUNK (4,000 Arrays of 4,000) would otherwise never poll. One counter
# for the process is enough: a miscount only moves a poll a little.
_walked = 0


def walked(n: int) -> None:
    """Count `n` items of a short container; poll every CHUNK or so."""
    global _walked
    _walked += n
    if _walked > CHUNK:
        _walked = 0
        poll()


def _tick() -> None:
    global _walked
    _walked = 0
    poll()


def chunked(xs: Any) -> Any:
    """`xs` (a list, tuple, range or str) as consecutive slices of at most
    CHUNK items, polling before each slice; a short `xs` comes back whole."""
    try:
        n = len(xs)
    except OverflowError:  # a Range of more than 2**63 - 1 Ints
        n = range_size(xs)
    if n <= CHUNK:
        return (xs,)
    return _slices(xs, n)


def _slices(xs: Any, n: int) -> Any:
    for lo in range(0, n, CHUNK):
        poll()
        yield xs[lo:lo + CHUNK]


def batches(items: Any, n: int) -> Any:
    """Like `chunked` for any iterable of `n` items that cannot be sliced (a
    dict view, a deque): lists of at most CHUNK items, polling before each."""
    if n <= CHUNK:
        return (items,)
    return _batches(iter(items))


def _batches(it: Any) -> Any:
    while True:
        poll()
        batch = list(islice(it, CHUNK))
        if not batch:
            return
        yield batch


class ConcertoError(Exception):
    """A runtime fault raised by the VM or a native function.

    `kind` names the error type a typed `catch` can select (RuntimeError,
    TypeError, IndexError, ...). The machine attaches the source span and call
    trace while unwinding.
    """

    def __init__(self, message: str, kind: str = "RuntimeError") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


class StructValue:
    """An instance of a user struct (or a built-in record such as an error)."""

    __slots__ = ("type_name", "fields")

    def __init__(self, type_name: str, fields: dict[str, Any]) -> None:
        self.type_name = type_name
        self.fields = fields

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, StructValue)
            and other.type_name == self.type_name
            and values_equal(self.fields, other.fields)
        )

    def __hash__(self) -> int:
        return hash((self.type_name, tuple(self.fields.items())))

    def copy(self) -> "StructValue":
        return StructValue(self.type_name, dict(self.fields))

    def __repr__(self) -> str:
        return f"StructValue({self.type_name}, {self.fields!r})"


class EnumValue:
    """A variant of a user enum.

    `data` is a tuple for unit/tuple variants and a dict for struct variants.
    """

    __slots__ = ("enum_name", "variant", "data")

    def __init__(self, enum_name: str, variant: str, data: tuple | dict = ()) -> None:
        self.enum_name = enum_name
        self.variant = variant
        self.data = data

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, EnumValue)
            and other.enum_name == self.enum_name
            and other.variant == self.variant
            and values_equal(self.data, other.data)
        )

    def __hash__(self) -> int:
        data = tuple(self.data.items()) if isinstance(self.data, dict) else self.data
        return hash((self.enum_name, self.variant, data))

    def __repr__(self) -> str:
        return f"EnumValue({self.enum_name}::{self.variant}, {self.data!r})"


class Some:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Some) and values_equal(self.value, other.value)

    def __hash__(self) -> int:
        return hash(("Some", self.value))

    def __repr__(self) -> str:
        return f"Some({self.value!r})"


class _NoneType:
    """Option::None. A singleton, distinct from nil."""

    __slots__ = ()
    _instance: "_NoneType | None" = None

    def __new__(cls) -> "_NoneType":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NONE"

    def __reduce__(self) -> str:
        return "NONE"


NONE = _NoneType()


class Ok:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ok) and values_equal(self.value, other.value)

    def __hash__(self) -> int:
        return hash(("Ok", self.value))

    def __repr__(self) -> str:
        return f"Ok({self.value!r})"


class Err:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Err) and values_equal(self.value, other.value)

    def __hash__(self) -> int:
        return hash(("Err", self.value))

    def __repr__(self) -> str:
        return f"Err({self.value!r})"


class Closure:
    """A callable value: a compiled function plus the values it captured.

    A named function used as a value is a Closure with no captures.
    `native` is set instead of `function` for std:: functions used as values.
    """

    __slots__ = ("function", "captures", "native", "name")

    def __init__(self, function: Any, captures: tuple = (), native: Any = None, name: str = "") -> None:
        self.function = function
        self.captures = captures
        self.native = native
        self.name = name

    def __repr__(self) -> str:
        return f"<fn {self.name}>"


class _BoolKey:
    """How a Bool map key is stored. A Python dict would merge `true` with `1`
    (True == 1 and hash(True) == hash(1)); Concerto keeps them apart."""

    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"<key {self.value}>"


TRUE_KEY = _BoolKey(True)
FALSE_KEY = _BoolKey(False)


def stored_key(key: Any) -> Any:
    """The dict key a Concerto map key is stored (and looked up) under."""
    if key is True:
        return TRUE_KEY
    if key is False:
        return FALSE_KEY
    return key


def public_key(key: Any) -> Any:
    """The Concerto value of a stored map key."""
    return key.value if type(key) is _BoolKey else key


def has_bool_keys(d: dict) -> bool:
    return TRUE_KEY in d or FALSE_KEY in d


def map_keys(d: dict) -> list:
    """A map's keys as Concerto values, in insertion order."""
    if TRUE_KEY in d or FALSE_KEY in d:
        keys: list = []
        for batch in batches(d, len(d)):
            keys += [public_key(k) for k in batch]
        return keys
    if len(d) <= CHUNK:
        return list(d)
    return listed_batches(d, len(d))


def map_items(d: dict) -> list[tuple[Any, Any]]:
    """A map's (key, value) entries as Concerto values, in insertion order."""
    if TRUE_KEY in d or FALSE_KEY in d:
        items: list = []
        for batch in batches(d.items(), len(d)):
            items += [(public_key(k), v) for k, v in batch]
        return items
    if len(d) <= CHUNK:
        return list(d.items())
    return listed_batches(d.items(), len(d))


def listed_batches(items: Any, n: int) -> list:
    """list(items) of an iterable of `n` items, a batch at a time."""
    out: list = []
    for batch in batches(items, n):
        out += batch
    return out


def type_name(value: Any) -> str:
    """The Concerto type name of a runtime value, for messages and typed catch."""
    if value is None:
        return "Nil"
    if value is True or value is False:
        return "Bool"
    t = type(value)
    if t is int:
        return "Int"
    if t is float:
        return "Float"
    if t is str:
        return "String"
    if t is list:
        return "Array"
    if t is dict:
        return "Map"
    if t is tuple:
        return "Tuple"
    if t is range:
        return "Range"
    if t is StructValue:
        return value.type_name
    if t is EnumValue:
        return value.enum_name
    if t is Some or value is NONE:
        return "Option"
    if t is Ok or t is Err:
        return "Result"
    if t is Closure:
        return "Function"
    return getattr(value, "concerto_type", t.__name__)


def format_float(f: float) -> str:
    """Shortest round-trip text; integral floats keep `.0` so they never read as
    Int (docs/semantics.md, "Float display")."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "inf" if f > 0 else "-inf"
    return repr(f)


def display(value: Any) -> str:
    """The text a value shows in string interpolation and `to_string()`."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    t = type(value)
    if t is str:
        return value
    if t is int:
        return str(value)
    if t is float:
        return format_float(value)
    return debug(value)


def debug(value: Any) -> str:
    """A readable, source-like rendering of any value (strings quoted).

    A container's text is bounded by max_string_length as it is built
    (vm/limits.py): an Array holding one long String a thousand times is a
    ResourceError, not a MemoryError. Pieces are counted before they are
    joined, so at most about twice the cap is ever held."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    t = type(value)
    if t is str:
        return _quoted(value)
    if t is int:
        return str(value)
    if t is float:
        return format_float(value)
    if t is list:
        return "[" + _joined(value) + "]"
    if t is dict:
        return "{" + _joined(value.items(), _entry) + "}"
    if t is tuple:
        return "(" + _joined(value) + (",)" if len(value) == 1 else ")")
    if t is range:
        return f"{value.start}..{value.stop}" if value.step == 1 else repr(value)
    if t is StructValue:
        return value.type_name + _fields(value.fields, " {}")
    if t is EnumValue:
        name = f"{value.enum_name}::{value.variant}"
        if isinstance(value.data, dict):
            return name + _fields(value.data, " {  }")
        return name + "(" + _joined(value.data) + ")" if value.data else name
    if t is Some:
        return "Some(" + debug(value.value) + ")"
    if value is NONE:
        return "None"
    if t is Ok:
        return "Ok(" + debug(value.value) + ")"
    if t is Err:
        return "Err(" + debug(value.value) + ")"
    if t is Closure:
        return f"<fn {value.name}>"
    parts = getattr(value, "concerto_parts", None)
    if parts is not None:  # a std::collections value
        opening, items, closing = parts()
        return opening + _joined(items) + closing
    render = getattr(value, "concerto_debug", None)
    if render is not None:
        return render()
    return repr(value)


def _entry(item: tuple[Any, Any]) -> str:
    """One `key: value` of a Map."""
    return debug(public_key(item[0])) + ": " + debug(item[1])


def _field(item: tuple[str, Any]) -> str:
    """One `name: value` of a struct (the name is not quoted)."""
    return item[0] + ": " + debug(item[1])


def _joined(items: Any, render: Any = debug) -> str:
    """The items' text separated by ", ", refused once it passes the cap."""
    global _walked
    n = len(items)
    if n > CHUNK:
        return _long_joined(items, render)
    _walked += n
    if _walked > CHUNK:
        _tick()
    parts = []
    size = 0
    cap = 0
    for item in items:
        piece = render(item)
        size += len(piece) + 2
        if size > _limits.UNCHECKED:
            if not cap:
                cap = _limits.string_cap()
            if size > cap:
                raise _limits.text_fault("the text of this value", cap)
        parts.append(piece)
    return ", ".join(parts)


def _long_joined(items: Any, render: Any) -> str:
    # Joined a batch at a time: no list of millions of small strings.
    texts: list[str] = []
    size = 0
    cap = _limits.string_cap()
    for batch in batches(items, len(items)):
        parts = []
        for item in batch:
            piece = render(item)
            size += len(piece) + 2
            if size > cap:
                raise _limits.text_fault("the text of this value", cap)
            parts.append(piece)
        texts.append(", ".join(parts))
    return ", ".join(texts)


def _fields(fields: dict, empty: str) -> str:
    if not fields:
        return empty
    return " { " + _joined(fields.items(), _field) + " }"


def _quoted(s: str) -> str:
    if len(s) > _limits.UNCHECKED:
        # Escaping can double the text; refuse before building what cannot fit.
        _limits.check_string(len(s) + 2, "quoting a String")
        text = '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        _limits.check_string(len(text), "quoting a String")
        return text
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_json(value: Any) -> Any:
    """Spec 20 mapping, Concerto -> host JSON-compatible Python data."""
    global _walked
    if value is None or value is True or value is False:
        return value
    t = type(value)
    if t is int or t is float or t is str:
        return value
    if t is list or t is tuple:
        n = len(value)
        if n > CHUNK:
            out: list = []
            for part in chunked(value):
                out += [to_json(v) for v in part]
            return out
        _walked += n
        if _walked > CHUNK:
            _tick()
        return [to_json(v) for v in value]
    if t is dict:
        n = len(value)
        if n > CHUNK:
            mapped: dict = {}
            for batch in batches(value.items(), n):
                mapped.update({json_key(public_key(k)): to_json(v) for k, v in batch})
            return mapped
        _walked += n
        if _walked > CHUNK:
            _tick()
        return {json_key(public_key(k)): to_json(v) for k, v in value.items()}
    if t is range:
        n = range_size(value)
        if n > _limits.UNCHECKED:
            _limits.check_collection(n, "a Range as JSON")
        return range_list(value)
    if t is StructValue:
        return {k: to_json(v) for k, v in value.fields.items()}
    if t is EnumValue:
        if isinstance(value.data, dict):
            data: Any = {k: to_json(v) for k, v in value.data.items()}
        elif len(value.data) == 0:
            data = None
        elif len(value.data) == 1:
            data = to_json(value.data[0])
        else:
            data = [to_json(v) for v in value.data]
        return {"variant": value.variant, "data": data}
    if t is Some:
        return to_json(value.value)
    if value is NONE:
        return None
    if t is Ok:
        return {"ok": to_json(value.value)}
    if t is Err:
        return {"err": to_json(value.value)}
    if t is Closure:
        return f"<fn {value.name}>"
    convert = getattr(value, "concerto_json", None)
    if convert is not None:
        return convert()
    return repr(value)


def range_list(r: range) -> list[int]:
    """list(r), built in slices so a long Range polls (its length is checked
    by the caller)."""
    out: list[int] = []
    for part in chunked(r):
        out += part
    return out


def range_size(r: range) -> int:
    """len(r), also for a range of more than 2**63 - 1 Ints (where len() raises)."""
    if r.step > 0:
        return max(0, (r.stop - r.start + r.step - 1) // r.step)
    return max(0, (r.start - r.stop - r.step - 1) // -r.step)


def json_key(key: Any) -> str:
    if type(key) is str:
        return key
    return display(key)


def from_json(data: Any) -> Any:
    """Spec 20 mapping, host JSON -> Concerto. Objects become Maps; `{"ok": v}`
    and `{"err": e}` become Results; `{"variant": ..., "data": ...}` stays a Map
    because the host side carries no enum type name."""
    if isinstance(data, dict):
        if len(data) == 1:
            if "ok" in data:
                return Ok(from_json(data["ok"]))
            if "err" in data:
                return Err(from_json(data["err"]))
        walked(len(data))
        out: dict = {}
        for batch in batches(data.items(), len(data)):
            out.update({k: from_json(v) for k, v in batch})
        return out
    if isinstance(data, list):
        walked(len(data))
        items: list = []
        for part in chunked(data):
            items += [from_json(v) for v in part]
        return items
    return data


def values_equal(a: Any, b: Any) -> bool:
    """Concerto `==`: structural at every depth; a Bool never equals an Int
    (Python's `1 == True` and `[1] == [True]` must not leak through), Int and
    Float compare by value, and NaN equals nothing, itself included."""
    global _walked
    ta = type(a)
    tb = type(b)
    if ta is not tb:
        if (ta is int or ta is float) and (tb is int or tb is float):
            return a == b
        return False
    if ta is list or ta is tuple:
        n = len(a)
        if n != len(b):
            return False
        if n > CHUNK:
            return _long_equal(a, b)
        _walked += n
        if _walked > CHUNK:
            _tick()
        for x, y in zip(a, b):
            if not values_equal(x, y):
                return False
        return True
    if ta is dict:
        # Stored keys are Strings, Ints and the Bool key markers, so `in` is exact.
        n = len(a)
        if n != len(b):
            return False
        if n > CHUNK:
            return _long_equal_maps(a, b)
        _walked += n
        if _walked > CHUNK:
            _tick()
        for k, v in a.items():
            if k not in b or not values_equal(v, b[k]):
                return False
        return True
    return a == b


def _long_equal(a: list | tuple, b: list | tuple) -> bool:
    for lo in range(0, len(a), CHUNK):
        poll()
        for x, y in zip(a[lo:lo + CHUNK], b[lo:lo + CHUNK]):
            if not values_equal(x, y):
                return False
    return True


def _long_equal_maps(a: dict, b: dict) -> bool:
    for batch in batches(a.items(), len(a)):
        for k, v in batch:
            if k not in b or not values_equal(v, b[k]):
                return False
    return True


def check_int(value: int) -> int:
    if INT_MIN <= value <= INT_MAX:
        return value
    raise ConcertoError("integer overflow", "OverflowError")
