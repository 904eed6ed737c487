"""Operator semantics shared by both tiers: the interpreter's dispatch loop and
the Python code that vm/pycompile.py generates call these same functions, so
an operator means one thing whichever tier runs it."""

from __future__ import annotations

import math
from typing import Any

from concerto.vm.limits import UNCHECKED, check_collection, check_string
from concerto.vm.values import (
    INT_MAX,
    INT_MIN,
    NONE,
    ConcertoError,
    EnumValue,
    Err,
    Ok,
    Some,
    StructValue,
    display,
    map_items,
    stored_key,
    type_name,
)

# The fault kinds a `catch RuntimeError(e)` also catches.
FAULT_KINDS = {"RuntimeError", "IndexError", "KeyError", "TypeError", "ArithmeticError", "OverflowError",
               "ResourceError"}
END = object()  # what `next()` returns when a for loop's iterator is done


class Thrown(ConcertoError):
    """An error value no catch clause matched, travelling to an outer try."""

    def __init__(self, value: Any) -> None:
        msg = value.fields.get("message") if isinstance(value, StructValue) else None
        super().__init__(str(msg) if msg is not None else display(value), type_name(value))
        self.value = value



def as_fault(exc: BaseException) -> ConcertoError | None:
    """The Concerto fault an exception stands for; None means it is a bug.

    Operators and natives raise ConcertoError for everything a program can
    provoke (bad argument types, bad numbers, sizes over the caps). The one
    Python exception a correct program can still cause is RecursionError:
    closures nested through natives, or data nested deeper than Python's
    stack (printing or comparing an Array inside 100,000 Arrays). Any other
    exception (a stray TypeError, ValueError, ZeroDivisionError, ...) is a
    defect in the runtime and must not be disguised as a program error."""
    if isinstance(exc, ConcertoError):
        return exc
    if isinstance(exc, RecursionError):
        return ConcertoError("call depth exceeded (nested native calls or deeply nested data)", "RuntimeError")
    return None


def fault_value(fault: ConcertoError) -> Any:
    if isinstance(fault, Thrown):
        return fault.value
    return StructValue(fault.kind, {"message": fault.message})


# Types whose Python operators agree with Concerto when both sides have the
# same type: `==` for these scalars, ordering for numbers and strings. Both
# tiers take their fast paths only for them; containers, Options and structs
# go through values_equal / compare (where Bool never equals Int).
SCALAR_TYPES = frozenset({int, float, str, bool, type(None)})
ORDERED_TYPES = frozenset({int, float, str})


def add_values(x: Any, y: Any) -> Any:
    if type(x) is str and type(y) is str:
        size = len(x) + len(y)
        if size > UNCHECKED:
            check_string(size, "`+`")
        return x + y
    return arith("+", x, y)


def build_string(parts: list) -> str:
    """BUILD_STRING (interpolation): the pieces, shown as `display` shows them."""
    pieces = [p if type(p) is str else display(p) for p in parts]
    size = 0
    for piece in pieces:
        size += len(piece)
    if size > UNCHECKED:
        check_string(size, "string interpolation")
    return "".join(pieces)


def arith(op: str, x: Any, y: Any) -> Any:
    tx, ty = type(x), type(y)
    if tx is int and ty is int:
        if op == "/":
            if y == 0:
                raise ConcertoError("division by zero", "ArithmeticError")
            q = abs(x) // abs(y)
            r = q if (x >= 0) == (y >= 0) else -q
        elif op == "%":
            if y == 0:
                raise ConcertoError("remainder by zero", "ArithmeticError")
            r = abs(x) % abs(y)
            r = r if x >= 0 else -r
        elif op == "+":
            r = x + y
        elif op == "-":
            r = x - y
        else:
            r = x * y
        if not INT_MIN <= r <= INT_MAX:
            raise ConcertoError(f"integer overflow in `{op}`", "OverflowError")
        return r
    if tx in (int, float) and ty in (int, float):
        fx, fy = float(x), float(y)
        if op == "+":
            return fx + fy
        if op == "-":
            return fx - fy
        if op == "*":
            return fx * fy
        if op == "/":
            if fy == 0.0:
                if fx == 0.0 or math.isnan(fx):
                    return math.nan
                return math.copysign(math.inf, fx) * math.copysign(1.0, fy)
            return fx / fy
        if fy == 0.0:
            return math.nan
        return math.fmod(fx, fy)
    if op == "+" and tx is str and ty is str:
        return add_values(x, y)
    raise ConcertoError(f"cannot apply `{op}` to {type_name(x)} and {type_name(y)}", "TypeError")


