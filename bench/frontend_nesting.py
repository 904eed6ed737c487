"""Front-end time against nesting depth and chain length: is it linear?

For each shape of source this compiles (in process, `compile_source`) a
program of size n and of size 2n and prints both times and their ratio; a
linear front end gives a ratio near 2 (a quadratic one near 4). Shapes past
the nesting limit (5,000 nested `Array<`, calls, interpolations) end at the
`nesting too deep` diagnostic, so they time the lexer, the parser and the
nesting check; the chains compile fully.

    python bench/frontend_nesting.py            # n = 5,000 .. 40,000
    python bench/frontend_nesting.py --quick    # small n, for a smoke test
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

from concerto.compiler import compile_source
from concerto.compiler.parse import parser

SHAPES: dict[str, Callable[[int], str]] = {
    "nested Array<": lambda n: "fn main() { let x: " + "Array<" * n + "Int" + ">" * n + " = []; }\n",
    "generic calls f<Array<..>>()": lambda n: "fn main() { let x = f<" + "Array<" * n + "Int" + ">" * n + ">(1); }\n",
    "nested calls": lambda n: "fn main() { let x = " + "f(" * n + "1" + ")" * n + "; }\n",
    "nested ${}": lambda n: "fn main() { let s = " + '"${' * n + "1" + '}"' * n + "; }\n",
    "nested triple-quoted ${}": lambda n: "fn main() { let s = " + '"""${' * n + "1" + '}"""' * n + "; }\n",
    "+ chain": lambda n: "fn main() { let x = " + " + ".join(["1"] * n) + "; }\n",
    "|| chain": lambda n: "fn main() { let x = " + " || ".join(["true"] * n) + "; }\n",
}


def best_time(src: str, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        compile_source(src, "bench.conc")
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one run each")
    ap.add_argument("--runs", type=int, default=3, help="best of this many runs")
    args = ap.parse_args()
    sizes = [500, 1000] if args.quick else [5000, 10000, 20000, 40000]
    runs = 1 if args.quick else args.runs
    parser()  # build or load the LALR tables outside the timings
    print(f"{'shape':32} {'n':>8} {'seconds':>9} {'2n/n':>6}")
    for name, make in SHAPES.items():
        previous = None
        for n in sizes:
            t = best_time(make(n), runs)
            ratio = f"{t / previous:6.2f}" if previous else "     -"
            print(f"{name:32} n={n:>6} {t:9.3f} {ratio}  2n/n", flush=True)
            previous = t


if __name__ == "__main__":
    main()
