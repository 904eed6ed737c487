"""Semantic rules that look at a whole construct: match exhaustiveness.

Exhaustiveness is decided with the pattern-matrix "usefulness" algorithm of
Maranget ("Warnings for pattern matching", JFP 2007). The arms' patterns are
first lowered to a small internal form (`Wild`, `Con`, `Arr`, `Or`) in which
every refutable pattern is a constructor of some *family* (the constructors of
one type): enum variants, `true`/`false`, `Some`/`None`, `Ok`/`Err`, the one
constructor of a tuple or struct type, array lengths, and an "open" family for
literals, ranges, constants and type tests, whose domain we treat as infinite.
Instead of a yes/no answer the algorithm returns example values that no arm
matches ("witnesses"), which become the diagnostic's "`...` not covered" text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from concerto.compiler import ast as A
from concerto.compiler import types as T

if TYPE_CHECKING:
    from concerto.compiler.codegen import FunctionCompiler


# ------------------------------------------------------------------ constructors
@dataclass(frozen=True)
class Ctor:
    """A named constructor. Two patterns test the same thing iff their Ctors are equal."""

    family: str  # the type it builds: "Bool", "enum:Shape", "tuple:2", "struct:Point", "open"
    name: str  # how a witness shows it: "Shape::Circle", "Some", "true"
    shape: str  # payload layout: "unit" | "tuple" (positional) | "fields" (by name)
    arity: int = 0  # payload size when shape == "tuple"


@dataclass(frozen=True)
class ArrayLen:
    """Arrays of exactly `length` items, or (when `suffix` is set) of at least `length`.

    In the "at least" bucket the first `length - suffix` positions are counted
    from the front and the last `suffix` from the back, so `[a, .., z]` keeps
    its meaning whatever the real length is.
    """

    length: int
    suffix: int | None = None


_TRUE = Ctor("Bool", "true", "unit")
_FALSE = Ctor("Bool", "false", "unit")
_SOME = Ctor("enum:Option", "Some", "tuple", 1)
_NONE = Ctor("enum:Option", "None", "unit")
_OK = Ctor("enum:Result", "Ok", "tuple", 1)
_ERR = Ctor("enum:Result", "Err", "tuple", 1)
_PRELUDE = {"Some": _SOME, "Ok": _OK, "Err": _ERR}
_OPEN = "open"


# ------------------------------------------------------------------ lowered patterns
@dataclass(frozen=True)
class Wild:
    """Matches anything: `_`, a binding, or an omitted field."""


@dataclass
class Con:
    ctor: Ctor | ArrayLen
    args: dict[int | str, "Pat"] = field(default_factory=dict)  # missing keys are wildcards


@dataclass
class Arr:
    before: list["Pat"]
    after: list["Pat"]
    has_rest: bool


@dataclass
class Or:
    alts: list["Pat"]


Pat = Union[Wild, Con, Arr, Or]
Row = list[Pat]
WILD = Wild()

# At most this many missing cases are collected; one more than is shown, so the
# message can say that it lists only some of them.
_SHOWN = 5
_LIMIT = _SHOWN + 1


def _variant_ctor(enum: str, v: A.VariantDecl) -> Ctor:
    shape = {"unit": "unit", "tuple": "tuple", "struct": "fields"}[v.kind]
    return Ctor(f"enum:{enum}", f"{enum}::{v.name}", shape, len(v.types))


def _open(key: str) -> Con:
    """A test on a value from a domain we never enumerate (numbers, strings, types)."""
    return Con(Ctor(_OPEN, key, "unit"))


def _lower(fc: "FunctionCompiler", pat: A.Pattern) -> Pat:
    """The internal form of one source pattern, resolved the way codegen resolves it."""
    if isinstance(pat, A.WildcardPat):
        return WILD
    if isinstance(pat, A.IdentPat):
        if pat.name == "None" or fc.is_unit_variant_name(pat.name) or fc.is_const_name(pat.name):
            return _lower_path(fc, [pat.name])
        return WILD
    if isinstance(pat, A.AtPat):
        return _lower(fc, pat.inner)  # `n @ p` matches exactly what `p` matches
    if isinstance(pat, A.OrPat):
        return Or([_lower(fc, alt) for alt in pat.alts])
    if isinstance(pat, A.LiteralPat):
        if isinstance(pat.value, bool):
            return Con(_TRUE if pat.value else _FALSE)
        return _open(f"literal {type(pat.value).__name__} {pat.value!r}")
    if isinstance(pat, A.PathPat):
        return _lower_path(fc, pat.path)
    if isinstance(pat, A.VariantPat):
        return _lower_variant(fc, pat)
    if isinstance(pat, A.StructPat):
        return _lower_struct(fc, pat)
    if isinstance(pat, A.TuplePat):
        n = len(pat.items)
        return Con(Ctor(f"tuple:{n}", "", "tuple", n), {i: _lower(fc, p) for i, p in enumerate(pat.items)})
    if isinstance(pat, A.ArrayPat):
        return Arr([_lower(fc, p) for p in pat.before], [_lower(fc, p) for p in pat.after], pat.has_rest)
    # Ranges and anything unforeseen: refutable, and never part of a complete set.
    return _open(f"pattern {id(pat)}")


def _lower_path(fc: "FunctionCompiler", path: list[str]) -> Pat:
    segs = fc.resolve_path(path)
    if path == ["None"] or segs in (["None"], ["Option", "None"]):
        return Con(_NONE)
    variant = fc.enum_variant(segs)
    if variant is not None:
        # A bare path tests only the variant, whatever its payload (codegen does the same).
        return Con(_variant_ctor(variant[0], variant[1]))
    return _open("const " + "::".join(segs))


def _lower_variant(fc: "FunctionCompiler", pat: A.VariantPat) -> Pat:
    segs = fc.resolve_path(pat.path)
    items = {i: _lower(fc, p) for i, p in enumerate(pat.items)}
    if len(segs) == 1 and segs[0] in _PRELUDE:
        return Con(_PRELUDE[segs[0]], items)
    variant = fc.enum_variant(segs)
    if variant is not None:
        return Con(_variant_ctor(variant[0], variant[1]), items)
    # `AgentError(e)`: a runtime type test; the value may be of another type.
    return _open("type " + "::".join(segs))


def _lower_struct(fc: "FunctionCompiler", pat: A.StructPat) -> Pat:
    segs = fc.resolve_path(pat.path)
    fields: dict[int | str, Pat] = {name: _lower(fc, p) for name, p in pat.fields}
    variant = fc.enum_variant(segs)
    if variant is not None:
        return Con(_variant_ctor(variant[0], variant[1]), fields)
    qual = "::".join(segs)
    # A struct type has a single constructor, so its pattern is refuted only by its fields.
    return Con(Ctor(f"struct:{qual}", qual, "fields"), fields)


# ------------------------------------------------------------------ signatures
def _expand_or(rows: list[Row]) -> list[Row]:
    """Rows whose first pattern is an or-pattern become one row per alternative."""
    out: list[Row] = []
    stack = list(reversed(rows))
    while stack:
        row = stack.pop()
        if row and isinstance(row[0], Or):
            stack.extend(reversed([[alt] + row[1:] for alt in row[0].alts]))
        else:
            out.append(row)
    return out


def _family(head: Pat) -> str | None:
    # ArrayLen constructors only ever appear in witnesses; rows hold `Arr` instead.
    if isinstance(head, Con) and isinstance(head.ctor, Ctor):
        return head.ctor.family
    if isinstance(head, Arr):
        return "array"
    return None


def _families(heads: list[Pat]) -> list[str]:
    """The families the column's constructors come from, in order of first use."""
    seen: list[str] = []
    for h in heads:
        fam = _family(h)
        if fam is not None and fam not in seen:
            seen.append(fam)
    return seen


