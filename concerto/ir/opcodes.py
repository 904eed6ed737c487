"""The opcode table: one row per opcode, and the only place an opcode's shape
is written down (CPython's `bytecodes.c` plays this part there).

A row gives the operands an instruction carries (which field of the IR
instruction, of what kind), its stack effect (values popped; values pushed on
the fall-through path and on the jump edge), and flags. Everything else reads
it: the loader's verifier (concerto/ir/verify.py) checks operands and stack
depths with it, the disassembler labels operands and jump targets with it,
the linker and both execution tiers take their opcode numbers, jump sets and
the verified stack depths from it, and docs/ir.md's opcode list is generated
from it (tests/test_opcode_table.py keeps the two in step).

Opcode numbers follow the row order. The hot opcodes come first because the
dispatch loop (vm/machine.py) tests them first, by literal number.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, Flag, auto
from typing import Any, Callable


class Flags(Flag):
    NONE = 0
    JUMP = auto()      # `arg` is a jump target: an instruction index of the same function
    STOP = auto()      # control never falls through to the next instruction
    CALL = auto()      # runs other code: a function, closure, method, native or stage
    SUSPEND = auto()   # may wait on the event loop (an await point)
    EFFECT = auto()    # reaches outside the VM: the host, a model, a tool
    TRY_PUSH = auto()  # opens a try-frame whose handler is the jump target
    TRY_POP = auto()   # closes the innermost try-frame of the function
    LINKED = auto()    # a superinstruction the linker makes; never valid in an IR file


class Kind(str, Enum):
    """What an operand holds; concerto/ir/verify.py checks each kind."""

    COUNT = "count"              # Int >= 0
    TARGET = "target"            # instruction index of the same function
    CONST = "const"              # index into `constants`
    MESSAGE = "message"          # index of a String constant
    LITERAL = "literal"          # a scalar: Int (64-bit), Float, String, Bool or nil
    BOOL = "bool"
    LOCAL = "local"              # a name in the function's `locals`
    GLOBAL = "global"            # a global's name
    FUNCTION = "function"        # a name in `functions`
    NATIVE = "native"            # a std:: function or a VM built-in
    NAME = "name"                # a method or field name
    TYPE = "type"                # a type name
    VARIANT = "variant"          # a variant name of `type_name`
    NAMES = "names"              # field names (Strings)
    MODEL = "model"              # a name in `models`
    MODEL_METHOD = "model_method"
    SCHEMA = "schema"            # a name in `schemas`
    HASHMAP = "hashmap"          # a name in `hashmaps`
    PIPELINE = "pipeline"        # a name in `pipelines`
    SLICE_MODE = "slice_mode"    # Bool (inclusive end) or "rest" (array patterns)
    POSITION = "position"        # Int >= 0 (tuple payload) or String (struct payload)
    LEN_MODE = "len_mode"        # "==", ">=" or "tuple"


@dataclass(frozen=True)
class Operand:
    field: str  # the IR instruction field: arg, name, argc, type_name or names
    kind: Kind
    required: bool = True


@dataclass(frozen=True)
class Count:
    """A stack count that depends on the instruction's operands."""

    text: str  # how docs/ir.md writes it
    of: Callable[[Any], int]


@dataclass(frozen=True)
class OpInfo:
    name: str
    code: int
    operands: tuple[Operand, ...]
    # Values popped: a number, or a Count of the IR instruction.
    pops: int | Count
    pushes: int  # on the fall-through path
    jump_pushes: int | None  # pushed on the jump edge (after the pops); None: no jump edge
    flags: Flags
    spec: bool  # listed in spec 16; False: this implementation's extension
    doc: str

    def popped(self, ins: Any) -> int:
        return self.pops if type(self.pops) is int else self.pops.of(ins)  # type: ignore[union-attr]

    def has(self, flag: Flags) -> bool:
        return bool(self.flags & flag)


# Operand helpers -------------------------------------------------------------

def count_of(ins: Any) -> int:
    """A count lives in `arg`; producers that put it in `argc` are read too."""
    return ins.arg if ins.arg is not None else ins.argc


def argc_of(ins: Any) -> int:
    return ins.argc if ins.argc is not None else 0


