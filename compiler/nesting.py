"""How deeply a file's constructs nest, bounded right after parsing.

The passes after the parser (resolve, type checks, exhaustiveness, code
generation) walk the AST recursively. Bounding the nesting here, with an
iterative walk, is what lets them: the driver gives them a thread whose stack
and recursion limit fit MAX_NESTING levels (concerto.compiler.headroom).

What counts as a level: an expression, pattern or type that contains another
one (a call, an operator, `if`, `match`, a loop, a closure, a block, a tuple,
array, map or struct literal, an interpolated string, a type with type
arguments, ...), and an inline `mod`. Names, literals and other leaves do not
count; neither do statements, items and argument lists, nor the block that is
the body of an `if`, loop, function, closure or `try` (it belongs to that
construct), nor plain grouping parentheses (they leave no node). A chain of
binary operators, `a + b - c ...`, `x && y || z ...`, `p ?? q ?? r ...`, is one
level however long: it is a sequence, and every pass walks it with a loop.
A method call `x.f()` is one level (its callee `x.f` is part of it), so a
method chain `x.f().g().h()` costs a level per call.

A construct may sit inside at most MAX_NESTING others; the first construct (in
source order) nested deeper gets the one `nesting too deep` diagnostic.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from concerto.compiler import ast as A
from concerto.compiler.diagnostics import Diagnostic

MAX_NESTING = 1000

# (construct, field) pairs whose block is that construct's own body.
_BODY_FIELDS = frozenset({
    (A.If, "then"), (A.If, "els"), (A.Loop, "body"), (A.While, "body"), (A.For, "body"),
    (A.ParallelFor, "body"), (A.TryCatch, "body"), (A.CatchClause, "body"), (A.FnDecl, "body"),
    (A.StageDecl, "body"), (A.Closure, "body"),
})
# Left operands that continue a chain of the same kind of operator.
_CHAINS = (A.Binary, A.Logical, A.Coalesce)

_fields_cache: dict[type, tuple[str, ...]] = {}


def _node_fields(cls: type) -> tuple[str, ...]:
    names = _fields_cache.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.name != "span")
        _fields_cache[cls] = names
    return names


def _children(node: A.Node) -> list[tuple[A.Node, str]]:
    """The nodes directly under node, in source order, with the field holding each."""
    out: list[tuple[A.Node, str]] = []
    for name in _node_fields(type(node)):
        _collect(getattr(node, name), name, out)
    return out


def _collect(value: Any, name: str, out: list[tuple[A.Node, str]]) -> None:
    if isinstance(value, A.Node):
        out.append((value, name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, A.Node):
                out.append((item, name))
            elif isinstance(item, (list, tuple)):  # (key, value) pairs, (name, node) fields
                for part in item:
                    if isinstance(part, A.Node):
                        out.append((part, name))
    elif isinstance(value, dict):  # trait bounds: name -> [TypeRef]
        for item in value.values():
            _collect(item, name, out)


def _is_level(node: A.Node, parent: A.Node | None, field: str, has_children: bool) -> bool:
    if not has_children:
        return False
    if isinstance(node, A.ModDecl):
        return True
    if not isinstance(node, (A.Expr, A.Pattern, A.TypeRef)):
        return False
    if parent is not None:
        if isinstance(node, A.Block) and (type(parent), field) in _BODY_FIELDS:
            return False
        if field == "left" and type(node) is type(parent) and isinstance(node, _CHAINS):
            return False
        if field == "callee" and isinstance(node, A.Field):  # `x.f()`: one method call, one level
            return False
    return True


def _walk(module: A.Node, limit: int | None) -> tuple[int, tuple[A.Node, A.Node | None] | None]:
    """(deepest level reached, the first construct deeper than limit and its parent)."""
    deepest = 0
    stack: list[tuple[A.Node, A.Node | None, str, int]] = [(module, None, "", 0)]
    push = stack.append
    while stack:
        node, parent, field, level = stack.pop()
        children = _children(node)
        if _is_level(node, parent, field, bool(children)):
            if level > deepest:
                deepest = level
                if limit is not None and level > limit:
                    return deepest, (node, parent)
            level += 1
        for child, name in reversed(children):
            push((child, node, name, level))
    return deepest, None


def nesting_depth(module: A.Node) -> int:
    """The deepest level any construct of module sits at (0: none is nested)."""
    return _walk(module, None)[0]


def check_nesting(module: A.Module, file: str, limit: int = MAX_NESTING) -> Diagnostic | None:
    """The `nesting too deep` diagnostic for the first construct (in source order)
    nested more than `limit` levels deep, or None."""
    _, culprit = _walk(module, limit)
    if culprit is None:
        return None
    node, parent = culprit
    span = node.span if node.span.line >= 1 else parent.span if parent is not None else A.Span(1, 1, 1, 1)
    return Diagnostic(file, span.line, span.col, f"nesting too deep: more than {limit} levels",
                      hint="move the inner part into a `let` binding or a function")
