"""Long native calls end soon after the deadline (issue 11, point 3).

A native that walks a large value in Python (rendering, joining, JSON,
equality, hashing, sorting) polls the run's interrupt flag every few
thousand items (vm/interrupts.py `poll`), so `execution_timeout` and
`cancel()` stop the run in the middle of the call instead of after it.
Each program builds its value in a few milliseconds (an Array holding the
same row thousands of times), emits "built", then makes one native call of
one to three seconds; the deadline falls inside that call.

The second half pins that the slicing changes nothing else: every native
gives the same result (and the same fault) when its slices are made tiny,
and the sliced algorithms (sort, JSON text, split) agree with Python's own.
"""

from __future__ import annotations

import contextlib
import json
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concerto import RunError, Runtime, RuntimeConfig
from concerto.stdlib import json_text, load, methods_string, sorting, std_crypto, std_json
from concerto.stdlib.std_collections import SetValue
from concerto.stdlib.support import hash_key
from concerto.vm import interrupts, values
from concerto.vm.operators import map_key
from concerto.vm.values import NONE, ConcertoError, Err, Ok, Some, StructValue, debug, from_json, to_json

DEADLINE = 0.3  # seconds: execution_timeout, and when cancel() is called
# Generous for a shared 2-core machine; without polling these calls overshot
# by 0.8 to 2.7 s (the 100 ms target is measured by bench/deadlines.py).
OVERSHOOT_BOUND = 0.6
TIERS = pytest.mark.parametrize("jit", [True, False], ids=["compiled", "interpreted"])

ROWS = """
fn rows(n: Int, width: Int) -> Array<Array<Int>> {
    let row = (0..width).to_array();
    (0..n).map(|i| row)
}
"""

# name -> a program whose one native call outlasts the deadline by far.
LONG_CALLS = {
    "join": ROWS + 'fn main() { let xs = rows(8000, 1000); emit("built", 0); emit("done", xs.join(",").len()); }',
    "to_string": ROWS + 'fn main() { let xs = rows(7000, 1000); emit("built", 0); emit("done", xs.to_string().len()); }',
    "json_stringify": ROWS + """
fn main() { let xs = rows(8000, 1000); emit("built", 0); emit("done", std::json::stringify(xs).len()); }
""",
    "unique": ROWS + 'fn main() { let xs = rows(25000, 1000); emit("built", 0); emit("done", xs.unique().len()); }',
    # Every row equals the one sought up to its last element.
    "deep_contains": ROWS + """
fn main() {
    let xs = rows(15000, 1000);
    let mut wanted = (0..1000).to_array();
    wanted[999] = -1;
    emit("built", 0);
    emit("done", xs.contains(wanted));
}
""",
    # A native key function: no Concerto code runs, so only the native's own polls can stop it.
    "sort_by": """
fn main() { let xs = (0..3000000).to_array(); emit("built", 0); emit("done", xs.sort_by(std::math::abs).len()); }
""",
    "sorted": """
fn main() {
    let xs = "qwertyuiopasdfghjklzxcvbnm".repeat(380000).chars();
    emit("built", 0);
    emit("done", xs.sorted().len());
}
""",
}


def _runtime(tmp_path: Path, source: str, **config: Any) -> Runtime:
    path = tmp_path / "main.conc"
    path.write_text(textwrap.dedent(source))
    rt = Runtime(RuntimeConfig(**config))
    rt.load_source(path)
    return rt


def _stop(rt: Runtime, cancel_at: float | None = None) -> tuple[RunError | None, float, list[str]]:
    """Run to the end: (error, seconds from the deadline to the end, channels).
    The deadline is execution_timeout after execute() began, or the moment
    cancel() was called from another thread (`cancel_at` seconds in)."""
    seen: list[str] = []
    rt.on("*", lambda channel, _payload: seen.append(channel))
    cancelled: list[float] = []

    def cancel() -> None:
        cancelled.append(time.monotonic())
        rt.cancel()

    timer = threading.Timer(cancel_at, cancel) if cancel_at is not None else None

    async def run() -> tuple[RunError | None, float]:
        started = time.monotonic()
        if timer is not None:
            timer.start()
        try:
            await rt.execute()
        except RunError as e:
            return e, started
        return None, started

    error, started = anyio.run(run)
    ended = time.monotonic()
    if timer is not None:
        timer.join()
        return error, ended - cancelled[0], seen
    return error, ended - (started + DEADLINE), seen