def variant_pops(ins: Any) -> int:
    if ins.type_name == "Option":
        return 1 if ins.name == "Some" else 0
    if ins.type_name == "Result":
        return 1
    return argc_of(ins)


def model_pops(ins: Any) -> int:
    # Without a model name the receiver (a model or builder value) is under the arguments.
    return argc_of(ins) + (1 if ins.name is None else 0)


ARGC = Count("argc", argc_of)
RECEIVER_AND_ARGC = Count("argc + 1", lambda ins: argc_of(ins) + 1)
COUNT = Count("count", count_of)
PAIRS = Count("2 * count", lambda ins: 2 * count_of(ins))
FIELDS = Count("len(names)", lambda ins: len(ins.names or ()))
VARIANT_VALUES = Count("argc (Some, Ok, Err: 1; None: 0)", variant_pops)
MODEL_ARGS = Count("argc (+ 1 receiver when `name` is absent)", model_pops)

MODEL_METHODS = ("execute", "chat", "stream", "with_memory", "with_tools", "without_tools")
LEN_MODES = ("==", ">=", "tuple")

_ARG_COUNT = (Operand("arg", Kind.COUNT),)
_ARGC = Operand("argc", Kind.COUNT, required=False)
_TARGET = (Operand("arg", Kind.TARGET),)
_N = Flags.NONE
_OPTIONAL_MODEL = Operand("name", Kind.MODEL, required=False)

