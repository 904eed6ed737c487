"""Checked AST -> IR.

One FunctionCompiler per function body (and per closure). It keeps lexical
scopes mapping source names to unique local names, infers types locally
(`None` = unknown) for the checks spec 02-05 call compile errors, and emits
spec-16 instructions with `[line, col]` spans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from concerto import ir
from concerto.compiler import ast as A
from concerto.compiler import types as T
from concerto.compiler.diagnostics import Diagnostic
from concerto.compiler import concurrency
from concerto.compiler import llm
from concerto.compiler.resolve import BUILTIN_ERRORS, BUILTIN_TYPES, FnInfo, ModuleInfo, Symbols, qualify
from concerto.stdlib import load as load_stdlib

_ARITH = {"+": "ADD", "-": "SUB", "*": "MUL", "/": "DIV", "%": "MOD"}
_CMP = {"==": "EQ", "!=": "NEQ", "<": "LT", ">": "GT", "<=": "LTE", ">=": "GTE"}
_PRELUDE_VARIANTS = {"Some": ("Option", 1), "None": ("Option", 0), "Ok": ("Result", 1), "Err": ("Result", 1)}
# Built-in functions every program can call without `use`.
_PRELUDE_NATIVES = {"panic": "panic", "assert": "assert", "assert_eq": "assert_eq"}


class CompileError(Exception):
    """Raised to abandon one construct after its diagnostic was recorded."""


@dataclass
class Local:
    slot_name: str
    mutable: bool
    type: str | None
    initialized: bool = True


@dataclass
class LoopCtx:
    label: str | None
    break_jumps: list[int] = field(default_factory=list)
    continue_target: int = -1
    continue_jumps: list[int] = field(default_factory=list)
    try_depth: int = 0
    result_type: str | None = None


class ProgramBuilder:
    """Holds what all functions share: constants, functions, diagnostics."""

    def __init__(self, symbols: Symbols) -> None:
        self.symbols = symbols
        self.registry = load_stdlib()
        self.constants: list[ir.Constant] = []
        self.const_index: dict[tuple[str, Any], int] = {}
        self.functions: list[ir.Function] = []
        self.diagnostics: list[Diagnostic] = []
        self.closure_count = 0
        self.mappings: list[ir.Mapping] = []
        self.fn_sigs: dict[str, FnInfo] = dict(symbols.functions)
        self.methods: dict[str, dict[str, FnInfo]] = {}  # type -> method -> info
        self.trait_impls: set[tuple[str, str]] = set()  # (type, trait) from `impl Trait for Type`
        self.pipelines: dict[str, concurrency.PipelineInfo] = {}
        self.stage_functions: set[str] = set()  # `P::stage` functions of pipelines

    def const(self, value: Any) -> int:
        kind = _const_kind(value)
        key = (kind, value if kind != "float" else repr(value))
        idx = self.const_index.get(key)
        if idx is None:
            idx = len(self.constants)
            self.constants.append(ir.Constant(idx, kind, value))
            self.const_index[key] = idx
        return idx

    def error(self, file: str, span: A.Span, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(file, span.line, span.col, message, hint=hint,
                                           length=_span_len(span)))

    def warning(self, file: str, span: A.Span, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(file, span.line, span.col, message, hint=hint,
                                           length=_span_len(span), severity="warning"))


def _span_len(span: A.Span) -> int:
    if span.end_line == span.line and span.end_col > span.col:
        return span.end_col - span.col
    return 1


def _const_kind(value: Any) -> str:
    if value is None:
        return "nil"
    if value is True or value is False:
        return "bool"
    if type(value) is int:
        return "int"
    if type(value) is float:
        return "float"
    return "string"


def literal_type(value: Any) -> str:
    return {"nil": "Nil", "bool": "Bool", "int": "Int", "float": "Float", "string": "String"}[_const_kind(value)]


class FunctionCompiler:
    def __init__(
        self,
        pb: ProgramBuilder,
        module: ModuleInfo,
        name: str,
        *,
        parent: "FunctionCompiler | None" = None,
        ret_type: str | None = None,
        ret_declared: bool = False,
        self_type: str | None = None,
        self_mutable: bool = False,
        generics: frozenset[str] = frozenset(),
    ) -> None:
        self.pb = pb
        self.symbols = pb.symbols
        self.module = module
        self.name = name
        self.parent = parent
        self.code: list[ir.Instr] = []
        self.locals: list[str] = []
        self.local_names: set[str] = set()
        self.scopes: list[dict[str, Local]] = [{}]
        self.loops: list[LoopCtx] = []
        self.try_depth = 0
        # Expressions whose value is thrown away (statements): an `if` there may
        # have branches of different types.
        self.discarded: set[int] = set()
        self.ret_type = ret_type
        self.ret_declared = ret_declared
        self.self_type = self_type
        self.self_mutable = self_mutable
        self.generics = generics
        self.captures: list[str] = []  # source names captured from the parent
        self.capture_locals: dict[str, Local] = {}
        self.temp_count = 0
        self.span = A.Span.none()
        # The value type of the body compile_body compiled (closures report it).
        self.body_type: str | None = None
        # A `parallel for` body: `break`/`continue` cannot leave it.
        self.parallel_body = False
        # A pipeline stage: `?` may leave it whatever its return type (the
        # pipeline stops at an Err).
        self.is_stage = False

    # ------------------------------------------------------------ emission
    def emit(self, op: str, **kw: Any) -> int:
        self.code.append(ir.Instr(op, span=(self.span.line, self.span.col), **kw))
        return len(self.code) - 1

    def patch(self, at: int, target: int | None = None) -> None:
        self.code[at].arg = len(self.code) if target is None else target

    def here(self) -> int:
        return len(self.code)

    def error(self, span: A.Span, message: str, hint: str | None = None) -> None:
        self.pb.error(self.module.file, span, message, hint)

    # ------------------------------------------------------------ locals
    def new_local(self, name: str) -> str:
        slot = name
        k = 1
        while slot in self.local_names:
            slot = f"{name}.{k}"
            k += 1
        self.local_names.add(slot)
        self.locals.append(slot)
        return slot

    def temp(self, hint: str = "t") -> str:
        self.temp_count += 1
        return self.new_local(f"${hint}{self.temp_count}")

    def declare(self, name: str, mutable: bool, type_: str | None, initialized: bool = True) -> Local:
        local = Local(self.new_local(name), mutable, type_, initialized)
        self.scopes[-1][name] = local
        return local

    def lookup(self, name: str) -> Local | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        if name in self.capture_locals:
            return self.capture_locals[name]
        if self.parent is not None:
            outer = self.parent.lookup(name)
            if outer is not None:
                # Captured by value: a copy lives in this closure's locals.
                local = Local(self.new_local(name), False, outer.type)
                self.capture_locals[name] = local
                self.captures.append(name)
                return local
        return None

    def push_scope(self) -> None:
        self.scopes.append({})

    def pop_scope(self) -> None:
        self.scopes.pop()

    # ------------------------------------------------------------ names
    def resolve_path(self, segments: list[str]) -> list[str]:
        """Expand the first segment through `use` aliases and module paths, then
        follow `pub use` re-exports (`h::f` -> `h::h2::f`, spec 14 "Re-exports")."""
        return self.symbols.follow_reexports(self.expand_head(segments))

    def expand_head(self, segments: list[str]) -> list[str]:
        head = segments[0]
        if head == "Self" and self.self_type:
            return [self.self_type] + segments[1:]
        if head in self.module.aliases:
            return self.module.aliases[head] + segments[1:]
        if head in ("std", "crate", "super", "self"):
            if head == "crate":
                return segments[1:]
            return segments
        qual = qualify(self.module, head)
        if self.module.path and self.symbols.item_kind(qual):
            return qual.split("::") + segments[1:]
        for glob in self.module.globs:
            cand = "::".join(glob + [head])
            if self.symbols.item_kind(cand) or self.native_exists(cand):
                return glob + segments
        return segments

    def native_exists(self, path: str) -> bool:
        return path in self.pb.registry.functions

    def check_visible(self, qual: str, span: A.Span) -> None:
        owner = self.symbols.item_module.get(qual)
        if owner is None or owner == self.module.path:
            return
        if self.module.path.startswith(owner + "::") or (owner and self.module.path == owner):
            return
        if qual not in self.symbols.public and not owner == "":
            self.error(span, f"`{qual}` is private to module `{owner}`", hint="mark it `pub` to use it from here")

    def type_str(self, t: A.TypeRef | None) -> str | None:
        if t is None:
            return None
        if t.name == "fn":
            params = ", ".join(self.type_str(a) or "Any" for a in t.args)
            ret = self.type_str(t.ret) if t.ret else "Nil"
            return f"fn({params}) -> {ret}"
        if t.name == "Tuple":
            return "(" + ", ".join(self.type_str(a) or "Any" for a in t.args) + ")"
        name = t.name
        if name == "Self" and self.self_type:
            name = self.self_type
        segs = self.resolve_path(name.split("::"))
        qual = "::".join(segs)
        if qual in self.symbols.aliases:
            decl, mod = self.symbols.aliases[qual]
            return FunctionCompiler(self.pb, mod, "<alias>").type_str(decl.type)
        if len(segs) > 1 and segs[0] == "std":
            qual = segs[-1]
        if (qual not in BUILTIN_TYPES and qual not in BUILTIN_ERRORS and qual not in self.symbols.structs
                and qual not in self.symbols.enums and qual not in self.symbols.traits
                and qual not in self.generics and not (len(qual) == 1 and qual.isupper())):
            self.error(t.span, f"unknown type `{t.name}`")
            return None
        if t.args:
            return f"{qual}<{', '.join(self.type_str(a) or 'Any' for a in t.args)}>"
        return qual

    # ------------------------------------------------------------ functions
    def compile_body(self, params: list[A.Param], body: A.Block | A.Expr, has_self: bool,
                     param_types: list[str | None] | None = None) -> ir.Function:
        if has_self:
            self.declare("self", self.self_mutable, self.self_type)
        for k, p in enumerate(params):
            if p.name in self.scopes[0] and p.name != "_":
                self.error(p.span, f"parameter `{p.name}` is declared twice")
            if param_types is not None:
                ptype = param_types[k]
            else:
                ptype = self.type_str(p.type) if p.type else None
            local = self.declare(p.name, p.mutable, ptype)
            if p.mutable:
                # Like `let mut`, a `mut` parameter works on its own shallow copy:
                # only `mut self` may change the caller's value (docs/semantics.md).
                self.span = p.span
                self.emit("LOAD_LOCAL", name=local.slot_name)
                self.emit("COPY")
                self.emit("STORE_LOCAL", name=local.slot_name)
        if isinstance(body, A.Block) and self.ret_declared and self.ret_type == "Nil" \
                and isinstance(_block_tail(body), A.ParallelFor):
            # `parallel for` ending a function that returns nothing is a statement.
            self.block(body, discard=True)
            self.emit("LOAD_CONST", arg=self.pb.const(None))
            t = "Nil"
        elif isinstance(body, A.Block):
            t = self.block(body)
        else:
            t = self.expr(body)
        self.body_type = t
        self.check_return_type(t, body)
        self.span = _end_span(body)
        self.emit("RETURN")
        return ir.Function(name=self.name, module=self.module.path or "main", locals=list(self.locals),
                           instructions=self.code)

    def coerce(self, expected: str | None, actual: str | None) -> None:
        """Spec 02's implicit conversions: Int -> Float, T -> Option<T> (Some)."""
        if expected is None or actual is None or actual in ("Never", "Any"):
            return
        if expected == "Float" and actual == "Int":
            self.emit("CAST", type_name="Float")
        elif expected.startswith("Option<") and not actual.startswith("Option") and actual != "Nil":
            self.emit("BUILD_VARIANT", type_name="Option", name="Some", argc=1)

    def check_return_type(self, actual: str | None, node: A.Node) -> None:
        if self.ret_declared:
            self.coerce(self.ret_type, actual)
        if not self.ret_declared or actual is None or actual == "Never":
            return
        if not T.compatible(self.ret_type, actual, self.generics):
            span = node.tail.span if isinstance(node, A.Block) and node.tail is not None else node.span
            self.error(span, f"mismatched types: expected `{self.ret_type}`, found `{actual}`",
                       hint="the function's return type is declared in its signature")

    # ------------------------------------------------------------ blocks
    def block(self, block: A.Block, new_scope: bool = True, discard: bool = False) -> str | None:
        """Compile a block; it leaves its value on the stack unless `discard`."""
        if new_scope:
            self.push_scope()
        tail = _block_tail(block)
        stmts = list(block.stmts)
        if block.tail is None and tail is not None:
            stmts.pop()  # the last statement is the block's value
        for stmt in stmts:
            self.stmt(stmt)
        if discard:
            if tail is not None:
                self.expr_discard(tail)
            t = None
        elif tail is not None:
            t = self.expr(tail)
        else:
            self.span = _end_span(block)
            self.emit("LOAD_CONST", arg=self.pb.const(None))
            t = "Never" if stmts and _diverges(stmts[-1]) else "Nil"
        if new_scope:
            self.pop_scope()
        return t

    def stmt(self, stmt: A.Stmt | A.Node) -> None:
        self.span = stmt.span
        try:
            if isinstance(stmt, A.Let):
                self.let(stmt)
            elif isinstance(stmt, A.ExprStmt):
                self.expr_discard(stmt.expr)
            elif isinstance(stmt, A.ConstDecl):
                self.local_const(stmt)
            else:
                self.error(stmt.span, "this item is not allowed inside a function")
        except CompileError:
            pass

    def expr_discard(self, e: A.Expr) -> None:
        if isinstance(e, A.Assign):
            self.assign(e)
            return
        self.discarded.add(id(e))
        self.expr(e)
        self.emit("POP")

    def local_const(self, c: A.ConstDecl) -> None:
        t = self.expr(c.value)
        declared = self.type_str(c.type)
        if not T.compatible(declared, t, self.generics):
            self.error(c.value.span, f"mismatched types: expected `{declared}`, found `{t}`")
        local = self.declare(c.name, False, declared or t)
        self.emit("STORE_LOCAL", name=local.slot_name)

    def let(self, stmt: A.Let) -> None:
        declared = self.type_str(stmt.type) if stmt.type else None
        if stmt.value is None:
            if not isinstance(stmt.pattern, A.IdentPat):
                self.error(stmt.span, "a destructuring `let` needs a value")
                return
            # Declared now, assigned later (spec 03, uninitialized bindings).
            self.declare(stmt.pattern.name, True, declared, initialized=False).mutable = stmt.pattern.mutable or "once"  # type: ignore[assignment]
            return
        t = self.expr(stmt.value)
        if declared is not None and not T.compatible(declared, t, self.generics):
            self.error(stmt.value.span, f"mismatched types: expected `{declared}`, found `{t}`")
        self.span = stmt.value.span
        self.coerce(declared, t)
        pat = stmt.pattern
        if isinstance(pat, A.IdentPat) and not self.is_unit_variant_name(pat.name):
            if pat.mutable and _is_place(stmt.value):
                self.emit("COPY")  # `let mut b = a` must not let b's changes reach a
            local = self.declare(pat.name, pat.mutable, declared or t)
            self.span = stmt.span
            self.emit("STORE_LOCAL", name=local.slot_name)
            return
        self.check_tuple_pattern_arity(pat, declared or t)
        src = self.temp("let")
        self.emit("STORE_LOCAL", name=src)
        fail = self.pattern(pat, src, declared or t, refutable_ok=False)
        if fail:
            end = self.emit("JUMP", arg=None)
            for j in fail:
                self.patch(j)
            self.emit("MATCH_FAIL", arg=self.pb.const("pattern in `let` did not match the value"))
            self.patch(end)

    def check_tuple_pattern_arity(self, pat: A.Pattern, t: str | None) -> None:
        """`let (a, b) = (1, 2, 3);` can never match: say so now, not at run time."""
        if not isinstance(pat, A.TuplePat) or not t or not t.startswith("("):
            return
        items = T.split(t)[1]
        if len(items) != len(pat.items):
            self.error(pat.span, f"this pattern has {len(pat.items)} element(s) but the value is a "
                       f"{len(items)}-tuple `{t}`")
            return
        for sub, sub_t in zip(pat.items, items):
            self.check_tuple_pattern_arity(sub, sub_t)

    # ------------------------------------------------------------ expressions
    def expr(self, e: A.Expr) -> str | None:
        self.span = e.span
        method = getattr(self, "x_" + type(e).__name__, None)
        if method is None:
            self.error(e.span, f"unsupported expression {type(e).__name__}")
            raise CompileError()
        return method(e)

    def x_Literal(self, e: A.Literal) -> str:
        self.emit("LOAD_CONST", arg=self.pb.const(e.value))
        return literal_type(e.value)

    def x_Interp(self, e: A.Interp) -> str:
        for part in e.parts:
            if isinstance(part, str):
                self.emit("LOAD_CONST", arg=self.pb.const(part))
            else:
                self.expr(part)
        self.span = e.span
        self.emit("BUILD_STRING", arg=len(e.parts))
        return "String"

    def x_Name(self, e: A.Name) -> str | None:
        local = self.lookup(e.name)
        if local is not None:
            if local.initialized is False:
                self.error(e.span, f"`{e.name}` is used before it is assigned")
            self.emit("LOAD_LOCAL", name=local.slot_name)
            return local.type
        return self.global_value(e, [e.name])

    def x_SelfExpr(self, e: A.SelfExpr) -> str | None:
        local = self.lookup("self")
        if local is None:
            self.error(e.span, "`self` is only available inside methods")
            raise CompileError()
        self.emit("LOAD_LOCAL", name=local.slot_name)
        return local.type

    def x_Path(self, e: A.Path) -> str | None:
        return self.global_value(e, e.segments)

    def is_unit_variant_name(self, name: str) -> bool:
        if name == "None":
            return True
        path = self.module.aliases.get(name)
        if path and len(path) >= 2:
            enum = "::".join(path[:-1])
            decl = self.symbols.enums.get(enum)
            return decl is not None and any(v.name == path[-1] and v.kind == "unit" for v in decl.variants)
        return False

    def global_value(self, e: A.Expr, segments: list[str]) -> str | None:
        segs = self.resolve_path(segments)
        qual = "::".join(segs)
        if qual == "None" or segs == ["Option", "None"]:
            self.emit("BUILD_VARIANT", type_name="Option", name="None", argc=0)
            return "Option<Any>"
        variant = self.enum_variant(segs)
        if variant is not None:
            enum_name, vdecl = variant
            if vdecl.kind != "unit":
                # A tuple variant used as a value is a constructor function.
                self.error(e.span, f"`{qual}` needs its data: write `{qual}(...)`")
                raise CompileError()
            self.emit("BUILD_VARIANT", type_name=enum_name, name=vdecl.name, argc=0)
            return enum_name
        kind = self.symbols.item_kind(qual)
        if kind == "pipeline":
            self.error(e.span, f"pipeline `{qual}` is not a value",
                       hint=f"run it with `{segments[-1]}.run(input)`")
            raise CompileError()
        if kind in ("model", "memory"):
            self.check_visible(qual, e.span)
            self.emit("LOAD_GLOBAL", name=qual)
            return "Model" if kind == "model" else "Memory"
        if kind == "tool":
            # The tool's one instance (its state lives for the whole run).
            self.check_visible(qual, e.span)
            self.emit("LOAD_GLOBAL", name=qual)
            return qual
        if kind == "mcp":
            self.check_visible(qual, e.span)
            self.emit("LOAD_GLOBAL", name=qual)
            return "Mcp"
        if kind in ("fn", "const", "hashmap"):
            self.check_visible(qual, e.span)
            self.emit("LOAD_GLOBAL", name=qual)
            if kind == "const":
                decl, _ = self.symbols.consts[qual]
                return FunctionCompiler(self.pb, self.symbols_module(qual), "<c>").type_str(decl.type)
            if kind == "hashmap":
                return "HashMap"
            return "fn"
        if qual in self.pb.fn_sigs:
            self.emit("LOAD_GLOBAL", name=qual)
            return "fn"
        if self.native_exists(qual):
            self.emit("LOAD_GLOBAL", name=qual)
            return "fn"
        self.error(e.span, f"cannot find `{'::'.join(segments)}` in this scope",
                   hint=self.suggest(segments[-1]))
        raise CompileError()

    def symbols_module(self, qual: str) -> ModuleInfo:
        owner = self.symbols.item_module.get(qual, "")
        for m in self.symbols.modules:
            if m.path == owner:
                return m
        return self.module

    def suggest(self, name: str) -> str | None:
        import difflib

        names: set[str] = set()
        for scope in self.scopes:
            names.update(scope)
        names.update(k.split("::")[-1] for k in self.symbols.functions)
        names.update(self.module.aliases)
        close = difflib.get_close_matches(name, sorted(names), n=1)
        return f"did you mean `{close[0]}`?" if close else None

    def enum_variant(self, segs: list[str]) -> tuple[str, A.VariantDecl] | None:
        if len(segs) < 2:
            return None
        enum_name = "::".join(segs[:-1])
        decl = self.symbols.enums.get(enum_name)
        if decl is None:
            return None
        for v in decl.variants:
            if v.name == segs[-1]:
                return enum_name, v
        return None

    def x_Unary(self, e: A.Unary) -> str | None:
        t = self.expr(e.operand)
        self.span = e.span
        if e.op == "!":
            if t is not None and t not in ("Bool", "Any"):
                self.error(e.span, f"cannot apply `!` to `{t}`", hint="only Bool values can be negated with `!`")
            self.emit("NOT")
            return "Bool"
        if t is not None and t not in T.NUMERIC and t != "Any":
            self.error(e.span, f"cannot negate a value of type `{t}`")
        self.emit("NEG")
        return t

    # Operator chains (`a + b + c ...`, `x || y || z ...`, `p ?? q ?? r ...`) nest
    # to the left without limit (compiler/nesting.py counts a chain as one
    # level), so each x_ method below walks its chain's left spine in a loop.
    @staticmethod
    def _left_spine(e: A.Expr, kind: type) -> tuple[A.Expr, list[Any]]:
        """The chain's operators, innermost first, and its leftmost operand."""
        spine = []
        while isinstance(e, kind):
            spine.append(e)
            e = e.left  # type: ignore[attr-defined]
        spine.reverse()
        return e, spine

    def x_Binary(self, e: A.Binary) -> str | None:
        first, spine = self._left_spine(e, A.Binary)
        lt = self.expr(first)
        for node in spine:
            rt = self.expr(node.right)
            self.span = node.span
            lt = self.binary_op(node, lt, rt)
        return lt

    def binary_op(self, e: A.Binary, lt: str | None, rt: str | None) -> str | None:
        if e.op in _ARITH:
            result = self.arith_type(e, lt, rt)
            self.emit(_ARITH[e.op])
            return result
        if e.op in ("<", ">", "<=", ">="):
            if lt and rt and not (lt in T.NUMERIC and rt in T.NUMERIC) and lt != rt and "Any" not in (lt, rt):
                self.error(e.span, f"cannot compare `{lt}` with `{rt}`")
        self.emit(_CMP[e.op])
        return "Bool"

    def arith_type(self, e: A.Binary, lt: str | None, rt: str | None) -> str | None:
        if lt is None or rt is None or "Any" in (lt, rt):
            return lt if lt == rt else None
        if lt in T.NUMERIC and rt in T.NUMERIC:
            return "Int" if lt == rt == "Int" else "Float"
        if e.op == "+" and lt == rt == "String":
            return "String"
        if e.op == "+" and lt == "String":
            hint = "convert with `.to_string()` or use interpolation \"${...}\""
        else:
            hint = None
        self.error(e.span, f"cannot apply `{e.op}` to `{lt}` and `{rt}`", hint=hint)
        return None

    def x_Logical(self, e: A.Logical) -> str:
        first, spine = self._left_spine(e, A.Logical)
        lt: str | None = self.expr(first)
        for node in spine:
            self.check_bool(node.left, lt, f"`{node.op}`")
            self.emit("DUP")
            jump = self.emit("JUMP_IF_FALSE" if node.op == "&&" else "JUMP_IF_TRUE", arg=None)
            self.emit("POP")
            rt = self.expr(node.right)
            self.check_bool(node.right, rt, f"`{node.op}`")
            self.patch(jump)
            lt = "Bool"
        return "Bool"

    def check_bool(self, node: A.Node, t: str | None, what: str) -> None:
        if t is not None and t not in ("Bool", "Any", "Never"):
            self.error(node.span, f"mismatched types: {what} expects `Bool`, found `{t}`",
                       hint="Concerto has no truthiness; compare explicitly (e.g. `x != 0`)")

    def x_Coalesce(self, e: A.Coalesce) -> str | None:
        first, spine = self._left_spine(e, A.Coalesce)
        lt = self.expr(first)
        for node in spine:
            self.span = node.span
            jump = self.emit("COALESCE", arg=None)
            rt = self.expr(node.right)
            self.patch(jump)
            if lt and lt.startswith("Option<"):
                lt = T.unify(T.split(lt)[1][0], rt) or rt
            else:
                lt = rt if lt in (None, "Nil") else T.unify(lt, rt)
        return lt

    def x_Pipe(self, e: A.Pipe) -> str | None:
        right = e.right
        first = A.Arg(e.left.span, None, e.left)
        if isinstance(right, A.Call):
            call = A.Call(e.span, right.callee, [first] + right.args, right.type_args)
        elif isinstance(right, (A.Name, A.Path, A.Field, A.Closure)):
            call = A.Call(e.span, right, [first])
        else:
            self.error(right.span, "the right side of `|>` must be a function or a call",
                       hint="write `x |> f()` or `x |> f(a)`, meaning f(x, a)")
            raise CompileError()
        return self.expr(call)

    def x_RangeExpr(self, e: A.RangeExpr) -> str:
        for part in (e.lo, e.hi):
            if part is None:
                self.emit("LOAD_CONST", arg=self.pb.const(None))
            else:
                t = self.expr(part)
                if t is not None and t not in ("Int", "Any"):
                    self.error(part.span, f"range bounds must be `Int`, found `{t}`")
        self.span = e.span
        self.emit("BUILD_RANGE", arg=e.inclusive)
        return "Range"

    def x_Cast(self, e: A.Cast) -> str | None:
        src = self.expr(e.expr)
        target = self.type_str(e.type)
        self.span = e.span
        if src and target and src not in ("Any",) and target not in ("Any", "String"):
            ok = (src in T.NUMERIC and target in T.NUMERIC) or src == target
            if not ok:
                self.error(e.span, f"cannot cast `{src}` as `{target}`",
                           hint="`as` converts between Int and Float, or checks an Any value")
        self.emit("CAST", type_name=target or e.type.name)
        return target

    def x_Assign(self, e: A.Assign) -> str:
        self.assign(e)
        self.emit("LOAD_CONST", arg=self.pb.const(None))
        return "Nil"

    def assign(self, e: A.Assign) -> None:
        target = e.target
        op = e.op[:-1] if e.op != "=" else None
        if isinstance(target, A.Name):
            local = self.lookup(target.name)
            if local is None:
                if self.symbols.item_kind("::".join(self.resolve_path([target.name]))) == "const":
                    self.error(target.span, f"cannot assign to constant `{target.name}`")
                else:
                    self.error(target.span, f"cannot find `{target.name}` in this scope")
                raise CompileError()
            if target.name in self.capture_locals and local is self.capture_locals[target.name]:
                self.error(target.span, f"cannot assign to `{target.name}`: closures capture values, not variables",
                           hint="return the new value from the closure instead")
                raise CompileError()
            if local.initialized is False:
                local.initialized = True
            elif not local.mutable:
                self.error(target.span, f"cannot assign twice to immutable variable `{target.name}`",
                           hint=f"declare it with `let mut {target.name}`")
            if op:
                self.emit("LOAD_LOCAL", name=local.slot_name)
                vt = self.expr(e.value)
                self.span = e.span
                self.arith_type(A.Binary(e.span, op, target, e.value), local.type, vt)
                self.emit(_ARITH[op])
            else:
                vt = self.expr(e.value)
                if local.type and not T.compatible(local.type, vt, self.generics):
                    self.error(e.value.span, f"mismatched types: expected `{local.type}`, found `{vt}`")
                if local.type is None:
                    local.type = vt
            self.span = e.span
            self.emit("STORE_LOCAL", name=local.slot_name)
            return
        if isinstance(target, (A.Field, A.Index, A.TupleField)):
            self.require_mutable_root(target)
            if isinstance(target, A.Field):
                self.check_field_visible(self.expr(target.obj), target.name, target.span)
                if op:
                    self.emit("DUP")
                    self.emit("FIELD_GET", name=target.name)
                    self.expr(e.value)
                    self.span = e.span
                    self.emit(_ARITH[op])
                else:
                    self.expr(e.value)
                self.span = e.span
                self.emit("FIELD_SET", name=target.name)
                return
            obj_tmp = self.temp("obj")
            idx_tmp = self.temp("idx")
            self.expr(target.obj)
            self.emit("STORE_LOCAL", name=obj_tmp)
            if isinstance(target, A.TupleField):
                self.error(target.span, "tuples cannot be changed in place")
                raise CompileError()
            self.expr(target.index)
            self.emit("STORE_LOCAL", name=idx_tmp)
            self.emit("LOAD_LOCAL", name=obj_tmp)
            self.emit("LOAD_LOCAL", name=idx_tmp)
            if op:
                self.emit("LOAD_LOCAL", name=obj_tmp)
                self.emit("LOAD_LOCAL", name=idx_tmp)
                self.emit("INDEX_GET")
                self.expr(e.value)
                self.span = e.span
                self.emit(_ARITH[op])
            else:
                self.expr(e.value)
            self.span = e.span
            self.emit("INDEX_SET")
            return
        self.error(target.span, "invalid left-hand side of assignment",
                   hint="assign to a variable, a field (`p.x`) or an element (`a[i]`)")
        raise CompileError()

    def require_mutable_root(self, target: A.Expr, check_self: bool = True) -> None:
        root = target
        while isinstance(root, (A.Field, A.Index, A.TupleField)):
            root = root.obj
        if isinstance(root, A.Name):
            local = self.lookup(root.name)
            if local is not None and not local.mutable:
                self.error(root.span, f"cannot change `{root.name}`: it is not declared `mut`",
                           hint=f"declare it with `let mut {root.name}`")
        elif check_self and isinstance(root, A.SelfExpr):
            local = self.lookup("self")
            if local is not None and not local.mutable:
                self.error(root.span, "cannot change `self` in a method that takes `self`",
                           hint="declare the method with `mut self`")

    def x_Field(self, e: A.Field) -> str | None:
        t = self.expr(e.obj)
        self.span = e.span
        self.emit("FIELD_GET", name=e.name)
        self.check_field_visible(t, e.name, e.span)
        if t and t in self.symbols.structs:
            decl = self.symbols.structs[t]
            for f in decl.fields:
                if f.name == e.name:
                    return FunctionCompiler(self.pb, self.symbols_module(t), "<f>").type_str(f.type)
            self.error(e.span, f"struct `{t}` has no field `{e.name}`",
                       hint="fields: " + ", ".join(f.name for f in decl.fields))
        elif t in llm.BUILTIN_RECORDS:
            fields = llm.BUILTIN_RECORDS[t]
            if e.name in fields:
                return fields[e.name]
            self.error(e.span, f"`{t}` has no field `{e.name}`", hint="fields: " + ", ".join(fields))
        elif t and T.split(t)[0] in _NO_FIELDS:
            self.error(e.span, f"`{t}` has no field `{e.name}`",
                       hint="call a method with `()`, or use a struct or map")
        return None

    def check_field_visible(self, struct_type: str | None, name: str, span: A.Span) -> None:
        """Spec 14 "Public Fields" / spec 02 "Struct": a field without `pub` is private
        to the module that declares its struct. The spec grants no other module access
        (child modules included), so reading, writing, naming it in a struct literal
        or in a pattern anywhere else is an error."""
        if struct_type is None:
            return
        qual = T.split(struct_type)[0]
        decl = self.symbols.structs.get(qual)
        owner = self.symbols.item_module.get(qual)
        if decl is None or owner is None or owner == self.module.path:
            return
        fdecl = next((f for f in decl.fields if f.name == name), None)
        if fdecl is None or fdecl.public:
            return  # an unknown field has its own error
        where = f"module `{owner}`" if owner else "the root module"
        self.error(span, f"field `{name}` of `{qual}` is private to {where}",
                   hint=f"declare it `pub {name}` in `{qual}`, or go through a `pub` method of `{qual}`")

    def x_TupleField(self, e: A.TupleField) -> str | None:
        t = self.expr(e.obj)
        self.span = e.span
        self.emit("LOAD_CONST", arg=self.pb.const(e.index))
        self.emit("INDEX_GET")
        if t and t.startswith("("):
            items = T.split(t)[1]
            if e.index < len(items):
                return items[e.index]
            self.error(e.span, f"tuple `{t}` has no field {e.index}")
        return None

    def x_Index(self, e: A.Index) -> str | None:
        t = self.expr(e.obj)
        if isinstance(e.index, A.RangeExpr):
            r = e.index
            for part in (r.lo, r.hi):
                if part is None:
                    self.emit("LOAD_CONST", arg=self.pb.const(None))
                else:
                    self.expr(part)
            self.span = e.span
            self.emit("SLICE", arg=r.inclusive)
            return t
        it = self.expr(e.index)
        self.span = e.span
        self.emit("INDEX_GET")
        if t:
            self.check_index_type(e, t, it)
            head, args = T.split(t)
            if head == "Array" and args:
                return args[0]
            if head == "Map" and len(args) == 2:
                return args[1]
            if head == "String":
                return "String"
        return None

    def check_index_type(self, e: A.Index, container: str, index: str | None) -> None:
        """Spec 04: Arrays, Strings and Tuples take an Int index; a Map its key type."""
        if index is None or index == "Any" or index in self.generics or len(index) == 1:
            return
        head, args = T.split(container)
        if head in ("Array", "String", "Tuple"):
            expected = "Int"
        elif head == "Map" and len(args) == 2:
            expected = args[0]
        else:
            return
        if not T.compatible(expected, index, self.generics):
            self.error(e.index.span, f"mismatched types: `{container}` is indexed by `{expected}`, found `{index}`")

    def x_Try(self, e: A.Try) -> str | None:
        inner = self.expr(e.expr)
        self.span = e.span
        if self.is_stage:
            pass  # a stage's Err stops the pipeline (spec 30 "Result Unwrapping")
        elif self.try_depth == 0 and self.ret_declared and self.ret_type is not None:
            head = T.split(self.ret_type)[0]
            if head not in ("Result", "Option", "Any"):
                self.error(e.span, f"`?` needs a function returning Result or Option, but `{self.name}` returns `{self.ret_type}`",
                           hint="change the return type, or put this inside `try { } catch { }`")
        elif self.try_depth == 0 and not self.ret_declared and self.parent is None:
            self.error(e.span, f"`?` needs a function returning Result or Option, but `{self.name}` returns nothing",
                       hint="declare `-> Result<T, E>`, or put this inside `try { } catch { }`")
        # In a function returning Result, `?` on None returns an Err (spec 13).
        returns_result = self.ret_declared and self.ret_type is not None and self.ret_type.startswith("Result")
        convert = self.from_conversion(inner) if returns_result and self.try_depth == 0 else None
        if convert is not None:
            # Spec 13 "Error Conversion": Err(e) leaves as Err(E::from(e)).
            self.emit("DUP")
            self.emit("TEST_VARIANT", type_name="Result", name="Err")
            ok = self.emit("JUMP_IF_FALSE", arg=None)
            self.emit("VARIANT_FIELD", arg=0)
            self.emit("CALL", name=convert, argc=1)
            self.emit("THROW")
            self.patch(ok)
        self.emit("PROPAGATE", arg=True if returns_result else None)
        if inner:
            head, args = T.split(inner)
            if head in ("Result", "Option") and args:
                return args[0]
        return None

    def from_conversion(self, inner: str | None) -> str | None:
        """`E::from` when `?` moves an Err(F) out of a function returning Result<_, E>
        and `impl From<F> for E` exists; else None."""
        if not inner or not self.ret_type:
            return None
        have, want = T.split(inner), T.split(self.ret_type)
        if have[0] != "Result" or len(have[1]) != 2 or len(want[1]) != 2:
            return None
        source, target = have[1][1], want[1][1]
        if source == target or "Any" in (source, target):
            return None
        qual = f"{target}::from"
        info = self.pb.fn_sigs.get(qual)
        if info is None or len(info.decl.params) != 1 or info.decl.params[0].type is None:
            return None
        owner = FunctionCompiler(self.pb, info.module, "<sig>", self_type=info.self_type)
        return qual if owner.type_str(info.decl.params[0].type) == source else None

    def x_TupleExpr(self, e: A.TupleExpr) -> str:
        types = [self.expr(item) for item in e.items]
        self.span = e.span
        self.emit("BUILD_TUPLE", arg=len(e.items))
        return "(" + ", ".join(t or "Any" for t in types) + ")"

    def x_ArrayExpr(self, e: A.ArrayExpr) -> str | None:
        mixed_ok = getattr(self, "mixed_array_ok", False)
        self.mixed_array_ok = False
        elem: str | None = None
        for item in e.items:
            t = self.expr(item)
            if t is None or t == "Any":
                continue
            if elem is None:
                elem = t
            elif elem != t:
                unified = T.unify(elem, t)
                if unified is None and mixed_ok:
                    elem = "Any"
                elif unified is None and not T.compatible(elem, t, self.generics):
                    self.error(item.span, f"array elements must have one type: expected `{elem}`, found `{t}`",
                               hint="use Array<Any> for mixed values")
                    elem = "Any"
                elif unified:
                    elem = unified
        self.span = e.span
        self.emit("BUILD_ARRAY", arg=len(e.items))
        return f"Array<{elem}>" if elem else None

    def x_MapExpr(self, e: A.MapExpr) -> str | None:
        kt: str | None = None
        vt: str | None = None
        for k, v in e.entries:
            k_t = self.expr(k)
            v_t = self.expr(v)
            if k_t and k_t not in ("String", "Int", "Bool", "Any"):
                self.error(k.span, f"map keys must be String, Int or Bool, found `{k_t}`")
            kt = kt or k_t
            vt = v_t if vt is None or vt == v_t else "Any"
        self.span = e.span
        self.emit("BUILD_MAP", arg=len(e.entries))
        if kt and vt:
            return f"Map<{kt}, {vt}>"
        return None

    def x_StructLit(self, e: A.StructLit) -> str | None:
        segs = self.resolve_path(e.path)
        qual = "::".join(segs)
        variant = self.enum_variant(segs)
        if variant is not None:
            enum_name, vdecl = variant
            if vdecl.kind != "struct":
                self.error(e.span, f"`{qual}` is not a struct-like variant")
                raise CompileError()
            names = self.struct_fields(e, vdecl.fields, qual)
            self.emit("BUILD_VARIANT", type_name=enum_name, name=vdecl.name, argc=len(names), names=names)
            return enum_name
        decl = self.symbols.structs.get(qual)
        if decl is None:
            if qual in BUILTIN_ERRORS:
                names = []
                for fname, fexpr in e.fields:
                    self.expr(fexpr)
                    names.append(fname)
                self.span = e.span
                self.emit("BUILD_STRUCT", type_name=qual, names=names, argc=len(names))
                return qual
            self.error(e.span, f"unknown struct `{'::'.join(e.path)}`", hint=self.suggest(e.path[-1]))
            raise CompileError()
        self.check_visible(qual, e.span)
        for fname, fexpr in e.fields:
            self.check_field_visible(qual, fname, fexpr.span)
        names = self.struct_fields(e, decl.fields, qual)
        self.emit("BUILD_STRUCT", type_name=qual, names=names, argc=len(names))
        return qual

    def struct_fields(self, e: A.StructLit, decls: list[A.FieldDecl], qual: str) -> list[str]:
        by_name = {f.name: f for f in decls}
        given: set[str] = set()
        names: list[str] = []
        owner = self.symbols_module(qual.split("::")[0] if "::" in qual else qual)
        for fname, fexpr in e.fields:
            if fname in given:
                self.error(fexpr.span, f"field `{fname}` is given twice")
                continue
            given.add(fname)
            fdecl = by_name.get(fname)
            t = self.expr(fexpr)
            if fdecl is None:
                self.error(fexpr.span, f"`{qual}` has no field `{fname}`",
                           hint="fields: " + ", ".join(by_name) if by_name else None)
                continue
            expected = FunctionCompiler(self.pb, owner, "<f>").type_str(fdecl.type)
            if not T.compatible(expected, t, self.generics):
                self.error(fexpr.span, f"mismatched types: field `{fname}` expects `{expected}`, found `{t}`")
            self.coerce(expected, t)
            names.append(fname)
        for fdecl in decls:
            if fdecl.name not in given:
                if fdecl.default is not None:
                    self.expr(fdecl.default)
                    names.append(fdecl.name)
                else:
                    self.error(e.span, f"missing field `{fdecl.name}` in `{qual}`")
        self.span = e.span
        return names

    def x_Block(self, e: A.Block) -> str | None:
        return self.block(e)

    def x_If(self, e: A.If) -> str | None:
        used = id(e) not in self.discarded
        if not used:  # nor are the values of its branches
            for branch in (e.then, e.els):
                if isinstance(branch, A.If):
                    self.discarded.add(id(branch))
                elif isinstance(branch, A.Block) and (tail := _block_tail(branch)) is not None:
                    self.discarded.add(id(tail))
        ct = self.expr(e.cond)
        self.check_bool(e.cond, ct, "`if` condition")
        self.span = e.span
        jf = self.emit("JUMP_IF_FALSE", arg=None)
        t1 = self.block(e.then)
        jend = self.emit("JUMP", arg=None)
        self.patch(jf)
        if e.els is None:
            self.emit("LOAD_CONST", arg=self.pb.const(None))
            t2: str | None = "Nil"
        elif isinstance(e.els, A.If):
            t2 = self.x_If(e.els)
        else:
            t2 = self.block(e.els)
        self.patch(jend)
        if used:
            self.check_branch_types(e, t1, t2)
        return T.unify(t1, t2)

    def check_branch_types(self, e: A.If, t1: str | None, t2: str | None) -> None:
        """Spec 05: an `if` used as a value has one type on every path."""
        if t1 is None or t2 is None or "Never" in (t1, t2):
            return
        if T.compatible(t1, t2, self.generics) or T.compatible(t2, t1, self.generics):
            return
        if e.els is None:
            self.error(e.span, f"`if` without `else` used as a value: `{t1}` on one path, `Nil` on the other",
                       hint="add an `else` branch with a value of the same type")
        else:
            self.error(e.span, f"`if` and `else` have different types: `{t1}` and `{t2}`",
                       hint="both branches of an `if` used as a value must have the same type")

    def x_Loop(self, e: A.Loop) -> str | None:
        ctx = LoopCtx(e.label, try_depth=self.try_depth)
        top = self.here()
        ctx.continue_target = top
        self.loops.append(ctx)
        self.block(e.body, discard=True)
        self.emit("JUMP", arg=top)
        self.loops.pop()
        for j in ctx.break_jumps:
            self.patch(j)
        return ctx.result_type if ctx.break_jumps else "Never"

    def x_While(self, e: A.While) -> str:
        ctx = LoopCtx(e.label, try_depth=self.try_depth)
        top = self.here()
        ctx.continue_target = top
        ct = self.expr(e.cond)
        self.check_bool(e.cond, ct, "`while` condition")
        jf = self.emit("JUMP_IF_FALSE", arg=None)
        self.loops.append(ctx)
        self.block(e.body, discard=True)
        self.emit("JUMP", arg=top)
        self.loops.pop()
        self.patch(jf)
        self.emit("LOAD_CONST", arg=self.pb.const(None))
        for j in ctx.break_jumps:
            self.patch(j)
        return "Nil"

    def x_For(self, e: A.For) -> str:
        it_t = self.expr(e.iterable)
        self.span = e.span
        self.emit("ITER_INIT")
        it = self.temp("iter")
        self.emit("STORE_LOCAL", name=it)
        ctx = LoopCtx(e.label, try_depth=self.try_depth)
        top = self.here()
        ctx.continue_target = top
        self.emit("LOAD_LOCAL", name=it)
        done = self.emit("ITER_NEXT", arg=None)
        self.push_scope()
        item_t = T.element_type(it_t)
        if isinstance(e.pattern, A.IdentPat) and not self.is_unit_variant_name(e.pattern.name):
            local = self.declare(e.pattern.name, e.pattern.mutable, item_t)
            self.emit("STORE_LOCAL", name=local.slot_name)
        else:
            src = self.temp("item")
            self.emit("STORE_LOCAL", name=src)
            fails = self.pattern(e.pattern, src, item_t, refutable_ok=False)
            if fails:
                ok = self.emit("JUMP", arg=None)
                for j in fails:
                    self.patch(j)
                self.emit("MATCH_FAIL", arg=self.pb.const("pattern in `for` did not match the item"))
                self.patch(ok)
        self.loops.append(ctx)
        self.block(e.body, discard=True)
        self.emit("JUMP", arg=top)
        self.loops.pop()
        self.pop_scope()
        self.patch(done)
        self.emit("LOAD_CONST", arg=self.pb.const(None))
        for j in ctx.break_jumps:
            self.patch(j)
        return "Nil"

    def find_loop(self, label: str | None, span: A.Span, what: str) -> LoopCtx:
        if not self.loops and self.parallel_body:
            self.error(span, f"`{what}` cannot leave a `parallel for` body",
                       hint="each item runs as its own task; its value is the body's last expression")
            raise CompileError()
        if not self.loops:
            self.error(span, f"`{what}` outside of a loop")
            raise CompileError()
        if label is None:
            return self.loops[-1]
        for ctx in reversed(self.loops):
            if ctx.label == label:
                return ctx
        self.error(span, f"use of undeclared label `'{label}`")
        raise CompileError()

    def x_Break(self, e: A.Break) -> str:
        ctx = self.find_loop(e.label, e.span, "break")
        if e.value is not None:
            t = self.expr(e.value)
            ctx.result_type = t if ctx.result_type is None else T.unify(ctx.result_type, t)
        else:
            self.emit("LOAD_CONST", arg=self.pb.const(None))
            ctx.result_type = ctx.result_type or "Nil"
        self.span = e.span
        for _ in range(self.try_depth - ctx.try_depth):
            self.emit("TRY_END")
        ctx.break_jumps.append(self.emit("JUMP", arg=None))
        return "Never"

    def x_Continue(self, e: A.Continue) -> str:
        ctx = self.find_loop(e.label, e.span, "continue")
        for _ in range(self.try_depth - ctx.try_depth):
            self.emit("TRY_END")
        self.emit("JUMP", arg=ctx.continue_target)
        return "Never"

    def x_Return(self, e: A.Return) -> str:
        if e.value is not None:
            t = self.expr(e.value)
            self.check_return_type(t, e.value)
        else:
            self.emit("LOAD_CONST", arg=self.pb.const(None))
        self.span = e.span
        self.emit("RETURN")
        return "Never"

    def x_Throw(self, e: A.Throw) -> str:
        self.expr(e.value)
        self.span = e.span
        if self.try_depth == 0 and self.parent is None and not self.is_stage:
            head = T.split(self.ret_type)[0] if self.ret_type else None
            if not self.ret_declared or head not in ("Result", "Any"):
                self.error(e.span, "`throw` needs a function returning Result, or an enclosing `try`",
                           hint="`throw e` means `return Err(e)`")
        self.emit("THROW")
        return "Never"

    def x_TryCatch(self, e: A.TryCatch) -> str | None:
        if not e.catches:
            return self.try_as_result(e)
        begin = self.emit("TRY_BEGIN", arg=None)
        self.try_depth += 1
        body_t = self.block(e.body)
        self.try_depth -= 1
        self.emit("TRY_END")
        jend = self.emit("JUMP", arg=None)
        self.patch(begin)
        err = self.temp("err")
        self.emit("STORE_LOCAL", name=err)
        ends = [jend]
        result = body_t
        bare_seen = False
        for clause in e.catches:
            self.span = clause.span
            if bare_seen:
                self.error(clause.span, "unreachable catch clause: a bare `catch` above catches everything")
            self.push_scope()
            skip = None
            if clause.type_name is not None:
                self.emit("LOAD_LOCAL", name=err)
                self.emit("CHECK_TYPE", type_name=self.catch_type(clause))
                skip = self.emit("JUMP_IF_FALSE", arg=None)
            else:
                bare_seen = True
            if clause.binding:
                local = self.declare(clause.binding, False, clause.type_name)
                self.emit("LOAD_LOCAL", name=err)
                self.emit("STORE_LOCAL", name=local.slot_name)
            t = self.block(clause.body)
            result = T.unify(result, t)
            ends.append(self.emit("JUMP", arg=None))
            self.pop_scope()
            if skip is not None:
                self.patch(skip)
        if not bare_seen:
            self.emit("LOAD_LOCAL", name=err)
            self.emit("RETHROW")
        for j in ends:
            self.patch(j)
        return result

    def try_as_result(self, e: A.TryCatch) -> str:
        """`try { ... }` with no catch is a Result: Ok(value) or Err(error) (spec 13)."""
        begin = self.emit("TRY_BEGIN", arg=None)
        self.try_depth += 1
        t = self.block(e.body)
        self.try_depth -= 1
        self.span = e.span
        self.emit("BUILD_VARIANT", type_name="Result", name="Ok", argc=1)
        self.emit("TRY_END")
        jend = self.emit("JUMP", arg=None)
        self.patch(begin)
        self.emit("BUILD_VARIANT", type_name="Result", name="Err", argc=1)
        self.patch(jend)
        return f"Result<{t or 'Any'}, Any>"

    def catch_type(self, clause: A.CatchClause) -> str:
        name = clause.type_name or ""
        segs = self.resolve_path(name.split("::"))
        qual = "::".join(segs)
        known = (qual in BUILTIN_TYPES or qual in BUILTIN_ERRORS or qual in self.symbols.structs
                 or qual in self.symbols.enums)
        if not known:
            self.error(clause.span, f"unknown error type `{name}` in catch")
        return qual

    def x_Emit(self, e: A.Emit, awaited: bool = False) -> str:
        args = e.args
        if not 1 <= len(args) <= 2 or any(a.name for a in args):
            self.error(e.span, "emit takes a channel and an optional payload: emit(\"channel\", value)")
            raise CompileError()
        if e.schema is not None:
            concurrency.check_typed_emit(self, e)
        ct = self.expr(args[0].value)
        if ct and ct not in ("String", "Any"):
            self.error(args[0].span, f"emit channel must be a String, found `{ct}`")
        if len(args) == 2:
            self.expr(args[1].value)
        else:
            self.emit("LOAD_CONST", arg=self.pb.const(None))
        self.span = e.span
        if awaited:
            # Bidirectional emit (spec 10): the host's answer is the value.
            self.emit("EMIT_AWAIT")
            return "Any"
        self.emit("EMIT")
        self.emit("LOAD_CONST", arg=self.pb.const(None))
        return "Nil"

    def x_Closure(self, e: A.Closure) -> str:
        ret = self.type_str(e.ret) if e.ret else None
        params = ", ".join(self.type_str(p.type) or "Any" if p.type else "Any" for p in e.params)
        self.make_closure(e.params, e.body, e.span, ret, e.ret is not None)
        return f"fn({params}) -> {ret or 'Any'}"

    def make_closure(self, params: list[A.Param], body: A.Expr, span: A.Span, ret: str | None = None,
                     ret_declared: bool = False, param_types: list[str | None] | None = None,
                     parallel_body: bool = False) -> str | None:
        """Compile `body` as a closure function and push it (MAKE_CLOSURE).
        Returns the type of the body's value as the closure compiler saw it.
        `param_types` overrides the parameters' written types (synthesized
        closures: `parallel for` items)."""
        self.pb.closure_count += 1
        name = f"{self.name}::<closure#{self.pb.closure_count}>"
        inner = FunctionCompiler(self.pb, self.module, name, parent=self, ret_type=ret,
                                 ret_declared=ret_declared, self_type=self.self_type,
                                 generics=self.generics)
        inner.parallel_body = parallel_body
        fn = inner.compile_body(params, body, has_self=False, param_types=param_types)
        if param_types is not None:
            fn.params = [ir.Param(p.name, t or "any") for p, t in zip(params, param_types)]
        else:
            fn.params = [ir.Param(p.name, inner.type_str(p.type) or "any") for p in params]
        # Captured locals come right after the params, in capture order.
        n = len(params)
        captured_slots = [inner.capture_locals[c].slot_name for c in inner.captures]
        rest = [x for x in fn.locals[n:] if x not in captured_slots]
        fn.locals = fn.locals[:n] + captured_slots + rest
        fn.captures = list(inner.captures)
        self.pb.functions.append(fn)
        self.span = span
        for cap in inner.captures:
            local = self.lookup(cap)
            assert local is not None
            self.emit("LOAD_LOCAL", name=local.slot_name)
        self.emit("MAKE_CLOSURE", name=name, argc=len(inner.captures))
        return inner.body_type

    # ------------------------------------------------------------ async, emit, pipelines
    def x_Await(self, e: A.Await) -> str | None:
        return concurrency.await_expr(self, e)

    def x_Race(self, e: A.Race) -> str | None:
        return concurrency.race_expr(self, e)

    def x_ParallelFor(self, e: A.ParallelFor) -> str | None:
        return concurrency.parallel_for(self, e)

    # ------------------------------------------------------------ match
    def x_Match(self, e: A.Match) -> str | None:
        st = self.expr(e.scrutinee)
        src = self.temp("match")
        self.span = e.span
        self.emit("STORE_LOCAL", name=src)
        ends: list[int] = []
        result: str | None = "Never"
        for arm in e.arms:
            self.push_scope()
            fails = self.pattern(arm.pattern, src, st, refutable_ok=True)
            if arm.guard is not None:
                gt = self.expr(arm.guard)
                self.check_bool(arm.guard, gt, "match guard")
                fails.append(self.emit("JUMP_IF_FALSE", arg=None))
            t = self.expr(arm.body)
            result = T.unify(result, t) if result != "Never" else t
            self.span = arm.span
            ends.append(self.emit("JUMP", arg=None))
            self.pop_scope()
            for j in fails:
                self.patch(j)
        self.span = e.span
        self.emit("MATCH_FAIL", arg=self.pb.const("no match arm matched the value"))
        for j in ends:
            self.patch(j)
        from concerto.compiler.check import missing_cases

        missing = missing_cases(self, e, st)
        if missing:
            self.error(e.span, f"non-exhaustive match: {missing} not covered",
                       hint="add the missing arms or a wildcard `_ => ...` arm")
        return result

    def pattern(self, pat: A.Pattern, src: str, t: str | None, refutable_ok: bool) -> list[int]:
        """Emit tests of `src` against `pat`; bind names. Returns jumps taken on mismatch."""
        self.span = pat.span
        fails: list[int] = []
        if isinstance(pat, A.WildcardPat):
            return fails
        if isinstance(pat, A.IdentPat):
            if self.is_unit_variant_name(pat.name) or self.is_const_name(pat.name):
                return self.pattern(A.PathPat(pat.span, [pat.name]), src, t, refutable_ok)
            local = self.declare(pat.name, pat.mutable, t)
            self.emit("LOAD_LOCAL", name=src)
            self.emit("STORE_LOCAL", name=local.slot_name)
            return fails
        if isinstance(pat, A.LiteralPat):
            self.emit("LOAD_LOCAL", name=src)
            self.emit("LOAD_CONST", arg=self.pb.const(pat.value))
            self.emit("EQ")
            fails.append(self.emit("JUMP_IF_FALSE", arg=None))
            if t and t not in ("Any",) and pat.value is not None and not T.compatible(t, literal_type(pat.value)):
                self.error(pat.span, f"mismatched types: this pattern is `{literal_type(pat.value)}` but the value is `{t}`")
            return fails
        if isinstance(pat, A.RangePat):
            self.emit("LOAD_LOCAL", name=src)
            self.emit("LOAD_CONST", arg=self.pb.const(pat.lo))
            self.emit("GTE")
            fails.append(self.emit("JUMP_IF_FALSE", arg=None))
            self.emit("LOAD_LOCAL", name=src)
            self.emit("LOAD_CONST", arg=self.pb.const(pat.hi))
            self.emit("LTE" if pat.inclusive else "LT")
            fails.append(self.emit("JUMP_IF_FALSE", arg=None))
            return fails
        if isinstance(pat, A.AtPat):
            fails.extend(self.pattern(pat.inner, src, t, refutable_ok))
            local = self.declare(pat.name, False, t)
            self.emit("LOAD_LOCAL", name=src)
            self.emit("STORE_LOCAL", name=local.slot_name)
            return fails
        if isinstance(pat, A.OrPat):
            oks: list[int] = []
            bound_before = set(self.scopes[-1])
            shared: dict[str, Local] = {}
            for i, alt in enumerate(pat.alts):
                alt_fails = self.pattern(alt, src, t, refutable_ok)
                # every alternative binds the same names into the same slots
                for name in list(self.scopes[-1]):
                    if name in bound_before:
                        continue
                    local = self.scopes[-1][name]
                    if name in shared and shared[name] is not local:
                        self.emit("LOAD_LOCAL", name=local.slot_name)
                        self.emit("STORE_LOCAL", name=shared[name].slot_name)
                        self.scopes[-1][name] = shared[name]
                    else:
                        shared[name] = local
                if i < len(pat.alts) - 1:
                    oks.append(self.emit("JUMP", arg=None))
                    for j in alt_fails:
                        self.patch(j)
                else:
                    fails.extend(alt_fails)
            for j in oks:
                self.patch(j)
            return fails
        if isinstance(pat, A.PathPat):
            segs = self.resolve_path(pat.path)
            if segs in (["None"], ["Option", "None"]):
                self.emit("LOAD_LOCAL", name=src)
                self.emit("TEST_VARIANT", type_name="Option", name="None")
                fails.append(self.emit("JUMP_IF_FALSE", arg=None))
                return fails
            variant = self.enum_variant(segs)
            if variant is not None:
                self.emit("LOAD_LOCAL", name=src)
                self.emit("TEST_VARIANT", type_name=variant[0], name=variant[1].name)
                fails.append(self.emit("JUMP_IF_FALSE", arg=None))
                return fails
            qual = "::".join(segs)
            if self.symbols.item_kind(qual) == "const":
                self.emit("LOAD_LOCAL", name=src)
                self.emit("LOAD_GLOBAL", name=qual)
                self.emit("EQ")
                fails.append(self.emit("JUMP_IF_FALSE", arg=None))
                return fails
            self.error(pat.span, f"unknown variant or constant `{'::'.join(pat.path)}` in pattern")
            raise CompileError()
        if isinstance(pat, A.VariantPat):
            return self.variant_pattern(pat, src, t, refutable_ok)
        if isinstance(pat, A.StructPat):
            return self.struct_pattern(pat, src, t, refutable_ok)
        if isinstance(pat, A.TuplePat):
            items = T.split(t)[1] if t and t.startswith("(") else []
            self.emit("LOAD_LOCAL", name=src)
            self.emit("TEST_LEN", arg=len(pat.items), name="tuple")
            fails.append(self.emit("JUMP_IF_FALSE", arg=None))
            for i, sub in enumerate(pat.items):
                fails.extend(self.sub_pattern(sub, src, i, items[i] if i < len(items) else None, refutable_ok))
            return fails
        if isinstance(pat, A.ArrayPat):
            elem = T.element_type(t)
            n = len(pat.before) + len(pat.after)
            self.emit("LOAD_LOCAL", name=src)
            self.emit("TEST_LEN", arg=n, name=">=" if pat.has_rest else "==")
            fails.append(self.emit("JUMP_IF_FALSE", arg=None))
            for i, sub in enumerate(pat.before):
                fails.extend(self.sub_pattern(sub, src, i, elem, refutable_ok))
            for k, sub in enumerate(pat.after):
                fails.extend(self.sub_pattern(sub, src, -(len(pat.after) - k), elem, refutable_ok))
            if pat.rest:
                self.emit("LOAD_LOCAL", name=src)
                self.emit("LOAD_CONST", arg=self.pb.const(len(pat.before)))
                self.emit("LOAD_CONST", arg=self.pb.const(-len(pat.after) if pat.after else None))
                self.emit("SLICE", arg="rest")
                local = self.declare(pat.rest, False, t)
                self.emit("STORE_LOCAL", name=local.slot_name)
            return fails
        self.error(pat.span, "unsupported pattern")
        raise CompileError()

    def is_const_name(self, name: str) -> bool:
        if self.lookup_local_only(name):
            return False
        qual = "::".join(self.resolve_path([name]))
        return self.symbols.item_kind(qual) == "const"

    def lookup_local_only(self, name: str) -> bool:
        return any(name in scope for scope in self.scopes)

    def sub_pattern(self, sub: A.Pattern, src: str, key: Any, t: str | None, refutable_ok: bool, op: str = "INDEX_GET") -> list[int]:
        if isinstance(sub, A.WildcardPat):
            return []
        tmp = self.temp("p")
        self.emit("LOAD_LOCAL", name=src)
        if op == "INDEX_GET" and key < 0:
            # an element after `..`: counted from the end, which INDEX_GET refuses
            self.emit("LOAD_CONST", arg=self.pb.const(key))
            self.emit("LOAD_CONST", arg=self.pb.const(key + 1 if key < -1 else None))
            self.emit("SLICE", arg="rest")
            self.emit("LOAD_CONST", arg=self.pb.const(0))
            self.emit("INDEX_GET")
        elif op == "INDEX_GET":
            self.emit("LOAD_CONST", arg=self.pb.const(key))
            self.emit("INDEX_GET")
        elif op == "FIELD_GET":
            self.emit("FIELD_GET", name=key)
        else:
            self.emit("VARIANT_FIELD", arg=key)
        self.emit("STORE_LOCAL", name=tmp)
        return self.pattern(sub, tmp, t, refutable_ok)

    def variant_pattern(self, pat: A.VariantPat, src: str, t: str | None, refutable_ok: bool) -> list[int]:
        segs = self.resolve_path(pat.path)
        fails: list[int] = []
        args = T.split(t)[1] if t else []
        if len(segs) == 1 and segs[0] in ("Some", "Ok", "Err"):
            enum, vname = _PRELUDE_VARIANTS[segs[0]][0], segs[0]
            payload_t = None
            if args:
                payload_t = args[0] if vname in ("Some", "Ok") else (args[1] if len(args) > 1 else None)
            arity = 1
        else:
            variant = self.enum_variant(segs)
            qual = "::".join(segs)
            if variant is None:
                # `AgentError(e)`-style: a type test binding the whole value
                if qual in BUILTIN_TYPES or qual in BUILTIN_ERRORS or qual in self.symbols.structs:
                    self.emit("LOAD_LOCAL", name=src)
                    self.emit("CHECK_TYPE", type_name=qual)
                    fails.append(self.emit("JUMP_IF_FALSE", arg=None))
                    if len(pat.items) != 1:
                        self.error(pat.span, f"`{qual}(...)` takes one pattern")
                        return fails
                    fails.extend(self.pattern(pat.items[0], src, qual, refutable_ok))
                    return fails
                self.error(pat.span, f"unknown variant `{'::'.join(pat.path)}`", hint=self.suggest(pat.path[-1]))
                raise CompileError()
            enum, vdecl = variant
            vname = vdecl.name
            if vdecl.kind != "tuple":
                self.error(pat.span, f"`{qual}` is not a tuple variant")
                raise CompileError()
            arity = len(vdecl.types)
            payload_t = None
        if len(pat.items) != arity:
            self.error(pat.span, f"this pattern has {len(pat.items)} field(s), but `{vname}` has {arity}")
            raise CompileError()
        self.emit("LOAD_LOCAL", name=src)
        self.emit("TEST_VARIANT", type_name=enum, name=vname)
        fails.append(self.emit("JUMP_IF_FALSE", arg=None))
        for i, sub in enumerate(pat.items):
            sub_t = payload_t
            if enum in self.symbols.enums:
                vt = variant[1].types[i]  # type: ignore[index]
                sub_t = FunctionCompiler(self.pb, self.symbols_module(enum), "<v>").type_str(vt)
            fails.extend(self.sub_pattern(sub, src, i, sub_t, refutable_ok, op="VARIANT_FIELD"))
        return fails

    def struct_pattern(self, pat: A.StructPat, src: str, t: str | None, refutable_ok: bool) -> list[int]:
        segs = self.resolve_path(pat.path)
        qual = "::".join(segs)
        fails: list[int] = []
        variant = self.enum_variant(segs)
        if variant is not None:
            enum, vdecl = variant
            self.emit("LOAD_LOCAL", name=src)
            self.emit("TEST_VARIANT", type_name=enum, name=vdecl.name)
            fails.append(self.emit("JUMP_IF_FALSE", arg=None))
            declared = {f.name for f in vdecl.fields}
            op = "VARIANT_FIELD"
        else:
            if qual not in self.symbols.structs and qual not in BUILTIN_ERRORS and qual not in BUILTIN_TYPES:
                self.error(pat.span, f"unknown struct `{qual}` in pattern")
                raise CompileError()
            self.emit("LOAD_LOCAL", name=src)
            self.emit("CHECK_TYPE", type_name=qual)
            fails.append(self.emit("JUMP_IF_FALSE", arg=None))
            declared = {f.name for f in self.symbols.structs[qual].fields} if qual in self.symbols.structs else None
            op = "FIELD_GET"
        for fname, sub in pat.fields:
            if declared is not None and fname not in declared:
                self.error(sub.span, f"`{qual}` has no field `{fname}`")
                continue
            if op == "FIELD_GET":
                self.check_field_visible(qual, fname, sub.span)
            fails.extend(self.sub_pattern(sub, src, fname, None, refutable_ok, op=op))
        if declared is not None and not pat.has_rest:
            missing = declared - {f for f, _ in pat.fields}
            if missing:
                self.error(pat.span, f"pattern does not mention field(s) {', '.join(sorted(missing))}",
                           hint="add `..` to ignore the other fields")
        return fails

    # ------------------------------------------------------------ calls
    def x_Call(self, e: A.Call) -> str | None:
        callee = e.callee
        if isinstance(callee, A.Field):
            return self.method_call(e, callee)
        if isinstance(callee, (A.Name, A.Path)):
            segments = [callee.name] if isinstance(callee, A.Name) else callee.segments
            if isinstance(callee, A.Name) and self.lookup(callee.name) is not None:
                return self.value_call(e)
            return self.static_call(e, segments)
        return self.value_call(e)

    def positional(self, e: A.Call) -> list[A.Expr]:
        out = []
        for a in e.args:
            if a.name is not None:
                self.error(a.span, "named arguments need a function whose parameters are known here")
                raise CompileError()
            out.append(a.value)
        return out

    def value_call(self, e: A.Call) -> str | None:
        args = self.positional(e)
        ft = self.expr(e.callee)
        what = f"`{e.callee.name}`" if isinstance(e.callee, A.Name) else "this value"
        if not T.is_callable(ft, self.generics):
            self.error(e.span, f"{what} is not a function: it has type `{ft}`", hint="only functions and closures can be called")
        params = T.fn_params(ft) if ft else None
        if params is not None and len(params) != len(args):
            self.error(e.span, f"{what} takes {len(params)} argument(s), {len(args)} given", hint=f"its type is `{ft}`")
        for a in args:
            self.expr(a)
        self.span = e.span
        self.emit("CALL_VALUE", argc=len(args))
        if ft and ft.startswith("fn(") and " -> " in ft:
            ret = ft.rsplit(" -> ", 1)[1]
            return None if ret == "Any" else ret
        return None

    def static_call(self, e: A.Call, segments: list[str]) -> str | None:
        segs = self.resolve_path(segments)
        qual = "::".join(segs)
        if len(segs) == 1 and segs[0] in _PRELUDE_VARIANTS and segs[0] != "None":
            enum, arity = _PRELUDE_VARIANTS[segs[0]]
            args = self.positional(e)
            if len(args) != arity:
                self.error(e.span, f"`{segs[0]}` takes {arity} argument")
                raise CompileError()
            t = self.expr(args[0])
            self.span = e.span
            self.emit("BUILD_VARIANT", type_name=enum, name=segs[0], argc=1)
            if segs[0] == "Some":
                return f"Option<{t or 'Any'}>"
            if segs[0] == "Ok":
                return f"Result<{t or 'Any'}, Any>"
            return f"Result<Any, {t or 'Any'}>"
        if len(segs) == 2 and segs[1] == "new" and segs[0] in BUILTIN_ERRORS:
            # `ToolError::new("...")` (spec 08): the error with that message.
            args = self.positional(e)
            if len(args) != 1 or len(e.args) != 1:
                self.error(e.span, f"`{qual}` takes one message: {qual}(\"what went wrong\")")
                raise CompileError()
            t = self.expr(args[0])
            if t not in (None, "String", "Any"):
                self.error(args[0].span, f"an error message must be a String, found `{t}`")
            self.span = e.span
            self.emit("BUILD_STRUCT", type_name=segs[0], names=["message"], argc=1)
            return segs[0]
        variant = self.enum_variant(segs)
        if variant is not None:
            enum, vdecl = variant
            args = self.positional(e)
            if vdecl.kind != "tuple":
                self.error(e.span, f"`{qual}` is not a tuple variant")
                raise CompileError()
            if len(args) != len(vdecl.types):
                self.error(e.span, f"`{qual}` takes {len(vdecl.types)} value(s), {len(args)} given")
                raise CompileError()
            owner = FunctionCompiler(self.pb, self.symbols_module(enum), "<v>")
            for a, vt in zip(args, vdecl.types):
                t = self.expr(a)
                expected = owner.type_str(vt)
                if not T.compatible(expected, t, self.generics):
                    self.error(a.span, f"mismatched types: expected `{expected}`, found `{t}`")
            self.span = e.span
            self.emit("BUILD_VARIANT", type_name=enum, name=vdecl.name, argc=len(args))
            return enum
        # Type::Trait::method -> Type::method
        if len(segs) == 3 and "::".join(segs[:1]) in self.symbols.structs and segs[1] in self.symbols.traits:
            segs = [segs[0], segs[2]]
            qual = "::".join(segs)
        info = self.pb.fn_sigs.get(qual)
        if info is not None:
            self.check_visible(qual, e.span)
            return self.call_user(e, info, qual)
        if len(segs) == 1 and segs[0] in ("spawn", "flush_emits"):
            return concurrency.builtin_call(self, e, segs[0])
        if len(segs) == 1 and segs[0] in _PRELUDE_NATIVES:
            qual = _PRELUDE_NATIVES[segs[0]]
        if qual in ("panic", "assert", "assert_eq"):
            args = self.positional(e)
            for a in args:
                self.expr(a)
            self.span = e.span
            self.emit("CALL_NATIVE", name=qual, argc=len(args))
            return "Never" if qual == "panic" else "Nil"
        native = self.pb.registry.functions.get(qual)
        if native is not None:
            args = self.positional(e)
            for a in args:
                # std:: parameters typed Array<Any> take mixed literals (spec 19's fmt::format)
                self.mixed_array_ok = isinstance(a, A.ArrayExpr)
                self.expr(a)
                self.mixed_array_ok = False
            argc = len(args)
            if e.type_args:
                tname = self.type_str(e.type_args[0]) or "Any"
                self.emit("LOAD_CONST", arg=self.pb.const(tname))
                argc += 1
            if argc < native.min_args or (native.max_args is not None and argc > native.max_args):
                expect = str(native.min_args) if native.max_args == native.min_args else f"{native.min_args}..{native.max_args}"
                self.error(e.span, f"`{qual}` takes {expect} argument(s), {len(args)} given")
            self.span = e.span
            self.emit("CALL_NATIVE", name=qual, argc=argc)
            return _native_return_type(qual)
        if segs and segs[0] == "std":
            self.error(e.span, f"unknown standard library function `{qual}`",
                       hint="std::fs and std::http are not available yet" if len(segs) > 1 and segs[1] in ("fs", "http") else None)
            raise CompileError()
        self.error(e.callee.span, f"cannot find function `{'::'.join(segments)}` in this scope",
                   hint=self.suggest(segments[-1]))
        raise CompileError()

    def call_user(self, e: A.Call, info: FnInfo, qual: str, receiver: bool = False) -> str | None:
        decl = info.decl
        owner = FunctionCompiler(self.pb, info.module, "<sig>", self_type=info.self_type,
                                 generics=frozenset(decl.generics))
        params = decl.params
        ordered: list[A.Expr | None] = [None] * len(params)
        positional_done = False
        for k, a in enumerate(e.args):
            if a.name is None:
                if positional_done:
                    self.error(a.span, "positional arguments must come before named ones")
                    raise CompileError()
                if k >= len(params):
                    self.error(e.span, f"`{qual}` takes {len(params)} argument(s), {len(e.args)} given")
                    raise CompileError()
                ordered[k] = a.value
            else:
                positional_done = True
                idx = next((i for i, p in enumerate(params) if p.name == a.name), None)
                if idx is None:
                    self.error(a.span, f"`{qual}` has no parameter named `{a.name}`")
                    raise CompileError()
                if ordered[idx] is not None:
                    self.error(a.span, f"argument `{a.name}` is given twice")
                    raise CompileError()
                ordered[idx] = a.value
        for i, p in enumerate(params):
            arg = ordered[i]
            expected = owner.type_str(p.type) if p.type else None
            if arg is None:
                if p.default is None:
                    given = sum(1 for x in ordered if x is not None)
                    self.error(e.span, f"`{qual}` takes {len(params)} argument(s), {given} given",
                               hint=f"missing `{p.name}`")
                    raise CompileError()
                owner_fc = FunctionCompiler(self.pb, info.module, "<default>")
                owner_fc.code = self.code
                owner_fc.span = e.span
                owner_fc.expr(p.default)
                continue
            t = self.expr(arg)
            if not T.compatible(expected, t, frozenset(decl.generics)):
                self.error(arg.span, f"mismatched types: `{p.name}` expects `{expected}`, found `{t}`")
            if expected in decl.bounds:
                self.check_bounds(owner, arg, expected, decl.bounds[expected], t)
            self.coerce(expected, t)
        self.span = e.span
        self.emit("CALL", name=qual, argc=len(params) + (1 if receiver else 0))
        ret = owner.type_str(decl.ret) if decl.ret else "Nil"
        if ret and any(g == ret or f"<{g}>" in ret or f"{g}," in ret or f" {g}>" in ret for g in decl.generics):
            return None
        return ret

    def check_bounds(self, owner: "FunctionCompiler", arg: A.Expr, param: str, bounds: list[A.TypeRef],
                     t: str | None) -> None:
        """Spec 02 trait bounds: `fn f<T: Describable>(x: T)` needs a T that implements Describable.
        Checked for user structs and enums against user-declared traits."""
        if t is None or (t not in self.symbols.structs and t not in self.symbols.enums):
            return
        for bound in bounds:
            trait = "::".join(owner.resolve_path(bound.name.split("::")))
            if trait in self.symbols.traits and (t, trait) not in self.pb.trait_impls:
                self.error(arg.span, f"`{t}` does not implement `{bound.name}`, which `{param}` requires",
                           hint=f"add `impl {bound.name} for {t} {{ ... }}`")

    def method_call(self, e: A.Call, callee: A.Field) -> str | None:
        obj = callee.obj
        # hashmap declarations: store.get(k) & co. use the HASH_MAP_* opcodes
        if isinstance(obj, A.Name) and self.lookup(obj.name) is None:
            qual = "::".join(self.resolve_path([obj.name]))
            if self.symbols.item_kind(qual) == "hashmap":
                op = {"get": ("HASH_MAP_GET", 1), "set": ("HASH_MAP_SET", 2), "delete": ("HASH_MAP_DELETE", 1),
                      "has": ("HASH_MAP_HAS", 1), "insert": ("HASH_MAP_SET", 2), "remove": ("HASH_MAP_DELETE", 1),
                      "contains_key": ("HASH_MAP_HAS", 1)}.get(callee.name)
                if op is not None:
                    args = self.positional(e)
                    if len(args) != op[1]:
                        self.error(e.span, f"`{obj.name}.{callee.name}` takes {op[1]} argument(s)")
                        raise CompileError()
                    for a in args:
                        self.expr(a)
                    self.span = e.span
                    self.emit(op[0], name=qual)
                    return {"HASH_MAP_HAS": "Bool", "HASH_MAP_SET": "Nil"}.get(op[0])
        if isinstance(obj, (A.Name, A.Path)) and not (isinstance(obj, A.Name) and self.lookup(obj.name) is not None):
            mqual = "::".join(self.resolve_path([obj.name] if isinstance(obj, A.Name) else obj.segments))
            if self.symbols.item_kind(mqual) == "model":
                self.check_visible(mqual, obj.span)
                return self.llm_call(e, callee, mqual)
            if self.symbols.item_kind(mqual) == "pipeline":
                self.check_visible(mqual, obj.span)
                return concurrency.run_pipeline(self, e, callee, mqual)
            if self.symbols.item_kind(mqual) == "mcp":
                self.error(e.span, f"`{obj.name if isinstance(obj, A.Name) else mqual}.{callee.name}` is an MCP tool: "
                           "models call it, the program cannot yet",
                           hint="list the server in a model's `tools:` or pass it to `with_tools([...])`")
                raise CompileError()
        # Associated functions called through a value's type are not methods.
        recv_t = self.expr(obj)
        recv_head = T.split(recv_t)[0] if recv_t else None
        if recv_head in llm.MODEL_TYPES:
            return self.llm_call(e, callee, None)
        qual = f"{recv_head}::{callee.name}" if recv_head else None
        info = self.pb.fn_sigs.get(qual) if qual else None
        if info is not None and info.decl.has_self:
            if info.decl.self_mutable:
                self.require_mutable_receiver(obj)
            return self.call_user(e, info, qual, receiver=True)  # type: ignore[arg-type]
        if recv_head in self.pb.registry.methods:
            native = self.pb.registry.methods[recv_head].get(callee.name)
            if native is None and recv_head not in ("Any",) and not self.user_method_exists(callee.name):
                self.error(callee.span, f"no method `{callee.name}` on `{recv_t}`", hint=self.suggest_method(recv_head, callee.name))
                raise CompileError()
            if native is not None:
                self.check_method_arity(e, callee, recv_head, native)
            if native is not None and native.mutates:
                self.require_mutable_receiver(obj)
        elif recv_head in self.symbols.structs and not self.user_method_exists(callee.name, recv_head):
            self.error(callee.span, f"no method `{callee.name}` on `{recv_head}`")
            raise CompileError()
        args = self.positional(e)
        for a in args:
            self.expr(a)
        self.span = e.span
        self.emit("CALL_METHOD", name=callee.name, argc=len(args))
        return _method_return_type(recv_t, callee.name)

    def check_method_arity(self, e: A.Call, callee: A.Field, recv_head: str, native: Any) -> None:
        """A built-in method's argument count, when the receiver's type is known here."""
        count = len(e.args)
        lo, hi = native.min_args, native.max_args
        if lo <= count and (hi is None or count <= hi):
            return
        s = callee.span
        # Point at the method's name, the end of `obj.name`.
        at = A.Span(s.end_line, s.end_col - len(callee.name), s.end_line, s.end_col) \
            if s.end_line and s.end_col > len(callee.name) else s
        self.error(at, f"`{callee.name}` on {recv_head} takes {_arg_count(lo, hi)}, {count} given")
        raise CompileError()

    def llm_call(self, e: A.Call, callee: A.Field, model: str | None) -> str | None:
        try:
            return llm.model_call(self, e, callee, model)
        except llm.LlmError:
            raise CompileError() from None

    def user_method_exists(self, name: str, type_name: str | None = None) -> bool:
        if type_name:
            return f"{type_name}::{name}" in self.pb.fn_sigs
        return any(q.endswith("::" + name) and info.decl.has_self for q, info in self.pb.fn_sigs.items())

    def suggest_method(self, type_name: str, name: str) -> str | None:
        import difflib

        close = difflib.get_close_matches(name, sorted(self.pb.registry.methods.get(type_name, {})), n=1)
        return f"did you mean `{close[0]}`?" if close else None

    def require_mutable_receiver(self, obj: A.Expr) -> None:
        self.require_mutable_root(obj, check_self=False)