@TIERS
@pytest.mark.parametrize("name", list(LONG_CALLS))
def test_a_long_native_call_ends_soon_after_the_timeout(tmp_path, name, jit):
    rt = _runtime(tmp_path, LONG_CALLS[name], jit=jit, execution_timeout=DEADLINE)
    error, overshoot, seen = _stop(rt)
    assert error is not None and error.kind == "TimeoutError", error
    assert seen[:1] == ["built"]  # the value was built before the deadline
    assert overshoot < OVERSHOOT_BOUND, f"ended {overshoot:.3f} s after the deadline"
    assert seen == ["built"]  # the native call never finished


@pytest.mark.parametrize("name", ["join", "sorted"])
def test_cancel_from_another_thread_stops_a_long_native_call(tmp_path, name):
    rt = _runtime(tmp_path, LONG_CALLS[name])
    error, overshoot, seen = _stop(rt, cancel_at=DEADLINE)
    assert error is not None and error.kind == "CancelledError", error
    assert seen[:1] == ["built"]
    assert overshoot < OVERSHOOT_BOUND, f"ended {overshoot:.3f} s after cancel()"
    assert seen == ["built"]


def test_a_catch_all_cannot_catch_the_stop_inside_a_native(tmp_path):
    rt = _runtime(tmp_path, ROWS + """
fn main() {
    let xs = rows(8000, 1000);
    emit("built", 0);
    loop {
        try { emit("done", xs.join(",").len()); } catch { emit("caught", 1); }
    }
}
""", execution_timeout=DEADLINE)
    error, overshoot, seen = _stop(rt)
    assert error is not None and error.kind == "TimeoutError"
    assert overshoot < OVERSHOOT_BOUND, f"ended {overshoot:.3f} s after the deadline"
    assert seen == ["built"]


def test_polls_in_a_run_that_is_not_stopping_change_nothing(tmp_path):
    # The same long calls with time to spare: they poll thousands of times and finish.
    rt = _runtime(tmp_path, ROWS + """
fn main() {
    let xs = rows(300, 1000);
    let s = xs.join(",");
    emit("lengths", [s.len(), xs.to_string().len(), std::json::stringify(xs).len(), xs.unique().len()]);
    emit("sorted", (0..20000).to_array().reversed().sorted().take(3));
}
""", execution_timeout=60)
    got: dict[str, Any] = {}
    rt.on("lengths", lambda v: got.__setitem__("lengths", v))
    rt.on("sorted", lambda v: got.__setitem__("sorted", v))
    rt.run()
    shown = "[" + ", ".join(map(str, range(1000))) + "]"
    as_json = "[" + ",".join(map(str, range(1000))) + "]"
    assert got["lengths"] == [len(",".join([shown] * 300)), len("[" + ", ".join([shown] * 300) + "]"),
                              len("[" + ",".join([as_json] * 300) + "]"), 1]
    assert got["sorted"] == [0, 1, 2]


def test_poll_outside_a_run_does_nothing():
    assert interrupts.CURRENT.get() is None
    for _ in range(3):
        assert interrupts.poll() is None
    # A native walking a large value outside any run polls freely and finishes.
    big = list(range(3 * values.CHUNK + 5))
    assert values.debug(big) == "[" + ", ".join(map(str, big)) + "]"


# ------------------------------------------------------------ same results
@contextlib.contextmanager
def tiny_slices() -> Iterator[None]:
    """Every slicing size down to a handful of items, so that small inputs
    take the sliced paths (and poll, outside a run: a no-op) everywhere."""
    from concerto.stdlib import methods_array, std_fmt, std_prompt, support

    patches: list[tuple[Any, str, Any]] = [
        (values, "CHUNK", 3), (support, "CHUNK", 3), (methods_array, "CHUNK", 3), (std_json, "CHUNK", 3),
        (std_fmt, "CHUNK", 3), (std_prompt, "CHUNK", 3),
        (sorting, "RUN", 4), (sorting, "STEP", 4), (sorting, "EVERY", 2),
        (json_text, "STEP", 3), (methods_string, "_WINDOW", 3), (std_json, "_SEARCH_WINDOW", 5),
        (std_json, "_QUICK", 0), (std_crypto, "_STEP", 3),
    ]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    try:
        for module, name, value in patches:
            setattr(module, name, value)
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


