"""Deadlines hold under load (issue 11, point 3).

`execution_timeout`, `Runtime.cancel()` and `concerto run --timeout` end a run
soon after the deadline whatever the program does (busy spawned tasks, a huge
`parallel for`, loops, recursion, callbacks from natives, slow emit handlers,
pending awaits, hand-written IR whose loops no compiler would write), and
every task of the run ends with it.

The bound asserted here is generous (OVERSHOOT_BOUND) because the CI machine
is shared; the issue's 100 ms target is measured by bench/deadlines.py.
"""

from __future__ import annotations

import _thread
import asyncio
import contextvars
import gc
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from concerto import RunError, Runtime, RuntimeConfig, ir
from concerto.vm.executor import VMGreenlet
from concerto.vm.interrupts import CLOCK
from tests.conftest import MODEL_KEYS, cli, model_connections, model_project
from tests.fake_provider import Slow, Text

DEADLINE = 0.3  # seconds: execution_timeout, and when cancel() is called
OVERSHOOT_BOUND = 0.5  # seconds past the deadline a run may take to end here
HANG_LIMIT = 60  # seconds: a run still going after this is never going to stop
TIERS = pytest.mark.parametrize("jit", [True, False], ids=["compiled", "interpreted"])


# ------------------------------------------------------------------ programs
# Programs that never end on their own. Busy ones emit "beat" (payload: which
# task) now and then, so a test can see which tasks still computed after the
# run was told to stop.
SPAWN_BUSY = """
fn busy(k: Int) -> Int {
    let mut i = 0;
    loop {
        i += 1;
        if i % 2000 == 0 { emit("beat", k); }
    }
    i
}
fn main() {
    let mut tasks = [];
    for k in 0..1000 { tasks.push(spawn(|| busy(k))); }
    emit("started", tasks.len());
    for t in tasks { t.await; }
    emit("finished", 1);
}
"""

PFOR_MILLION = """
fn main() {
    let xs = (0..1000000).to_array();
    let ys = parallel for x in xs {
        if x % 2000 == 0 { emit("beat", x); }
        let mut s = 0;
        for j in 0..10 { s += x * j; }
        s
    };
    emit("finished", ys.len());
}
"""

PFOR_FOREVER = """
fn spin(k: Int) -> Int {
    let mut i = 0;
    loop {
        i += 1;
        if i % 2000 == 0 { emit("beat", k); }
    }
    i
}
fn main() {
    let ys = parallel for k in [1, 2, 3, 4, 5, 6, 7, 8] { spin(k) };
    emit("finished", ys.len());
}
"""

AWAIT_TUPLE_BUSY = """
fn spin(k: Int) -> Int {
    let mut i = 0;
    loop {
        i += 1;
        if i % 2000 == 0 { emit("beat", k); }
    }
    i
}
fn main() {
    let both = await (spin(1), spin(2), spin(3));
    emit("finished", 1);
}
"""

RACE_BUSY = """
fn spin(k: Int) -> Int {
    let mut i = 0;
    loop {
        i += 1;
        if i % 2000 == 0 { emit("beat", k); }
    }
    i
}
fn main() {
    let first = race (spin(1), spin(2), spin(3));
    emit("finished", first);
}
"""

# main returns at once; the run then waits for tasks nobody awaits.
SPAWNED_OUTLIVE_MAIN = """
fn spin(k: Int) -> Int {
    let mut i = 0;
    loop {
        i += 1;
        if i % 2000 == 0 { emit("beat", k); }
    }
    i
}
fn main() {
    spawn(|| spin(1));
    spawn(|| spin(2));
    emit("main_returns", 1);
}
"""

LOOP_MAIN = """
fn main() {
    let mut i = 0;
    loop { i += 1; }
}
"""

# A program that catches every fault must not be able to catch the stop.
CATCH_ALL_LOOP = """
fn main() {
    loop {
        try {
            let mut i = 0;
            loop { i += 1; }
        } catch {
            emit("caught", 1);
        }
    }
}
"""

