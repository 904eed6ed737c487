"""The loader's verifier: every structurally bad `.conc-ir` is an IRLoadError
naming the function and instruction (or the section), never a crash later.

Each case starts from a real compiled program, breaks one thing, and loads
the bytes through `load_bytes`, the path `concerto run x.conc-ir` and
`Runtime.load_ir` take.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any, Callable

import pytest

from concerto import ir
from concerto.ir.errors import IRLoadError
from concerto.vm.loader import load_bytes, load_object
from conftest import REPO, cli, compile_ok

SOURCE = '''
    enum Shape { Dot, Circle(Float) }
    hashmap cache: HashMap<String, Int> = HashMap::new();
    fn twice(x: Int) -> Int { x * 2 }
    fn main() {
        let mut total = 0;
        for i in 0..3 { total += twice(i); }
        let s = Shape::Circle(1.5);
        let r = try { [1, 2][5] } catch { -1 };
        cache.set("k", total);
        emit("out", { "total": total, "r": r, "abs": std::math::abs(-3), "s": s });
    }
'''


def program() -> dict[str, Any]:
    return json.loads(ir.encode(compile_ok(SOURCE).program))


def fn(p: dict[str, Any], name: str = "main") -> dict[str, Any]:
    return next(f for f in p["functions"] if f["name"] == name)


def index_of(code: list[dict[str, Any]], op: str, **fields: Any) -> int:
    return next(i for i, ins in enumerate(code) if ins["op"] == op and all(ins.get(k) == v for k, v in fields.items()))


def load(p: dict[str, Any]) -> Any:
    return load_bytes(json.dumps(p).encode())


def rejects(break_it: Callable[[dict[str, Any]], Any], where: str, message: str) -> None:
    p = program()
    break_it(p)
    with pytest.raises(IRLoadError) as info:
        load(p)
    assert where in info.value.where, (info.value.where, info.value.message)
    assert message in info.value.message, info.value.message


def test_the_unbroken_program_loads_and_carries_verified_depths() -> None:
    linked = load(program())
    main = linked.functions["main"]
    assert len(main.depths) == len(main.base_code)
    assert main.depths[0] == 0
    assert all(d >= -1 for d in main.depths)


def test_a_pop_prepended_to_main_is_a_stack_underflow() -> None:
    rejects(lambda p: fn(p)["instructions"].insert(0, {"op": "POP"}),
            "function `main`, instruction 0 (POP)", "stack underflow: pops 1 value(s) but the stack holds 0")


def test_a_neg_prepended_to_main_is_a_stack_underflow() -> None:
    rejects(lambda p: fn(p)["instructions"].insert(0, {"op": "NEG"}),
            "function `main`, instruction 0 (NEG)", "stack underflow")


def test_paths_that_meet_with_different_depths_are_refused() -> None:
    def dup_before_jump(p: dict[str, Any]) -> None:
        code = fn(p)["instructions"]
        i = index_of(code, "JUMP")
        target = code[i]["arg"]
        code.insert(i, {"op": "LOAD_CONST", "arg": 0})
        # Jump targets after the insertion point move by one.
        for ins in code:
            if ins["op"] in ("JUMP", "JUMP_IF_FALSE", "JUMP_IF_TRUE", "ITER_NEXT", "TRY_BEGIN", "COALESCE") \
                    and ins["arg"] > i:
                ins["arg"] += 1
        assert target <= i  # the loop's back edge: the extra value meets the loop head

    rejects(dup_before_jump, "function `main`", "stack depth is")


@pytest.mark.parametrize("target, message", [(10_000, "jump target 10000 is outside the function"),
                                             (-1, "jump target -1 is outside the function"),
                                             ("3", "`arg` must be an integer, not a string")])
def test_jump_targets_must_be_instructions_of_the_function(target: Any, message: str) -> None:
    def retarget(p: dict[str, Any]) -> None:
        code = fn(p)["instructions"]
        code[index_of(code, "JUMP")]["arg"] = target

    rejects(retarget, "(JUMP)", message)


def test_try_end_without_an_open_try_is_refused() -> None:
    def stray(p: dict[str, Any]) -> None:
        fn(p, "twice")["instructions"].insert(0, {"op": "TRY_END"})

    rejects(stray, "function `twice`, instruction 0 (TRY_END)", "TRY_END without an open TRY_BEGIN")


def test_control_must_not_run_off_the_end() -> None:
    rejects(lambda p: fn(p, "twice")["instructions"].pop(), "function `twice`", "control runs off the end")


@pytest.mark.parametrize("constant, message", [
    ({"type": "int", "value": 2**63}, "outside the 64-bit range"),
    ({"type": "int", "value": "7"}, "a int constant holds a string"),
    ({"type": "blob", "value": 1}, "unknown constant type 'blob'"),
    ({"type": "string", "value": [[["deep"]]]}, "a string constant holds an array"),
])
def test_constants_must_match_their_type(constant: dict[str, Any], message: str) -> None:
    rejects(lambda p: p["constants"][0].update(constant), "constants[0]", message)


def test_constant_indexes_are_in_range() -> None:
    def far(p: dict[str, Any]) -> None:
        code = fn(p)["instructions"]
        code[index_of(code, "LOAD_CONST")]["arg"] = len(p["constants"])

    rejects(far, "(LOAD_CONST)", "constant index")


@pytest.mark.parametrize("op, fields, message", [
    ("LOAD_LOCAL", {"name": "nobody"}, "unknown local `nobody`"),
    ("CALL", {"name": "nowhere", "argc": 0}, "unknown function `nowhere`"),
    ("CALL", {"name": "twice", "argc": 2}, "`twice` takes 1 parameter(s); argc is 2"),
    ("CALL_NATIVE", {"name": "std::math::abs", "argc": 3}, "native `std::math::abs` takes 1 argument(s); argc is 3"),
    ("CALL_NATIVE", {"name": "std::nope", "argc": 0}, "unknown native function `std::nope`"),
    ("PUSH", {"arg": [1, 2]}, "`arg` must be a scalar, not an array"),
    ("PUSH", {"arg": 2**64}, "outside the 64-bit range"),
    ("BUILD_ARRAY", {"arg": -1}, "`arg` must not be negative"),
    ("BUILD_VARIANT", {"type_name": "Option", "name": "Maybe", "argc": 1}, "`Option` has no variant `Maybe`"),
    ("BUILD_VARIANT", {"type_name": "Shape", "name": "Square", "argc": 0}, "enum `Shape` has no variant `Square`"),
    ("BUILD_VARIANT", {"type_name": "Nope", "name": "A", "argc": 0}, "unknown enum `Nope`"),
    ("TEST_LEN", {"arg": 1, "name": "<"}, "`name` must be one of"),
    ("HASH_MAP_GET", {"name": "nope"}, "unknown hashmap `nope`"),
    ("STORE_GLOBAL", {"name": "twice"}, "cannot be assigned"),
    ("STORE_GLOBAL", {"name": "cache"}, "can be set only by the init function"),
    ("C_ADD", {}, "made by the linker"),
    ("FROBNICATE", {}, "unknown opcode `FROBNICATE`"),
])
def test_operands_must_have_their_kind(op: str, fields: dict[str, Any], message: str) -> None:
    def insert(p: dict[str, Any]) -> None:
        # Two pushes first, so the operand check (not the stack) is what fails.
        fn(p)["instructions"][0:0] = [{"op": "LOAD_CONST", "arg": 0}, {"op": "LOAD_CONST", "arg": 0},
                                      {"op": op, **fields}]

    rejects(insert, f"function `main`, instruction 2 ({op})", message)


def test_parameters_must_be_the_first_locals() -> None:
    def swap(p: dict[str, Any]) -> None:
        fn(p, "twice")["locals"].insert(0, "$spare")

    rejects(swap, "function `twice`", "must be the first `locals`")


def test_the_entry_point_must_take_no_parameters() -> None:
    def entry(p: dict[str, Any]) -> None:
        p["metadata"]["entry_point"] = "twice"

    rejects(entry, "metadata", "entry point `twice` must take no parameters")


def test_deeply_nested_free_form_values_are_refused() -> None:
    def deep(p: dict[str, Any]) -> None:
        value: Any = "Int"
        for _ in range(200):
            value = [value]
        fn(p)["return_type"] = value

    rejects(deep, "functions[", "nested more than 128 levels")


def test_100000_nested_brackets_are_an_ir_load_error_even_with_a_raised_recursion_limit() -> None:
    # With the limit this high msgspec alone would overflow the C stack here
    # (a segfault), so the loader measures the nesting first.
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        data = b'{"version": "0.1.0", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        with pytest.raises(IRLoadError, match="nested more than 900 levels"):
            load_bytes(data)
    finally:
        sys.setrecursionlimit(saved)
    # Brackets inside strings are text, not nesting.
    p = program()
    p["constants"][0] = {"index": 0, "type": "string", "value": "[" * 5_000}
    load(p)


def test_100000_nested_brackets_through_the_cli_and_the_host(tmp_path) -> None:
    bad = tmp_path / "deep.conc-ir"
    bad.write_bytes(b'{"version": "0.1.0", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    code, out, err = cli("run", str(bad))
    assert code == 1 and "invalid IR" in err and "nested" in err and "Traceback" not in err, err
    script = textwrap.dedent(f'''
        from concerto import Runtime, LoadError
        try:
            Runtime().load_ir({str(bad)!r})
        except LoadError as e:
            print("LoadError", e.message)
    ''')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("LoadError invalid IR") and "nested" in done.stdout, \
        done.stdout + done.stderr


def test_verified_ir_from_a_python_program_is_linked_the_same_way() -> None:
    # link() verifies too, so an ir.Program built in Python cannot skip the checks.
    from concerto.vm.loader import link

    prog = ir.decode(ir.encode(compile_ok(SOURCE).program))
    prog.functions[0].instructions.insert(0, ir.Instr("POP"))
    with pytest.raises(IRLoadError, match="stack underflow"):
        link(prog)


def test_load_object_rejects_what_load_bytes_rejects() -> None:
    p = program()
    fn(p)["instructions"].insert(0, {"op": "SWAP"})
    with pytest.raises(IRLoadError, match="instruction 0 \\(SWAP\\): stack underflow"):
        load_object(p)


def test_the_host_loads_a_deep_dict_without_recursing_through_it() -> None:
    from concerto import LoadError, Runtime

    p = program()
    deep: list[Any] = []
    inner = deep
    for _ in range(100_000):
        inner.append([])
        inner = inner[0]
    code = fn(p)["instructions"]
    code[index_of(code, "LOAD_CONST")]["arg"] = deep
    with pytest.raises(LoadError, match="`arg` must be an integer, not an array"):
        Runtime().load_ir(p)