def _arg_count(lo: int, hi: int | None) -> str:
    """`1 argument`, `no arguments`, `1 to 2 arguments`, `at least 1 argument`."""
    if hi is None:
        return f"at least {lo} argument{'' if lo == 1 else 's'}"
    if lo == hi:
        return "no arguments" if lo == 0 else f"{lo} argument{'' if lo == 1 else 's'}"
    return f"{lo} to {hi} arguments"


def _diverges(stmt: A.Stmt) -> bool:
    return isinstance(stmt, A.ExprStmt) and isinstance(stmt.expr, (A.Return, A.Break, A.Continue, A.Throw))


def _is_place(e: A.Expr) -> bool:
    return isinstance(e, (A.Name, A.Field, A.Index, A.TupleField, A.SelfExpr))


def _end_span(node: A.Node) -> A.Span:
    s = node.span
    return A.Span(s.end_line or s.line, max(1, (s.end_col or s.col) - 1), s.end_line, s.end_col)


_NATIVE_RETURNS = {
    "Message::system": "Message", "Message::user": "Message", "Message::assistant": "Message",
    "std::string::to_upper": "String", "std::string::to_lower": "String", "std::string::trim": "String",
    "std::string::len": "Int", "std::string::contains": "Bool", "std::string::split": "Array<String>",
    "std::string::join": "String", "std::string::replace": "String", "std::string::parse_int": "Result<Int, ParseError>",
    "std::string::parse_float": "Result<Float, ParseError>", "std::math::sqrt": "Float", "std::math::pow": "Int",
    "std::math::round": "Int", "std::math::floor": "Int", "std::math::ceil": "Int", "std::math::random": "Float",
    "std::json::stringify": "String", "std::json::stringify_pretty": "String", "std::json::is_valid": "Bool",
    "std::crypto::sha256": "String", "std::crypto::md5": "String", "std::crypto::uuid": "String",
    "std::fmt::format": "String", "std::env::get": "Option<String>", "std::env::has": "Bool",
    "std::time::now": "String", "std::time::now_ms": "Int", "std::prompt::template": "String",
    "std::prompt::count_tokens": "Int",
}