# No loop at all: 2,000 calls deep (well within max_call_depth), 2^2000 calls wide.
RECURSION = """
fn spread(depth: Int) -> Int {
    if depth >= 2000 { 0 } else { spread(depth + 1) + spread(depth + 1) }
}
fn main() { emit("finished", spread(0)); }
"""

# Calls through a function value and through a method, in the interpreter
# (CALL_VALUE, CALL_METHOD) as well as compiled, with no loop anywhere.
RECURSION_THROUGH_A_VALUE = """
fn spread(depth: Int) -> Int {
    let again = spread;
    if depth >= 2000 { 0 } else { again(depth + 1) + again(depth + 1) }
}
fn main() { emit("finished", spread(0)); }
"""

RECURSION_THROUGH_A_METHOD = """
struct Walker { limit: Int }
impl Walker {
    fn spread(self, depth: Int) -> Int {
        let again = |w, d| w.spread(d);  // an untyped receiver: CALL_METHOD
        if depth >= self.limit { 0 } else { again(self, depth + 1) + again(self, depth + 1) }
    }
}
fn main() { let w = Walker { limit: 2000 }; emit("finished", w.spread(0)); }
"""

NATIVE_MAP_FOREVER = """
fn main() {
    let xs = [1, 2, 3];
    let ys = xs.map(|x| {
        let mut i = x;
        loop { i += 1; }
        i
    });
    emit("finished", ys);
}
"""

# A native (sort_by) calling back, 100,000 times, a key function that has no
# loop: only the checks at calls can see the deadline.
NATIVE_SORT_BY = """
fn slow(n: Int) -> Int { if n < 2 { n } else { slow(n - 1) + slow(n - 2) } }
fn main() {
    let xs = (0..100000).to_array();
    let ys = xs.sort_by(|x| slow(14 + x % 3));
    emit("finished", ys.len());
}
"""

EMIT_LOOP = """
fn main() {
    let mut i = 0;
    loop { emit("tick", i); i += 1; }
}
"""

ASK_LOOP = """
fn main() {
    let mut i = 0;
    loop { let r = await emit("ask", i); i += r; }
}
"""

ASK_ONCE = """
fn main() {
    emit("started", 1);
    let r = await emit("ask", 1);
    emit("finished", r);
}
"""

SLEEP = """
fn main() {
    emit("started", 1);
    std::time::sleep(600000);
    emit("finished", 1);
}
"""


# ------------------------------------------------------------------ running one
@dataclass
class Probe:
    """What the host saw of a run: beats with their instants, every channel."""

    beats: list[tuple[float, Any]] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    cancelled_at: list[float] = field(default_factory=list)
    first_emit: list[float] = field(default_factory=list)


@dataclass
class Outcome:
    error: RunError | None
    # Monotonic instants. With cancel() both are the moment it was called. With
    # execution_timeout the run's own deadline is not visible from outside:
    # stop_at (execute() began + timeout) is at or before it, so overshoot errs
    # long; quiet_after (first emit + timeout) is at or after it, so counts of
    # work done "after the stop" err short.
    stop_at: float
    quiet_after: float
    ended: float  # monotonic: when execute() returned or raised
    leftover_tasks: int  # asyncio tasks of the run still not done after execute()
    live_greenlets: int  # VM greenlets (Concerto tasks) not finished after execute()
    probe: Probe

    @property
    def overshoot(self) -> float:
        return self.ended - self.stop_at

    def tasks_beating_after_stop(self) -> set[Any]:
        return {who for at, who in self.probe.beats if at > self.quiet_after}

    def count_after_stop(self, instants: list[float]) -> int:
        return sum(1 for at in instants if at > self.quiet_after)


def _live_vm_greenlets() -> int:
    # No gc.collect() first: a Concerto task left suspended in an unreachable
    # cycle would be counted too, as it should.
    return sum(1 for o in gc.get_objects() if isinstance(o, VMGreenlet) and not o.dead)