def compare(op: str, x: Any, y: Any) -> bool:
    tx, ty = type(x), type(y)
    ok = (tx in (int, float) and ty in (int, float)) or (tx is ty and tx in (str, bool))
    if not ok:
        raise ConcertoError(f"cannot compare {type_name(x)} with {type_name(y)} using `{op}`", "TypeError")
    if op == "<":
        return x < y
    if op == ">":
        return x > y
    if op == "<=":
        return x <= y
    return x >= y


def map_key(k: Any) -> Any:
    """The dict key under which map key `k` is stored (see values.stored_key)."""
    t = type(k)
    if t is str or t is int:
        return k
    if t is bool:
        return stored_key(k)
    raise ConcertoError(f"a {type_name(k)} cannot be a Map key (keys are String, Int or Bool)", "TypeError")


def map_insert(d: dict, key: Any, value: Any) -> None:
    """`d[key] = value` for a Concerto map: checks the key and the size cap."""
    k = map_key(key)
    if len(d) >= UNCHECKED and k not in d:
        check_collection(len(d) + 1, "Map insert")
    d[k] = value


def field_get(obj: Any, name: str) -> Any:
    if type(obj) is dict:
        if name in obj:
            return obj[name]
        raise ConcertoError(f"map has no key `{name}`", "KeyError")
    if type(obj) is EnumValue and isinstance(obj.data, dict) and name in obj.data:
        return obj.data[name]
    getter = getattr(obj, "concerto_field", None)
    if getter is not None:
        return getter(name)
    raise ConcertoError(f"{type_name(obj)} has no field `{name}`", "TypeError")


def index_get(obj: Any, idx: Any) -> Any:
    t = type(obj)
    if t is list or t is tuple or t is str:
        if type(idx) is not int:
            raise ConcertoError(f"index must be an Int, found {type_name(idx)}", "TypeError")
        if not 0 <= idx < len(obj):
            kind = {list: "Array", tuple: "Tuple", str: "String"}[t]
            raise ConcertoError(f"{kind} index {idx} out of range for length {len(obj)}", "IndexError")
        return obj[idx]
    if t is dict:
        k = map_key(idx)
        if k in obj:
            return obj[k]
        raise ConcertoError(f"key {display(idx)!s} not found in map", "KeyError")
    raise ConcertoError(f"cannot index into {type_name(obj)}", "TypeError")


def index_set(obj: Any, idx: Any, value: Any) -> None:
    t = type(obj)
    if t is list:
        if type(idx) is not int:
            raise ConcertoError(f"index must be an Int, found {type_name(idx)}", "TypeError")
        if not 0 <= idx < len(obj):
            raise ConcertoError(f"Array index {idx} out of range for length {len(obj)}", "IndexError")
        obj[idx] = value
    elif t is dict:
        map_insert(obj, idx, value)
    else:
        raise ConcertoError(f"cannot assign into {type_name(obj)} by index", "TypeError")


def slice_value(obj: Any, lo: Any, hi: Any, mode: Any) -> Any:
    if type(obj) not in (list, str, tuple):
        raise ConcertoError(f"cannot slice {type_name(obj)}", "TypeError")
    n = len(obj)
    if mode == "rest":  # array patterns: `[a, ..rest, z]` (hi counts from the end)
        return obj[lo:hi] if hi is not None else obj[lo:]
    start = 0 if lo is None else lo
    if type(start) is not int or (hi is not None and type(hi) is not int):
        raise ConcertoError("slice bounds must be Int", "TypeError")
    end = n if hi is None else (hi + 1 if mode else hi)
    if not 0 <= start <= end <= n:
        raise ConcertoError(f"slice {start}..{end} out of range for length {n}", "IndexError")
    return obj[start:end]


def iterate(v: Any) -> Any:
    t = type(v)
    if t is list or t is range or t is str or t is tuple:
        return iter(v)
    if t is dict:
        return iter(map_items(v))
    lazy = getattr(v, "concerto_iter", None)
    if lazy is not None:
        return lazy()
    to_array = getattr(v, "to_list", None)
    if to_array is not None:
        return iter(to_array())
    if hasattr(v, "__iter__") and getattr(v, "concerto_type", None):
        return iter(list(v))
    raise ConcertoError(f"cannot iterate over {type_name(v)}", "TypeError")


def check_iterator(v: Any) -> None:
    """ITER_NEXT raised TypeError: a fault when it was handed something
    ITER_INIT never made (IR from elsewhere); otherwise the caller re-raises."""
    if not hasattr(v, "__next__"):
        raise ConcertoError(f"ITER_NEXT needs an iterator (made by ITER_INIT), found {type_name(v)}", "TypeError")


def is_variant(v: Any, enum: str, variant: str) -> bool:
    if enum == "Option":
        if variant == "Some":
            return type(v) is Some
        return v is NONE or v is None
    if enum == "Result":
        return type(v) is (Ok if variant == "Ok" else Err)
    return type(v) is EnumValue and v.enum_name == enum and v.variant == variant