def _array_buckets(heads: list[Pat]) -> list[Ctor | ArrayLen]:
    """Array lengths split into the classes that the column's patterns can tell apart.

    Lengths below `bound` are each their own class; every length from `bound` on
    is matched by exactly the same rows, so one "at least" bucket stands for them.
    """
    arrays = [h for h in heads if isinstance(h, Arr)]
    longest_exact = max((len(a.before) + len(a.after) for a in arrays if not a.has_rest), default=-1)
    prefix = max((len(a.before) for a in arrays if a.has_rest), default=0)
    suffix = max((len(a.after) for a in arrays if a.has_rest), default=0)
    bound = max(longest_exact + 1, prefix + suffix)
    return [ArrayLen(k) for k in range(bound)] + [ArrayLen(bound, suffix)]


def _all_ctors(fc: "FunctionCompiler", family: str, heads: list[Pat]) -> list[Ctor | ArrayLen] | None:
    """Every constructor of `family`, or None when its domain is open (infinite)."""
    if family == "Bool":
        return [_TRUE, _FALSE]
    if family == "enum:Option":
        return [_SOME, _NONE]
    if family == "enum:Result":
        return [_OK, _ERR]
    if family.startswith("enum:"):
        enum = family[len("enum:"):]
        decl = fc.symbols.enums.get(enum)
        return [_variant_ctor(enum, v) for v in decl.variants] if decl else None
    if family.startswith(("tuple:", "struct:")):
        # The family's only constructor; the column holds at least one pattern using it.
        return [h.ctor for h in heads if isinstance(h, Con) and isinstance(h.ctor, Ctor)
                and h.ctor.family == family][:1]
    if family == "array":
        return _array_buckets(heads)
    return None


