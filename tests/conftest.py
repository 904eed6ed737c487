"""Shared helpers for the Concerto test suite.

* `run_source(src)` compiles inline source, encodes the program to IR JSON
  bytes, loads those bytes with the VM loader and runs `main`, so every
  behaviour test also round-trips the IR. It returns the emits as
  `[(channel, payload)]` where `payload` is the spec-20 JSON-compatible value.
* `cli(*args)` runs `python -m concerto ...` in a subprocess. It is slow
  (~0.3 s), so only the CLI tests use it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from concerto import ir
from concerto.compiler import CompileResult, compile_source
from concerto.compiler.diagnostics import render_plain
from concerto.vm.loader import load_bytes
from concerto.vm.machine import Machine, RunConfig, VMError
from concerto.vm.values import to_json

REPO = Path(__file__).resolve().parent.parent

# Keep Hypothesis' caches under tests/ (git-ignored) rather than the repo root.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(__file__).resolve().parent / ".hypothesis"))
EXAMPLES = REPO / "examples"

# Machine raises Python's recursion limit for compiled code; doing it once here
# keeps Hypothesis from warning that a test changed it.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 100_000))

# A small depth keeps the "call depth exceeded" tests fast; ordinary programs
# in the suite never nest anywhere near this deep.
DEFAULT_DEPTH = 500


class CompileFailed(AssertionError):
    def __init__(self, result: CompileResult) -> None:
        self.result = result
        super().__init__("program did not compile:\n" + rendered(result))


def rendered(result: CompileResult) -> str:
    return "\n".join(render_plain(d, result.sources.get(d.file)) for d in result.diagnostics)


def compile_ok(src: str, file: str = "main.conc") -> CompileResult:
    result = compile_source(textwrap.dedent(src), file)
    if not result.ok:
        raise CompileFailed(result)
    return result


def load_program(src: str, file: str = "main.conc"):
    result = compile_ok(src, file)
    data = ir.encode(result.program)
    assert isinstance(data, bytes)
    return load_bytes(data)


def _run_once(src: str, file: str, max_call_depth: int, jit: bool) -> tuple[list[tuple[str, Any]], VMError | None]:
    program = load_program(src, file)  # a fresh load: globals live in the program
    out: list[tuple[str, Any]] = []
    machine = Machine(
        program,
        on_emit=lambda channel, payload: out.append((channel, to_json(payload))),
        on_log=lambda level, message: None,
        config=RunConfig(max_call_depth=max_call_depth, jit=jit),
    )
    if jit:
        assert program.jit_failures == [], program.jit_failures
    try:
        machine.run_main()
    except VMError as e:
        return out, e
    return out, None


def _error_key(e: VMError | None) -> Any:
    if e is None:
        return None
    # Compiled frames keep the innermost 64 trace entries (pycompile.TRACE_LIMIT);
    # the CLI shows 12.
    # Where a call-depth limit trips may differ: the interpreter also counts
    # the re-entries natives make (docs/semantics.md, "Two tiers").
    if e.message.startswith("call depth exceeded"):
        return "call depth exceeded", e.kind
    return e.message, e.kind, [(t.function, t.line, t.col) for t in e.trace[:12]]


def run_both(src: str, file: str = "main.conc", max_call_depth: int = DEFAULT_DEPTH):
    """Run in the interpreter and with tier-2 compilation (vm/pycompile.py);
    both must give the same emits and the same error. Returns the compiled run's."""
    interp_out, interp_err = _run_once(src, file, max_call_depth, jit=False)
    jit_out, jit_err = _run_once(src, file, max_call_depth, jit=True)
    assert jit_out == interp_out, "the two tiers emitted different values"
    assert _error_key(jit_err) == _error_key(interp_err), "the two tiers failed differently"
    return jit_out, jit_err


def run_source(src: str, file: str = "main.conc", max_call_depth: int = DEFAULT_DEPTH) -> list[tuple[str, Any]]:
    """compile -> IR JSON bytes -> load_bytes -> Machine.run_main; the emits.
    Every program runs in both tiers (see run_both)."""
    out, err = run_both(src, file, max_call_depth)
    if err is not None:
        raise err
    return out


