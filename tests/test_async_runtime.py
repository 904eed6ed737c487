"""Async execution, emit-await, pipelines and decorators at run time, through the
host API and the CLI, against the loopback fake provider (issue 4)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import anyio
import pytest

from concerto import RunError, Runtime, RuntimeConfig
from tests.conftest import cli
from tests.fake_provider import FakeProvider, Slow, Text
from tests.test_models import KEYS, openai_conn, project


def load(tmp_path: Path, source: str, config: RuntimeConfig | None = None) -> Runtime:
    path = tmp_path / "main.conc"
    path.write_text(source)
    rt = Runtime(config)
    rt.load_source(path)
    return rt


def collect(rt: Runtime) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []
    rt.on("*", lambda channel, payload: seen.append((channel, payload)))
    return seen


def model_runtime(tmp_path: Path, fake: FakeProvider, source: str, **config) -> Runtime:
    main = project(tmp_path, source, openai_conn(fake))
    rt = Runtime(RuntimeConfig(environ=KEYS, **config))
    rt.load_source(main)
    return rt


MODELS = """
model Fast { provider: openai, base: "gpt-4o-mini" }
model Other { provider: openai, base: "gpt-4o" }
"""


# ------------------------------------------------------------------ emit-await
def test_await_emit_round_trip_sync_and_async_handlers(tmp_path):
    rt = load(tmp_path, """
struct Ask { q: String }
fn main() {
    emit("before", 1);
    let a = await emit("approval:request", Ask { q: "ok?" });
    let b = await emit("math", 20);
    let c = await emit("anything", "x");
    emit("got", [a, b, c]);
}
""")
    seen = collect(rt)

    @rt.on_emit("approval:*")
    async def approve(channel, payload):
        await anyio.sleep(0.01)
        return {"approved": payload["q"] == "ok?", "by": channel}

    rt.on_emit("math", lambda n: n + 22)
    rt.on_emit("*", lambda channel, payload: "fallback")
    rt.run()
    assert ("got", [{"approved": True, "by": "approval:request"}, 42, "fallback"]) in seen
    # The fire-and-forget emit before the question reached the host first.
    assert seen[0] == ("before", 1)


def test_await_emit_maps_host_results_back_to_concerto_values(tmp_path):
    rt = load(tmp_path, """
fn main() {
    match await emit("check", 1) {
        Ok(v) => emit("ok", v),
        Err(e) => emit("err", e),
    }
}
""")
    seen = collect(rt)
    rt.on_emit("check", lambda payload: {"ok": [1, 2]})
    rt.run()
    assert ("ok", [1, 2]) in seen


def test_await_emit_without_a_listener_is_a_catchable_emit_error(tmp_path):
    rt = load(tmp_path, """
fn main() {
    try {
        let x = await emit("nobody", 1);
        emit("answer", x);
    } catch EmitError(e) {
        emit("caught", { "message": e.message, "channel": e.channel });
    }
    let y = await emit("nobody:else", 2);
}
""")
    seen = collect(rt)
    with pytest.raises(RunError) as info:
        rt.run()
    assert ("caught", {"message": "no listener for awaited channel `nobody`", "channel": "nobody"}) in seen
    assert info.value.kind == "EmitError" and "nobody:else" in info.value.message


def test_a_handler_exception_reaches_the_program_as_an_emit_error(tmp_path):
    rt = load(tmp_path, """
fn main() {
    try { await emit("tool:read", "/x"); } catch EmitError(e) { emit("caught", e.message); }
}
""")
    seen = collect(rt)

    @rt.on_emit("tool:read")
    async def read(path):
        raise FileNotFoundError(path)

    rt.run()
    assert ("caught", "handler for `tool:read` raised FileNotFoundError: /x") in seen


def test_emit_timeout_on_an_unanswered_await(tmp_path):
    rt = load(tmp_path, 'fn main() { await emit("slow", 1); }', RuntimeConfig(emit_timeout=0.1))

    @rt.on_emit("slow")
    async def slow(payload):
        await anyio.sleep(5)

    started = time.perf_counter()
    with pytest.raises(RunError, match="no answer on `slow` within 0.1 s"):
        rt.run()
    assert time.perf_counter() - started < 2


# ------------------------------------------------------------------ async forms
def test_async_fn_is_eager_and_await_of_a_plain_value_is_the_value(tmp_path):
    rt = load(tmp_path, """