def _array_args(a: Arr, bucket: ArrayLen) -> list[Pat] | None:
    """The item patterns `a` puts on the bucket's positions, or None if it never matches it."""
    n = len(a.before) + len(a.after)
    if not a.has_rest:
        return a.before + a.after if bucket.suffix is None and n == bucket.length else None
    if n > bucket.length:
        return None
    # `..` soaks up the middle; buckets are built long enough that front and back never overlap.
    return a.before + [WILD] * (bucket.length - n) + a.after


def _matches_ctor(head: Pat, ctor: Ctor | ArrayLen) -> bool:
    if isinstance(head, Arr):
        return isinstance(ctor, ArrayLen) and _array_args(head, ctor) is not None
    return isinstance(head, Con) and head.ctor == ctor


def _keys(ctor: Ctor | ArrayLen, heads: list[Pat]) -> list[int | str]:
    """The payload positions a constructor is split into."""
    if isinstance(ctor, ArrayLen):
        return list(range(ctor.length))
    if ctor.shape == "tuple":
        return list(range(ctor.arity))
    if ctor.shape == "fields":
        # Only the fields some pattern names; the others are wildcards in every row.
        names: list[int | str] = []
        for h in heads:
            if isinstance(h, Con) and h.ctor == ctor:
                names.extend(k for k in h.args if k not in names)
        return names
    return []


def _specialize(rows: list[Row], ctor: Ctor | ArrayLen, keys: list[int | str]) -> list[Row]:
    """The rows that can match a value built by `ctor`, with its payload spread into columns."""
    out: list[Row] = []
    for row in rows:
        head, tail = row[0], row[1:]
        if isinstance(head, Wild):
            out.append([WILD] * len(keys) + tail)
        elif isinstance(head, Arr) and isinstance(ctor, ArrayLen):
            items = _array_args(head, ctor)
            if items is not None:
                out.append(items + tail)
        elif isinstance(head, Con) and head.ctor == ctor:
            out.append([head.args.get(k, WILD) for k in keys] + tail)
    return out


# ------------------------------------------------------------------ usefulness
def _missing(fc: "FunctionCompiler", rows: list[Row], width: int) -> list[Row]:
    """Example value vectors (`width` wide) that no row matches; empty when rows are exhaustive.

    This is Maranget's U(P, _..._) that also builds a witness for each way the
    wildcard vector is useful, stopping after _LIMIT of them.
    """
    if width == 0:
        return [] if rows else [[]]
    rows = _expand_or(rows)
    heads = [row[0] for row in rows]
    families = _families(heads)
    for fam in families:
        ctors = _all_ctors(fc, fam, heads)
        if ctors is not None and all(any(_matches_ctor(h, c) for h in heads) for c in ctors):
            return _split(fc, rows, width, ctors)
    # No family is complete: a value with an unlisted constructor is matched only by
    # the rows starting with a wildcard (the "default matrix").
    rest = _missing(fc, [row[1:] for row in rows if isinstance(row[0], Wild)], width - 1)
    if not rest:
        return []
    return [[first] + tail for first in _unlisted(fc, families, heads) for tail in rest][:_LIMIT]


