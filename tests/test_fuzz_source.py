"""Fuzzing the front end with whole tokens and deep nesting.

tests/test_fuzz.py edits programs byte by byte and feeds random text; this
file works one level up, where the parser's error recovery and the nesting
bound live:

* token mutations of the example programs: delete, duplicate, swap or insert
  whole tokens; a fixed corpus (every source, a spread of positions, every
  kind of edit) plus Hypothesis' random picks;
* random mixes of nesting constructs at depths up to and past the limit.

Each compile must return, never raise; a failed one carries an error with a
line >= 1; a program nested past the limit gets exactly the one `nesting too
deep` error and one within it never does. A few cases go through the CLI in
subprocesses: no traceback, exit 0 or 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Token

from concerto.compiler import compile_source
from concerto.compiler.lexer import LexError, _Scanner, _Source
from concerto.compiler.nesting import MAX_NESTING, nesting_depth
from concerto.compiler.parse import _lexer, parse_source

REPO = Path(__file__).resolve().parent.parent
TOO_DEEP = f"nesting too deep: more than {MAX_NESTING} levels"


def _sources() -> list[str]:
    paths = sorted((REPO / "examples").glob("*.conc")) + sorted((REPO / "examples").glob("*/*.conc"))
    out = []
    for path in paths:
        try:
            out.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            pass
    return out


class _NoParser:
    """Stands in for the parser state: the scanner then reads every word as it is spelled."""

    parse_conf = None
    position = None


def tokens_of(text: str) -> list[Token]:
    scanner = _Scanner(_lexer(), _Source(text), _NoParser())
    try:
        return list(scanner.tokens())
    except LexError:
        return []


SOURCES = [s for s in _sources() if tokens_of(s)]
TOKENS = [tokens_of(s) for s in SOURCES]
VOCABULARY = sorted({str(t.value) if t.type != "STRING" else '"s"' for toks in TOKENS for t in toks
                     if t.type not in ("STR_START", "STR_MID", "STR_END")})


def mutate(text: str, toks: list[Token], kind: str, i: int, word: str = "x") -> str:
    """Edit whole tokens, keeping the text between them (spaces, comments) as it was."""
    if not toks:
        return text
    i %= len(toks)
    t = toks[i]
    start, end = t.start_pos, t.end_pos
    if kind == "delete":
        return text[:start] + text[end:]
    if kind == "duplicate":
        return text[:end] + " " + text[start:end] + text[end:]
    if kind == "swap" and i + 1 < len(toks):
        u = toks[i + 1]
        return text[:start] + text[u.start_pos:u.end_pos] + text[end:u.start_pos] + text[start:end] + text[u.end_pos:]
    if kind == "insert":
        return text[:start] + word + " " + text[start:]
    return text


def check(text: str) -> None:
    result = compile_source(text, "fuzz.conc")  # must not raise
    if result.ok:
        assert result.program is not None
        return
    errors = [d for d in result.diagnostics if d.severity == "error"]
    assert errors, "not ok but no error diagnostic"
    for d in errors:
        assert d.line >= 1 and d.col >= 1 and d.message, d.header()


def test_the_corpus_is_not_empty():
    assert len(SOURCES) >= 5 and min(len(t) for t in TOKENS) > 50


def test_fixed_corpus_of_token_mutations():
    """Every source, 12 positions spread over it, every kind of edit."""
    count = 0
    for text, toks in zip(SOURCES, TOKENS):
        step = max(1, len(toks) // 12)
        for i in range(0, len(toks), step):
            for kind in ("delete", "duplicate", "swap"):
                check(mutate(text, toks, kind, i))
                count += 1
            check(mutate(text, toks, "insert", i, VOCABULARY[(i * 7) % len(VOCABULARY)]))
            count += 1
    assert count >= 300


FUZZ = settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
EDIT = st.tuples(st.sampled_from(["delete", "duplicate", "swap", "insert"]), st.integers(0, 10**6),
                 st.sampled_from(VOCABULARY))


@FUZZ
@given(st.integers(0, len(SOURCES) - 1), st.lists(EDIT, min_size=1, max_size=5))
def test_random_token_mutations_never_crash_the_compiler(which, edits):
    text = SOURCES[which]
    for kind, i, word in edits:
        text = mutate(text, tokens_of(text) or TOKENS[which], kind, i, word)
    check(text)


# ---------------------------------------------------------------- deep nesting

# Each wraps an expression `e` in one more construct; all type-check around an Int,
# but mixes that do not are fine too: only crashes and the depth verdict matter.
WRAPPERS = [
    "f({})", "[{}][0]", "({}, 1).0", "{{\"k\": {}}}.len()", "\"${{{}}}\".len()", "if c {{ {} }} else {{ 0 }}",
    "match c {{ _ => {} }}", "{{ {} }}", "(|x: Int| {})(1)", "-({})", "Some({}).unwrap()", "B {{ inner: {} }}.inner",
    "({} + 1)", "1 + 2 * {}", "{} |> f()", "{} as Int", "loop {{ break {}; }}", "try {{ {} }} catch {{ 0 }}",
]


def nested(wrappers: list[str]) -> str:
    e = "1"
    for w in wrappers:
        e = w.format(e)
    return ("struct B { inner: Any }\nfn f(x: Int) -> Int { x + 1 }\n"
            f"fn main() {{\n    let c = true;\n    let v = {e};\n    emit(\"v\", v);\n}}\n")


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_deep_mixes_get_the_right_depth_verdict(data):
    depth = data.draw(st.one_of(st.integers(1, 40), st.integers(MAX_NESTING // 2 - 20, MAX_NESTING // 2 + 20)))
    wrappers = data.draw(st.lists(st.sampled_from(WRAPPERS), min_size=depth, max_size=depth))
    src = nested(wrappers)
    module, diags = parse_source(src, "mix.conc", max_nesting=None)
    assert module is not None, [d.header() for d in diags]
    level = nesting_depth(module)
    result = compile_source(src, "mix.conc")
    messages = [d.message for d in result.diagnostics]
    if level > MAX_NESTING:
        assert messages == [TOO_DEEP]
    else:
        assert TOO_DEEP not in messages
        check(src)


def test_deep_mixes_exactly_at_and_one_past_the_limit():
    """A random mix, measured once, then wrapped in `[ ]` (one level each) up to
    exactly the limit, or one past it."""
    import random

    rng = random.Random(11)
    for sample in range(6):
        wrappers = [rng.choice(WRAPPERS) for _ in range(rng.randrange(100, 300))]
        module, diags = parse_source(nested(wrappers), "mix.conc", max_nesting=None)
        assert module is not None, [d.header() for d in diags]
        target = MAX_NESTING + sample % 2
        padding = target - nesting_depth(module)
        assert padding > 0
        src = nested(wrappers + ["[{}]"] * padding)
        module, _ = parse_source(src, "mix.conc", max_nesting=None)
        assert nesting_depth(module) == target
        messages = [d.message for d in compile_source(src, "mix.conc").diagnostics]
        if target > MAX_NESTING:
            assert messages == [TOO_DEEP]
        else:
            assert TOO_DEEP not in messages, messages[:3]


# ---------------------------------------------------------------- through the CLI

def test_cli_never_shows_a_traceback(tmp_path):
    import random

    rng = random.Random(5)
    files = []
    for k in range(3):
        which = rng.randrange(len(SOURCES))
        text = SOURCES[which]
        for _ in range(3):
            text = mutate(text, tokens_of(text) or TOKENS[which], rng.choice(["delete", "duplicate", "swap"]),
                          rng.randrange(10**6))
        files.append((f"mutated{k}.conc", text))
    files.append(("deep_past.conc", nested([rng.choice(WRAPPERS) for _ in range(2 * MAX_NESTING)])))
    files.append(("deep_mix.conc", nested([rng.choice(WRAPPERS) for _ in range(300)])))
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    procs = []
    for name, text in files:
        (tmp_path / name).write_text(text)
        command = "run" if name == "deep_mix.conc" else "check"
        procs.append((name, subprocess.Popen([sys.executable, "-m", "concerto", command, str(tmp_path / name)],
                                             cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE)))
    for name, proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode in (0, 1), (name, proc.returncode, err[-2000:])
        assert "Traceback" not in out + err, (name, err[-2000:])
        if name == "deep_past.conc":
            assert proc.returncode == 1 and TOO_DEEP in err
