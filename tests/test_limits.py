"""Caps on string length and collection size (issue 11, point 7).

Every place where a value grows checks the size the result would have
*before* building it, so `"x".repeat(9_000_000_000_000)` or a string doubled
in a loop is a catchable ResourceError naming the cap, never a MemoryError.
The caps are per run (RuntimeConfig.max_string_length / max_collection_size,
`concerto run --max-string-length / --max-collection-size`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from concerto import Runtime, RuntimeConfig
from concerto.host import RunError
from concerto.stdlib import load
from concerto.stdlib.std_collections import QueueValue, SetValue, StackValue
from concerto.vm import limits, operators
from concerto.vm.limits import ResourceLimits
from concerto.vm.values import ConcertoError, debug, display, to_json
from conftest import cli

REG = load()
CAP = 2048  # both caps in the unit tests below
SMALL = ResourceLimits(max_string_length=CAP, max_collection_size=CAP)


def fn(path: str, *args: Any) -> Any:
    return REG.functions[path].fn(None, *args)


def meth(type_name: str, name: str, *args: Any) -> Any:
    return REG.methods[type_name][name].fn(Ctx(), *args)


class Ctx:
    def call(self, f: Callable, *args: Any) -> Any:
        return f(*args)


BIG = "b" * 1500
HUGE_RANGE = range(0, 10**12)

# (what, call): each builds a String or a collection just over CAP.
OVERSIZED: list[tuple[str, Callable[[], Any]]] = [
    ("`+`", lambda: operators.add_values(BIG, BIG)),
    ("interpolation", lambda: operators.build_string([BIG, 1, BIG])),
    ("String.repeat", lambda: meth("String", "repeat", "ab", 1025)),
    ("String.repeat 9e12", lambda: meth("String", "repeat", "x", 9_000_000_000_000)),
    ("String.replace", lambda: meth("String", "replace", "a" * 1500, "a", "bb")),
    ("String.replace empty", lambda: meth("String", "replace", "a" * 100, "", "x" * 24)),
    ("String.to_upper", lambda: meth("String", "to_upper", "ß" * 1500)),
    ("String.split", lambda: meth("String", "split", "a," * 3000, ",")),
    ("String.split whitespace", lambda: meth("String", "split", " a" * 3000)),
    ("String.split chars", lambda: meth("String", "split", "a" * 3000, "")),
    ("String.chars", lambda: meth("String", "chars", "a" * 3000)),
    ("String.lines", lambda: meth("String", "lines", "x\n" * 3000)),
    ("Array.push", lambda: meth("Array", "push", [0] * CAP, 1)),
    ("Array.insert", lambda: meth("Array", "insert", [0] * CAP, 0, 1)),
    ("Array.extend", lambda: meth("Array", "extend", [0] * 1500, [0] * 1500)),
    ("Array.extend range", lambda: meth("Array", "extend", [], HUGE_RANGE)),
    ("Array.concat", lambda: meth("Array", "concat", [0] * 1500, [0] * 1500)),
    ("Array.flatten", lambda: meth("Array", "flatten", [[0] * 1500, [0] * 1500])),
    ("Array.flat_map", lambda: meth("Array", "flat_map", [1, 2, 3], lambda x: [0] * 1000)),
    ("Array.join", lambda: meth("Array", "join", [BIG, BIG], "")),
    ("Range.to_array", lambda: meth("Range", "to_array", HUGE_RANGE)),
    ("Range.map", lambda: meth("Range", "map", HUGE_RANGE, lambda x: x)),
    ("Range.filter", lambda: meth("Range", "filter", HUGE_RANGE, lambda x: True)),
    ("Range.partition", lambda: meth("Range", "partition", HUGE_RANGE, lambda x: True)),
    ("Range.enumerate", lambda: meth("Range", "enumerate", HUGE_RANGE)),
    ("Range.reversed", lambda: meth("Range", "reversed", HUGE_RANGE)),
    ("Range.take", lambda: meth("Range", "take", HUGE_RANGE, 5000)),
    ("Range.skip", lambda: meth("Range", "skip", HUGE_RANGE, 5)),
    ("Range.chunks", lambda: meth("Range", "chunks", HUGE_RANGE, 7)),
    ("Range.zip", lambda: meth("Range", "zip", HUGE_RANGE, HUGE_RANGE)),
    ("Range.join", lambda: meth("Range", "join", HUGE_RANGE, ",")),
    ("Map.set", lambda: meth("Map", "set", dict.fromkeys(range(CAP)), -1, 0)),
    ("Map.insert", lambda: meth("Map", "insert", dict.fromkeys(range(CAP)), -1, 0)),
    ("Map.merge", lambda: meth("Map", "merge", dict.fromkeys(range(1500)), dict.fromkeys(range(1500, 3000)))),
    ("m[k] = v", lambda: operators.index_set(dict.fromkeys(range(CAP)), "new", 0)),
    ("m.k = v", lambda: operators.field_set(dict.fromkeys(range(CAP)), "new", 0)),
    ("hashmap set", lambda: operators.hashmap_set(dict.fromkeys(range(CAP)), "new", 0)),
    ("Set::new", lambda: fn("std::collections::Set::new", HUGE_RANGE)),
    ("Queue::new", lambda: fn("std::collections::Queue::new", HUGE_RANGE)),
    ("Stack::new", lambda: fn("std::collections::Stack::new", HUGE_RANGE)),
    ("Set.insert", lambda: meth("Set", "insert", SetValue(range(CAP)), -1)),
    ("Set.union", lambda: meth("Set", "union", SetValue(range(1500)), SetValue(range(1500, 3000)))),
    ("Queue.enqueue", lambda: meth("Queue", "enqueue", QueueValue(range(CAP)), 1)),
    ("Stack.push", lambda: meth("Stack", "push", StackValue(range(CAP)), 1)),
    ("fmt::format", lambda: fn("std::fmt::format", "{}{}", [BIG, BIG])),
    ("fmt::format repeated", lambda: fn("std::fmt::format", "{0}" * 3, [BIG])),
    ("fmt::pad_left", lambda: fn("std::fmt::pad_left", "x", 2**62)),
    ("fmt::pad_right", lambda: fn("std::fmt::pad_right", "x", 5000)),
    ("fmt::indent", lambda: fn("std::fmt::indent", "a\n" * 100, 30)),
    ("prompt::template", lambda: fn("std::prompt::template", "{{a}} ${a}", {"a": BIG})),
    ("crypto::random_bytes", lambda: fn("std::crypto::random_bytes", 2**62)),
    ("json::stringify", lambda: fn("std::json::stringify", [BIG, BIG])),
    ("json::stringify shared", lambda: fn("std::json::stringify", [[0] * 1000] * 1000)),
    ("json::stringify range", lambda: fn("std::json::stringify", HUGE_RANGE)),
    ("json::stringify_pretty indent", lambda: fn("std::json::stringify_pretty", [[1]] * 20, 200)),
    ("json::parse", lambda: fn("std::json::parse", "[" + "0," * 3000 + "0]")),
    ("Result.context", lambda: meth("Result", "context", REG_ERR(BIG), BIG)),
    ("debug", lambda: debug([BIG, BIG])),
    ("debug shared", lambda: display([[0] * 1000] * 1000)),
    ("to_string", lambda: meth("Array", "to_string", [BIG, BIG])),
    ("to_json range", lambda: to_json(HUGE_RANGE)),
]


def REG_ERR(text: str) -> Any:
    from concerto.vm.values import Err

    return Err(text)


@pytest.mark.parametrize(("what", "call"), OVERSIZED, ids=[w for w, _ in OVERSIZED])
def test_each_growth_point_refuses_to_pass_the_cap(what: str, call: Callable[[], Any]) -> None:
    with limits.applied(SMALL):
        with pytest.raises(ConcertoError) as info:
            call()
    assert info.value.kind == "ResourceError", info.value.message
    assert "exceed" in info.value.message and str(CAP) in info.value.message


def test_just_under_the_caps_is_fine() -> None:
    with limits.applied(SMALL):
        assert len(operators.add_values("a" * 1000, "b" * 1048)) == CAP
        assert len(meth("String", "repeat", "ab", 1024)) == CAP
        xs = [0] * (CAP - 1)
        meth("Array", "push", xs, 1)
        assert len(xs) == CAP
        assert len(meth("Range", "to_array", range(CAP))) == CAP
        assert meth("Range", "sum", range(10**9)) == (10**9 - 1) * 10**9 // 2  # closed form, nothing walked
        assert meth("Range", "max", HUGE_RANGE).value == 10**12 - 1
        assert meth("Range", "filter", range(10**5), lambda x: x < 3) == [0, 1, 2]


def test_messages_name_the_operation_the_size_and_the_cap() -> None:
    with pytest.raises(ConcertoError) as info:
        meth("String", "repeat", "x", 9_000_000_000_000)
    assert info.value.message == ("String.repeat: a string of 9000000000000 characters exceeds "
                                  "max_string_length (100000000)")
    with pytest.raises(ConcertoError) as info:
        meth("Range", "to_array", HUGE_RANGE)
    assert info.value.message == ("Range.to_array: a collection of 1000000000000 elements exceeds "
                                  "max_collection_size (10000000)")


class CountingVar:
    """Stands in for the caps' ContextVar and counts the reads."""

    def __init__(self) -> None:
        self.reads = 0

    def get(self) -> ResourceLimits:
        self.reads += 1
        return limits.DEFAULT


