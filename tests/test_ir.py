"""The `.conc-ir` format: snapshots of the examples, determinism, the loader's
refusals (spec 16 versioning and validation), and the CLI's compile / run /
disasm / jsonl paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from concerto import ir
from concerto.compiler import compile_file, compile_source
from concerto.vm.loader import IRLoadError, load_bytes
from concerto.vm.machine import Machine
from concerto.vm.values import to_json
from conftest import REPO, cli, example_files, rendered

EXAMPLES = example_files()


def _example_id(path: Path) -> str:
    return path.stem


# ---------------------------------------------------------------- example snapshots

@pytest.mark.skipif(not EXAMPLES, reason="no examples/*.conc yet")
@pytest.mark.parametrize("path", EXAMPLES, ids=[_example_id(p) for p in EXAMPLES] or None)
def test_example_ir_snapshot(path, snapshot, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    first = compile_file(path)
    assert first.ok, rendered(first)
    data = ir.encode(first.program)
    second = compile_file(path)
    assert second.ok
    assert ir.encode(second.program) == data, "compiling twice gave different IR"
    assert first.program.metadata.compiled_at == "1970-01-01T00:00:00Z"
    # The IR must load (it is what the VM would run).
    load_bytes(data)
    assert data.decode("utf-8") == snapshot


def test_ir_identical_across_processes_with_different_hash_seeds(tmp_path):
    # One subprocess per hash seed compiles every example (and a fixed program)
    # and prints the IR digests: set/dict ordering must not leak into the IR.
    fixed = tmp_path / "fixed.conc"
    fixed.write_text(PROGRAM)
    files = [str(p) for p in EXAMPLES] + [str(fixed)]
    script = textwrap.dedent("""
        import hashlib, sys
        from concerto import ir
        from concerto.compiler import compile_file
        for f in sys.argv[1:]:
            r = compile_file(f)
            print(f, hashlib.sha256(ir.encode(r.program)).hexdigest() if r.ok else "error")
    """)
    digests = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed, SOURCE_DATE_EPOCH="0")
        proc = subprocess.run([sys.executable, "-c", script, *files], capture_output=True, text=True, env=env,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        digests.append(proc.stdout)
    assert digests[0] == digests[1]
    assert "error" not in digests[0].split()


def test_compiled_at_null_without_source_date_epoch(monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    result = compile_source(PROGRAM, "p.conc")
    assert result.ok
    a = ir.encode(result.program)
    b = ir.encode(compile_source(PROGRAM, "p.conc").program)
    assert a == b
    assert json.loads(a)["metadata"]["compiled_at"] is None  # no timestamp: output stays reproducible


# ---------------------------------------------------------------- IR shape

PROGRAM = textwrap.dedent('''
    struct Point { x: Int, y: Int }
    enum Shape { Dot, Circle(Int), Rect(Int, Int) }
    const LIMIT: Int = 3;
    fn total(items: Array<Int>) -> Int {
        let mut sum = 0;
        for i in items { if i < LIMIT { sum += i; } }
        sum
    }
    fn main() {
        let greeting = "hello";
        emit("greeting", greeting);
        emit("total", total([1, 2, 3, 4]));
        emit("point", Point { x: 1, y: 2 });
        emit("shape", Shape::Rect(3, 4));
    }
''')


def _program_json() -> dict:
    result = compile_source(PROGRAM, "p.conc")
    assert result.ok, rendered(result)
    return json.loads(ir.encode(result.program))


def _run(raw: bytes) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    Machine(load_bytes(raw), on_emit=lambda c, p: out.append((c, to_json(p)))).run_main()
    return out


def _fn(doc: dict, name: str) -> dict:
    return next(f for f in doc["functions"] if f["name"] == name)


def test_ir_top_level_sections_follow_spec16():
    doc = _program_json()
    assert doc["version"] == ir.IR_VERSION == "0.1.0"
    for key in ("version", "module", "source_file", "constants", "types", "functions", "source_map", "metadata"):
        assert key in doc, key
    assert doc["source_file"] == "p.conc"
    assert doc["metadata"]["compiler_version"]
    for i, c in enumerate(doc["constants"]):
        assert c["index"] == i
        assert c["type"] in ("string", "int", "float", "bool", "nil")
    kinds = {t["name"]: t["kind"] for t in doc["types"]}
    assert kinds["Point"] == "struct" and kinds["Shape"] == "enum"
    shape = next(t for t in doc["types"] if t["name"] == "Shape")
    assert [v["name"] for v in shape["variants"]] == ["Dot", "Circle", "Rect"]
    main = _fn(doc, "main")
    assert all("op" in ins and len(ins["span"]) == 2 for ins in main["instructions"])
    assert main["instructions"][-1]["op"] == "RETURN"
    assert {m["function"] for m in doc["source_map"]["mappings"]} >= {"main", "total"}



def test_ir_functions_and_metadata_carry_every_spec16_field():
    doc = _program_json()
    for fn in doc["functions"]:
        for key in ("name", "module", "visibility", "params", "return_type", "is_async", "locals", "instructions"):
            assert key in fn, (fn["name"], key)
    for key in ("compiler_version", "optimization_level", "debug_info", "entry_point"):
        assert key in doc["metadata"], key
    assert doc["metadata"]["entry_point"] == "main"


def test_ir_has_every_spec16_top_level_section():
    doc = _program_json()
    for key in ("version", "module", "source_file", "constants", "types", "functions", "models", "tools",
                "mcp_connections", "schemas", "connections", "hashmaps", "pipelines", "source_map", "metadata"):
        assert key in doc, key


def test_ir_round_trip_through_json_runs():
    raw = json.dumps(_program_json()).encode()
    assert _run(raw) == [
        ("greeting", "hello"),
        ("total", 3),
        ("point", {"x": 1, "y": 2}),
        ("shape", {"variant": "Rect", "data": [3, 4]}),
    ]


def test_ir_decode_encode_is_stable():
    result = compile_source(PROGRAM, "p.conc")
    data = ir.encode(result.program)
    assert ir.encode(ir.decode(data)) == data


# ---------------------------------------------------------------- loader refusals

def _mutate(fn) -> bytes:
    doc = _program_json()
    fn(doc)
    return json.dumps(doc).encode()


def _first(doc: dict, fname: str, ops: tuple[str, ...]) -> tuple[int, dict]:
    for i, ins in enumerate(_fn(doc, fname)["instructions"]):
        if ins["op"] in ops:
            return i, ins
    raise AssertionError(f"no {ops} in {fname}")


def _bad_version(doc):
    doc["version"] = "1.0.0"


def _missing_functions(doc):
    del doc["functions"]


def _unknown_opcode(doc):
    _fn(doc, "main")["instructions"][2]["op"] = "FROBNICATE"


def _bad_jump(doc):
    i, ins = _first(doc, "total", ("JUMP", "JUMP_IF_FALSE", "JUMP_IF_TRUE"))
    ins["arg"] = 9999


def _unknown_local(doc):
    i, ins = _first(doc, "total", ("LOAD_LOCAL",))
    ins["name"] = "no_such_local"


def _bad_constant(doc):
    i, ins = _first(doc, "main", ("LOAD_CONST",))
    ins["arg"] = 100_000


REFUSALS = {
    "major_version": (_bad_version, ["1.0.0"]),
    "missing_functions": (_missing_functions, ["functions"]),
    "unknown_opcode": (_unknown_opcode, ["FROBNICATE", "main", "instruction 2"]),
    "bad_jump_target": (_bad_jump, ["jump target", "9999", "total"]),
    "unknown_local": (_unknown_local, ["no_such_local", "total"]),
    "bad_constant_index": (_bad_constant, ["constant", "100000", "main"]),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_loader_refuses(name):
    mutate, fragments = REFUSALS[name]
    with pytest.raises(IRLoadError) as info:
        load_bytes(_mutate(mutate))
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_loader_unknown_opcode_names_function_and_index():
    def mutate(doc):
        _fn(doc, "total")["instructions"][4]["op"] = "NOPE"
    with pytest.raises(IRLoadError) as info:
        load_bytes(_mutate(mutate))
    assert "`total`" in str(info.value) and "instruction 4" in str(info.value) and "NOPE" in str(info.value)


@pytest.mark.parametrize("data", [b"", b"not json", b"{", b'{"version": "0.1.0",', "\u00ff\u00fe".encode("latin-1")])
def test_loader_refuses_non_json(data):
    with pytest.raises(IRLoadError) as info:
        load_bytes(data)
    assert "JSON" in str(info.value)


@pytest.mark.parametrize("data", [b"[]", b"42", b'"0.1.0"', b"null"])
def test_loader_refuses_non_object(data):
    with pytest.raises(IRLoadError):
        load_bytes(data)


@pytest.mark.parametrize("version", [None, 1, "abc", "0", ""])
def test_loader_refuses_bad_version_field(version):
    def mutate(doc):
        if version is None:
            del doc["version"]
        else:
            doc["version"] = version
    with pytest.raises(IRLoadError):
        load_bytes(_mutate(mutate))


def test_minor_version_mismatch_warns_but_runs():
    def mutate(doc):
        doc["version"] = "0.2.0"
    program = load_bytes(_mutate(mutate))
    assert program.warnings and "0.2.0" in program.warnings[0]
    out: list = []
    Machine(program, on_emit=lambda c, p: out.append(c)).run_main()
    assert out == ["greeting", "total", "point", "shape"]


def test_patch_version_mismatch_is_silent():
    def mutate(doc):
        doc["version"] = "0.1.7"
    program = load_bytes(_mutate(mutate))
    assert program.warnings == []


def test_loader_refuses_missing_entry_point():
    def mutate(doc):
        doc["functions"] = [f for f in doc["functions"] if f["name"] != "main"]
    with pytest.raises(IRLoadError) as info:
        load_bytes(_mutate(mutate))
    assert "main" in str(info.value)


def test_loader_refuses_wrong_field_type():
    def mutate(doc):
        _fn(doc, "main")["instructions"][0]["span"] = "here"
    with pytest.raises(IRLoadError):
        load_bytes(_mutate(mutate))


def test_loader_refuses_call_to_unknown_function():
    def mutate(doc):
        i, ins = _first(doc, "main", ("CALL",))
        ins["name"] = "ghost"
    with pytest.raises(IRLoadError) as info:
        load_bytes(_mutate(mutate))
    assert "ghost" in str(info.value)


# ---------------------------------------------------------------- CLI

CLI_REFUSALS = {
    "major_version": (_bad_version, "1.0.0"),
    "missing_functions": (_missing_functions, "functions"),
    "unknown_opcode": (_unknown_opcode, "FROBNICATE"),
    "bad_jump_target": (_bad_jump, "9999"),
    "unknown_local": (_unknown_local, "no_such_local"),
    "bad_constant_index": (_bad_constant, "100000"),
    "not_json": (None, "JSON"),
}


@pytest.mark.parametrize("name", list(CLI_REFUSALS))
def test_cli_run_refuses_bad_ir(name, tmp_path):
    mutate, fragment = CLI_REFUSALS[name]
    path = tmp_path / "bad.conc-ir"
    path.write_bytes(b"this is {not json" if mutate is None else _mutate(mutate))
    code, out, err = cli("run", str(path))
    assert code == 1, err
    assert "Traceback" not in err
    assert "invalid IR" in err and fragment in err
    assert out == ""


def test_cli_minor_version_warns_and_runs(tmp_path):
    def mutate(doc):
        doc["version"] = "0.9.1"
    path = tmp_path / "minor.conc-ir"
    path.write_bytes(_mutate(mutate))
    code, out, err = cli("run", "--emit-format", "jsonl", str(path))
    assert code == 0, err
    assert "warning" in err and "0.9.1" in err
    assert len(out.splitlines()) == 4


def test_cli_compile_then_run_round_trip(tmp_path):
    src = tmp_path / "x.conc"
    src.write_text(PROGRAM)
    out_ir = tmp_path / "x.conc-ir"
    code, _, err = cli("compile", str(src), "-o", str(out_ir))
    assert code == 0, err
    doc = json.loads(out_ir.read_text())
    assert doc["version"] == "0.1.0" and doc["source_file"] == "x.conc"
    code, out, err = cli("run", "--emit-format", "jsonl", str(out_ir))
    assert code == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"channel": "greeting", "payload": "hello"},
        {"channel": "total", "payload": 3},
        {"channel": "point", "payload": {"x": 1, "y": 2}},
        {"channel": "shape", "payload": {"variant": "Rect", "data": [3, 4]}},
    ]


def test_cli_disasm_lists_functions_and_constants(tmp_path):
    src = tmp_path / "x.conc"
    src.write_text(PROGRAM)
    code, out, err = cli("disasm", str(src))
    assert code == 0, err
    assert "fn main() -> " in out
    assert "fn total(items: " in out
    assert '("hello")' in out and '("greeting")' in out
    assert "LOAD_CONST" in out and "RETURN" in out
    # Jump targets are marked and shown as "-> n".
    assert ">>" in out and "-> " in out


def test_cli_jsonl_spec20_mapping(tmp_path):
    src = tmp_path / "emits.conc"
    src.write_text(textwrap.dedent('''
        struct User { name: String, age: Int }
        enum Shape { Dot, Circle(Float), Rect(Int, Int), Tri { a: Int, b: Int } }
        fn main() {
            emit("int", 1);
            emit("float", 2.5);
            emit("string", "line\\nbreak \\"q\\"");
            emit("bool", true);
            emit("nil", nil);
            emit("array", [1, 2]);
            emit("map", {"k": [true]});
            emit("tuple", (1, "a"));
            emit("struct", User { name: "Ann", age: 3 });
            emit("some", Some(5));
            emit("none", None);
            emit("ok", Ok("fine"));
            emit("err", Err("bad"));
            emit("unit_variant", Shape::Dot);
            emit("one_field", Shape::Circle(1.5));
            emit("many_fields", Shape::Rect(2, 3));
            emit("named_fields", Shape::Tri { a: 1, b: 2 });
            emit("nested", Some(Ok([Shape::Dot])));
            emit("no_payload");
        }
    '''))
    code, out, err = cli("run", "--emit-format", "jsonl", str(src))
    assert code == 0, err
    lines = out.splitlines()
    objects = [json.loads(line) for line in lines]
    assert all(set(o) == {"channel", "payload"} for o in objects)
    assert all(line.startswith("{") and line.endswith("}") for line in lines)
    got = {o["channel"]: o["payload"] for o in objects}
    assert list(got) == ["int", "float", "string", "bool", "nil", "array", "map", "tuple", "struct", "some",
                         "none", "ok", "err", "unit_variant", "one_field", "many_fields", "named_fields",
                         "nested", "no_payload"]
    assert got == {
        "int": 1,
        "float": 2.5,
        "string": 'line\nbreak "q"',
        "bool": True,
        "nil": None,
        "array": [1, 2],
        "map": {"k": [True]},
        "tuple": [1, "a"],
        "struct": {"name": "Ann", "age": 3},
        "some": 5,
        "none": None,
        "ok": {"ok": "fine"},
        "err": {"err": "bad"},
        "unit_variant": {"variant": "Dot", "data": None},
        "one_field": {"variant": "Circle", "data": 1.5},
        "many_fields": {"variant": "Rect", "data": [2, 3]},
        "named_fields": {"variant": "Tri", "data": {"a": 1, "b": 2}},
        "nested": {"ok": [{"variant": "Dot", "data": None}]},
        "no_payload": None,
    }
    assert isinstance(got["float"], float) and isinstance(got["int"], int)


@pytest.mark.skipif(not EXAMPLES, reason="no examples/*.conc yet")
def test_cli_runs_an_example_as_jsonl():
    path = next((p for p in EXAMPLES if p.stem == "tour"), EXAMPLES[0])
    code, out, err = cli("run", "--emit-format", "jsonl", str(path), cwd=str(REPO))
    assert code == 0, err
    lines = out.splitlines()
    assert lines
    for line in lines:
        obj = json.loads(line)
        assert set(obj) == {"channel", "payload"} and isinstance(obj["channel"], str)


def _expected(path: Path) -> Path:
    return path.parent / "expected" / (path.stem + ".jsonl")


WITH_EXPECTED = [p for p in EXAMPLES if _expected(p).is_file()]


@pytest.mark.skipif(not WITH_EXPECTED, reason="no examples/expected/*.jsonl yet")
@pytest.mark.parametrize("path", WITH_EXPECTED, ids=[p.stem for p in WITH_EXPECTED] or None)
def test_example_output_matches_expected_jsonl(path):
    # In process (no subprocess): compile -> IR bytes -> load -> run, then compare
    # with the recorded `concerto run --emit-format jsonl` output, line by line.
    result = compile_file(path)
    assert result.ok, rendered(result)
    out: list[dict] = []
    Machine(load_bytes(ir.encode(result.program)),
            on_emit=lambda c, p: out.append({"channel": c, "payload": to_json(p)}),
            on_log=lambda level, message: None).run_main()
    expected = [json.loads(line) for line in _expected(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    assert out == expected