def _runtime(tmp_path: Path, source: str, jit: bool = True, **config: Any) -> Runtime:
    path = tmp_path / "main.conc"
    path.write_text(textwrap.dedent(source))
    rt = Runtime(RuntimeConfig(jit=jit, **config))
    rt.load_source(path)
    return rt


def _listen(rt: Runtime, probe: Probe) -> None:
    rt.on("*", lambda channel, payload: probe.channels.append(channel))
    rt.on("beat", lambda who: probe.beats.append((time.monotonic(), who)))


class _HangGuard:
    """A regression that makes a run unstoppable would hang the whole suite,
    since nothing else stops VM code that never yields. After HANG_LIMIT this
    interrupts the main thread (again every half second: asyncio's runner
    turns the first SIGINT into a cancellation the stuck loop never sees), so
    the test fails instead."""

    def __enter__(self) -> "_HangGuard":
        self.done = threading.Event()
        self.fired = False
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        if self.done.wait(HANG_LIMIT):
            return
        self.fired = True
        while not self.done.wait(0.5):
            _thread.interrupt_main()

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self.done.set()
        self.thread.join()
        if self.fired:
            pytest.fail(f"the run was still going {HANG_LIMIT} s after it began; interrupted", pytrace=False)


def stop_run(rt: Runtime, how: str, probe: Probe | None = None) -> Outcome:
    """Run rt until it is stopped `how`: "timeout" (the runtime was made with
    execution_timeout=DEADLINE), "cancel" (cancel() from another thread at
    DEADLINE) or "handler" (a handler the test installed calls cancel() and
    records the instant in probe.cancelled_at)."""
    probe = probe if probe is not None else Probe()
    rt.on("*", lambda _channel, _payload: probe.first_emit or probe.first_emit.append(time.monotonic()))
    gc.collect()
    greenlets_before = _live_vm_greenlets()

    timer: threading.Timer | None = None
    if how == "cancel":
        def fire() -> None:
            probe.cancelled_at.append(time.monotonic())
            rt.cancel()
        timer = threading.Timer(DEADLINE, fire)
        timer.daemon = True

    async def scenario() -> Outcome:
        me = asyncio.current_task()
        started = time.monotonic()
        if timer is not None:
            timer.start()
        error = None
        try:
            await rt.execute()
        except RunError as e:
            error = e
        ended = time.monotonic()
        leftover = sum(1 for t in asyncio.all_tasks() if t is not me and not t.done())
        if how == "timeout":
            stop_at = started + DEADLINE
            quiet_after = (probe.first_emit[0] + DEADLINE) if probe.first_emit else stop_at
        else:
            stop_at = quiet_after = (probe.cancelled_at or [ended])[0]
        return Outcome(error, stop_at, quiet_after, ended, leftover,
                       _live_vm_greenlets() - greenlets_before, probe)

    try:
        with _HangGuard():
            return anyio.run(scenario)
    finally:
        if timer is not None:
            timer.cancel()
            timer.join(5)


def assert_stopped(out: Outcome, how: str) -> None:
    """The run ended by the deadline or the cancel, soon, and took every task with it."""
    assert out.error is not None, "the run ended on its own"
    want = "TimeoutError" if how == "timeout" else "CancelledError"
    assert out.error.kind == want, out.error
    assert out.overshoot < OVERSHOOT_BOUND, f"ended {out.overshoot:.3f} s after the deadline"
    assert out.leftover_tasks == 0
    assert out.live_greenlets == 0
    assert "finished" not in out.probe.channels
    assert CLOCK.active() == 0  # the run no longer asks for interrupts


def handler_cancels_after(rt: Runtime, channel: str, probe: Probe, delay: float = DEADLINE) -> None:
    """A synchronous `channel` handler (called from VM code) that cancels the
    run from inside itself once `delay` has passed since the first call."""
    first: list[float] = []

    def handler(_payload: Any) -> None:
        now = time.monotonic()
        if not first:
            first.append(now)
        if now - first[0] >= delay and not probe.cancelled_at:
            probe.cancelled_at.append(now)
            rt.cancel()

    rt.on(channel, handler)


