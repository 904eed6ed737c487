"""std::math (spec 19). The arithmetic is shared with the Int/Float methods.

abs keeps its argument's type; round/floor/ceil return Int; pow(Int, Int) is
an Int; min/max/clamp compare any two values of one orderable type.
"""

from __future__ import annotations

import random

from concerto.stdlib import methods_number as n
from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.stdlib.support import want_int
from concerto.vm.values import ConcertoError

# One generator for the module so a test (or an embedding host) can seed it.
RNG = random.Random()

for _name, _fn, _arity in (
    ("abs", n.abs_, 1),
    ("min", n.min_, 2),
    ("max", n.max_, 2),
    ("clamp", n.clamp, 3),
    ("round", n.round_, 1),
    ("floor", n.floor, 1),
    ("ceil", n.ceil, 1),
    ("pow", n.pow_, 2),
    ("sqrt", n.sqrt, 1),
):
    REGISTRY.function(f"std::math::{_name}", _arity)(_fn)


@REGISTRY.function("std::math::random", 0)
def random_(ctx: NativeContext) -> float:
    """Uniform in [0.0, 1.0)."""
    return RNG.random()


@REGISTRY.function("std::math::random_int", 2)
def random_int(ctx: NativeContext, lo: int, hi: int) -> int:
    """Uniform in [lo, hi], both ends included (spec: random_int(1, 100) can be 100)."""
    want_int(lo, "math::random_int")
    want_int(hi, "math::random_int")
    if lo > hi:
        raise ConcertoError(f"math::random_int: min {lo} is greater than max {hi}", "RuntimeError")
    return RNG.randint(lo, hi)
