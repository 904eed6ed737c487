"""Deep nesting: up to MAX_NESTING levels compiles and runs, deeper is one clean
`nesting too deep` diagnostic, and operator chains are length, not depth.

The counting rule (compiler/nesting.py): a construct's level is the number of
constructs it sits in. Each generator below says what one repetition adds and
is pinned to the level it reaches, so "at the limit" means exactly
MAX_NESTING and "past it" exactly one more.

tests/conftest.py raises the recursion limit of the test process, so
everything about the real stack is checked in subprocesses: the CLI, the
host API, and a plain interpreter with Python's default limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from concerto.compiler import compile_source, headroom, lexer
from concerto.compiler.nesting import MAX_NESTING, nesting_depth
from concerto.compiler.parse import parse_source

# Not conftest's: subprocesses import this module, and conftest raises the recursion limit.
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Construct:
    """`body(n)`: statements that nest the construct n times and emit one value;
    `items`: declarations they need; `at_limit`: the n that reaches level
    MAX_NESTING; `expect`: the value emitted; `marker`: the text the too-deep
    diagnostic must point at."""

    body: Callable[[int], str]
    items: str
    at_limit: int
    expect: Any
    marker: str


def _closures(n: int) -> str:
    inner = "|x: Int| x + 1"
    for _ in range(n - 1):
        inner = "|x: Int| { let c = " + inner + "; c(x) + 1 }"
    return f"let f = {inner};\nemit(\"out\", f(0));"


def _elif(n: int) -> str:
    chain = " else ".join(f"if x == {i} {{ emit(\"out\", {i}); }}" for i in range(n))
    return f"let x = {n - 1};\n{chain}"


def _fn_type(n: int) -> str:
    t = "Int"
    for _ in range(n):
        t = f"fn({t}) -> Int"
    return f"let x: Array<{t}> = [];\nemit(\"out\", x.len());"


L = MAX_NESTING
# The constructs the issue names, each run through the CLI at the limit.
CONSTRUCTS: dict[str, Construct] = {
    # f(f(...f(0)...)): the innermost call sits in n - 1 calls.
    "calls": Construct(lambda n: "let a = " + "f(" * n + "0" + ")" * n + ";\nemit(\"out\", a);",
                       "fn f(x: Int) -> Int { x + 1 }", L + 1, L + 1, "f(0)"),
    # if .. { if .. { emit } }: the emit sits in n ifs (a body block belongs to its if).
    "ifs": Construct(lambda n: "let x = 1;\n" + "if x == 1 { " * n + "emit(\"out\", 7);" + " }" * n,
                     "", L, 7, "x == 1 { emit"),
    "blocks": Construct(lambda n: "{ " * n + "emit(\"out\", 7);" + " }" * n, "", L, 7, 'emit("out", 7)'),
    "closures": Construct(_closures, "", L, L, "x + 1; c(x)"),
    "else_if": Construct(_elif, "", L, L - 1, "x == 1000 {"),
    "match": Construct(lambda n: "let x = 1;\nlet v = " + "match x { _ => " * n + "x + 1" + " }" * n
                       + ";\nemit(\"out\", v);", "", L, 2, "x + 1 }"),
    "tuples": Construct(lambda n: "let t = " + "(" * n + "1" + ", 2)" * n + ";\nemit(\"out\", t.1);",
                        "", L + 1, 2, "(1, 2)"),
    "arrays": Construct(lambda n: "let a = " + "[" * n + "1" + "]" * n + ";\nemit(\"out\", a.len());",
                        "", L + 1, 1, "[1]"),
    "maps": Construct(lambda n: "let m = " + '{"k": ' * n + "1" + "}" * n + ";\nemit(\"out\", m.len());",
                      "", L + 1, 1, '{"k": 1}'),
    "interpolation": Construct(lambda n: "let s = " + '"${' * n + "1" + '}"' * n + ";\nemit(\"out\", s);",
                               "", L + 1, "1", '"${1}"'),
    "generic_types": Construct(lambda n: "let x: " + "Array<" * n + "Int" + ">" * n
                               + " = [];\nemit(\"out\", x.len());", "", L + 1, 0, "Array<Int>"),
    "struct_literals": Construct(lambda n: "let b = " + "B { inner: " * n + "1" + " }" * n
                                 + ";\nemit(\"out\", b.inner != nil);", "struct B { inner: Any }", L + 1, True,
                                 "B { inner: 1 }"),
}
# More ways to nest: counted the same way, compiled in process and past the limit.
EXTRA: dict[str, Construct] = {
    "unary": Construct(lambda n: "let b = " + "!" * n + "true;\nemit(\"out\", b);", "", L + 1, L % 2 == 1, "!true"),
    "pipes": Construct(lambda n: "let a = 0" + " |> f()" * n + ";\nemit(\"out\", a);",
                       "fn f(x: Int) -> Int { x + 1 }", L, L, "f() |>"),
    "method_chain": Construct(lambda n: "let a = (-1)" + ".abs()" * n + ";\nemit(\"out\", a);", "", L + 1, 1,
                              "(-1).abs()"),
    "index": Construct(lambda n: "let a = " + "[" * n + "5" + "]" * n + ";\nlet v = a" + "[0]" * n
                       + ";\nemit(\"out\", v);", "", L + 1, 5, "[5]"),
    "try_catch": Construct(lambda n: "try { " * n + "emit(\"out\", 1);" + " } catch { emit(\"err\", 2); }" * n,
                           "", L, 1, 'emit("out", 1)'),
    "while": Construct(lambda n: "let mut i = 0;\n" + "while i < 1 { " * n + "i += 1;" + " }" * n
                       + "\nemit(\"out\", i);", "", L, 1, "i < 1 { i += 1"),
    "for": Construct(lambda n: "let mut i = 0;\n" + "for _ in 0..1 { " * n + "i += 1;" + " }" * n
                     + "\nemit(\"out\", i);", "", L, 1, "0..1 { i += 1"),
    "some": Construct(lambda n: "let o = " + "Some(" * n + "1" + ")" * n + ";\nemit(\"out\", o.is_some());",
                      "", L + 1, True, "Some(1)"),
    "tuple_patterns": Construct(lambda n: "let t = " + "(" * n + "1" + ", 2)" * n + ";\nlet " + "(" * n + "a"
                                + ", _)" * n + " = t;\nemit(\"out\", a);", "", L + 1, 1, "(1, 2)"),
    "variant_patterns": Construct(lambda n: "let o = " + "Some(" * (n - 1) + "1" + ")" * (n - 1)
                                  + ";\nlet v = match o { " + "Some(" * (n - 1) + "x" + ")" * (n - 1)
                                  + " => x, _ => 0 };\nemit(\"out\", v);", "", L + 1, 1, "Some(x)"),
    "casts": Construct(lambda n: "let a = " + "(" * n + "1" + " as Int)" * n + ";\nemit(\"out\", a);",
                       "", L + 1, 1, "1 as Int)"),
    "fn_types": Construct(_fn_type, "", L, 0, "fn(Int) -> Int)"),
}
ALL = {**CONSTRUCTS, **EXTRA}


def program(c: Construct, n: int) -> str:
    body = textwrap.indent(c.body(n), "    ")
    return f"{c.items}\nfn main() {{\n{body}\n}}\n"


def _depth(src: str) -> int:
    module, diags = parse_source(src, "deep.conc", max_nesting=None)
    assert module is not None, [d.header() for d in diags]
    return nesting_depth(module)


def _assert_one_too_deep(diagnostics: list, src: str, marker: str, file_suffix: str = "deep.conc") -> None:
    assert len(diagnostics) == 1, [d.header() for d in diagnostics]
    (d,) = diagnostics
    assert d.severity == "error" and d.message == f"nesting too deep: more than {MAX_NESTING} levels"
    assert d.file.endswith(file_suffix) and d.line >= 1 and d.col >= 1
    line = src.split("\n")[d.line - 1]
    assert line[d.col - 1:].startswith(marker), (line[max(0, d.col - 20):d.col + 20], marker)


def _cli_many(argvs: list[list[str]], cwd: Path, timeout: float = 300) -> list[tuple[int, str, str]]:
    """Run several `python -m concerto ...` at once (they are independent)."""
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200", SOURCE_DATE_EPOCH="0")
    procs = [subprocess.Popen([sys.executable, "-m", "concerto", *argv], cwd=cwd, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv in argvs]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout, stderr))
    return out


def _python(code: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """A fresh interpreter with Python's default recursion limit."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=str(REPO / "tests")))