# ------------------------------------------------------------------ busy programs
BUSY = {
    "spawn_1000_busy": SPAWN_BUSY,
    "parallel_for_1e6": PFOR_MILLION,
    "parallel_for_forever": PFOR_FOREVER,
    "await_tuple_busy": AWAIT_TUPLE_BUSY,
    "race_busy": RACE_BUSY,
    "spawned_outlive_main": SPAWNED_OUTLIVE_MAIN,
    "loop_in_main": LOOP_MAIN,
    "catch_all_loop": CATCH_ALL_LOOP,
    "recursion": RECURSION,
    "recursion_through_a_value": RECURSION_THROUGH_A_VALUE,
    "recursion_through_a_method": RECURSION_THROUGH_A_METHOD,
    "map_callback_forever": NATIVE_MAP_FOREVER,
    "sort_by_slow_key": NATIVE_SORT_BY,
}


# Each tier tests the interrupt flag in its own places, which the timeout runs
# exercise; cancel() raises the same flag itself, so one tier is enough for it.
@pytest.mark.parametrize("how,jit", [("timeout", True), ("timeout", False), ("cancel", True)],
                         ids=["timeout-compiled", "timeout-interpreted", "cancel-compiled"])
@pytest.mark.parametrize("name", list(BUSY))
def test_busy_program_stops_at_the_deadline(tmp_path, name, how, jit):
    config = {"execution_timeout": DEADLINE} if how == "timeout" else {}
    rt = _runtime(tmp_path, BUSY[name], jit=jit, **config)
    probe = Probe()
    _listen(rt, probe)
    out = stop_run(rt, how, probe)
    assert_stopped(out, how)
    if name != "parallel_for_1e6":  # (its beats name items, not tasks)
        # Once the stop is seen no task computes another slice: at most the
        # one running at that instant reaches its next checkpoint.
        after = out.tasks_beating_after_stop()
        assert len(after) <= 1, after
    if name == "spawn_1000_busy":
        assert len({who for _, who in probe.beats}) >= 2  # the tasks really took turns
    if name == "catch_all_loop":
        assert "caught" not in probe.channels


@TIERS
@pytest.mark.parametrize("name", ["spawn_1000_busy", "parallel_for_forever", "parallel_for_1e6"])
def test_cancel_from_a_handler_inside_a_busy_task(tmp_path, name, jit):
    rt = _runtime(tmp_path, BUSY[name], jit=jit)
    probe = Probe()
    _listen(rt, probe)
    handler_cancels_after(rt, "beat", probe)
    out = stop_run(rt, "handler", probe)
    assert probe.cancelled_at, "no beat reached the handler"
    assert_stopped(out, "handler")
    if name != "parallel_for_1e6":
        assert len(out.tasks_beating_after_stop()) <= 1


def test_cancel_from_another_thread_does_not_wait_for_the_event_loop(tmp_path):
    # cancel() once waited for the event loop to run scope.cancel: a loop
    # thread waiting for the cancelling thread (here a handler; as well a lock
    # the canceller holds, or joining a watchdog) deadlocked.
    rt = _runtime(tmp_path, EMIT_LOOP)
    returned: list[bool] = []

    with ThreadPoolExecutor(1) as pool:
        def on_tick(i: int) -> None:
            if i == 100:  # hand cancel() to another thread and wait for it, on the loop's thread
                try:
                    pool.submit(rt.cancel).result(timeout=0.5)
                    returned.append(True)
                except FutureTimeout:
                    returned.append(False)

        rt.on("tick", on_tick)
        with pytest.raises(RunError) as info:
            rt.run()
    assert info.value.kind == "CancelledError"
    assert returned == [True]


