"""AST node types. Every node carries the span of the source it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Span:
    line: int
    col: int
    end_line: int
    end_col: int

    @staticmethod
    def none() -> "Span":
        return Span(0, 0, 0, 0)


@dataclass(eq=False)
class Node:
    span: Span


# ------------------------------------------------------------------ types
@dataclass(eq=False)
class TypeRef(Node):
    """`Name`, `a::Name`, `Name<Args>`; tuples are `Tuple`, functions `fn`."""

    name: str
    args: list["TypeRef"] = field(default_factory=list)
    ret: "TypeRef | None" = None  # for fn types

    def __str__(self) -> str:
        if self.name == "fn":
            inner = ", ".join(str(a) for a in self.args)
            return f"fn({inner})" + (f" -> {self.ret}" if self.ret else "")
        if self.name == "Tuple":
            return "(" + ", ".join(str(a) for a in self.args) + ")"
        if self.args:
            return f"{self.name}<{', '.join(str(a) for a in self.args)}>"
        return self.name


# ------------------------------------------------------------------ patterns
@dataclass(eq=False)
class Pattern(Node):
    pass


@dataclass(eq=False)
class WildcardPat(Pattern):
    pass


@dataclass(eq=False)
class LiteralPat(Pattern):
    value: Any


@dataclass(eq=False)
class RangePat(Pattern):
    lo: Any
    hi: Any
    inclusive: bool


@dataclass(eq=False)
class IdentPat(Pattern):
    """A bare name: a binding, unless it names a unit variant or a const."""

    name: str
    mutable: bool = False


@dataclass(eq=False)
class PathPat(Pattern):
    """`Dir::North` (a unit variant or const reached through a path)."""

    path: list[str]


@dataclass(eq=False)
class VariantPat(Pattern):
    """`Some(x)`, `Shape::Circle(r)`, also `AgentError(e)`-style type tests."""

    path: list[str]
    items: list[Pattern]


@dataclass(eq=False)
class StructPat(Pattern):
    path: list[str]
    fields: list[tuple[str, Pattern]]
    has_rest: bool


@dataclass(eq=False)
class TuplePat(Pattern):
    items: list[Pattern]


@dataclass(eq=False)
class ArrayPat(Pattern):
    before: list[Pattern]
    rest: str | None  # None: no rest; "": `..`; name: `..name`
    has_rest: bool
    after: list[Pattern]


@dataclass(eq=False)
class OrPat(Pattern):
    alts: list[Pattern]


@dataclass(eq=False)
class AtPat(Pattern):
    name: str
    inner: Pattern


# ------------------------------------------------------------------ expressions
@dataclass(eq=False)
class Expr(Node):
    pass


@dataclass(eq=False)
class Literal(Expr):
    value: Any  # int, float, str, bool, None


@dataclass(eq=False)
class Interp(Expr):
    """An interpolated string: literal parts and expressions, alternating."""

    parts: list["str | Expr"]


@dataclass(eq=False)
class Name(Expr):
    name: str


@dataclass(eq=False)
class Path(Expr):
    segments: list[str]


@dataclass(eq=False)
class SelfExpr(Expr):
    pass


@dataclass(eq=False)
class Unary(Expr):
    op: str  # "-" or "!"
    operand: Expr


@dataclass(eq=False)
class Binary(Expr):
    op: str
    left: Expr
    right: Expr


@dataclass(eq=False)
class Logical(Expr):
    op: str  # "&&" or "||"
    left: Expr
    right: Expr


@dataclass(eq=False)
class Coalesce(Expr):
    left: Expr
    right: Expr


@dataclass(eq=False)
class Pipe(Expr):
    left: Expr
    right: Expr


@dataclass(eq=False)
class RangeExpr(Expr):
    lo: Expr | None
    hi: Expr | None
    inclusive: bool


@dataclass(eq=False)
class Cast(Expr):
    expr: Expr
    type: TypeRef


@dataclass(eq=False)
class Assign(Expr):
    op: str  # "=", "+=", ...
    target: Expr
    value: Expr


@dataclass(eq=False)
class Arg(Node):
    name: str | None
    value: Expr


@dataclass(eq=False)
class Call(Expr):
    callee: Expr
    args: list[Arg]
    type_args: list[TypeRef] = field(default_factory=list)


@dataclass(eq=False)
class Field(Expr):
    obj: Expr
    name: str


@dataclass(eq=False)
class TupleField(Expr):
    obj: Expr
    index: int


@dataclass(eq=False)
class Index(Expr):
    obj: Expr
    index: Expr


@dataclass(eq=False)
class Try(Expr):
    """Postfix `?`."""

    expr: Expr


@dataclass(eq=False)
class TupleExpr(Expr):
    items: list[Expr]


@dataclass(eq=False)
class ArrayExpr(Expr):
    items: list[Expr]


@dataclass(eq=False)
class MapExpr(Expr):
    entries: list[tuple[Expr, Expr]]


@dataclass(eq=False)
class StructLit(Expr):
    path: list[str]
    fields: list[tuple[str, Expr]]


@dataclass(eq=False)
class Param(Node):
    name: str
    type: TypeRef | None
    default: Expr | None = None
    mutable: bool = False


@dataclass(eq=False)
class Closure(Expr):
    params: list[Param]
    ret: TypeRef | None
    body: Expr


@dataclass(eq=False)
class Block(Expr):
    stmts: list["Stmt"]
    tail: Expr | None


@dataclass(eq=False)
class If(Expr):
    cond: Expr
    then: Block
    els: "Block | If | None"


@dataclass(eq=False)
class MatchArm(Node):
    pattern: Pattern
    guard: Expr | None
    body: Expr


@dataclass(eq=False)
class Match(Expr):
    scrutinee: Expr
    arms: list[MatchArm]


@dataclass(eq=False)
class Loop(Expr):
    label: str | None
    body: Block


@dataclass(eq=False)
class While(Expr):
    label: str | None
    cond: Expr
    body: Block


@dataclass(eq=False)
class For(Expr):
    label: str | None
    pattern: Pattern
    iterable: Expr
    body: Block


@dataclass(eq=False)
class CatchClause(Node):
    type_name: str | None  # None: bare catch
    binding: str | None
    body: Block


@dataclass(eq=False)
class TryCatch(Expr):
    body: Block
    catches: list[CatchClause]


@dataclass(eq=False)
class Return(Expr):
    value: Expr | None


@dataclass(eq=False)
class Break(Expr):
    label: str | None
    value: Expr | None


@dataclass(eq=False)
class Continue(Expr):
    label: str | None


@dataclass(eq=False)
class Throw(Expr):
    value: Expr


@dataclass(eq=False)
class Emit(Expr):
    args: list[Arg]
    schema: "TypeRef | None" = None  # `emit<Schema>(...)`


@dataclass(eq=False)
class Await(Expr):
    """`expr.await` (postfix) or `await expr` (prefix)."""

    expr: Expr
    prefix: bool


@dataclass(eq=False)
class Race(Expr):
    """`race (a, b, ...)`: the first of the operations to finish."""

    items: list[Expr]


@dataclass(eq=False)
class ParallelFor(Expr):
    """`parallel for pat in iterable { body }`: an Array of the body's values."""

    pattern: Pattern
    iterable: Expr
    body: Block


