"""Behaviour of the core language (spec 01-06, 13, 14), program by program.

Each test compiles a small inline program, round-trips it through IR JSON
(see conftest.run_source) and compares what it emits. Where the
implementation disagrees with the spec the test keeps the spec's answer and
is marked xfail(strict=True) with the reason.
"""

from __future__ import annotations

import textwrap

import pytest

from conftest import emitted, run_fault, run_source


# ---------------------------------------------------------------- known bugs
# Each reason names the spec rule the implementation breaks; the strict-xfail
# tests keep asserting the spec behaviour.


def body(stmts: str, items: str = "") -> str:
    """A program: ITEMS, then `fn main() { STMTS }`."""
    return textwrap.dedent(items) + "\nfn main() {\n" + textwrap.dedent(stmts) + "\n}\n"


def one(stmts: str, items: str = "") -> object:
    """Run a program that emits exactly once; return that payload."""
    out = emitted(body(stmts, items))
    assert len(out) == 1, out
    return out[0]


# ---------------------------------------------------------------- literals

@pytest.mark.parametrize("lit, value", [
    ("42", 42),
    ("-17", -17),
    ("1_000_000", 1_000_000),
    ("0xFF", 255),
    ("0xff", 255),
    ("0b1010", 10),
    ("0o77", 63),
    ("0xFF_FF", 0xFFFF),
    ("9_223_372_036_854_775_807", 9_223_372_036_854_775_807),
])
def test_int_literals(lit, value):
    assert one(f'emit("v", {lit});') == value


@pytest.mark.parametrize("lit, value", [
    ("3.14159", 3.14159),
    ("-2.5", -2.5),
    ("1.5e10", 1.5e10),
    ("2.3e-4", 2.3e-4),
    ("1e3", 1000.0),
    ("1_000.50", 1000.5),
    ("6.02E+23", 6.02e23),
])
def test_float_literals(lit, value):
    v = one(f'emit("v", {lit});')
    assert isinstance(v, float) and v == value


def test_int_and_float_types_are_distinct():
    assert emitted(body('emit("a", 2); emit("b", 2.0); emit("c", 10 + 2.5);')) == [2, 2.0, 12.5]
    assert [type(v) for v in emitted(body('emit("a", 2); emit("b", 2.0);'))] == [int, float]


@pytest.mark.parametrize("src, value", [
    (r'"Line 1\nLine 2\tTabbed"', "Line 1\nLine 2\tTabbed"),
    (r'"q\"b\\s"', 'q"b\\s'),
    (r'"cr\r"', "cr\r"),
    (r'"nul\0"', "nul\0"),
    (r'"Unicode: \u{1F600}"', "Unicode: \U0001F600"),
    (r'"\u{41}\u{e9}"', "A\u00e9"),
    ('"héllo ✓"', "héllo ✓"),
])
def test_string_escapes(src, value):
    assert one(f'emit("v", {src});') == value


def test_interpolation_simple_and_expression():
    out = emitted(body('''
        let name = "World";
        emit("a", "Hello, ${name}!");
        emit("b", "Result: ${2 + 2}");
        emit("c", "Upper: ${name.to_upper()}");
        emit("d", "${name}${name}");
        emit("e", "no interp: $name and $ {x}");
    '''))
    assert out == ["Hello, World!", "Result: 4", "Upper: WORLD", "WorldWorld", "no interp: $name and $ {x}"]


def test_interpolation_with_nested_braces_and_strings():
    out = emitted(body('''
        emit("a", "a ${ {"k": "v"}["k"] } b");
        emit("b", "${"inner ${1+1}"}");
        emit("c", "x${ if true { "y" } else { "n" } }z");
        emit("d", "${[1, 2, 3].map(|x| x * 2)}");
    '''))
    assert out[:3] == ["a v b", "inner 2", "xyz"]
    assert out[3].replace(" ", "") == "[2,4,6]"


def test_interpolation_of_values_of_each_type():
    out = emitted(body('''
        emit("i", "${42}");
        emit("f", "${2.5}");
        emit("b", "${true}");
        emit("n", "${nil}");
    '''))
    assert out == ["42", "2.5", "true", "nil"]


def test_triple_quoted_string_trims_indentation():
    src = body('''
        let doc = "report";
        let s = """
            You are a classifier.
              - indented item
            Document: ${doc}
            """;
        emit("s", s);
    ''')
    (s,) = emitted(src)
    assert s.strip("\n") == "You are a classifier.\n  - indented item\nDocument: report"
    assert not s.startswith(" ")


def test_triple_quoted_string_keeps_quotes_and_blank_lines():
    (s,) = emitted(body('''
        let s = """
            say "hi"

            end
            """;
        emit("s", s);
    '''))
    assert s.strip("\n") == 'say "hi"\n\nend'


def test_raw_strings():
    out = emitted(body(r'''
        emit("a", r#"(\d+)\s+(\w+)"#);
        emit("b", r#"{"key": "value", "nested": {"a": 1}}"#);
        emit("c", r##"Say "hello" to the user"##);
        emit("d", r##"a "# b"##);
        emit("e", r#"no ${interp} here\n"#);
    '''))
    assert out == [
        r"(\d+)\s+(\w+)",
        '{"key": "value", "nested": {"a": 1}}',
        'Say "hello" to the user',
        'a "# b',
        r"no ${interp} here\n",
    ]


def test_comments_line_block_nested_and_doc():
    src = '''
        // a line comment
        /* a block comment */
        /*
         * multi-line
         */
        /* Block comments /* can nest */ safely */

        /// Doc comment for the following item.
        /// # Examples
        /// ```
        /// let x = twice(2);
        /// ```
        fn twice(x: Int) -> Int { x * 2 } // trailing

        fn main() {
            let x = /* inline */ 5; // inline comment
            /* /* /* deep */ */ */
            emit("v", twice(x));
        }
    '''
    assert emitted(src) == [10]


def test_bool_nil_array_map_tuple_literals():
    out = emitted(body('''
        emit("b", [true, false]);
        emit("n", nil);
        emit("a", [[1, 2], [3, 4]]);
        let empty: Array<Int> = [];
        emit("e", empty);
        emit("m", {"model": "gpt-4o", "temperature": 0.7,});
        let none: Map<String, Int> = {};
        emit("em", none);
        emit("t", (1, "hello"));
    '''))
    assert out == [[True, False], None, [[1, 2], [3, 4]], [], {"model": "gpt-4o", "temperature": 0.7}, {},
                   [1, "hello"]]


# ---------------------------------------------------------------- bindings

def test_let_mut_and_shadowing():
    out = emitted(body('''
        let input = "  hello  ";
        let input = input.trim();
        let input = input.to_upper();
        emit("s", input);
        let count = "42";
        let count = count.len();
        emit("c", count);
        let mut counter = 0;
        counter = counter + 1;
        counter += 1;
        emit("m", counter);
        let mut items = [1, 2, 3];
        items.push(4);
        emit("p", items);
        items = [5, 6, 7];
        emit("r", items);
    '''))
    assert out == ["HELLO", 2, 2, [1, 2, 3, 4], [5, 6, 7]]


def test_block_scoping_restores_outer_binding():
    out = emitted(body('''
        let x = 1;
        {
            let y = 2;
            let x = 10;
            emit("inner", x + y);
        }
        emit("outer", x);
        if true {
            let x = "shadow";
            emit("if", x);
        }
        emit("after", x);
    '''))
    assert out == [12, 1, "shadow", 1]


def test_block_expressions_and_semicolon_discard():
    out = emitted(body('''
        let result = {
            let a = 2;
            let b = 3;
            a + b
        };
        emit("a", result);
        let y = { 5 };
        emit("b", y);
        let z = { 5; };
        emit("c", z);
    '''))
    assert out == [5, 5, None]


def test_destructuring_let():
    out = emitted(body('''
        let pair = (42, "hello");
        let (num, text) = pair;
        emit("t", [num.to_string(), text]);
        let (_, only) = pair;
        emit("u", only);
        let ((a, b), label) = ((1, 2), "outer");
        emit("n", [a.to_string(), b.to_string(), label]);
        let p = Point { x: 1, y: 2 };
        let Point { x, y } = p;
        emit("s", [x, y]);
        let Point { x: horizontal, y: vertical } = p;
        emit("r", [horizontal, vertical]);
        let Point { x: just_x, .. } = p;
        emit("p", just_x);
        let items = [1, 2, 3, 4, 5];
        let [first, second, ..rest] = items;
        emit("a", [first, second]);
        emit("rest", rest);
    ''', items='struct Point { x: Int, y: Int }'))
    assert out == [["42", "hello"], "hello", ["1", "2", "outer"], [1, 2], [1, 2], 1, [1, 2], [3, 4, 5]]


def test_uninitialized_binding_assigned_on_every_path():
    # spec 03 "Uninitialized Bindings": `let result: String;` then assign in each branch.
    out = emitted(body('''
        let condition = true;
        let result: String;
        if condition {
            result = "yes";
        } else {
            result = "no";
        }
        emit("result", result);
    '''))
    assert out == ["yes"]


def test_uninitialized_binding_assigned_once():
    out = emitted(body('''
        let result: String;
        result = "once";
        emit("result", result);
    '''))
    assert out == ["once"]