# ---------------------------------------------------------------- the counting rule

@pytest.mark.parametrize("kind", list(ALL))
def test_each_construct_reaches_exactly_the_limit(kind):
    c = ALL[kind]
    assert _depth(program(c, c.at_limit)) == MAX_NESTING


def test_operator_chains_and_grouping_parentheses_are_no_nesting():
    assert _depth("fn main() { let a = " + "+".join(["1"] * 5000) + "; }") == 0
    assert _depth("fn main() { let a = " + " || ".join(["true"] * 3000) + "; }") == 0
    assert _depth("fn main() { let a = " + "(" * 5000 + "1" + ")" * 5000 + "; }") == 0
    # A chain's operands still nest inside it: `1 + (2 + (3 + ...))` is nesting.
    right = "1" + " + (1" * 50 + ")" * 50  # 50 additions, the innermost inside 49
    assert _depth(f"fn main() {{ let a = {right}; }}") == 49


# ---------------------------------------------------------------- past the limit

@pytest.mark.parametrize("kind", list(ALL))
def test_one_level_past_the_limit_is_one_clean_diagnostic(kind):
    c = ALL[kind]
    src = program(c, c.at_limit + 1)
    result = compile_source(src, "deep.conc")
    assert not result.ok and result.program is None
    _assert_one_too_deep(result.diagnostics, src, c.marker)