async fn plus_one(x: Int) -> Int { emit("ran", x); x + 1 }
async fn main() {
    let first = plus_one(1).await;
    let second = await plus_one(2);
    let later = plus_one(10);
    emit("between", 0);
    let combined = await (first, second, 5);
    emit("total", combined.0 + combined.1 + combined.2 + later);
}
""")
    seen = collect(rt)
    rt.run()
    assert seen == [("ran", 1), ("ran", 2), ("ran", 10), ("between", 0), ("total", 2 + 3 + 5 + 11)]


def test_parallel_await_overlaps_model_calls_on_the_fake_server(tmp_path, fake):
    fake.script(Slow(0.3, Text("a")), Slow(0.3, Text("b")), Slow(0.3, Text("c")))
    rt = model_runtime(tmp_path, fake, MODELS + """
fn main() {
    let (a, b, c) = await (Fast.execute("1"), Other.execute("2"), Fast.execute("3"));
    emit("texts", [a.unwrap().text, b.unwrap().text, c.unwrap().text]);
}
""")
    seen = collect(rt)
    started = time.perf_counter()
    rt.run()
    elapsed = time.perf_counter() - started
    assert sorted(seen[0][1]) == ["a", "b", "c"]
    assert fake.max_in_flight == 3
    assert elapsed < 0.8  # three 0.3 s calls in turn would take 0.9 s


def test_a_fault_in_parallel_await_cancels_the_siblings(tmp_path):
    rt = load(tmp_path, """
fn slow() -> Int { std::time::sleep(5000); emit("slow finished", 1); 1 }
fn bad() -> Int { let xs = [1]; xs[3] }
fn main() {
    try {
        let pair = await (slow(), bad());
    } catch IndexError(e) {
        emit("caught", e.message);
    }
}
""")
    seen = collect(rt)
    started = time.perf_counter()
    rt.run()
    assert time.perf_counter() - started < 2
    assert [c for c, _ in seen] == ["caught"]


def test_race_returns_the_first_and_cancels_the_rest_on_the_server(tmp_path, fake):
    fake.script(Slow(3.0, Text("slow")), Slow(0.05, Text("fast")))
    rt = model_runtime(tmp_path, fake, MODELS + """
fn main() {
    let winner = race (Other.execute("slow one"), Fast.execute("fast one"));
    emit("winner", winner.unwrap().text);
}
""")
    seen = collect(rt)
    started = time.perf_counter()
    rt.run()
    assert seen == [("winner", "fast")]
    assert time.perf_counter() - started < 2
    # The loser's request was cut off: the server saw its client hang up.
    deadline = time.monotonic() + 2
    while fake.hangups < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.hangups == 1


def test_parallel_for_keeps_order_and_bounds_concurrency(tmp_path):
    rt = load(tmp_path, """
fn main() {
    let xs = [5, 1, 4, 2, 3];
    let out = parallel for x in xs {
        std::time::sleep(x * 20);
        x * 10
    };
    emit("out", out);
}
""", RuntimeConfig(max_parallel=2))
    seen = collect(rt)
    started = time.perf_counter()
    rt.run()
    elapsed = time.perf_counter() - started
    assert seen == [("out", [50, 10, 40, 20, 30])]
    # Two at a time: at least the longest chain (5 + 2 + ... in slots), more than all at once (0.1 s).
    assert elapsed > 0.15


def test_parallel_for_model_calls_overlap_and_respect_connection_limits(tmp_path, fake):
    fake.script(*[Slow(0.2, Text(f"r{i}")) for i in range(6)])
    main = project(tmp_path, MODELS + """
fn main() {
    let out = parallel for i in 0..6 { Fast.execute("q ${i}").is_ok() };
    emit("out", out);
}
""", openai_conn(fake, extra="[connections.openai.rate_limit]\nconcurrent_requests = 3\n"))
    rt = Runtime(RuntimeConfig(environ=KEYS))
    rt.load_source(main)
    seen = collect(rt)
    started = time.perf_counter()
    rt.run()
    assert seen == [("out", [True] * 6)]
    assert fake.max_in_flight == 3
    assert time.perf_counter() - started < 1.0  # 6 x 0.2 s in turn would be 1.2 s


def test_max_concurrent_model_calls_caps_the_whole_run(tmp_path, fake):
    fake.script(*[Slow(0.1, Text("x")) for _ in range(4)])
    rt = model_runtime(tmp_path, fake, MODELS + """