def test_const_at_module_and_function_scope():
    out = emitted(body('''
        const LOCAL: Int = MAX_RETRIES * 2;
        emit("a", [MAX_RETRIES, LOCAL]);
        emit("b", DEFAULT_MODEL);
        emit("c", PI);
        emit("d", ENABLED);
    ''', items='''
        const MAX_RETRIES: Int = 3;
        const DEFAULT_MODEL: String = "gpt-4o";
        const PI: Float = 3.14159265358979;
        const ENABLED: Bool = true;
    '''))
    assert out == [[3, 6], "gpt-4o", 3.14159265358979, True]


def test_type_aliases():
    out = emitted(body('''
        let m: StringMap = {"a": "b"};
        emit("m", m);
        let r: Res = Ok(3);
        emit("r", r);
        let f: Op = |x: Int| -> Int { x + 1 };
        emit("f", f(1));
    ''', items='''
        type StringMap = Map<String, String>;
        type Res = Result<Int, String>;
        type Op = fn(Int) -> Int;
    '''))
    assert out == [{"a": "b"}, {"ok": 3}, 2]


def test_type_alias_of_fn_type_with_short_closure():
    out = emitted(body('''
        let f: Op = |x| x + 1;
        emit("f", f(1));
    ''', items='type Op = fn(Int) -> Int;'))
    assert out == [2]


# ---------------------------------------------------------------- operators

def test_arithmetic_operators():
    out = emitted(body('''
        emit("v", [10 + 3, 10 - 3, 10 * 3, 10 / 3, 10 % 3, -42]);
        emit("f", [10.0 / 4.0, 10 + 2.5, 7.5 - 0.5]);
        emit("s", "Hello" + ", " + "World");
    '''))
    assert out == [[13, 7, 30, 3, 1, -42], [2.5, 12.5, 7.0], "Hello, World"]


@pytest.mark.parametrize("expr, value", [
    ("-7 / 2", -3),
    ("7 / -2", -3),
    ("-7 / -2", 3),
    ("7 / 2", 3),
    ("-7 % 2", -1),
    ("7 % -2", 1),
    ("-7 % -2", -1),
    ("-8 % 2", 0),
    ("-1 / 3", 0),
])
def test_int_division_truncates_and_modulo_keeps_dividend_sign(expr, value):
    assert one(f'emit("v", {expr});') == value


def test_float_division_by_zero_is_inf_or_nan():
    out = emitted(body('''
        let z = 0.0;
        let a = 1.0 / z;
        emit("inf", a > 1000000.0);
        let n = z / z;
        emit("nan", n != n);
    '''))
    assert out == [True, True]


def test_comparison_and_logical_operators():
    out = emitted(body('''
        emit("c", [5 == 5, 5 != 3, 3 < 5, 5 > 3, 5 <= 5, 5 >= 3, 3 >= 5]);
        emit("s", ["apple" < "banana", "b" > "a", "x" == "x"]);
        emit("l", [true && false, true || false, !true, !false]);
    '''))
    assert out == [[True, True, True, True, True, True, False], [True, True, True], [False, True, False, True]]


def test_short_circuit_evaluation():
    src = body('''
        let f = false && boom();
        let t = true || boom();
        emit("v", [f, t]);
    ''', items='fn boom() -> Bool { emit("boom", true); true }')
    assert run_source(src) == [("v", [False, True])]


@pytest.mark.parametrize("expr, value", [
    ("2 + 3 * 4", 14),
    ("(2 + 3) * 4", 20),
    ("10 - 4 - 3", 3),
    ("100 / 10 / 5", 2),
    ("2 * 3 % 4", 2),
    ("-2 * 3", -6),
    ("- (2 + 3)", -5),
    ("1 + 2 == 3", True),
    ("1 < 2 == 2 < 3", True),
    ("true || false && false", True),
    ("!true || true", True),
    ("1 + 2 < 2 * 2 && 3 != 4", True),
    ("7 / 2 as Float", 3.5),
    ("-3.7 as Int", -3),
    ("3.7 as Int", 3),
    ("42 as Float", 42.0),
    ("2 + 3 as Float * 2.0", 8.0),
])
def test_precedence(expr, value):
    v = one(f'emit("v", {expr});')
    assert v == value and type(v) is type(value)


def test_nil_coalescing():
    out = emitted(body('''
        let found: Option<String> = Some("hello");
        let missing: Option<String> = None;
        emit("a", found ?? "default");
        emit("b", missing ?? "default");
        let m = {"a": 1};
        emit("c", m.get("zz") ?? m.get("a") ?? 0);
        emit("d", m.get("q") ?? 5 + 1);
        let n = nil;
        emit("e", n ?? 7);
    '''))
    assert out == ["hello", "default", 1, 6, 7]


def test_coalesce_binds_looser_than_or():
    # `??` is below `||` (spec 04 table): `None ?? false || true` == `None ?? (false || true)`.
    out = emitted(body('''
        let o: Option<Bool> = None;
        emit("v", o ?? false || true);
    '''))
    assert out == [True]


def test_pipe_operator():
    out = emitted(body('''
        emit("a", 5 |> double());
        emit("b", 5 |> sub(3));
        emit("c", 5 |> sub(3) |> double() |> sub(1));
        emit("d", 1 + 2 |> double());
        emit("e", "hi" |> shout());
    ''', items='''
        fn double(x: Int) -> Int { x * 2 }
        fn sub(x: Int, a: Int) -> Int { x - a }
        fn shout(s: String) -> String { s.to_upper() + "!" }
    '''))
    assert out == [10, 2, 3, 6, "HI!"]


def test_pipe_with_method_call_target():
    out = emitted(body('''
        let c = Calc { base: 10 };
        emit("v", 5 |> c.add());
    ''', items='''
        struct Calc { base: Int }
        impl Calc { fn add(self, x: Int) -> Int { self.base + x } }
    '''))
    assert out == [15]


def test_pipe_with_try_in_result_function():
    out = emitted(body('''
        emit("ok", run("21"));
        emit("err", run("x"));
    ''', items='''
        fn parse(s: String) -> Result<Int, String> {
            if s == "x" { Err("bad: ${s}") } else { Ok(s.len() * 10 + 1) }
        }
        fn double(x: Int) -> Result<Int, String> { Ok(x * 2) }
        fn run(s: String) -> Result<Int, String> {
            let v = s |> parse()? |> double()?;
            Ok(v + 1)
        }
    '''))
    assert out == [{"ok": 43}, {"err": "bad: x"}]


def test_ranges():
    out = emitted(body('''
        let mut a = [];
        for i in 0..5 { a.push(i); }
        emit("ex", a);
        let mut b = [];
        for i in 0..=3 { b.push(i); }
        emit("in", b);
        let mut c = [];
        for i in 3..3 { c.push(i); }
        emit("empty", c);
        let lo = 2;
        let mut d = [];
        for i in lo + 1..lo * 3 { d.push(i); }
        emit("expr", d);
    '''))
    assert out == [[0, 1, 2, 3, 4], [0, 1, 2, 3], [], [3, 4, 5]]


def test_compound_assignment_on_variables():
    out = emitted(body('''
        let mut x = 10;
        x = 20; emit("a", x);
        x += 5; emit("b", x);
        x -= 3; emit("c", x);
        x *= 2; emit("d", x);
        x /= 4; emit("e", x);
        x %= 3; emit("f", x);
        let mut s = "a";
        s += "b";
        emit("s", s);
        let mut f = 1.5;
        f *= 2.0;
        emit("g", f);
    '''))
    assert out == [20, 25, 22, 44, 11, 2, "ab", 3.0]


def test_compound_assignment_on_fields_and_indexes():
    out = emitted(body('''
        let mut p = Point { x: 1, y: 2 };
        p.x += 1;
        p.y *= 10;
        p.x = p.x + 100;
        emit("p", p);
        let mut a = [1, 2, 3];
        let i = 1;
        a[i] += 10;
        a[0] -= 1;
        a[2] = 9;
        emit("a", a);
        let mut m = {"k": 1};
        m["k"] += 4;
        m["new"] = 7;
        emit("m", m);
        let mut grid = [[1, 2], [3, 4]];
        grid[1][0] *= 5;
        emit("g", grid);
    ''', items='struct Point { x: Int, y: Int }'))
    assert out == [{"x": 102, "y": 20}, [0, 12, 9], {"k": 5, "new": 7}, [[1, 2], [15, 4]]]


def test_nested_field_assignment():
    out = emitted(body('''
        let mut o = Outer { inner: Inner { v: 1 } };
        o.inner.v += 41;
        emit("o", o);
    ''', items='''
        struct Inner { v: Int }
        struct Outer { inner: Inner }
    '''))
    assert out == [{"inner": {"v": 42}}]


def test_let_mut_copies_have_value_semantics():
    # Assigning into a copy does not change the original binding.
    out = emitted(body('''
        let a = [1, 2, 3];
        let mut b = a;
        b.push(4);
        emit("a", a);
        emit("b", b);
    '''))
    assert out == [[1, 2, 3], [1, 2, 3, 4]]


def test_index_access_and_nested():
    out = emitted(body('''
        let matrix = [[1, 2], [3, 4]];
        emit("a", matrix[1][0]);
        let m = {"key": "value"};
        emit("b", m["key"]);
        emit("c", "hello"[1]);
    '''))
    assert out == [3, "value", "e"]


