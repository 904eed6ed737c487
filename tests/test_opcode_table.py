"""The opcode table is the one source: docs, disassembler, verifier and both
execution tiers read it."""

from __future__ import annotations

import json
import re

from concerto import ir
from concerto.ir import opcodes as O
from concerto.ir.disasm import disassemble, get_instructions
from concerto.vm.loader import load_bytes
from conftest import REPO, cli, compile_ok

PROGRAM = '''
    fn pick(x: Option<Int>) -> Int { x ?? 7 }
    fn main() {
        let mut total = 0;
        for i in [1, 2, 3] { if i > 1 { total += i; } }
        let r = try { [1][3] } catch { 0 };
        emit("out", (total, r, pick(None)));
    }
'''


def test_docs_ir_md_lists_the_table() -> None:
    text = (REPO / "docs" / "ir.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- opcodes:begin -->\n(.*?)<!-- opcodes:end -->", text, re.S)
    assert block is not None
    assert block.group(1) == O.markdown()


def test_codes_are_dense_and_linker_rows_are_not_ir() -> None:
    assert sorted(O.CODES.values()) == list(range(len(O.TABLE)))
    assert O.IR_OPCODES == {name for name, info in O.TABLE.items() if not info.has(O.Flags.LINKED)}
    assert ir.ALL_OPCODES == O.IR_OPCODES
    assert O.SPEC_OPCODES | O.EXTENSION_OPCODES == O.IR_OPCODES
    # Every jump opcode carries its target as a TARGET operand (or is made by the linker).
    for info in O.TABLE.values():
        if info.has(O.Flags.JUMP) and not info.has(O.Flags.LINKED):
            assert info.operands[0].kind is O.Kind.TARGET and info.jump_pushes is not None, info.name


def test_the_interpreter_handles_every_opcode_of_the_table() -> None:
    # The dispatch loop tests hot opcodes by number (vm/machine.py asserts those
    # numbers against the table) and the rest by name through the table.
    import concerto.vm.machine as machine

    source = (REPO / "vm" / "machine.py").read_text(encoding="utf-8")
    hot = {int(n) for n in re.findall(r"op == (\d+):", source)}
    for name, info in O.TABLE.items():
        if name in ("CALL_MODEL_CHAT", "CALL_MODEL_SCHEMA", "CALL_MODEL_STREAM"):
            continue  # linked to CALL_MODEL
        assert info.code in hot or f"O.{name}" in source, name
    assert machine.Machine is not None


def test_get_instructions_gives_records_with_verified_depths() -> None:
    result = compile_ok(PROGRAM)
    linked = load_bytes(ir.encode(result.program))
    main = next(f for f in result.program.functions if f.name == "main")
    records = list(get_instructions(main, result.program, linked.functions["main"].depths))
    assert [r.offset for r in records] == list(range(len(main.instructions)))
    assert [r.opname for r in records] == [i.op for i in main.instructions]
    assert records[0].stack_depth == 0
    jumps = [r for r in records if r.jump_target is not None]
    assert jumps and all(records[r.jump_target].is_jump_target for r in jumps)
    for r in records:
        declared = {o.field for o in O.TABLE[r.opname].operands}
        assert set(r.operands) <= declared
        assert (r.line, r.column) == tuple(main.instructions[r.offset].span)
    try_begin = next(r for r in records if r.opname == "TRY_BEGIN")
    # The handler starts at the TRY_BEGIN's depth plus the error.
    assert records[try_begin.jump_target].stack_depth == try_begin.stack_depth + 1
    text = disassemble(result.program)
    assert "TRY_BEGIN" in text and "-> " in text


def test_cli_disasm_json_gives_one_record_per_instruction(tmp_path) -> None:
    src = tmp_path / "p.conc"
    src.write_text(PROGRAM)
    code, out, err = cli("disasm", "--json", str(src))
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    program = compile_ok(PROGRAM).program
    assert len(rows) == sum(len(f.instructions) for f in program.functions)
    first = rows[0]
    assert set(first) == {"function", "offset", "opname", "operands", "argrepr", "jump_target", "is_jump_target",
                          "stack_depth", "line", "column"}
    assert any(r["opname"] == "ITER_NEXT" and r["jump_target"] is not None for r in rows)
    code, out, err = cli("disasm", str(src))
    assert code == 0 and "fn main() -> " in out


def test_cli_disasm_refuses_invalid_ir(tmp_path) -> None:
    program = json.loads(ir.encode(compile_ok(PROGRAM).program))
    program["functions"][-1]["instructions"].insert(0, {"op": "POP"})
    bad = tmp_path / "bad.conc-ir"
    bad.write_text(json.dumps(program))
    code, out, err = cli("disasm", str(bad))
    assert code == 1 and "invalid IR" in err and "stack underflow" in err and "Traceback" not in err, err