def test_small_values_never_read_the_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = CountingVar()
    monkeypatch.setattr(limits, "_CURRENT", counter)
    s = "x"
    for _ in range(8):  # up to 256 characters
        s = operators.add_values(s, s)
    operators.build_string(["a", 1, s])
    xs: list = []
    m: dict = {}
    for i in range(100):
        meth("Array", "push", xs, i)
        operators.index_set(m, i, i)
    meth("Array", "join", xs, ",")
    meth("String", "repeat", "ab", 100)
    fn("std::fmt::format", "{} {}", [1, s])
    display([xs, s])
    display(m)
    fn("std::json::stringify", [xs, s])
    assert counter.reads == 0
    operators.add_values(s * 4, s * 4)  # 2048 > UNCHECKED: now the cap is consulted
    assert counter.reads == 1


def test_caps_below_the_unchecked_size_are_refused() -> None:
    assert ResourceLimits(max_string_length=10).problems() == [
        "max_string_length must be an integer >= 1024, got 10"]
    rt = Runtime(RuntimeConfig(max_collection_size=5))
    rt.load_ir(_ir('fn main() { emit("x", 1); }'))
    with pytest.raises(RunError) as info:
        rt.run()
    assert info.value.kind == "ConfigError" and "max_collection_size must be an integer >= 1024" in info.value.message