def test_slicing():
    out = emitted(body('''
        let items = [10, 20, 30, 40, 50];
        emit("a", items[1..3]);
        emit("b", items[..2]);
        emit("c", items[2..]);
        emit("d", items[1..=3]);
        let s = "hello";
        emit("e", s[1..]);
        emit("f", s[..2]);
        emit("g", s[1..4]);
    '''))
    assert out == [[20, 30], [10, 20], [30, 40, 50], [20, 30, 40], "ello", "he", "ell"]


def test_tuples():
    out = emitted(body('''
        let t = (1, "two", 3.0);
        emit("a", t.0);
        emit("b", t.1);
        emit("c", t.2);
        let nested = ((1, 2), 3);
        emit("d", nested.0.1);
    '''))
    assert out == [1, "two", 3.0, 2]


def test_cast_any_to_specific_type():
    out = emitted(body('''
        let value: Any = 42;
        let num = value as Int;
        emit("v", num + 1);
    '''))
    assert out == [43]


# ---------------------------------------------------------------- control flow

def test_if_else_as_expression_and_chained():
    src = body('''
        for score in [95, 85, 75, 10] {
            let grade = if score > 90 { "A" }
                        else if score > 80 { "B" }
                        else if score > 70 { "C" }
                        else { "F" };
            emit("g", grade);
        }
        let x = -3;
        emit("abs", if x < 0 { -x } else { x });
    ''')
    assert emitted(src) == ["A", "B", "C", "F", 3]


def test_match_as_expression_value_patterns():
    src = body('''
        for code in [200, 404, 999] {
            let message = match code {
                200 => "OK",
                404 => "Not Found",
                _ => "Unknown",
            };
            emit("m", message);
        }
    ''')
    assert emitted(src) == ["OK", "Not Found", "Unknown"]


def test_match_float_bool_and_negative_literals():
    src = body('''
        emit("f", match 1.5 { 1.5 => "yes", _ => "no" });
        emit("b", match false { true => "t", false => "f" });
        emit("neg", match -3 { -3 => "minus three", _ => "other" });
    ''')
    assert emitted(src) == ["yes", "f", "minus three"]


def test_match_string_literal_patterns():
    src = body('''
        for s in ["a", "b"] {
            emit("s", match s { "a" => 1, _ => 2 });
        }
    ''')
    assert emitted(src) == [1, 2]


def test_match_wildcard_and_binding():
    src = body('''
        let v = 17;
        emit("a", match v { 1 => 0, other => other * 2 });
        emit("b", match v { _ => "any" });
    ''')
    assert emitted(src) == [34, "any"]


def test_match_enum_tuple_struct_and_unit_variants():
    src = body('''
        let shapes = [Shape::Circle(2), Shape::Rectangle(3, 4), Shape::Triangle { a: 3, b: 4, c: 5 }, Shape::Dot];
        for s in shapes {
            let v = match s {
                Shape::Circle(r) => r * r * 3,
                Shape::Rectangle(w, h) => w * h,
                Shape::Triangle { a, b, c } => a + b + c,
                Shape::Dot => 0,
            };
            emit("v", v);
        }
    ''', items='''
        enum Shape {
            Circle(Int),
            Rectangle(Int, Int),
            Triangle { a: Int, b: Int, c: Int },
            Dot,
        }
    ''')
    assert emitted(src) == [12, 12, 12, 0]


def test_match_ok_err_some_none():
    src = body('''
        let results: Array<Result<Int, String>> = [Ok(1), Err("bad")];
        for r in results {
            match r {
                Ok(value) => emit("ok", value),
                Err(e) => emit("err", e),
            }
        }
        let opts = [Some(3), None];
        for o in opts {
            let v = match o {
                Some(x) => x,
                None => -1,
            };
            emit("opt", v);
        }
    ''')
    assert run_source(src) == [("ok", 1), ("err", "bad"), ("opt", 3), ("opt", -1)]


def test_match_tuple_patterns():
    src = body('''
        let pairs = [(true, 5), (false, 0), (true, 0)];
        for p in pairs {
            match p {
                (true, 0) => emit("zero", 0),
                (true, value) => emit("use", value),
                (false, _) => emit("error", "failed"),
                _ => emit("never", nil),
            }
        }
    ''')
    assert run_source(src) == [("use", 5), ("error", "failed"), ("zero", 0)]


def test_match_tuple_patterns_exhaustive_without_wildcard():
    # spec 05 "Tuple patterns": (true, value) and (false, _) cover every (Bool, T).
    src = body('''
        let pairs = [(true, 5), (false, 0)];
        for p in pairs {
            match p {
                (true, value) => emit("use", value),
                (false, _) => emit("error", "failed"),
            }
        }
    ''')
    assert run_source(src) == [("use", 5), ("error", "failed")]


def test_match_array_patterns_with_rest():
    src = body('''
        let arrays = [[], [1], [1, 2], [1, 2, 3, 4]];
        for a in arrays {
            let d = match a {
                [] => "empty",
                [x] => "one ${x}",
                [first, ..rest] => "first ${first} rest ${rest.len()}",
                _ => "unreachable",
            };
            emit("d", d);
        }
        let two = match [1, 2, 3] {
            [a, b] => a + b,
            [a, b, c] => a + b + c,
            _ => 0,
        };
        emit("len", two);
        let [head, ..] = [7, 8];
        emit("head", head);
    ''')
    assert emitted(src) == ["empty", "one 1", "first 1 rest 1", "first 1 rest 3", 6, 7]


def test_match_array_patterns_exhaustive_without_wildcard():
    # `[]`, `[x]` and `[first, ..rest]` cover every array.
    src = body('''
        for a in [[], [1], [1, 2, 3]] {
            let d = match a {
                [] => "empty",
                [x] => "one ${x}",
                [first, ..rest] => "first ${first} rest ${rest.len()}",
            };
            emit("d", d);
        }
    ''')
    assert emitted(src) == ["empty", "one 1", "first 1 rest 2"]


def test_array_pattern_elements_after_rest():
    # spec 05/brief: `[.., last]` binds the last element, `[a, .., z]` the first and last.
    src = body('''
        let last = match [5, 6, 7] {
            [.., last] => last,
            [] => -1,
        };
        emit("last", last);
        let ends = match [1, 2, 3, 9] {
            [a, .., z] => a + z,
            _ => 0,
        };
        emit("ends", ends);
        let [first, .., final] = [1, 2, 3];
        emit("let", [first, final]);
    ''')
    assert emitted(src) == [7, 10, [1, 3]]


def test_match_struct_pattern_with_rest():
    src = body('''
        let u = User { name: "Ann", age: 30, admin: true };
        match u {
            User { admin: true, name, .. } => emit("admin", name),
            User { name, .. } => emit("user", name),
        }
        let v = User { name: "Bo", age: 5, admin: false };
        let label = match v {
            User { age: 0..=12, .. } => "child",
            User { .. } => "adult",
        };
        emit("label", label);
    ''', items='struct User { name: String, age: Int, admin: Bool }')
    assert run_source(src) == [("admin", "Ann"), ("label", "child")]


def test_or_patterns():
    src = body('''
        for n in [1, 2, 3, 4] {
            emit("n", match n { 1 | 2 => "low", 3 | 4 | 5 => "high", _ => "?" });
        }
        for d in [Dir::North, Dir::East] {
            emit("d", match d { Dir::North | Dir::South => "vertical", Dir::East | Dir::West => "horizontal" });
        }
        let o: Option<Int> = None;
        emit("o", match o { Some(0) | None => "empty", Some(_) => "full" });
    ''', items='enum Dir { North, South, East, West }')
    assert emitted(src) == ["low", "low", "high", "high", "vertical", "horizontal", "empty"]


def test_or_patterns_of_strings():
    src = body('''
        for s in ["active", "disabled", "zzz"] {
            let on = match s {
                "active" | "enabled" => true,
                "inactive" | "disabled" => false,
                _ => false,
            };
            emit("s", on);
        }
    ''')
    assert emitted(src) == [True, False, False]


def test_at_binding_with_ranges():
    src = body('''
        for count in [3, 10, 100] {
            match count {
                n @ 1..=5 => emit("few", n),
                n @ 6..=20 => emit("several", n),
                n => emit("many", n),
            }
        }
    ''')
    assert run_source(src) == [("few", 3), ("several", 10), ("many", 100)]


def test_range_pattern_exclusive():
    src = body('''
        for n in [0, 9, 10] {
            emit("v", match n { 0..10 => "digit", _ => "big" });
        }
    ''')
    assert emitted(src) == ["digit", "digit", "big"]


def test_match_guards():
    src = body('''
        for value in [150, 50, 5, 0, -5] {
            let v = match value {
                x if x > 100 => "large",
                x if x > 10 => "medium",
                x if x > 0 => "small",
                0 => "zero",
                _ => "negative",
            };
            emit("v", v);
        }
        let r: Result<Int, String> = Ok(3);
        match r {
            Ok(n) if n > 5 => emit("g", "big"),
            Ok(n) => emit("g", "small ${n}"),
            Err(_) => emit("g", "err"),
        }
    ''')
    assert emitted(src) == ["large", "medium", "small", "zero", "negative", "small 3"]