def is_type(v: Any, name: str) -> bool:
    actual = type_name(v)
    if actual == name:
        return True
    if name == "Any":
        return True
    if name == "Error":
        return isinstance(v, StructValue) and "message" in v.fields
    if name == "RuntimeError":
        return isinstance(v, StructValue) and v.type_name in FAULT_KINDS
    return False


def cast(v: Any, target: str) -> Any:
    t = type(v)
    if target == "Float":
        if t is int or t is float:
            return float(v)
    elif target == "Int":
        if t is int:
            return v
        if t is float:
            if math.isnan(v) or math.isinf(v):
                raise ConcertoError(f"cannot cast {display(v)} to Int", "ArithmeticError")
            r = int(v)
            if not INT_MIN <= r <= INT_MAX:
                raise ConcertoError("cast to Int overflows", "OverflowError")
            return r
    elif target == "String":
        return display(v)
    elif target == "Any" or is_type(v, target) or target.split("<")[0] == type_name(v):
        return v
    raise ConcertoError(f"cannot cast {type_name(v)} as {target}", "TypeError")


def negate(v: Any) -> Any:
    if type(v) is int:
        if v == INT_MIN:
            raise ConcertoError("integer overflow in negation", "OverflowError")
        return -v
    if type(v) is float:
        return -v
    raise ConcertoError(f"cannot negate a value of type {type_name(v)}", "TypeError")


def not_bool(v: Any) -> bool:
    if type(v) is not bool:
        raise ConcertoError(f"`!` needs a Bool, found {type_name(v)}", "TypeError")
    return not v


def overflow(sym: str) -> None:
    raise ConcertoError(f"integer overflow in `{sym}`", "OverflowError")


def copy_value(v: Any) -> Any:
    """COPY: a fresh container for value semantics on assignment."""
    t = type(v)
    if t is list:
        return list(v)
    if t is dict:
        return dict(v)
    if t is StructValue:
        return v.copy()
    return v


def field_set(obj: Any, name: str, value: Any) -> None:
    if type(obj) is StructValue:
        if name not in obj.fields:
            raise ConcertoError(f"`{obj.type_name}` has no field `{name}`", "TypeError")
        obj.fields[name] = value
    elif type(obj) is dict:
        map_insert(obj, name, value)
    else:
        raise ConcertoError(f"cannot set field `{name}` on {type_name(obj)}", "TypeError")


def build_range(lo: Any, hi: Any, inclusive: Any) -> range:
    if lo is None:
        lo = 0
    if hi is None:
        raise ConcertoError("a range needs an end here", "RuntimeError")
    if type(lo) is not int or type(hi) is not int:
        raise ConcertoError("range bounds must be Int", "TypeError")
    return range(lo, hi + 1 if inclusive else hi)


def variant_field(v: Any, index: Any) -> Any:
    t = type(v)
    if t is Some or t is Ok or t is Err:
        return v.value
    if t is EnumValue:
        data = v.data
        # A tuple variant is read by position, a struct variant by field name.
        if type(data) is tuple and type(index) is int and 0 <= index < len(data):
            return data[index]
        if type(data) is dict and index in data:
            return data[index]
    raise ConcertoError(f"{type_name(v)} has no variant data at {index!r}", "TypeError")


def test_len(v: Any, n: int, mode: str) -> bool:
    if mode == "tuple":
        return type(v) is tuple and len(v) == n
    if mode == ">=":
        return type(v) in (list, tuple) and len(v) >= n
    return type(v) in (list, tuple) and len(v) == n


def check_channel(channel: Any) -> str:
    if type(channel) is not str:
        raise ConcertoError(f"emit channel must be a String, found {type_name(channel)}", "TypeError")
    return channel


NONE_FOUND = "`?` found None"


def propagated(v: Any, none_as_err: Any) -> Any:
    """What `?` returns from the function when `v` is not Ok/Some (no try in scope)."""
    if type(v) is Err:
        return v
    if v is NONE:
        return Err(StructValue("RuntimeError", {"message": NONE_FOUND})) if none_as_err else NONE
    raise ConcertoError(f"`?` needs a Result or Option, found {type_name(v)}", "TypeError")


def hashmap_get(d: dict, key: Any) -> Any:
    k = map_key(key)
    return Some(d[k]) if k in d else NONE


def hashmap_set(d: dict, key: Any, value: Any) -> None:
    map_insert(d, key, value)


def hashmap_has(d: dict, key: Any) -> bool:
    return map_key(key) in d


def hashmap_delete(d: dict, key: Any) -> Any:
    k = map_key(key)
    return Some(d.pop(k)) if k in d else NONE
