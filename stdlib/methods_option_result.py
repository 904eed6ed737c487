"""Built-in methods of Option (Some(v) / NONE) and Result (Ok(v) / Err(e)).

Unwrapping the wrong variant is a RuntimeError fault, not a recoverable Err:
that is the point of unwrap/expect. Callbacks run through ctx.call.
"""

from __future__ import annotations

from typing import Any

from concerto.stdlib.registry import REGISTRY, NativeContext, error_value
from concerto.stdlib.support import error_message, string_check, type_fault, want_str
from concerto.vm.values import NONE, ConcertoError, Err, Ok, Some, StructValue, display

Result = Ok | Err


def _option(o: Any, where: str) -> Any:
    if type(o) is not Some and o is not NONE:
        raise type_fault(where, "an Option", o)
    return o


def _result(r: Any, where: str) -> Result:
    t = type(r)
    if t is not Ok and t is not Err:
        raise type_fault(where, "a Result", r)
    return r


def _describe_error(e: Any) -> str:
    """Error text for unwrap faults; built-in errors are prefixed with their type."""
    if type(e) is StructValue and "message" in e.fields:
        return f"{e.type_name}: {display(e.fields['message'])}"
    return error_message(e)


# --- Option ----------------------------------------------------------------


@REGISTRY.method("Option", "is_some", 0)
def is_some(ctx: NativeContext, o: Any) -> bool:
    return type(_option(o, "Option.is_some")) is Some


@REGISTRY.method("Option", "is_none", 0)
def is_none(ctx: NativeContext, o: Any) -> bool:
    return _option(o, "Option.is_none") is NONE


@REGISTRY.method("Option", "unwrap", 0)
def option_unwrap(ctx: NativeContext, o: Any) -> Any:
    if _option(o, "Option.unwrap") is NONE:
        raise ConcertoError("called unwrap() on None", "RuntimeError")
    return o.value


@REGISTRY.method("Option", "expect", 1)
def option_expect(ctx: NativeContext, o: Any, message: str) -> Any:
    if _option(o, "Option.expect") is NONE:
        raise ConcertoError(display(message), "RuntimeError")
    return o.value


@REGISTRY.method("Option", "unwrap_or", 1)
def option_unwrap_or(ctx: NativeContext, o: Any, default: Any) -> Any:
    return default if _option(o, "Option.unwrap_or") is NONE else o.value


@REGISTRY.method("Option", "unwrap_or_else", 1)
def option_unwrap_or_else(ctx: NativeContext, o: Any, f: Any) -> Any:
    return ctx.call(f) if _option(o, "Option.unwrap_or_else") is NONE else o.value


@REGISTRY.method("Option", "map", 1)
def option_map(ctx: NativeContext, o: Any, f: Any) -> Any:
    return NONE if _option(o, "Option.map") is NONE else Some(ctx.call(f, o.value))


@REGISTRY.method("Option", "and_then", 1)
def option_and_then(ctx: NativeContext, o: Any, f: Any) -> Any:
    return NONE if _option(o, "Option.and_then") is NONE else ctx.call(f, o.value)


@REGISTRY.method("Option", "or", 1)
def option_or(ctx: NativeContext, o: Any, other: Any) -> Any:
    return other if _option(o, "Option.or") is NONE else o


@REGISTRY.method("Option", "or_else", 1)
def option_or_else(ctx: NativeContext, o: Any, f: Any) -> Any:
    return ctx.call(f) if _option(o, "Option.or_else") is NONE else o


@REGISTRY.method("Option", "filter", 1)
def option_filter(ctx: NativeContext, o: Any, pred: Any) -> Any:
    if _option(o, "Option.filter") is NONE:
        return NONE
    keep = ctx.call(pred, o.value)
    if keep is not True and keep is not False:
        raise type_fault("Option.filter callback result", "a Bool", keep)
    return o if keep else NONE


@REGISTRY.method("Option", "ok_or", 1)
def ok_or(ctx: NativeContext, o: Any, error: Any) -> Result:
    return Err(error) if _option(o, "Option.ok_or") is NONE else Ok(o.value)


@REGISTRY.method("Option", "ok_or_else", 1)
def ok_or_else(ctx: NativeContext, o: Any, f: Any) -> Result:
    return Err(ctx.call(f)) if _option(o, "Option.ok_or_else") is NONE else Ok(o.value)


@REGISTRY.method("Option", "context", 1)
def option_context(ctx: NativeContext, o: Any, message: str) -> Result:
    """None -> Err(Error { message }), so `map.get(k).context("no k")?` reads well."""
    if _option(o, "Option.context") is NONE:
        return Err(error_value("Error", want_str(message, "Option.context")))
    return Ok(o.value)