def test_nested_patterns():
    src = body('''
        let r: Result<Option<Int>, String> = Ok(Some(4));
        let v = match r {
            Ok(Some(n)) if n > 3 => n * 10,
            Ok(Some(n)) => n,
            Err(_) => -1,
            _ => 0,
        };
        emit("v", v);
        let pts = [(Point { x: 0, y: 5 }, "a"), (Point { x: 1, y: 1 }, "b")];
        for pt in pts {
            match pt {
                (Point { x: 0, y }, tag) => emit("axis", "${tag}${y}"),
                (Point { x, y }, tag) => emit("other", "${tag}${x + y}"),
            }
        }
    ''', items='struct Point { x: Int, y: Int }')
    assert run_source(src) == [("v", 40), ("axis", "a5"), ("other", "b2")]


def test_nested_option_in_result_exhaustive_without_wildcard():
    src = body('''
        let r: Result<Option<Int>, String> = Ok(None);
        let v = match r {
            Ok(Some(n)) => n,
            Ok(None) => 0,
            Err(_) => -1,
        };
        emit("v", v);
    ''')
    assert emitted(src) == [0]


def match_diagnostics(stmts: str, items: str = "") -> list[str]:
    """The messages of the `non-exhaustive match` diagnostics a program gets."""
    from concerto.compiler import compile_source

    result = compile_source(body(stmts, items), "main.conc")
    return [d.message for d in result.diagnostics if "non-exhaustive" in d.message]


def test_match_tuple_of_enums_exhaustive_without_wildcard():
    # Each (row, column) combination is covered, though no single arm is a wildcard.
    src = body('''
        let pairs = [(Light::Red, Light::Green), (Light::Green, Light::Red), (Light::Green, Light::Green),
                     (Light::Red, Light::Red)];
        for p in pairs {
            match p {
                (Light::Red, Light::Red) => emit("v", "stop"),
                (Light::Red, Light::Green) | (Light::Green, Light::Red) => emit("v", "mixed"),
                (Light::Green, _) => emit("v", "go"),
            }
        }
    ''', items="enum Light { Red, Green }")
    assert emitted(src) == ["mixed", "mixed", "go", "stop"]


def test_match_nested_option_in_result_with_or_patterns_exhaustive():
    src = body('''
        let rs: Array<Result<Option<Int>, String>> = [Ok(Some(1)), Ok(None), Err("x")];
        for r in rs {
            let v = match r {
                Ok(Some(n)) => n,
                Ok(None) | Err(_) => 0,
            };
            emit("v", v);
        }
    ''')
    assert emitted(src) == [1, 0, 0]


def test_match_struct_and_array_patterns_exhaustive_without_wildcard():
    src = body('''
        let p = Pair { flag: false, items: [1, 2] };
        let d = match p {
            Pair { flag: true, .. } => "on",
            Pair { flag: false, items: [] } => "off, empty",
            Pair { flag: false, items: [.., last] } => "off, last ${last}",
        };
        emit("d", d);
    ''', items="struct Pair { flag: Bool, items: Array<Int> }")
    assert emitted(src) == ["off, last 2"]


def test_non_exhaustive_tuple_match_names_the_missing_case():
    msgs = match_diagnostics('''
        let p = (true, 5);
        match p {
            (true, v) => emit("v", v),
            (false, 0) => emit("zero", 0),
        }
    ''')
    assert msgs == ["non-exhaustive match: `(false, _)` not covered"]


def test_non_exhaustive_tuple_of_enums_lists_every_missing_pair():
    msgs = match_diagnostics('''
        let p = (Light::Red, Light::Green);
        match p {
            (Light::Red, _) => emit("v", 1),
            (Light::Green, Light::Red) => emit("v", 2),
        }
    ''', items="enum Light { Red, Green }")
    assert msgs == ["non-exhaustive match: `(Light::Green, Light::Green)` not covered"]


def test_non_exhaustive_nested_option_in_result():
    msgs = match_diagnostics('''
        let r: Result<Option<Int>, String> = Ok(None);
        match r {
            Ok(Some(n)) => emit("v", n),
            Err(_) => emit("v", -1),
        }
    ''')
    assert msgs == ["non-exhaustive match: `Ok(None)` not covered"]


def test_guarded_arms_never_count_toward_exhaustiveness():
    msgs = match_diagnostics('''
        let r: Result<Int, String> = Ok(1);
        match r {
            Ok(n) => emit("v", n),
            Err(e) if e == "x" => emit("e", e),
        }
        let b = true;
        match (b, 1) {
            (true, n) if n > 0 => emit("pos", n),
            (true, _) => emit("other", 0),
            (false, _) => emit("off", 0),
        }
    ''')
    assert msgs == ["non-exhaustive match: `Err` not covered"]


def test_non_exhaustive_array_and_struct_matches_name_an_example():
    msgs = match_diagnostics('''
        let a = [true];
        match a {
            [] => emit("v", 0),
            [true, ..] => emit("v", 1),
            [.., false] => emit("v", 2),
        }
        let p = Point { x: 1, y: 2 };
        match p {
            Point { x: 0, y } => emit("v", y),
            Point { x, y: 0 } => emit("v", x),
        }
    ''', items="struct Point { x: Int, y: Int }")
    assert msgs == ["non-exhaustive match: `[false, .., true]` not covered",
                    "non-exhaustive match: `Point { x: _, y: _, .. }` not covered"]


def test_for_over_arrays_strings_maps_enumerate_and_destructure():
    src = body('''
        for item in ["apple", "banana"] { emit("fruit", item); }
        for (i, item) in ["x", "y"].enumerate() { emit("item", { "index": i, "value": item }); }
        let config = { "model": "gpt-4o", "temp": "0.7" };
        for (key, value) in config { emit("config", "${key}=${value}"); }
        for ch in "hé!" { emit("ch", ch); }
        let points = [Point { x: 1, y: 2 }, Point { x: 3, y: 4 }];
        for Point { x, y } in points { emit("pt", x * y); }
    ''', items='struct Point { x: Int, y: Int }')
    assert run_source(src) == [
        ("fruit", "apple"), ("fruit", "banana"),
        ("item", {"index": 0, "value": "x"}), ("item", {"index": 1, "value": "y"}),
        ("config", "model=gpt-4o"), ("config", "temp=0.7"),
        ("ch", "h"), ("ch", "é"), ("ch", "!"),
        ("pt", 2), ("pt", 12),
    ]


def test_while_loop():
    src = body('''
        let mut attempts = 0;
        let mut success = false;
        while attempts < 3 && !success {
            attempts += 1;
            if attempts == 2 { success = true; }
        }
        emit("v", [attempts]);
        emit("s", success);
    ''')
    assert emitted(src) == [[2], True]


def test_loop_break_with_value():
    src = body('''
        let mut i = 0;
        let result = loop {
            i += 1;
            if i == 5 { break i * 10; }
        };
        emit("r", result);
        let mut n = 0;
        loop {
            n += 1;
            if n > 2 { break; }
        }
        emit("n", n);
    ''')
    assert emitted(src) == [50, 3]


def test_break_and_continue():
    src = body('''
        let mut seen = [];
        for item in ["a", "skip", "b", "stop", "c"] {
            if item == "skip" { continue; }
            if item == "stop" { break; }
            seen.push(item);
        }
        emit("seen", seen);
        let mut i = 0;
        let mut odd = [];
        while i < 6 {
            i += 1;
            if i % 2 == 0 { continue; }
            odd.push(i);
        }
        emit("odd", odd);
    ''')
    assert emitted(src) == [["a", "b"], [1, 3, 5]]


def test_labeled_break_and_continue():
    src = body('''
        let matrix = [[1, 2], [3, 4], [5, 6]];
        'outer: for row in matrix {
            for cell in row {
                if cell == 4 {
                    emit("found", cell);
                    break 'outer;
                }
                emit("cell", cell);
            }
        }
        let mut pairs = [];
        'rows: for r in 0..3 {
            for c in 0..3 {
                if c > r { continue 'rows; }
                pairs.push(r * 10 + c);
            }
        }
        emit("pairs", pairs);
        let mut tries = 0;
        'retry: loop {
            tries += 1;
            for step in [1, 2] {
                if step == 2 && tries < 3 { continue 'retry; }
            }
            break;
        }
        emit("tries", tries);
        let v = 'find: loop {
            loop { break 'find 99; }
        };
        emit("v", v);
    ''')
    assert run_source(src) == [("cell", 1), ("cell", 2), ("cell", 3), ("found", 4),
                               ("pairs", [0, 10, 11, 20, 21, 22]), ("tries", 3), ("v", 99)]


def test_return_early_and_implicit():
    src = body('''
        emit("a", [classify(0), classify(5)]);
        emit("b", add(2, 3));
        emit("c", add2(2, 3));
    ''', items='''
        fn classify(n: Int) -> String {
            if n == 0 { return "zero"; }
            "nonzero"
        }
        fn add(a: Int, b: Int) -> Int { return a + b; }
        fn add2(a: Int, b: Int) -> Int { a + b }
    ''')
    assert emitted(src) == [["zero", "nonzero"], 5, 5]


# ---------------------------------------------------------------- functions

def test_recursion():
    src = body('emit("f", [factorial(5), fib(15)]);', items='''
        fn factorial(n: Int) -> Int { if n <= 1 { 1 } else { n * factorial(n - 1) } }
        fn fib(n: Int) -> Int { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }
    ''')
    assert emitted(src) == [[120, 610]]


