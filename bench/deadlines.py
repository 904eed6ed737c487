"""Deadlines under load (issue 11, point 3): how long after its deadline a run really ends.

Each scenario is a program that never ends on its own. It runs --runs times
stopped by execution_timeout (--deadline, 1 s) and --runs times stopped by
cancel() called from another thread at the same moment; the overshoot is the
time from the deadline (execute() began + timeout) or from the cancel() call
to the moment execute() raised. The table gives min / median / max in ms
against the target (100 ms). The first row, an idle program (a
`std::time::sleep` far past the deadline, nothing to interrupt), is the same
timer mechanism's baseline measured in this process: what any run pays
(setting up the run, tearing it down) whatever it computes.

Exits non-zero if a median (baseline included) exceeds the target.

    python bench/deadlines.py                    # compiled tier, 3 runs each
    python bench/deadlines.py --no-jit           # the interpreter alone
    python bench/deadlines.py --runs 5 --deadline 0.5
    python bench/deadlines.py --only spawn_1000_busy emit_sync_5ms
    python bench/deadlines.py --long-natives     # also one native join over 10^7 items
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from concerto import RunError, Runtime, RuntimeConfig, ir  # noqa: E402
from tests.fake_provider import FakeProvider, Slow, Text  # noqa: E402

SPIN = """
fn spin(k: Int) -> Int {
    let mut i = 0;
    loop { i += 1; }
    i
}
"""

# name -> source (a path to Concerto source is written per scenario)
SOURCES: dict[str, str] = {
    "idle (baseline)": 'fn main() { std::time::sleep(600000); }',
    "loop_in_main": "fn main() { let mut i = 0; loop { i += 1; } }",
    "spawn_1000_busy": SPIN + """
fn main() {
    let mut tasks = [];
    for k in 0..1000 { tasks.push(spawn(|| spin(k))); }
    for t in tasks { t.await; }
}
""",
    "parallel_for_1e6": """
fn main() {
    let xs = (0..1000000).to_array();
    let ys = parallel for x in xs {
        let mut s = 0;
        for j in 0..50 { s += x * j; }
        s
    };
    emit("finished", ys.len());
}
""",
    "parallel_for_forever": SPIN + "fn main() { let ys = parallel for k in [1, 2, 3, 4, 5, 6, 7, 8] { spin(k) }; }",
    "await_tuple_busy": SPIN + "fn main() { let all = await (spin(1), spin(2), spin(3)); }",
    "catch_all_loop": "fn main() { loop { try { let mut i = 0; loop { i += 1; } } catch { emit(\"caught\", 1); } } }",
    "recursion_no_loop": """
fn spread(depth: Int) -> Int { if depth >= 2000 { 0 } else { spread(depth + 1) + spread(depth + 1) } }
fn main() { emit("finished", spread(0)); }
""",
    "map_callback_forever": "fn main() { let ys = [1, 2, 3].map(|x| { let mut i = x; loop { i += 1; } i }); }",
    "sort_by_slow_key": """
fn slow(n: Int) -> Int { if n < 2 { n } else { slow(n - 1) + slow(n - 2) } }
fn main() { let ys = (0..100000).to_array().sort_by(|x| slow(14 + x % 3)); }
""",
    # Native calls of a second or more each over an Array of 8,000,000 Ints
    # (one row held 8,000 times): the deadline falls inside one of them.
    "long_natives_loop": """
fn main() {
    let row = (0..1000).to_array();
    let xs = (0..8000).map(|i| row);
    loop {
        let text = std::json::stringify(xs);
        let shown = xs.to_string();
        let joined = xs.join(",");
        let distinct = xs.unique();
        let sorted = xs.flatten().sorted();
    }
}
""",
    "emit_sync_5ms": 'fn main() { let mut i = 0; loop { emit("tick", i); i += 1; } }',
    "ask_async_5ms": 'fn main() { let mut i = 0; loop { let r = await emit("ask", i); i += r; } }',
    "model_call_hangs": """
