"""Built-in methods of Int, Float, Bool, Tuple and Range.

The numeric functions double as the std::math functions (see std_math):
`x.abs()` and `math::abs(x)` run the same code.

Int results stay within 64 bits (an overflow is an OverflowError fault);
Float -> Int conversions (round, floor, ceil, to_int) fault on NaN, infinities
and out-of-range values instead of producing a wrong Int.
"""

from __future__ import annotations

import math
from typing import Any

from concerto.stdlib import methods_array  # noqa: F401  (must register Array before Range copies it)
from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.stdlib.support import listed, materialize, type_fault, want_int, want_number
from concerto.vm.values import ConcertoError, check_int, display

Number = int | float
NUMBERS = ("Int", "Float")


def float_to_int(x: float, where: str) -> int:
    if math.isnan(x):
        raise ConcertoError(f"{where}: cannot convert NaN to Int", "RuntimeError")
    if math.isinf(x):
        raise ConcertoError(f"{where}: cannot convert infinity to Int", "RuntimeError")
    return check_int(int(x))


@REGISTRY.method(NUMBERS, "to_string", 0)
def to_string(ctx: NativeContext, x: Number) -> str:
    return display(x)


@REGISTRY.method(NUMBERS, "abs", 0)
def abs_(ctx: NativeContext, x: Number) -> Number:
    # abs(INT_MIN) does not fit in 64 bits.
    if type(want_number(x, "abs")) is int:
        return check_int(abs(x))
    return abs(x)


@REGISTRY.method(NUMBERS, "min", 1)
def _less(a: Any, b: Any, where: str) -> bool:
    """The `<` of the language: numbers with numbers, Strings with Strings,
    Bools with Bools (Python would also order `true` against 1)."""
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float) or (ta is tb and (ta is str or ta is bool)):
        return a < b
    odd = b if ta in (int, float, str, bool) else a
    raise type_fault(where, "two values of the same type", odd)


@REGISTRY.method(NUMBERS, "min", 1)
def min_(ctx: NativeContext, a: Any, b: Any) -> Any:
    return b if _less(b, a, "min") else a


@REGISTRY.method(NUMBERS, "max", 1)
def max_(ctx: NativeContext, a: Any, b: Any) -> Any:
    return b if _less(a, b, "max") else a


@REGISTRY.method(NUMBERS, "clamp", 2)
def clamp(ctx: NativeContext, x: Any, lo: Any, hi: Any) -> Any:
    _less(x, lo, "clamp")
    _less(x, hi, "clamp")
    if _less(hi, lo, "clamp"):
        raise ConcertoError(f"clamp: lower bound {display(lo)} is above upper bound {display(hi)}", "RuntimeError")
    return lo if _less(x, lo, "clamp") else hi if _less(hi, x, "clamp") else x


@REGISTRY.method(NUMBERS, "round", 0)
def round_(ctx: NativeContext, x: Number) -> int:
    """Nearest Int, halves away from zero (2.5 -> 3, -2.5 -> -3) as in Rust;
    Python's round() would give 2 (banker's rounding)."""
    if type(want_number(x, "round")) is int:
        return x
    if math.isnan(x) or math.isinf(x):
        return float_to_int(x, "round")
    magnitude = abs(x)
    whole = math.floor(magnitude)
    # magnitude - whole is exact in binary floating point, so the 0.5 test is too.
    if magnitude - whole >= 0.5:
        whole += 1
    return check_int(whole if x >= 0 else -whole)


@REGISTRY.method(NUMBERS, "floor", 0)
def floor(ctx: NativeContext, x: Number) -> int:
    if type(want_number(x, "floor")) is int:
        return x
    return float_to_int(math.floor(x) if math.isfinite(x) else x, "floor")


@REGISTRY.method(NUMBERS, "ceil", 0)
def ceil(ctx: NativeContext, x: Number) -> int:
    if type(want_number(x, "ceil")) is int:
        return x
    return float_to_int(math.ceil(x) if math.isfinite(x) else x, "ceil")