# ------------------------------------------------------------------ slow handlers, awaits
@TIERS
@pytest.mark.parametrize("how", ["timeout", "cancel", "handler"])
def test_a_slow_synchronous_handler_on_a_tight_emit_loop(tmp_path, how, jit):
    # 5 ms per emit: a clock read every 4,096 iterations turned 1 s into 43 s.
    config = {"execution_timeout": DEADLINE} if how == "timeout" else {}
    rt = _runtime(tmp_path, EMIT_LOOP, jit=jit, **config)
    probe = Probe()
    ticks: list[float] = []

    def slow(_n: int) -> None:
        ticks.append(time.monotonic())
        time.sleep(0.005)

    rt.on("tick", slow)
    if how == "handler":
        handler_cancels_after(rt, "tick", probe)
    out = stop_run(rt, how, probe)
    assert_stopped(out, how)
    assert ticks
    # The stop is seen at the emit right after it, not thousands of emits later.
    assert out.count_after_stop(ticks) <= 2


@TIERS
@pytest.mark.parametrize("how", ["timeout", "cancel", "handler"])
def test_an_async_handler_answering_every_iteration(tmp_path, how, jit):
    config = {"execution_timeout": DEADLINE} if how == "timeout" else {}
    rt = _runtime(tmp_path, ASK_LOOP, jit=jit, **config)
    probe = Probe()
    answered: list[float] = []
    first: list[float] = []

    @rt.on_emit("ask")
    async def answer(_i: int) -> int:
        now = time.monotonic()
        if not first:
            first.append(now)
        if how == "handler" and now - first[0] >= DEADLINE and not probe.cancelled_at:
            probe.cancelled_at.append(now)
            rt.cancel()
        await anyio.sleep(0.005)
        answered.append(time.monotonic())
        return 1

    out = stop_run(rt, how, probe)
    assert_stopped(out, how)
    assert answered  # the loop did go round
    assert out.count_after_stop(answered) <= 1


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_an_async_handler_that_never_answers(tmp_path, how):
    config = {"execution_timeout": DEADLINE} if how == "timeout" else {}
    rt = _runtime(tmp_path, ASK_ONCE, **config)
    probe = Probe()
    _listen(rt, probe)
    asked: list[int] = []
    gave_up: list[str] = []

    @rt.on_emit("ask")
    async def never(i: int) -> int:
        asked.append(i)
        try:
            await anyio.sleep(3600)
        except BaseException:
            gave_up.append("cancelled")  # the host's coroutine is cancelled, not abandoned
            raise
        return 0

    out = stop_run(rt, how, probe)
    assert_stopped(out, how)
    assert asked == [1] and gave_up == ["cancelled"]
    assert probe.channels == ["started", "ask"]


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_fire_and_forget_async_handler_that_never_returns(tmp_path, how):
    # main has returned; the run is waiting for the host's handler to finish.
    config = {"execution_timeout": DEADLINE} if how == "timeout" else {}
    rt = _runtime(tmp_path, 'fn main() { emit("slow", 1); emit("main_returns", 1); }', **config)
    probe = Probe()
    _listen(rt, probe)
    gave_up: list[str] = []

    @rt.on("slow")
    async def slow(_payload: int) -> None:
        try:
            await anyio.sleep(3600)
        except BaseException:
            gave_up.append("cancelled")
            raise

    out = stop_run(rt, how, probe)
    assert_stopped(out, how)
    assert probe.channels == ["slow", "main_returns"]
    assert gave_up == ["cancelled"]


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_long_sleep(tmp_path, how):
    config = {"execution_timeout": DEADLINE} if how == "timeout" else {}
    rt = _runtime(tmp_path, SLEEP, **config)
    probe = Probe()
    _listen(rt, probe)
    out = stop_run(rt, how, probe)
    assert_stopped(out, how)
    assert probe.channels == ["started"]


MODEL_HANG = """
model Slowpoke { provider: openai, base: "gpt-4o-mini" }
fn main() {
    emit("started", 1);
    let r = Slowpoke.execute("hello");
    emit("finished", 1);
}
"""


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_model_call_the_server_never_answers(tmp_path, fake, how):
    fake.script(Slow(30.0, Text("too late")))
    main = model_project(tmp_path, MODEL_HANG, model_connections(fake, timeout=60))
    config = {"execution_timeout": DEADLINE} if how == "timeout" else {}
    rt = Runtime(RuntimeConfig(environ=MODEL_KEYS, **config))
    rt.load_source(main)
    probe = Probe()
    _listen(rt, probe)
    out = stop_run(rt, how, probe)
    assert_stopped(out, how)
    assert probe.channels == ["started"]
    assert len(fake.requests) == 1
    waited = time.monotonic() + 2
    while fake.hangups < 1 and time.monotonic() < waited:
        time.sleep(0.01)
    assert fake.hangups == 1  # the pending request was cut off, not left to finish


