"""The Python host API (`from concerto import Runtime, RuntimeConfig`): loading,
subscriptions, emit ordering and value mapping, limits, cancellation, metrics."""

from __future__ import annotations

import json
import time

import anyio
import pytest

from concerto import LoadError, RunError, Runtime, RuntimeConfig
from concerto import ir
from concerto.compiler import compile_source


def runtime_for(tmp_path, source: str, config: RuntimeConfig | None = None, name: str = "main.conc") -> Runtime:
    path = tmp_path / name
    path.write_text(source)
    rt = Runtime(config)
    rt.load_source(path)
    return rt


def test_exact_and_pattern_handlers_see_json_payloads_in_order(tmp_path):
    rt = runtime_for(tmp_path, """
struct P { x: Int }
enum Shape { Dot, Circle(Float) }
fn main() {
    emit("a", 1);
    emit("job:start", P { x: 2 });
    emit("b", [Some(3), None]);
    emit("job:end", Ok("done"));
    emit("c", Shape::Circle(1.5));
    emit("heartbeat");
}
""")
    exact: list = []
    seen: list = []
    rt.on("a", exact.append)

    @rt.on("job:*")
    def jobs(channel, payload):
        seen.append((channel, payload))

    everything: list = []
    rt.on("*", lambda channel, payload: everything.append(channel))
    rt.run()
    assert exact == [1]
    assert seen == [("job:start", {"x": 2}), ("job:end", {"ok": "done"})]
    assert everything == ["a", "job:start", "b", "job:end", "c", "heartbeat"]
    assert rt.metrics()["emit_count"] == 6
    assert rt.list_channels() == ["a", "b", "c", "heartbeat", "job:end", "job:start"]


def test_async_fire_and_forget_handlers_are_delivered_in_order_before_the_run_ends(tmp_path):
    rt = runtime_for(tmp_path, 'fn main() { for i in 0..20 { emit("n", i); } }')
    got: list = []

    @rt.on("n")
    async def slow(payload):
        await anyio.sleep(0.001 * (payload % 3))
        got.append(payload)

    rt.run()
    assert got == list(range(20))


def test_main_result_is_returned_as_host_data(tmp_path):
    rt = runtime_for(tmp_path, 'struct R { ok: Bool, n: Int }\nfn main() -> R { R { ok: true, n: 3 } }')
    assert rt.run() == {"ok": True, "n": 3}


def test_execute_is_awaitable_and_many_runtimes_run_concurrently(tmp_path):
    (tmp_path / "p.conc").write_text('fn main() { std::time::sleep(50); emit("done", 1); }')
    runtimes = []
    for _ in range(20):
        rt = Runtime()
        rt.load_source(tmp_path / "p.conc")
        runtimes.append(rt)

    async def all_of_them() -> float:
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for rt in runtimes:
                tg.start_soon(rt.execute)
        return time.perf_counter() - started

    elapsed = anyio.run(all_of_them)
    # 20 sleeps of 50 ms overlap: far less than the 1 s they would take in turn.
    assert elapsed < 0.6
    assert all(rt.metrics()["emit_count"] == 1 for rt in runtimes)


def test_load_ir_accepts_a_path_bytes_and_a_dict(tmp_path):
    result = compile_source('fn main() { emit("x", 42); }', "m.conc")
    data = ir.encode(result.program)
    (tmp_path / "m.conc-ir").write_bytes(data)
    for source in (tmp_path / "m.conc-ir", str(tmp_path / "m.conc-ir"), data, json.loads(data)):
        rt = Runtime()
        rt.load_ir(source)
        got: list = []
        rt.on("x", got.append)
        rt.run()
        assert got == [42]


def test_load_errors_name_the_problem(tmp_path):
    rt = Runtime()
    with pytest.raises(LoadError, match="cannot read"):
        rt.load_ir(tmp_path / "missing.conc-ir")
    with pytest.raises(LoadError, match="invalid IR"):
        rt.load_ir(b"{not json")
    with pytest.raises(LoadError, match="invalid IR"):
        rt.load_ir({"version": "0.1.0"})
    (tmp_path / "bad.conc").write_text("fn main() { let x = ; }")
    with pytest.raises(LoadError) as info:
        rt.load_source(tmp_path / "bad.conc")
    assert info.value.diagnostics and "bad.conc:1:" in info.value.diagnostics[0]
    with pytest.raises(RuntimeError, match="load a program first"):
        rt.run()


def test_a_runtime_error_is_a_run_error_with_kind_and_location(tmp_path):
    rt = runtime_for(tmp_path, 'fn main() {\n    let xs = [1];\n    emit("x", xs[5]);\n}')
    with pytest.raises(RunError) as info:
        rt.run()
    assert info.value.kind == "IndexError"
    assert info.value.location is not None and info.value.location.line == 3


def test_a_second_run_starts_from_fresh_globals(tmp_path):
    rt = runtime_for(tmp_path, 'hashmap seen: HashMap<String, Int> = HashMap::new();\n'
                               'fn main() -> Int { seen.set("n", seen.get("n").unwrap_or(0) + 1); seen.get("n").unwrap_or(0) }')
    assert rt.run() == 1
    assert rt.run() == 1