# name, operands, pops, pushes, jump_pushes, flags, spec, doc
_ROWS: list[tuple] = [
    # -- hot: the dispatch loop tests these first, by number ------------------------
    ("LOAD_LOCAL", (Operand("name", Kind.LOCAL),), 0, 1, None, _N, True, "push a local"),
    ("LOAD_CONST", (Operand("arg", Kind.CONST),), 0, 1, None, _N, True, "push a constant of the pool"),
    ("STORE_LOCAL", (Operand("name", Kind.LOCAL),), 1, 0, None, _N, True, "pop into a local"),
    ("JUMP_IF_FALSE", _TARGET, 1, 0, 0, Flags.JUMP, True, "pop; jump when it is false"),
    ("ADD", (), 2, 1, None, _N, True, "pop two, push the sum (or the concatenation)"),
    ("SUB", (), 2, 1, None, _N, True, "pop two, push the difference"),
    ("LT", (), 2, 1, None, _N, True, "pop two, push `<`"),
    ("CALL", (Operand("name", Kind.FUNCTION), _ARGC), ARGC, 1, None, Flags.CALL, True,
     "call a function with argc arguments"),
    ("RETURN", (), 1, 0, None, Flags.STOP, True, "return the top value"),
    ("JUMP", _TARGET, 0, 0, 0, Flags.JUMP | Flags.STOP, True, "jump"),
    ("MUL", (), 2, 1, None, _N, True, "pop two, push the product"),
    ("GT", (), 2, 1, None, _N, True, "pop two, push `>`"),
    ("LTE", (), 2, 1, None, _N, True, "pop two, push `<=`"),
    ("GTE", (), 2, 1, None, _N, True, "pop two, push `>=`"),
    ("EQ", (), 2, 1, None, _N, True, "pop two, push `==`"),
    ("NEQ", (), 2, 1, None, _N, True, "pop two, push `!=`"),
    ("FIELD_GET", (Operand("name", Kind.NAME),), 1, 1, None, _N, True, "pop a value, push its field"),
    ("CALL_METHOD", (Operand("name", Kind.NAME), _ARGC), RECEIVER_AND_ARGC, 1, None, Flags.CALL, True,
     "call a method on the receiver under the argc arguments"),
    ("POP", (), 1, 0, None, _N, True, "drop the top value"),
    ("INDEX_GET", (), 2, 1, None, _N, True, "pop collection and index, push the element"),
    ("ITER_NEXT", _TARGET, 1, 1, 0, Flags.JUMP, False,
     "pop an iterator; push its next item, or jump when it is exhausted"),
    ("JUMP_IF_TRUE", _TARGET, 1, 0, 0, Flags.JUMP, True, "pop; jump when it is true"),
    ("DIV", (), 2, 1, None, _N, True, "pop two, push the quotient"),
    ("MOD", (), 2, 1, None, _N, True, "pop two, push the remainder"),
    ("LOAD_GLOBAL", (Operand("name", Kind.GLOBAL),), 0, 1, None, _N, True, "push a global"),
    ("DUP", (), 1, 2, None, _N, True, "duplicate the top value"),
    ("CALL_VALUE", (_ARGC,), RECEIVER_AND_ARGC, 1, None, Flags.CALL, False,
     "call the callable value under the argc arguments"),
    ("CALL_NATIVE", (Operand("name", Kind.NATIVE), _ARGC), ARGC, 1, None, Flags.CALL, True,
     "call a std:: function or VM built-in"),
    ("BUILD_STRING", _ARG_COUNT, COUNT, 1, None, _N, False, "concatenate the display text of count values"),
    ("BUILD_STRUCT", (Operand("type_name", Kind.TYPE), Operand("names", Kind.NAMES), _ARGC),
     FIELDS, 1, None, _N, True, "pop one value per field name, push a struct"),
    ("NOT", (), 1, 1, None, _N, True, "pop a Bool, push its negation"),
    # -- superinstructions the linker makes (vm/loader.py `_fuse`) -------------------
    ("LC_LT_JIF", (), 0, 0, 0, Flags.JUMP | Flags.LINKED, False, "local < constant, jump when false"),
    ("C_ADD", (), 1, 1, None, Flags.LINKED, False, "add a constant to the top value"),
    ("C_SUB", (), 1, 1, None, Flags.LINKED, False, "subtract a constant from the top value"),
    ("C_MUL", (), 1, 1, None, Flags.LINKED, False, "multiply the top value by a constant"),
    ("C_MOD", (), 1, 1, None, Flags.LINKED, False, "the top value modulo a constant"),
    ("INC_LOCAL", (), 0, 0, None, Flags.LINKED, False, "add a constant to a local"),
    ("CMP_JIF", (), 2, 0, 0, Flags.JUMP | Flags.LINKED, False, "compare the top two, jump when false"),
    # -- the rest, alphabetically ---------------------------------------------------
    ("AND", (), 2, 1, None, _N, True, "pop two, push logical and"),
    ("AWAIT", (), 1, 1, None, Flags.SUSPEND, True, "pop a value; push a Task's result, or the value itself"),
    ("AWAIT_ALL", _ARG_COUNT, COUNT, 1, None, Flags.SUSPEND | Flags.CALL, True,
     "run count zero-parameter closures as concurrent tasks; push the tuple of their results"),
    ("BUILD_ARRAY", _ARG_COUNT, COUNT, 1, None, _N, True, "pop count values, push an Array"),
    ("BUILD_MAP", _ARG_COUNT, PAIRS, 1, None, _N, True, "pop count key-value pairs, push a Map"),
    ("BUILD_RANGE", (Operand("arg", Kind.BOOL),), 2, 1, None, _N, False,
     "pop lo and hi (nil: open), push a range; arg: inclusive"),
    ("BUILD_TUPLE", _ARG_COUNT, COUNT, 1, None, _N, False, "pop count values, push a tuple"),
    ("BUILD_VARIANT", (Operand("type_name", Kind.TYPE), Operand("name", Kind.VARIANT), _ARGC,
                       Operand("names", Kind.NAMES, required=False)), VARIANT_VALUES, 1, None, _N, False,
     "push an enum variant (Option and Result too) built from argc values"),
    ("CALL_MODEL", (_OPTIONAL_MODEL, Operand("arg", Kind.MODEL_METHOD), _ARGC), MODEL_ARGS, 1, None,
     Flags.SUSPEND | Flags.EFFECT, True, "call a model method"),
    ("CALL_MODEL_CHAT", (_OPTIONAL_MODEL, _ARGC), MODEL_ARGS, 1, None, Flags.SUSPEND | Flags.EFFECT, True,
     "chat with a model (messages on the stack)"),
    ("CALL_MODEL_SCHEMA", (_OPTIONAL_MODEL, Operand("type_name", Kind.SCHEMA), _ARGC), MODEL_ARGS, 1, None,
     Flags.SUSPEND | Flags.EFFECT, True, "call a model and validate the reply against a schema"),
    ("CALL_MODEL_STREAM", (_OPTIONAL_MODEL, _ARGC), MODEL_ARGS, 1, None, Flags.SUSPEND | Flags.EFFECT, True,
     "stream a model's reply"),
    ("CAST", (Operand("type_name", Kind.TYPE),), 1, 1, None, _N, True, "pop a value, push it converted"),
    ("CATCH", (), 0, 0, None, _N, True, "marks a catch block (no effect; handlers start at TRY_BEGIN's target)"),
    ("CHECK_TYPE", (Operand("type_name", Kind.TYPE),), 1, 1, None, _N, True,
     "pop a value, push whether it has the type"),
    ("COALESCE", _TARGET, 1, 0, 1, Flags.JUMP, False,
     "`??`: pop; a present value (Some unwrapped) is pushed and jumps, absent falls through"),
    ("COPY", (), 1, 1, None, _N, False, "replace the top value by a shallow copy"),
    ("EMIT", (), 2, 0, None, Flags.EFFECT, True, "pop channel and payload, send them to the host"),
    ("EMIT_AWAIT", (), 2, 1, None, Flags.SUSPEND | Flags.EFFECT, True,
     "pop channel and payload, push the host's answer"),
    ("FIELD_SET", (Operand("name", Kind.NAME),), 2, 0, None, _N, True, "pop object and value, set the field"),
    ("HASH_MAP_DELETE", (Operand("name", Kind.HASHMAP),), 1, 1, None, _N, True,
     "pop a key, delete it from the hashmap, push the removed value"),
    ("HASH_MAP_GET", (Operand("name", Kind.HASHMAP),), 1, 1, None, _N, True, "pop a key, push the hashmap's entry"),
    ("HASH_MAP_HAS", (Operand("name", Kind.HASHMAP),), 1, 1, None, _N, True, "pop a key, push whether it is present"),
    ("HASH_MAP_SET", (Operand("name", Kind.HASHMAP),), 2, 1, None, _N, True, "pop key and value, store them; push nil"),
    ("INDEX_SET", (), 3, 0, None, _N, True, "pop collection, index and value; store"),
    ("ITER_INIT", (), 1, 1, None, _N, False, "pop an iterable, push an iterator over it"),
    ("MAKE_CLOSURE", (Operand("name", Kind.FUNCTION), _ARGC), ARGC, 1, None, _N, False,
     "push a closure of a function capturing argc values"),
    ("MATCH_FAIL", (Operand("arg", Kind.MESSAGE),), 0, 0, None, Flags.STOP, False,
     "a refutable pattern did not match: a runtime fault with the message"),
    ("NEG", (), 1, 1, None, _N, True, "pop a number, push its negation"),
    ("OR", (), 2, 1, None, _N, True, "pop two, push logical or"),
    ("PARALLEL_FOR", (), 2, 1, None, Flags.SUSPEND | Flags.CALL, False,
     "pop an iterable and a one-parameter closure; run it on every item concurrently, push the results in order"),
    ("PROPAGATE", (Operand("arg", Kind.BOOL, required=False),), 1, 1, None, _N, True,
     "`?`: unwrap Ok/Some, else return it (or jump to the function's catch); arg: None becomes Err"),
    ("PUSH", (Operand("arg", Kind.LITERAL, required=False),), 0, 1, None, _N, True, "push an immediate scalar"),
    ("RACE", _ARG_COUNT, COUNT, 1, None, Flags.SUSPEND | Flags.CALL, False,
     "run count zero-parameter closures concurrently; push the first result, cancel the rest"),
    ("RETHROW", (), 1, 0, None, Flags.STOP, False, "raise again an error no catch clause matched"),
    ("RUN_PIPELINE", (Operand("name", Kind.PIPELINE),), 1, 1, None, Flags.SUSPEND | Flags.CALL, False,
     "pop the input, run the pipeline, push Result<output, PipelineError>"),
    ("SLICE", (Operand("arg", Kind.SLICE_MODE, required=False),), 3, 1, None, _N, False,
     "pop value, lo and hi (nil: open), push the slice"),
    ("SPAWN_ASYNC", (), 1, 1, None, Flags.SUSPEND | Flags.CALL, True,
     "pop a zero-parameter closure, start it as a task, push its Task handle"),
    ("STORE_GLOBAL", (Operand("name", Kind.GLOBAL),), 1, 0, None, _N, True, "pop into a global"),
    ("SWAP", (), 2, 2, None, _N, True, "swap the top two values"),
    ("TEST_LEN", (Operand("arg", Kind.COUNT), Operand("name", Kind.LEN_MODE, required=False)), 1, 1, None, _N,
     False, "pop an array or tuple, push whether its length fits (`==`, `>=`, or a tuple of exactly that length)"),
    ("TEST_VARIANT", (Operand("type_name", Kind.TYPE), Operand("name", Kind.VARIANT)), 1, 1, None, _N, False,
     "pop a value, push whether it is that variant"),
    ("THROW", (), 1, 0, None, Flags.STOP, True,
     "pop an error: jump to the function's innermost catch, else return Err(error)"),
    ("TRY_BEGIN", _TARGET, 0, 0, 1, Flags.JUMP | Flags.TRY_PUSH, True,
     "open a try-frame; a fault jumps to arg with the stack cut back and the error pushed"),
    ("TRY_END", (), 0, 0, None, Flags.TRY_POP, True, "close the innermost try-frame"),
    ("VARIANT_FIELD", (Operand("arg", Kind.POSITION),), 1, 1, None, _N, False,
     "pop a variant, push one item of its payload"),
]