def test_far_past_the_limit_is_still_one_diagnostic():
    # (bench/frontend_nesting.py shows the time this takes grows linearly.)
    n = 5 * MAX_NESTING
    for src in ("fn main() { let x = " + "f(" * n + "1" + ")" * n + "; }",
                "fn main() { let s = " + '"${' * n + "1" + '}"' * n + "; }",
                "fn main() { let s = " + '"""${' * n + "1" + '}"""' * n + "; }",
                "fn main() { " + "{ " * n + " }" * n + " }",
                "fn main() { let x: " + "Array<" * n + "Int" + ">" * n + " = []; }"):
        result = compile_source(src, "deep.conc")
        assert [d.message for d in result.diagnostics] == [f"nesting too deep: more than {MAX_NESTING} levels"]


def test_a_mod_file_too_deep_is_reported_in_that_file(tmp_path):
    deep = program(CONSTRUCTS["arrays"], MAX_NESTING + 2).replace("fn main()", "pub fn g()")
    (tmp_path / "inner.conc").write_text(deep)
    src = "mod inner;\nfn main() { inner::g(); }\n"
    (tmp_path / "main.conc").write_text(src)
    result = compile_source(src, str(tmp_path / "main.conc"))
    _assert_one_too_deep(result.diagnostics, deep, "[", "inner.conc")


# ---------------------------------------------------------------- through the CLI and the host API

def _combined(constructs: dict[str, Construct]) -> str:
    """One program: each construct at the limit in its own function."""
    items = sorted({c.items for c in constructs.values() if c.items})
    fns = []
    calls = []
    for kind, c in constructs.items():
        body = c.body(c.at_limit).replace('emit("out"', f'emit("{kind}"')
        fns.append(f"fn t_{kind}() {{\n{body}\n}}")
        calls.append(f"    t_{kind}();")
    return "\n".join(items) + "\n" + "\n".join(fns) + "\nfn main() {\n" + "\n".join(calls) + "\n}\n"


