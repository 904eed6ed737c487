"""Pins each decision recorded in docs/semantics.md."""

from __future__ import annotations

import subprocess
import sys

import pytest

from concerto import ir
from concerto.compiler import compile_source
from concerto.vm.loader import load_bytes
from concerto.vm.machine import Machine, Panic, RunConfig, VMError
from concerto.vm.values import to_json


def run(src: str, **config) -> list[tuple[str, object]]:
    result = compile_source(src, "t.conc")
    assert result.ok, [d.header() for d in result.diagnostics]
    program = load_bytes(ir.encode(result.program))
    out: list[tuple[str, object]] = []
    Machine(program, on_emit=lambda c, p: out.append((c, to_json(p))), config=RunConfig(**config)).run_main()
    return out


def errors(src: str) -> list[str]:
    result = compile_source(src, "t.conc")
    return [d.message for d in result.diagnostics]


def test_int_division_truncates():
    out = run('fn main() { emit("a", -7 / 2); emit("b", -7 % 2); emit("c", 7 % -2); emit("d", 7 / -2); }')
    assert out == [("a", -3), ("b", -1), ("c", 1), ("d", -3)]
    with pytest.raises(VMError) as e:
        run('fn main() { let z = 0; emit("x", 1 / z); }')
    assert e.value.kind == "ArithmeticError"


def test_int_overflow_is_a_fault():
    with pytest.raises(VMError) as e:
        run('fn main() { let x = 9223372036854775807; emit("x", x + 1); }')
    assert e.value.kind == "OverflowError" and "overflow" in e.value.message


def test_float_division_by_zero():
    out = run('fn main() { let z = 0.0; let x = 1.0 / z; emit("inf", x > 1000000.0); emit("s", "${3.0}"); }')
    assert out == [("inf", True), ("s", "3.0")]


def test_nil_and_none():
    out = run('''
fn main() {
    let a = nil;
    let b: Option<Int> = None;
    emit("a", a ?? 1);
    emit("b", b ?? 2);
    emit("m", match a { None => "absent", _ => "present" });
    emit("j", b);
}''')
    assert out == [("a", 1), ("b", 2), ("m", "absent"), ("j", None)]


def test_closures_capture_values():
    out = run('''
fn main() {
    let mut n = 1;
    let f = |x: Int| x + n;
    n = 100;
    emit("v", f(1));
}''')
    assert out == [("v", 2)]
    msgs = errors('fn main() { let mut n = 1; let f = || { n = 2; }; f(); }')
    assert any("closures capture values" in m for m in msgs)


def test_let_mut_copies():
    out = run('''
struct P { x: Int }
impl P { fn bump(mut self) { self.x += 1; } }
fn main() {
    let a = [1, 2];
    let mut b = a;
    b.push(3);
    emit("a", a.len());
    emit("b", b.len());
    let mut p = P { x: 1 };
    p.bump();
    emit("p", p.x);
}''')
    assert out == [("a", 2), ("b", 3), ("p", 2)]


def test_try_catch_rules():
    out = run('''
fn bad() -> Result<Int, String> { throw "boom"; }
fn div(a: Int, b: Int) -> Int { a / b }
fn main() {
    let discarded = try { bad(); "no catch" } catch { "caught" };
    emit("discarded", discarded);
    let q = try { bad()?; "no" } catch String(e) { "caught ${e}" };
    emit("q", q);
    let f = try { div(1, 0) } catch { -1 };
    emit("fault", f);
}''')
    assert out == [("discarded", "no catch"), ("q", "caught boom"), ("fault", -1)]


def test_catch_values():
    out = run('''
fn main() {
    let a = try { let xs = [1]; xs[5] } catch IndexError(e) { e.message.len() > 0 };
    emit("index", a);
    let b = try { let n: Option<Int> = None; n? } catch RuntimeError(e) { e.message };
    emit("none", b);
    let c = try { let z = 0; 1 / z } catch RuntimeError(e) { "runtime" };
    emit("kind", c);
}''')
    assert out == [("index", True), ("none", "`?` found None"), ("kind", "runtime")]


def test_panic_is_not_catchable():
    seen: list = []
    result = compile_source('fn main() { let x = try { panic("stop") } catch { 1 }; emit("after", x); }', "t.conc")
    program = load_bytes(ir.encode(result.program))
    with pytest.raises(Panic):
        Machine(program, on_emit=lambda c, p: seen.append(c)).run_main()
    assert seen == ["panic"]


