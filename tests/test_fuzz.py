"""Robustness: garbled input yields diagnostics or IRLoadError, never a crash.

* `compile_source` on random text, and on real programs with random byte
  edits, deletions and insertions, must return (not raise); when the result
  is not ok it carries at least one error diagnostic with a line >= 1.
* `load_bytes` on random mutations of a valid program's IR JSON must either
  load or raise IRLoadError, nothing else.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from concerto import ir
from concerto.compiler import compile_source
from concerto.vm.loader import IRLoadError, load_bytes
from conftest import example_files


FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

SAMPLE = textwrap.dedent('''
    /// A sample covering most of the grammar.
    use std::math::{abs, max};
    const LIMIT: Int = 3;
    struct Point { x: Int, y: Int }
    enum Shape { Dot, Circle(Float), Rect { w: Int, h: Int } }
    trait Named { fn name(self) -> String; fn shout(self) -> String { self.name().to_upper() } }
    impl Named for Point { fn name(self) -> String { "p${self.x}" } }
    mod inner { pub fn twice(x: Int) -> Int { x * 2 } }
    hashmap cache: HashMap<String, Int> = HashMap::new();
    fn parse(s: String) -> Result<Int, String> {
        if s.len() == 0 { throw "empty"; }
        Ok(s.len() |> inner::twice())
    }
    fn main() {
        let mut total = 0;
        for i in 0..=LIMIT { total += i; }
        let p = Point { x: 1, y: -2 };
        let s = Shape::Rect { w: 2, h: 3 };
        let area = match s {
            Shape::Dot => 0,
            Shape::Circle(r) => r as Int,
            Shape::Rect { w, h } => w * h,
        };
        let label = """
            multi ${p.name()}
            """;
        let raw = r#"raw "quoted" \\n"#;
        let v = try { parse("abc")? } catch { -1 };
        let found = [1, 2, 3].filter(|x| x > 1).map(|x| x * 2);
        'outer: loop { while true { break 'outer; } }
        cache.set("k", max(abs(-3), area));
        emit("out", { "total": total, "label": label, "raw": raw, "v": v, "found": found, "t": (1, "a").1 });
        /* nested /* comment */ */
    }
''')


def _sources() -> list[str]:
    texts = [SAMPLE]
    for path in example_files():
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            pass
    return texts


SOURCES = _sources()


def _check_compiles_or_diagnoses(text: str) -> None:
    result = compile_source(text, "fuzz.conc")  # must not raise
    if result.ok:
        assert result.program is not None
        # Whatever compiled must also encode and load.
        load_bytes(ir.encode(result.program))
        return
    errors = [d for d in result.diagnostics if d.severity == "error"]
    assert errors, "not ok but no error diagnostic"
    for d in errors:
        assert d.line >= 1 and d.col >= 1, d.header()
        assert d.message


# Characters that matter to the lexer, mixed with arbitrary text.
TOKENS = st.sampled_from([
    "fn", "main", "(", ")", "{", "}", "[", "]", "let", "mut", "=", ";", ":", ",", ".", "..", "..=", "::", "->",
    "=>", "|>", "??", "?", "|", "||", "&&", "!", "+", "-", "*", "/", "%", "<", ">", "<=", "==", '"', '"""', "r#\"",
    "\"#", "${", "'a", "/*", "*/", "//", "///", "\n", " ", "\t", "0x", "0b", "1_0", "1.5e", "if", "else", "match",
    "for", "in", "while", "loop", "break", "continue", "return", "try", "catch", "throw", "emit", "struct", "enum",
    "impl", "trait", "mod", "use", "as", "self", "Some", "None", "Ok", "Err", "x", "Int", "String", "\\u{", "@",
    "#", "$", "\\", "\u00e9", "\U0001F600", "\x00",
])


@FUZZ
@given(st.text())
def test_random_text_never_crashes_the_compiler(text):
    _check_compiles_or_diagnoses(text)


@FUZZ
@given(st.lists(TOKENS, max_size=60).map("".join))
def test_random_token_soup_never_crashes_the_compiler(text):
    _check_compiles_or_diagnoses(text)