fn main() { let out = parallel for i in 0..4 { Fast.execute("q").is_ok() }; emit("n", out.len()); }
""", max_concurrent_model_calls=1)
    rt.run()
    assert fake.max_in_flight == 1


def test_spawned_tasks_are_awaited_and_owned_by_the_run(tmp_path):
    rt = load(tmp_path, """
fn work(n: Int) -> Int { std::time::sleep(30); n * 2 }
fn main() {
    let a = spawn(|| work(1));
    let b = spawn(|| work(2));
    spawn(|| { std::time::sleep(50); emit("background", "done"); });
    emit("sum", a.await + await b);
}
""")
    seen = collect(rt)
    rt.run()
    # The unawaited task still finished before the run ended.
    assert seen == [("sum", 6), ("background", "done")]


def test_a_failed_spawned_task_nobody_awaited_fails_the_run(tmp_path):
    rt = load(tmp_path, 'fn main() { spawn(|| { let xs = [1]; xs[9] }); }')
    with pytest.raises(RunError) as info:
        rt.run()
    assert info.value.kind == "IndexError"


# ------------------------------------------------------------------ cancellation
def test_timeout_and_cancel_leave_no_task_or_request_running(tmp_path, fake):
    fake.script(*[Slow(5.0, Text("late")) for _ in range(3)])
    rt = model_runtime(tmp_path, fake, MODELS + """
fn main() {
    spawn(|| Fast.execute("background"));
    let all = await (Fast.execute("a"), Other.execute("b"));
}
""", execution_timeout=0.3)

    async def scenario() -> int:
        before = len(asyncio.all_tasks())
        with pytest.raises(RunError) as info:
            await rt.execute()
        assert info.value.kind == "TimeoutError"
        await anyio.sleep(0.05)
        return len(asyncio.all_tasks()) - before

    started = time.perf_counter()
    assert anyio.run(scenario) == 0
    assert time.perf_counter() - started < 2
    deadline = time.monotonic() + 2
    while fake.hangups < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.hangups == 3  # every pending request was cut off


# ------------------------------------------------------------------ pipelines
PIPELINE = """
pipeline Doc(input: String) -> Int {
    stage clean(text: String) -> String { text.trim() }
    stage measure(text: String) -> Result<Int, String> {
        if text.len() == 0 { Err("empty document") } else { Ok(text.len()) }
    }
    stage double(n: Int) -> Int { n * 2 }
}
fn main() {
    match Doc.run("  hello  ") {
        Ok(n) => emit("result", n),
        Err(e) => emit("failed", e.message),
    }
    match Doc.run("   ") {
        Ok(n) => emit("result", n),
        Err(e) => emit("failed", { "message": e.message, "stage": e.stage, "pipeline": e.pipeline }),
    }
}
"""


def test_pipeline_runs_stages_with_lifecycle_emits(tmp_path):
    rt = load(tmp_path, PIPELINE)
    seen = collect(rt)
    rt.run()
    first = [c for c, _ in seen[: seen.index(("result", 10)) + 1]]
    assert first == ["pipeline:start", "pipeline:stage_start", "pipeline:stage_complete",
                     "pipeline:stage_start", "pipeline:stage_complete", "pipeline:stage_start",
                     "pipeline:stage_complete", "pipeline:complete", "result"]
    assert seen[0][1] == {"name": "Doc", "input": "  hello  "}
    assert seen[2][1]["stage"] == "clean" and seen[2][1]["duration_ms"] >= 0


def test_stage_failure_is_an_err_naming_the_stage(tmp_path):
    rt = load(tmp_path, PIPELINE)
    seen = collect(rt)
    rt.run()
    assert ("pipeline:error", {"name": "Doc", "stage": "measure", "error": "empty document"}) in seen
    assert ("failed", {"message": "pipeline `Doc` failed in stage `measure`: empty document",
                       "stage": "measure", "pipeline": "Doc"}) in seen


def test_stage_timeout_decorator_is_a_real_deadline(tmp_path):
    rt = load(tmp_path, """
