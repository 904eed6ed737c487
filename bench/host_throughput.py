"""Host API throughput: many programs at once, each talking to its host.

200 Runtimes execute concurrently in one process; each program does 5
emit-await round trips (`await emit("ask", i)`) answered by an async handler.
Printed:

* runs/second for the whole batch (start to last run finished);
* per-round-trip overhead in us, measured with --overhead-trips (50) round
  trips per program so it stands out from the per-run cost: (batch with the
  round trips - the same batch whose loop does none) / (runs x trips);
* the same round trip done by plain Python coroutines (a task awaiting the
  handler directly) as the baseline measured in this process, and the ratio.

    python bench/host_throughput.py [--runs 200] [--trips 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import anyio

from concerto import Runtime, RuntimeConfig

WITH_TRIPS = """
fn main() {
    let mut total = 0;
    for i in 0..TRIPS {
        let answer = await emit("ask", i);
        total += answer;
    }
    emit("total", total);
}
"""
WITHOUT_TRIPS = """
fn main() {
    let mut total = 0;
    for i in 0..TRIPS {
        total += i + 1;
    }
    emit("total", total);
}
"""


async def answer(payload: int) -> int:
    return payload + 1


def make(source_path: str, n: int, jit: bool = True) -> list[Runtime]:
    runtimes = []
    for _ in range(n):
        rt = Runtime(RuntimeConfig(jit=jit))
        rt.load_source(source_path)
        rt.on_emit("ask", answer)
        runtimes.append(rt)
    return runtimes


async def batch(runtimes: list[Runtime]) -> float:
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for rt in runtimes:
            tg.start_soon(rt.execute)
    return time.perf_counter() - started


async def plain_python(runs: int, trips: int) -> float:
    async def program() -> int:
        total = 0
        for i in range(trips):
            total += await answer(i)
        return total

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(runs):
            tg.start_soon(program)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--trips", type=int, default=5)
    ap.add_argument("--overhead-trips", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3, help="keep the best of this many batches")
    args = ap.parse_args()

    def write(d: str, name: str, template: str, trips: int) -> str:
        path = Path(d) / name
        path.write_text(template.replace("TRIPS", str(trips)))
        return str(path)

    with tempfile.TemporaryDirectory() as d:
        headline = write(d, "headline.conc", WITH_TRIPS, args.trips)
        with_path = write(d, "with.conc", WITH_TRIPS, args.overhead_trips)
        without_path = write(d, "without.conc", WITHOUT_TRIPS, args.overhead_trips)
        best_headline = best_with = best_without = best_plain = float("inf")
        for _ in range(args.repeat):
            # Each Runtime runs once per batch; loading is outside the timing.
            best_headline = min(best_headline, anyio.run(batch, make(headline, args.runs)))
            # Both interpreted, so tier-2 compilation (which only the loop
            # without awaits would get) does not blur the difference.
            best_with = min(best_with, anyio.run(batch, make(with_path, args.runs, jit=False)))
            best_without = min(best_without, anyio.run(batch, make(without_path, args.runs, jit=False)))
            best_plain = min(best_plain, anyio.run(plain_python, args.runs, args.overhead_trips))

    trips = args.runs * args.overhead_trips
    per_trip_us = max(0.0, best_with - best_without) / trips * 1e6
    plain_us = best_plain / trips * 1e6
    print(f"{args.runs} programs at once, {args.trips} emit-await round trips each")
    print(f"  runs/second:                 {args.runs / best_headline:10.0f}   ({best_headline * 1000:.1f} ms per batch)")
    print(f"per-round-trip overhead ({args.runs} programs x {args.overhead_trips} round trips)")
    print(f"  Concerto emit-await:         {per_trip_us:10.1f} us")
    print(f"  plain-Python await:          {plain_us:10.2f} us   (baseline, same process)")
    print(f"  ratio:                       {per_trip_us / plain_us if plain_us else float('inf'):10.1f}x")


if __name__ == "__main__":
    main()
