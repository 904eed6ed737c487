"""`==` never lets Python's `1 == True` through (issue 11, point 10).

Concerto's equality is structural, Int and Bool are different types at every
depth, Int and Float compare by value, and NaN equals nothing. Map keys,
Sets, `contains` / `index_of` / `unique` and `match` follow the same rule.
Programs run in both tiers (conftest.run_both).
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from concerto.stdlib import load
from concerto.stdlib.std_collections import SetValue
from concerto.stdlib.support import hash_key
from concerto.vm.values import (
    NONE,
    EnumValue,
    Err,
    Ok,
    Some,
    StructValue,
    debug,
    to_json,
    values_equal,
)
from conftest import emitted

REG = load()

# --- values_equal, directly -----------------------------------------------

scalars = st.one_of(st.integers(-(2**63), 2**63 - 1), st.booleans(), st.text(max_size=5), st.none(),
                    st.floats(allow_nan=False))


def wrap(children):
    return st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=3), children, max_size=3),
        children.map(Some), children.map(Ok), children.map(Err),
        st.dictionaries(st.sampled_from(["a", "b"]), children, max_size=2).map(lambda f: StructValue("P", f)),
        st.tuples(children).map(lambda d: EnumValue("E", "V", d)),
    )


values = st.recursive(scalars, wrap, max_leaves=12)


def bools_to_ints(v):
    """The same value with every Bool replaced by the Int Python thinks it equals."""
    t = type(v)
    if t is bool:
        return int(v)
    if t is list:
        return [bools_to_ints(x) for x in v]
    if t is tuple:
        return tuple(bools_to_ints(x) for x in v)
    if t is dict:
        return {k: bools_to_ints(x) for k, x in v.items()}
    if t in (Some, Ok, Err):
        return t(bools_to_ints(v.value))
    if t is StructValue:
        return StructValue(v.type_name, bools_to_ints(v.fields))
    if t is EnumValue:
        return EnumValue(v.enum_name, v.variant, bools_to_ints(v.data))
    return v


def has_bool(v) -> bool:
    return "true" in debug(v) or "false" in debug(v)


@settings(max_examples=300, deadline=None)
@given(values)
def test_a_value_equals_itself_and_never_its_bools_as_ints(v) -> None:
    assert values_equal(v, v)
    # Python alone says these are equal whenever they differ only in Bool vs Int.
    if has_bool(v) and not any(isinstance(x, str) and ("true" in x or "false" in x) for x in _strings(v)):
        assert not values_equal(v, bools_to_ints(v))
        assert not values_equal(bools_to_ints(v), v)


def _strings(v):
    t = type(v)
    if t is str:
        yield v
    elif t in (list, tuple):
        for x in v:
            yield from _strings(x)
    elif t is dict:
        for k, x in v.items():
            yield k
            yield from _strings(x)
    elif t in (Some, Ok, Err):
        yield from _strings(v.value)
    elif t is StructValue:
        yield from _strings(v.fields)
    elif t is EnumValue:
        yield from _strings(v.data)


def test_equality_rules_at_depth() -> None:
    assert not values_equal([1], [True])
    assert not values_equal(Some(1), Some(True))
    assert not values_equal(Ok(0), Ok(False))
    assert not values_equal(Err([1]), Err([True]))
    assert not values_equal((1, 2), (True, 2))
    assert not values_equal({"a": 1}, {"a": True})
    assert not values_equal(StructValue("P", {"x": 1}), StructValue("P", {"x": True}))
    assert not values_equal(EnumValue("E", "V", (1,)), EnumValue("E", "V", (True,)))
    assert values_equal([1, [2]], [1.0, [2.0]])  # Int and Float compare by value
    nan = math.nan
    assert not values_equal([nan], [nan]) and not values_equal(Some(nan), Some(nan))
    assert not values_equal(NONE, None)  # Option::None is not nil


def test_sets_and_hash_keys_keep_true_apart_from_one() -> None:
    assert hash_key(True) != hash_key(1) and hash_key([True]) != hash_key([1])
    assert len(SetValue([1, True, [1], [True], Some(1), Some(True)])) == 6
    assert SetValue([1]) != SetValue([True])


# --- through programs (both tiers) --------------------------------------------


def test_compound_values_with_bool_and_int_are_not_equal() -> None:
    src = """
    struct Box { v: Any }
    enum Tag { Of(Any) }
    fn main() {
        let one: Any = 1;
        let yes: Any = true;
        emit("arrays", [[one] == [yes], [one] != [yes], [one] == [one]]);
        emit("options", [Some(one) == Some(yes), Some(one) == Some(one)]);
        emit("results", [Ok(one) == Ok(yes), Err(one) == Err(yes)]);
        emit("tuples", (one, 2) == (yes, 2));
        emit("structs", Box { v: one } == Box { v: yes });
        emit("enums", Tag::Of(one) == Tag::Of(yes));
        emit("maps", [{"k": one} == {"k": yes}, {"k": one} == {"k": 1}]);
        emit("numbers", [[1, 2] == [1.0, 2.0]]);
        let n = 0.0 / 0.0;
        emit("nan", [[n] == [n], n == n]);
    }
    """
    assert emitted(src) == [[False, True, True], [False, True], [False, False], False, False, False,
                            [False, True], [True], [False, False]]


def test_map_keys_true_and_one_are_two_keys() -> None:
    src = """
    fn main() {
        let mut m: Map<Any, String> = {1: "one", true: "yes"};
        emit("len", m.len());
        emit("index", [m[1], m[true]]);
        m[false] = "no";
        m[0] = "zero";
        emit("keys", m.keys());
        emit("has", [m.has(true), m.has(1), m.contains_key(false)]);
        emit("get", m.get(0));
        let mut seen = [];
        for (k, v) in m { seen.push("${k}=${v}"); }
        emit("for", seen);
        emit("entries", m.entries().len());
        emit("shown", "${m}");
        m.delete(true);
        emit("after", [m.has(true), m.has(1)]);
        emit("filtered", m.filter(|k, v| k == false).keys());
    }
    """
    assert emitted(src) == [
        2, ["one", "yes"], [1, True, False, 0], [True, True, True], "zero",
        ["1=one", "true=yes", "false=no", "0=zero"], 4,
        '{1: "one", true: "yes", false: "no", 0: "zero"}', [False, True], [False],
    ]


def test_stdlib_searches_use_concerto_equality() -> None:
    src = """
    use std::collections::Set;
    fn main() {
        let one: Any = 1;
        let yes: Any = true;
        let zero: Any = 0;
        let no: Any = false;
        let xs = [one, yes, zero, no, [one], [yes]];
        emit("contains", [xs.contains(yes), [one].contains(yes), [[one]].contains([yes])]);
        emit("index_of", [xs.index_of(yes), xs.index_of(no), xs.index_of([yes])]);
        emit("unique", [one, yes, one, yes].unique());
        emit("set", Set::new([one, yes, one]).len());
    }
    """
    assert emitted(src) == [[True, False, False], [1, 3, 5], [1, True], 2]


def test_match_on_literals_tells_bool_from_int() -> None:
    src = """
    fn kind(x: Any) -> String {
        match x { 1 => "one", true => "true", _ => "other" }
    }
    fn main() {
        emit("k", [kind(1), kind(true), kind(1.0), kind(false)]);
        let one: Any = 1;
        let yes: Any = true;
        let pair: Any = [one, yes];
        emit("arr", match pair { [true, 1] => "swapped", [1, true] => "right", _ => "none" });
    }
    """
    assert emitted(src) == [["one", "true", "one", "other"], "right"]


def test_maps_with_bool_keys_cross_to_the_host_as_json() -> None:
    m = {}
    REG.methods["Map"]["set"].fn(None, m, True, 1)
    REG.methods["Map"]["set"].fn(None, m, 1, 2)
    assert to_json(m) == {"true": 1, "1": 2}
    assert REG.methods["Map"]["keys"].fn(None, m) == [True, 1]


def test_hashmap_declarations_keep_bool_keys_apart() -> None:
    src = """
    hashmap flags: HashMap<Any, String> = HashMap::new();
    fn main() {
        flags.set(true, "yes");
        flags.set(1, "one");
        emit("has", [flags.has(true), flags.has(1), flags.has(false), flags.has(0)]);
        emit("get", [flags.get(true), flags.get(1)]);
        flags.delete(true);
        emit("after", [flags.has(true), flags.has(1)]);
    }
    """
    assert emitted(src) == [[True, True, False, False], ["yes", "one"], [False, True]]
