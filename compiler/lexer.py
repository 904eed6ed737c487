"""Tokenizer for Concerto, plugged into Lark as a custom lexer.

Regular terminals (numbers, identifiers, keywords, operators) are taken from
grammar/concerto.lark, so the grammar file stays the single definition of the
token set. This module adds what regular expressions cannot do: nested block
comments, raw strings `r#"..."#` with any number of `#`, triple-quoted strings
with indentation trimming, and `${expr}` interpolation with nested braces and
strings. Like Lark's contextual lexer, when one piece of text fits several
terminals (`<` is a comparison or a generic bracket, `=` an assignment or a
`let`), the terminal the parser can shift from its current state wins.

Scanning never recurses (strings inside `${}` inside strings are kept on an
explicit stack) and the generic look-ahead is one pass over the text, so a
file costs time linear in its length however deeply it nests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

from lark import Token
from lark.lexer import Lexer, PatternRE, PatternStr
from lark.parsers.lalr_analysis import Shift

_IDENT_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# Words that open a declaration but stay ordinary names everywhere else
# (`response.model`, `let schema = ...`): they are keywords only where the
# parser can start that declaration.
CONTEXTUAL_KEYWORDS = frozenset({
    "model", "agent", "schema", "memory", "connect", "pipeline", "stage", "await", "race", "parallel",
    "tool", "mcp",
})
# Some of them also need the text that follows to fit: `race (` and
# `parallel for`, so `race` and `parallel` stay usable as plain names in
# expressions (`race + 1`, `parallel.len()`).
_CONTEXTUAL_FOLLOW = {
    "race": re.compile(r"[ \t\r\n\f]*\("),
    "parallel": re.compile(r"[ \t\r\n\f]+for\b"),
}
_WS_RE = re.compile(r"[ \t\r\n\f]+")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'", "$": "$"}


class LexError(Exception):
    """A lexical error with a position (1-based line and column)."""

    def __init__(self, message: str, line: int, column: int, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.hint = hint


@dataclass
class DocComment:
    line: int
    text: str


class _Source:
    """Text plus a line index for turning offsets into (line, column)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.line_starts = [0]
        for m in re.finditer("\n", text):
            self.line_starts.append(m.end())

    def line_col(self, pos: int) -> tuple[int, int]:
        lo, hi = 0, len(self.line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.line_starts[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, pos - self.line_starts[lo] + 1

    def error(self, message: str, pos: int, hint: str | None = None) -> LexError:
        line, col = self.line_col(pos)
        return LexError(message, line, col, hint)


class ConcertoLexer(Lexer):
    """The Lark lexer class (Lark(..., lexer=ConcertoLexer))."""

    # Lark's newer custom-lexer interface: lex(lexer_state, parser_state), so
    # the parser state is at hand for contextual choices.
    __future_interface__ = 2

    def __init__(self, lexer_conf: Any) -> None:
        self.keywords: dict[str, str] = {}  # word -> terminal name
        self.puncts: list[tuple[str, str]] = []  # (text, terminal), longest first
        self.regex_ops: list[tuple[re.Pattern[str], str]] = []
        self.patterns: dict[str, re.Pattern[str]] = {}
        for term in lexer_conf.terminals:
            pattern = term.pattern
            if isinstance(pattern, PatternStr):
                if _IDENT_RE.fullmatch(pattern.value):
                    self.keywords[pattern.value] = term.name
                else:
                    self.puncts.append((pattern.value, term.name))
            elif isinstance(pattern, PatternRE):
                if term.name in ("INT", "FLOAT", "IDENT", "LABEL", "LINE_COMMENT", "WS"):
                    self.patterns[term.name] = re.compile(pattern.to_regexp())
                else:
                    self.regex_ops.append((re.compile(pattern.to_regexp()), term.name))
        self.puncts.sort(key=lambda p: -len(p[0]))
        # Literal operators by first character, so `punct` tries only those.
        self.puncts_by_char: dict[str, list[tuple[str, str]]] = {}
        for lit, name in self.puncts:
            self.puncts_by_char.setdefault(lit[0], []).append((lit, name))

    # Lark entry point -----------------------------------------------------
    def lex(self, lexer_state: Any, parser_state: Any) -> Iterator[Token]:
        """For Lark's own parse loop: the tokens, up to the first lexical error.
        (The compiler drives the parser itself, see parse._Parse, to recover.)"""
        text = lexer_state.text
        if not isinstance(text, str):  # Lark >= 1.2 hands a TextSlice
            text = text.text
        scanner = _Scanner(self, _Source(text), parser_state)
        for token in scanner.tokens():
            if scanner.errors:
                raise scanner.errors[0]
            yield token
        if scanner.errors:
            raise scanner.errors[0]


class _Code:
    """Scanning code: the whole file, or the body of one `${...}`."""

    __slots__ = ("pos", "interp", "depth")

    def __init__(self, pos: int, interp: bool) -> None:
        self.pos = pos
        self.interp = interp
        self.depth = 0  # braces opened inside an interpolation


class _Str:
    """Scanning the body of a string literal that may hold interpolations."""

    __slots__ = ("start", "triple", "quote_len", "indent", "own_line_close", "i", "seg_start", "first",
                 "at_line_start")

    def __init__(self, start: int, triple: bool) -> None:
        self.start = start
        self.triple = triple
        self.quote_len = 3 if triple else 1
        self.indent = ""
        self.own_line_close = False
        self.i = start + self.quote_len
        self.seg_start = self.i
        self.first = True
        self.at_line_start = True


class _Scanner:
    """Turns the text into tokens in one pass.

    Strings inside `${...}` inside strings nest without limit in the text, so
    the scanner keeps its own stack of open strings and interpolations instead
    of recursing: a deeply nested literal costs time linear in its length, and
    how deep it may nest is decided later, by the parser's nesting check.

    Errors that leave the rest of the text readable (a stray character, a bad
    digit, an unknown escape) are collected in `errors` and scanning goes on;
    errors that swallow the rest of the file (an unterminated string or
    comment) are raised."""

    def __init__(self, lexer: ConcertoLexer, src: _Source, parser_state: Any) -> None:
        self.lx = lexer
        self.src = src
        self.text = src.text
        self.parser_state = parser_state
        self.prev_type: str | None = None
        self.docs: list[DocComment] = []
        self.errors: list[LexError] = []
        self.end_pos = 0
        # Offset of each string body's closing quote(s), filled by find_string_end.
        self._string_ends: dict[int, int] = {}
        # For each `<` in the text: do type arguments and a `(` follow it?
        self._generic_lt: dict[int, bool] | None = None

    # -- helpers -------------------------------------------------------------
    def accepts(self) -> Any:
        try:
            return self.parser_state.parse_conf.parse_table.states[self.parser_state.position]
        except Exception:
            return {}

    def shiftable(self, terminal: str) -> bool:
        """Whether the parser, from its current state, shifts `terminal` after the
        reductions it would make first. The reductions are simulated on a view
        of the state stack (how much of it is left, plus what they push), so
        this costs what they cost, not the stack's depth."""
        try:
            states = self.parser_state.parse_conf.states
            base = self.parser_state.state_stack
        except AttributeError:
            return True
        kept = len(base)  # base[:kept] is still below the pushed states
        pushed: list[Any] = []
        while True:
            action = states[pushed[-1] if pushed else base[kept - 1]].get(terminal)
            if action is None:
                return False
            kind, rule = action
            if kind is Shift:
                return True
            size = len(rule.expansion)
            from_pushed = min(size, len(pushed))
            if from_pushed:
                del pushed[-from_pushed:]
            kept -= size - from_pushed
            goto = states[pushed[-1] if pushed else base[kept - 1]].get(rule.origin.name)
            if goto is None:
                return False
            pushed.append(goto[1])

    def tok(self, type_: str, value: str, start: int, end: int) -> Token:
        line, col = self.src.line_col(start)
        end_line, end_col = self.src.line_col(end)
        self.prev_type = type_
        return Token(type_, value, start, line, col, end_line, end_col, end)

    def report(self, message: str, pos: int, hint: str | None = None) -> None:
        self.errors.append(self.src.error(message, pos, hint))

    # -- main loop -------------------------------------------------------------
    def tokens(self) -> Iterator[Token]:
        """Yield the tokens of the whole text."""
        text = self.text
        n = len(text)
        frames: list[_Code | _Str] = [_Code(0, interp=False)]
        while frames:
            frame = frames[-1]
            if isinstance(frame, _Str):
                yield from self._string_step(frame, frames)
                continue
            pos = frame.pos
            while True:
                m = _WS_RE.match(text, pos)
                if m:
                    pos = m.end()
                if pos >= n:
                    if frame.interp:
                        raise self.src.error("unterminated interpolation `${` in string", pos)
                    frames.pop()
                    self.end_pos = pos
                    break
                ch = text[pos]
                if ch == "/" and text.startswith("//", pos):
                    end = text.find("\n", pos)
                    end = n if end < 0 else end
                    if text.startswith("///", pos) and not text.startswith("////", pos):
                        self.docs.append(DocComment(self.src.line_col(pos)[0], text[pos + 3 : end].strip()))
                    pos = end
                    continue
                if ch == "/" and text.startswith("/*", pos):
                    pos = self.skip_block_comment(pos)
                    continue
                if ch == '"':
                    frame.pos = pos  # resumed after the string, see _string_step
                    frames.append(self.open_string(pos))
                    break
                if ch == "r" and (text.startswith('r"', pos) or text.startswith("r#", pos)):
                    raw = self.raw_string(pos)
                    if raw is not None:
                        yield raw
                        pos = self.end_pos
                        continue
                if "0" <= ch <= "9":  # str.isdigit() also accepts `²` and Arabic-Indic digits
                    yield self.number(pos)
                    pos = self.end_pos
                    continue
                if ch == "_" or ch.isalpha():
                    m = _IDENT_RE.match(text, pos)
                    if m is None:
                        self.report(f"unexpected character {ch!r}", pos)
                        pos += 1
                        continue
                    word = m.group()
                    kind = self.lx.keywords.get(word, "IDENT")
                    if word in CONTEXTUAL_KEYWORDS and kind not in self.accepts():
                        kind = "IDENT"
                    elif word in _CONTEXTUAL_FOLLOW and not _CONTEXTUAL_FOLLOW[word].match(text, m.end()):
                        kind = "IDENT"
                    yield self.tok(kind, word, pos, m.end())
                    pos = m.end()
                    if pos < n and text[pos] == "<" and kind in ("IDENT", "EMIT") and self.generic_args_follow(pos):
                        yield self.tok("GENERIC_LT", "<", pos, pos + 1)
                        pos += 1
                    continue
                if ch == "'":
                    m = self.lx.patterns["LABEL"].match(text, pos)
                    if m is None:
                        self.report("unexpected `'`: labels look like `'outer`", pos)
                        pos += 1
                        continue
                    yield self.tok("LABEL", m.group(), pos, m.end())
                    pos = m.end()
                    continue
                if frame.interp:
                    if ch == "{":
                        frame.depth += 1
                    elif ch == "}":
                        if frame.depth == 0:
                            frames.pop()
                            outer = frames[-1]
                            assert isinstance(outer, _Str)
                            outer.i = outer.seg_start = pos + 1
                            outer.at_line_start = False
                            break
                        frame.depth -= 1
                token = self.punct(pos)
                pos = self.end_pos
                if token is not None:
                    yield token

    def punct(self, pos: int) -> Token | None:
        """The operator or punctuation at pos (None after reporting a stray character)."""
        text = self.text
        candidates: list[tuple[int, str]] = []
        for lit, name in self.lx.puncts_by_char.get(text[pos], ()):
            if text.startswith(lit, pos):
                candidates.append((len(lit), name))
        for regex, name in self.lx.regex_ops:
            m = regex.match(text, pos)
            if m and m.end() > pos:
                candidates.append((m.end() - pos, name))
        if not candidates:
            self.report(f"unexpected character {text[pos]!r}", pos)
            self.end_pos = pos + 1
            return None
        longest = max(c[0] for c in candidates)
        names = [name for length, name in candidates if length == longest]
        chosen = names[0]
        if len(names) > 1:
            accepted = self.accepts()
            fitting = [name for name in names if name in accepted]
            if len(fitting) > 1:
                # Several terminals have an action here (LALR merges states, so a
                # reduction may be listed for a terminal that cannot follow):
                # take the one the parser can go on to shift.
                fitting = [name for name in fitting if self.shiftable(name)] or fitting
            if fitting:
                chosen = fitting[0]
        self.end_pos = pos + longest
        return self.tok(chosen, text[pos : pos + longest], pos, pos + longest)

    def number(self, pos: int) -> Token:
        # After `.` only an integer fits (`t.0.1` is two tuple fields).
        if self.prev_type != "DOT":
            m = self.lx.patterns["FLOAT"].match(self.text, pos)
            if m:
                token = self.tok("FLOAT", m.group(), pos, m.end())
                self.end_pos = self.check_number_end(m.end())
                return token
        m = self.lx.patterns["INT"].match(self.text, pos)
        assert m is not None
        token = self.tok("INT", m.group(), pos, m.end())
        self.end_pos = self.check_number_end(m.end())
        return token

    def check_number_end(self, end: int) -> int:
        """Report letters glued to a number; returns where scanning goes on
        (past them, so `12z` is one error, not two)."""
        text = self.text
        if end < len(text) and (text[end].isalnum() or text[end] == "_"):
            self.report(
                f"invalid digit {text[end]!r} in number literal", end,
                hint="hex literals start with 0x, binary with 0b, octal with 0o",
            )
            while end < len(text) and (text[end].isalnum() or text[end] == "_"):
                end += 1
        return end

    def skip_block_comment(self, pos: int) -> int:
        text = self.text
        depth = 0
        i = pos
        n = len(text)
        while i < n:
            if text.startswith("/*", i):
                depth += 1
                i += 2
            elif text.startswith("*/", i):
                depth -= 1
                i += 2
                if depth == 0:
                    return i
            else:
                i += 1
        raise self.src.error("unterminated block comment", pos, hint="block comments nest: each /* needs its own */")

    def generic_args_follow(self, pos: int) -> bool:
        """True when `<...>` at pos reads as type arguments followed by `(`.

        Like C#'s rule for generic method calls: `f<T>(x)` is a generic call,
        `a < b` a comparison. Only type-shaped text qualifies."""
        if self._generic_lt is None:
            self._generic_lt = _generic_table(self.text)
        return self._generic_lt.get(pos, False)

    # -- strings ---------------------------------------------------------------
    def raw_string(self, pos: int) -> Token | None:
        text = self.text
        i = pos + 1
        hashes = 0
        while i < len(text) and text[i] == "#":
            hashes += 1
            i += 1
        if i >= len(text) or text[i] != '"':
            return None  # an identifier starting with r
        close = '"' + "#" * hashes
        end = text.find(close, i + 1)
        if end < 0:
            raise self.src.error("unterminated raw string", pos, hint=f"close it with {close}")
        self.end_pos = end + len(close)
        return self.tok("STRING", text[i + 1 : end], pos, self.end_pos)

    def open_string(self, pos: int) -> _Str:
        text = self.text
        s = _Str(pos, text.startswith('"""', pos))
        if s.triple:
            body_start = s.i
            close = self.find_string_end(body_start, triple=True)
            line_start = text.rfind("\n", body_start, close) + 1
            tail = text[line_start:close] if line_start > 0 else ""
            if line_start > 0 and tail.strip(" \t") == "":
                s.indent = tail
                s.own_line_close = True
            if text.startswith("\n", body_start):
                body_start += 1
            elif text.startswith("\r\n", body_start):
                body_start += 2
            s.i = s.seg_start = body_start
        return s

    def _string_step(self, s: _Str, frames: list[_Code | _Str]) -> Iterator[Token]:
        """Scan string s up to its end (pop it) or to its next `${` (push the code)."""
        text = self.text
        n = len(text)
        i = s.i
        while True:
            if i >= n:
                raise self.src.error("unterminated string literal", s.start)
            c = text[i]
            closes = text.startswith('"""', i) if s.triple else c == '"'
            if closes:
                raw = text[s.seg_start:i]
                if s.own_line_close:
                    raw = _dedent_tail(raw)
                value = self.unescape(raw, s.seg_start, s.indent, s.at_line_start)
                end = i + s.quote_len
                frames.pop()
                outer = frames[-1]
                assert isinstance(outer, _Code)
                outer.pos = end
                self.end_pos = end
                yield self.tok("STRING" if s.first else "STR_END", value, s.start if s.first else s.seg_start, end)
                return
            if c == "\\":
                i += 2
                continue
            if c == "$" and text.startswith("${", i):
                value = self.unescape(text[s.seg_start:i], s.seg_start, s.indent, s.at_line_start)
                yield self.tok("STR_START" if s.first else "STR_MID", value, s.start if s.first else s.seg_start, i + 2)
                s.first = False
                s.i = i + 2
                frames.append(_Code(i + 2, interp=True))
                return
            if c == "\n" and not s.triple:
                raise self.src.error("unterminated string literal", s.start, hint='use """ for strings that span lines')
            i += 1

    def find_string_end(self, i: int, triple: bool) -> int:
        """Offset of the closing quote(s) of the string body starting at i,
        skipping interpolations (which may hold strings). Every string met on
        the way is remembered, so nested triple-quoted strings are scanned once."""
        known = self._string_ends.get(i)
        if known is not None:
            return known
        text = self.text
        n = len(text)
        # ("str", body start, triple) or ("code", brace depth, 0)
        stack: list[list[Any]] = [["str", i, triple]]
        while stack:
            top = stack[-1]
            if i >= n:
                if top[0] == "str":
                    raise self.src.error("unterminated string literal", i)
                raise self.src.error("unterminated interpolation `${` in string", i)
            c = text[i]
            if top[0] == "str":
                if text.startswith('"""' if top[2] else '"', i):
                    self._string_ends[top[1]] = i
                    stack.pop()
                    if not stack:
                        return i
                    i += 3 if top[2] else 1
                elif c == "\\":
                    i += 2
                elif text.startswith("${", i):
                    stack.append(["code", 0, 0])
                    i += 2
                else:
                    i += 1
            elif c == '"':
                inner_triple = text.startswith('"""', i)
                i += 3 if inner_triple else 1
                stack.append(["str", i, inner_triple])
            elif c == "{":
                top[1] += 1
                i += 1
            elif c == "}":
                if top[1] == 0:
                    stack.pop()
                else:
                    top[1] -= 1
                i += 1
            else:
                i += 1
        raise AssertionError("unreachable")

    def unescape(self, raw: str, start: int, indent: str, at_line_start: bool) -> str:
        if indent:
            raw = _strip_indent(raw, indent, at_line_start)
        if "\\" not in raw:
            return raw
        out: list[str] = []
        i = 0
        n = len(raw)
        while i < n:
            c = raw[i]
            if c != "\\":
                out.append(c)
                i += 1
                continue
            if i + 1 >= n:
                self.report("dangling backslash in string", start + i)
                break
            e = raw[i + 1]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                i += 2
            elif e == "u" and i + 2 < n and raw[i + 2] == "{":
                close = raw.find("}", i + 3)
                digits = raw[i + 3 : close] if close > 0 else ""
                try:
                    out.append(chr(int(digits.replace("_", ""), 16)))
                except (ValueError, OverflowError):
                    self.report(f"invalid unicode escape \\u{{{digits}}}", start + i)
                i = close + 1 if close > 0 else n
            elif e == "\n":
                # a backslash at the end of a line joins lines
                i += 2
                while i < n and raw[i] in " \t":
                    i += 1
            else:
                self.report(
                    f"unknown escape sequence \\{e}", start + i,
                    hint="valid escapes: \\n \\r \\t \\0 \\\\ \\\" \\u{XXXX}",
                )
                i += 2
        return "".join(out)


_TYPE_TEXT = frozenset("_:, \t()[]")


def _generic_table(text: str) -> dict[int, bool]:
    """For every `<` in text: does it open type arguments closed by a `>` that a
    `(` follows, with only type-shaped text in between?

    One left-to-right pass with a stack of the `<` still open, so that nested
    `Array<Array<...>>` costs linear time, not a rescan per `<`. It gives the
    answer a forward scan from each `<` would: a `>` (not the one of `->`)
    closes the innermost open `<`; any character that cannot appear in a type
    settles every open `<` as "no"."""
    result: dict[int, bool] = {}
    open_lts: list[int] = []
    n = len(text)
    i = text.find("<")
    if i < 0:
        return result
    while i < n:
        c = text[i]
        if c == "<":
            open_lts.append(i)
            i += 1
        elif c == ">":
            i += 1
            if open_lts:
                j = i
                while j < n and text[j] in " \t":
                    j += 1
                result[open_lts.pop()] = j < n and text[j] == "("
            if not open_lts:
                nxt = text.find("<", i)
                if nxt < 0:
                    break
                i = nxt
        elif c == "-" and text.startswith("->", i):
            i += 2
        elif c.isalnum() or c in _TYPE_TEXT:
            i += 1
        else:
            for p in open_lts:
                result[p] = False
            open_lts.clear()
            nxt = text.find("<", i + 1)
            if nxt < 0:
                break
            i = nxt
    return result


def _dedent_tail(raw: str) -> str:
    """Drop the final newline and the closing line's indentation."""
    cut = raw.rfind("\n")
    return raw[:cut] if cut >= 0 else raw


def _strip_indent(raw: str, indent: str, at_line_start: bool) -> str:
    lines = raw.split("\n")
    out = []
    for k, line in enumerate(lines):
        if k > 0 or at_line_start:
            if line.startswith(indent):
                line = line[len(indent) :]
            else:
                line = line.lstrip(" \t") if line.strip(" \t") == "" else _strip_common(line, indent)
        out.append(line)
    return "\n".join(out)


def _strip_common(line: str, indent: str) -> str:
    k = 0
    while k < len(line) and k < len(indent) and line[k] == indent[k]:
        k += 1
    return line[k:]
