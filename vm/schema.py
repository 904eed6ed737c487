"""Checking LLM replies against the JSON Schema the compiler emits for `schema`
declarations (spec 12), and shaping that schema for each provider.

Only the subset the compiler emits is understood; any other schema (or keyword)
accepts any value, so a newer compiler never makes an older VM reject replies:

    {"type": "string" | "integer" | "number" | "boolean" | "null"}      {}  (Any)
    {"type": "string", "enum": [...]}                      string-literal unions
    {"type": "array", "items": S}
    {"type": "object", "additionalProperties": S}          Map<String, T>
    {"anyOf": [S, {"type": "null"}]}                       Option<T>
    {"type": "object", "title": N, "properties": {...}, "required": [...]}

A property may carry "default", used when the field is missing. For robustness the
checker also reads what the normalisers produce ("type": [T, "null"], anyOf with
several branches), so a reply can be checked against either schema.

Everything here is a pure function: no I/O, and no input is mutated. Replies are
untrusted text: JSON nested deeper than 512 levels is refused before decoding,
because under the VM's raised recursion limit the C decoder would crash the
process rather than raise.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .values import INT_MAX, INT_MIN

__all__ = [
    "SchemaIssue",
    "parse_json_reply",
    "validate",
    "normalize_for_openai",
    "openai_strict_supported",
    "normalize_for_anthropic",
    "unwrap_anthropic_input",
    "fake_instance",
    "describe_schema",
    "retry_prompt",
    "MODES",
]

MODES = ("strict", "partial", "coerce")


@dataclass(frozen=True)
class SchemaIssue:
    path: str  # "address.city", "tags[2]", "people[1].name"; "" for the root
    kind: str  # parse_error | missing_field | type_mismatch | enum_violation
    message: str  # one line, for people and for the LLM retry prompt
    expected: str = ""  # "integer", "one of legal, technical"
    actual: str = ""  # short rendering of what was found


# ---------------------------------------------------------------------------
# Rendering values and paths for messages
# ---------------------------------------------------------------------------

_ACTUAL_LIMIT = 60
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class _Full(Exception):
    """Raised by _Renderer once it has enough text: stops walking huge values."""


class _Renderer:
    """Compact JSON-ish text of a value, cut at `limit` characters. Written by hand
    (not json.dumps) so a huge or deeply nested reply costs only `limit` work and
    cannot hit the recursion limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0

    def put(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size > self.limit:
            raise _Full

    def value(self, v: Any) -> None:
        if isinstance(v, str):
            # Only the head of a long string can ever be shown.
            self.put(json.dumps(v[: self.limit + 1], ensure_ascii=False))
        elif isinstance(v, list):
            self.sequence(v, "[", "]", self.value)
        elif isinstance(v, dict):
            self.sequence(list(v.items()), "{", "}", self.item)
        else:
            self.put(_scalar_text(v))

    def item(self, kv: tuple[Any, Any]) -> None:
        self.value(kv[0] if isinstance(kv[0], str) else str(kv[0]))
        self.put(": ")
        self.value(kv[1])

    def sequence(self, items: list[Any], open_: str, close: str, each: Callable[[Any], None]) -> None:
        self.put(open_)
        for i, x in enumerate(items):
            if i:
                self.put(", ")
            each(x)
        self.put(close)


def _scalar_text(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return repr(v)
    if isinstance(v, int):
        # str() of a huge int is slow, and refused past 4300 digits.
        return str(v) if v.bit_length() < 1000 else f"<{v.bit_length()}-bit integer>"
    return f"<{type(v).__name__}>"


def _render(value: Any, limit: int = _ACTUAL_LIMIT) -> str:
    r = _Renderer(limit)
    try:
        r.value(value)
    except _Full:
        return "".join(r.parts)[:limit] + "..."
    return "".join(r.parts)


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _found(v: Any) -> str:
    """'string "forty"', 'integer 3', 'null': the type is said because the LLM
    often sends the right text with the wrong JSON type."""
    return "null" if v is None else f"{_type_name(v)} {_render(v)}"


def _join(path: str, name: Any) -> str:
    name = name if isinstance(name, str) else str(name)
    if _IDENT.match(name):
        return f"{path}.{name}" if path else name
    return f"{path}[{json.dumps(name, ensure_ascii=False)}]"


def _index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def _where(path: str) -> str:
    return f"field '{path}'" if path else "top-level value"


# ---------------------------------------------------------------------------
# parse_json_reply
# ---------------------------------------------------------------------------

def _reject_constant(name: str) -> Any:
    # Python's json reads NaN/Infinity, but they are not JSON and no other
    # consumer of the reply (or the VM's to_json) could round-trip them.
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# A fence's info string ("json", "JSON", "jsonc") is only taken when a newline
# follows, so ```{"a":1}``` on one line keeps its content. An unclosed fence
# (a reply cut off by max_tokens) still yields its content.
_FENCE = re.compile(r"```(?:[ \t]*[\w+.-]*[ \t]*\r?\n)?(.*?)(?:```|\Z)", re.DOTALL)
# The VM raises Python's recursion limit far above the default, and then the C
# JSON decoder can overflow the C stack (a segfault, not an exception) on
# "[[[[..." before Python notices. So nesting is measured before any decode; no
# real reply is anywhere near this deep.
_MAX_DEPTH = 512
# A JSON string or one bracket. A string runs to its closing quote or to the
# end of the text, so a match never fails and scanning stays linear even in
# text full of unbalanced quotes.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)
_OPENER = re.compile(r"[\[{]")
# Prose is scanned from each opening bracket in turn; this bounds the total
# work (in characters) for a reply full of brackets that never close or parse.
_SCAN_BUDGET = 2_000_000


def _depth_ok(text: str) -> bool:
    """Whether a decoder starting at text[0] stays within _MAX_DEPTH. Up to the
    point where the text stops being JSON, the decoder sees exactly these string
    and bracket boundaries, so this is a safe bound."""
    if text.count("[") + text.count("{") <= _MAX_DEPTH:
        return True
    depth = 0
    for m in _TOKEN.finditer(text):
        c = text[m.start()]
        if c != '"':
            depth += 1 if c in "[{" else -1
            if depth > _MAX_DEPTH:
                return False
    return True


def _span_end(text: str, start: int) -> tuple[int | None, int]:
    """(end of the bracketed value opening at `start`, or None when it never
    closes or nests too deep; characters scanned)."""
    depth = 0
    for m in _TOKEN.finditer(text, start):
        c = text[m.start()]
        if c == '"':
            continue
        depth += 1 if c in "[{" else -1
        if depth == 0:
            return m.end(), m.end() - start
        if depth > _MAX_DEPTH:
            return None, m.end() - start
    return None, len(text) - start


def _loads(text: str) -> Any:
    value, end = _DECODER.raw_decode(text)
    if text[end:].strip():
        raise ValueError(f"extra data after the JSON value at char {end}")
    return value


def _try_loads(text: str) -> tuple[bool, Any, str]:
    """(ok, value, error message); never raises."""
    text = text.strip()
    if not _depth_ok(text):
        return False, None, f"JSON nested more than {_MAX_DEPTH} levels deep"
    try:
        return True, _loads(text), ""
    except (ValueError, RecursionError) as e:
        return False, None, _one_line(str(e) or type(e).__name__)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _first_embedded(text: str) -> tuple[bool, Any]:
    """The first balanced {...} or [...] in `text` that parses as JSON."""
    budget = _SCAN_BUDGET
    for m in _OPENER.finditer(text):
        end, scanned = _span_end(text, m.start())
        budget -= scanned
        if end is not None:
            try:
                return True, _loads(text[m.start():end])
            except (ValueError, RecursionError):
                pass
        if budget <= 0:
            break
    return False, None


def _parse_error(detail: str, text: str) -> SchemaIssue:
    return SchemaIssue(
        path="",
        kind="parse_error",
        message=f"reply is not valid JSON: {detail}",
        expected="JSON",
        actual=_head(text),
    )


def _head(text: str, limit: int = _ACTUAL_LIMIT) -> str:
    """The start of a reply on one line: the raw text, not a JSON string of it."""
    flat = _one_line(text[: limit * 4])
    return flat if len(flat) <= limit else flat[:limit] + "..."


def parse_json_reply(text: str) -> tuple[Any, SchemaIssue | None]:
    """LLM text -> JSON value: the whole text, else the first fenced block that
    parses, else the first {...} or [...] in the prose that parses."""
    if not isinstance(text, str):
        return None, _parse_error(f"expected text, got {_type_name(text)}", "")
    body = text.lstrip("\ufeff").strip()
    if not body:
        return None, _parse_error("the reply is empty", text)
    ok, value, error = _try_loads(body)
    if ok:
        return value, None
    fence_error = ""
    for m in _FENCE.finditer(body):
        ok, value, block_error = _try_loads(m.group(1))
        if ok:
            return value, None
        # When the model fenced its answer, the error inside the fence is the useful one.
        fence_error = fence_error or block_error
    ok, value = _first_embedded(body)
    if ok:
        return value, None
    if not re.search(r"[\[{]", body):
        error = "no JSON object or array found"
    return None, _parse_error(fence_error or error, text)


# ---------------------------------------------------------------------------
# validate
# ---------------------------------------------------------------------------

@dataclass
class _Run:
    partial: bool  # missing required fields are not issues
    coerce: bool  # try conversions before reporting a mismatch
    issues: list[SchemaIssue] = field(default_factory=list)

    def mismatch(self, path: str, expected: str, value: Any, note: str = "") -> Any:
        msg = f"{_where(path)}: expected {expected}, got {_found(value)}{note}"
        self.issues.append(SchemaIssue(path, "type_mismatch", msg, expected, _render(value)))
        return value  # the offending value stays in the result, unchanged

    def missing(self, path: str, expected: str) -> None:
        msg = f"missing required field '{path}'"
        self.issues.append(SchemaIssue(path, "missing_field", msg, expected, ""))

    def not_in_enum(self, path: str, value: Any, options: list[Any]) -> Any:
        expected = _one_of(options)
        msg = f"{_where(path)}: {_render(value)} is not {expected}"
        self.issues.append(SchemaIssue(path, "enum_violation", msg, expected, _render(value)))
        return value


class _Fail:
    """Marks a failed conversion (None is a legitimate JSON value)."""


_FAIL = _Fail()

_INT_TEXT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_TRUE_WORDS = frozenset({"true", "yes", "1"})
_FALSE_WORDS = frozenset({"false", "no", "0"})
# str -> int of thousands of digits is slow (and capped by Python); no LLM reply
# needs more than an i64 anyway.
_MAX_NUMBER_TEXT = 400


def _is_number(v: Any) -> bool:
    # bool is an int subclass in Python but never a JSON number.
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _parse_float_text(s: str) -> float | _Fail:
    s = s.strip()
    if len(s) > _MAX_NUMBER_TEXT or not _FLOAT_TEXT.match(s):
        return _FAIL
    f = float(s)
    return f if math.isfinite(f) else _FAIL


def _parse_int_text(s: str) -> int | _Fail:
    s = s.strip()
    if len(s) > _MAX_NUMBER_TEXT:
        return _FAIL
    if _INT_TEXT.match(s):
        return int(s)
    f = _parse_float_text(s)  # "3.0" and "1e3" name integers too
    return int(f) if isinstance(f, float) and f.is_integer() else _FAIL


def _to_integer(v: Any, coerce: bool) -> int | _Fail:
    if isinstance(v, bool):
        return _FAIL
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v) if math.isfinite(v) and v.is_integer() else _FAIL
    if coerce and isinstance(v, str):
        return _parse_int_text(v)
    return _FAIL


def _to_number(v: Any, coerce: bool) -> float | _Fail:
    if isinstance(v, bool):
        return _FAIL
    if isinstance(v, int):
        try:
            return float(v)
        except OverflowError:
            return _FAIL
    if isinstance(v, float):
        return v if math.isfinite(v) else _FAIL
    if coerce and isinstance(v, str):
        return _parse_float_text(v)
    return _FAIL


def _to_boolean(v: Any, coerce: bool) -> bool | _Fail:
    if isinstance(v, bool):
        return v
    if not coerce:
        return _FAIL
    if isinstance(v, str):
        word = v.strip().casefold()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    if _is_number(v) and v in (0, 1):
        return v == 1
    return _FAIL


def _to_string(v: Any, coerce: bool) -> str | _Fail:
    if isinstance(v, str):
        return v
    if not coerce or not _is_number(v):
        return _FAIL
    if isinstance(v, float) and not math.isfinite(v):
        return _FAIL
    if isinstance(v, int) and v.bit_length() >= 1000:
        return _FAIL  # str() refuses ints past 4300 digits
    return str(v)


def _to_null(v: Any, coerce: bool) -> None | _Fail:
    return None if v is None else _FAIL


_SCALARS: dict[str, Callable[[Any, bool], Any]] = {
    "string": _to_string,
    "integer": _to_integer,
    "number": _to_number,
    "boolean": _to_boolean,
    "null": _to_null,
}


def _decoded_text(v: Any, want: type) -> Any:
    """An LLM sometimes double-encodes a nested object or array as a JSON string;
    coerce mode reads it back rather than wrapping the string."""
    if not isinstance(v, str):
        return _FAIL
    ok, value, _ = _try_loads(v)
    return value if ok and isinstance(value, want) else _FAIL


_BARE_OPTION = re.compile(r"[^\s,\"]+(?: [^\s,\"]+)*\Z")
_MAX_SHOWN_OPTIONS = 12


def _one_of(options: list[Any]) -> str:
    """'one of legal, technical'. Options are shown bare for readability unless
    that would be ambiguous (commas, quotes) or break the one-line message."""
    shown = [_option_text(o) for o in options[:_MAX_SHOWN_OPTIONS]]
    if len(options) > _MAX_SHOWN_OPTIONS:
        shown.append(f"... ({len(options)} in all)")
    return "one of " + ", ".join(shown)


def _option_text(option: Any) -> str:
    if isinstance(option, str) and len(option) <= _ACTUAL_LIMIT and _BARE_OPTION.match(option):
        return option
    return _render(option)


def _expected(schema: Any) -> str:
    """A short name of what `schema` accepts, for messages."""
    if not isinstance(schema, dict):
        return "any value"
    branches = _branches(schema)
    if branches is not None:
        return " or ".join(dict.fromkeys(_expected(b) for b in branches))
    t = schema.get("type")
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return _one_of(enum) if t in (None, "string") else f"{t} ({_one_of(enum)})"
    if t == "object" and isinstance(schema.get("title"), str):
        return f"object {schema['title']}"
    return t if isinstance(t, str) else "any value"


def _branches(schema: dict[str, Any]) -> list[Any] | None:
    """The alternatives of an anyOf or of a type list, or None for a single type."""
    any_of = schema.get("anyOf")
    if isinstance(any_of, list) and any_of:
        return any_of
    t = schema.get("type")
    if isinstance(t, list) and t:
        rest = {k: v for k, v in schema.items() if k != "type"}
        return [{**rest, "type": x} if x != "null" else {"type": "null"} for x in t]
    return None


def _accepts_null(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return True
    branches = _branches(schema)
    if branches is not None:
        return any(_accepts_null(b) for b in branches)
    t = schema.get("type")
    if t is None:
        enum = schema.get("enum")
        return not isinstance(enum, list) or None in enum
    return t == "null" or not _known_type(t)


_KNOWN_TYPES = frozenset({"string", "integer", "number", "boolean", "null", "array", "object"})


def _known_type(t: Any) -> bool:
    # A malformed "type" (a list inside a list, a dict) must not raise: it accepts any.
    return isinstance(t, str) and t in _KNOWN_TYPES


def _check(value: Any, schema: Any, path: str, run: _Run) -> Any:
    """The cleaned value; issues go to `run`."""
    if not isinstance(schema, dict):
        return value
    branches = _branches(schema)
    if branches is not None:
        return _check_union(value, branches, schema, path, run)
    t = schema.get("type")
    if t is None:
        return _check_enum(value, schema, path, run)
    if not _known_type(t):
        return value  # a type this module does not know: accept any
    if t in _SCALARS:
        return _check_scalar(value, t, schema, path, run)
    if t == "array":
        return _check_array(value, schema, path, run)
    return _check_object(value, schema, path, run)


def _check_union(value: Any, branches: list[Any], schema: dict[str, Any], path: str, run: _Run) -> Any:
    if value is None and any(_accepts_null(b) for b in branches):
        return None
    real = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
    if len(real) == 1:
        # Option<T>: report T's own issues, with their precise paths.
        return _check(value, real[0], path, run)
    # Exact matches win over coercions, so "42" stays a string in anyOf[int, string].
    for coerce in (False, True) if run.coerce else (False,):
        for branch in real:
            trial = _Run(run.partial, coerce)
            result = _check(value, branch, path, trial)
            if not trial.issues:
                return result
    return run.mismatch(path, _expected(schema), value)


def _check_enum(value: Any, schema: dict[str, Any], path: str, run: _Run) -> Any:
    options = schema.get("enum")
    if not isinstance(options, list):
        return value
    for option in options:
        if _same_json(value, option):
            return option
    if run.coerce and isinstance(value, str):
        wanted = value.strip().casefold()
        for option in options:
            if isinstance(option, str) and option.casefold() == wanted:
                return option  # the canonical spelling
    return run.not_in_enum(path, value, options)


def _same_json(a: Any, b: Any) -> bool:
    # Python says True == 1 and 1 == 1.0; JSON enum membership must not.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _check_scalar(value: Any, t: str, schema: dict[str, Any], path: str, run: _Run) -> Any:
    result = _SCALARS[t](value, run.coerce)
    if result is _FAIL:
        return run.mismatch(path, _expected(schema), value)
    if t == "integer" and not INT_MIN <= result <= INT_MAX:
        # Concerto's Int is i64 (docs/semantics.md): a bigger number would only
        # fault later, far from the reply that caused it.
        return run.mismatch(path, "64-bit integer", value, " (out of range)")
    if "enum" in schema:
        return _check_enum(result, schema, path, run)
    return result


def _check_array(value: Any, schema: dict[str, Any], path: str, run: _Run) -> Any:
    if not isinstance(value, list) and run.coerce:
        decoded = _decoded_text(value, list)
        value = decoded if decoded is not _FAIL else value if value is None else [value]
    if not isinstance(value, list):
        return run.mismatch(path, _expected(schema), value)
    items = schema.get("items", {})
    return [_check(v, items, _index(path, i), run) for i, v in enumerate(value)]


def _check_object(value: Any, schema: dict[str, Any], path: str, run: _Run) -> Any:
    if not isinstance(value, dict) and run.coerce:
        decoded = _decoded_text(value, dict)
        value = decoded if decoded is not _FAIL else value
    if not isinstance(value, dict):
        return run.mismatch(path, _expected(schema), value)
    extra = schema.get("additionalProperties")
    if "properties" in schema or "required" in schema:
        return _check_record(value, schema, path, run)
    if isinstance(extra, dict):
        return {k: _check(v, extra, _join(path, k), run) for k, v in value.items()}
    return dict(value)  # a plain "object": any members


def _check_record(obj: dict[Any, Any], schema: dict[str, Any], path: str, run: _Run) -> dict[str, Any]:
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    required_names = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
    # A required name without a property schema still has to be there (as Any).
    fields = {**props, **{r: {} for r in required_names if r not in props}}
    out: dict[str, Any] = {}
    for name, prop in fields.items():
        sub = _join(path, name)
        if name in obj:
            out[name] = _check_field(obj[name], prop, name in required_names, sub, run)
        elif isinstance(prop, dict) and "default" in prop:
            out[name] = copy.deepcopy(prop["default"])
        elif name in required_names and not run.partial:
            run.missing(sub, _expected(prop))
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        # Extras are dropped (spec 12) unless the schema itself says what they are.
        for k, v in obj.items():
            if k not in fields:
                out[k] = _check(v, extra, _join(path, k), run)
    return out


def _check_field(value: Any, prop: Any, required: bool, path: str, run: _Run) -> Any:
    if value is None and not required and not _accepts_null(prop):
        # An optional field may be null. If it has a default, null takes it:
        # OpenAI strict mode makes the model send null where it would omit.
        if isinstance(prop, dict) and "default" in prop:
            return copy.deepcopy(prop["default"])
        return None
    return _check(value, prop, path, run)


def validate(value: Any, schema: dict[str, Any], mode: str = "strict") -> tuple[Any, list[SchemaIssue]]:
    """Check `value` against `schema`: (cleaned value, every issue found).

    strict   required fields present with the right type; integral floats (3.0)
             pass as "integer" (as int), ints pass as "number" (as float), bool
             is never a number, integers must fit in 64 bits.
    partial  as strict, but a missing required field is not an issue.
    coerce   as strict, but a wrong-typed value is first converted: numeric text
             to integer/number, true/false/yes/no/1/0 (text or number) to boolean,
             numbers to string, enum text matched case-insensitively (giving the
             canonical value), a JSON string holding an array/object to that
             value, and any other single non-null value to a one-item array.

    In every mode a missing field with a "default" gets it; an optional field may
    be absent or null (null takes the default if there is one and the field's own
    schema does not allow null). The cleaned value has defaults filled, coercions
    applied and unknown record fields dropped; a part that failed is left as it
    was found.
    """
    if mode not in MODES:
        raise ValueError(f"unknown validation mode {mode!r} (expected one of {', '.join(MODES)})")
    run = _Run(partial=mode == "partial", coerce=mode == "coerce")
    cleaned = _check(value, schema, "", run)
    return cleaned, run.issues


# ---------------------------------------------------------------------------
# Provider normalisation
# ---------------------------------------------------------------------------

def _map_schema(node: Any, fn: Callable[[Any, bool], Any], top: bool = False) -> Any:
    """A new schema with `fn(child, top)` applied to each sub-schema. Only schema
    positions are visited, so a property *named* "title" or "default" is never
    taken for the keyword."""
    if not isinstance(node, dict):
        return copy.deepcopy(node)
    out: dict[str, Any] = {}
    for key, val in node.items():
        if key == "properties" and isinstance(val, dict):
            out[key] = {name: fn(s, False) for name, s in val.items()}
        elif key in ("items", "additionalProperties") and isinstance(val, dict):
            out[key] = fn(val, False)
        elif key == "anyOf" and isinstance(val, list):
            out[key] = [fn(b, False) for b in val]
        else:
            out[key] = copy.deepcopy(val)
    return out


def _is_record(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "object" and isinstance(schema.get("properties"), dict)


def _is_object(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "object"


_NULLABLE_BY_TYPE = frozenset({"string", "integer", "number", "boolean", "array"})


def _nullable(schema: Any) -> Any:
    if _accepts_null(schema):
        return schema
    t = schema.get("type")
    if isinstance(t, str) and t in _NULLABLE_BY_TYPE and "enum" not in schema:
        return {**schema, "type": [t, "null"]}
    # An enum would need null added to its values too, and an object type list is
    # less widely accepted than anyOf: wrap instead.
    return {"anyOf": [schema, {"type": "null"}]}


def _openai_node(node: Any, top: bool) -> Any:
    out = _map_schema(node, _openai_node, top)
    if not isinstance(out, dict):
        return out
    out.pop("default", None)  # strict mode rejects it; validate() still fills defaults
    if not top:
        out.pop("title", None)  # kept at the root only, where it names the schema
    if _is_record(out):
        required = node.get("required") if isinstance(node.get("required"), list) else []
        props = out["properties"]
        out["properties"] = {n: s if n in required else _nullable(s) for n, s in props.items()}
        out["required"] = list(props)
        out["additionalProperties"] = False
    return out


def normalize_for_openai(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema for OpenAI `response_format: {"type": "json_schema", "strict": true}`.

    Every record object lists all its properties in "required" and gets
    "additionalProperties": false; a property that was optional becomes nullable
    (["T", "null"] for plain scalar and array types, anyOf with null otherwise), so
    the model sends null where it would have left the field out, and validate()
    against the original schema turns that null into the default or None.
    "default" is dropped everywhere; "title" is kept at the root only.

    Maps ("additionalProperties": S), Any ({}), plain objects and non-object roots
    pass through unchanged: strict mode cannot express them. Ask
    openai_strict_supported() first and use non-strict mode when it says no.
    OpenAI's size limits (property count, nesting depth) are not checked.
    """
    return _openai_node(schema, True)


def _strict_ok(node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    any_of = node.get("anyOf")
    if isinstance(any_of, list):
        return bool(any_of) and all(_strict_ok(b) for b in any_of)
    t = node.get("type")
    types = t if isinstance(t, list) else [t]
    if not types or not all(_known_type(x) for x in types):
        return False  # includes {} (Any): strict mode wants a type everywhere
    if "array" in types and not _strict_ok(node.get("items")):
        return False
    if "object" in types:
        if not _is_record(node) or isinstance(node.get("additionalProperties"), dict):
            return False  # Map<String, T> and free-form objects
        return all(_strict_ok(s) for s in node["properties"].values())
    return True


def openai_strict_supported(schema: dict[str, Any]) -> bool:
    """Whether OpenAI strict structured output can express `schema`: the root is a
    record object and nowhere is there a Map, an Any or a free-form object."""
    return _is_record(schema) and _strict_ok(schema)


_ANTHROPIC_WRAP_KEY = "value"


def _anthropic_wraps(schema: Any) -> bool:
    return not _is_object(schema)


def _anthropic_node(node: Any, top: bool) -> Any:
    out = _map_schema(node, _anthropic_node, top)
    if isinstance(out, dict):
        out.pop("title", None)
    return out


def normalize_for_anthropic(schema: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic tool `input_schema`: standard JSON Schema with "type": "object"
    at the root; "title" is dropped everywhere, "default" kept.

    Tool input must be an object, so a schema whose root is not an object is
    wrapped as {"value": schema}; unwrap_anthropic_input() takes the tool input
    back to the shape the original schema describes.
    """
    inner = _anthropic_node(schema, True)
    if not _anthropic_wraps(schema):
        return inner
    return {
        "type": "object",
        "properties": {_ANTHROPIC_WRAP_KEY: inner},
        "required": [_ANTHROPIC_WRAP_KEY],
    }


def unwrap_anthropic_input(schema: dict[str, Any], tool_input: Any) -> Any:
    """The reply value for `schema` from the tool input Anthropic returned for
    normalize_for_anthropic(schema)."""
    if _anthropic_wraps(schema) and isinstance(tool_input, dict) and _ANTHROPIC_WRAP_KEY in tool_input:
        return tool_input[_ANTHROPIC_WRAP_KEY]
    return tool_input


# ---------------------------------------------------------------------------
# fake_instance
# ---------------------------------------------------------------------------

def _fake_text(label: str, seed: str) -> str:
    base = f"{label} example" if label else "example"
    return f"{base}-{seed}" if seed else base


def _fake(schema: Any, label: str, seed: str) -> Any:
    if not isinstance(schema, dict):
        return _fake_text(label, seed)
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return copy.deepcopy(enum[0])
    branches = _branches(schema)
    if branches is not None:
        # Prefer a real value to null, so the mock shows what the field holds.
        real = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
        return _fake(real[0], label, seed) if real else None
    t = schema.get("type")
    if t == "object":
        return _fake_object(schema, label, seed)
    if t == "array":
        return [_fake(schema.get("items", {}), label, seed)]
    simple = {"integer": 1, "number": 1.5, "boolean": True, "null": None}
    return simple[t] if isinstance(t, str) and t in simple else _fake_text(label, seed)


def _fake_object(schema: dict[str, Any], label: str, seed: str) -> dict[str, Any]:
    props = schema.get("properties")
    required = schema.get("required")
    if isinstance(props, dict) or isinstance(required, list):
        out = {name: _fake(s, name, seed) for name, s in (props or {}).items()}
        for name in required if isinstance(required, list) else []:
            if isinstance(name, str) and name not in out:
                out[name] = _fake_text(name, seed)
        return out
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return {"key": _fake(extra, label, seed)}
    return {}


def fake_instance(schema: dict[str, Any], seed: str = "") -> Any:
    """A deterministic value that validates (strict) against `schema`, for the
    offline mock provider: strings "<field> example" (with "-<seed>" appended
    when a seed is given), integer 1, number 1.5, boolean true, one array item,
    the first enum value, optional fields included, a Map as {"key": ...}."""
    return _fake(schema, "", seed)


# ---------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------

_MAX_LISTED_ISSUES = 20  # a reply with hundreds of bad items should not flood the prompt


def describe_schema(schema: dict[str, Any]) -> str:
    """Prompt text asking for only a JSON value matching `schema`."""
    what = "a JSON object" if _is_object(schema) else "a JSON value"
    compact = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    return (
        f"Respond with only {what} that matches this JSON Schema, with every required field "
        f"and no other text (no explanations, no Markdown code fences).\n"
        f"JSON Schema: {compact}"
    )


def _issue_line(issue: SchemaIssue) -> str:
    if issue.kind == "parse_error":
        return f"- {issue.message}"
    if issue.kind == "missing_field":
        return f"- {issue.path}: missing required field"
    prefix = f"{_where(issue.path)}: "
    detail = issue.message[len(prefix):] if issue.message.startswith(prefix) else issue.message
    return f"- {issue.path or '(top level)'}: {detail}"


def retry_prompt(issues: list[SchemaIssue], schema: dict[str, Any]) -> str:
    """The re-prompt after a reply that failed parse_json_reply or validate."""
    if any(i.kind == "parse_error" for i in issues):
        head = "Your previous reply was not valid JSON, so it could not be read."
    else:
        head = "Your previous reply was invalid: it did not match the required JSON Schema."
    lines = [head]
    if issues:
        lines.append("Problems:")
        lines += [_issue_line(i) for i in issues[:_MAX_LISTED_ISSUES]]
        if len(issues) > _MAX_LISTED_ISSUES:
            lines.append(f"- ... and {len(issues) - _MAX_LISTED_ISSUES} more")
    lines += ["", "Answer again.", describe_schema(schema)]
    return "\n".join(lines)