def test_mutual_recursion_and_call_before_definition():
    src = body('emit("v", [is_even(10), is_odd(7)]);', items='''
        fn is_even(n: Int) -> Bool { if n == 0 { true } else { is_odd(n - 1) } }
        fn is_odd(n: Int) -> Bool { if n == 0 { false } else { is_even(n - 1) } }
    ''')
    assert emitted(src) == [[True, True]]


def test_default_parameters_and_named_arguments():
    src = body('''
        emit("a", classify("doc"));
        emit("b", classify("doc", temperature: 0.8));
        emit("c", classify("doc", "m2", max_retries: 9));
        emit("d", classify(text: "t", model: "m"));
    ''', items='''
        fn classify(text: String, model: String = "gpt-4o", temperature: Float = 0.3, max_retries: Int = 3) -> String {
            "${text}|${model}|${temperature}|${max_retries}"
        }
    ''')
    assert emitted(src) == ["doc|gpt-4o|0.3|3", "doc|gpt-4o|0.8|3", "doc|m2|0.3|9", "t|m|0.3|3"]


def test_closures_short_and_block_forms():
    src = body('''
        let double = |x: Int| x * 2;
        let add = |a: Int, b: Int| a + b;
        let greet = |name: String| "Hello, ${name}!";
        let checked = |x: Int| -> Result<Int, String> {
            if x > 0 { Ok(x) } else { Err("neg") }
        };
        let unit = || 7;
        emit("v", [double(4), add(1, 2), unit()]);
        emit("g", greet("Bo"));
        emit("c", [checked(1), checked(-1)]);
    ''')
    assert emitted(src) == [[8, 3, 7], "Hello, Bo!", [{"ok": 1}, {"err": "neg"}]]


def test_closures_capture_values():
    src = body('''
        let prefix = "Result";
        let formatter = |value: String| "${prefix}: ${value}";
        emit("a", formatter("hello"));
        let add5 = make_adder(5);
        let add10 = make_adder(10);
        emit("b", [add5(1), add10(1)]);
        let n = 1;
        let plus_n = |x: Int| x + n;
        emit("c", plus_n(1));
        let words = ["a", "b"];
        let tagged = words.map(|w| "${prefix}-${w}");
        emit("d", tagged);
    ''', items='''
        fn make_adder(k: Int) -> fn(Int) -> Int { |x: Int| -> Int { x + k } }
    ''')
    assert emitted(src) == ["Result: hello", [6, 11], 2, ["Result-a", "Result-b"]]


def test_closure_captures_value_at_creation():
    src = body('''
        let mut n = 1;
        let f = |x: Int| x + n;
        n = 100;
        emit("v", [f(1), n]);
    ''')
    assert emitted(src) == [[2, 100]]


def test_closure_returned_with_short_body():
    src = body('''
        let add5 = make_adder(5);
        emit("v", add5(1));
    ''', items='fn make_adder(k: Int) -> fn(Int) -> Int { |x| x + k }')
    assert emitted(src) == [6]


def test_closure_return_type_is_inferred():
    # spec 06 "Type Inference in Closures": `|x: Int| x + 1` is a fn(Int) -> Int.
    src = body('''
        emit("a", apply(|x: Int| x + 1, 1));
        let g = |x: Int| x * 2;
        emit("b", apply(g, 4));
    ''', items='fn apply(f: fn(Int) -> Int, x: Int) -> Int { f(x) }')
    assert emitted(src) == [2, 8]


def test_closure_param_types_inferred_from_expected_fn_type():
    # spec 06 "Function Types": apply_processor("hello", |s| s.to_upper()).
    src = body('''
        emit("a", apply_processor("hello", |s| s.to_upper()));
        let f: fn(Int) -> Int = |x| -> Int { x + 1 };
        emit("b", f(1));
    ''', items='''
        fn apply_processor(text: String, processor: fn(String) -> String) -> String { processor(text) }
    ''')
    assert emitted(src) == ["HELLO", 2]


def test_named_function_passed_to_fn_typed_param():
    src = body('emit("v", apply(square, 3));', items='''
        fn square(x: Int) -> Int { x * x }
        fn apply(f: fn(Int) -> Int, x: Int) -> Int { f(x) }
    ''')
    assert emitted(src) == [9]


def test_nested_closures_capture_through_levels():
    src = body('''
        let a = 1;
        let outer = |b: Int| {
            let inner = |c: Int| a + b + c;
            inner(100)
        };
        emit("v", outer(10));
    ''')
    assert emitted(src) == [111]


def test_function_typed_params_and_functions_as_values():
    src = body('''
        emit("a", apply_twice(|x: Int| -> Int { x + 3 }, 1));
        let f = square;
        emit("c", f(5));
        let ops = [|x: Int| -> Int { x + 1 }, |x: Int| -> Int { x * 2 }];
        let mut out = [];
        for op in ops { out.push(op(5)); }
        emit("d", out);
        emit("e", apply_processor("hello", |s: String| -> String { s.to_upper() }));
        emit("f", [1, 2, 3].map(square));
        let h = pick(true);
        emit("g", h(4));
    ''', items='''
        fn square(x: Int) -> Int { x * x }
        fn apply_twice(f: fn(Int) -> Int, x: Int) -> Int { f(f(x)) }
        fn apply_processor(text: String, processor: fn(String) -> String) -> String { processor(text) }
        fn pick(sq: Bool) -> fn(Int) -> Int {
            if sq { |x: Int| -> Int { x * x } } else { |x: Int| -> Int { x } }
        }
    ''')
    assert emitted(src) == [7, 25, [6, 10], "HELLO", [1, 4, 9], 16]


def test_spec_function_array_example():
    # spec 06: `let operations: Array<fn(Int) -> Int> = [|x| x + 1, |x| x * 2, |x| x * x];`
    src = body('''
        let operations: Array<fn(Int) -> Int> = [
            |x| x + 1,
            |x| x * 2,
            |x| x * x,
        ];
        for op in operations { emit("result", op(5)); }
    ''')
    assert emitted(src) == [6, 10, 25]


def test_closure_returned_and_composed():
    src = body('''
        let inc = |x: Int| x + 1;
        let dbl = |x: Int| x * 2;
        let both = compose(inc, dbl);
        emit("v", both(5));
    ''', items='''
        fn compose(f: fn(Int) -> Int, g: fn(Int) -> Int) -> fn(Int) -> Int {
            |x: Int| g(f(x))
        }
    ''')
    assert emitted(src) == [12]


def test_methods_self_mut_self_and_associated_functions():
    src = body('''
        let mut counter = Counter::new();
        counter.increment();
        counter.increment();
        emit("v", counter.get());
        let c2 = counter.with_value(10);
        emit("w", [counter.get(), c2.get()]);
        let p = Point { x: 3, y: 4 };
        emit("d", p.manhattan(Point::origin()));
    ''', items='''
        struct Counter { value: Int }
        impl Counter {
            pub fn new() -> Counter { Counter { value: 0 } }
            pub fn get(self) -> Int { self.value }
            pub fn increment(mut self) { self.value += 1; }
            pub fn with_value(self, value: Int) -> Counter { Counter { value: value } }
        }
        struct Point { x: Int, y: Int }
        impl Point {
            fn origin() -> Point { Point { x: 0, y: 0 } }
            fn manhattan(self, other: Point) -> Int {
                let dx = self.x - other.x;
                let dy = self.y - other.y;
                (if dx < 0 { -dx } else { dx }) + (if dy < 0 { -dy } else { dy })
            }
        }
    ''')
    assert emitted(src) == [2, [2, 10], 7]


def test_methods_on_enums():
    src = body('''
        let errs = [ProcessError::InvalidInput("x"), ProcessError::MaxRetriesExceeded { attempts: 3 }, ProcessError::Aborted];
        for e in errs { emit("m", e.message()); }
    ''', items='''
        enum ProcessError {
            InvalidInput(String),
            MaxRetriesExceeded { attempts: Int },
            Aborted,
        }
        impl ProcessError {
            pub fn message(self) -> String {
                match self {
                    ProcessError::InvalidInput(msg) => "Invalid input: ${msg}",
                    ProcessError::MaxRetriesExceeded { attempts } => "Failed after ${attempts} attempts",
                    ProcessError::Aborted => "aborted",
                }
            }
        }
    ''')
    assert emitted(src) == ["Invalid input: x", "Failed after 3 attempts", "aborted"]


def test_traits_with_default_methods():
    src = body('''
        let u = User { name: "Alice", email: "a@x.io" };
        emit("d", u.describe());
        emit("s", u.summary());
        let l = Long { n: 60 };
        emit("l", l.summary());
        emit("p", print_description(u));
    ''', items='''
        trait Describable {
            fn describe(self) -> String;
            fn summary(self) -> String {
                let desc = self.describe();
                if desc.len() > 10 { "${desc[0..10]}..." } else { desc }
            }
        }
        struct User { name: String, email: String }
        impl Describable for User {
            fn describe(self) -> String { "${self.name} (${self.email})" }
        }
        struct Long { n: Int }
        impl Describable for Long {
            fn describe(self) -> String { "x".repeat(self.n) }
            fn summary(self) -> String { "long:${self.n}" }
        }
        fn print_description<T: Describable>(item: T) -> String { item.describe() }
    ''')
    assert emitted(src) == ["Alice (a@x.io)", "Alice (a@x...", "long:60", "Alice (a@x.io)"]