@REGISTRY.method(NUMBERS, "pow", 1)
def pow_(ctx: NativeContext, base: Number, exp: Number) -> Number:
    """Int ** Int is an Int (a negative exponent is a fault: the result would
    not be an Int); any Float operand gives a Float."""
    want_number(base, "pow")
    want_number(exp, "pow")
    if type(base) is int and type(exp) is int:
        if exp < 0:
            raise ConcertoError(f"pow: negative exponent {exp} for an Int base", "RuntimeError")
        # Any base of magnitude >= 2 overflows 64 bits by exponent 64; stop
        # before Python builds a gigantic integer.
        if exp > 64 and abs(base) > 1:
            raise ConcertoError("integer overflow", "OverflowError")
        return check_int(base**exp)
    b, e = float(base), float(exp)
    try:
        return math.pow(b, e)
    except OverflowError:
        negative = b < 0 and e.is_integer() and int(e) % 2 == 1
        return -math.inf if negative else math.inf
    except ValueError:
        # 0 ** negative is +inf under IEEE; a negative base with a fractional
        # exponent has no real result.
        return math.inf if b == 0 else math.nan


@REGISTRY.method(NUMBERS, "sqrt", 0)
def sqrt(ctx: NativeContext, x: Number) -> float:
    """Square root as a Float; a negative argument gives NaN (IEEE), not a fault."""
    value = float(want_number(x, "sqrt"))
    return math.sqrt(value) if value >= 0 else math.nan


@REGISTRY.method(NUMBERS, "to_float", 0)
def to_float(ctx: NativeContext, x: Number) -> float:
    return float(want_number(x, "to_float"))


@REGISTRY.method(NUMBERS, "to_int", 0)
def to_int(ctx: NativeContext, x: Number) -> int:
    """Truncates toward zero, like `as Int`."""
    if type(want_number(x, "to_int")) is int:
        return x
    return float_to_int(x, "to_int")


@REGISTRY.method("Float", "is_nan", 0)
def is_nan(ctx: NativeContext, x: float) -> bool:
    return math.isnan(want_number(x, "is_nan"))


@REGISTRY.method("Float", "is_finite", 0)
def is_finite(ctx: NativeContext, x: float) -> bool:
    return math.isfinite(want_number(x, "is_finite"))


@REGISTRY.method("Float", "is_infinite", 0)
def is_infinite(ctx: NativeContext, x: float) -> bool:
    return math.isinf(want_number(x, "is_infinite"))


@REGISTRY.method("Int", "is_even", 0)
def is_even(ctx: NativeContext, x: int) -> bool:
    return want_int(x, "is_even") % 2 == 0


@REGISTRY.method("Int", "is_odd", 0)
def is_odd(ctx: NativeContext, x: int) -> bool:
    return want_int(x, "is_odd") % 2 == 1


# --- Bool, Tuple, Range ----------------------------------------------------


@REGISTRY.method("Bool", "to_string", 0)
def bool_to_string(ctx: NativeContext, b: bool) -> str:
    return display(b)


@REGISTRY.method("Tuple", "len", 0)
def tuple_len(ctx: NativeContext, t: tuple) -> int:
    if type(t) is not tuple:
        raise type_fault("Tuple.len", "a Tuple", t)
    return len(t)


@REGISTRY.method("Tuple", "to_string", 0)
def tuple_to_string(ctx: NativeContext, t: tuple) -> str:
    return display(t)


@REGISTRY.method("Range", "to_array", 0)
def range_to_array(ctx: NativeContext, r: range) -> list[int]:
    if type(r) is not range:
        raise type_fault("Range.to_array", "a Range", r)
    return listed(materialize(r, "Range.to_array"))


@REGISTRY.method("Range", "to_string", 0)
def range_to_string(ctx: NativeContext, r: range) -> str:
    return display(r)


# A Range reads like a lazy Array of Ints: the read-only Array methods work on
# it unchanged and hand back real Arrays.
for _name in (
    "len", "is_empty", "contains", "get", "first", "last", "index_of",
    "map", "filter", "reduce", "fold", "for_each", "find", "find_index",
    "any", "all", "count", "flat_map", "partition", "enumerate", "join",
    "zip", "take", "skip", "chunks", "reversed", "sum", "min", "max",
):
    REGISTRY.methods.setdefault("Range", {})[_name] = REGISTRY.methods["Array"][_name]