pipeline P {
    @timeout(seconds: 0.1)
    stage wait(x: Int) -> Int { std::time::sleep(5000); x }
}
fn main() {
    match P.run(1) { Ok(v) => emit("ok", v), Err(e) => emit("err", e.stage) }
}
""")
    seen = collect(rt)
    started = time.perf_counter()
    rt.run()
    assert ("err", "wait") in seen
    assert time.perf_counter() - started < 2


# ------------------------------------------------------------------ decorators
def test_function_decorators_retry_timeout_cache_log(tmp_path):
    rt = load(tmp_path, """
hashmap calls: HashMap<String, Int> = HashMap::new();
fn bump(k: String) -> Int { let n = calls.get(k).unwrap_or(0) + 1; calls.set(k, n); n }

@retry(max: 3, backoff: "none", delay_ms: 1)
fn flaky() -> Result<Int, String> {
    let n = bump("flaky");
    if n < 3 { Err("try again") } else { Ok(n) }
}

@timeout(seconds: 0.1)
fn stuck() -> Int { std::time::sleep(5000); 1 }

@cache
fn square(x: Int) -> Int { bump("square"); x * x }

@log(channel: "trace")
fn add(a: Int, b: Int) -> Int { a + b }

fn main() {
    emit("flaky", flaky());
    try { stuck(); } catch TimeoutError(e) { emit("timeout", e.message); }
    emit("squares", [square(3), square(3), square(4)]);
    emit("square calls", calls.get("square").unwrap_or(0));
    emit("sum", add(1, 2));
}
""")
    seen = collect(rt)
    started = time.perf_counter()
    rt.run()
    assert time.perf_counter() - started < 2
    got = dict(seen)
    assert got["flaky"] == {"ok": 3}
    assert got["timeout"] == "`stuck` timed out after 0.1 s"
    assert got["squares"] == [9, 9, 16]
    assert got["square calls"] == 2
    assert got["trace"]["call"] == "`add`" and got["trace"]["args"] == [1, 2] and got["trace"]["result"] == 3
    assert got["sum"] == 3


def test_model_cache_and_log_decorators(tmp_path, fake):
    fake.script(Text("first"), Text("second"))
    rt = model_runtime(tmp_path, fake, """
@cache
@log
model Cached { provider: openai, base: "gpt-4o-mini" }
fn main() {
    let a = Cached.execute("same").unwrap();
    let b = Cached.execute("same").unwrap();
    emit("texts", [a.text, b.text]);
}
""")
    seen = collect(rt)
    rt.run()
    assert ("texts", ["first", "first"]) in seen
    assert fake.request_count == 1
    logs = [p for c, p in seen if c == "model:log"]
    assert len(logs) == 1 and logs[0]["call"] == "model `Cached`"


# ------------------------------------------------------------------ CLI host
ASKING = """
fn main() {
    let a = await emit("approval:request", { "task": "deploy" });
    let b = await emit("name", nil);
    let c = await emit("name", nil);
    emit("answers", [a, b, c]);
}
"""


def test_cli_answers_awaited_emits_from_a_file(tmp_path):
    src = tmp_path / "ask.conc"
    src.write_text(ASKING)
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps([
        {"channel": "approval:*", "answer": "approved"},
        {"channel": "name", "answer": "Ada"},
        {"channel": "name", "answer": "Grace"},
    ]))
    code, out, err = cli("run", str(src), "--emit-format", "jsonl", "--answers", str(answers))
    assert code == 0, err
    assert json.loads(out.splitlines()[-1]) == {"channel": "answers", "payload": ["approved", "Ada", "Grace"]}


def test_cli_answers_object_form_and_a_missing_answer_names_the_channel(tmp_path):
    src = tmp_path / "ask.conc"
    src.write_text(ASKING)
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"approval:request": "yes"}))
    code, out, err = cli("run", str(src), "--answers", str(answers))
    assert code == 1
    assert "EmitError" in err and "has no answer for channel `name`" in err
    assert "Traceback" not in err


def test_cli_without_answers_and_without_a_terminal_names_the_channel(tmp_path):
    src = tmp_path / "ask.conc"
    src.write_text(ASKING)
    code, out, err = cli("run", str(src))
    assert code == 1
    assert "ask.conc:3:" in err and "no listener for awaited channel `approval:request`" in err


def test_cli_rejects_a_malformed_answers_file(tmp_path):
    src = tmp_path / "ask.conc"
    src.write_text(ASKING)
    bad = tmp_path / "answers.json"
    bad.write_text("{oops")
    code, out, err = cli("run", str(src), "--answers", str(bad))
    assert code == 1 and "answers.json:1:2: invalid JSON" in err and "Traceback" not in err


def test_cli_timeout_flag(tmp_path):
    src = tmp_path / "loop.conc"
    src.write_text("fn main() { loop { } }")
    code, out, err = cli("run", str(src), "--timeout", "0.2")
    assert code == 1 and "TimeoutError" in err and "execution timed out after 0.2 s" in err


# ------------------------------------------------------------------ streaming (issue 3, point 3)
def test_stream_chunks_reach_the_host_before_the_stream_ends(tmp_path, fake):
    fake.script(Text("one two three four", chunk_delay=0.15))
    rt = model_runtime(tmp_path, fake, """