def _split(fc: "FunctionCompiler", rows: list[Row], width: int, ctors: list[Ctor | ArrayLen]) -> list[Row]:
    """Check each constructor of a complete family on its own."""
    heads = [row[0] for row in rows]
    out: list[Row] = []
    for ctor in ctors:
        keys = _keys(ctor, heads)
        for w in _missing(fc, _specialize(rows, ctor, keys), len(keys) + width - 1):
            out.append([Con(ctor, dict(zip(keys, w[: len(keys)])))] + w[len(keys):])
            if len(out) >= _LIMIT:
                return out
    return out


def _unlisted(fc: "FunctionCompiler", families: list[str], heads: list[Pat]) -> list[Pat]:
    """Example first-column patterns that no head constructor matches."""
    for fam in families:
        ctors = _all_ctors(fc, fam, heads)
        if ctors is not None:
            return [Con(c) for c in ctors if not any(_matches_ctor(h, c) for h in heads)]
    return [WILD]  # an open domain: some value outside the listed literals


# ------------------------------------------------------------------ witnesses
def _render(p: Pat, top: bool = False) -> str:
    """A witness as source pattern text.

    At the top level a variant that no arm mentions at all is shown by its bare
    name (`Err`, `Shape::Circle`), the style these messages always used.
    """
    if not isinstance(p, Con):
        return "_"
    ctor, args = p.ctor, p.args
    if isinstance(ctor, ArrayLen):
        items = [_render(args.get(i, WILD)) for i in range(ctor.length)]
        if ctor.suffix is not None:
            cut = ctor.length - ctor.suffix
            items = items[:cut] + [".."] + items[cut:]
        return "[" + ", ".join(items) + "]"
    if ctor.shape == "unit" or (top and not args and ctor.family.startswith("enum:")):
        return ctor.name
    if ctor.shape == "tuple":
        items = [_render(args.get(i, WILD)) for i in range(ctor.arity)]
        if ctor.family.startswith("tuple:"):
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        return f"{ctor.name}({', '.join(items)})"
    # Every field the arms test is shown, even as `_`: there it means "a value no arm names".
    named = [f"{k}: {_render(a)}" for k, a in args.items()]
    return f"{ctor.name} {{ {', '.join(named + ['..'])} }}"


def _ctors_of_type(fc: "FunctionCompiler", t: str | None) -> list[Ctor] | None:
    """The constructors of a scrutinee type with a finite set of them, if known."""
    if not t:
        return None
    head = T.split(t)[0]
    family = "Bool" if head == "Bool" else f"enum:{head}"
    if head != "Bool" and head not in ("Option", "Result") and head not in fc.symbols.enums:
        return None
    ctors = _all_ctors(fc, family, [])
    return [c for c in ctors if isinstance(c, Ctor)] if ctors else None


def missing_cases(fc: "FunctionCompiler", match: A.Match, scrutinee_type: str | None) -> str | None:
    """A description of what the arms miss, or None when they are exhaustive."""
    # A guarded arm may decline any value, so it never helps cover one.
    rows: list[Row] = [[_lower(fc, arm.pattern)] for arm in match.arms if arm.guard is None]
    witnesses = [w[0] for w in _missing(fc, rows, 1)]
    if not witnesses:
        return None
    if all(isinstance(w, Wild) for w in witnesses):
        # Nothing narrowed the value down: name the type's constructors when there are few.
        ctors = _ctors_of_type(fc, scrutinee_type)
        if ctors:
            witnesses = [Con(c) for c in ctors][:_LIMIT]
    shown = ", ".join(f"`{_render(w, top=True)}`" for w in witnesses[:_SHOWN])
    return shown + (" and more" if len(witnesses) > _SHOWN else "")
