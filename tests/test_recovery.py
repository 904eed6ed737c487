"""Syntax error recovery: every independent syntax error of a file in one run.

After an error the parser skips to a `;`, a `}` or a keyword that starts an
item or statement (compiler/parse.py, `_Parse`), so later errors are found
too; what fails before the parse is back on its feet is the same mistake and
is not reported again. At most MAX_SYNTAX_ERRORS are reported per file.

The last section is about the parser tables' disk cache (compiler/grammar_cache.py).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from concerto.compiler import compile_source, grammar_cache
from concerto.compiler.diagnostics import render_plain
from concerto.compiler.parse import MAX_SYNTAX_ERRORS
from conftest import cli, emitted


def errors_of(src: str, file: str = "bad.conc") -> list[tuple[int, int, str]]:
    result = compile_source(textwrap.dedent(src), file)
    assert not result.ok and result.program is None
    return [(d.line, d.col, d.message) for d in result.diagnostics if d.severity == "error"]


def test_two_unrelated_syntax_errors_are_both_reported():
    assert errors_of('''\
        fn helper(x: Int) -> Int {
            let y = ;
            y + x
        }
        fn main() {
            emit("a", helper(1) +* 2);
        }
    ''') == [(2, 13, "unexpected `;`"), (6, 26, "unexpected `*`")]


@pytest.mark.parametrize("bad", [
    "let = 5;", "let x = ;", "let x: = 1;", "let (a, = t;", "let x = 1 +;", "let x = [1, 2;",
    "let x = f(1;", "let mut = 2;", "let x = if { 1 } else { 2 };", "let x = { \"a\": 1, \"b\" 2 };",
    "let x = 5 $ 3;", "let x = 12z + q;",
])
def test_one_bad_let_is_one_error(bad):
    src = f'fn main() {{\n    let t = (1, 2);\n    {bad}\n    let y = t.0 + 1;\n    emit("y", y);\n}}\n'
    errors = errors_of(src)
    assert len(errors) == 1, errors
    assert errors[0][0] == 3


def test_a_missing_brace_is_reported_once_and_the_next_function_is_still_checked():
    assert errors_of('''\
        fn a() {
            if true {
                emit("x", 1);
        }
        fn b() -> Int {
            let = 2;
            3
        }
        fn main() {}
    ''') == [(5, 1, "unexpected `fn`"), (6, 9, "unexpected `=`")]
    result = compile_source("fn a() {\n    emit(\"x\", 1);\nfn main() {}\n", "bad.conc")
    (d,) = result.diagnostics
    assert d.hint == "is a `}` missing before this?"


def test_errors_in_items_statements_and_expressions_all_surface():
    assert errors_of('''\
        struct P { x: Int, y }
        enum E { A(, B }
        fn main() {
            emit("x", (1, 2);
            let v = [1, 2;
            match v { 1 => 2, => 3 }
            let ok = 1;
        }
        fn later() { let = 1; }
    ''') == [(1, 22, "unexpected `}`"), (2, 12, "unexpected `,`"), (4, 21, "unexpected `;`"),
             (5, 18, "unexpected `;`"), (6, 23, "unexpected `=>`"), (9, 18, "unexpected `=`")]


def test_lexical_errors_are_each_reported_and_parsing_goes_on():
    assert errors_of('''\
        fn main() {
            let a = 5 $ 3;
            let b = 12z;
            let c = "bad \\q escape";
            let d = ' 1;
            let e = 2 # 3;
            let f = = 1;
        }
    ''') == [(2, 15, "unexpected character '$'"), (3, 15, "invalid digit 'z' in number literal"),
             (4, 18, "unknown escape sequence \\q"), (5, 13, "unexpected `'`: labels look like `'outer`"),
             (6, 15, "unexpected character '#'"), (7, 13, "unexpected `=`")]


def test_an_unterminated_string_ends_the_file_but_keeps_the_errors_before_it():
    assert errors_of('''\
        fn main() {
            let a = ;
            let s = "never closed;
            let b = ;
        }
    ''') == [(2, 13, "unexpected `;`"), (3, 13, "unterminated string literal")]


def test_unexpected_end_of_file_is_reported_once():
    assert errors_of("fn main() {\n    let x = 1;\n") == [(3, 1, "unexpected end of file")]
    assert errors_of("fn main() {\n    let x = (1 +\n") == [(3, 1, "unexpected end of file")]


def test_build_errors_are_all_reported():
    assert errors_of('''\
        fn main() {
            let a = 99999999999999999999;
            let [x, .., y, ..] = [1, 2, 3];
            let b = 88888888888888888888;
        }
    ''') == [(2, 13, "integer literal `99999999999999999999` does not fit in a 64-bit Int"),
             (3, 9, "an array pattern can hold only one `..`"),
             (4, 13, "integer literal `88888888888888888888` does not fit in a 64-bit Int")]


def test_at_most_twenty_syntax_errors_are_reported():
    src = "".join(f"fn f{i}() {{ let = {i}; }}\n" for i in range(35)) + "fn main() {}\n"
    errors = errors_of(src)
    assert MAX_SYNTAX_ERRORS == 20
    assert [line for line, _, _ in errors] == list(range(1, 21))


def test_syntax_errors_stop_the_later_checks():
    # `nope` is undefined, but a file that does not parse gets no semantic checks.
    assert errors_of("fn main() {\n    let x = ;\n    emit(\"a\", nope);\n}\n") == [(2, 13, "unexpected `;`")]


# Bad statements that stay inside their own function, each with the line it is on.
BAD_STATEMENTS = ["let = 1;", "let x = ;", "let y = (1 + ;", "emit(\"a\", 1;", "let z = [1, 2;",
                  "let w: = 3;", "x +* 2;", "let v = 4 $ 5;"]


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(BAD_STATEMENTS)), min_size=1, max_size=12))
def test_each_function_with_one_bad_statement_gives_exactly_one_error(plan):
    """k functions with one error each -> exactly k errors, on their lines."""
    lines = []
    bad_lines = []
    for i, bad in enumerate(plan):
        lines.append(f"fn f{i}(x: Int) -> Int {{")
        lines.append("    let a = x * 2;")
        if bad is not None:
            lines.append("    " + bad)
            bad_lines.append(len(lines))
        lines.append("    a + 1")
        lines.append("}")
    lines.append("fn main() {}")
    result = compile_source("\n".join(lines) + "\n", "many.conc")
    got = [d.line for d in result.diagnostics]
    assert got == bad_lines[:MAX_SYNTAX_ERRORS]


MULTI_ERROR_FILES = {
    "three_functions": '''\
fn helper(x: Int) -> Int {
    let y = ;
    y + x
}
fn other() {
    let z = 1 +* 2;
}
fn main() {
    emit("a", helper(1));
}
''',
    "missing_brace_then_bad_let": '''\
fn a() {
    if true {
        emit("x", 1);
}
fn b() -> Int {
    let = 2;
    3
}
fn main() {}
''',
    "lexical_and_syntax": '''\
struct P { x: Int, y }
fn main() {
    let a = 5 $ 3;
    let s = "tab\\q";
    let m = {"a": 1, "b" 2};
}
''',
}


@pytest.mark.parametrize("name", list(MULTI_ERROR_FILES))
def test_multi_error_files_render_every_error(name, snapshot):
    src = MULTI_ERROR_FILES[name]
    result = compile_source(src, "bad.conc")
    assert len(result.diagnostics) >= 2
    text = "\n".join(render_plain(d, result.sources.get(d.file, src)) for d in result.diagnostics)
    assert text == snapshot


def test_cli_check_reports_both_errors_without_a_traceback(tmp_path):
    bad = tmp_path / "two.conc"
    bad.write_text(MULTI_ERROR_FILES["three_functions"])
    code, out, err = cli("check", str(bad))
    assert code == 1
    assert f"{bad}:2:13: error: unexpected `;`" in err
    assert f"{bad}:6:16: error: unexpected `*`" in err
    assert "could not compile: 2 errors" in err
    assert "Traceback" not in err + out


# ---------------------------------------------------------------- found by tests/test_fuzz_source.py

def test_an_operator_after_a_cast_is_an_operator():
    # `+` is also the bound separator of `T: A + B`; the lexer now picks the
    # terminal the parser can shift, not merely one its state lists.
    assert emitted('fn main() {\n    let a = 1 as Int + 2 * 3 as Int - 1;\n    emit("a", a);\n}\n') == [6]


# ---------------------------------------------------------------- the parser tables' cache

TABLES = {"data": {"parser": {"parser": {"states": {"0": {"1": [0, 2]}}}}}, "memo": {"3": {"options": {}}}}


def _write_tables(directory: Path, name: str) -> Path:
    assert grammar_cache.write(directory, name, json.loads(json.dumps(TABLES)), check=lambda back: True)
    return directory / name


def test_cache_files_are_private(tmp_path):
    directory = tmp_path / "cache" / "concerto"
    path = _write_tables(directory, "t.json")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = grammar_cache.read(directory, "t.json")
    assert back is not None and back["data"]["parser"]["parser"]["states"] == {0: {"1": [0, 2]}}


@pytest.mark.parametrize("spoil", ["file_group_writable", "file_world_writable", "dir_group_writable",
                                   "dir_world_writable", "file_symlink", "dir_symlink", "not_a_file"])
def test_a_cache_others_could_write_is_not_read(tmp_path, spoil):
    directory = tmp_path / "concerto"
    path = _write_tables(directory, "t.json")
    name = "t.json"
    if spoil == "file_group_writable":
        path.chmod(0o620)
    elif spoil == "file_world_writable":
        path.chmod(0o602)
    elif spoil == "dir_group_writable":
        directory.chmod(0o770)
    elif spoil == "dir_world_writable":
        directory.chmod(0o777)
    elif spoil == "file_symlink":
        (directory / "link.json").symlink_to(path)
        name = "link.json"
    elif spoil == "dir_symlink":
        (tmp_path / "alias").symlink_to(directory)
        directory = tmp_path / "alias"
    elif spoil == "not_a_file":
        path.unlink()
        path.mkdir(mode=0o700)
    assert grammar_cache.read(directory, name) is None
    # and nothing is written into a directory that fails the checks
    if spoil.startswith("dir_"):
        assert not grammar_cache.write(directory, "new.json", TABLES, check=lambda back: True)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to hand a file to another user")
def test_a_cache_owned_by_someone_else_is_not_read(tmp_path):
    directory = tmp_path / "concerto"
    path = _write_tables(directory, "t.json")
    os.chown(path, 12345, 12345)
    assert grammar_cache.read(directory, "t.json") is None
    os.chown(path, 0, 0)
    os.chown(directory, 12345, 12345)
    assert grammar_cache.read(directory, "t.json") is None


def test_damaged_cache_data_is_not_read(tmp_path):
    directory = tmp_path / "concerto"
    path = _write_tables(directory, "t.json")
    path.write_bytes(b"\x80\x04 not json")  # a pickle header, say
    assert grammar_cache.read(directory, "t.json") is None


def _compile_in_child(env_extra: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    code = ("from concerto.compiler import compile_source\n"
            "r = compile_source('fn main() { emit(\"a\", 1); }', 'x.conc')\n"
            "assert r.ok, r.diagnostics\nprint('ok')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "HOME", "TMPDIR")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_compiler_keeps_its_tables_in_the_users_cache_dir_and_rebuilds_a_spoiled_one(tmp_path):
    cache = tmp_path / "xdg"
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"XDG_CACHE_HOME": str(cache), "HOME": str(tmp_path / "home"), "TMPDIR": str(temp)}
    proc = _compile_in_child(env, tmp_path)
    assert proc.stdout.strip() == "ok", proc.stderr
    (cached,) = (cache / "concerto").iterdir()
    assert cached.name.startswith("grammar-") and cached.suffix == ".json"
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert stat.S_IMODE((cache / "concerto").stat().st_mode) == 0o700
    assert list(temp.iterdir()) == []
    # Spoiled (garbage that someone else could have written): ignored, rebuilt, replaced.
    cached.write_text("garbage")
    cached.chmod(0o666)
    proc = _compile_in_child(env, tmp_path)
    assert proc.stdout.strip() == "ok", proc.stderr
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert json.loads(cached.read_bytes())["data"]
    assert list(temp.iterdir()) == []


def test_without_a_usable_cache_dir_the_tables_are_built_in_memory(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    home_file = tmp_path / "not_a_dir"
    home_file.write_text("")
    # A relative XDG_CACHE_HOME is ignored (XDG spec); HOME is a file, so ~/.cache cannot exist.
    proc = _compile_in_child({"XDG_CACHE_HOME": "relative/cache", "HOME": str(home_file), "TMPDIR": str(temp)},
                             tmp_path)
    assert proc.stdout.strip() == "ok", proc.stderr
    assert list(temp.iterdir()) == []
    assert not (tmp_path / "relative").exists()