def test_enums_with_data_emit_spec20_shape():
    src = body('''
        emit("u", Dir::North);
        emit("one", Shape::Circle(2.5));
        emit("many", Shape::Rect(1, 2));
        emit("named", Shape::Tri { a: 1, b: 2 });
    ''', items='''
        enum Dir { North, South }
        enum Shape { Circle(Float), Rect(Int, Int), Tri { a: Int, b: Int } }
    ''')
    assert emitted(src) == [
        {"variant": "North", "data": None},
        {"variant": "Circle", "data": 2.5},
        {"variant": "Rect", "data": [1, 2]},
        {"variant": "Tri", "data": {"a": 1, "b": 2}},
    ]


def test_enum_equality():
    src = body('''
        emit("v", [Dir::North == Dir::North, Dir::North == Dir::South, Some(1) == Some(1), None == Some(2)]);
    ''', items='enum Dir { North, South }')
    assert emitted(src) == [[True, False, True, False]]


def test_struct_literal_shorthand_and_equality():
    src = body('''
        let x = 1;
        let y = 2;
        let p = Point { x, y };
        emit("p", p);
        emit("eq", [p == Point { x: 1, y: 2 }, p == Point { x: 2, y: 2 }]);
    ''', items='struct Point { x: Int, y: Int }')
    assert emitted(src) == [{"x": 1, "y": 2}, [True, False]]


def test_generic_function():
    src = body('''
        emit("a", first([4, 5]));
        let none: Array<String> = [];
        emit("b", first(none));
    ''', items='''
        fn first<T>(items: Array<T>) -> Option<T> {
            if items.len() > 0 { Some(items[0]) } else { None }
        }
    ''')
    assert emitted(src) == [4, None]


# ---------------------------------------------------------------- Result / Option / collections

def test_array_methods():
    src = body('''
        let numbers = [1, 2, 3, 4, 5];
        emit("len", numbers.len());
        emit("contains", [numbers.contains(3), numbers.contains(9)]);
        emit("map", numbers.map(|x| x * 2));
        emit("filter", numbers.filter(|x| x > 3));
        emit("reduce", numbers.reduce(0, |acc, x| acc + x));
        let mut pairs = [];
        for (i, item) in numbers.enumerate() { pairs.push(i * item); }
        emit("enumerate", pairs);
        let mut s = [3, 1, 2];
        let last = s.pop();
        emit("pop", last);
        emit("after_pop", s);
        emit("get", [numbers.get(1), numbers.get(99)]);
    ''')
    assert emitted(src) == [5, [True, False], [2, 4, 6, 8, 10], [4, 5], 15, [0, 2, 6, 12, 20], 2, [3, 1],
                            [2, None]]


def test_map_methods():
    src = body('''
        let mut config = { "model": "gpt-4o", "provider": "openai" };
        emit("idx", config["model"]);
        emit("get", [config.get("model"), config.get("nope")]);
        config.set("temperature", "0.7");
        config.delete("provider");
        emit("has", [config.has("model"), config.has("provider")]);
        emit("keys", config.keys());
        emit("values", config.values());
        emit("len", config.len());
    ''')
    assert emitted(src) == ["gpt-4o", ["gpt-4o", None], [True, False], ["model", "temperature"],
                            ["gpt-4o", "0.7"], 2]


def test_option_methods():
    src = body('''
        let found: Option<String> = Some("hello");
        let missing: Option<String> = None;
        emit("map", [found.map(|s| s.to_upper()), missing.map(|s| s.to_upper())]);
        emit("unwrap", found.unwrap());
        emit("unwrap_or", [found.unwrap_or("d"), missing.unwrap_or("d")]);
        emit("is", [found.is_some(), found.is_none(), missing.is_some(), missing.is_none()]);
    ''')
    assert emitted(src) == [["HELLO", None], "hello", ["hello", "d"], [True, False, False, True]]


def test_result_methods():
    src = body('''
        let result: Result<Int, String> = Ok(42);
        let failure: Result<Int, String> = Err("boom");
        emit("map", [result.map(|x| x * 2), failure.map(|x| x * 2)]);
        emit("map_err", [result.map_err(|e| "Error: ${e}"), failure.map_err(|e| "Error: ${e}")]);
        let chained = result.and_then(|x| {
            if x > 100 { Ok(x) } else { Err("must be big") }
        });
        emit("and_then", chained);
        emit("unwrap", result.unwrap());
        emit("unwrap_or", [result.unwrap_or(0), failure.unwrap_or(0)]);
        emit("unwrap_or_else", failure.unwrap_or_else(|e| e.len()));
        emit("is", [result.is_ok(), result.is_err(), failure.is_ok(), failure.is_err()]);
    ''')
    assert emitted(src) == [
        [{"ok": 84}, {"err": "boom"}],
        [{"ok": 42}, {"err": "Error: boom"}],
        {"err": "must be big"},
        42,
        [42, 0],
        4,
        [True, False, False, True],
    ]


def test_string_methods():
    src = body('''
        let s = "  Hello World  ";
        emit("a", [s.trim(), s.trim().to_lower(), s.trim().to_upper()]);
        emit("b", ["-".repeat(3), "a,b,c".split(",").len().to_string()]);
        emit("c", ["hello".contains("ell"), "hello".starts_with("he"), "hello".ends_with("lo")]);
        emit("d", [42.to_string(), "hello".len().to_string()]);
    ''')
    assert emitted(src) == [["Hello World", "hello world", "HELLO WORLD"], ["---", "3"], [True, True, True],
                            ["42", "5"]]


# ---------------------------------------------------------------- errors

def test_question_mark_on_result_propagates_err():
    src = body('''
        emit("a", process("7"));
        emit("b", process(""));
    ''', items='''
        fn parse(s: String) -> Result<Int, String> {
            if s.len() == 0 { Err("empty") } else { Ok(s.len()) }
        }
        fn process(s: String) -> Result<Int, String> {
            let n = parse(s)?;
            emit("after", n);
            Ok(n + 1)
        }
    ''')
    assert run_source(src) == [("after", 1), ("a", {"ok": 2}), ("b", {"err": "empty"})]


def test_question_mark_on_option():
    src = body('''
        emit("a", lookup("a"));
        emit("b", lookup("zz"));
    ''', items='''
        fn lookup(k: String) -> Option<Int> {
            let m = {"a": 1};
            let v = m.get(k)?;
            Some(v + 10)
        }
    ''')
    assert emitted(src) == [11, None]


def test_throw_is_return_err():
    src = body('''
        emit("a", validate("ok"));
        emit("b", validate(""));
        emit("c", validate2(""));
    ''', items='''
        enum ProcessError { InvalidInput(String) }
        fn validate(text: String) -> Result<String, ProcessError> {
            if text.len() == 0 {
                throw ProcessError::InvalidInput("Empty input");
            }
            Ok(text)
        }
        fn validate2(text: String) -> Result<String, ProcessError> {
            if text.len() == 0 {
                return Err(ProcessError::InvalidInput("Empty input"));
            }
            Ok(text)
        }
    ''')
    out = emitted(src)
    assert out[0] == {"ok": "ok"}
    assert out[1] == out[2] == {"err": {"variant": "InvalidInput", "data": "Empty input"}}


def test_try_catch_statement_and_expression():
    src = body('''
        try {
            let v = risky(true)?;
            emit("never", v);
        } catch {
            emit("error", "An error occurred");
        }
        let r = try { risky(false)? } catch { -1 };
        emit("r1", r);
        let r2 = try { risky(true)? } catch { -1 };
        emit("r2", r2);
    ''', items='''
        fn risky(fail: Bool) -> Result<Int, String> { if fail { Err("bad") } else { Ok(5) } }
    ''')
    assert run_source(src) == [("error", "An error occurred"), ("r1", 5), ("r2", -1)]


def test_try_without_catch_is_a_result_expression():
    # spec 13 "Try as Expression": `try { ...? }` evaluates to a Result.
    src = body('''
        let good: Result<Int, String> = try {
            let a = risky(false)?;
            a + 1
        };
        emit("good", good);
        let bad: Result<Int, String> = try { risky(true)? };
        emit("bad", bad);
    ''', items='''
        fn risky(fail: Bool) -> Result<Int, String> { if fail { Err("bad") } else { Ok(5) } }
    ''')
    assert emitted(src) == [{"ok": 6}, {"err": "bad"}]


def test_throw_inside_try_is_caught_with_binding():
    src = body('''
        try {
            throw "oops";
        } catch String(e) {
            emit("string", e);
        } catch {
            emit("other", nil);
        }
        try {
            throw 42;
        } catch String(e) {
            emit("string", e);
        } catch Int(n) {
            emit("int", n);
        }
        try {
            throw Oops::Bad("x");
        } catch Oops(e) {
            emit("enum", e);
        }
    ''', items='enum Oops { Bad(String) }')
    assert run_source(src) == [("string", "oops"), ("int", 42), ("enum", {"variant": "Bad", "data": "x"})]


