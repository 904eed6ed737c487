"""What natives do with arguments a program can get wrong (issue 11, point 10).

Every failure a program can provoke is a Concerto fault or an Err value with
a clear message, never a Python exception: these pin the cases the audit
(and tests/test_fuzz_natives.py) found.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

from concerto.stdlib import load
from concerto.vm.values import INT_MAX, INT_MIN, NONE, ConcertoError, Err, Ok, Some

REG = load()


class Ctx:
    def call(self, f: Any, *args: Any) -> Any:
        return f(*args)


def fn(path: str, *args: Any) -> Any:
    return REG.functions[path].call(Ctx(), *args)


def meth(type_name: str, name: str, *args: Any) -> Any:
    return REG.methods[type_name][name].call(Ctx(), *args)


def fault(kind: str, text: str, call: Any) -> None:
    with pytest.raises(ConcertoError) as info:
        call()
    assert info.value.kind == kind and text in info.value.message, info.value.message


def test_number_parsing_never_reaches_pythons_own_limits() -> None:
    assert meth("String", "parse_int", "0" * 5000 + "42") == Ok(42)
    long = meth("String", "parse_int", "9" * 5000)
    assert type(long) is Err and long.value.fields["message"].startswith("integer out of range: \"9999")
    assert len(long.value.fields["message"]) < 120  # the text is cut, not echoed whole
    assert meth("String", "parse_int", str(INT_MIN)) == Ok(INT_MIN)
    assert type(meth("String", "parse_int", str(INT_MAX + 1))) is Err
    start = time.perf_counter()
    # A run of digits then junk once backtracked quadratically in the Float grammar.
    assert type(meth("String", "parse_float", "1" * 200_000 + "x")) is Err
    assert time.perf_counter() - start < 5.0
    fault("RuntimeError", "needs argument", lambda: fn("std::fmt::format", "{" + "9" * 5000 + "}", [1]))


def test_json_text_must_be_unicode() -> None:
    assert fn("std::json::parse", '"\\ud83d\\ude00"') == Ok("\U0001F600")
    lone = fn("std::json::parse", '["\\ud800"]')
    assert lone == Err(REG_ERR("lone surrogate \\ud800 in a string: JSON text must be valid Unicode"))
    assert fn("std::json::is_valid", '{"\\udc00": 1}') is False
    # A String that still holds one (from a host) hashes instead of failing.
    assert fn("std::crypto::sha256", "a\ud800") == hashlib.sha256(b"a\xed\xa0\x80").hexdigest()


def REG_ERR(message: str) -> Any:
    from concerto.stdlib.registry import error_value

    return error_value("JsonError", message)


def test_ordering_follows_concerto_not_python() -> None:
    fault("TypeError", "values cannot be compared", lambda: meth("Array", "sorted", [True, 1]))
    fault("TypeError", "values cannot be compared", lambda: meth("Array", "max", [1, False]))
    fault("TypeError", "two values of the same type", lambda: fn("std::math::min", True, 1))
    fault("TypeError", "two values of the same type", lambda: fn("std::math::clamp", 5, True, 9))
    assert meth("Array", "sorted", [2, 1.5, 3]) == [1.5, 2, 3]
    assert meth("Array", "sort_by", [3, 1, 2], lambda x: -x) == [3, 2, 1]
    fault("TypeError", "expects an Array, got Option", lambda: meth("Array", "sort", Some([3, 1])))


def test_callbacks_must_answer_with_a_bool() -> None:
    for name in ("filter", "find", "find_index", "any", "all", "count", "partition"):
        fault("TypeError", "callback result expects a Bool, got Int", lambda: meth("Array", name, [1, 2], lambda x: 1))
    fault("TypeError", "expects a Bool, got String", lambda: meth("Map", "filter", {"a": 1}, lambda k, v: "yes"))
    fault("TypeError", "expects a Bool, got Nil", lambda: meth("Option", "filter", Some(1), lambda x: None))
    assert meth("Array", "filter", [1, 2, 3], lambda x: x != 2) == [1, 3]


def test_ranges_beyond_an_int_are_counted_exactly() -> None:
    everything = range(INT_MIN, INT_MAX + 1)  # 2**64 Ints: Python's len() would raise
    fault("OverflowError", "more than an Int can count", lambda: meth("Range", "len", everything))
    assert meth("Range", "is_empty", everything) is False
    assert meth("Range", "last", everything) == Some(INT_MAX)
    assert meth("Range", "get", everything, 5) == Some(INT_MIN + 5)
    assert meth("Range", "contains", range(0, 10), 3.0) is True
    assert meth("Range", "index_of", range(0, 10), 7) == Some(7)
    assert meth("Range", "min", range(5, 2)) is NONE
    fault("OverflowError", "integer overflow", lambda: meth("Range", "sum", range(0, 2**40)))


def test_wrong_receivers_and_argument_counts() -> None:
    fault("TypeError", "Memory.len expects a Memory, got Array", lambda: meth("Memory", "len", []))
    fault("TypeError", "method `trim` takes 0 argument(s), 1 given", lambda: meth("String", "trim", " a ", 1))
    fault("TypeError", "function `std::fmt::pad_left` takes 2 to 3 argument(s), 1 given",
          lambda: fn("std::fmt::pad_left", "a"))
    fault("TypeError", "a Array cannot be a Map key", lambda: meth("Map", "get", {}, [1]))
    fault("TypeError", "a Float cannot be a Map key", lambda: meth("Map", "set", {}, 1.5, 0))