# ------------------------------------------------------------------ the CLI
@pytest.mark.parametrize("name,flags", [
    ("loop_in_main", ("--no-jit",)),
    ("spawn_1000_busy", ()),
    ("parallel_for_1e6", ("--no-jit",)),
])
def test_cli_timeout_flag_under_load(tmp_path, name, flags):
    src = tmp_path / "main.conc"
    src.write_text(textwrap.dedent(BUSY[name]))
    started = time.monotonic()
    code, out, err = cli("run", str(src), "--timeout", "0.5", "--emit-format", "jsonl", *flags, timeout=60)
    elapsed = time.monotonic() - started
    assert code == 1
    assert "TimeoutError" in err and "execution timed out after 0.5 s" in err
    assert "Traceback" not in err
    assert '"finished"' not in out
    # Start-up and compiling are included; the bug this pins overshot by 20 s or more.
    assert elapsed < 0.5 + 5


# These once ended as InternalError (NaN: "deadline must not be NaN"; a str: a TypeError).
@pytest.mark.parametrize("bad", [float("nan"), "1", -1.0, 0], ids=["nan", "str", "negative", "zero"])
def test_a_bad_execution_timeout_is_a_config_error(tmp_path, bad):
    rt = _runtime(tmp_path, 'fn main() { emit("ran", 1); }', execution_timeout=bad)
    seen: list[str] = []
    rt.on("*", lambda channel, payload: seen.append(channel))
    with pytest.raises(RunError) as info:
        rt.run()
    assert info.value.kind == "ConfigError"
    assert "RuntimeConfig.execution_timeout" in info.value.message
    assert seen == []


def test_cli_rejects_a_nan_timeout(tmp_path):
    # This once passed the option's range check and ended as an internal error (exit 70).
    src = tmp_path / "main.conc"
    src.write_text('fn main() { emit("ran", 1); }')
    code, out, err = cli("run", str(src), "--timeout", "nan")
    assert code == 2  # a usage error, as for `--timeout 0` or `--timeout abc`
    assert "--timeout" in err and "internal error" not in err


# ------------------------------------------------------------------ hand-written IR
def _ir_program(instructions: list[tuple], constants: list[tuple[str, Any]], locals_: list[str]) -> bytes:
    return ir.encode(ir.Program(
        version=ir.IR_VERSION, module="main", source_file="hand.conc-ir",
        constants=[ir.Constant(i, kind, value) for i, (kind, value) in enumerate(constants)],
        types=[],
        functions=[ir.Function(name="main", locals=locals_, instructions=[
            ir.Instr(op, arg, name) for op, arg, name in instructions])],
        metadata=ir.Metadata(compiler_version="hand-written"),
    ))


