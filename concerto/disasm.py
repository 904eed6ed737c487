"""A readable listing of IR, one block per function (like CPython's `dis`)."""

from __future__ import annotations

from concerto import ir


def disassemble(program: ir.Program) -> str:
    lines: list[str] = []
    constants = program.constants
    for fn in program.functions:
        params = ", ".join(f"{p.name}: {p.type}" for p in fn.params)
        lines.append(f"fn {fn.name}({params}) -> {fn.return_type}")
        if fn.captures:
            lines.append(f"  captures: {', '.join(fn.captures)}")
        lines.append(f"  locals: {', '.join(fn.locals) if fn.locals else '-'}")
        targets = {ins.arg for ins in fn.instructions
                   if ins.op in ("JUMP", "JUMP_IF_TRUE", "JUMP_IF_FALSE", "TRY_BEGIN", "ITER_NEXT", "COALESCE")}
        for i, ins in enumerate(fn.instructions):
            mark = ">>" if i in targets else "  "
            span = f"{ins.span[0]}:{ins.span[1]}"
            lines.append(f"  {mark}{i:>4}  {span:>8}  {ins.op:<15} {_operands(ins, constants)}".rstrip())
        lines.append("")
    return "\n".join(lines)


def _operands(ins: ir.Instr, constants: list[ir.Constant]) -> str:
    parts: list[str] = []
    if ins.op in ("LOAD_CONST", "MATCH_FAIL") and isinstance(ins.arg, int) and 0 <= ins.arg < len(constants):
        c = constants[ins.arg]
        parts.append(f"{ins.arg}  ({_show(c.value)})")
    elif ins.arg is not None:
        parts.append(f"-> {ins.arg}" if ins.op in ("JUMP", "JUMP_IF_TRUE", "JUMP_IF_FALSE", "TRY_BEGIN",
                                                     "ITER_NEXT", "COALESCE") else repr(ins.arg))
    if ins.type_name:
        parts.append(ins.type_name + (f"::{ins.name}" if ins.name and ins.op in ("BUILD_VARIANT", "TEST_VARIANT") else ""))
    if ins.name and not (ins.type_name and ins.op in ("BUILD_VARIANT", "TEST_VARIANT")):
        parts.append(ins.name)
    if ins.names:
        parts.append("{" + ", ".join(ins.names) + "}")
    if ins.argc is not None:
        parts.append(f"argc={ins.argc}")
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
    return repr(value)
