"""Tokenizer for Concerto, plugged into Lark as a custom lexer.

Regular terminals (numbers, identifiers, keywords, operators) are taken from
grammar/concerto.lark, so the grammar file stays the single definition of the
token set. This module adds what regular expressions cannot do: nested block
comments, raw strings `r#"..."#` with any number of `#`, triple-quoted strings
with indentation trimming, and `${expr}` interpolation with nested braces and
strings. Like Lark's contextual lexer, when one piece of text fits several
terminals (`<` is a comparison or a generic bracket, `=` an assignment or a
`let`), the terminal the parser accepts in its current state wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

from lark import Token
from lark.exceptions import UnexpectedCharacters
from lark.lexer import Lexer, PatternRE, PatternStr

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

    # Lark entry point -----------------------------------------------------
    def lex(self, lexer_state: Any, parser_state: Any) -> Iterator[Token]:
        text = lexer_state.text
        if not isinstance(text, str):  # Lark >= 1.2 hands a TextSlice
            text = text.text
        scanner = _Scanner(self, _Source(text), parser_state)
        doc_sink = getattr(parser_state.lexer, "concerto_docs", None)
        yield from scanner.tokens(0, interp=False)
        if doc_sink is not None:
            doc_sink.extend(scanner.docs)


class _Scanner:
    def __init__(self, lexer: ConcertoLexer, src: _Source, parser_state: Any) -> None:
        self.lx = lexer
        self.src = src
        self.text = src.text
        self.parser_state = parser_state
        self.prev_type: str | None = None
        self.docs: list[DocComment] = []
        self.end_pos = 0

    # -- helpers -------------------------------------------------------------
    def accepts(self) -> Any:
        try:
            return self.parser_state.parse_conf.parse_table.states[self.parser_state.position]
        except Exception:
            return {}

    def tok(self, type_: str, value: str, start: int, end: int) -> Token:
        line, col = self.src.line_col(start)
        end_line, end_col = self.src.line_col(end)
        self.prev_type = type_
        return Token(type_, value, start, line, col, end_line, end_col, end)

    # -- main loop -------------------------------------------------------------
    def tokens(self, pos: int, interp: bool) -> Iterator[Token]:
        """Yield tokens from pos; inside an interpolation stop at its closing brace
        and leave the position after it in self.end_pos."""
        text = self.text
        n = len(text)
        depth = 0
        while True:
            m = _WS_RE.match(text, pos)
            if m:
                pos = m.end()
            if pos >= n:
                if interp:
                    raise self.src.error("unterminated interpolation `${` in string", pos)
                self.end_pos = pos
                return
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
                yield from self.string(pos)
                pos = self.end_pos
                continue
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
                    raise self.src.error(f"unexpected character {ch!r}", pos)
                word = m.group()
                kind = self.lx.keywords.get(word, "IDENT")
                if word in CONTEXTUAL_KEYWORDS and kind not in self.accepts():
                    kind = "IDENT"
                elif word in _CONTEXTUAL_FOLLOW and not _CONTEXTUAL_FOLLOW[word].match(text, m.end()):
                    kind = "IDENT"
                token = self.tok(kind, word, pos, m.end())
                yield token
                pos = m.end()
                if pos < n and text[pos] == "<" and kind in ("IDENT", "EMIT") and self.generic_args_follow(pos):
                    yield self.tok("GENERIC_LT", "<", pos, pos + 1)
                    pos += 1
                continue
            if ch == "'":
                m = self.lx.patterns["LABEL"].match(text, pos)
                if m is None:
                    raise self.src.error("unexpected `'`: labels look like `'outer`", pos)
                yield self.tok("LABEL", m.group(), pos, m.end())
                pos = m.end()
                continue
            if interp:
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    if depth == 0:
                        self.end_pos = pos + 1
                        return
                    depth -= 1
            yield self.punct(pos)
            pos = self.end_pos

    def punct(self, pos: int) -> Token:
        text = self.text
        candidates: list[tuple[int, str]] = []
        for lit, name in self.lx.puncts:
            if text.startswith(lit, pos):
                candidates.append((len(lit), name))
        for regex, name in self.lx.regex_ops:
            m = regex.match(text, pos)
            if m and m.end() > pos:
                candidates.append((m.end() - pos, name))
        if not candidates:
            line, col = self.src.line_col(pos)
            raise UnexpectedCharacters(text, pos, line, col, allowed=None)
        longest = max(c[0] for c in candidates)
        names = [name for length, name in candidates if length == longest]
        chosen = names[0]
        if len(names) > 1:
            accepted = self.accepts()
            for name in names:
                if name in accepted:
                    chosen = name
                    break
        self.end_pos = pos + longest
        return self.tok(chosen, text[pos : pos + longest], pos, pos + longest)

    def number(self, pos: int) -> Token:
        # After `.` only an integer fits (`t.0.1` is two tuple fields).
        if self.prev_type != "DOT":
            m = self.lx.patterns["FLOAT"].match(self.text, pos)
            if m:
                self.end_pos = m.end()
                self.check_number_end(m.end())
                return self.tok("FLOAT", m.group(), pos, m.end())
        m = self.lx.patterns["INT"].match(self.text, pos)
        assert m is not None
        self.end_pos = m.end()
        self.check_number_end(m.end())
        return self.tok("INT", m.group(), pos, m.end())

    def check_number_end(self, end: int) -> None:
        if end < len(self.text) and (self.text[end].isalnum() or self.text[end] == "_"):
            raise self.src.error(
                f"invalid digit {self.text[end]!r} in number literal", end,
                hint="hex literals start with 0x, binary with 0b, octal with 0o",
            )

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
        text = self.text
        depth = 0
        i = pos
        n = len(text)
        while i < n:
            c = text[i]
            if c == "<":
                depth += 1
                i += 1
            elif c == ">":
                depth -= 1
                i += 1
                if depth == 0:
                    while i < n and text[i] in " \t":
                        i += 1
                    return i < n and text[i] == "("
            elif c == "-" and text.startswith("->", i):
                i += 2
            elif c.isalnum() or c in "_:, \t()[]":
                i += 1
            else:
                return False
        return False

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

    def string(self, pos: int) -> Iterator[Token]:
        text = self.text
        triple = text.startswith('"""', pos)
        quote_len = 3 if triple else 1
        body_start = pos + quote_len
        indent = ""
        own_line_close = False
        if triple:
            close = self.find_string_end(body_start, triple=True)
            line_start = text.rfind("\n", body_start, close) + 1
            tail = text[line_start:close] if line_start > 0 else ""
            if line_start > 0 and tail.strip(" \t") == "":
                indent = tail
                own_line_close = True
            if text.startswith("\n", body_start):
                body_start += 1
            elif text.startswith("\r\n", body_start):
                body_start += 2
        i = body_start
        seg_start = i
        first = True
        at_line_start = True
        n = len(text)
        while True:
            if i >= n:
                raise self.src.error("unterminated string literal", pos)
            c = text[i]
            closes = text.startswith('"""', i) if triple else c == '"'
            if closes:
                raw = text[seg_start:i]
                if own_line_close:
                    raw = _dedent_tail(raw)
                value = self.unescape(raw, seg_start, indent, at_line_start)
                self.end_pos = i + quote_len
                yield self.tok("STRING" if first else "STR_END", value, pos if first else seg_start, self.end_pos)
                return
            if c == "\\":
                i += 2
                continue
            if c == "$" and text.startswith("${", i):
                value = self.unescape(text[seg_start:i], seg_start, indent, at_line_start)
                yield self.tok("STR_START" if first else "STR_MID", value, pos if first else seg_start, i + 2)
                first = False
                yield from self.tokens(i + 2, interp=True)
                i = self.end_pos
                seg_start = i
                at_line_start = False
                continue
            if c == "\n" and not triple:
                raise self.src.error("unterminated string literal", pos, hint='use """ for strings that span lines')
            i += 1

    def find_string_end(self, i: int, triple: bool) -> int:
        """Offset of the closing quote(s), skipping interpolations (which may hold strings)."""
        text = self.text
        n = len(text)
        while i < n:
            if text.startswith('"""' if triple else '"', i):
                return i
            c = text[i]
            if c == "\\":
                i += 2
            elif text.startswith("${", i):
                i = self.skip_code(i + 2)
            else:
                i += 1
        raise self.src.error("unterminated string literal", i)

    def skip_code(self, i: int) -> int:
        """Skip an interpolation body up to and past its closing brace."""
        text = self.text
        depth = 0
        n = len(text)
        while i < n:
            c = text[i]
            if c == '"':
                triple = text.startswith('"""', i)
                end = self.find_string_end(i + (3 if triple else 1), triple)
                i = end + (3 if triple else 1)
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                if depth == 0:
                    return i + 1
                depth -= 1
            i += 1
        raise self.src.error("unterminated interpolation `${` in string", i)

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
                raise self.src.error("dangling backslash in string", start + i)
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
                    raise self.src.error(f"invalid unicode escape \\u{{{digits}}}", start + i) from None
                i = close + 1
            elif e == "\n":
                # a backslash at the end of a line joins lines
                i += 2
                while i < n and raw[i] in " \t":
                    i += 1
            else:
                raise self.src.error(
                    f"unknown escape sequence \\{e}", start + i,
                    hint="valid escapes: \\n \\r \\t \\0 \\\\ \\\" \\u{XXXX}",
                )
        return "".join(out)


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