# Loops no compiler of ours writes: the only way back is a conditional jump
# (plain, and in the shapes the linker fuses into superinstructions), or a
# try handler placed before the instruction that faults.
HAND_WRITTEN_IR = {
    "jump_if_true_backwards": _ir_program(
        [("LOAD_CONST", 0, None), ("JUMP_IF_TRUE", 0, None), ("LOAD_CONST", 2, None), ("RETURN", None, None)],
        [("bool", True), ("bool", False), ("nil", None)], []),
    "jump_if_false_backwards": _ir_program(
        [("LOAD_CONST", 1, None), ("JUMP_IF_FALSE", 0, None), ("LOAD_CONST", 2, None), ("RETURN", None, None)],
        [("bool", True), ("bool", False), ("nil", None)], []),
    # LT + JUMP_IF_FALSE on a local and a constant: fused to one instruction.
    "fused_local_lt_const_backwards": _ir_program(
        [("LOAD_CONST", 0, None), ("STORE_LOCAL", None, "i"),
         ("LOAD_LOCAL", None, "i"), ("LOAD_CONST", 0, None), ("LT", None, None), ("JUMP_IF_FALSE", 2, None),
         ("LOAD_CONST", 1, None), ("RETURN", None, None)],
        [("int", 0), ("nil", None)], ["i"]),
    # A comparison + JUMP_IF_FALSE: fused to one instruction.
    "fused_compare_backwards": _ir_program(
        [("LOAD_CONST", 0, None), ("LOAD_CONST", 1, None), ("GT", None, None), ("JUMP_IF_FALSE", 0, None),
         ("LOAD_CONST", 2, None), ("RETURN", None, None)],
        [("int", 1), ("int", 2), ("nil", None)], []),
    # The handler sits before the try: each fault lands back at pc 1.
    "fault_into_an_earlier_handler": _ir_program(
        [("LOAD_CONST", 2, None), ("POP", None, None), ("TRY_BEGIN", 1, None),
         ("LOAD_CONST", 0, None), ("LOAD_CONST", 1, None), ("DIV", None, None), ("RETURN", None, None)],
        [("int", 1), ("int", 0), ("nil", None)], []),
}


@TIERS
@pytest.mark.parametrize("name,how", [(name, "timeout") for name in HAND_WRITTEN_IR] + [
    ("jump_if_true_backwards", "cancel"), ("fault_into_an_earlier_handler", "cancel")])
def test_hand_written_ir_loop_stops_at_the_deadline(name, how, jit):
    config = {"execution_timeout": DEADLINE} if how == "timeout" else {}
    rt = Runtime(RuntimeConfig(jit=jit, **config))
    rt.load_ir(HAND_WRITTEN_IR[name])
    out = stop_run(rt, how)
    assert_stopped(out, how)


@pytest.mark.parametrize("name", [n for n in HAND_WRITTEN_IR if n != "fault_into_an_earlier_handler"])
def test_hand_written_ir_loops_really_run_compiled(name):
    # Without this, the compiled-tier deadline tests could silently be testing
    # the interpreter. (Functions with try-frames always stay interpreted.)
    from concerto.vm.loader import load_bytes
    from concerto.vm.pycompile import compile_program

    program = load_bytes(HAND_WRITTEN_IR[name])
    compile_program(program)
    assert program.jit_failures == []
    assert program.entry.jit is not None


# ------------------------------------------------------------------ cancel() outside a run
def test_cancel_before_execute_has_no_effect_on_the_next_run(tmp_path):
    rt = _runtime(tmp_path, 'fn main() -> Int { emit("ran", 1); 7 }')
    seen: list[str] = []
    rt.on("*", lambda channel, payload: seen.append(channel))
    rt.cancel()  # no run yet: nothing to stop
    assert rt.run() == 7
    assert seen == ["ran"]


def test_cancel_after_a_finished_run_has_no_effect_on_the_next_run(tmp_path):
    rt = _runtime(tmp_path, 'fn main() -> Int { emit("ran", 1); 7 }')
    seen: list[str] = []
    rt.on("*", lambda channel, payload: seen.append(channel))
    assert rt.run() == 7
    rt.cancel()
    assert rt.run() == 7
    assert seen == ["ran", "ran"]


class _CancellingEnviron(Mapping[str, str]):
    """The environ of a run that calls cancel() when the runtime first reads
    it: while execute() prepares the run (looking up the connections' keys),
    before the run's executor exists and before any program code runs."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.rt: Runtime | None = None
        self.fired = 0

    def __getitem__(self, key: str) -> str:
        if self.rt is not None and not self.fired:
            self.fired += 1
            self.rt.cancel()
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def test_cancel_while_execute_prepares_the_run_is_honoured(tmp_path, fake):
    main = model_project(tmp_path, """
