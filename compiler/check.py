"""Semantic rules that look at a whole construct: match exhaustiveness."""

from __future__ import annotations

from typing import TYPE_CHECKING

from concerto.compiler import ast as A
from concerto.compiler import types as T

if TYPE_CHECKING:
    from concerto.compiler.codegen import FunctionCompiler


def _irrefutable(fc: "FunctionCompiler", pat: A.Pattern) -> bool:
    if isinstance(pat, A.WildcardPat):
        return True
    if isinstance(pat, A.IdentPat):
        return not fc.is_unit_variant_name(pat.name) and not fc.is_const_name(pat.name)
    if isinstance(pat, A.AtPat):
        return _irrefutable(fc, pat.inner)
    if isinstance(pat, A.TuplePat):
        return all(_irrefutable(fc, p) for p in pat.items)
    if isinstance(pat, A.OrPat):
        return any(_irrefutable(fc, p) for p in pat.alts)
    if isinstance(pat, A.StructPat):
        segs = fc.resolve_path(pat.path)
        return fc.enum_variant(segs) is None and all(_irrefutable(fc, p) for _, p in pat.fields)
    return False


def _variant_of(fc: "FunctionCompiler", pat: A.Pattern) -> tuple[str, str] | None:
    """(enum, variant) a pattern selects when its payload patterns match anything."""
    if isinstance(pat, A.AtPat):
        return _variant_of(fc, pat.inner)
    if isinstance(pat, A.IdentPat) and pat.name == "None":
        return ("Option", "None")
    if isinstance(pat, (A.PathPat, A.IdentPat)):
        segs = fc.resolve_path(pat.path if isinstance(pat, A.PathPat) else [pat.name])
        if segs == ["None"]:
            return ("Option", "None")
        v = fc.enum_variant(segs)
        return (v[0], v[1].name) if v else None
    if isinstance(pat, A.VariantPat):
        segs = fc.resolve_path(pat.path)
        if not all(_irrefutable(fc, p) for p in pat.items):
            return None
        if segs[0] in ("Some", "Ok", "Err") and len(segs) == 1:
            return ("Option" if segs[0] == "Some" else "Result", segs[0])
        v = fc.enum_variant(segs)
        return (v[0], v[1].name) if v else None
    if isinstance(pat, A.StructPat):
        segs = fc.resolve_path(pat.path)
        v = fc.enum_variant(segs)
        if v and all(_irrefutable(fc, p) for _, p in pat.fields):
            return (v[0], v[1].name)
    return None


def _all_variants(fc: "FunctionCompiler", enum: str) -> list[str]:
    if enum == "Option":
        return ["Some", "None"]
    if enum == "Result":
        return ["Ok", "Err"]
    decl = fc.symbols.enums.get(enum)
    return [v.name for v in decl.variants] if decl else []


def missing_cases(fc: "FunctionCompiler", match: A.Match, scrutinee_type: str | None) -> str | None:
    """A description of what the arms miss, or None when they are exhaustive."""
    covered: dict[str, set[str]] = {}
    bools: set[bool] = set()
    exact_lengths: set[int] = set()
    min_rest: int | None = None
    for arm in match.arms:
        if arm.guard is not None:
            continue
        alts = arm.pattern.alts if isinstance(arm.pattern, A.OrPat) else [arm.pattern]
        for alt in alts:
            if _irrefutable(fc, alt):
                return None
            if isinstance(alt, A.LiteralPat) and isinstance(alt.value, bool):
                bools.add(alt.value)
            v = _variant_of(fc, alt)
            if v is not None:
                covered.setdefault(v[0], set()).add(v[1])
            if isinstance(alt, A.ArrayPat) and all(_irrefutable(fc, p) for p in alt.before + alt.after):
                k = len(alt.before) + len(alt.after)
                if alt.has_rest:
                    min_rest = k if min_rest is None else min(min_rest, k)
                else:
                    exact_lengths.add(k)
    if bools == {True, False}:
        return None
    if min_rest is not None and all(k in exact_lengths for k in range(min_rest)):
        return None
    if covered:
        enum = next(iter(covered))
        missing = [v for v in _all_variants(fc, enum) if v not in covered[enum]]
        if not missing:
            return None
        prefix = "" if enum in ("Option", "Result") else f"{enum}::"
        return ", ".join(f"`{prefix}{m}`" for m in missing)
    if bools:
        return f"`{str(not next(iter(bools))).lower()}`"
    head = T.split(scrutinee_type)[0] if scrutinee_type else None
    if head in fc.symbols.enums or head in ("Option", "Result"):
        return ", ".join(f"`{v}`" for v in _all_variants(fc, head))
    return "`_`"