def emitted(src: str, **kw: Any) -> list[Any]:
    """Just the payloads, in order."""
    return [payload for _, payload in run_source(src, **kw)]


def run_fault(src: str, **kw: Any) -> tuple[VMError, list[tuple[str, Any]]]:
    """Run a program expected to end with a VMError: (error, emits so far)."""
    out, err = run_both(src, kw.pop("file", "main.conc"), kw.pop("max_call_depth", DEFAULT_DEPTH))
    if err is None:
        pytest.fail("the program ended without an error")
    return err, out


def diagnostics_of(src: str, file: str = "main.conc"):
    result = compile_source(textwrap.dedent(src), file)
    return result


def cli(*args: str, input: str | None = None, cwd: str | os.PathLike[str] | None = None,
        timeout: float = 60, env_extra: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run `python -m concerto ARGS`: (exit code, stdout, stderr)."""
    env = dict(os.environ)
    env.update(env_extra or {})
    env.setdefault("SOURCE_DATE_EPOCH", "0")
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    proc = subprocess.run(
        [sys.executable, "-m", "concerto", *args],
        input=input,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.conc")) if EXAMPLES.is_dir() else []


def pytest_configure(config: pytest.Config) -> None:
    # examples/ is edited by others: a snapshot whose example was removed or
    # renamed should warn, not fail the whole session.
    if hasattr(config.option, "warn_unused_snapshots"):
        config.option.warn_unused_snapshots = True


@pytest.fixture(scope="module")
def fake_server():
    """One loopback fake provider per test module (tests/fake_provider.py)."""
    from tests.fake_provider import FakeProvider

    with FakeProvider() as server:
        yield server


@pytest.fixture
def fake(fake_server):
    """The module's fake provider, with its script, records and counters cleared."""
    fake_server.reset()
    return fake_server


# ---------------------------------------------------------------- model programs in-process (issue 11)
MODEL_KEYS = {"TEST_OPENAI_KEY": "sk-test-SECRET-0123456789", "TEST_ANTHROPIC_KEY": "sk-ant-SECRET-9876543210"}


def model_connections(fake: Any, extra: str = "", timeout: float = 10) -> str:
    """`[connections.openai]` and `[connections.claude]` pointing at a fake provider;
    `extra` is appended to both tables (e.g. "max_response_bytes = 1000")."""
    return (f'[connections.openai]\nprovider = "openai"\napi_key_env = "TEST_OPENAI_KEY"\n'
            f'base_url = "{fake.openai_base_url}"\ndefault_model = "gpt-4o-mini"\ntimeout = {timeout}\n{extra}\n\n'
            f'[connections.claude]\nprovider = "anthropic"\napi_key_env = "TEST_ANTHROPIC_KEY"\n'
            f'base_url = "{fake.anthropic_base_url}"\ndefault_model = "claude-sonnet-4-20250514"\n'
            f'timeout = {timeout}\n{extra}\n')


def model_project(tmp_path: Path, source: str, connections: str) -> Path:
    """Concerto.toml (with `connections`) at tmp_path, the program in src/main.conc."""
    (tmp_path / "Concerto.toml").write_text(
        '[project]\nname = "t"\nversion = "0.1.0"\nentry = "src/main.conc"\n\n' + connections)
    (tmp_path / "src").mkdir(exist_ok=True)
    main = tmp_path / "src" / "main.conc"
    main.write_text(textwrap.dedent(source))
    return main


def run_project(main: Path, environ: dict[str, str] | None = None,
                **config: Any) -> tuple[list[tuple[str, Any]], Any, dict[str, Any]]:
    """Run a .conc through the host API: ([(channel, payload)], RunError or None, metrics)."""
    from concerto import Runtime, RuntimeConfig
    from concerto.host import RunError

    rt = Runtime(RuntimeConfig(environ=MODEL_KEYS if environ is None else environ, **config))
    rt.load_source(main)
    out: list[tuple[str, Any]] = []
    rt.on("*", lambda channel, payload: out.append((channel, payload)))
    try:
        rt.run()
    except RunError as e:
        return out, e, rt.metrics()
    return out, None, rt.metrics()