model Unused { provider: openai, base: "gpt-4o-mini" }
fn main() { emit("ran", 1); }
""", model_connections(fake))
    environ = _CancellingEnviron(dict(MODEL_KEYS))
    rt = Runtime(RuntimeConfig(environ=environ))
    rt.load_source(main)
    environ.rt = rt
    seen: list[str] = []
    rt.on("*", lambda channel, payload: seen.append(channel))
    with pytest.raises(RunError) as info:
        rt.run()
    assert environ.fired == 1
    assert info.value.kind == "CancelledError"
    assert seen == []  # not one instruction of the program ran
    assert fake.requests == []
    environ.rt = None
    rt.run()  # and the cancel was for that run only
    assert seen == ["ran"]


# ------------------------------------------------------------------ after a stopped run
@TIERS
def test_the_runtime_runs_again_normally_after_a_stopped_run(tmp_path, jit):
    rt = _runtime(tmp_path, """
fn main() -> Int {
    let go = await emit("mode", 0);
    if go == 1 { let mut i = 0; loop { i += 1; } }
    let total = parallel for x in [1, 2, 3] { x * 10 };
    let t = spawn(|| 5);
    emit("done", total);
    t.await
}
""", jit=jit, execution_timeout=DEADLINE)
    modes = [1, 0, 1, 0]
    rt.on_emit("mode", lambda _p: modes.pop(0))
    seen: list[Any] = []
    rt.on("done", seen.append)
    for _ in range(2):
        assert_stopped(stop_run(rt, "timeout"), "timeout")
        started = time.monotonic()
        assert rt.run() == 5
        assert time.monotonic() - started < DEADLINE  # the next run gets a fresh deadline
        assert CLOCK.active() == 0
    assert seen == [[10, 20, 30], [10, 20, 30]]
    assert modes == []


# ------------------------------------------------------------------ contextvars
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def test_host_contextvars_reach_handlers_called_from_vm_code(tmp_path):
    rt = _runtime(tmp_path, """
fn main() {
    emit("sync", "main");
    let t = spawn(|| { emit("sync", "spawned"); 1 });
    t.await;
    let xs = parallel for k in [1, 2] { emit("sync", "parallel"); k };
    let answer = await emit("ask", "main");
    emit("async", "main");
    emit("done", answer);
}
""")
    seen: list[tuple[str, str, str]] = []

    @rt.on("sync")
    def sync_handler(where: str) -> None:
        seen.append(("sync", where, REQUEST_ID.get()))

    @rt.on("async")
    async def async_handler(where: str) -> None:
        await anyio.sleep(0)
        seen.append(("async", where, REQUEST_ID.get()))

    @rt.on_emit("ask")
    async def answer(where: str) -> str:
        await anyio.sleep(0)
        seen.append(("answer", where, REQUEST_ID.get()))
        return REQUEST_ID.get()

    done: list[Any] = []
    rt.on("done", done.append)

    async def serve(request_id: str) -> None:
        REQUEST_ID.set(request_id)
        await rt.execute()

    anyio.run(serve, "req-42")
    assert seen == [("sync", "main", "req-42"), ("sync", "spawned", "req-42"),
                    ("sync", "parallel", "req-42"), ("sync", "parallel", "req-42"),
                    ("answer", "main", "req-42"), ("async", "main", "req-42")]
    assert done == ["req-42"]
    assert REQUEST_ID.get() == "unset"  # nothing leaked out into the test's own context


def test_two_concurrent_runs_each_see_their_own_contextvars(tmp_path):
    seen: list[tuple[str, str]] = []

    def make(name: str) -> Runtime:
        d = tmp_path / name
        d.mkdir()
        rt = _runtime(d, 'fn main() { for i in 0..3 { emit("who", i); std::time::sleep(5); } }')
        rt.on("who", lambda _i: seen.append((name, REQUEST_ID.get())))
        return rt

    a, b = make("a"), make("b")

    async def serve(rt: Runtime, request_id: str) -> None:
        REQUEST_ID.set(request_id)
        await rt.execute()

    async def both() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve, a, "a")
            tg.start_soon(serve, b, "b")

    anyio.run(both)
    assert sorted(seen) == [("a", "a")] * 3 + [("b", "b")] * 3