def test_typed_catch_with_builtin_error_types():
    src = body('''
        try {
            let e = 1 / zero();
            emit("never", e);
        } catch AgentError(e) {
            emit("agent", e.message);
        } catch RuntimeError(e) {
            emit("runtime", e.message);
        } catch {
            emit("other", "x");
        }
        try {
            throw AgentError { message: "model down", model: "gpt" };
        } catch AgentError(e) {
            emit("agent", [e.message, e.model]);
        } catch {
            emit("other", "x");
        }
    ''', items='fn zero() -> Int { 0 }')
    out = run_source(src)
    # Division by zero is a runtime fault: caught as an error of the runtime hierarchy
    # (ArithmeticError is not an AgentError).
    assert out[0] == ("runtime", "division by zero")
    assert out[1] == ("agent", ["model down", "gpt"])


def test_typed_catch_arithmetic_error_and_uncaught_type_rethrows():
    src = body('''
        try {
            try {
                let v = [1, 2][5];
                emit("never", v);
            } catch AgentError(e) {
                emit("wrong", e.message);
            }
        } catch {
            emit("outer", "caught");
        }
    ''')
    assert run_source(src) == [("outer", "caught")]


@pytest.mark.parametrize("fault, fragment", [
    ("let z = 0; let v = 10 / z; emit(\"never\", v);", "division by zero"),
    ("let z = 0; let v = 10 % z; emit(\"never\", v);", "zero"),
    ("let a = [1, 2, 3]; let v = a[10]; emit(\"never\", v);", "index"),
    ("let a = [1, 2, 3]; let v = a[-10]; emit(\"never\", v);", "index"),
    ("let o: Option<Int> = None; let v = o.unwrap(); emit(\"never\", v);", "None"),
    ("let r: Result<Int, String> = Err(\"e\"); let v = r.unwrap(); emit(\"never\", v);", "e"),
    ("let m = {\"a\": 1}; let v = m[\"b\"]; emit(\"never\", v);", "b"),
])
def test_runtime_faults_caught_by_nearest_try_across_calls(fault, fragment):
    src = body('''
        try {
            let r = outer();
            emit("result", r);
        } catch {
            emit("far", "wrong handler");
        }
    ''', items=f'''
        fn inner() -> Int {{
            {fault}
            0
        }}
        fn middle() -> Int {{ inner() + 1 }}
        fn outer() -> Int {{
            let r = try {{
                middle()
            }} catch RuntimeError(e) {{
                emit("caught", e.message);
                -1
            }};
            r
        }}
    ''')
    out = run_source(src)
    assert [c for c, _ in out] == ["caught", "result"]
    assert fragment.lower() in out[0][1].lower()
    assert out[1][1] == -1


def test_runtime_fault_message_reachable_in_bare_catch():
    src = body('''
        let v = try { 10 / zero() } catch { -1 };
        emit("v", v);
        let w = try { [1][3] } catch { 7 };
        emit("w", w);
        let u = try { let o: Option<Int> = None; o.unwrap() } catch { 8 };
        emit("u", u);
    ''', items='fn zero() -> Int { 0 }')
    assert emitted(src) == [-1, 7, 8]


def test_uncaught_fault_reports_line_and_column():
    src = "fn main() {\n    let z = 0;\n    emit(\"before\", 1);\n    let v = 10 / z;\n    emit(\"after\", v);\n}\n"
    err, out = run_fault(src)
    assert out == [("before", 1)]
    assert "division by zero" in err.message
    loc = err.trace[0]
    assert (loc.line, loc.col) == (4, 13)
    assert err.trace[-1].function == "main"


def test_uncaught_fault_in_callee_has_call_trace():
    src = ("fn inner(a: Array<Int>) -> Int {\n    a[5]\n}\n"
           "fn main() {\n    let v = inner([1]);\n    emit(\"v\", v);\n}\n")
    err, _ = run_fault(src)
    assert err.trace[0].function == "inner" and err.trace[0].line == 2
    assert [t.function for t in err.trace] == ["inner", "main"]
    assert err.trace[1].line == 5


def test_unwrap_none_uncaught():
    err, _ = run_fault(body('let o: Option<Int> = None;\nemit("x", o.unwrap());'))
    assert "None" in err.message or "none" in err.message.lower()


def test_deep_recursion_reports_call_depth_exceeded():
    src = body('emit("v", down(0));', items='fn down(n: Int) -> Int { down(n + 1) + 1 }')
    err, _ = run_fault(src, max_call_depth=200)
    assert "call depth exceeded" in err.message


def test_deep_recursion_within_limit_is_fine():
    src = body('emit("v", count(300));', items='fn count(n: Int) -> Int { if n == 0 { 0 } else { 1 + count(n - 1) } }')
    assert emitted(src, max_call_depth=1000) == [300]


def test_deep_recursion_is_catchable_or_fatal_but_never_a_python_error():
    src = body('''
        let v = try { down(0) } catch { -1 };
        emit("v", v);
    ''', items='fn down(n: Int) -> Int { down(n + 1) + 1 }')
    try:
        out = emitted(src, max_call_depth=100)
    except Exception as e:  # a VMError is acceptable, but nothing else
        from concerto.vm.machine import VMError
        assert isinstance(e, VMError) and "call depth exceeded" in e.message
    else:
        assert out == [-1]


def test_panic_is_not_catchable():
    from concerto.vm.machine import Panic
    src = body('''
        try { panic("fatal"); } catch { emit("caught", true); }
        emit("after", true);
    ''')
    with pytest.raises(Panic) as info:
        run_source(src)
    assert "fatal" in info.value.message


def test_main_returning_err_ends_run_with_error():
    from concerto.vm.machine import VMError
    src = '''
        fn main() -> Result<Nil, String> {
            emit("a", 1);
            let v: Result<Int, String> = Err("nope");
            let x = v?;
            emit("never", x);
            Ok(nil)
        }
    '''
    with pytest.raises(VMError) as info:
        run_source(src)
    assert "nope" in info.value.message


# ---------------------------------------------------------------- modules

def test_use_std_with_alias_and_group():
    src = '''
        use std::string::to_upper as upper;
        use std::math::{abs, max};
        use std::json;
        fn main() {
            emit("a", upper("hi"));
            emit("b", [abs(-4), max(3, 7)]);
            emit("c", json::stringify([1, 2]));
            emit("d", std::math::min(3, 7));
        }
    '''
    out = emitted(src)
    assert out[:2] == ["HI", [4, 7]]
    assert out[2].replace(" ", "") == "[1,2]"
    assert out[3] == 3


def test_use_nested_group():
    src = '''
        use std::{string::{trim, to_lower}, math::abs};
        fn main() { emit("v", [to_lower(trim("  AB ")), abs(-1).to_string()]); }
    '''
    assert emitted(src) == [["ab", "1"]]


def test_inline_module():
    src = '''
        mod helpers {
            pub fn format_prompt(name: String) -> String { "Hi ${name}${suffix()}" }
            fn suffix() -> String { "!" }
            pub const LIMIT: Int = 3;
            pub struct Item { pub v: Int }
        }
        use helpers::format_prompt as fp;
        fn main() {
            emit("a", helpers::format_prompt("Bo"));
            emit("b", fp("Al"));
            emit("c", helpers::LIMIT);
            let it = helpers::Item { v: 2 };
            emit("d", it.v);
        }
    '''
    assert emitted(src) == ["Hi Bo!", "Hi Al!", 3, 2]


def test_mod_file_loaded_beside_source(tmp_path):
    (tmp_path / "helpers.conc").write_text(
        'pub fn double(x: Int) -> Int { x * 2 }\n'
        'pub struct Box { pub v: Int }\n'
        'pub enum Kind { A, B(Int) }\n'
        'fn private_helper() -> Int { 1 }\n'
    )
    main = tmp_path / "main.conc"
    src = '''
        mod helpers;
        use helpers::{double, Kind};
        fn main() {
            emit("a", helpers::double(4));
            emit("b", double(5));
            let b = helpers::Box { v: 3 };
            emit("c", b.v);
            emit("d", Kind::B(2));
        }
    '''
    main.write_text(textwrap.dedent(src))
    out = emitted(src, file=str(main))
    assert out == [8, 10, 3, {"variant": "B", "data": 2}]


def test_mod_directory_with_mod_conc(tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "mod.conc").write_text("pub fn name() -> String { \"tools\" }\n")
    main = tmp_path / "main.conc"
    src = 'mod tools;\nfn main() { emit("v", tools::name()); }\n'
    main.write_text(src)
    assert emitted(src, file=str(main)) == ["tools"]


def test_hashmap_declarations():
    src = '''
        hashmap cache: HashMap<String, Int> = HashMap::new();
        fn remember(k: String, v: Int) { cache.set(k, v); }
        fn main() {
            emit("empty", cache.has("a"));
            remember("a", 1);
            cache.set("b", 2);
            emit("has", [cache.has("a"), cache.has("b"), cache.has("c")]);
            emit("get", [cache.get("a"), cache.get("c")]);
            cache.delete("a");
            emit("deleted", cache.has("a"));
            emit("b", cache.get("b") ?? 0);
        }
    '''
    assert emitted(src) == [False, [True, True, False], [1, None], False, 2]


def test_nil_return_function_and_emit_without_payload():
    src = body('''
        log_message("hi");
        emit("bare");
    ''', items='fn log_message(msg: String) { emit("log", msg); }')
    assert run_source(src) == [("log", "hi"), ("bare", None)]


# ---------------------------------------------------------------- more edges