model Slowpoke { provider: openai, base: "gpt-4o-mini" }
fn main() { let r = Slowpoke.execute("hello"); }
""",
}
LONG_NATIVES = {
    # One native call of ~3 s: the deadline is looked at between instructions only.
    "long_native_join_1e7": 'fn main() { let s = (0..10000000).to_array().join(","); emit("n", s.len()); }',
}


def _ir(instructions: list[tuple[str, Any, str | None]], constants: list[tuple[str, Any]]) -> bytes:
    return ir.encode(ir.Program(
        version=ir.IR_VERSION, module="main", source_file="hand.conc-ir",
        constants=[ir.Constant(i, kind, value) for i, (kind, value) in enumerate(constants)], types=[],
        functions=[ir.Function(name="main", instructions=[ir.Instr(op, arg, name) for op, arg, name in instructions])],
        metadata=ir.Metadata(compiler_version="hand-written"),
    ), pretty=False)


# Loops the compiler never writes: back through a conditional jump, or through a try handler.
HAND_IR: dict[str, bytes] = {
    "ir_jump_if_true_back": _ir([("LOAD_CONST", 0, None), ("JUMP_IF_TRUE", 0, None), ("LOAD_CONST", 1, None),
                                 ("RETURN", None, None)],
                                [("bool", True), ("nil", None)]),
    "ir_fault_into_handler": _ir([("LOAD_CONST", 2, None), ("POP", None, None), ("TRY_BEGIN", 1, None),
                                  ("LOAD_CONST", 0, None), ("LOAD_CONST", 1, None), ("DIV", None, None),
                                  ("RETURN", None, None)],
                                 [("int", 1), ("int", 0), ("nil", None)]),
}


async def _answer_after_5ms(_payload: Any) -> int:
    await anyio.sleep(0.005)
    return 1


HANDLERS: dict[str, Callable[[Runtime], None]] = {
    "emit_sync_5ms": lambda rt: rt.on("tick", lambda _p: time.sleep(0.005)),
    "ask_async_5ms": lambda rt: rt.on_emit("ask", _answer_after_5ms),
}


@dataclass
class Bench:
    deadline: float
    jit: bool
    workdir: Path
    fake: FakeProvider

    def runtime(self, name: str, timeout: float | None) -> Runtime:
        config = RuntimeConfig(jit=self.jit, execution_timeout=timeout,
                               environ={"BENCH_KEY": "sk-bench"})
        rt = Runtime(config)
        if name in HAND_IR:
            rt.load_ir(HAND_IR[name])
        else:
            rt.load_source(self.source_path(name))
        if name in HANDLERS:
            HANDLERS[name](rt)
        if name == "model_call_hangs":
            self.fake.reset()
            self.fake.script(Slow(60.0, Text("too late")))
        return rt

    def source_path(self, name: str) -> Path:
        folder = self.workdir / name.replace(" ", "_").replace("(", "").replace(")", "")
        path = folder / "main.conc"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            if name == "model_call_hangs":
                (folder / "Concerto.toml").write_text(
                    '[project]\nname = "bench"\nversion = "0.1.0"\nentry = "main.conc"\n\n'
                    '[connections.openai]\nprovider = "openai"\napi_key_env = "BENCH_KEY"\n'
                    f'base_url = "{self.fake.openai_base_url}"\ndefault_model = "gpt-4o-mini"\ntimeout = 120\n')
            source = {**SOURCES, **LONG_NATIVES}[name]
            path.write_text(textwrap.dedent(source))
        return path

    def overshoot(self, name: str, how: str) -> float:
        """One run stopped `how` ("timeout" or "cancel"): seconds past the deadline."""
        rt = self.runtime(name, self.deadline if how == "timeout" else None)
        cancelled_at: list[float] = []

        def cancel() -> None:
            cancelled_at.append(time.monotonic())
            rt.cancel()

        timer = threading.Timer(self.deadline, cancel) if how == "cancel" else None

        async def run() -> tuple[float, float]:
            started = time.monotonic()
            if timer is not None:
                timer.start()
            try:
                await rt.execute()
            except RunError as e:
                want = "TimeoutError" if how == "timeout" else "CancelledError"
                if e.kind != want:
                    raise SystemExit(f"{name}: the run ended with {e.kind}: {e.message}, not {want}") from None
            else:
                raise SystemExit(f"{name}: the run ended on its own")
            return started, time.monotonic()

        started, ended = anyio.run(run)
        if timer is not None:
            timer.join()
            return ended - cancelled_at[0]
        return ended - (started + self.deadline)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per scenario and way of stopping")
    ap.add_argument("--deadline", type=float, default=1.0, help="execution_timeout, and when cancel() is called (s)")
    ap.add_argument("--target-ms", type=float, default=100.0, help="the largest acceptable median overshoot")
    ap.add_argument("--no-jit", action="store_true", help="the interpreter alone (RuntimeConfig(jit=False))")
    ap.add_argument("--long-natives", action="store_true", help="also one native call (a join over 10^7 items) that would outlast the deadline; natives poll the deadline every 4,096 items")
    ap.add_argument("--only", nargs="*", default=None, help="scenario names (the baseline always runs)")
    args = ap.parse_args()

    names = list(SOURCES) + list(HAND_IR) + (list(LONG_NATIVES) if args.long_natives else [])
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(names)}")
        names = [names[0]] + [n for n in names[1:] if n in args.only]

    console = Console()
    tier = "interpreted" if args.no_jit else "compiled"
    table = Table(title=f"overshoot past a {args.deadline:g} s deadline, ms ({tier} tier, "
                        f"{args.runs} runs each; target {args.target_ms:g} ms)")
    for column in ("scenario", "stopped by", "min", "median", "max", "vs target"):
        table.add_column(column, justify="left" if column in ("scenario", "stopped by") else "right")
    over: list[str] = []
    with tempfile.TemporaryDirectory() as d, FakeProvider() as fake:
        bench = Bench(args.deadline, not args.no_jit, Path(d), fake)
        for name in names:
            for how in ("timeout", "cancel"):
                label = "execution_timeout" if how == "timeout" else "cancel() (thread)"
                ms = [bench.overshoot(name, how) * 1000 for _ in range(args.runs)]
                median = statistics.median(ms)
                ok = median <= args.target_ms
                if not ok:
                    over.append(f"{name} / {label}")
                table.add_row(name, label, f"{min(ms):.0f}", f"{median:.0f}", f"{max(ms):.0f}",
                              "ok" if ok else "[bold red]OVER[/]")
                console.print(f"  {name:<24} {label:<18} {' '.join(f'{m:.0f}' for m in ms)} ms", style="dim")
            if name == names[0]:
                table.add_section()  # the baseline apart from the scenarios
    console.print(table)
    if over:
        console.print(f"median over {args.target_ms:g} ms: " + "; ".join(over), style="bold red")
        sys.exit(1)


if __name__ == "__main__":
    main()
