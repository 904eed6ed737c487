"""Opcode numbers for linked code. Hot opcodes get the lowest numbers because
the dispatch loop tests them first."""

from concerto.ir import ALL_OPCODES

_HOT = [
    "LOAD_LOCAL", "LOAD_CONST", "STORE_LOCAL", "JUMP_IF_FALSE", "ADD", "SUB", "LT", "CALL",
    "RETURN", "JUMP", "MUL", "GT", "LTE", "GTE", "EQ", "NEQ", "FIELD_GET", "CALL_METHOD",
    "POP", "INDEX_GET", "ITER_NEXT", "JUMP_IF_TRUE", "DIV", "MOD", "LOAD_GLOBAL", "DUP",
    "CALL_VALUE", "CALL_NATIVE", "BUILD_STRING", "BUILD_STRUCT", "NOT",
    # Superinstructions made by the linker (loader._fuse); never in IR files.
    "LC_LT_JIF", "C_ADD", "C_SUB", "C_MUL", "C_MOD", "INC_LOCAL", "CMP_JIF",
]
FUSED = {"LC_LT_JIF", "C_ADD", "C_SUB", "C_MUL", "C_MOD", "INC_LOCAL", "CMP_JIF"}
CODES: dict[str, int] = {}
for _name in _HOT + sorted(ALL_OPCODES - set(_HOT)):
    CODES[_name] = len(CODES)
NAMES = {v: k for k, v in CODES.items()}
globals().update(CODES)
