"""Time each Concerto benchmark against its plain-Python twin.

For every benchmark X this runs, as whole processes,

    concerto run --emit-format jsonl bench/X.conc      (the Concerto VM)
    python bench/X.py                                  (CPython)

keeps the best wall-clock time of --runs runs each, checks that both printed
the same result, and prints a table. The exit status is 1 if any result
differs or a run fails.

Before timing, the toolchain's own modules are byte-compiled (compileall), as
a regular install does; otherwise an environment with PYTHONDONTWRITEBYTECODE
would re-parse every module of the toolchain in every timed run.

With --no-jit the VM runs every instruction in the interpreter (the tier-2
compilation to Python in vm/pycompile.py is switched off).

With --ir every .conc is first compiled (`concerto compile X.conc -o X.conc-ir`
into a temporary directory) and the VM column times running the IR, so the
compile step is left out of the measurement.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BENCHMARKS = ["fib", "loop", "structs", "mapfilter"]


def concerto_command() -> list[str]:
    """`python -m concerto` when that works, else the script beside python."""
    probe = subprocess.run(
        [sys.executable, "-m", "concerto", "--help"],
        capture_output=True,
        text=True,
    )
    if probe.returncode == 0:
        return [sys.executable, "-m", "concerto"]
    script = Path(sys.executable).with_name("concerto")
    if script.exists():
        return [str(script)]
    sys.exit("cannot find the concerto CLI: `python -m concerto` failed and no "
             f"`concerto` script next to {sys.executable}")


class RunFailed(Exception):
    pass


def run_timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RunFailed(f"`{' '.join(cmd)}` exited {proc.returncode}: " + " | ".join(detail))
    return elapsed, proc.stdout


def best_of(cmd: list[str], runs: int) -> tuple[float, str]:
    best = float("inf")
    output = ""
    for _ in range(runs):
        elapsed, output = run_timed(cmd)
        best = min(best, elapsed)
    return best, output


def concerto_result(stdout: str) -> object:
    """The payload of the last emit on the "result" channel."""
    found = False
    value: object = None
    for line in stdout.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.get("channel") == "result":
            found = True
            value = event.get("payload")
    if not found:
        raise RunFailed("the Concerto program emitted nothing on the \"result\" channel")
    return value


def python_result(stdout: str) -> object:
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise RunFailed("the Python twin printed nothing")
    return json.loads(lines[-1])


def byte_compile_toolchain() -> None:
    """Write .pyc files for the concerto packages (what `pip install` does)."""
    import compileall
    import importlib.util

    for package in ("concerto", "concerto.compiler", "concerto.vm", "concerto.stdlib"):
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(location, quiet=1, maxlevels=0)


def compile_ir(concerto: list[str], source: Path, out_dir: Path) -> Path:
    target = out_dir / (source.stem + ".conc-ir")
    run_timed([*concerto, "compile", str(source), "-o", str(target)])
    return target


def print_table(rows: list[dict], title: str) -> None:
    headers = ["benchmark", "VM s", "CPython s", "ratio", "result"]
    cells = [
        [
            row["name"],
            f"{row['vm']:.3f}" if row["vm"] is not None else "-",
            f"{row['py']:.3f}" if row["py"] is not None else "-",
            f"{row['vm'] / row['py']:.1f}x" if row["vm"] and row["py"] else "-",
            row["status"],
        ]
        for row in rows
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        for c in cells:
            print("  ".join(v.ljust(w) for v, w in zip(c, widths)))
        return
    table = Table(title=title)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i in (0, 4) else "right")
    for c in cells:
        table.add_row(*c)
    Console().print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per program; the best time counts (default 3)")
    parser.add_argument("--ir", action="store_true", help="compile to .conc-ir first and time running the IR")
    parser.add_argument("--no-jit", action="store_true", help="time the interpreter alone (`concerto run --no-jit`)")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    args = parser.parse_args()
    names = args.names or BENCHMARKS
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    runs = max(1, args.runs)

    concerto = concerto_command()
    byte_compile_toolchain()
    run_flags = ["--no-jit"] if args.no_jit else []
    rows: list[dict] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="concerto-bench-") as tmp:
        for name in names:
            row = {"name": name, "vm": None, "py": None, "status": "same"}
            rows.append(row)
            try:
                row["py"], py_out = best_of([sys.executable, str(BENCH_DIR / f"{name}.py")], runs)
                py_value = python_result(py_out)
                program = BENCH_DIR / f"{name}.conc"
                if args.ir:
                    program = compile_ir(concerto, program, Path(tmp))
                row["vm"], vm_out = best_of([*concerto, "run", "--emit-format", "jsonl", *run_flags, str(program)], runs)
                vm_value = concerto_result(vm_out)
                if vm_value != py_value:
                    row["status"] = "DIFFERENT"
                    problems.append(f"{name}: VM printed {json.dumps(vm_value)}, Python {json.dumps(py_value)}")
            except (RunFailed, json.JSONDecodeError) as exc:
                row["status"] = "FAILED"
                problems.append(f"{name}: {exc}")

    mode = "IR (compile excluded)" if args.ir else "source (compile included)"
    if args.no_jit:
        mode += ", interpreter only"
    print_table(rows, f"Concerto VM vs CPython, best of {runs}, {mode}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