# --- whole programs --------------------------------------------------------

PROGRAM = """
fn main() {
    let r = try { "x".repeat(9000000000000) } catch ResourceError(e) { e.message };
    emit("repeat", r);
    let big = try { (0..1000000000000).to_array().len() } catch RuntimeError(e) { -1 };
    emit("range", big);
    let mut s = "x";
    let mut n = 0;
    let doubled = try {
        loop { s = s + s; n = n + 1; }
        ""
    } catch ResourceError(e) { "${n}" };
    emit("doubled", doubled);
    let mut xs: Array<Int> = [];
    let chunk = (0..1000).to_array();
    let grown = try { loop { xs.extend(chunk); } 0 } catch ResourceError(e) { xs.len() };
    emit("grown", grown);
}
"""


def _ir(src: str) -> bytes:
    from concerto import ir
    from conftest import compile_ok

    return ir.encode(compile_ok(src).program)


def _run(src: str, **config: Any) -> list[tuple[str, Any]]:
    rt = Runtime(RuntimeConfig(**config))
    rt.load_ir(_ir(src))
    seen: list[tuple[str, Any]] = []
    rt.on("*", lambda channel, payload: seen.append((channel, payload)))
    rt.run()
    return seen


def test_a_program_catches_resource_errors_with_the_default_caps() -> None:
    out = dict(_run(PROGRAM))
    assert out["repeat"] == "String.repeat: a string of 9000000000000 characters exceeds max_string_length (100000000)"
    assert out["range"] == -1
    assert out["doubled"] == "26"  # 2**27 characters would pass 100,000,000
    assert out["grown"] == 10_000_000  # exactly the cap is allowed


def test_the_caps_are_set_per_run() -> None:
    out = dict(_run(PROGRAM, max_string_length=100_000, max_collection_size=50_000))
    assert out["doubled"] == "16"  # 2**17 = 131072 > 100000
    assert out["grown"] == 50_000


def test_an_uncaught_resource_error_ends_the_run_cleanly(tmp_path: Path) -> None:
    main = tmp_path / "m.conc"
    main.write_text('fn main() {\n    let s = "ab".repeat(2000);\n    emit("never", s.len());\n}\n')
    code, out, err = cli("run", str(main), "--max-string-length", "3000")
    assert code == 1 and out == ""
    assert "m.conc:2:" in err and "ResourceError: String.repeat: a string of 4000 characters exceeds " \
        "max_string_length (3000)" in err
    assert "Traceback" not in err
    code, out, err = cli("run", str(main), "--emit-format", "jsonl")
    assert code == 0 and json.loads(out) == {"channel": "never", "payload": 4000}
    code, _, err = cli("run", str(main), "--max-collection-size", "10")
    assert code == 2 and "--max-collection-size" in err