REG = load()


class _Context:
    """What natives may ask of the machine; callbacks here are Python functions."""

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        return function(*args)

    def convert(self, value: Any, type_name: str) -> Any:
        return value


CTX = _Context()


def _method(type_name: str, name: str) -> Callable[..., Any]:
    native = REG.methods[type_name][name]
    return lambda *args: native.fn(CTX, *args)


def _function(path: str) -> Callable[..., Any]:
    native = REG.functions[path]
    return lambda *args: native.fn(CTX, *args)


def _outcome(call: Callable[[], Any]) -> str:
    """A call's result as exact text (1, 1.0 and true differ), or its fault."""
    try:
        result = call()
    except ConcertoError as e:
        return f"fault {e.kind}: {e.message}"
    return debug(result)


def _both_ways(call: Callable[[], Any]) -> None:
    plain = _outcome(call)
    with tiny_slices():
        sliced = _outcome(call)
    assert sliced == plain


scalars = st.one_of(st.integers(-5, 5), st.sampled_from([0.5, -2.0, 1.0, float("nan"), float("inf")]),
                    st.text(alphabet="ab,\n\r ", max_size=4), st.booleans(), st.none())


def _compound(children: st.SearchStrategy) -> st.SearchStrategy:
    keys = st.one_of(st.text(alphabet="ab", max_size=2), st.integers(-2, 2), st.booleans())
    return st.one_of(
        st.lists(children, max_size=9),
        st.dictionaries(keys, children, max_size=6).map(lambda d: {map_key(k): v for k, v in d.items()}),
        children.map(Some), children.map(Ok), children.map(Err),
        children.map(lambda v: StructValue("P", {"x": v})),
    )


nested = st.recursive(scalars, _compound, max_leaves=25)
lists = st.lists(nested, max_size=14)
numbers = st.lists(st.one_of(st.integers(-4, 4), st.sampled_from([0.5, -1.0, 2.0, 1.0])), max_size=30)
words = st.lists(st.text(alphabet="abc", max_size=3), max_size=30)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ARRAY_METHODS: dict[str, Callable[[list, Any], Any]] = {
    "join": lambda xs, other: _method("Array", "join")(xs, ", "),
    "to_string": lambda xs, other: _method("Array", "to_string")(xs),
    "unique": lambda xs, other: _method("Array", "unique")(xs),
    "contains": lambda xs, other: _method("Array", "contains")(xs, other),
    "index_of": lambda xs, other: _method("Array", "index_of")(xs, other),
    "sorted": lambda xs, other: _method("Array", "sorted")(xs),
    "sort": lambda xs, other: (lambda ys: (_method("Array", "sort")(ys), ys)[1])(list(xs)),
    "sort_by": lambda xs, other: _method("Array", "sort_by")(xs, lambda x: debug(x)[:1]),
    "min": lambda xs, other: _method("Array", "min")(xs),
    "max": lambda xs, other: _method("Array", "max")(xs),
    "sum": lambda xs, other: _method("Array", "sum")(xs),
    "flatten": lambda xs, other: _method("Array", "flatten")(xs),
    "concat": lambda xs, other: _method("Array", "concat")(xs, [other, other]),
    "extend": lambda xs, other: (lambda ys: (_method("Array", "extend")(ys, xs), ys)[1])([other]),
    "enumerate": lambda xs, other: _method("Array", "enumerate")(xs),
    "zip": lambda xs, other: _method("Array", "zip")(xs, xs[1:]),
    "chunks": lambda xs, other: _method("Array", "chunks")(xs, 2),
    "reversed": lambda xs, other: _method("Array", "reversed")(xs),
    "map": lambda xs, other: _method("Array", "map")(xs, debug),
    "filter": lambda xs, other: _method("Array", "filter")(xs, lambda x: x is True or x == 1),
    "reduce": lambda xs, other: _method("Array", "reduce")(xs, 0, lambda acc, x: acc + len(debug(x))),
    "find_index": lambda xs, other: _method("Array", "find_index")(xs, lambda x: values.values_equal(x, other)),
    "any": lambda xs, other: _method("Array", "any")(xs, lambda x: values.values_equal(x, other)),
    "count": lambda xs, other: _method("Array", "count")(xs, lambda x: type(x) is list),
    "flat_map": lambda xs, other: _method("Array", "flat_map")(xs, lambda x: [x, x]),
    "partition": lambda xs, other: _method("Array", "partition")(xs, lambda x: type(x) is int),
    "equal": lambda xs, other: values.values_equal(xs, list(xs)) and not values.values_equal(xs, xs + [other]),
    "to_json": lambda xs, other: from_json(to_json(xs)),
    "hash_key": lambda xs, other: hash_key(xs) == hash_key(list(xs)),
    "set": lambda xs, other: _method("Set", "to_array")(_function("std::collections::Set::new")(xs)),
    "set_ops": lambda xs, other: [f(SetValue(xs), SetValue(xs[::2])).elements()
                                  for f in (_method("Set", "union"), _method("Set", "intersection"),
                                            _method("Set", "difference"))],
    "stringify": lambda xs, other: _function("std::json::stringify")(xs),
    "stringify_pretty": lambda xs, other: _function("std::json::stringify_pretty")(xs, 3),
    "json_round_trip": lambda xs, other: _function("std::json::parse")(_function("std::json::stringify")(xs)),
}


