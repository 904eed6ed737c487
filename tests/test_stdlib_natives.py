"""The native standard library, driven directly through the registry.

A fake context stands in for the VM: `ctx.call` invokes plain Python
functions where the machine would run a Concerto closure. Every call goes
through `fn`/`meth`, which also check the registered arity, and the last test
checks that every registered native was exercised.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from typing import Any

import pytest

from types import SimpleNamespace

from concerto.stdlib import load
from concerto.vm.environment import EnvironmentGate
from concerto.stdlib.registry import error_value
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
    debug,
    display,
    to_json,
    type_name,
)

REG = load()
CALLED: set[str] = set()


class FakeCtx:
    # std::env reads through the run's gate (vm/environment.py); this one grants everything.
    config = SimpleNamespace(environment=EnvironmentGate.build(os.environ, allow=["*"]))

    def __init__(self) -> None:
        self.logs: list[tuple[str, str]] = []
        self.slept: list[int] = []

    def call(self, function: Any, *args: Any) -> Any:
        return function(*args)

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def emit(self, channel: str, payload: Any) -> None:
        raise AssertionError("no native should emit")

    def sleep(self, ms: int) -> None:
        self.slept.append(ms)

    def convert(self, value: Any, type_name: str) -> Any:
        # Enough of the real conversion for parse_as: a struct of two Ints.
        assert type_name == "Point"
        if not isinstance(value, dict) or type(value.get("x")) is not int or type(value.get("y")) is not int:
            raise ConcertoError("field `x` of Point expects Int", "TypeError")
        return StructValue("Point", {"x": value["x"], "y": value["y"]})


CTX = FakeCtx()


def _check_arity(native: Any, count: int) -> None:
    hi = native.max_args
    assert native.min_args <= count and (hi is None or count <= hi), (native.name, count)


def fn(path: str, *args: Any, ctx: FakeCtx = CTX) -> Any:
    native = REG.functions[path]
    _check_arity(native, len(args))
    CALLED.add(path)
    return native.fn(ctx, *args)


def meth(type_name_: str, name: str, receiver: Any, *args: Any, ctx: FakeCtx = CTX) -> Any:
    native = REG.methods[type_name_][name]
    _check_arity(native, len(args))
    CALLED.add(f"{type_name_}.{name}")
    return native.fn(ctx, receiver, *args)


def raises(kind: str, pattern: str, call: Any) -> ConcertoError:
    """Expect a ConcertoError of `kind` whose message matches `pattern`."""
    with pytest.raises(ConcertoError, match=pattern) as info:
        call()
    assert info.value.kind == kind
    return info.value


# --- String ----------------------------------------------------------------

STRING_CASES = [
    ("len", "héllo", (), 5),
    ("len", "", (), 0),
    ("is_empty", "", (), True),
    ("is_empty", " ", (), False),
    ("to_upper", "straße", (), "STRASSE"),
    ("to_lower", "HeLLo", (), "hello"),
    ("trim", "  hi \n", (), "hi"),
    ("trim_start", "  hi  ", (), "hi  "),
    ("trim_end", "  hi  ", (), "  hi"),
    ("contains", "hello", ("ell",), True),
    ("contains", "hello", ("xyz",), False),
    ("starts_with", "hello", ("he",), True),
    ("ends_with", "hello", ("lo",), True),
    ("ends_with", "hello", ("he",), False),
    ("split", "a,b,,c", (",",), ["a", "b", "", "c"]),
    ("split", "  a  b\tc ", (), ["a", "b", "c"]),
    ("split", "abc", ("",), ["a", "b", "c"]),
    ("replace", "a-b-c", ("-", "+"), "a+b+c"),
    ("repeat", "ab", (3,), "ababab"),
    ("repeat", "ab", (0,), ""),
    ("reverse", "añb", (), "bña"),
    ("chars", "añ", (), ["a", "ñ"]),
    ("lines", "a\r\nb\n\nc\n", (), ["a", "b", "", "c"]),
    ("lines", "", (), []),
    ("to_string", "x", (), "x"),
    ("substring", "hello", (1, 4), "ell"),
    ("substring", "hello", (2,), "llo"),
    ("substring", "hello", (3, 99), "lo"),
    ("substring", "hello", (4, 2), ""),
    ("substring", "hello", (-3, 2), "he"),
    ("substring", "日本語です", (1, 3), "本語"),
    ("index_of", "hello", ("l",), Some(2)),
    ("index_of", "日本語", ("語",), Some(2)),
    ("index_of", "hello", ("z",), NONE),
    ("last_index_of", "hello", ("l",), Some(3)),
    ("last_index_of", "hello", ("z",), NONE),
    ("get", "añb", (1,), Some("ñ")),
    ("get", "abc", (3,), NONE),
    ("get", "abc", (-1,), NONE),
    ("count", "banana", ("an",), 2),
    ("parse_int", " -42 ", (), Ok(-42)),
    ("parse_int", "+7", (), Ok(7)),
    ("parse_float", "2.5e3", (), Ok(2500.0)),
    ("parse_float", "3", (), Ok(3.0)),
    ("parse_float", ".5", (), Ok(0.5)),
]


@pytest.mark.parametrize(("name", "receiver", "args", "expected"), STRING_CASES)
def test_string_methods(name: str, receiver: str, args: tuple, expected: Any) -> None:
    result = meth("String", name, receiver, *args)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize("text", ["abc", "1.5", "", "1_000", "0x10", "12a", "true"])
def test_parse_int_rejects_non_integers(text: str) -> None:
    result = meth("String", "parse_int", text)
    assert type(result) is Err
    assert result.value.type_name == "ParseError"
    assert "invalid integer" in result.value.fields["message"]


def test_parse_int_out_of_range_and_parse_float_errors() -> None:
    assert meth("String", "parse_int", str(INT_MAX)) == Ok(INT_MAX)
    too_big = meth("String", "parse_int", str(INT_MAX + 1))
    assert too_big.value == error_value("ParseError", f'integer out of range: "{INT_MAX + 1}"')
    bad = meth("String", "parse_float", "1.2.3")
    assert bad == Err(error_value("ParseError", 'invalid float: "1.2.3"'))
    assert math.isnan(meth("String", "parse_float", "NaN").value)
    assert meth("String", "parse_float", "-inf").value == -math.inf


def test_string_argument_faults() -> None:
    raises("RuntimeError", "non-negative", lambda: meth("String", "repeat", "a", -1))
    raises("TypeError", "expects an Int, got Bool", lambda: meth("String", "repeat", "a", True))
    raises("TypeError", "expects a String, got Int", lambda: meth("String", "contains", "a", 1))


# --- std::string -------------------------------------------------------------


def test_std_string_functions_mirror_methods() -> None:
    assert fn("std::string::split", "a,b,c", ",") == ["a", "b", "c"]
    assert fn("std::string::join", ["a", "b", "c"], ",") == "a,b,c"
    assert fn("std::string::join", [1, 2.0, True], "-") == "1-2.0-true"
    assert fn("std::string::trim", "  hello  ") == "hello"
    assert fn("std::string::trim_start", "  x ") == "x "
    assert fn("std::string::trim_end", " x  ") == " x"
    assert fn("std::string::replace", "hello world", "world", "Concerto") == "hello Concerto"
    assert fn("std::string::to_upper", "hello") == "HELLO"
    assert fn("std::string::to_lower", "HELLO") == "hello"
    assert fn("std::string::contains", "hello", "ell") is True
    assert fn("std::string::starts_with", "hello", "hel") is True
    assert fn("std::string::ends_with", "hello", "llo") is True
    assert fn("std::string::substring", "hello", 1, 4) == "ell"
    assert fn("std::string::len", "hello") == 5
    assert fn("std::string::repeat", "-", 3) == "---"
    assert fn("std::string::reverse", "abc") == "cba"
    assert fn("std::string::parse_int", "12") == Ok(12)
    assert fn("std::string::parse_float", "1.25") == Ok(1.25)
    raises("TypeError", "expects an Array", lambda: fn("std::string::join", "abc", ","))


# --- Array -------------------------------------------------------------------


def test_array_access() -> None:
    xs = [10, 20, 30]
    assert meth("Array", "len", xs) == 3
    assert meth("Array", "is_empty", []) is True
    assert meth("Array", "get", xs, 1) == Some(20)
    assert meth("Array", "get", xs, 3) is NONE
    assert meth("Array", "get", xs, -1) is NONE
    assert meth("Array", "first", xs) == Some(10)
    assert meth("Array", "last", xs) == Some(30)
    assert meth("Array", "first", []) is NONE
    assert meth("Array", "last", []) is NONE
    assert meth("Array", "contains", xs, 20) is True
    assert meth("Array", "contains", ["a", "b"], "b") is True
    # Concerto equality: `true` is not `1`.
    assert meth("Array", "contains", [1, 2], True) is False
    assert meth("Array", "index_of", xs, 30) == Some(2)
    assert meth("Array", "index_of", ["a"], "z") is NONE
    assert meth("Array", "index_of", [[1], [2]], [2]) == Some(1)
    assert meth("Array", "to_string", [1, "a", NONE]) == '[1, "a", None]'


def test_array_in_place_changes() -> None:
    xs = [3, 1, 2]
    assert meth("Array", "push", xs, 4) is None
    assert xs == [3, 1, 2, 4]
    assert meth("Array", "pop", xs) == Some(4)
    assert meth("Array", "pop", []) is NONE
    meth("Array", "insert", xs, 0, 9)
    meth("Array", "insert", xs, 4, 8)
    assert xs == [9, 3, 1, 2, 8]
    assert meth("Array", "remove", xs, 1) == 3
    assert xs == [9, 1, 2, 8]
    meth("Array", "extend", xs, [5, 6])
    meth("Array", "extend", xs, range(0, 2))
    assert xs == [9, 1, 2, 8, 5, 6, 0, 1]
    meth("Array", "sort", xs)
    assert xs == [0, 1, 1, 2, 5, 6, 8, 9]
    meth("Array", "reverse", xs)
    assert xs == [9, 8, 6, 5, 2, 1, 1, 0]
    meth("Array", "clear", xs)
    assert xs == []
    for name in ("push", "pop", "insert", "remove", "extend", "clear", "sort", "reverse"):
        assert REG.methods["Array"][name].mutates, name
    assert not REG.methods["Array"]["sorted"].mutates


def test_array_index_faults() -> None:
    raises("IndexError", "Array index 5 out of range for length 3", lambda: meth("Array", "remove", [1, 2, 3], 5))
    raises("IndexError", "Array index 4 out of range for length 3", lambda: meth("Array", "insert", [1, 2, 3], 4, 0))
    raises("TypeError", "cannot be compared", lambda: meth("Array", "sort", [1, "a"]))
    raises("TypeError", "expects an Int", lambda: meth("Array", "get", [1], "0"))


def test_array_higher_order() -> None:
    xs = [1, 2, 3, 4, 5]
    assert meth("Array", "map", xs, lambda x: x * 2) == [2, 4, 6, 8, 10]
    assert meth("Array", "filter", xs, lambda x: x > 3) == [4, 5]
    assert xs == [1, 2, 3, 4, 5]  # neither touched the receiver
    assert meth("Array", "reduce", xs, 0, lambda acc, x: acc + x) == 15
    assert meth("Array", "fold", xs, "", lambda acc, x: acc + str(x)) == "12345"
    seen: list[int] = []
    assert meth("Array", "for_each", xs, seen.append) is None
    assert seen == xs
    assert meth("Array", "find", xs, lambda x: x % 2 == 0) == Some(2)
    assert meth("Array", "find", xs, lambda x: x > 9) is NONE
    assert meth("Array", "find_index", xs, lambda x: x == 4) == Some(3)
    assert meth("Array", "find_index", xs, lambda x: x > 9) is NONE
    assert meth("Array", "any", xs, lambda x: x > 4) is True
    assert meth("Array", "all", xs, lambda x: x > 1) is False
    assert meth("Array", "count", xs) == 5
    assert meth("Array", "count", xs, lambda x: x % 2 == 1) == 3
    assert meth("Array", "flat_map", [1, 2], lambda x: [x, x * 10]) == [1, 10, 2, 20]
    people = [("bo", 30), ("al", 25), ("cy", 30)]
    assert meth("Array", "sort_by", people, lambda p: p[1]) == [("al", 25), ("bo", 30), ("cy", 30)]
    assert people[0] == ("bo", 30)
    assert meth("Array", "partition", xs, lambda x: x < 3) == ([1, 2], [3, 4, 5])


def test_array_derived_arrays() -> None:
    xs = [3, 1, 2]
    assert meth("Array", "enumerate", ["a", "b"]) == [(0, "a"), (1, "b")]
    assert meth("Array", "join", ["a", "b"], ", ") == "a, b"
    assert meth("Array", "join", [1, 2]) == "12"
    assert meth("Array", "slice", [1, 2, 3, 4], 1, 3) == [2, 3]
    assert meth("Array", "slice", [1, 2, 3, 4], 2) == [3, 4]
    assert meth("Array", "slice", [1, 2], 1, 10) == [2]
    assert meth("Array", "slice", [1, 2], 2, 1) == []
    assert meth("Array", "concat", [1], [2, 3]) == [1, 2, 3]
    assert meth("Array", "flatten", [[1], [], [2, 3]]) == [1, 2, 3]
    assert meth("Array", "zip", [1, 2, 3], ["a", "b"]) == [(1, "a"), (2, "b")]
    assert meth("Array", "take", xs, 2) == [3, 1]
    assert meth("Array", "take", xs, 10) == [3, 1, 2]
    assert meth("Array", "skip", xs, 1) == [1, 2]
    assert meth("Array", "chunks", [1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert meth("Array", "sorted", xs) == [1, 2, 3]
    assert meth("Array", "reversed", xs) == [2, 1, 3]
    assert xs == [3, 1, 2]
    assert meth("Array", "unique", [1, True, 1, "a", True, "a", [1], [1]]) == [1, True, "a", [1]]
    raises("RuntimeError", "positive size", lambda: meth("Array", "chunks", [1], 0))
    raises("RuntimeError", "non-negative", lambda: meth("Array", "take", [1], -1))


def test_array_aggregates() -> None:
    assert meth("Array", "sum", [1, 2, 3]) == 6
    assert meth("Array", "sum", [1, 2.5]) == 3.5
    assert meth("Array", "sum", []) == 0
    raises("OverflowError", "overflow", lambda: meth("Array", "sum", [INT_MAX, 1]))
    raises("TypeError", "numbers, got String", lambda: meth("Array", "sum", [1, "a"]))
    assert meth("Array", "min", [3, 1, 2]) == Some(1)
    assert meth("Array", "max", ["b", "c", "a"]) == Some("c")
    assert meth("Array", "min", []) is NONE
    assert meth("Array", "max", []) is NONE


# --- Map ---------------------------------------------------------------------


def test_map_methods() -> None:
    m = {"model": "gpt", "provider": "x"}
    assert meth("Map", "len", m) == 2
    assert meth("Map", "is_empty", {}) is True
    assert meth("Map", "get", m, "model") == Some("gpt")
    assert meth("Map", "get", m, "nope") is NONE
    assert meth("Map", "has", m, "model") is True
    assert meth("Map", "contains_key", m, "nope") is False
    assert meth("Map", "set", m, "temp", "0.7") is None
    assert meth("Map", "insert", m, "temp", "0.2") == Some("0.7")
    assert meth("Map", "insert", m, "new", 1) is NONE
    assert meth("Map", "delete", m, "provider") == Some("x")
    assert meth("Map", "remove", m, "provider") is NONE
    assert meth("Map", "keys", m) == ["model", "temp", "new"]
    assert meth("Map", "values", m) == ["gpt", "0.2", 1]
    assert meth("Map", "entries", m) == [("model", "gpt"), ("temp", "0.2"), ("new", 1)]
    merged = meth("Map", "merge", {"a": 1, "b": 2}, {"b": 3, "c": 4})
    assert merged == {"a": 1, "b": 3, "c": 4}
    pairs: list[tuple] = []
    meth("Map", "for_each", {"a": 1, "b": 2}, lambda k, v: pairs.append((k, v)))
    assert pairs == [("a", 1), ("b", 2)]
    assert meth("Map", "filter", {"a": 1, "b": 2}, lambda k, v: v > 1) == {"b": 2}
    assert meth("Map", "to_string", {"a": 1}) == '{"a": 1}'
    meth("Map", "clear", m)
    assert m == {}
    for name in ("set", "insert", "delete", "remove", "clear"):
        assert REG.methods["Map"][name].mutates, name
    raises("TypeError", "cannot be a Map key", lambda: meth("Map", "get", {}, [1]))


# --- Option ------------------------------------------------------------------


def test_option_methods() -> None:
    some, none = Some(2), NONE
    assert meth("Option", "is_some", some) is True
    assert meth("Option", "is_none", none) is True
    assert meth("Option", "unwrap", some) == 2
    raises("RuntimeError", r"called unwrap\(\) on None", lambda: meth("Option", "unwrap", none))
    assert meth("Option", "expect", some, "needed") == 2
    raises("RuntimeError", "^config missing$", lambda: meth("Option", "expect", none, "config missing"))
    assert meth("Option", "unwrap_or", none, 7) == 7
    assert meth("Option", "unwrap_or_else", none, lambda: 8) == 8
    assert meth("Option", "unwrap_or_else", some, lambda: 8) == 2
    assert meth("Option", "map", some, lambda x: x + 1) == Some(3)
    assert meth("Option", "map", none, lambda x: x + 1) is NONE
    assert meth("Option", "and_then", some, lambda x: NONE) is NONE
    assert meth("Option", "and_then", some, lambda x: Some(x * 5)) == Some(10)
    assert meth("Option", "or", none, Some(1)) == Some(1)
    assert meth("Option", "or", some, Some(1)) == some
    assert meth("Option", "or_else", none, lambda: Some(4)) == Some(4)
    assert meth("Option", "filter", some, lambda x: x > 5) is NONE
    assert meth("Option", "filter", some, lambda x: x > 1) == some
    assert meth("Option", "ok_or", none, "missing") == Err("missing")
    assert meth("Option", "ok_or", some, "missing") == Ok(2)
    assert meth("Option", "ok_or_else", none, lambda: "late") == Err("late")
    assert meth("Option", "context", none, "no key") == Err(error_value("Error", "no key"))
    assert meth("Option", "context", some, "no key") == Ok(2)
    assert meth("Option", "to_string", Some("a")) == 'Some("a")'
    raises("TypeError", "expects an Option", lambda: meth("Option", "unwrap", 3))


# --- Result ------------------------------------------------------------------


def test_result_methods() -> None:
    ok, err = Ok(42), Err("boom")
    assert meth("Result", "is_ok", ok) is True
    assert meth("Result", "is_err", err) is True
    assert meth("Result", "unwrap", ok) == 42
    raises("RuntimeError", r"called unwrap\(\) on Err: boom", lambda: meth("Result", "unwrap", err))
    parse_err = Err(error_value("ParseError", "bad digit"))
    raises("RuntimeError", "on Err: ParseError: bad digit", lambda: meth("Result", "unwrap", parse_err))
    assert meth("Result", "unwrap_err", err) == "boom"
    raises("RuntimeError", r"unwrap_err\(\) on Ok: 42", lambda: meth("Result", "unwrap_err", ok))
    assert meth("Result", "expect", ok, "ctx") == 42
    raises("RuntimeError", "^loading: boom$", lambda: meth("Result", "expect", err, "loading"))
    assert meth("Result", "unwrap_or", err, 0) == 0
    assert meth("Result", "unwrap_or_else", err, lambda e: len(e)) == 4
    assert meth("Result", "map", ok, lambda x: x * 2) == Ok(84)
    assert meth("Result", "map", err, lambda x: x * 2) == err
    assert meth("Result", "map_err", err, lambda e: f"Error: {e}") == Err("Error: boom")
    assert meth("Result", "map_err", ok, lambda e: 0) == ok
    assert meth("Result", "and_then", ok, lambda x: Err("neg") if x < 0 else Ok(x + 1)) == Ok(43)
    assert meth("Result", "and_then", err, lambda x: Ok(x)) == err
    assert meth("Result", "or_else", err, lambda e: Ok(len(e))) == Ok(4)
    assert meth("Result", "ok", ok) == Some(42)
    assert meth("Result", "ok", err) is NONE
    assert meth("Result", "err", err) == Some("boom")
    assert meth("Result", "err", ok) is NONE
    assert meth("Result", "to_string", ok) == "Ok(42)"


def test_result_context_keeps_error_type() -> None:
    assert meth("Result", "context", Ok(1), "ignored") == Ok(1)
    assert meth("Result", "context", Err("bad json"), "doc 3") == Err("doc 3: bad json")
    agent = StructValue("AgentError", {"message": "rate limited", "model": "m"})
    wrapped = meth("Result", "context", Err(agent), "Failed to process document 3")
    assert wrapped.value.type_name == "AgentError"
    assert wrapped.value.fields == {"message": "Failed to process document 3: rate limited", "model": "m"}
    assert agent.fields["message"] == "rate limited"  # original untouched
    enum_err = EnumValue("ProcessError", "InvalidInput", ("empty",))
    boxed = meth("Result", "context", Err(enum_err), "step 2").value
    assert boxed.type_name == "Error"
    assert boxed.fields == {"message": "step 2: ProcessError::InvalidInput: empty", "source": enum_err}


# --- Int / Float / Bool / Tuple / Range --------------------------------------

NUMBER_CASES = [
    ("Int", "to_string", -5, (), "-5"),
    ("Float", "to_string", 2.0, (), "2.0"),
    ("Int", "abs", -5, (), 5),
    ("Float", "abs", -2.5, (), 2.5),
    ("Int", "pow", 2, (10,), 1024),
    ("Int", "pow", 2, (0.5,), math.sqrt(2)),
    ("Float", "pow", 2.0, (3,), 8.0),
    ("Int", "min", 3, (7,), 3),
    ("Int", "max", 3, (7,), 7),
    ("Float", "min", 3.5, (1,), 1),
    ("Float", "max", 3.5, (1,), 3.5),
    ("Int", "clamp", 150, (0, 100), 100),
    ("Int", "clamp", -3, (0, 100), 0),
    ("Float", "clamp", 0.5, (0.0, 1.0), 0.5),
    ("Int", "to_float", 3, (), 3.0),
    ("Float", "to_int", -3.7, (), -3),
    ("Int", "to_int", 4, (), 4),
    ("Float", "to_float", 1.5, (), 1.5),
    ("Int", "sqrt", 16, (), 4.0),
    ("Float", "floor", 3.7, (), 3),
    ("Float", "floor", -3.2, (), -4),
    ("Float", "ceil", 3.2, (), 4),
    ("Int", "ceil", 3, (), 3),
    ("Int", "floor", 3, (), 3),
    ("Float", "round", 3.7, (), 4),
    ("Float", "round", 2.5, (), 3),
    ("Float", "round", -2.5, (), -3),
    ("Float", "round", 0.49999999999999994, (), 0),
    ("Int", "round", 9, (), 9),
    ("Float", "is_nan", math.nan, (), True),
    ("Float", "is_nan", 1.0, (), False),
    ("Float", "is_finite", math.inf, (), False),
    ("Float", "is_infinite", -math.inf, (), True),
    ("Int", "is_even", 4, (), True),
    ("Int", "is_odd", -3, (), True),
    ("Bool", "to_string", True, (), "true"),
    ("Tuple", "len", (1, "a"), (), 2),
    ("Tuple", "to_string", (1, "a"), (), '(1, "a")'),
]


@pytest.mark.parametrize(("type_", "name", "receiver", "args", "expected"), NUMBER_CASES)
def test_scalar_methods(type_: str, name: str, receiver: Any, args: tuple, expected: Any) -> None:
    result = meth(type_, name, receiver, *args)
    assert result == expected
    assert type(result) is type(expected)


def test_numeric_faults() -> None:
    raises("RuntimeError", "negative exponent", lambda: meth("Int", "pow", 2, -1))
    raises("OverflowError", "overflow", lambda: meth("Int", "pow", 2, 63))
    raises("OverflowError", "overflow", lambda: meth("Int", "pow", 3, 10**12))
    assert meth("Int", "pow", 2, 62) == 2**62
    assert meth("Int", "pow", -1, 10**12) == 1
    raises("OverflowError", "overflow", lambda: meth("Int", "abs", INT_MIN))
    raises("RuntimeError", "NaN", lambda: meth("Float", "round", math.nan))
    raises("RuntimeError", "infinity", lambda: meth("Float", "to_int", math.inf))
    raises("OverflowError", "overflow", lambda: meth("Float", "floor", 1e300))
    raises("RuntimeError", "lower bound", lambda: meth("Int", "clamp", 1, 5, 0))
    raises("TypeError", "expects a number, got String", lambda: meth("Int", "abs", "1"))
    assert math.isnan(meth("Float", "sqrt", -1.0))


def test_range_methods_reuse_array() -> None:
    r = range(0, 5)
    assert meth("Range", "to_array", r) == [0, 1, 2, 3, 4]
    assert meth("Range", "to_string", range(1, 4)) == "1..4"
    assert meth("Range", "len", r) == 5
    assert meth("Range", "is_empty", range(3, 3)) is True
    assert meth("Range", "contains", r, 4) is True
    assert meth("Range", "contains", r, True) is False
    assert meth("Range", "get", r, 2) == Some(2)
    assert meth("Range", "first", r) == Some(0)
    assert meth("Range", "last", r) == Some(4)
    assert meth("Range", "index_of", range(5, 9), 7) == Some(2)
    assert meth("Range", "map", r, lambda i: i * i) == [0, 1, 4, 9, 16]
    assert meth("Range", "filter", r, lambda i: i % 2 == 0) == [0, 2, 4]
    assert meth("Range", "reduce", r, 0, lambda a, b: a + b) == 10
    assert meth("Range", "fold", r, 1, lambda a, b: a * (b + 1)) == 120
    seen: list[int] = []
    meth("Range", "for_each", range(0, 2), seen.append)
    assert seen == [0, 1]
    assert meth("Range", "find", r, lambda i: i > 2) == Some(3)
    assert meth("Range", "find_index", range(10, 20), lambda i: i == 12) == Some(2)
    assert meth("Range", "any", r, lambda i: i > 3) is True
    assert meth("Range", "all", r, lambda i: i < 5) is True
    assert meth("Range", "count", r, lambda i: i > 2) == 2
    assert meth("Range", "flat_map", range(0, 2), lambda i: [i, i]) == [0, 0, 1, 1]
    assert meth("Range", "partition", r, lambda i: i < 2) == ([0, 1], [2, 3, 4])
    assert meth("Range", "enumerate", range(5, 7)) == [(0, 5), (1, 6)]
    assert meth("Range", "join", range(0, 3), ",") == "0,1,2"
    assert meth("Range", "zip", range(0, 2), ["a", "b"]) == [(0, "a"), (1, "b")]
    assert meth("Range", "take", r, 2) == [0, 1]
    assert meth("Range", "skip", r, 3) == [3, 4]
    assert meth("Range", "chunks", r, 2) == [[0, 1], [2, 3], [4]]
    assert meth("Range", "reversed", range(0, 3)) == [2, 1, 0]
    assert meth("Range", "sum", range(1, 11)) == 55
    assert meth("Range", "min", r) == Some(0)
    assert meth("Range", "max", range(0, 0)) is NONE


# --- std::math ---------------------------------------------------------------


def test_std_math() -> None:
    assert fn("std::math::abs", -42) == 42
    assert fn("std::math::abs", -1.5) == 1.5
    assert fn("std::math::min", 3, 7) == 3
    assert fn("std::math::max", "a", "b") == "b"
    assert fn("std::math::clamp", 150, 0, 100) == 100
    assert fn("std::math::round", 3.7) == 4
    assert fn("std::math::floor", 3.7) == 3
    assert fn("std::math::ceil", 3.2) == 4
    assert fn("std::math::pow", 2, 10) == 1024
    assert fn("std::math::sqrt", 16.0) == 4.0
    for _ in range(50):
        x = fn("std::math::random")
        assert type(x) is float and 0.0 <= x < 1.0
    rolls = {fn("std::math::random_int", 1, 3) for _ in range(200)}
    assert rolls == {1, 2, 3}  # both ends included
    assert fn("std::math::random_int", 5, 5) == 5
    raises("RuntimeError", "greater than max", lambda: fn("std::math::random_int", 2, 1))
    raises("TypeError", "same type", lambda: fn("std::math::min", 1, "a"))


# --- std::json ---------------------------------------------------------------


def test_json_parse_plain_data() -> None:
    parsed = fn("std::json::parse", '{"a": [1, 2.5, null, true], "b": {"ok": 1}, "c": "é"}')
    assert parsed == Ok({"a": [1, 2.5, None, True], "b": {"ok": 1}, "c": "é"})
    assert type(parsed.value["a"][0]) is int and type(parsed.value["a"][1]) is float
    assert fn("std::json::parse", "[1, 2, 3]") == Ok([1, 2, 3])
    assert fn("std::json::parse", '"x"') == Ok("x")
    for bad in ("{", "[1,]", "NaN", "", str(2**64)):
        result = fn("std::json::parse", bad)
        assert type(result) is Err, bad
        assert result.value.type_name == "JsonError" and result.value.fields["message"], bad
    assert "line 1, column 1" in fn("std::json::parse", "nope").value.fields["message"]


def test_json_parse_as() -> None:
    assert fn("std::json::parse_as", '{"x": 1, "y": 2}', "Point") == Ok(StructValue("Point", {"x": 1, "y": 2}))
    wrong = fn("std::json::parse_as", '{"x": "1", "y": 2}', "Point")
    assert wrong == Err(error_value("JsonError", "field `x` of Point expects Int"))
    assert fn("std::json::parse_as", "{", "Point").value.type_name == "JsonError"


def test_json_stringify() -> None:
    value = {
        "name": "ünï",
        "n": [1, 2.0, None],
        "opt": Some(3),
        "none": NONE,
        "res": Ok(1),
        "pt": StructValue("P", {"x": 1}),
        "t": (1, "a"),
        1: True,
    }
    text = fn("std::json::stringify", value)
    assert text == (
        '{"name":"ünï","n":[1,2.0,null],"opt":3,"none":null,"res":{"ok":1},'
        '"pt":{"x":1},"t":[1,"a"],"1":true}'
    )
    assert fn("std::json::stringify", [math.nan, math.inf]) == "[null,null]"
    pretty = fn("std::json::stringify_pretty", {"a": [1]}, 4)
    assert pretty == '{\n    "a": [\n        1\n    ]\n}'
    assert fn("std::json::stringify_pretty", {"a": 1}) == '{\n  "a": 1\n}'
    assert fn("std::json::is_valid", '{"a": 1}') is True
    assert fn("std::json::is_valid", "{'a': 1}") is False


# --- std::fmt ----------------------------------------------------------------


def test_fmt() -> None:
    text = fn("std::fmt::format", "Hello, {}! You have {} messages.", ["Alice", 5])
    assert text == "Hello, Alice! You have 5 messages."
    assert fn("std::fmt::format", "{1}-{0}-{1}", ["a", 2.5]) == "2.5-a-2.5"
    assert fn("std::fmt::format", "{{}} {x} {}", [True]) == "{} {x} true"
    raises("RuntimeError", "needs argument 1, but only 1 given", lambda: fn("std::fmt::format", "{} {}", [1]))
    assert fn("std::fmt::pad_left", "42", 10, "0") == "0000000042"
    assert fn("std::fmt::pad_left", "42", 4) == "  42"
    assert fn("std::fmt::pad_left", "toolong", 3, "*") == "toolong"
    assert fn("std::fmt::pad_right", "ab", 4, ".") == "ab.."
    raises("RuntimeError", "single character", lambda: fn("std::fmt::pad_right", "a", 3, "ab"))
    assert fn("std::fmt::truncate", "Long text...", 8) == "Long tex"
    assert fn("std::fmt::truncate", "short", 80) == "short"
    assert fn("std::fmt::indent", "a\n\n  b", 2) == "  a\n\n    b"


# --- std::collections --------------------------------------------------------


def test_set() -> None:
    s = fn("std::collections::Set::new")
    assert type_name(s) == "Set"
    assert meth("Set", "insert", s, "apple") is True
    assert meth("Set", "insert", s, "banana") is True
    assert meth("Set", "insert", s, "apple") is False
    assert meth("Set", "contains", s, "apple") is True
    assert meth("Set", "len", s) == 2
    assert meth("Set", "is_empty", s) is False
    assert meth("Set", "remove", s, "apple") is True
    assert meth("Set", "remove", s, "apple") is False
    a = fn("std::collections::Set::new", [3, 1, 2, 1])
    b = fn("std::collections::Set::new", [2, 3, 4])
    assert meth("Set", "to_array", meth("Set", "union", a, b)) == [1, 2, 3, 4]
    assert meth("Set", "to_array", meth("Set", "intersection", a, b)) == [2, 3]
    assert meth("Set", "to_array", meth("Set", "difference", a, b)) == [1]
    assert meth("Set", "to_array", a) == [1, 2, 3]  # operands untouched
    assert a == fn("std::collections::Set::new", [1, 2, 3]) and a != b
    mixed = fn("std::collections::Set::new", [1, True, [1], [1]])
    assert meth("Set", "len", mixed) == 3
    assert to_json(a) == [1, 2, 3]
    assert meth("Set", "to_string", a) == "Set {1, 2, 3}" == debug(a)
    meth("Set", "clear", a)
    assert meth("Set", "is_empty", a) is True
    for name in ("insert", "remove", "clear"):
        assert REG.methods["Set"][name].mutates, name
    raises("TypeError", "expects a Set", lambda: meth("Set", "union", a, [1]))


def test_queue() -> None:
    q = fn("std::collections::Queue::new")
    assert meth("Queue", "enqueue", q, "first") is None
    meth("Queue", "enqueue", q, "second")
    assert meth("Queue", "peek", q) == Some("first")
    assert meth("Queue", "len", q) == 2
    assert meth("Queue", "dequeue", q) == Some("first")
    assert meth("Queue", "to_array", q) == ["second"]
    assert to_json(q) == ["second"]
    assert meth("Queue", "to_string", q) == 'Queue ["second"]'
    meth("Queue", "clear", q)
    assert meth("Queue", "is_empty", q) is True
    assert meth("Queue", "dequeue", q) is NONE
    assert meth("Queue", "peek", q) is NONE
    assert fn("std::collections::Queue::new", [1, 2]) == fn("std::collections::Queue::new", [1, 2])
    assert REG.methods["Queue"]["dequeue"].mutates and not REG.methods["Queue"]["peek"].mutates


def test_stack() -> None:
    s = fn("std::collections::Stack::new")
    assert meth("Stack", "push", s, 1) is None
    meth("Stack", "push", s, 2)
    assert meth("Stack", "peek", s) == Some(2)
    assert meth("Stack", "pop", s) == Some(2)
    assert meth("Stack", "len", s) == 1
    assert meth("Stack", "is_empty", s) is False
    seeded = fn("std::collections::Stack::new", [1, 2, 3])
    assert meth("Stack", "pop", seeded) == Some(3)
    assert meth("Stack", "to_array", seeded) == [1, 2]
    assert to_json(seeded) == [1, 2] and display(seeded) == "Stack [1, 2]"
    assert meth("Stack", "to_string", seeded) == "Stack [1, 2]"
    meth("Stack", "clear", seeded)
    assert meth("Stack", "pop", seeded) is NONE
    assert meth("Stack", "peek", seeded) is NONE
    assert REG.methods["Stack"]["push"].mutates


# --- std::crypto, std::env, std::time, std::log, std::prompt ----------------


def test_crypto() -> None:
    assert fn("std::crypto::sha256", "input data") == hashlib.sha256(b"input data").hexdigest()
    assert fn("std::crypto::md5", "é") == hashlib.md5("é".encode()).hexdigest()
    uid = fn("std::crypto::uuid")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", uid)
    assert uid != fn("std::crypto::uuid")
    hex_bytes = fn("std::crypto::random_bytes", 16)
    assert re.fullmatch(r"[0-9a-f]{32}", hex_bytes)
    assert fn("std::crypto::random_bytes", 0) == ""


def test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCERTO_TEST_VAR", "yes")
    monkeypatch.delenv("CONCERTO_TEST_MISSING", raising=False)
    assert fn("std::env::get", "CONCERTO_TEST_VAR") == Some("yes")
    assert fn("std::env::get", "CONCERTO_TEST_MISSING") is NONE
    assert fn("std::env::require", "CONCERTO_TEST_VAR") == Ok("yes")
    missing = fn("std::env::require", "CONCERTO_TEST_MISSING")
    assert missing == Err(error_value("EnvError", "environment variable CONCERTO_TEST_MISSING is not set"))
    assert fn("std::env::has", "CONCERTO_TEST_VAR") is True
    assert fn("std::env::has", "CONCERTO_TEST_MISSING") is False
    everything = fn("std::env::all")
    assert everything["CONCERTO_TEST_VAR"] == "yes"
    assert list(everything) == sorted(os.environ)


def test_time() -> None:
    ctx = FakeCtx()
    stamp = fn("std::time::now")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    ms = fn("std::time::now_ms")
    assert type(ms) is int and ms > 1_600_000_000_000
    assert fn("std::time::sleep", 250, ctx=ctx) is None
    assert ctx.slept == [250]
    raises("RuntimeError", "non-negative", lambda: fn("std::time::sleep", -1, ctx=ctx))
    result, elapsed = fn("std::time::measure", lambda: "done")
    assert result == "done" and type(elapsed) is int and 0 <= elapsed < 1000


def test_log() -> None:
    ctx = FakeCtx()
    for level in ("info", "warn", "error", "debug"):
        assert fn(f"std::log::{level}", f"{level} msg", ctx=ctx) is None
    fn("std::log::info", [1, 2], ctx=ctx)
    assert ctx.logs == [
        ("info", "info msg"),
        ("warn", "warn msg"),
        ("error", "error msg"),
        ("debug", "debug msg"),
        ("info", "[1, 2]"),
    ]


def test_prompt() -> None:
    text = "You are a {{role}}. Task: ${task}; keep {{ missing }} and {\"json\": 1}. N={{n}}"
    filled = fn("std::prompt::template", text, {"role": "classifier", "task": "label", "n": 3})
    assert filled == 'You are a classifier. Task: label; keep {{ missing }} and {"json": 1}. N=3'
    assert fn("std::prompt::count_tokens", "") == 0
    assert fn("std::prompt::count_tokens", "a") == 1
    assert fn("std::prompt::count_tokens", "abcdefghi") == 3
    assert fn("std::prompt::count_tokens", "abcd", "gpt-4o") == 1


# --- registry shape ----------------------------------------------------------


def test_load_is_idempotent_and_scoped() -> None:
    before = (len(REG.functions), sum(len(m) for m in REG.methods.values()))
    assert load() is REG
    assert (len(REG.functions), sum(len(m) for m in REG.methods.values())) == before
    modules = REG.modules()
    assert not any(m.startswith(("std::fs", "std::http")) for m in modules)
    assert "std::prompt::from_file" not in REG.functions
    assert {"std::json", "std::math", "std::string", "std::fmt", "std::env", "std::time"} <= modules


# --- LLM built-ins (Message, Memory, Model methods through CALL_METHOD) -----------

def test_message_constructors() -> None:
    for role in ("system", "user", "assistant"):
        m = fn(f"Message::{role}", "hi")
        assert m == StructValue("Message", {"role": role, "content": "hi"})
    raises("TypeError", "content must be a String", lambda: fn("Message::user", 3))


def test_memory_methods_keep_order_and_window() -> None:
    from concerto.vm.llm_values import MemoryStore

    mem = MemoryStore("chat", max_messages=3)
    for i in range(4):
        meth("Memory", "append", mem, "user" if i % 2 == 0 else "assistant", f"m{i}")
    assert meth("Memory", "len", mem) == 3
    assert [m.fields["content"] for m in meth("Memory", "messages", mem)] == ["m1", "m2", "m3"]
    assert [m.fields["content"] for m in meth("Memory", "last", mem, 2)] == ["m2", "m3"]
    assert meth("Memory", "last", mem, 0) == []
    raises("TypeError", "role must be", lambda: meth("Memory", "append", mem, "robot", "x"))
    raises("TypeError", "non-negative Int", lambda: meth("Memory", "last", mem, -1))
    meth("Memory", "clear", mem)
    assert meth("Memory", "len", mem) == 0


def test_model_methods_forward_to_the_model_runtime() -> None:
    from concerto.vm.llm_values import ModelRef

    calls = []

    class VM:
        def call_model(self, recv: Any, method: str, schema: Any, args: list) -> Any:
            calls.append((recv.name, method, schema, args))
            return "ok"

    ref = ModelRef("Classifier")
    for type_name_ in ("Model", "ModelBuilder"):
        for method in ("execute", "chat", "stream", "with_memory", "with_tools"):
            assert meth(type_name_, method, ref, "x", ctx=VM()) == "ok"
        assert meth(type_name_, "without_tools", ref, ctx=VM()) == "ok"
    assert calls[0] == ("Classifier", "execute", None, ["x"])
    assert calls[-1] == ("Classifier", "without_tools", None, [])
    assert {c[1] for c in calls} == {"execute", "chat", "stream", "with_memory", "with_tools", "without_tools"}


def test_prelude_natives_are_registered_like_std_functions() -> None:
    from concerto.stdlib.builtins import Panic

    class EmitCtx(FakeCtx):
        def __init__(self) -> None:
            super().__init__()
            self.emitted: list[tuple[str, Any]] = []
            self.flushed = 0

        def emit(self, channel: str, payload: Any) -> None:
            self.emitted.append((channel, payload))

        def flush_emits(self) -> None:
            self.flushed += 1

    ctx = EmitCtx()
    assert fn("assert", True) is None
    raises("RuntimeError", "^assertion failed$", lambda: fn("assert", False))
    raises("RuntimeError", "^custom$", lambda: fn("assert", 1, "custom"))
    assert fn("assert_eq", [1], [1]) is None
    raises("RuntimeError", r"assertion failed: 1 != 2: why", lambda: fn("assert_eq", 1, 2, "why"))
    assert fn("flush_emits", ctx=ctx) is None and ctx.flushed == 1
    with pytest.raises(Panic, match="stop"):
        fn("panic", "stop", ctx=ctx)
    assert ctx.emitted == [("panic", "stop")]
    assert (REG.functions["panic"].min_args, REG.functions["panic"].max_args) == (0, 1)


def test_every_native_was_exercised(request: pytest.FixtureRequest) -> None:
    # Meaningful only when the whole file ran (a -k selection would miss calls).
    mine = [item for item in request.session.items if item.module is request.module]
    defined = {name for name in dir(request.module) if name.startswith("test_")}
    if {item.originalname for item in mine} != defined:
        pytest.skip("partial run")
    registered = set(REG.functions) | {f"{t}.{n}" for t, ms in REG.methods.items() for n in ms}
    assert registered - CALLED == set()
