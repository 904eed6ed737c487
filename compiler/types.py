"""Static types as canonical strings, and the compatibility rules of spec 02.

`None` means "not known here": checks only fire when both sides are known,
so local inference never reports an error it cannot prove.
"""

from __future__ import annotations

NUMERIC = {"Int", "Float"}
PRIMITIVES = {"Int", "Float", "String", "Bool", "Nil"}


def split(t: str) -> tuple[str, list[str]]:
    """`Map<String, Array<Int>>` -> ("Map", ["String", "Array<Int>"])."""
    if t.startswith("(") and t.endswith(")"):
        return "Tuple", _split_args(t[1:-1])
    lt = t.find("<")
    if lt < 0 or not t.endswith(">"):
        return t, []
    return t[:lt], _split_args(t[lt + 1 : -1])


def _split_args(inner: str) -> list[str]:
    if "," not in inner:  # one argument, however deeply nested: no scan needed
        tail = inner.strip()
        return [tail] if tail else []
    out: list[str] = []
    depth = 0
    start = 0
    prev = ""
    for i, ch in enumerate(inner):
        if ch in "<(":
            depth += 1
        elif ch == ")" or (ch == ">" and prev != "-"):  # the `>` of `->` closes nothing
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(inner[start:i].strip())
            start = i + 1
        prev = ch
    tail = inner[start:].strip()
    if tail:
        out.append(tail)
    return out


def element_type(t: str | None) -> str | None:
    """Item type when iterating a value of type t."""
    if t is None:
        return None
    head, args = split(t)
    if head in ("Array", "Set", "Queue", "Stack") and args:
        return args[0]
    if head == "Range":
        return "Int"
    if head == "Stream":
        return "StreamChunk"
    if head == "String":
        return "String"
    if head == "Map" and len(args) == 2:
        return f"({args[0]}, {args[1]})"
    return None


def is_generic_param(t: str, generics: set[str]) -> bool:
    return t in generics


def compatible(expected: str | None, actual: str | None, generics: frozenset[str] = frozenset()) -> bool:
    """May a value of type `actual` be used where `expected` is required?"""
    if expected is None or actual is None:
        return True
    if expected == actual or expected == "Any" or actual == "Any":
        return True
    if expected in generics or actual in generics:
        return True
    if len(expected) == 1 or len(actual) == 1:  # an unresolved generic parameter
        return True
    if expected == "Float" and actual == "Int":
        return True
    if expected == "Prompt" and actual == "String":
        return True
    if expected.startswith("fn") and actual.startswith("fn"):
        return True  # closures infer their types late; arity is checked at the call
    e_head, e_args = split(expected)
    a_head, a_args = split(actual)
    if e_head == "Option":
        if a_head == "Option":
            return not a_args or not e_args or compatible(e_args[0], a_args[0], generics)
        if actual == "Nil":
            return True
        return not e_args or compatible(e_args[0], actual, generics)  # T -> Option<T> wraps
    if e_head != a_head:
        return False
    if not e_args or not a_args or len(e_args) != len(a_args):
        return True
    return all(compatible(e, a, generics) for e, a in zip(e_args, a_args))


def unify(a: str | None, b: str | None) -> str | None:
    """The type of a value that is either a or b (if/match branches)."""
    if a is None or b is None:
        return None
    if a == b:
        return a
    if {a, b} == NUMERIC:
        return "Float"
    if a == "Never":
        return b
    if b == "Never":
        return a
    return None


def fn_params(t: str) -> list[str] | None:
    """`fn(Int, fn(A) -> B) -> C` -> ["Int", "fn(A) -> B"]; None if `t` is no function type."""
    if not t.startswith("fn("):
        return None
    depth = 0
    params: list[str] = []
    start = 3
    i = 3
    while i < len(t):
        ch = t[i]
        if t.startswith("->", i):
            i += 2  # the arrow's `>` closes nothing
            continue
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            if depth == 0:  # the `)` closing the parameter list
                last = t[start:i].strip()
                if last:
                    params.append(last)
                return params
            depth -= 1
        elif ch == "," and depth == 0:
            params.append(t[start:i].strip())
            start = i + 1
        i += 1
    return None


# Types a value of which can be called: functions, and what we cannot see into.
def is_callable(t: str | None, generics: frozenset[str] = frozenset()) -> bool:
    return t is None or t == "Any" or t.startswith("fn") or t in generics or len(t) == 1
