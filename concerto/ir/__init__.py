"""The `.conc-ir` contract between the compiler and the VM.

    format    the msgspec Structs of spec 16 (re-exported here: `ir.Program`, ...)
    opcodes   the opcode table: operands, stack effects, flags
    verify    the loader's verifier: operands, stack depths, try-frames
    disasm    instruction records and the readable listing
"""

from concerto.ir.format import *  # noqa: F403 - the format's Structs are this package's surface
from concerto.ir.format import IR_VERSION, REQUIRED_SECTIONS, decode, encode  # noqa: F401
from concerto.ir.opcodes import EXTENSION_OPCODES, IR_OPCODES, SPEC_OPCODES  # noqa: F401

# Every opcode an IR file may use (the table's rows minus linker superinstructions).
ALL_OPCODES = IR_OPCODES
