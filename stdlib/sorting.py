"""A stable sort that polls the run's interrupt flag (vm/interrupts.py).

`sorted()` of ten million values is one C call of several seconds that no
deadline can interrupt. Under a total order (numbers without NaN, Strings,
Bools: support.check_orderable says when) the same result is built in steps
of a few milliseconds, with a poll between them, in about the same time:

1. sort consecutive runs of RUN values, each with one `sorted()`;
2. pick splitters from a regular sample of every run, one per STEP values;
3. for each splitter, bisect every run: the values below it from all runs,
   sorted together, come next; then the values equal to it, which are
   already in input order when taken run after run.

Every run is cut at the same key, and ties never straddle a cut, so the
output is exactly what one stable `sorted()` gives. A piece stays near STEP
values whatever the data: a run holds at most EVERY values between two of
its sampled ones, so a piece exceeds STEP by at most EVERY per run.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Any

from concerto.vm.interrupts import poll

# Values sorted by one C call; tens of milliseconds at most for Strings.
RUN = 1 << 15
# Values merged per step (plus up to EVERY per run).
STEP = 1 << 15
# One value of every EVERY (at least 2) in a sorted run goes into the sample.
EVERY = 64

Key = Callable[[Any], Any] | None


def sort_in_steps(items: Any, key: Key = None) -> list:
    """`sorted(items, key=key)`, polling between steps. Only for values whose
    keys are totally ordered: with NaN, say, the steps would not agree."""
    n = len(items)
    if n <= RUN:
        return sorted(items, key=key)
    runs = []
    for lo in range(0, n, RUN):
        poll()
        runs.append(sorted(items[lo:lo + RUN], key=key))
    sample: list = []
    for run in runs:
        picked = run[EVERY - 1::EVERY]
        sample += picked if key is None else [key(x) for x in picked]
    splitters = sort_in_steps(sample)[STEP // EVERY - 1::STEP // EVERY]
    heads = [0] * len(runs)
    out: list = []
    for bound in splitters:
        poll()
        out += _below(runs, heads, bound, key)
        for r, run in enumerate(runs):
            end = bisect_right(run, bound, heads[r], key=key)
            out += run[heads[r]:end]
            heads[r] = end
    poll()
    out += _below(runs, heads, None, key)
    return out


def _below(runs: list[list], heads: list[int], bound: Any, key: Key) -> list:
    """The values of all runs whose key is below `bound` (all that are left
    when it is None), in order; advances `heads` past them."""
    piece: list = []
    taken = 0
    for r, run in enumerate(runs):
        start = heads[r]
        end = len(run) if bound is None else bisect_left(run, bound, start, key=key)
        if end > start:
            piece += run[start:end]
            heads[r] = end
            taken += 1
    if taken > 1:
        piece.sort(key=key)
    return piece