@REGISTRY.method("Option", "to_string", 0)
def option_to_string(ctx: NativeContext, o: Any) -> str:
    return display(_option(o, "Option.to_string"))


# --- Result ----------------------------------------------------------------


@REGISTRY.method("Result", "is_ok", 0)
def is_ok(ctx: NativeContext, r: Result) -> bool:
    return type(_result(r, "Result.is_ok")) is Ok


@REGISTRY.method("Result", "is_err", 0)
def is_err(ctx: NativeContext, r: Result) -> bool:
    return type(_result(r, "Result.is_err")) is Err


@REGISTRY.method("Result", "unwrap", 0)
def result_unwrap(ctx: NativeContext, r: Result) -> Any:
    if type(_result(r, "Result.unwrap")) is Err:
        raise ConcertoError(f"called unwrap() on Err: {_describe_error(r.value)}", "RuntimeError")
    return r.value


@REGISTRY.method("Result", "unwrap_err", 0)
def unwrap_err(ctx: NativeContext, r: Result) -> Any:
    if type(_result(r, "Result.unwrap_err")) is Ok:
        raise ConcertoError(f"called unwrap_err() on Ok: {display(r.value)}", "RuntimeError")
    return r.value


@REGISTRY.method("Result", "expect", 1)
def result_expect(ctx: NativeContext, r: Result, message: str) -> Any:
    if type(_result(r, "Result.expect")) is Err:
        raise ConcertoError(f"{display(message)}: {_describe_error(r.value)}", "RuntimeError")
    return r.value


@REGISTRY.method("Result", "unwrap_or", 1)
def result_unwrap_or(ctx: NativeContext, r: Result, default: Any) -> Any:
    return default if type(_result(r, "Result.unwrap_or")) is Err else r.value


@REGISTRY.method("Result", "unwrap_or_else", 1)
def result_unwrap_or_else(ctx: NativeContext, r: Result, f: Any) -> Any:
    """The callback receives the error (spec 13)."""
    return ctx.call(f, r.value) if type(_result(r, "Result.unwrap_or_else")) is Err else r.value


@REGISTRY.method("Result", "map", 1)
def result_map(ctx: NativeContext, r: Result, f: Any) -> Result:
    return Ok(ctx.call(f, r.value)) if type(_result(r, "Result.map")) is Ok else r


@REGISTRY.method("Result", "map_err", 1)
def map_err(ctx: NativeContext, r: Result, f: Any) -> Result:
    return Err(ctx.call(f, r.value)) if type(_result(r, "Result.map_err")) is Err else r


@REGISTRY.method("Result", "and_then", 1)
def result_and_then(ctx: NativeContext, r: Result, f: Any) -> Any:
    return ctx.call(f, r.value) if type(_result(r, "Result.and_then")) is Ok else r


@REGISTRY.method("Result", "or_else", 1)
def result_or_else(ctx: NativeContext, r: Result, f: Any) -> Any:
    return ctx.call(f, r.value) if type(_result(r, "Result.or_else")) is Err else r


@REGISTRY.method("Result", "ok", 0)
def ok(ctx: NativeContext, r: Result) -> Any:
    return Some(r.value) if type(_result(r, "Result.ok")) is Ok else NONE


@REGISTRY.method("Result", "err", 0)
def err(ctx: NativeContext, r: Result) -> Any:
    return Some(r.value) if type(_result(r, "Result.err")) is Err else NONE


@REGISTRY.method("Result", "context", 1)
def context(ctx: NativeContext, r: Result, message: str) -> Result:
    """Err(e) -> Err whose message reads "<message>: <e's message>" (spec 13).

    The error keeps its type where it can, so typed `catch` still matches:
    a String error stays a String, a struct error with a `message` field keeps
    its type and other fields. Any other error (say a user enum) cannot carry
    the new text, so it becomes `Error { message, source }` with the original
    kept in `source`."""
    if type(_result(r, "Result.context")) is Ok:
        return r
    prefix = want_str(message, "Result.context")
    e = r.value
    detail = error_message(e)
    string_check(len(prefix) + 2 + len(detail), "Result.context")
    text = f"{prefix}: {detail}"
    if type(e) is str:
        return Err(text)
    if type(e) is StructValue and "message" in e.fields:
        wrapped = e.copy()
        wrapped.fields["message"] = text
        return Err(wrapped)
    return Err(error_value("Error", text, source=e))


@REGISTRY.method("Result", "to_string", 0)
def result_to_string(ctx: NativeContext, r: Result) -> str:
    return display(_result(r, "Result.to_string"))
