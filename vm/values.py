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

from typing import Any

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1


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
            and other.fields == self.fields
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
            and other.data == self.data
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
        return isinstance(other, Some) and other.value == self.value

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
        return isinstance(other, Ok) and other.value == self.value

    def __hash__(self) -> int:
        return hash(("Ok", self.value))

    def __repr__(self) -> str:
        return f"Ok({self.value!r})"


class Err:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Err) and other.value == self.value

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
    """A readable, source-like rendering of any value (strings quoted)."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    t = type(value)
    if t is str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if t is int:
        return str(value)
    if t is float:
        return format_float(value)
    if t is list:
        return "[" + ", ".join(debug(v) for v in value) + "]"
    if t is dict:
        return "{" + ", ".join(f"{debug(k)}: {debug(v)}" for k, v in value.items()) + "}"
    if t is tuple:
        inner = ", ".join(debug(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if t is range:
        if value.step == 1:
            return f"{value.start}..{value.stop}"
        return repr(value)
    if t is StructValue:
        inner = ", ".join(f"{k}: {debug(v)}" for k, v in value.fields.items())
        return f"{value.type_name} {{ {inner} }}" if inner else f"{value.type_name} {{}}"
    if t is EnumValue:
        name = f"{value.enum_name}::{value.variant}"
        if isinstance(value.data, dict):
            inner = ", ".join(f"{k}: {debug(v)}" for k, v in value.data.items())
            return f"{name} {{ {inner} }}"
        if value.data:
            return name + "(" + ", ".join(debug(v) for v in value.data) + ")"
        return name
    if t is Some:
        return f"Some({debug(value.value)})"
    if value is NONE:
        return "None"
    if t is Ok:
        return f"Ok({debug(value.value)})"
    if t is Err:
        return f"Err({debug(value.value)})"
    if t is Closure:
        return f"<fn {value.name}>"
    render = getattr(value, "concerto_debug", None)
    if render is not None:
        return render()
    return repr(value)


def to_json(value: Any) -> Any:
    """Spec 20 mapping, Concerto -> host JSON-compatible Python data."""
    if value is None or value is True or value is False:
        return value
    t = type(value)
    if t is int or t is float or t is str:
        return value
    if t is list or t is tuple:
        return [to_json(v) for v in value]
    if t is dict:
        return {json_key(k): to_json(v) for k, v in value.items()}
    if t is range:
        return list(value)
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
        return {k: from_json(v) for k, v in data.items()}
    if isinstance(data, list):
        return [from_json(v) for v in data]
    return data


def values_equal(a: Any, b: Any) -> bool:
    """Concerto `==`: structural, but Int and Bool never compare equal."""
    if (type(a) is bool) != (type(b) is bool):
        return False
    return a == b


def check_int(value: int) -> int:
    if INT_MIN <= value <= INT_MAX:
        return value
    raise ConcertoError("integer overflow", "OverflowError")