def test_question_mark_on_none_in_result_function_returns_err():
    # spec 13 "`?` with Option": in a fn returning Result, `None?` returns an Err.
    src = body('''
        emit("a", cfg("a"));
        emit("b", cfg("zz"));
    ''', items='''
        fn cfg(key: String) -> Result<String, String> {
            let m = {"a": "x"};
            let value = m.get(key)?;
            Ok(value)
        }
    ''')
    out = emitted(src)
    assert out[0] == {"ok": "x"}
    assert isinstance(out[1], dict) and set(out[1]) == {"err"}


def test_coalesce_default_is_lazy():
    src = body('''
        let s: Option<Int> = Some(1);
        emit("v", s ?? boom());
    ''', items='fn boom() -> Int { emit("boom", 1); 5 }')
    assert run_source(src) == [("v", 1)]


def test_interpolation_edge_cases():
    out = emitted(body('''
        emit("a", "${"}"}");
        emit("b", "${"a" + "${1}" + "b"}");
        emit("c", "${ {"a": 1}.len() }");
        let s = """
            line ${1 + 1}
              ${"x"}
            """;
        emit("d", s.trim());
    '''))
    assert out == ["}", "a1b", "1", "line 2\n  x"]


def test_closures_in_loop_capture_each_iteration():
    src = body('''
        let mut fs = [];
        for i in 0..3 { fs.push(|| i * 10); }
        let mut outs = [];
        for f in fs { outs.push(f()); }
        emit("v", outs);
    ''')
    assert emitted(src) == [[0, 10, 20]]


def test_return_from_inside_loop_and_labeled_while():
    src = body('''
        emit("a", find([4, 5, 6], 5));
        emit("b", find([4], 9));
        let mut n = 0;
        'w: while n < 10 { n += 1; if n == 3 { break 'w; } }
        emit("c", n);
    ''', items='''
        fn find(items: Array<Int>, target: Int) -> Int {
            for (i, v) in items.enumerate() { if v == target { return i; } }
            -1
        }
    ''')
    assert emitted(src) == [1, -1, 3]


def test_map_with_int_keys():
    src = body('''
        let m = {1: "one", 2: "two"};
        emit("a", m[2]);
        emit("b", m.get(3) ?? "none");
    ''')
    assert emitted(src) == ["two", "none"]


def test_int_extremes_and_mixed_comparison():
    src = body('''
        emit("max", 9_223_372_036_854_775_807);
        emit("min", -9_223_372_036_854_775_807 - 1);
        emit("mixed", [1 == 1.0, 2 > 1.5]);
        emit("promoted", 3 * 0.5);
    ''')
    assert emitted(src) == [9_223_372_036_854_775_807, -9_223_372_036_854_775_808, [True, True], 1.5]


def test_cast_from_any_checked_at_runtime():
    src = body('''
        let v: Any = "s";
        let r = try { v as Int } catch RuntimeError(e) { emit("e", e.message); -1 };
        emit("r", r);
    ''')
    out = run_source(src)
    assert out[-1] == ("r", -1) and out[0][0] == "e"


def test_associated_function_result_field_access():
    src = body('emit("v", Point::origin().x + Point::at(4).x);', items='''
        struct Point { x: Int }
        impl Point {
            fn origin() -> Point { Point { x: 0 } }
            fn at(x: Int) -> Point { Point { x } }
        }
    ''')
    assert emitted(src) == [4]


def test_mut_self_method_changes_struct_in_place_through_calls():
    src = body('''
        let mut acc = Acc { items: [] };
        acc.add(1);
        acc.add(2);
        fill(acc);
        emit("v", acc.items);
    ''', items='''
        struct Acc { items: Array<Int> }
        impl Acc { fn add(mut self, x: Int) { self.items.push(x); } }
        fn fill(mut a: Acc) { a.add(3); }
    ''')
    out = emitted(src)
    assert out[0][:2] == [1, 2]


def _write(tmp_path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_glob_import_and_nested_module_path(tmp_path):
    _write(tmp_path, {
        "util.conc": """
            pub fn glob_fn() -> Int { 7 }
            pub mod nested {
                pub fn deep() -> Int { 9 }
            }
        """,
    })
    src = textwrap.dedent("""
        mod util;
        use util::*;
        use util::nested::deep as d;
        fn main() {
            emit("g", glob_fn());
            emit("d", d());
            emit("p", util::nested::deep());
        }
    """)
    (tmp_path / "main.conc").write_text(src)
    assert emitted(src, file=str(tmp_path / "main.conc")) == [7, 9, 9]


def test_module_files_use_each_other(tmp_path):
    _write(tmp_path, {
        "a.conc": 'pub fn from_a() -> String { "a" }\n',
        "b.conc": 'use a::from_a;\npub fn hello() -> String { "b" + from_a() }\n',
    })
    src = 'mod a;\nmod b;\nfn main() { emit("x", b::hello()); }\n'
    (tmp_path / "main.conc").write_text(src)
    assert emitted(src, file=str(tmp_path / "main.conc")) == ["ba"]


def test_pub_use_reexport(tmp_path):
    _write(tmp_path, {
        "h.conc": """
            pub use h2::inner_fn;
            pub mod h2 { pub fn inner_fn() -> Int { 3 } }
        """,
    })
    src = 'mod h;\nfn main() { emit("r", h::inner_fn()); }\n'
    (tmp_path / "main.conc").write_text(src)
    assert emitted(src, file=str(tmp_path / "main.conc")) == [3]


def test_unmatched_typed_catch_rethrows_to_the_callers_try():
    src = body('''
        let v = try { inner() } catch IndexError(e) { emit("idx", e.message); -1 };
        emit("v", v);
        let w = try { thrower(5)? } catch String(e) { emit("s", e); -2 };
        emit("w", w);
        let z = try { thrower(1)? + 10 } catch { -3 };
        emit("z", z);
        try {
            try { throw 1; } catch String(e) { emit("no", e); }
        } catch Int(n) { emit("int", n); }
        let nested = try {
            let a = try { throw "x"; 0 } catch { 100 };
            a + 1
        } catch { -1 };
        emit("nested", nested);
    ''', items='''
        fn inner() -> Int {
            let r = try { [1][5] } catch AgentError(e) { -5 };
            r
        }
        fn thrower(x: Int) -> Result<Int, String> {
            if x > 1 { throw "too big"; }
            Ok(x)
        }
    ''')
    out = run_source(src)
    assert out[0][0] == "idx" and "5" in out[0][1]
    assert out[1:] == [("v", -1), ("s", "too big"), ("w", -2), ("z", 11), ("int", 1), ("nested", 101)]


# ---------------------------------------------------------------- spec 14 re-exports and public fields

def test_pub_use_reexport_via_use_and_in_a_directory_module(tmp_path):
    # spec 14 "Re-exports": `pub use document::Classifier;` in models/mod.conc lets
    # users write `use models::Classifier;`; the re-exported struct is the same type.
    _write(tmp_path, {
        "models/mod.conc": """
            pub mod document;
            pub use document::Classifier;
            pub use document::label;
        """,
        "models/document.conc": """
            pub struct Classifier { pub name: String }
            pub fn label(c: Classifier) -> String { "doc:" + c.name }
        """,
    })
    src = textwrap.dedent("""
        mod models;
        use models::Classifier;
        use models::label as lbl;
        fn main() {
            let c: models::Classifier = Classifier { name: "a" };
            emit("r", lbl(c));
            emit("p", models::label(models::document::Classifier { name: "b" }));
        }
    """)
    (tmp_path / "main.conc").write_text(src)
    assert emitted(src, file=str(tmp_path / "main.conc")) == ["doc:a", "doc:b"]


def test_pub_use_chains_and_reexported_modules(tmp_path):
    _write(tmp_path, {
        "a.conc": """
            pub mod inner {
                pub mod deep { pub fn f() -> Int { 5 } }
                pub use deep::f as g;
            }
            pub use inner::g;
            pub use inner::deep;
        """,
    })
    src = 'mod a;\nuse a::g;\nfn main() { emit("v", [g(), a::g(), a::deep::f()]); }\n'
    (tmp_path / "main.conc").write_text(src)
    assert emitted(src, file=str(tmp_path / "main.conc")) == [[5, 5, 5]]


def test_private_fields_inside_their_module_and_pub_fields_anywhere(tmp_path):
    # spec 14 "Public Fields": the declaring module may read, write and construct a
    # private field; other modules use the `pub` ones. A literal written elsewhere may
    # leave out a private field that has a default, since it never names it.
    _write(tmp_path, {
        "acct.conc": """
            pub struct Account { pub owner: String, balance: Int = 0 }
            impl Account {
                pub fn open(owner: String) -> Account { Account { owner: owner, balance: 10 } }
                pub fn deposit(mut self, n: Int) { self.balance += n; }
                pub fn balance(self) -> Int { self.balance }
            }
            pub fn drain(a: Account) -> Int {
                let Account { balance, .. } = a;
                balance
            }
        """,
    })
    src = textwrap.dedent("""
        mod acct;
        fn main() {
            let mut a = acct::Account::open("ann");
            a.deposit(5);
            a.owner = "bob";
            let b = acct::Account { owner: "cy" };
            emit("v", [a.owner, a.balance().to_string(), acct::drain(b).to_string()]);
        }
    """)
    (tmp_path / "main.conc").write_text(src)
    assert emitted(src, file=str(tmp_path / "main.conc")) == [["bob", "15", "0"]]