def test_execution_timeout_stops_a_loop_that_never_awaits(tmp_path):
    for jit in (True, False):
        rt = runtime_for(tmp_path, 'fn main() { let mut i = 0; while true { i += 1; } }',
                         RuntimeConfig(execution_timeout=0.3, jit=jit))
        started = time.perf_counter()
        with pytest.raises(RunError) as info:
            rt.run()
        assert info.value.kind == "TimeoutError"
        assert "execution_timeout" in info.value.message
        assert time.perf_counter() - started < 2.0


def test_execution_timeout_stops_deep_recursion_without_loops(tmp_path):
    rt = runtime_for(tmp_path, 'fn fib(n: Int) -> Int { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }\n'
                               'fn main() { emit("x", fib(40)); }',
                     RuntimeConfig(execution_timeout=0.3))
    with pytest.raises(RunError) as info:
        rt.run()
    assert info.value.kind == "TimeoutError"


def test_cancel_from_a_handler_stops_the_run(tmp_path):
    rt = runtime_for(tmp_path, 'fn main() { let mut i = 0; loop { emit("tick", i); i += 1; std::time::sleep(1); } }')
    ticks: list = []

    @rt.on("tick")
    def tick(n):
        ticks.append(n)
        if n == 3:
            rt.cancel()

    with pytest.raises(RunError) as info:
        rt.run()
    assert info.value.kind == "CancelledError"
    assert ticks[:4] == [0, 1, 2, 3]
    assert len(ticks) <= 5


def test_cancel_from_another_task_while_the_program_sleeps(tmp_path):
    rt = runtime_for(tmp_path, 'fn main() { emit("start", 1); std::time::sleep(10000); emit("never", 1); }')
    seen: list = []
    rt.on("*", lambda channel, payload: seen.append(channel))

    async def scenario() -> float:
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            async def run() -> None:
                with pytest.raises(RunError):
                    await rt.execute()
            tg.start_soon(run)
            await anyio.sleep(0.1)
            rt.cancel()
        return time.perf_counter() - started

    assert anyio.run(scenario) < 2
    assert seen == ["start"]


def test_a_failing_fire_and_forget_handler_is_an_emit_error_the_program_catches(tmp_path):
    rt = runtime_for(tmp_path, """
fn main() {
    try {
        emit("boom", 1);
    } catch EmitError(e) {
        emit("caught", e.message);
    }
}
""")
    caught: list = []

    @rt.on("boom")
    def boom(payload):
        raise ValueError("disk full")

    rt.on("caught", caught.append)
    rt.run()
    assert caught == ["handler for `boom` raised ValueError: disk full"]


def test_buffered_mode_holds_emits_until_flush(tmp_path):
    rt = runtime_for(tmp_path, """
fn main() {
    emit("a", 1);
    emit("a", 2);
    emit("mark", 0);
    flush_emits();
    emit("a", 3);
}
""", RuntimeConfig(emit_mode="buffered"))
    order: list = []
    rt.on("*", lambda channel, payload: order.append((channel, payload)))
    rt.run()
    # Nothing is lost: what was still buffered is delivered when the run ends.
    assert order == [("a", 1), ("a", 2), ("mark", 0), ("a", 3)]


def test_a_host_slower_than_the_program_hits_max_emit_queue(tmp_path):
    rt = runtime_for(tmp_path, 'fn main() { for i in 0..100 { emit("n", i); } }',
                     RuntimeConfig(max_emit_queue=10))

    @rt.on("n")
    async def slow(payload):
        await anyio.sleep(0.01)

    with pytest.raises(RunError) as info:
        rt.run()
    assert info.value.kind == "EmitError"
    assert "max_emit_queue" in info.value.message


def test_max_call_depth_is_configurable(tmp_path):
    rt = runtime_for(tmp_path, 'fn down(n: Int) -> Int { if n == 0 { 0 } else { down(n - 1) + 1 } }\n'
                               'fn main() { emit("x", down(500)); }', RuntimeConfig(max_call_depth=100))
    with pytest.raises(RunError, match="call depth exceeded"):
        rt.run()


def test_std_log_goes_to_the_log_channel(tmp_path):
    rt = runtime_for(tmp_path, 'fn main() { std::log::info("hello"); }')
    got: list = []
    rt.on("log", got.append)
    rt.run()
    assert got == [{"level": "info", "message": "hello"}]


def test_metrics_after_a_run_without_models(tmp_path):
    rt = runtime_for(tmp_path, 'fn main() { emit("x", 1); }')
    rt.run()
    m = rt.metrics()
    assert m["models"] == {} and m["total"]["calls"] == 0
    assert m["emit_count"] == 1 and m["execution_time_ms"] >= 0


def test_handlers_can_be_registered_plainly_or_as_decorators_and_removed(tmp_path):
    rt = runtime_for(tmp_path, 'fn main() { emit("x", 1); }')
    got: list = []

    def handler(payload):
        got.append(payload)

    assert rt.on("x", handler) is handler
    rt.off("x")
    rt.run()
    assert got == []
    with pytest.raises(TypeError):
        rt.on("", got.append)


def test_the_example_host_runs():
    import subprocess
    import sys
    from pathlib import Path

    host = Path(__file__).parent.parent / "examples" / "host_app" / "host.py"
    proc = subprocess.run([sys.executable, str(host)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "result: decision: approved",
        "result: decision: needs changes",
        "result: decision: needs changes",
        "reviewed 3 documents; 9 stages completed",
        "emits: 30",
    ]
