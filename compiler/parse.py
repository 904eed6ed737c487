"""Source text -> AST: the Lark LALR tables driven token by token, then a tree builder.

Parsing recovers from syntax errors (see `_Parse`), so one run reports every
independent error of a file, up to MAX_SYNTAX_ERRORS. Building the AST walks
the parse tree with an explicit stack, and the finished AST's nesting is
bounded (`concerto.compiler.nesting`) before any recursive pass sees it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedToken
from lark.grammar import Rule
from lark.lexer import TerminalDef

from concerto.compiler import ast as A
from concerto.compiler import grammar_cache
from concerto.compiler.diagnostics import Diagnostic, sort_key
from concerto.compiler.lexer import ConcertoLexer, DocComment, LexError, _Scanner, _Source
from concerto.compiler.nesting import MAX_NESTING, check_nesting
from concerto.grammar import grammar_text

#: Syntax errors reported per file at most; parsing stops after that many.
MAX_SYNTAX_ERRORS = 20


@lru_cache(maxsize=1)
def parser() -> Lark:
    """The Lark LALR parser (tables from the private disk cache when they fit)."""
    from lark import __version__ as lark_version

    grammar = grammar_text()
    directory = grammar_cache.cache_dir()
    name = grammar_cache.cache_name(grammar, lark_version)
    if directory is not None:
        cached = grammar_cache.read(directory, name)
        if cached is not None:
            loaded = _load_tables(cached)
            if loaded is not None:
                return loaded
    lark = Lark(grammar, parser="lalr", lexer=ConcertoLexer, propagate_positions=True, maybe_placeholders=True)
    if directory is not None:
        tables = _tables(lark)
        grammar_cache.write(directory, name, _without_lexer(tables),
                            check=lambda back: (loaded := _load_tables(back)) is not None and _tables(loaded) == tables)
    return lark


def _tables(lark: Lark) -> dict[str, Any]:
    data, memo = lark.memo_serialize([TerminalDef, Rule])
    return {"data": data, "memo": memo}


def _without_lexer(tables: dict[str, Any]) -> dict[str, Any]:
    """The tables minus the lexer class (code: put back on load, never stored)."""
    data = dict(tables["data"])
    data["options"] = {k: v for k, v in data["options"].items() if k != "lexer"}
    data["parser"] = dict(data["parser"])
    data["parser"]["lexer_conf"] = {k: v for k, v in data["parser"]["lexer_conf"].items() if k != "lexer_type"}
    return {"data": data, "memo": tables["memo"]}


def _load_tables(tables: dict[str, Any]) -> Lark | None:
    try:
        tables["data"]["options"]["lexer"] = ConcertoLexer
        tables["data"]["parser"]["lexer_conf"]["lexer_type"] = ConcertoLexer
        return Lark.load(tables)
    except Exception:  # stale or damaged tables: the caller builds them afresh
        return None


@lru_cache(maxsize=1)
def _lexer() -> ConcertoLexer:
    return ConcertoLexer(parser().lexer_conf)


# Friendly names for terminals in "expected ..." messages.
_TERMINAL_NAMES = {
    "SEMICOLON": "`;`", "RBRACE": "`}`", "LBRACE": "`{`", "RPAR": "`)`", "LPAR": "`(`",
    "RSQB": "`]`", "LSQB": "`[`", "COMMA": "`,`", "COLON": "`:`", "IDENT": "an identifier",
    "INT": "an integer", "FLOAT": "a float", "STRING": "a string", "EQUAL": "`=`",
    "ASSIGN_OP": "`=`", "DOT": "`.`", "GT": "`>`", "LT": "`<`", "QMARK": "`?`",
    "__ANON_0": "`->`", "$END": "end of file",
}


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_TERMINAL_NAMES.get(e, e.lower() if e.isupper() and not e.startswith("__") else e) for e in expected})
    names = [n for n in names if not n.startswith("__")]
    if not names:
        return ""
    if len(names) > 6:
        return ""
    return "expected " + ", ".join(names)


def parse_source(text: str, file: str, *, max_nesting: int | None = MAX_NESTING
                 ) -> tuple[A.Module | None, list[Diagnostic]]:
    """Parse a whole file: the module, or None and its syntax errors. A module
    nested deeper than max_nesting is an error (None: no bound, for tools that
    only look at the tree: the compiler's passes need the bound)."""
    ip = parser().parse_interactive()
    scanner = _Scanner(_lexer(), _Source(text), ip.parser_state)
    parse = _Parse(ip.parser_state, scanner, file, text)
    tree = parse.run()
    if tree is None or parse.diagnostics:
        return None, sorted(parse.diagnostics, key=sort_key)
    builder = _Builder(file, scanner.docs)
    module = builder.build(tree)
    if builder.errors:
        return None, sorted(builder.errors, key=sort_key)
    too_deep = check_nesting(module, file, max_nesting) if max_nesting is not None else None
    if too_deep is not None:
        return None, [too_deep]
    return module, []


# Keywords that only begin an item or a statement, never an expression: after a
# syntax error, parsing may pick up again at one of them.
_RESTART_KEYWORDS = frozenset({
    "LET", "FN", "STRUCT", "ENUM", "TRAIT", "IMPL", "USE", "MOD", "CONST", "TYPE", "PUB", "HASHMAP", "AT",
})


class _Parse:
    """Feeds tokens to the LALR parser and recovers from syntax errors.

    Recovery is panic mode at statement granularity: after an error, tokens
    are skipped (keeping count of the `{ }` they open and close) until one at
    brace depth 0 can restart the parse: a `;` or `}` that some state on the
    parser's stack accepts, or a keyword that begins an item or statement
    (`let`, `fn`, `struct`, ...) where the stack holds a statement or item
    list. The stack is cut back to that state and parsing goes on. Errors
    found before a `;` or `}` has been accepted again are the first error's
    echoes and are not reported, so one bad `let` yields one diagnostic."""

    def __init__(self, state: Any, scanner: _Scanner, file: str, text: str) -> None:
        self.state = state
        self.states = state.parse_conf.states
        self.scanner = scanner
        self.file = file
        self.text = text
        self.diagnostics: list[Diagnostic] = []
        self.quiet = False  # an error was reported and no `;`/`}` accepted since
        self.skipping = False
        self.depth = 0  # braces opened by skipped tokens
        self.lex_seen = 0

    def full(self) -> bool:
        return len(self.diagnostics) >= MAX_SYNTAX_ERRORS

    def run(self) -> Any:
        last: Token | None = None
        try:
            for tok in self.scanner.tokens():
                self.take_lex_errors()
                if self.full():
                    return None
                last = tok
                if self.skipping:
                    self.skip(tok)
                    continue
                try:
                    self.state.feed_token(tok)
                except UnexpectedToken as e:
                    self.syntax_error(e)
                    self.skipping = True
                    self.depth = 0
                    self.skip(tok)
                    continue
                if tok.type in ("SEMICOLON", "RBRACE"):
                    self.quiet = False
        except LexError as e:
            self.take_lex_errors()
            self.add(Diagnostic(self.file, e.line, e.column, e.message, hint=e.hint))
            return None
        self.take_lex_errors()
        if self.skipping or self.full():
            return None  # the file ended inside the construct that failed
        end = Token.new_borrow_pos("$END", "", last) if last is not None else Token("$END", "", 0, 1, 1)
        try:
            return self.state.feed_token(end, True)
        except UnexpectedToken as e:
            self.syntax_error(e)
            return None

    def add(self, diag: Diagnostic) -> None:
        if not self.full():
            self.diagnostics.append(diag)

    def take_lex_errors(self) -> None:
        errors = self.scanner.errors
        while self.lex_seen < len(errors):
            e = errors[self.lex_seen]
            self.lex_seen += 1
            self.add(Diagnostic(self.file, e.line, e.column, e.message, hint=e.hint))
            # A dropped character can make the next tokens fail to parse: that
            # is the same mistake, not a new one.
            self.quiet = True

    def syntax_error(self, e: UnexpectedToken) -> None:
        if self.quiet:
            return
        self.quiet = True
        tok = e.token
        if tok.type == "$END":
            line, col = _end_position(self.text)
            msg = "unexpected end of file"
        else:
            line, col = tok.line, tok.column
            msg = f"unexpected {_token_text(tok)}"
        hint = _describe_expected(set(e.expected)) or None
        if hint is None and tok.type in _RESTART_KEYWORDS and "RBRACE" in e.expected:
            hint = "is a `}` missing before this?"
        self.add(Diagnostic(self.file, line, col, msg, hint=hint, length=max(1, len(str(tok.value or "")))))

    def skip(self, tok: Token) -> None:
        """One token while recovering: drop it, or restart the parse with it."""
        kind = tok.type
        if kind == "LBRACE":
            self.depth += 1
            return
        if kind == "RBRACE" and self.depth > 0:
            self.depth -= 1
            return
        if self.depth > 0:
            return
        if kind in ("SEMICOLON", "RBRACE"):
            if self.restart(tok, lists_only=False):
                self.skipping = False
                self.quiet = False
        elif kind in _RESTART_KEYWORDS:
            if self.restart(tok, lists_only=True):
                self.skipping = False
                self.quiet = False  # a new item or statement: its errors are its own

    def restart(self, tok: Token, lists_only: bool) -> bool:
        """Cut the stack back to the nearest state that accepts tok, and feed it."""
        stack = self.state.state_stack
        for k in range(len(stack) - 1, -1, -1):
            actions = self.states[stack[k]]
            if tok.type not in actions:
                continue
            if lists_only and "LET" not in actions and "STRUCT" not in actions:
                continue
            trial = self.state.copy(deepcopy_values=False)
            del trial.state_stack[k + 1:]
            del trial.value_stack[k:]
            try:
                trial.feed_token(tok)
            except UnexpectedToken:
                continue
            self.state.state_stack[:] = trial.state_stack
            self.state.value_stack[:] = trial.value_stack
            return True
        return False


def _token_text(tok: Token) -> str:
    if tok.type in ("IDENT",):
        return f"identifier `{tok.value}`"
    if tok.type in ("STRING", "STR_START"):
        return "string literal"
    if tok.type in ("INT", "FLOAT"):
        return f"number `{tok.value}`"
    return f"`{tok.value}`"


def _end_position(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1


def _span(meta: Any) -> A.Span:
    if getattr(meta, "empty", True):
        return A.Span.none()
    return A.Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(tok: Token) -> A.Span:
    return A.Span(tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column)


def _keyword_span(meta: Any, children: list[Any], keyword: str) -> A.Span:
    """An item's span from its keyword on, leaving out the decorators before it
    (diagnostics about the item point at the keyword)."""
    span = _span(meta)
    tok = next((c for c in children if _is_tok(c, keyword)), None)
    if tok is None:
        return span
    return A.Span(tok.line, tok.column, span.end_line, span.end_col)


def _parse_int(text: str) -> int:
    t = text.replace("_", "")
    if t.startswith(("0x", "0X")):
        return int(t[2:], 16)
    if t.startswith(("0b", "0B")):
        return int(t[2:], 2)
    if t.startswith(("0o", "0O")):
        return int(t[2:], 8)
    return int(t)


def _present(children: list[Any]) -> list[Any]:
    return [c for c in children if c is not None]


def _is_tok(x: Any, *types: str) -> bool:
    return isinstance(x, Token) and x.type in types


class _Builder:
    """Parse tree -> AST. Each rule's method gets (meta, children) with the
    children already built; `build` walks the tree with its own stack, so a
    deeply nested tree costs no Python recursion."""

    def __init__(self, file: str, docs: list[DocComment]) -> None:
        self.file = file
        self.docs = {d.line: d.text for d in docs}
        self.errors: list[Diagnostic] = []

    def error(self, message: str, span: A.Span, hint: str | None = None) -> None:
        self.errors.append(Diagnostic(self.file, span.line, span.col, message, hint=hint))

    def build(self, root: Any) -> Any:
        done: list[Any] = []  # built children, waiting for their parent
        todo: list[tuple[Any, bool]] = [(root, False)]
        while todo:
            node, children_built = todo.pop()
            if not isinstance(node, Tree):
                done.append(node)
                continue
            if not children_built:
                todo.append((node, True))
                todo.extend((child, False) for child in reversed(node.children))
                continue
            count = len(node.children)
            children = done[len(done) - count:] if count else []
            if count:
                del done[len(done) - count:]
            method = getattr(self, node.data, None)
            done.append(method(node.meta, children) if method is not None else Tree(node.data, children, node.meta))
        return done[0]

    def _doc_for(self, line: int) -> str:
        lines = []
        k = line - 1
        while k in self.docs:
            lines.append(self.docs[k])
            k -= 1
        return "\n".join(reversed(lines))

    # ---------------------------------------------------------- module/items
    def start(self, meta, children):
        return A.Module(_span(meta), _flatten(children), self.file)

    def decorator(self, meta, children):
        name = str(children[0])
        args = children[1] if len(children) > 1 and children[1] is not None else []
        return A.Decorator(_span(meta), name, args)

    def fn_decl(self, meta, children):
        decorators = [c for c in children if isinstance(c, A.Decorator)]
        rest = [c for c in children if not isinstance(c, A.Decorator)]
        public = any(_is_tok(c, "PUB") for c in rest)
        is_async = any(_is_tok(c, "ASYNC") for c in rest)
        rest = [c for c in rest if not _is_tok(c, "PUB", "ASYNC")]
        name = str(rest[0])
        generics: list[str] = []
        bounds: dict[str, list[A.TypeRef]] = {}
        params: list[A.Param] = []
        ret = None
        body = None
        has_self = False
        self_mut = False
        for c in rest[1:]:
            if isinstance(c, tuple) and c and c[0] == "generics":
                generics = c[1]
                bounds = c[2]
            elif isinstance(c, tuple) and c and c[0] == "params":
                for p in c[1]:
                    if p == "self" or p == "mut self":
                        has_self = True
                        self_mut = p == "mut self"
                    else:
                        params.append(p)
            elif isinstance(c, tuple) and c and c[0] == "ret":
                ret = c[1]
            elif isinstance(c, A.Block):
                body = c
        span = _span(meta)
        return A.FnDecl(
            span, name, public, params, ret, body, generics, has_self, self_mut, is_async,
            decorators, self._doc_for(span.line), bounds,
        )

    def generics(self, meta, children):
        params = [g for g in children if isinstance(g, tuple)]
        return ("generics", [name for name, _ in params], {name: bounds for name, bounds in params if bounds})

    def generic_param(self, meta, children):
        # `T: Describable + Serializable` -> ("T", [TypeRef Describable, TypeRef Serializable])
        return (str(children[0]), [c for c in children[1:] if isinstance(c, A.TypeRef)])

    def params(self, meta, children):
        return ("params", _present(children))

    def self_param(self, meta, children):
        return "mut self" if any(_is_tok(c, "MUT") for c in children) else "self"

    def param(self, meta, children):
        mutable = any(_is_tok(c, "MUT") for c in children)
        rest = [c for c in children if not _is_tok(c, "MUT")]
        default = rest[2] if len(rest) > 2 else None
        return A.Param(_span(meta), str(rest[0]), rest[1], default, mutable)

    def ret_type(self, meta, children):
        return ("ret", children[0])

    def struct_decl(self, meta, children):
        public = any(_is_tok(c, "PUB") for c in children)
        rest = [c for c in _present(children) if not _is_tok(c, "PUB") and not isinstance(c, A.Decorator)]
        name = str(rest[0])
        fields = [c for c in rest if isinstance(c, A.FieldDecl)]
        span = _span(meta)
        return A.StructDecl(span, name, public, fields, self._doc_for(span.line))

    def field_decl(self, meta, children):
        public = any(_is_tok(c, "PUB") for c in children)
        rest = [c for c in _present(children) if not _is_tok(c, "PUB")]
        default = rest[2] if len(rest) > 2 else None
        return A.FieldDecl(_span(meta), str(rest[0]), rest[1], public, default)

    def enum_decl(self, meta, children):
        public = any(_is_tok(c, "PUB") for c in children)
        rest = [c for c in _present(children) if not _is_tok(c, "PUB") and not isinstance(c, A.Decorator)]
        span = _span(meta)
        variants = [c for c in rest if isinstance(c, A.VariantDecl)]
        return A.EnumDecl(span, str(rest[0]), public, variants, self._doc_for(span.line))

    def unit_variant(self, meta, children):
        return A.VariantDecl(_span(meta), str(children[0]), "unit")

    def tuple_variant(self, meta, children):
        return A.VariantDecl(_span(meta), str(children[0]), "tuple", types=_present(children[1:]))

    def struct_variant(self, meta, children):
        return A.VariantDecl(_span(meta), str(children[0]), "struct", fields=_present(children[1:]))

    def trait_decl(self, meta, children):
        public = any(_is_tok(c, "PUB") for c in children)
        rest = [c for c in _present(children) if not _is_tok(c, "PUB") and not isinstance(c, A.Decorator)]
        methods = [c for c in rest if isinstance(c, A.FnDecl)]
        return A.TraitDecl(_span(meta), str(rest[0]), public, methods)

    def impl_decl(self, meta, children):
        rest = [c for c in _present(children) if not (isinstance(c, tuple) and c and c[0] == "generics")]
        types = [c for c in rest if isinstance(c, A.TypeRef)]
        methods = [c for c in rest if isinstance(c, A.FnDecl)]
        if len(types) == 2:
            return A.ImplDecl(_span(meta), types[1], types[0], methods)
        return A.ImplDecl(_span(meta), types[0], None, methods)

    def const_decl(self, meta, children):
        public = any(_is_tok(c, "PUB") for c in children)
        rest = [c for c in children if not _is_tok(c, "PUB")]
        return A.ConstDecl(_span(meta), str(rest[0]), public, rest[1], rest[2])

    def type_alias(self, meta, children):
        public = any(_is_tok(c, "PUB") for c in children)
        rest = [c for c in _present(children) if not _is_tok(c, "PUB") and not (isinstance(c, tuple))]
        return A.TypeAlias(_span(meta), str(rest[0]), public, rest[-1])

    def hashmap_decl(self, meta, children):
        public = any(_is_tok(c, "PUB") for c in children)
        rest = [c for c in children if not _is_tok(c, "PUB")]
        return A.HashMapDecl(_span(meta), str(rest[0]), public, rest[1], rest[2])

    def model_decl(self, meta, children):
        decorators = [c for c in children if isinstance(c, A.Decorator)]
        public = any(_is_tok(c, "PUB") for c in children)
        keyword = next(str(c) for c in children if _is_tok(c, "MODEL_KW", "AGENT_KW"))
        rest = [c for c in _present(children) if not isinstance(c, A.Decorator) and not _is_tok(c, "PUB", "MODEL_KW", "AGENT_KW")]
        fields = [c for c in rest if isinstance(c, A.ModelField)]
        return A.ModelDecl(_span(meta), str(rest[0]), public, keyword, fields, decorators)

    def model_field(self, meta, children):
        return A.ModelField(_span(meta), str(children[0]), children[1])

    def tool_decl(self, meta, children, keyword: str = "TOOL_KW"):
        decorators = [c for c in children if isinstance(c, A.Decorator)]
        public = any(_is_tok(c, "PUB") for c in children)
        rest = [c for c in _present(children) if not isinstance(c, A.Decorator) and not _is_tok(c, "PUB", keyword)]
        name = str(rest[0])
        trait = rest[1] if len(rest) > 1 and isinstance(rest[1], A.TypeRef) else None
        settings = [c for c in rest if isinstance(c, A.ToolSetting)]
        fields = [c for c in rest if isinstance(c, A.FieldDecl)]
        methods = [c for c in rest if isinstance(c, A.FnDecl)]
        span = _keyword_span(meta, children, keyword)
        if keyword == "MCP_KW":
            return A.McpDecl(span, name, public, settings, fields, methods, decorators)
        return A.ToolDecl(span, name, public, settings, fields, methods, trait, decorators, self._doc_for(span.line))

    def mcp_decl(self, meta, children):
        return self.tool_decl(meta, children, "MCP_KW")

    def tool_setting(self, meta, children):
        return A.ToolSetting(_span(meta), str(children[0]), children[1])

    def tool_field(self, meta, children):
        public = any(_is_tok(c, "PUB") for c in children)
        rest = [c for c in _present(children) if not _is_tok(c, "PUB")]
        return A.FieldDecl(_span(meta), str(rest[0]), rest[1], public, rest[2] if len(rest) > 2 else None)

    def pipeline_decl(self, meta, children):
        decorators = [c for c in children if isinstance(c, A.Decorator)]
        public = any(_is_tok(c, "PUB") for c in children)
        rest = [c for c in _present(children)
                if not isinstance(c, A.Decorator) and not _is_tok(c, "PUB", "PIPELINE_KW")]
        name = str(rest[0])
        params = next((c[1] for c in rest if isinstance(c, tuple) and c[0] == "pipeline_params"), None)
        ret = next((c[1] for c in rest if isinstance(c, tuple) and c[0] == "ret"), None)
        stages = [c for c in rest if isinstance(c, A.StageDecl)]
        return A.PipelineDecl(_keyword_span(meta, children, "PIPELINE_KW"), name, public, params, ret, stages,
                              decorators)

    def pipeline_params(self, meta, children):
        params = children[0][1] if children and children[0] is not None else []
        return ("pipeline_params", [p for p in params if isinstance(p, A.Param)])

    def stage_decl(self, meta, children):
        decorators = [c for c in children if isinstance(c, A.Decorator)]
        rest = [c for c in _present(children) if not isinstance(c, A.Decorator) and not _is_tok(c, "STAGE_KW")]
        name = str(rest[0])
        params: list[A.Param] = []
        has_self = False
        ret = None
        body = None
        for c in rest[1:]:
            if isinstance(c, tuple) and c[0] == "params":
                for p in c[1]:
                    if isinstance(p, A.Param):
                        params.append(p)
                    else:
                        has_self = True
            elif isinstance(c, tuple) and c[0] == "ret":
                ret = c[1]
            elif isinstance(c, A.Block):
                body = c
        assert body is not None
        span = _keyword_span(meta, children, "STAGE_KW")
        return A.StageDecl(span, name, params, ret, body, decorators, has_self)

    def connect_decl(self, meta, children):
        rest = [c for c in _present(children) if not _is_tok(c, "CONNECT_KW")]
        return A.ConnectDecl(_span(meta), str(rest[0]), False, [c for c in rest if isinstance(c, A.ModelField)])

    def schema_decl(self, meta, children):
        decorators = [c for c in children if isinstance(c, A.Decorator)]
        public = any(_is_tok(c, "PUB") for c in children)
        rest = [c for c in _present(children) if not isinstance(c, A.Decorator) and not _is_tok(c, "PUB", "SCHEMA_KW")]
        generics = next((c[1] for c in rest if isinstance(c, tuple) and c and c[0] == "generics"), [])
        fields = [c for c in rest if isinstance(c, A.SchemaField)]
        span = _span(meta)
        return A.SchemaDecl(span, str(rest[0]), public, fields, generics, decorators, self._doc_for(span.line))

    def schema_field(self, meta, children, optional: bool = False):
        decorators = [c for c in children if isinstance(c, A.Decorator)]
        rest = [c for c in _present(children) if not isinstance(c, A.Decorator)]
        name, kind = str(rest[0]), rest[1]
        default = rest[2] if len(rest) > 2 else None
        if isinstance(kind, tuple) and kind[0] == "enum":
            return A.SchemaField(_span(meta), name, None, kind[1], optional, default, decorators)
        return A.SchemaField(_span(meta), name, kind, None, optional, default, decorators)

    def optional_schema_field(self, meta, children):
        return self.schema_field(meta, children, optional=True)

    def enum_type(self, meta, children):
        return ("enum", [str(c) for c in children])

    def memory_decl(self, meta, children):
        public = any(_is_tok(c, "PUB") for c in children)
        rest = [c for c in _present(children) if not _is_tok(c, "PUB", "MEMORY_KW")]
        type_ = rest[1] if len(rest) > 2 else None
        return A.MemoryDecl(_span(meta), str(rest[0]), public, type_, rest[-1])

    def use_decl(self, meta, children):
        public = any(_is_tok(c, "PUB") for c in children)
        tree = [c for c in children if not _is_tok(c, "PUB")][0]
        span = _span(meta)
        return [A.UseDecl(span, path[::-1], alias, public) for path, alias in tree]

    # Use trees build each path back to front (appending the prefix), so a long
    # `a::b::c::...` costs linear time; use_decl turns them around.
    def use_prefix(self, meta, children):
        head = str(children[0])
        for path, _alias in children[1]:
            path.append(head)
        return children[1]

    def use_name(self, meta, children):
        name = str(children[0])
        alias = str(children[1]) if len(children) > 1 and children[1] is not None else name
        return [([name], alias)]

    def use_glob(self, meta, children):
        return [([], "*")]

    def use_group(self, meta, children):
        out = []
        for sub in children:
            out.extend(sub)
        return out

    def mod_file(self, meta, children):
        public = any(_is_tok(c, "PUB") for c in children)
        name = [c for c in children if _is_tok(c, "IDENT")][0]
        return A.ModDecl(_span(meta), str(name), public, None)

    def mod_inline(self, meta, children):
        public = any(_is_tok(c, "PUB") for c in children)
        rest = [c for c in children if not _is_tok(c, "PUB")]
        return A.ModDecl(_span(meta), str(rest[0]), public, _flatten(rest[1:]))

    # ---------------------------------------------------------- types
    def named_type(self, meta, children):
        names = [str(c) for c in children if _is_tok(c, "IDENT")]
        args = next((c for c in children if isinstance(c, list)), [])
        return A.TypeRef(_span(meta), "::".join(names), args)

    def type_args(self, meta, children):
        return [c for c in children if isinstance(c, A.TypeRef)]

    def unit_type(self, meta, children):
        return A.TypeRef(_span(meta), "Nil")

    def tuple_type(self, meta, children):
        return A.TypeRef(_span(meta), "Tuple", _present(children))

    def fn_type(self, meta, children):
        items = _present(children)
        ret = None
        if items and isinstance(items[-1], tuple):
            ret = items.pop()[1]
        return A.TypeRef(_span(meta), "fn", items, ret)

    def fn_ret(self, meta, children):
        return ("fnret", children[0])

    # ---------------------------------------------------------- statements
    def block(self, meta, children):
        stmts = _present(children)
        tail = None
        if stmts and isinstance(stmts[-1], A.ExprStmt) and not stmts[-1].semicolon:
            tail = stmts.pop().expr
        return A.Block(_span(meta), stmts, tail)

    def let_stmt(self, meta, children):
        pattern = children[0]
        type_ = children[1] if len(children) > 1 else None
        value = children[2] if len(children) > 2 else None
        return A.Let(_span(meta), pattern, type_, value)

    def expr_stmt(self, meta, children):
        return A.ExprStmt(_span(meta), children[0], True)

    def block_stmt(self, meta, children):
        return A.ExprStmt(_span(meta), children[0], False)

    def tail_expr(self, meta, children):
        return A.ExprStmt(_span(meta), children[0], False)

    # ---------------------------------------------------------- expressions
    def assign(self, meta, children):
        target, op, value = children
        return A.Assign(_span(meta), str(op), target, value)

    def pipe(self, meta, children):
        left, right = children
        # `x |> f()?` : the `?` belongs to the piped call, not to `f()` alone
        tries = 0
        while isinstance(right, A.Try):
            right = right.expr
            tries += 1
        node: A.Expr = A.Pipe(_span(meta), left, right)
        for _ in range(tries):
            node = A.Try(_span(meta), node)
        return node

    def coalesce(self, meta, children):
        return A.Coalesce(_span(meta), children[0], children[1])

    def or_op(self, meta, children):
        return A.Logical(_span(meta), "||", children[0], children[2])

    def and_op(self, meta, children):
        return A.Logical(_span(meta), "&&", children[0], children[1])

    def binop(self, meta, children):
        left, op, right = children
        return A.Binary(_span(meta), str(op), left, right)

    def range(self, meta, children):
        lo, op, hi = children
        return A.RangeExpr(_span(meta), lo, hi, str(op) == "..=")

    def range_from(self, meta, children):
        return A.RangeExpr(_span(meta), children[0], None, False)

    def range_to(self, meta, children):
        op, hi = children
        return A.RangeExpr(_span(meta), None, hi, str(op) == "..=")

    def range_full(self, meta, children):
        return A.RangeExpr(_span(meta), None, None, False)

    def cast(self, meta, children):
        return A.Cast(_span(meta), children[0], children[1])

    def not_op(self, meta, children):
        return A.Unary(_span(meta), "!", children[0])

    def neg(self, meta, children):
        op, operand = children
        if str(op) == "+":
            return operand
        if isinstance(operand, A.Literal) and type(operand.value) in (int, float) and type(operand.value) is not bool:
            return A.Literal(_span(meta), -operand.value)
        return A.Unary(_span(meta), "-", operand)

    def field(self, meta, children):
        return A.Field(_span(meta), children[0], str(children[1]))

    def tuple_field(self, meta, children):
        return A.TupleField(_span(meta), children[0], int(str(children[1])))

    def call(self, meta, children):
        args = children[1] if len(children) > 1 and children[1] is not None else []
        return A.Call(_span(meta), children[0], args)

    def generic_call(self, meta, children):
        callee = children[0]
        type_args = [c for c in children[1:] if isinstance(c, A.TypeRef)]
        args = next((c for c in children[1:] if isinstance(c, list)), [])
        return A.Call(_span(meta), callee, args, type_args)

    def index(self, meta, children):
        return A.Index(_span(meta), children[0], children[1])

    def try_op(self, meta, children):
        return A.Try(_span(meta), children[0])

    def name(self, meta, children):
        return A.Name(_span(meta), str(children[0]))

    def path(self, meta, children):
        return A.Path(_span(meta), [str(c) for c in children])

    def self_expr(self, meta, children):
        return A.SelfExpr(_span(meta))

    def unit(self, meta, children):
        return A.Literal(_span(meta), None)

    def tuple(self, meta, children):
        return A.TupleExpr(_span(meta), _present(children))

    def array(self, meta, children):
        return A.ArrayExpr(_span(meta), _present(children))

    def map_lit(self, meta, children):
        return A.MapExpr(_span(meta), _present(children))

    def map_entry(self, meta, children):
        return (children[0], children[1])

    def struct_lit(self, meta, children):
        head = children[0]
        path = head.segments if isinstance(head, A.Path) else [str(head)]
        fields = [c for c in children[1:] if c is not None]
        return A.StructLit(_span(meta), path, fields)

    def field_init(self, meta, children):
        return (str(children[0]), children[1])

    def field_shorthand(self, meta, children):
        return (str(children[0]), A.Name(_span(meta), str(children[0])))

    def args(self, meta, children):
        return _present(children)

    def pos_arg(self, meta, children):
        return A.Arg(_span(meta), None, children[0])

    def named_arg(self, meta, children):
        return A.Arg(_span(meta), str(children[0]), children[1])

    def closure(self, meta, children):
        items = _present(children)
        body = items[-1]
        params = [p for p in items[:-1] if isinstance(p, A.Param)]
        ret, expr = body
        return A.Closure(_span(meta), params, ret, expr)

    def closure_param(self, meta, children):
        name = str(children[0])
        type_ = children[1] if len(children) > 1 else None
        return A.Param(_span(meta), name, type_)

    def typed_body(self, meta, children):
        return (children[0], children[1])

    def expr_body(self, meta, children):
        return (None, children[0])

    def if_expr(self, meta, children):
        cond, then = children[0], children[1]
        els = children[2] if len(children) > 2 else None
        return A.If(_span(meta), cond, then, els)

    def match_expr(self, meta, children):
        return A.Match(_span(meta), children[0], _present(children[1:]))

    def match_arm(self, meta, children):
        pattern = children[0]
        guard = children[1]
        body = children[2]
        return A.MatchArm(_span(meta), pattern, guard, body)

    def _label(self, children):
        for c in children:
            if _is_tok(c, "LABEL"):
                return str(c)[1:]
        return None

    def loop_expr(self, meta, children):
        return A.Loop(_span(meta), self._label(children), children[-1])

    def while_expr(self, meta, children):
        rest = [c for c in children if not _is_tok(c, "LABEL") and c is not None]
        return A.While(_span(meta), self._label(children), rest[0], rest[1])

    def for_expr(self, meta, children):
        rest = [c for c in children if not _is_tok(c, "LABEL") and c is not None]
        return A.For(_span(meta), self._label(children), rest[0], rest[1], rest[2])

    def try_expr(self, meta, children):
        return A.TryCatch(_span(meta), children[0], children[1:])

    def catch_clause(self, meta, children):
        items = _present(children)
        block = items[-1]
        names = [str(c) for c in items[:-1]]
        type_name = names[0] if names else None
        binding = names[1] if len(names) > 1 else None
        if binding == "_":
            binding = None
        return A.CatchClause(_span(meta), type_name, binding, block)

    def return_expr(self, meta, children):
        return A.Return(_span(meta), children[0] if children else None)

    def break_expr(self, meta, children):
        label = self._label(children)
        rest = [c for c in children if not _is_tok(c, "LABEL") and c is not None]
        return A.Break(_span(meta), label, rest[0] if rest else None)

    def continue_expr(self, meta, children):
        return A.Continue(_span(meta), self._label(children))

    def throw_expr(self, meta, children):
        return A.Throw(_span(meta), children[0])

    def emit_expr(self, meta, children):
        return A.Emit(_span(meta), children[0])

    def typed_emit_expr(self, meta, children):
        schema = next(c for c in children if isinstance(c, A.TypeRef))
        args = next((c for c in children if isinstance(c, list)), [])
        return A.Emit(_span(meta), args, schema)

    def await_prefix(self, meta, children):
        return A.Await(_span(meta), children[-1], True)

    def await_postfix(self, meta, children):
        return A.Await(_span(meta), children[0], False)

    def race_expr(self, meta, children):
        return A.Race(_span(meta), [c for c in _present(children) if not _is_tok(c, "RACE_KW")])

    def parallel_for_expr(self, meta, children):
        rest = [c for c in children if not _is_tok(c, "PARALLEL_KW") and c is not None]
        return A.ParallelFor(_span(meta), rest[0], rest[1], rest[2])

    def plain_string(self, meta, children):
        return A.Literal(_span(meta), str(children[0]))

    def interp_string(self, meta, children):
        parts: list[Any] = []
        for c in children:
            if isinstance(c, Token):
                if str(c):
                    parts.append(str(c))
            else:
                parts.append(c)
        return A.Interp(_span(meta), parts)

    def int_lit(self, meta, children):
        tok = children[0]
        value = _parse_int(str(tok))
        if value > 2**63 - 1 + 1:  # allow the magnitude of i64::MIN for `-9223372036854775808`
            self.error(f"integer literal `{tok}` does not fit in a 64-bit Int", _tok_span(tok))
            value = 0
        return A.Literal(_span(meta), value)

    def float_lit(self, meta, children):
        return A.Literal(_span(meta), float(str(children[0]).replace("_", "")))

    def true_lit(self, meta, children):
        return A.Literal(_span(meta), True)

    def false_lit(self, meta, children):
        return A.Literal(_span(meta), False)

    def nil_lit(self, meta, children):
        return A.Literal(_span(meta), None)

    # ---------------------------------------------------------- patterns
    def or_pat(self, meta, children):
        left, right = children
        if isinstance(left, A.OrPat):  # `a | b | c` arrives left-nested: extend in place (linear)
            left.alts.append(right)
            left.span = _span(meta)
            return left
        return A.OrPat(_span(meta), [left, right])

    def at_pat(self, meta, children):
        return A.AtPat(_span(meta), str(children[0]), children[1])

    def wildcard_pat(self, meta, children):
        return A.WildcardPat(_span(meta))

    def lit_pat(self, meta, children):
        lit = children[0]
        if isinstance(lit, A.LiteralPat):
            return lit
        return A.LiteralPat(_span(meta), lit.value)

    def string_pat(self, meta, children):
        return A.LiteralPat(_span(meta), str(children[0]))

    def neg_int_pat(self, meta, children):
        sign = -1 if str(children[0]) == "-" else 1
        return A.LiteralPat(_span(meta), sign * _parse_int(str(children[1])))

    def neg_float_pat(self, meta, children):
        sign = -1.0 if str(children[0]) == "-" else 1.0
        return A.LiteralPat(_span(meta), sign * float(str(children[1]).replace("_", "")))

    def range_pat(self, meta, children):
        lo, op, hi = children
        return A.RangePat(_span(meta), lo.value, hi.value, str(op) == "..=")

    def ident_pat(self, meta, children):
        return A.IdentPat(_span(meta), str(children[0]))

    def mut_ident_pat(self, meta, children):
        return A.IdentPat(_span(meta), str(children[1]), True)

    def path_pat(self, meta, children):
        return A.PathPat(_span(meta), children[0].segments)

    def _head_path(self, head):
        return head.segments if isinstance(head, A.Path) else [str(head)]

    def variant_pat(self, meta, children):
        return A.VariantPat(_span(meta), self._head_path(children[0]), _present(children[1:]))

    def struct_pat(self, meta, children):
        fields = []
        has_rest = False
        for c in _present(children[1:]):
            if c == "..":
                has_rest = True
            else:
                fields.append(c)
        return A.StructPat(_span(meta), self._head_path(children[0]), fields, has_rest)

    def field_pat(self, meta, children):
        return (str(children[0]), children[1])

    def field_pat_short(self, meta, children):
        mutable = any(_is_tok(c, "MUT") for c in children)
        name = str([c for c in children if _is_tok(c, "IDENT")][0])
        return (name, A.IdentPat(_span(meta), name, mutable))

    def field_pat_rest(self, meta, children):
        return ".."

    def unit_pat(self, meta, children):
        return A.LiteralPat(_span(meta), None)

    def tuple_pat(self, meta, children):
        return A.TuplePat(_span(meta), _present(children))

    def rest_pat(self, meta, children):
        name = str(children[1]) if len(children) > 1 and children[1] is not None else ""
        return ("rest", name)

    def array_pat(self, meta, children):
        before: list[A.Pattern] = []
        after: list[A.Pattern] = []
        rest: str | None = None
        seen_rest = False
        for c in _present(children):
            if isinstance(c, tuple) and c[0] == "rest":
                if seen_rest:
                    self.error("an array pattern can hold only one `..`", _span(meta))
                    continue
                seen_rest = True
                rest = c[1]
            elif seen_rest:
                after.append(c)
            else:
                before.append(c)
        return A.ArrayPat(_span(meta), before, rest, seen_rest, after)


def _flatten(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, list):
            out.extend(item)
        elif item is not None:
            out.append(item)
    return out