model Writer { provider: openai, base: "gpt-4o-mini" }
fn main() {
    match Writer.stream("go") {
        Ok(s) => { for chunk in s { emit("chunk", chunk.text); } emit("done", 1); },
        Err(e) => emit("error", e.message),
    }
}
""")
    arrivals: list[tuple[str, float]] = []
    rt.on("*", lambda channel, payload: arrivals.append((channel, time.monotonic())))
    rt.run()
    chunks = [t for c, t in arrivals if c == "chunk"]
    done = next(t for c, t in arrivals if c == "done")
    assert len(chunks) >= 3
    # The first chunk was emitted while the server was still sending the rest.
    assert done - chunks[0] >= 0.15 * (len(chunks) - 1) * 0.8
    assert all(b - a >= 0.05 for a, b in zip(chunks, chunks[1:]))


# ------------------------------------------------------------------ host config
def test_host_metrics_report_model_calls_like_the_cli_table(tmp_path, fake):
    fake.script(Text("a b"), Text("c"))
    rt = model_runtime(tmp_path, fake, MODELS + """
fn main() { let x = Fast.execute("one"); let y = Other.execute("two three"); }
""")
    rt.run()
    m = rt.metrics()
    assert m["models"]["Fast"]["calls"] == 1 and m["models"]["Other"]["calls"] == 1
    assert m["connections"]["openai"]["requests"] == 2
    assert m["total"]["tokens_out"] == 3 and m["total"]["cost_usd"] > 0


def test_connection_overrides_point_a_connection_elsewhere(tmp_path, fake):
    from concerto import ConnectionOverride

    main = project(tmp_path, MODELS + 'fn main() { emit("text", Fast.execute("hi").unwrap().text); }',
                   '[connections.openai]\nprovider = "openai"\napi_key_env = "NOT_SET_ANYWHERE"\n'
                   'base_url = "http://127.0.0.1:9/v1"\ndefault_model = "gpt-4o-mini"\n')
    fake.script(Text("from the override"))
    rt = Runtime(RuntimeConfig(environ={}, connection_overrides={
        "openai": ConnectionOverride(api_key="sk-override", base_url=fake.openai_base_url)}))
    rt.load_source(main)
    seen = collect(rt)
    rt.run()
    assert seen == [("text", "from the override")]
    assert fake.requests[0].headers["authorization"] == "Bearer sk-override"


def test_buffered_mode_flushes_at_the_interval_while_the_program_sleeps(tmp_path):
    rt = load(tmp_path, 'fn main() { emit("a", 1); std::time::sleep(300); emit("b", 2); }',
              RuntimeConfig(emit_mode="buffered", flush_interval=0.05))
    times: dict[str, float] = {}
    rt.on("*", lambda channel, payload: times.setdefault(channel, time.monotonic()))
    rt.run()
    # "a" reached the host by the interval, well before the program emitted "b".
    assert times["b"] - times["a"] > 0.15


def test_cli_on_a_terminal_asks_the_person(tmp_path):
    import os
    import pty
    import subprocess
    import sys

    src = tmp_path / "ask.conc"
    src.write_text('fn main() { let n = await emit("name", "who?"); emit("hello", n); }')
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "concerto", "run", "--emit-format", "jsonl", str(src)],
                                stdin=slave, stderr=slave, stdout=subprocess.PIPE,
                                env={**os.environ, "NO_COLOR": "1"})
        os.write(master, b"Ada\n")  # typed ahead: the prompt's readline takes it
        out, _ = proc.communicate(timeout=60)
        prompt = os.read(master, 4096).decode()
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0
    assert '? name "who?"' in prompt
    assert json.loads(out.decode().splitlines()[-1]) == {"channel": "hello", "payload": "Ada"}