# ------------------------------------------------------------------ statements
@dataclass(eq=False)
class Stmt(Node):
    pass


@dataclass(eq=False)
class Let(Stmt):
    pattern: Pattern
    type: TypeRef | None
    value: Expr | None


@dataclass(eq=False)
class ExprStmt(Stmt):
    expr: Expr
    semicolon: bool


# ------------------------------------------------------------------ items
@dataclass(eq=False)
class Decorator(Node):
    name: str
    args: list[Arg]


@dataclass(eq=False)
class Item(Node):
    name: str
    public: bool


@dataclass(eq=False)
class FnDecl(Item):
    params: list[Param]
    ret: TypeRef | None
    body: Block | None
    generics: list[str] = field(default_factory=list)
    has_self: bool = False
    self_mutable: bool = False
    is_async: bool = False
    decorators: list[Decorator] = field(default_factory=list)
    doc: str = ""
    bounds: dict[str, list[TypeRef]] = field(default_factory=dict)  # `T: Trait + Other`


@dataclass(eq=False)
class FieldDecl(Node):
    name: str
    type: TypeRef
    public: bool
    default: Expr | None = None


@dataclass(eq=False)
class StructDecl(Item):
    fields: list[FieldDecl]
    doc: str = ""


@dataclass(eq=False)
class VariantDecl(Node):
    name: str
    kind: str  # "unit" | "tuple" | "struct"
    types: list[TypeRef] = field(default_factory=list)
    fields: list[FieldDecl] = field(default_factory=list)