@pytest.mark.parametrize("name", list(ARRAY_METHODS))
@SETTINGS
@given(xs=lists, other=nested)
def test_array_natives_give_the_same_result_in_tiny_slices(name, xs, other):
    _both_ways(lambda: ARRAY_METHODS[name](xs, other))


@pytest.mark.parametrize("name", ["sorted", "min", "max", "sum", "unique", "set"])
@SETTINGS
@given(xs=numbers)
def test_number_natives_give_the_same_result_in_tiny_slices(name, xs):
    # Ints and Floats that tie (1 and 1.0): which one comes first is part of the result.
    _both_ways(lambda: ARRAY_METHODS[name](xs, 0))


@pytest.mark.parametrize("name", ["sorted", "sort_by", "min", "max", "join", "set"])
@SETTINGS
@given(xs=words)
def test_string_array_natives_give_the_same_result_in_tiny_slices(name, xs):
    _both_ways(lambda: ARRAY_METHODS[name](xs, ""))


MAP_METHODS: dict[str, Callable[[dict, dict], Any]] = {
    "keys": lambda m, o: _method("Map", "keys")(m),
    "values": lambda m, o: _method("Map", "values")(m),
    "entries": lambda m, o: _method("Map", "entries")(m),
    "merge": lambda m, o: _method("Map", "merge")(m, o),
    "filter": lambda m, o: _method("Map", "filter")(m, lambda k, v: type(k) is str),
    "to_string": lambda m, o: _method("Map", "to_string")(m),
    "equal": lambda m, o: values.values_equal(m, dict(m)) and values.values_equal(m, o) == (debug(m) == debug(o)),
}
maps = st.dictionaries(st.one_of(st.text(alphabet="abc", max_size=2), st.integers(-3, 3), st.booleans()),
                       nested, max_size=10).map(lambda d: {map_key(k): v for k, v in d.items()})


@pytest.mark.parametrize("name", list(MAP_METHODS))
@SETTINGS
@given(m=maps, o=maps)
def test_map_natives_give_the_same_result_in_tiny_slices(name, m, o):
    _both_ways(lambda: MAP_METHODS[name](m, o))


text = st.text(alphabet="ab \n\r\t{}$0", max_size=40)
STRING_FUNCTIONS: dict[str, Callable[[str, str], Any]] = {
    "split": lambda s, sep: _method("String", "split")(s, sep),
    "split_blank": lambda s, sep: _method("String", "split")(s),
    "lines": lambda s, sep: _method("String", "lines")(s),
    "indent": lambda s, sep: _function("std::fmt::indent")(s, 2),
    "format": lambda s, sep: _function("std::fmt::format")(s, [1, "x", [sep]]),
    "template": lambda s, sep: _function("std::prompt::template")(s, {"a": 1, "b": [sep]}),
    "sha256": lambda s, sep: _function("std::crypto::sha256")(s + "\ud800" + sep),
    "md5": lambda s, sep: _function("std::crypto::md5")(s + sep),
    "parse": lambda s, sep: _function("std::json::parse")(s),
}