TABLE: dict[str, OpInfo] = {}
for _code, (_name, _ops, _pops, _pushes, _jpushes, _flags, _spec, _doc) in enumerate(_ROWS):
    TABLE[_name] = OpInfo(_name, _code, _ops, _pops, _pushes, _jpushes, _flags, _spec, _doc)
BY_CODE: list[OpInfo] = list(TABLE.values())

CODES: dict[str, int] = {name: info.code for name, info in TABLE.items()}
NAMES: dict[int, str] = {info.code: name for name, info in TABLE.items()}
# Opcodes an IR file may contain.
IR_OPCODES = frozenset(name for name, info in TABLE.items() if not info.has(Flags.LINKED))
SPEC_OPCODES = frozenset(name for name in IR_OPCODES if TABLE[name].spec)
EXTENSION_OPCODES = IR_OPCODES - SPEC_OPCODES


def codes_with(flag: Flags) -> frozenset[int]:
    return frozenset(info.code for info in BY_CODE if info.has(flag))


# Each opcode's number as a module attribute (`opcodes.LOAD_LOCAL == 0`), for the VM.
globals().update(CODES)

JUMPS = codes_with(Flags.JUMP)  # arg (b for LC_LT_JIF/CMP_JIF, see the linker) is a target
STOPS = codes_with(Flags.STOP)
# Jumps taken or not depending on a value (TRY_BEGIN's handler edge is no branch).
CONDITIONAL_JUMPS = JUMPS - STOPS - codes_with(Flags.TRY_PUSH)


