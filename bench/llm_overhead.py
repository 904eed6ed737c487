"""What the model-call path costs on top of the provider (issue 3, point 9).

A fake OpenAI-format server (tests/fake_provider.py) runs in its own process
with a fixed reply latency, so this process's CPU time is ours alone.

1. Concurrency: N `execute` calls at once through one connection with
   concurrent_requests = C. The ideal wall time is latency * N / C; we print
   the ratio to it and the CPU time per call.
2. Requests per minute: more calls than the limit allows in a minute, against
   a server enforcing the same limit over a sliding minute. We print how much
   of the limit the first minute used and how many 429s the server sent.
   This part takes a little over a minute; --quick skips it.

    python bench/llm_overhead.py [--calls 1000] [--concurrency 100] [--latency-ms 50]
                                 [--rpm 300] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from concerto import ir  # noqa: E402
from concerto.compiler import compile_file  # noqa: E402
from concerto.vm.loader import load_bytes  # noqa: E402
from concerto.vm.models import build_runtime  # noqa: E402
from concerto.vm.values import Ok  # noqa: E402


class FakeServer:
    def __init__(self, latency_ms: int, rpm: int | None = None) -> None:
        cmd = [sys.executable, str(ROOT / "tests" / "fake_provider.py"), "--port", "0", "--latency-ms", str(latency_ms)]
        if rpm:
            cmd += ["--rpm", str(rpm)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        if not line.startswith("READY "):
            raise SystemExit(f"fake server did not start: {line!r}")
        self.url = line.split(" ", 1)[1]

    def stop(self) -> dict:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        lines = [ln for ln in err.strip().splitlines() if ln.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


def runtime_for(url: str, *, concurrency: int | None = None, rpm: int | None = None):
    project = Path(tempfile.mkdtemp(prefix="llm-bench-"))
    limits = []
    if concurrency:
        limits.append(f"concurrent_requests = {concurrency}")
    if rpm:
        limits.append(f"requests_per_minute = {rpm}")
    (project / "Concerto.toml").write_text(
        '[project]\nname = "bench"\nversion = "0.1.0"\nentry = "main.conc"\n\n'
        f'[connections.fake]\nprovider = "openai"\napi_key_env = "BENCH_KEY"\nbase_url = "{url}/v1"\n'
        'default_model = "gpt-4o-mini"\ntimeout = 30\n\n'
        "[connections.fake.rate_limit]\n" + "\n".join(limits) + "\n"
    )
    (project / "main.conc").write_text('model Bench { provider: fake }\nfn main() {}\n')
    result = compile_file(project / "main.conc")
    if not result.ok:
        raise SystemExit("\n".join(d.header() for d in result.diagnostics))
    program = load_bytes(ir.encode(result.program, pretty=False))
    return build_runtime(program, environ={"BENCH_KEY": "sk-bench"})


async def fire(runtime, n: int) -> tuple[float, float, list[float], int]:
    """n concurrent execute calls: (wall s, cpu s, completion times, failures)."""
    ends: list[float] = []
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        result = await runtime.aexecute("Bench", f"question {i}")
        ends.append(time.perf_counter())
        if type(result) is not Ok:
            failures += 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    await runtime.manager.aclose()
    return wall, cpu, sorted(e - wall0 for e in ends), failures


def concurrency_run(calls: int, concurrency: int, latency_ms: int) -> bool:
    server = FakeServer(latency_ms)
    try:
        runtime = runtime_for(server.url, concurrency=concurrency)
        anyio.run(fire, runtime, min(200, calls))  # warm up: imports, pool, code paths
        runtime = runtime_for(server.url, concurrency=concurrency)
        wall, cpu, _, failures = anyio.run(fire, runtime, calls)
    finally:
        summary = server.stop()
    ideal = latency_ms / 1000 * calls / concurrency
    ratio = wall / ideal
    cpu_us = cpu / calls * 1e6
    print(f"concurrency: {calls} calls, concurrent_requests={concurrency}, latency {latency_ms} ms")
    print(f"  wall {wall:.3f} s vs ideal {ideal:.3f} s: {ratio:.2f}x  (target <= 1.25x)")
    print(f"  cpu {cpu_us:.0f} us per call  (target < 300 us)")
    print(f"  server saw at most {summary.get('max_in_flight')} in flight; failures {failures}")
    return ratio <= 1.25 and cpu_us < 300 and failures == 0


def rpm_run(rpm: int, latency_ms: int) -> bool:
    server = FakeServer(latency_ms, rpm=rpm)
    extra = max(10, rpm // 10)
    try:
        runtime = runtime_for(server.url, concurrency=100, rpm=rpm)
        wall, _, ends, failures = anyio.run(fire, runtime, rpm + extra)
    finally:
        summary = server.stop()
    in_first_minute = sum(1 for t in ends if t < 60.0)
    too_many = summary.get("status_counts", {}).get("429", 0)
    used = in_first_minute / rpm
    print(f"requests_per_minute={rpm}: {rpm + extra} calls at once, {wall:.1f} s in all")
    print(f"  calls completed in the first minute: {in_first_minute} = {used:.0%} of the limit (target >= 95%)")
    print(f"  the rest waited for the window: first of them done at {ends[rpm]:.1f} s" if len(ends) > rpm else "")
    print(f"  429s from the server (same limit, sliding minute): {too_many}; failures {failures}")
    return used >= 0.95 and too_many == 0 and failures == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--rpm", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="skip the minute-long requests_per_minute run")
    args = ap.parse_args()
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    good = concurrency_run(args.calls, args.concurrency, args.latency_ms)
    if not args.quick:
        good = rpm_run(args.rpm, args.latency_ms) and good
    print("PASS" if good else "FAIL")
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
