"""Every native function and built-in method, fed random runtime values
(issue 11, point 12).

Each call must return a value or raise ConcertoError (a Concerto fault the
program can catch); any other exception is a bug that would otherwise
surface as an internal error. Calls go through the machine the VM uses: a
real Machine is the context (closures run in the VM), a method is found and
its arguments counted by `Machine._call_method` as for a receiver typed Any,
a function's by Native.call, and the counts range below and above each
native's bounds. Results must respect the caps: nothing built is
larger than the caps or than the largest input.
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concerto.stdlib import load
from concerto.stdlib.builtins import Panic
from concerto.stdlib.registry import Native
from concerto.stdlib.std_collections import QueueValue, SetValue, StackValue
from concerto.vm import limits
from concerto.vm.limits import ResourceLimits
from concerto.vm.llm_values import MemoryStore, ModelRef
from concerto.vm.machine import Machine, RunConfig
from concerto.vm.operators import as_fault, map_key
from concerto.vm.values import (
    INT_MAX,
    INT_MIN,
    NONE,
    Closure,
    ConcertoError,
    EnumValue,
    Err,
    Ok,
    Some,
    StructValue,
    type_name,
)
from conftest import load_program

REG = load()
CAP = 50_000
CAPS = ResourceLimits(max_string_length=CAP, max_collection_size=CAP)
CALL_BUDGET = 2_000  # closure calls per native call: a Range of 10**12 must not be walked


class Budget(ConcertoError):
    pass


class FuzzMachine(Machine):
    """The VM as natives see it, with the outside world stubbed: no sleeping,
    no logging, and a bound on closure calls (the stand-in for a timeout)."""

    calls = 0

    def call(self, function: Any, *args: Any) -> Any:
        FuzzMachine.calls += 1
        if FuzzMachine.calls > CALL_BUDGET:
            raise Budget("call budget spent", "RuntimeError")
        return super().call(function, *args)

    def sleep(self, ms: int) -> None:
        pass


PROGRAM = load_program("""
struct Point { x: Int, y: Int }
fn ident(x: Any) -> Any { x }
fn always(x: Any) -> Bool { true }
fn never(x: Any) -> Bool { false }
fn first(a: Any, b: Any) -> Any { a }
fn fault(x: Any) -> Any { let xs = [1]; xs[5] }
fn nothing() -> Any { nil }
fn main() {}
""")
MACHINE = FuzzMachine(PROGRAM, on_log=lambda level, message: None, config=RunConfig(max_call_depth=200))


def closure(name: str) -> Closure:
    return Closure(PROGRAM.functions[name], (), None, name)


CLOSURES = [closure(n) for n in ("ident", "always", "never", "first", "fault", "nothing")]

# --- values ---------------------------------------------------------------------

EDGE_INTS = [0, 1, -1, 2, 7, 64, 65, 1023, 1024, 2**31, -(2**31), 2**53 + 1, INT_MAX, INT_MIN, INT_MAX - 1,
             INT_MIN + 1]
ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers(INT_MIN, INT_MAX), st.integers(-3, 40))
floats = st.one_of(st.sampled_from([0.0, -0.0, 0.5, -2.5, 1e308, -1e308, 5e-324, math.inf, -math.inf, math.nan]),
                   st.floats(allow_nan=True, allow_infinity=True))
SPECIAL_TEXT = ["", " ", "a,b,,c", "  x  y ", "ß", "ﬃ", "é\u0301", "😀", "\ud800", "a\ud800b", "\n\r\n", "{}",
                "{0} {1} {}", "{{x}} ${x}", "[1, 2]", '{"a": [1, {"b": null}]}', "9" * 25, "-" + "0" * 30 + "1",
                "1" * 5000, "1" * 4000 + "x", "1.5e308", "nan", "-inf", "1_000", "0x10", "x" * 60_000,
                "[" * 3000, "\\", '"', "\t\u00a0\u2028"]
texts = st.one_of(st.sampled_from(SPECIAL_TEXT), st.text(max_size=12))
scalars = st.one_of(ints, floats, texts, st.booleans(), st.none(), st.just(NONE))
RANGES = [range(0, 0), range(0, 5), range(-3, 3), range(5, 2), range(0, 10**12), range(INT_MIN, INT_MAX + 1),
          range(INT_MAX - 2, INT_MAX + 1)]


def _compound(children: st.SearchStrategy) -> st.SearchStrategy:
    keys = st.one_of(st.text(max_size=3), st.integers(-3, 3), st.booleans())
    return st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(keys, children, max_size=4).map(lambda d: {map_key(k): v for k, v in d.items()}),
        children.map(Some), children.map(Ok), children.map(Err),
        st.tuples(ints, ints).map(lambda p: StructValue("Point", {"x": p[0], "y": p[1]})),
        children.map(lambda v: StructValue("ParseError", {"message": "bad", "extra": v})),
        st.tuples(children).map(lambda d: EnumValue("Shape", "Circle", d)),
        children.map(lambda v: EnumValue("Shape", "Rect", {"w": v})),
        st.lists(children, max_size=4).map(lambda xs: SetValue([x for x in xs if _hashable(x)])),
        st.lists(children, max_size=4).map(QueueValue),
        st.lists(children, max_size=4).map(StackValue),
    )


def _hashable(v: Any) -> bool:
    try:
        SetValue([v])
    except ConcertoError:
        return False
    return True


values = st.one_of(
    st.recursive(scalars, _compound, max_leaves=8),
    st.sampled_from(RANGES),
    st.sampled_from(CLOSURES),
    # Fresh copies: a native may change its argument (push, insert, sort, ...).
    st.sampled_from([[0] * 3000, list(range(100)), ["b"] * 200, [[1, 2]] * 50, {"k": 1},
                     {map_key(True): 1, 1: 2}]).map(copy.deepcopy),
)

RECEIVERS: dict[str, st.SearchStrategy] = {
    "String": texts,
    "Int": ints,
    "Float": floats,
    "Bool": st.booleans(),
    "Array": st.one_of(st.lists(values, max_size=5), st.sampled_from([[3, 1, 2], ["b", "a"], [1, 2.5, -1],
                                                                       [[1], [2, 3]], [True, 1], []])),
    "Map": st.dictionaries(st.text(max_size=3), values, max_size=4),
    "Tuple": st.lists(values, max_size=3).map(tuple),
    "Range": st.sampled_from(RANGES),
    "Option": st.one_of(values.map(Some), st.just(NONE)),
    "Result": st.one_of(values.map(Ok), values.map(Err), st.just(Err(StructValue("E", {"message": "m"})))),
    "Set": st.lists(scalars, max_size=5).map(SetValue),
    "Queue": st.lists(values, max_size=4).map(QueueValue),
    "Stack": st.lists(values, max_size=4).map(StackValue),
    "Memory": st.sampled_from([None, 2]).map(lambda n: MemoryStore("m", n)),
    "Model": st.just(ModelRef("M")),
    "ModelBuilder": st.just(ModelRef("M")),
}

ARG_HINTS = st.one_of(values, st.sampled_from(["system", "user", "Point", ",", "", "{}", "a"]), ints)


def footprint(v: Any, depth: int = 0) -> int:
    """The longest String or collection inside v."""
    if depth > 50:
        return 0
    t = type(v)
    if t is str:
        return len(v)
    if t in (list, tuple):
        return max([len(v), *(footprint(x, depth + 1) for x in v[:200])])
    if t is dict:
        return max([len(v), *(footprint(x, depth + 1) for x in list(v.values())[:200])])
    if t in (Some, Ok, Err):
        return footprint(v.value, depth + 1)
    if t is StructValue:
        return footprint(v.fields, depth + 1)
    if t is SetValue:
        return footprint(list(v.items.values()), depth + 1)
    if t in (QueueValue, StackValue):
        return footprint(list(v.items), depth + 1)
    return 0


# --- the calls --------------------------------------------------------------------

METHODS = [(tname, name, native) for tname, table in sorted(REG.methods.items()) for name, native in sorted(table.items())]
FUNCTIONS = sorted(REG.functions.items())
# CONCERTO_FUZZ_EXAMPLES raises the count for a longer hunt than CI's budget.
FUZZ = settings(max_examples=int(os.environ.get("CONCERTO_FUZZ_EXAMPLES", "25")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


def counts(native: Native) -> st.SearchStrategy:
    hi = native.max_args if native.max_args is not None else native.min_args + 3
    return st.integers(max(0, native.min_args - 1), hi + 1)


def check(native: Native, args: tuple, call: Any) -> None:
    FuzzMachine.calls = 0
    try:
        with limits.applied(CAPS):
            result = call()
    except Panic:
        assert native.name == "panic", f"{native.name} panicked"
        return
    except Exception as exc:  # noqa: BLE001 - the point of the test
        # What the VM turns into a Concerto fault (ConcertoError; RecursionError
        # from data nested too deep) is fine; anything else is a bug.
        if as_fault(exc) is None:
            pytest.fail(f"{native.name}{_show(args)} raised {type(exc).__name__}: {exc}")
        return
    assert footprint(result) <= max(CAP, *(footprint(a) for a in args), 0), \
        f"{native.name}{_show(args)} built a value over the caps"


def _show(args: tuple) -> str:
    return "(" + ", ".join(repr(a)[:60] for a in args) + ")"


@pytest.mark.parametrize(("tname", "name", "native"), METHODS, ids=[f"{t}.{n}" for t, n, _ in METHODS])
@FUZZ
@given(data=st.data())
def test_methods_return_or_fault(tname: str, name: str, native: Native, data: st.DataObject) -> None:
    odd = data.draw(st.integers(0, 9), label="odd receiver") == 0  # any value, as through Any
    receiver = data.draw(values if odd else RECEIVERS.get(tname, values), label="receiver")
    n = data.draw(counts(native), label="count")
    args = tuple(data.draw(st.lists(ARG_HINTS, min_size=n, max_size=n), label="args"))
    if type_name(receiver) == tname:
        # The VM's own path: the method found by the receiver's type, its arity checked.
        def call() -> Any:
            target = MACHINE._call_method(receiver, name, len(args))
            assert target is native.fn
            return target(MACHINE, receiver, *args)
    else:  # a receiver dispatch would never pick: the native must still hold up
        def call() -> Any:
            return native.call(MACHINE, receiver, *args)
    check(native, (receiver, *args), call)


@pytest.mark.parametrize(("path", "native"), FUNCTIONS, ids=[p for p, _ in FUNCTIONS])
@FUZZ
@given(data=st.data())
def test_functions_return_or_fault(path: str, native: Native, data: st.DataObject) -> None:
    n = data.draw(counts(native), label="count")
    args = tuple(data.draw(st.lists(ARG_HINTS, min_size=n, max_size=n), label="args"))
    check(native, args, lambda: native.call(MACHINE, *args))


def test_wrong_argument_counts_are_type_faults() -> None:
    split = REG.methods["String"]["split"]
    with pytest.raises(ConcertoError) as info:
        split.call(MACHINE, "a b", ",", "extra")
    assert info.value.kind == "TypeError"
    assert info.value.message == "method `split` takes 0 to 1 argument(s), 2 given"
    with pytest.raises(ConcertoError) as info:
        REG.functions["std::math::abs"].call(MACHINE)
    assert info.value.message == "function `std::math::abs` takes 1 argument(s), 0 given"


# --- the operators both tiers share (vm/operators.py) ------------------------------

from concerto.vm import operators as ops  # noqa: E402
from concerto.vm.values import debug, display, to_json, values_equal  # noqa: E402

OPERATIONS = {
    "add": lambda d: ops.add_values(d(values), d(values)),
    "arith": lambda d: ops.arith(d(st.sampled_from("+-*/%")), d(values), d(values)),
    "compare": lambda d: ops.compare(d(st.sampled_from(["<", ">", "<=", ">="])), d(values), d(values)),
    "equal": lambda d: values_equal(d(values), d(values)),
    "index_get": lambda d: ops.index_get(d(values), d(values)),
    "index_set": lambda d: ops.index_set(d(values), d(values), d(values)),
    "field_get": lambda d: ops.field_get(d(values), d(texts)),
    "field_set": lambda d: ops.field_set(d(values), d(texts), d(values)),
    "slice": lambda d: ops.slice_value(d(values), d(st.one_of(st.none(), values)), d(st.one_of(st.none(), values)),
                                       d(st.sampled_from([None, True, False]))),
    "cast": lambda d: ops.cast(d(values), d(st.sampled_from(["Int", "Float", "String", "Bool", "Any", "Point",
                                                             "Array<Int>", "Option", "Error", "RuntimeError"]))),
    "negate": lambda d: ops.negate(d(values)),
    "not": lambda d: ops.not_bool(d(values)),
    "range": lambda d: ops.build_range(d(values), d(values), d(st.booleans())),
    "iterate": lambda d: list(zip(range(50), ops.iterate(d(values)))),
    "map_key": lambda d: ops.map_key(d(values)),
    "hashmap": lambda d: [ops.hashmap_set(m := {}, d(values), 1), ops.hashmap_get(m, d(values)),
                          ops.hashmap_has(m, d(values)), ops.hashmap_delete(m, d(values))],
    "build_string": lambda d: ops.build_string(d(st.lists(values, max_size=4))),
    "copy": lambda d: ops.copy_value(d(values)),
    "variant_field": lambda d: ops.variant_field(d(values), d(st.integers(0, 2))),
    "test_len": lambda d: ops.test_len(d(values), d(st.integers(0, 3)), d(st.sampled_from(["tuple", ">=", "=="]))),
    "propagated": lambda d: ops.propagated(d(values), d(st.booleans())),
    "channel": lambda d: ops.check_channel(d(values)),
    "is_variant": lambda d: ops.is_variant(d(values), d(st.sampled_from(["Option", "Result", "Shape"])),
                                           d(st.sampled_from(["Some", "None", "Ok", "Err", "Circle"]))),
    "render": lambda d: (display(v := d(values)), debug(v), to_json(v)),
}


@pytest.mark.parametrize("name", sorted(OPERATIONS))
@FUZZ
@given(data=st.data())
def test_operators_return_or_fault(name: str, data: st.DataObject) -> None:
    try:
        with limits.applied(CAPS):
            OPERATIONS[name](data.draw)
    except Exception as exc:  # noqa: BLE001 - the point of the test
        if as_fault(exc) is None:
            pytest.fail(f"operator {name} raised {type(exc).__name__}: {exc}")


def test_only_concerto_faults_are_faults() -> None:
    """A stray Python exception is a runtime bug, never a catchable program error."""
    fault = ConcertoError("m", "IndexError")
    assert as_fault(fault) is fault
    deep = as_fault(RecursionError())
    assert deep is not None and deep.kind == "RuntimeError" and deep.message.startswith("call depth exceeded")
    for bug in (TypeError("x"), ValueError("x"), KeyError("x"), ZeroDivisionError(), OverflowError(),
                AttributeError("x"), MemoryError()):
        assert as_fault(bug) is None, type(bug).__name__