# -- docs/ir.md ------------------------------------------------------------------------

_FLAG_WORDS = [(Flags.JUMP, "jump"), (Flags.STOP, "stop"), (Flags.CALL, "call"), (Flags.SUSPEND, "suspend"),
               (Flags.EFFECT, "effect"), (Flags.TRY_PUSH, "try+"), (Flags.TRY_POP, "try-")]


def markdown() -> str:
    """The opcode reference in docs/ir.md, generated from the table
    (`python -m concerto.ir.opcodes` prints it)."""
    rows = ["| opcode | spec | operands | pops | pushes | on jump | flags | meaning |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for info in sorted(TABLE.values(), key=lambda i: i.name):
        if info.has(Flags.LINKED):
            continue
        operands = ", ".join(f"{o.field}: {o.kind.value}" + ("" if o.required else "?") for o in info.operands)
        pops = info.pops if type(info.pops) is int else info.pops.text  # type: ignore[union-attr]
        jump = "-" if info.jump_pushes is None else str(info.jump_pushes)
        flags = " ".join(word for flag, word in _FLAG_WORDS if info.has(flag)) or "-"
        rows.append(f"| `{info.name}` | {'16' if info.spec else 'ours'} | {operands or '-'} | {pops} | "
                    f"{info.pushes} | {jump} | {flags} | {info.doc} |")
    return "\n".join(rows) + "\n"