@dataclass(eq=False)
class EnumDecl(Item):
    variants: list[VariantDecl]
    doc: str = ""


@dataclass(eq=False)
class TraitDecl(Item):
    methods: list[FnDecl]


@dataclass(eq=False)
class ImplDecl(Node):
    type: TypeRef
    trait: TypeRef | None
    methods: list[FnDecl]


@dataclass(eq=False)
class ConstDecl(Item):
    type: TypeRef
    value: Expr


@dataclass(eq=False)
class TypeAlias(Item):
    type: TypeRef


@dataclass(eq=False)
class HashMapDecl(Item):
    type: TypeRef
    value: Expr


@dataclass(eq=False)
class UseDecl(Node):
    """One imported name: `path` (full) bound locally as `alias`; glob when alias is '*'."""

    path: list[str]
    alias: str
    public: bool


@dataclass(eq=False)
class ModDecl(Item):
    items: list[Node] | None  # None: load `<name>.conc` beside the file
    file: str = ""


@dataclass(eq=False)
class Module(Node):
    items: list[Node]
    file: str


# ------------------------------------------------------------------ LLM items
@dataclass(eq=False)
class ModelField(Node):
    name: str
    value: Expr


@dataclass(eq=False)
class ModelDecl(Item):
    """`model Name { provider: conn, base: "...", ... }` (spec 07); `keyword` is
    "agent" for the older spelling of the same thing."""

    keyword: str
    fields: list[ModelField]
    decorators: list[Decorator] = field(default_factory=list)


@dataclass(eq=False)
class SchemaField(Node):
    name: str
    type: TypeRef | None  # None for a string-literal union
    enum: list[str] | None
    optional: bool
    default: Expr | None
    decorators: list[Decorator] = field(default_factory=list)


@dataclass(eq=False)
class SchemaDecl(Item):
    fields: list[SchemaField]
    generics: list[str] = field(default_factory=list)
    decorators: list[Decorator] = field(default_factory=list)
    doc: str = ""


@dataclass(eq=False)
class MemoryDecl(Item):
    """`memory chat: Memory = Memory::new(50);` (spec 24)."""

    type: TypeRef | None
    value: Expr


@dataclass(eq=False)
class StageDecl(Node):
    """`@decorators stage name(param: T) -> U { body }` inside a pipeline."""

    name: str
    params: list[Param]
    ret: TypeRef | None
    body: Block
    decorators: list[Decorator] = field(default_factory=list)
    has_self: bool = False


@dataclass(eq=False)
class PipelineDecl(Item):
    """`pipeline Name(input: T) -> U { stage ... }` (spec 15, 30); the signature is optional."""

    params: list[Param] | None  # None: no `(...)` signature
    ret: TypeRef | None
    stages: list[StageDecl]
    decorators: list[Decorator] = field(default_factory=list)


@dataclass(eq=False)
class ConnectDecl(Item):
    """A `connect` block: removed by spec 22, kept only for its diagnostic."""

    fields: list[ModelField]


@dataclass(eq=False)
class ToolSetting(Node):
    """`description: "..."` inside a tool or an mcp block."""

    name: str
    value: Expr


@dataclass(eq=False)
class ToolDecl(Item):
    """`tool Name { description: "...", state: T = v, @describe(..) pub fn m(self, ..) {..} }`
    (spec 08); `trait` is the `impl Trait` it declares, if any."""

    settings: list[ToolSetting]
    fields: list[FieldDecl]
    methods: list[FnDecl]
    trait: TypeRef | None = None
    decorators: list[Decorator] = field(default_factory=list)
    doc: str = ""


@dataclass(eq=False)
class McpDecl(Item):
    """`mcp Server { transport: "stdio", command: "...", fn tool(..) -> T; }` (spec 08)."""

    settings: list[ToolSetting]
    fields: list[FieldDecl]
    methods: list[FnDecl]
    decorators: list[Decorator] = field(default_factory=list)
