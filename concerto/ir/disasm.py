"""Disassembly as data and as text, like Python's `dis`.

`get_instructions(fn, program)` yields one `Instruction` record per IR
instruction: its operands as the opcode table names them, a readable form of
them, jump targets, the verified stack depth before it, and its source span.
`disassemble(program)` renders those records as the listing `concerto disasm`
prints. Only operands the table declares are read, so stray fields in an IR
file never reach the output.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from concerto.ir import format as F
from concerto.ir.opcodes import TABLE, Flags, Kind


@dataclass(frozen=True)
class Instruction:
    offset: int
    opname: str
    operands: dict[str, Any]  # IR field -> value, for the operands the table declares
    argrepr: str  # the operands, readable (constants resolved, targets as `-> n`)
    jump_target: int | None
    is_jump_target: bool
    stack_depth: int | None  # before the instruction; None when unknown or unreachable
    line: int
    column: int
    flags: Flags


def get_instructions(fn: F.Function, program: F.Program, depths: list[int] | None = None) -> Iterator[Instruction]:
    """The records of one function. `depths` (from the verifier) fills in
    `stack_depth`; without it the depth is None."""
    code = fn.instructions
    targets = {ins.arg for ins in code if _is_jump(ins)}
    for offset, ins in enumerate(code):
        info = TABLE.get(ins.op)
        operands = {o.field: getattr(ins, o.field) for o in info.operands if getattr(ins, o.field) is not None} \
            if info is not None else {}
        depth = depths[offset] if depths is not None and offset < len(depths) and depths[offset] >= 0 else None
        yield Instruction(
            offset=offset,
            opname=ins.op,
            operands=operands,
            argrepr=_argrepr(ins, program.constants),
            jump_target=ins.arg if _is_jump(ins) else None,
            is_jump_target=offset in targets,
            stack_depth=depth,
            line=ins.span[0],
            column=ins.span[1],
            flags=info.flags if info is not None else Flags.NONE,
        )


def disassemble(program: F.Program, depths: Mapping[str, list[int]] | None = None) -> str:
    """The listing: per function its signature, locals, then one line per
    instruction (`>>` marks jump targets; the depth column shows the stack
    before the instruction when `depths` is given)."""
    lines: list[str] = []
    for fn in program.functions:
        params = ", ".join(f"{p.name}: {p.type}" for p in fn.params)
        lines.append(f"fn {fn.name}({params}) -> {fn.return_type}")
        if fn.captures:
            lines.append(f"  captures: {', '.join(fn.captures)}")
        lines.append(f"  locals: {', '.join(fn.locals) if fn.locals else '-'}")
        fn_depths = depths.get(fn.name) if depths is not None else None
        for rec in get_instructions(fn, program, fn_depths):
            mark = ">>" if rec.is_jump_target else "  "
            span = f"{rec.line}:{rec.column}"
            depth = ""
            if fn_depths is not None:
                depth = f"{rec.stack_depth if rec.stack_depth is not None else '-':>5}  "
            lines.append(f"  {mark}{rec.offset:>4}  {span:>8}  {depth}{rec.opname:<15} {rec.argrepr}".rstrip())
        lines.append("")
    return "\n".join(lines)


def _is_jump(ins: F.Instr) -> bool:
    info = TABLE.get(ins.op)
    return info is not None and info.has(Flags.JUMP) and type(ins.arg) is int


def _argrepr(ins: F.Instr, constants: list[F.Constant]) -> str:
    info = TABLE.get(ins.op)
    if info is None:
        return ""
    parts: list[str] = []
    for operand in info.operands:
        value = getattr(ins, operand.field)
        if value is None:
            continue
        kind = operand.kind
        if kind in (Kind.CONST, Kind.MESSAGE) and type(value) is int and 0 <= value < len(constants):
            parts.append(f"{value}  ({_show(constants[value].value)})")
        elif kind is Kind.TARGET:
            parts.append(f"-> {value}")
        elif kind is Kind.NAMES and type(value) is list:
            parts.append("{" + ", ".join(str(v) for v in value) + "}")
        elif operand.field == "argc":
            parts.append(f"argc={value}")
        elif kind is Kind.VARIANT and ins.type_name is not None:
            parts[-1:] = [f"{ins.type_name}::{value}"] if parts and parts[-1] == ins.type_name else [f"::{value}"]
        elif type(value) is str:
            parts.append(value)
        else:
            parts.append(_show(value))
    return "  ".join(parts)


def _show(value: object) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return '"' + text.replace("\n", "\\n") + '"'
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return f"<{type(value).__name__}>"