@pytest.mark.parametrize("name", list(STRING_FUNCTIONS))
@SETTINGS
@given(s=text, sep=st.sampled_from(["a", "ab", "aa", "\n", " ", "{", "b a"]))
def test_string_natives_give_the_same_result_in_tiny_slices(name, s, sep):
    _both_ways(lambda: STRING_FUNCTIONS[name](s, sep))


json_texts = st.recursive(
    st.one_of(st.integers(-10, 10), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3),
              st.booleans(), st.none()),
    lambda children: st.one_of(st.lists(children, max_size=6), st.dictionaries(st.text(max_size=2), children,
                                                                               max_size=5)),
    max_leaves=30,
).map(json.dumps)


@SETTINGS
@given(source=json_texts)
def test_json_parse_gives_the_same_result_in_tiny_slices(source):
    _both_ways(lambda: _function("std::json::parse")(source))


# ------------------------------------------------------------ the sliced algorithms
@settings(max_examples=150, deadline=None)
@given(items=st.lists(st.tuples(st.integers(0, 6), st.integers()), max_size=200),
       run=st.integers(1, 9), step=st.integers(1, 12), every=st.integers(2, 4))
def test_sort_in_steps_is_a_stable_sort(items, run, step, every):
    saved = sorting.RUN, sorting.STEP, sorting.EVERY
    sorting.RUN, sorting.STEP, sorting.EVERY = run, max(step, every), every
    try:
        key = lambda pair: pair[0]  # noqa: E731  (ties on the key keep input order)
        assert sorting.sort_in_steps(items, key) == sorted(items, key=key)
        assert sorting.sort_in_steps([k for k, _ in items]) == sorted(k for k, _ in items)
        keys = [k for k, _ in items]
        assert sorting.sort_in_steps(range(len(keys)), keys.__getitem__) == sorted(range(len(keys)),
                                                                                   key=keys.__getitem__)
    finally:
        sorting.RUN, sorting.STEP, sorting.EVERY = saved


@settings(max_examples=150, deadline=None)
@given(data=st.recursive(
    st.one_of(st.integers(), st.floats(), st.text(max_size=3), st.booleans(), st.none()),
    lambda children: st.one_of(st.lists(children, max_size=7),
                               st.dictionaries(st.text(alphabet="ab\n\u00e9", max_size=2), children, max_size=5)),
    max_leaves=40),
    indent=st.sampled_from([None, 0, 1, 4]), step=st.integers(1, 10))
def test_json_text_in_steps_is_json_dumps(data, indent, step):
    saved = json_text.STEP
    json_text.STEP = step
    try:
        separators = (",", ":") if indent is None else (",", ": ")
        want = json.dumps(data, separators=separators, indent=indent, ensure_ascii=False)
        assert json_text.dumps(data, indent, allow_nan=True) == want
    finally:
        json_text.STEP = saved


@settings(max_examples=150, deadline=None)
@given(s=st.text(alphabet="ab \n\u00a0", max_size=60), sep=st.sampled_from(["a", "aa", "ab", "aba", " ", "\n"]),
       window=st.integers(1, 7), cap=st.integers(0, 30))
def test_splitting_in_windows_is_str_split(s, sep, window, cap):
    saved = methods_string._WINDOW
    methods_string._WINDOW = window
    try:
        assert methods_string.split_on(s, sep) == s.split(sep)
        words = methods_string._split_blank(s, cap)
        if len(s.split()) <= cap:
            assert words == s.split()
        else:
            assert len(words) > cap  # enough to refuse: the caller raises ResourceError
    finally:
        methods_string._WINDOW = saved


def test_values_the_slices_cannot_order_totally_are_sorted_as_before():
    # NaN among numbers: sorted() alone decides, as before; sort_in_steps is not used.
    nan = float("nan")
    xs = [3.0, nan, 1.0, 2.0, nan, 0.5] * 3
    with tiny_slices():
        assert debug(_method("Array", "sorted")(xs)) == debug(sorted(xs))
    assert _outcome(lambda: _method("Array", "sorted")([[2], [1]])) == "[[1], [2]]"
    assert _outcome(lambda: _method("Array", "sorted")([NONE, NONE])).startswith("fault TypeError")