def test_every_named_construct_at_the_limit_compiles_and_runs_through_the_cli(tmp_path):
    src = _combined(CONSTRUCTS) + "fn chain() -> Int { " + " + ".join(["1"] * 1000) + " }\n"
    src = src.replace("fn main() {\n", 'fn main() {\n    emit("plus_chain", chain());\n')
    assert _depth(src) == MAX_NESTING
    path = tmp_path / "deep.conc"
    path.write_text(src)
    (code, out, err), (ccode, _, cerr) = _cli_many(
        [["run", "--emit-format", "jsonl", str(path)], ["compile", str(path), "-o", str(tmp_path / "deep.conc-ir")]],
        tmp_path)
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    got = [json.loads(line) for line in out.splitlines()]
    want = [{"channel": "plus_chain", "payload": 1000}]
    want += [{"channel": kind, "payload": c.expect} for kind, c in CONSTRUCTS.items()]
    assert got == want
    assert ccode == 0 and "Traceback" not in cerr
    assert (tmp_path / "deep.conc-ir").stat().st_size > 0


def test_extra_constructs_at_the_limit_compile_and_run_in_a_fresh_interpreter(tmp_path):
    src = _combined(EXTRA)
    assert _depth(src) == MAX_NESTING
    (tmp_path / "extra.conc").write_text(src)
    proc = _python(f"""
        import sys
        from concerto import Runtime
        assert sys.getrecursionlimit() == 1000
        rt = Runtime()
        rt.load_source({str(tmp_path / "extra.conc")!r})
        assert sys.getrecursionlimit() == 1000  # the compiler's limit went with its thread
        got = []
        rt.on("*", lambda channel, payload: got.append([channel, payload]))
        rt.run()
        print(repr(got))
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = [[kind, c.expect] for kind, c in EXTRA.items()]
    assert eval(proc.stdout.strip()) == want  # noqa: S307 - our own repr of lists of scalars


def test_past_the_limit_every_named_construct_through_cli_check(tmp_path):
    argvs = []
    sources = {}
    for kind, c in CONSTRUCTS.items():
        path = tmp_path / f"{kind}.conc"
        sources[kind] = program(c, c.at_limit + 1)
        path.write_text(sources[kind])
        argvs.append(["check", str(path)])
    for (kind, c), (code, out, err) in zip(CONSTRUCTS.items(), _cli_many(argvs, tmp_path)):
        assert code == 1, (kind, err[-2000:])
        assert "Traceback" not in err + out, kind
        errors = [line for line in err.splitlines() if ": error: " in line]
        assert len(errors) == 1, (kind, errors)
        assert errors[0].startswith(f"{tmp_path / kind}.conc:") and "nesting too deep" in errors[0], errors
        assert "could not compile: 1 error" in err


@pytest.mark.parametrize("kind", ["calls", "interpolation", "generic_types"])
def test_past_the_limit_is_the_same_through_check_compile_run_and_host(tmp_path, kind):
    c = CONSTRUCTS[kind]
    src = program(c, c.at_limit + 1)
    path = tmp_path / "deep.conc"
    path.write_text(src)
    expected = compile_source(src, str(path)).diagnostics[0].header()
    results = _cli_many([["check", str(path)], ["compile", str(path)], ["run", str(path)]], tmp_path)
    for (code, out, err), command in zip(results, ("check", "compile", "run")):
        assert code == 1, (command, err)
        assert "Traceback" not in err + out
        assert [line for line in err.splitlines() if ": error: " in line] == [expected], command
    assert not (tmp_path / "deep.conc-ir").exists()
    proc = _python(f"""
        from concerto import LoadError, Runtime
        try:
            Runtime().load_source({str(path)!r})
        except LoadError as e:
            print(e.diagnostics)
        else:
            raise SystemExit("loaded a program past the nesting limit")
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == repr([expected])


# ---------------------------------------------------------------- the mechanism

def _max_frames(src: str) -> int:
    """The deepest Python stack (frames, counted from the compile's start) compiling src."""
    from concerto.compiler import driver

    state = {"depth": 0, "max": 0}

    def profile(frame, event, arg):
        if event == "call":
            state["depth"] += 1
            state["max"] = max(state["max"], state["depth"])
        elif event == "return":
            state["depth"] -= 1

    def work() -> None:
        sys.setprofile(profile)
        try:
            result = driver._compile_source(src, "deep.conc", None, False)
        finally:
            sys.setprofile(None)
        assert result.ok, [d.header() for d in result.diagnostics]

    headroom.call(work)
    return state["max"]


@pytest.mark.parametrize("kind", ["closures", "pipes", "calls", "while", "try_catch", "struct_literals"])
def test_frames_per_level_leave_the_headroom_a_margin(kind):
    """headroom.FRAMES_PER_LEVEL must cover the deepest pass: measure the slope."""
    c = ALL[kind]
    per_level = (_max_frames(program(c, 200)) - _max_frames(program(c, 100))) / 100
    assert 1 <= per_level <= headroom.FRAMES_PER_LEVEL / 2, per_level


def test_recursion_limit_is_raised_only_while_compiling(tmp_path):
    proc = _python(f"""
        import sys, threading
        from concerto.compiler import compile_source, headroom
        from test_nesting import CONSTRUCTS, program
        before = sys.getrecursionlimit()
        seen = headroom.call(lambda: (sys.getrecursionlimit(), threading.current_thread().name))
        assert seen == (headroom.RECURSION_LIMIT, "concerto-compile"), seen
        assert sys.getrecursionlimit() == before == 1000
        # Several compiles at once: the limit comes back only after the last.
        src = program(CONSTRUCTS["closures"], {MAX_NESTING})
        results = []
        threads = [threading.Thread(target=lambda: results.append(compile_source(src, "x.conc").ok))
                   for _ in range(3)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert results == [True, True, True], results
        assert sys.getrecursionlimit() == 1000
        # An error inside the worker reaches the caller.
        try:
            headroom.call(lambda: 1 / 0)
        except ZeroDivisionError:
            pass
        else:
            raise SystemExit("no error")
        assert sys.getrecursionlimit() == 1000
        print("ok")
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"


def test_a_compile_ending_never_lowers_the_limit_a_run_needs(tmp_path):
    # A compile raised the limit; a run that needs less than that raise (so set
    # nothing) starts meanwhile; the compile ends. The run's need must survive.
    proc = _python("""
        import sys
        from concerto import recursion
        from concerto.compiler import compile_source
        from concerto.vm.loader import load_bytes
        from concerto.vm.machine import Machine, RunConfig
        from concerto import ir
        data = ir.encode(compile_source("fn main() { }", "x.conc").program)
        recursion.raise_for_compile(40_000)
        Machine(load_bytes(data), config=RunConfig(max_call_depth=5000, jit=True))
        recursion.lower_after_compile()
        need = 5000 + 50 * 400 + 1000
        assert sys.getrecursionlimit() >= need, sys.getrecursionlimit()
        print("ok")
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"


def test_without_a_big_stack_thread_a_deep_program_is_still_a_clean_diagnostic(tmp_path):
    """Where no thread with that stack can be made, the compile runs in place with
    the usual limit; a program too deep for it is then a diagnostic, not a crash."""
    proc = _python(f"""
        from concerto.compiler import compile_source, headroom
        from test_nesting import CONSTRUCTS, program
        headroom._start = lambda target: None
        src = program(CONSTRUCTS["calls"], {MAX_NESTING})
        result = compile_source(src, "deep.conc")
        print([d.header() for d in result.diagnostics])
        assert compile_source(program(CONSTRUCTS["calls"], 10), "small.conc").ok
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == repr(["deep.conc:1:1: error: nesting too deep: this program is nested too deeply "
                                        "to compile here"])


def test_compile_keeps_an_existing_higher_limit():
    before = sys.getrecursionlimit()  # conftest's 100,000, above what the compiler needs
    assert compile_source(program(CONSTRUCTS["calls"], 10), "x.conc").ok
    assert sys.getrecursionlimit() == before


def test_long_operator_chains_compile():
    n = 10 * MAX_NESTING
    for src in ("fn main() { emit(\"a\", " + " + ".join(["1"] * n) + "); }",
                "fn main() { let x = 3; emit(\"a\", " + " || ".join(f"x == {i}" for i in range(n // 4)) + "); }",
                "fn main() { let o: Option<Int> = None; emit(\"a\", " + " ?? ".join(["o"] * (n // 4)) + " ?? 4); }",
                "const C: Int = " + " + ".join(["1"] * n) + ";\nfn main() { emit(\"a\", C); }"):
        result = compile_source(src, "chain.conc")
        assert result.ok, [d.header() for d in result.diagnostics][:3]


def test_generic_lookahead_scans_the_text_once(monkeypatch):
    """Each `Ident<` asks whether type arguments and `(` follow; the answers come
    from one left-to-right pass over the text, not a rescan per `<`."""
    calls = []
    real = lexer._generic_table
    monkeypatch.setattr(lexer, "_generic_table", lambda text: calls.append(len(text)) or real(text))
    n = 5000
    src = "fn main() { let x: " + "Array<" * n + "Int" + ">" * n + " = []; let y = id<Int>(1); }"
    compile_source(src, "g.conc")
    assert calls == [len(src)]


def _scan_from(text: str, pos: int) -> bool:
    """The look-ahead as a plain forward scan from one `<` (what the table must agree with)."""
    depth = 0
    i = pos
    while i < len(text):
        c = text[i]
        if c == "<":
            depth += 1
            i += 1
        elif c == ">":
            depth -= 1
            i += 1
            if depth == 0:
                while i < len(text) and text[i] in " \t":
                    i += 1
                return i < len(text) and text[i] == "("
        elif text.startswith("->", i):
            i += 2
        elif c.isalnum() or c in "_:, \t()[]":
            i += 1
        else:
            return False
    return False


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet="<>-(), \tabT:_[]+\"\n", max_size=40))
def test_generic_lookahead_table_agrees_with_a_scan_from_each_lt(text):
    table = lexer._generic_table(text)
    for pos, ch in enumerate(text):
        if ch == "<":
            assert table.get(pos, False) == _scan_from(text, pos), (text, pos)


class _CountingStates(dict):
    lookups = 0

    def __getitem__(self, key):
        _CountingStates.lookups += 1
        return super().__getitem__(key)


@pytest.mark.parametrize("shape", [
    lambda n: "fn main() { let x: " + "Array<" * n + "Int" + ">" * n + " = []; }",
    lambda n: "fn main() { let x = id<" + "Array<" * n + "Int" + ">" * n + ">(1); }",
    lambda n: "fn main() { let x = " + "f(" * n + "1" + ")" * n + "; }",
    lambda n: "fn main() { let s = " + '"""${' * n + "1" + '}"""' * n + "; }",
    lambda n: "fn main() { let x = " + " + ".join(["a < b"] * n) + "; }",
], ids=["types", "generic_call", "calls", "interpolation", "comparisons"])
def test_parser_work_grows_linearly(monkeypatch, shape):
    """Counted work, not time: parse-table look-ups (by the parser and by the
    lexer's contextual choices) for n and 2n levels."""
    from concerto.compiler.parse import parser

    table = parser().parser.parser.parser.parse_table
    monkeypatch.setattr(table, "states", _CountingStates(table.states))
    counts = []
    for n in (2000, 4000):
        _CountingStates.lookups = 0
        parse_source(shape(n), "lin.conc", max_nesting=None)
        counts.append(_CountingStates.lookups)
    assert counts[1] <= 2.1 * counts[0], counts


def test_bench_script_runs():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "frontend_nesting.py"), "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "n=" in proc.stdout and "2n/n" in proc.stdout