def test_main_err_fails_the_run(tmp_path):
    src = tmp_path / "m.conc"
    src.write_text('fn main() -> Result<Nil, String> { throw "nope"; }\n')
    proc = subprocess.run([sys.executable, "-m", "concerto", "run", str(src)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "main returned Err: nope" in proc.stderr and "Traceback" not in proc.stderr


def test_strings_index_by_character():
    out = run('fn main() { let s = "héllo"; emit("c", s[1]); emit("n", s.len()); emit("sl", s[1..3]); }')
    assert out == [("c", "é"), ("n", 5), ("sl", "él")]


def test_block_like_statements():
    out = run('''
fn pick(b: Bool) -> Int {
    if b { 1 } else { 2 }
}
fn main() {
    if true { emit("stmt", 1); }
    let m = {};
    emit("m", m.len());
    emit("v", pick(false));
}''')
    assert out == [("stmt", 1), ("m", 0), ("v", 2)]


def test_struct_literal_in_condition_needs_parens():
    src = 'struct P { x: Int }\nfn main() { let p = P { x: 1 };\n if p == P { x: 1 } { emit("a", 1); } }'
    assert not compile_source(src, "t.conc").ok
    ok = 'struct P { x: Int }\nfn main() { let p = P { x: 1 };\n if p == (P { x: 1 }) { emit("a", 1); } }'
    assert run(ok) == [("a", 1)]


def test_generic_call_versus_less_than():
    out = run('''
struct C { label: String }
fn main() {
    let a = 1; let b = 2;
    emit("lt", a < b);
    let r = std::json::parse_as<C>("{\\"label\\": \\"x\\"}");
    match r { Ok(c) => emit("label", c.label), Err(e) => emit("err", e.message) }
}''')
    assert out == [("lt", True), ("label", "x")]


def test_match_arm_commas_optional():
    out = run('fn main() { let v = match 2 { 1 => "one" 2 => "two" _ => "many" }; emit("v", v); }')
    assert out == [("v", "two")]


def test_map_order():
    out = run('''
fn main() {
    let m = {"z": 1, "a": 2, "m": 3};
    let mut keys = [];
    for (k, v) in m { keys.push(k); }
    emit("keys", keys);
}''')
    assert out == [("keys", ["z", "a", "m"])]


def test_const_rules():
    out = run('const A: Int = 2;\nconst B: Int = A * 21;\nfn main() { emit("b", B); }')
    assert out == [("b", 42)]
    msgs = errors('fn f() -> Int { 1 }\nconst A: Int = f();\nfn main() {}')
    assert any("computable at compile time" in m for m in msgs)


def test_call_depth():
    with pytest.raises(VMError) as e:
        run('fn down(n: Int) -> Int { down(n + 1) }\nfn main() { emit("x", down(0)); }', max_call_depth=500)
    assert "call depth exceeded" in e.value.message


def test_mut_param_copies():
    assert [v for _, v in run("""
        struct P { x: Int }
        fn grow(mut xs: Array<Int>, mut p: P) -> Int {
            xs.push(9);
            p.x = 5;
            xs.len() + p.x
        }
        fn main() {
            let xs = [1, 2];
            let p = P { x: 1 };
            emit("r", grow(xs, p));
            emit("xs", xs);
            emit("p", p.x);
        }
    """)] == [8, [1, 2], 1]


def test_let_tuple_pattern_of_the_wrong_length_is_a_compile_error():
    assert errors("fn main() {\n    let (a, b) = (1, 2, 3);\n}\n") == [
        "this pattern has 2 element(s) but the value is a 3-tuple `(Int, Int, Int)`"]
    assert errors("fn main() {\n    let (a, (b, c)) = (1, (2, 3));\n}\n") == []


TRAIT_BOUNDS = """
trait Describable { fn describe(self) -> String; }
trait Named { fn name(self) -> String; }
struct Cat { name: String }
struct Rock { w: Int }
impl Describable for Cat { fn describe(self) -> String { "cat ${self.name}" } }
impl Named for Cat { fn name(self) -> String { self.name } }
impl Describable for Rock { fn describe(self) -> String { "rock" } }
fn show<T: Describable>(item: T) -> String { item.describe() }
fn both<T: Describable + Named>(item: T) -> String { "${item.name()}: ${item.describe()}" }
fn main() {
    emit("a", show(Cat { name: "Tom" }));
    emit("b", both(Cat { name: "Tom" }));
    CALL
}
"""


def test_trait_bounds_are_checked_at_the_call():
    assert [v for _, v in run(TRAIT_BOUNDS.replace("CALL", 'emit("c", show(Rock { w: 1 }));'))] == [
        "cat Tom", "Tom: cat Tom", "rock"]
    assert errors(TRAIT_BOUNDS.replace("CALL", 'emit("c", both(Rock { w: 1 }));')) == [
        "`Rock` does not implement `Named`, which `T` requires"]


def test_question_mark_applies_from_conversion():
    src = """
        struct LowError { message: String }
        enum AppError { Wrapped(String), Other }
        impl From<LowError> for AppError {
            fn from(e: LowError) -> AppError { AppError::Wrapped(e.message) }
        }
        fn low(x: Int) -> Result<Int, LowError> {
            if x > 1 { Err(LowError { message: "too big" }) } else { Ok(x) }
        }
        fn app(x: Int) -> Result<Int, AppError> {
            let v = low(x)?;
            Ok(v * 10)
        }
        fn main() {
            emit("ok", app(1));
            emit("err", app(5));
        }
    """
    assert [v for _, v in run(src)] == [{"ok": 10}, {"err": {"variant": "Wrapped", "data": "too big"}}]
