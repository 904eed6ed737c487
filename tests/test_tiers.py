"""The two execution tiers: the interpreter and functions compiled to Python
(vm/pycompile.py). Every behaviour test in the suite already runs in both and
compares them (conftest.run_both); these tests pin what is specific to tiering."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import cli, emitted, load_program, run_both, run_fault


def test_closure_returning_inside_a_native_keeps_the_callers_try_frame():
    # The closure's RETURN used to pop main's try-frame, so the later fault escaped.
    out = emitted("""
        fn main() {
            let r = try {
                let ys = [1, 2].map(|x| x + 1);
                let z = 0;
                emit("unreachable", ys[0] / z);
                1
            } catch {
                2
            };
            emit("r", r);
        }
    """)
    assert out == [2]


def test_a_fault_inside_a_closure_called_by_a_native_reaches_the_callers_try():
    out = emitted("""
        fn main() {
            let r = try { [1, 0].map(|x| 10 / x).len() } catch ArithmeticError(e) { -1 };
            emit("r", r);
        }
    """)
    assert out == [-1]


def test_deep_recursion_in_compiled_code_stops_at_the_configured_depth():
    err, _ = run_fault("""
        fn down(n: Int) -> Int { down(n + 1) + 1 }
        fn main() { emit("v", down(0)); }
    """, max_call_depth=10_000)
    assert err.message == "call depth exceeded (10000 nested calls)"
    assert (err.trace[0].function, err.trace[0].line, err.trace[0].col) == ("down", 2, 26)


def test_recursion_through_natives_is_bounded_not_a_crash():
    err, _ = run_fault("""
        fn walk(n: Int) -> Int { [n].map(|x| walk(x + 1))[0] }
        fn main() { emit("v", walk(0)); }
    """)
    assert err.message.startswith("call depth exceeded")


def test_recursive_methods_go_deep_without_nesting_the_c_stack():
    out = emitted("""
        struct T { n: Int }
        impl T {
            fn go(self, k: Int) -> Int { if k == 0 { self.n } else { self.go(k - 1) + 1 } }
        }
        fn main() { let t = T { n: 1 }; emit("v", t.go(8000)); }
    """, max_call_depth=10_000)
    assert out == [8001]


def test_faults_in_compiled_code_point_at_the_failing_instruction_with_a_trace():
    err, out = run_fault("""
        fn inner(d: Int) -> Int {
            10 / d
        }
        fn outer(d: Int) -> Int { inner(d) + 1 }
        fn main() {
            emit("before", 1);
            emit("v", outer(0));
        }
    """)
    assert out == [("before", 1)]
    assert err.kind == "ArithmeticError"
    assert [(t.function, t.line, t.col) for t in err.trace] == [
        ("inner", 3, 5), ("outer", 5, 27), ("main", 8, 15)]


def test_a_function_with_try_stays_interpreted_and_its_callees_are_compiled():
    program = load_program("""
        fn risky(x: Int) -> Int { 10 / x }
        fn main() {
            let r = try { risky(0) } catch { -1 };
            emit("r", r);
        }
    """)
    from concerto.vm.machine import Machine

    Machine(program, on_emit=lambda c, p: None)
    assert program.functions["risky"].jit is not None
    assert program.functions["main"].jit is None


def test_cli_no_jit_and_disasm_python(tmp_path):
    src = tmp_path / "p.conc"
    src.write_text('fn twice(x: Int) -> Int { x * 2 }\nfn main() { emit("v", twice(21)); }\n')
    for flag in ("--jit", "--no-jit"):
        code, out, err = cli("run", "--emit-format", "jsonl", flag, str(src))
        assert (code, out) == (0, '{"channel":"v","payload":42}\n'), err
    code, out, _ = cli("disasm", "--python", str(src))
    assert code == 0
    assert "def f0(vm, l0):" in out and "l0 * (2)" in out


# -- differential: random integer programs give the same result in both tiers ----

_leaf = st.one_of(st.sampled_from(["a", "b", "c"]), st.integers(-20, 20).map(str))


def _combine(children):
    arith = st.tuples(children, st.sampled_from(["+", "-", "*", "/", "%"]), children).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})")
    cond = st.tuples(children, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), children, children, children).map(
        lambda t: f"(if {t[0]} {t[1]} {t[2]} {{ {t[3]} }} else {{ {t[4]} }})")
    return st.one_of(arith, cond)


_expr = st.recursive(_leaf, _combine, max_leaves=12)


@pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")  # Machine raises it
@settings(max_examples=60, deadline=None)
@given(expr=_expr, a=st.integers(-50, 50), b=st.integers(-50, 50))
def test_integer_expressions_agree_across_tiers(expr, a, b):
    src = f"""
        fn f(a: Int, b: Int) -> Int {{
            let mut c = 0;
            let mut i = 0;
            while i < 3 {{ c = c + {expr}; i += 1; }}
            c
        }}
        fn main() {{ emit("r", f({a}, {b})); }}
    """
    run_both(src)  # asserts equal emits and equal errors (division by zero, overflow)


def test_a_very_long_function_stays_interpreted_and_agrees():
    from concerto.vm.pycompile import MAX_FUNCTION_SIZE, compile_program

    terms = MAX_FUNCTION_SIZE // 2 + 10  # two instructions per term: more than the cap
    src = "fn long() -> Int { " + " + ".join(["1"] * terms) + " }\nfn main() { emit(\"n\", long()); }\n"
    program = load_program(src)
    compile_program(program)
    assert program.functions["long"].jit is None and program.functions["main"].jit is not None
    out, err = run_both(src)
    assert err is None and out == [("n", terms)]