@FUZZ
@given(st.lists(TOKENS, max_size=30).map("".join))
def test_random_tokens_inside_main_never_crash_the_compiler(text):
    _check_compiles_or_diagnoses("fn main() {\n" + text + "\n}\n")


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["replace", "delete", "insert"]),
        st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
        st.binary(min_size=1, max_size=4),
        st.integers(min_value=1, max_value=8),
    ),
    min_size=1,
    max_size=6,
)


def _apply_edits(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, where, payload, span in edits:
        pos = int(where * len(buf)) if buf else 0
        if kind == "replace":
            buf[pos:pos + len(payload)] = payload
        elif kind == "delete":
            del buf[pos:pos + span]
        else:
            buf[pos:pos] = payload
    return bytes(buf)


@FUZZ
@given(st.sampled_from(range(len(SOURCES))), EDITS)
def test_edited_real_source_never_crashes_the_compiler(which, edits):
    data = _apply_edits(SOURCES[which].encode("utf-8"), edits)
    _check_compiles_or_diagnoses(data.decode("utf-8", errors="replace"))


@FUZZ
@given(st.sampled_from(range(len(SOURCES))), st.data())
def test_truncated_real_source_never_crashes_the_compiler(which, data):
    text = SOURCES[which]
    cut = data.draw(st.integers(min_value=0, max_value=len(text)))
    _check_compiles_or_diagnoses(text[:cut])


# ---------------------------------------------------------------- IR mutations

def _valid_ir() -> dict:
    result = compile_source(SAMPLE, "sample.conc")
    assert result.ok, [d.header() for d in result.diagnostics]
    return json.loads(ir.encode(result.program))


VALID_IR = _valid_ir()
VALID_IR_BYTES = json.dumps(VALID_IR).encode()

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
    | st.sampled_from(["LOAD_CONST", "JUMP", "CALL", "main", "0.1.0", "1.0.0", "x", "$init", "Point", "RETURN"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


ALL_PATHS = [p for p in _paths(VALID_IR) if p]


def _load_only_irloaderror(raw: bytes) -> None:
    try:
        load_bytes(raw)
    except IRLoadError:
        pass


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), st.sampled_from(["set", "delete"]), JSON_VALUES),
                min_size=1, max_size=4))
def test_structural_ir_mutations_raise_only_irloaderror(mutations):
    doc = json.loads(VALID_IR_BYTES)
    for path, kind, value in mutations:
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            last = path[-1]
            if kind == "delete":
                del parent[last]
            else:
                parent[last] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed this path
    _load_only_irloaderror(json.dumps(doc).encode())


@FUZZ
@given(EDITS)
def test_byte_level_ir_mutations_raise_only_irloaderror(edits):
    raw = _apply_edits(VALID_IR_BYTES, edits)
    _load_only_irloaderror(raw)


INSTRUCTIONS = [p for p in ALL_PATHS if len(p) == 4 and p[0] == "functions" and p[2] == "instructions"]


@FUZZ
@given(st.sampled_from(INSTRUCTIONS), st.sampled_from(["op", "arg", "name", "argc", "type_name", "names", "span"]),
       JSON_VALUES)
def test_instruction_operand_mutations_raise_only_irloaderror(path, field, value):
    doc = json.loads(VALID_IR_BYTES)
    ins = doc
    for key in path:
        ins = ins[key]
    assume(ins.get(field) != value)
    ins[field] = value
    _load_only_irloaderror(json.dumps(doc).encode())


# ---------------------------------------------------------------- crashes the fuzzers found (fixed)

@pytest.mark.parametrize("text", ["²", "\u0663", "fn main() { let x\u00b2 = 1; }"])
def test_non_ascii_digit_gives_a_diagnostic(text):
    result = compile_source(text, "fuzz.conc")
    assert not result.ok
    assert result.diagnostics and result.diagnostics[0].line >= 1


@pytest.mark.parametrize("bad", [b"\x80", b"\xff\xfe", b"\xc3("])
def test_ir_that_is_not_utf8_raises_irloaderror(bad):
    raw = VALID_IR_BYTES.replace(b'"main"', b'"ma' + bad + b'in"', 1)
    with pytest.raises(IRLoadError):
        load_bytes(raw)
