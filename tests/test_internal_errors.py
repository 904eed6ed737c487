"""Defects of concerto itself surface as defects: an InternalError that says
where it happened, never a catchable program error and never a traceback on
the user's terminal. Running out of memory is a clean run error. The prelude
natives exist whatever was imported, and native arity is checked at run time
with a message in Concerto's terms."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import anyio
import pytest

from concerto import RunError, Runtime, RuntimeConfig, ir
from concerto.stdlib import load
from concerto.stdlib.registry import Native
from conftest import REPO, compile_ok

CAUGHT = '''
fn main() {
    let r = try { std::math::abs(-3) } catch { -1 };
    emit("r", r);
}
'''


def _broken(error: BaseException) -> Native:
    def fn(ctx: Any, x: Any) -> Any:
        raise error

    return Native("std::math::abs", fn, 1, 1)


def run_ir(data: bytes | dict[str, Any], jit: bool = True) -> list[tuple[str, Any]]:
    emits: list[tuple[str, Any]] = []
    rt = Runtime(RuntimeConfig(jit=jit))
    rt.load_ir(data)
    rt.on("*", lambda channel, payload: emits.append((channel, payload)))
    anyio.run(rt.execute)
    return emits


@pytest.mark.parametrize("jit", [True, False], ids=["tier2", "interpreter"])
def test_a_python_exception_in_a_native_is_an_internal_error_no_catch_sees(monkeypatch, jit: bool) -> None:
    data = ir.encode(compile_ok(CAUGHT).program)
    monkeypatch.setitem(load().functions, "std::math::abs", _broken(ValueError("boom")))
    with pytest.raises(RunError) as info:
        run_ir(data, jit)
    e = info.value
    assert e.kind == "InternalError"
    assert e.message == "ValueError: boom"
    assert e.location is not None and (e.location.function, e.location.line) == ("main", 3)
    assert "ValueError: boom" in (e.python_traceback or "") and "Traceback" in (e.python_traceback or "")


@pytest.mark.parametrize("jit", [True, False], ids=["tier2", "interpreter"])
def test_running_out_of_memory_ends_the_run_cleanly(monkeypatch, jit: bool) -> None:
    data = ir.encode(compile_ok(CAUGHT).program)
    monkeypatch.setitem(load().functions, "std::math::abs", _broken(MemoryError()))
    with pytest.raises(RunError) as info:
        run_ir(data, jit)
    assert (info.value.kind, info.value.message) == ("MemoryError", "out of memory")
    assert info.value.location is not None and info.value.location.line == 3


def _cli_with_broken_native(path: str, error: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    script = textwrap.dedent(f'''
        import sys
        from concerto.stdlib import load
        from concerto.stdlib.registry import Native
        def broken(ctx, x):
            raise {error}
        load().functions["std::math::abs"] = Native("std::math::abs", broken, 1, 1)
        from concerto.cli import main
        sys.argv = ["concerto", "run", {path!r}]
        main()
    ''')
    import os

    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, **(env or {})})


def test_cli_reports_an_internal_error_with_its_location_and_exit_70(tmp_path) -> None:
    src = tmp_path / "p.conc"
    src.write_text(CAUGHT)
    done = _cli_with_broken_native(str(src), 'KeyError("missing")', env={"CONCERTO_DEBUG": ""})
    assert done.returncode == 70, done.stderr
    assert f"{src}:3:" in done.stderr and "internal error: KeyError: 'missing'" in done.stderr
    assert "this is a defect in concerto" in done.stderr and "Traceback" not in done.stderr
    debug = _cli_with_broken_native(str(src), 'KeyError("missing")', env={"CONCERTO_DEBUG": "1"})
    assert debug.returncode == 70 and "Traceback (most recent call last)" in debug.stderr


def test_cli_out_of_memory_is_a_clean_error(tmp_path) -> None:
    src = tmp_path / "p.conc"
    src.write_text(CAUGHT)
    done = _cli_with_broken_native(str(src), "MemoryError()")
    assert done.returncode == 1 and "MemoryError: out of memory" in done.stderr and "Traceback" not in done.stderr


def test_prelude_natives_link_without_the_machine_imported() -> None:
    # `assert` and `panic` used to be registered by importing vm/machine.py.
    data = ir.encode(compile_ok('fn main() { assert(true, "fine"); assert_eq(1, 1); }').program)
    script = textwrap.dedent(f'''
        import sys
        from concerto.vm.loader import load_bytes
        program = load_bytes({data!r})
        assert "concerto.vm.machine" not in sys.modules
        print(sorted(n for n in ("assert", "assert_eq", "panic", "flush_emits") if n in __import__("concerto.stdlib").stdlib.load().functions))
    ''')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['assert', 'assert_eq', 'flush_emits', 'panic']"


def _method_call_ir(method: str, argc: int) -> dict[str, Any]:
    """main: "a,b".<method>(<argc> x "," args) on a receiver the compiler could
    not type (hand-written IR), then emit the result."""
    p = json.loads(ir.encode(compile_ok('fn main() { emit("r", "a,b"); }').program))
    main = next(f for f in p["functions"] if f["name"] == "main")
    p["constants"] += [{"index": len(p["constants"]), "type": "string", "value": "a,b"},
                       {"index": len(p["constants"]) + 1, "type": "string", "value": ","},
                       {"index": len(p["constants"]) + 2, "type": "string", "value": "r"}]
    recv, sep, channel = len(p["constants"]) - 3, len(p["constants"]) - 2, len(p["constants"]) - 1
    main["instructions"] = (
        [{"op": "LOAD_CONST", "arg": channel}, {"op": "LOAD_CONST", "arg": recv}]
        + [{"op": "LOAD_CONST", "arg": sep}] * argc
        + [{"op": "CALL_METHOD", "name": method, "argc": argc}, {"op": "EMIT"},
           {"op": "PUSH"}, {"op": "RETURN"}])
    return p


@pytest.mark.parametrize("jit", [True, False], ids=["tier2", "interpreter"])
def test_native_method_arity_is_checked_at_run_time_in_concerto_terms(jit: bool) -> None:
    assert run_ir(_method_call_ir("split", 1), jit) == [("r", ["a", "b"])]
    with pytest.raises(RunError) as info:
        run_ir(_method_call_ir("split", 3), jit)
    assert info.value.kind == "TypeError"
    assert info.value.message == "method `split` takes 0 to 1 argument(s), 3 given"


@pytest.mark.parametrize("jit", [True, False], ids=["tier2", "interpreter"])
def test_a_native_used_as_a_value_checks_its_arity(jit: bool) -> None:
    p = json.loads(ir.encode(compile_ok('fn main() { emit("r", 1); }').program))
    main = next(f for f in p["functions"] if f["name"] == "main")
    main["instructions"] = [
        {"op": "PUSH", "arg": "r"}, {"op": "LOAD_GLOBAL", "name": "std::math::abs"},
        {"op": "PUSH", "arg": -2}, {"op": "PUSH", "arg": 5}, {"op": "CALL_VALUE", "argc": 2},
        {"op": "EMIT"}, {"op": "PUSH"}, {"op": "RETURN"}]
    with pytest.raises(RunError) as info:
        run_ir(p, jit)
    assert (info.value.kind, info.value.message) == ("TypeError", "function `std::math::abs` takes 1 argument(s), 2 given")
