"""IR mutation fuzzing: a `.conc-ir` file damaged in any way either fails to
load with an IRLoadError, or runs to a result or a Concerto error. Never a
Python exception, never an InternalError, in either execution tier.

Mutants come from the example programs: instructions inserted (one POP or NEG
at the top of `main` used to be enough for an IndexError), deleted,
duplicated, swapped or retyped; operands replaced by values of every JSON
kind; constants, locals, parameters and sections changed or dropped. A
bounded, seeded corpus runs on every test run; hypothesis explores further.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concerto import LoadError, RunError, Runtime, RuntimeConfig, ir
from concerto.compiler import compile_file
from concerto.ir import opcodes as O
from conftest import REPO

VALUES: list[Any] = [0, 1, -1, 2, 3, 7, 10**20, -(2**63) - 1, 2**63, 1.5, "x", "", "main", "Some", "Option",
                     "twice", None, True, False, [], {}, ["a"], [[1]], {"k": [1]}]
IR_OPS = sorted(O.IR_OPCODES)
FIELDS = ["arg", "name", "argc", "type_name", "names"]
SECTIONS = ["types", "models", "schemas", "hashmaps", "pipelines", "tools", "memories", "connections", "metadata",
            "source_map", "constants", "mcp_connections"]


def _bases() -> list[dict[str, Any]]:
    files = sorted((REPO / "examples").glob("*.conc")) + sorted((REPO / "bench").glob("*.conc"))
    out = []
    for f in files:
        result = compile_file(f, mock=True)
        assert result.ok, f
        out.append(json.loads(ir.encode(result.program)))
    return out


BASES = _bases()


def mutate(p: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One random change, anywhere in the program."""
    fns = p.get("functions")
    if not isinstance(fns, list) or not fns or not all(isinstance(f, dict) for f in fns):
        return p
    fn = rng.choice(fns)
    code = fn.get("instructions")
    if not isinstance(code, list):
        return p
    kind = rng.randrange(13)
    if kind == 0:  # a random instruction with random operands
        op = rng.choice(IR_OPS)
        ins: dict[str, Any] = {"op": op}
        for operand in O.TABLE[op].operands:
            ins[operand.field] = rng.choice(VALUES)
        code.insert(rng.randrange(len(code) + 1), ins)
    elif kind == 1 and code:
        del code[rng.randrange(len(code))]
    elif kind == 2 and code:
        code[rng.randrange(len(code))]["op"] = rng.choice(IR_OPS + ["NOPE", "C_ADD"])
    elif kind == 3 and code:
        code[rng.randrange(len(code))][rng.choice(FIELDS)] = rng.choice(VALUES)
    elif kind == 4 and code:
        i = rng.randrange(len(code))
        code.insert(i, copy.deepcopy(code[i]))
    elif kind == 5 and len(code) > 1:
        i, j = rng.randrange(len(code)), rng.randrange(len(code))
        code[i], code[j] = code[j], code[i]
    elif kind == 6 and p.get("constants"):
        c = rng.choice(p["constants"])
        if isinstance(c, dict):
            key = rng.choice(["value", "type", "index"])
            c[key] = rng.choice(VALUES + ["int", "float", "string", "bool", "nil"])
    elif kind == 7:
        section = rng.choice(SECTIONS)
        if isinstance(p.get(section), list) and p[section]:
            del p[section][rng.randrange(len(p[section]))]
        else:
            p[section] = rng.choice(VALUES)
    elif kind == 8 and isinstance(fn.get("locals"), list) and fn["locals"]:
        del fn["locals"][rng.randrange(len(fn["locals"]))]
    elif kind == 9:
        fn[rng.choice(["params", "captures", "name", "locals", "self_type", "return_type", "decorators"])] = \
            rng.choice(VALUES)
    elif kind == 10 and code:  # off by one: counts and targets
        ins = code[rng.randrange(len(code))]
        for field in ("argc", "arg"):
            if type(ins.get(field)) is int:
                ins[field] += rng.choice([-1, 1])
                break
    elif kind == 11:  # the example: one instruction prepended to a function
        code.insert(0, {"op": rng.choice(["POP", "NEG", "DUP", "SWAP", "ADD", "RETURN", "TRY_END", "ITER_NEXT",
                                          "THROW", "AWAIT", "EMIT", "INDEX_SET"])})
    elif kind == 12 and code:  # a jump anywhere
        jumps = [i for i, x in enumerate(code) if x.get("op") in ("JUMP", "JUMP_IF_FALSE", "JUMP_IF_TRUE",
                                                                    "ITER_NEXT", "TRY_BEGIN", "COALESCE")]
        if jumps:
            code[rng.choice(jumps)]["arg"] = rng.randrange(-2, len(code) + 2)
    return p


def outcome(data: bytes, jit: bool) -> str:
    """load, ok or run:<kind>; anything else raises and fails the test."""
    rt = Runtime(RuntimeConfig(execution_timeout=0.3, mock=True, max_call_depth=200, jit=jit))
    try:
        rt.load_ir(data)
    except LoadError as e:
        assert e.message.startswith("invalid IR: ") and len(e.message) > len("invalid IR: "), e.message
        return "load"
    try:
        anyio.run(rt.execute)
    except RunError as e:
        assert e.kind != "InternalError", f"{e.message}\n{e.python_traceback}"
        assert e.message
        return f"run:{e.kind}"
    return "ok"


def mutants(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        p = mutate(copy.deepcopy(rng.choice(BASES)), rng)
        for _ in range(rng.randrange(3)):
            p = mutate(p, rng)
        out.append(json.dumps(p).encode())
    return out


@pytest.mark.parametrize("jit", [True, False], ids=["tier2", "interpreter"])
def test_a_seeded_corpus_of_mutants_never_crashes(jit: bool) -> None:
    seen: dict[str, int] = {}
    for data in mutants(seed=11 if jit else 12, count=220):
        kind = outcome(data, jit)
        seen[kind] = seen.get(kind, 0) + 1
    # The corpus exercises all three outcomes, not just the loader.
    assert seen.get("load", 0) > 100 and seen.get("ok", 0) > 5 and any(k.startswith("run:") for k in seen), seen


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), jit=st.booleans())
def test_hypothesis_mutants_never_crash(seed: int, jit: bool) -> None:
    [data] = mutants(seed, 1)
    outcome(data, jit)


def test_random_bytes_and_truncations_are_load_errors(tmp_path: Path) -> None:
    good = json.dumps(BASES[0]).encode()
    rng = random.Random(3)
    for cut in sorted(rng.sample(range(1, len(good)), 40)):
        assert outcome(good[:cut], True) == "load"
    for _ in range(40):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        assert outcome(blob, True) == "load"