def _native_return_type(qual: str) -> str | None:
    return _NATIVE_RETURNS.get(qual)


_METHOD_RETURNS = {
    "messages": "Array<Message>",
    "len": "Int", "is_empty": "Bool", "contains": "Bool", "to_string": "String", "to_upper": "String",
    "to_lower": "String", "trim": "String", "starts_with": "Bool", "ends_with": "Bool", "has": "Bool",
    "is_some": "Bool", "is_none": "Bool", "is_ok": "Bool", "is_err": "Bool", "join": "String",
    "replace": "String", "repeat": "String", "contains_key": "Bool",
}


def _method_return_type(recv: str | None, name: str) -> str | None:
    if name in _METHOD_RETURNS:
        return _METHOD_RETURNS[name]
    if recv is None:
        return None
    head, args = T.split(recv)
    if head == "Memory" and name == "last":
        return "Array<Message>"
    if head == "Stream" and name == "collect":
        return "Result<String, AgentError>"
    if head == "Array" and args:
        if name in ("filter", "sorted", "reverse", "slice", "take", "skip", "concat", "unique"):
            return recv
        if name in ("get", "first", "last", "pop", "find", "min", "max"):
            return f"Option<{args[0]}>"
    if head == "Option" and args and name in ("unwrap", "expect", "unwrap_or"):
        return args[0]
    if head == "Result" and args and name in ("unwrap", "expect", "unwrap_or"):
        return args[0]
    if head == "Map" and len(args) == 2:
        if name == "get":
            return f"Option<{args[1]}>"
        if name == "keys":
            return f"Array<{args[0]}>"
        if name == "values":
            return f"Array<{args[1]}>"
    if head == "String" and name == "split":
        return "Array<String>"
    return None


# Types whose values have no fields (`a.foo` on them is an error, not a run-time fault).
_NO_FIELDS = {"Int", "Float", "Bool", "Nil", "String", "Array", "Option", "Result", "Range"}


def _block_tail(block: A.Block) -> A.Expr | None:
    """The expression whose value a block yields, if any."""
    if block.tail is not None:
        return block.tail
    stmts = block.stmts
    if stmts and isinstance(stmts[-1], A.ExprStmt) and not stmts[-1].semicolon:
        return stmts[-1].expr
    return None
