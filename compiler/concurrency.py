"""Code generation for async operations, bidirectional and typed emits,
pipelines (spec 10, 15, 30) and the decorators of functions, stages and
models.

    e.await / await e          e; AWAIT
    await (a, b, ...)          MAKE_CLOSURE(|| a); MAKE_CLOSURE(|| b); ...; AWAIT_ALL arg=n
    race (a, b, ...)           MAKE_CLOSURE(|| a); ...; RACE arg=n
    parallel for p in xs { b } xs; MAKE_CLOSURE(|p| b); PARALLEL_FOR
    spawn(f)                   f; SPAWN_ASYNC
    await emit(c, v)           c; v; EMIT_AWAIT
    flush_emits()              CALL_NATIVE name="flush_emits" argc=0
    P.run(x)                   x; RUN_PIPELINE name=P

A pipeline's stages compile to ordinary functions named `P::stage` (like
methods, `Type::method`); Program.pipelines lists them in order.

Types: `spawn` gives `Task<T>`; awaiting a `Task<T>` gives `T`, awaiting
anything else gives the value itself. Results of the closures of `await (...)`
and `race (...)` that are tasks are typed as the task's value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from concerto import ir
from concerto.compiler import ast as A
from concerto.compiler import types as T

if TYPE_CHECKING:
    from concerto.compiler.codegen import FunctionCompiler, ProgramBuilder
    from concerto.compiler.resolve import ModuleInfo


def _compile_error() -> Exception:
    from concerto.compiler.codegen import CompileError

    return CompileError()


def task_value(t: str | None) -> str | None:
    """The value a Task<T> delivers; other types are their own value."""
    if t is None:
        return None
    head, args = T.split(t)
    if head == "Task":
        return args[0] if args else None
    return t


# ---------------------------------------------------------------- await, race, parallel for
def await_expr(fc: "FunctionCompiler", e: A.Await) -> str | None:
    inner = e.expr
    if isinstance(inner, A.Emit):
        fc.span = inner.span
        return fc.x_Emit(inner, awaited=True)
    if e.prefix and isinstance(inner, A.TupleExpr) and len(inner.items) >= 2:
        types = [_thunk(fc, item) for item in inner.items]
        fc.span = e.span
        fc.emit("AWAIT_ALL", arg=len(types))
        return "(" + ", ".join(task_value(t) or "Any" for t in types) + ")"
    t = fc.expr(inner)
    fc.span = e.span
    fc.emit("AWAIT")
    return task_value(t)


def _thunk(fc: "FunctionCompiler", item: A.Expr) -> str | None:
    """Push `|| item`; return the type of item as the closure sees it."""
    return fc.make_closure([], item, item.span)


def race_expr(fc: "FunctionCompiler", e: A.Race) -> str | None:
    # A user's own `race` (a local closure or a function) keeps its meaning.
    local = fc.lookup("race")
    if (local is not None and local.type is not None and T.is_callable(local.type, fc.generics)) \
            or (local is None and "::".join(fc.resolve_path(["race"])) in fc.pb.fn_sigs):
        call = A.Call(e.span, A.Name(e.span, "race"), [A.Arg(i.span, None, i) for i in e.items])
        return fc.expr(call)
    types = [task_value(_thunk(fc, item)) for item in e.items]
    fc.span = e.span
    fc.emit("RACE", arg=len(types))
    known = [t for t in types if t not in (None, "Never")]
    if len(known) < len(types) and any(t is None for t in types):
        return None
    if known and all(t == known[0] for t in known):
        return known[0]
    return "Any"


def parallel_for(fc: "FunctionCompiler", e: A.ParallelFor) -> str:
    it_t = fc.expr(e.iterable)
    item_t = T.element_type(it_t)
    pat = e.pattern
    body: A.Expr
    if isinstance(pat, A.IdentPat) and not fc.is_unit_variant_name(pat.name):
        params = [A.Param(pat.span, pat.name, None, None, pat.mutable)]
        body = e.body
    else:
        # `parallel for (a, b) in pairs { ... }`: bind the pattern from the item.
        params = [A.Param(pat.span, "$item", None)]
        bind = A.Let(pat.span, pat, None, A.Name(pat.span, "$item"))
        body = A.Block(e.body.span, [bind], e.body)
    body_t = fc.make_closure(params, body, e.span, param_types=[item_t], parallel_body=True)
    fc.span = e.span
    fc.emit("PARALLEL_FOR")
    return f"Array<{body_t if body_t not in (None, 'Never') else 'Any'}>"


# ---------------------------------------------------------------- spawn, flush_emits
def builtin_call(fc: "FunctionCompiler", e: A.Call, name: str) -> str | None:
    args = fc.positional(e)
    if name == "flush_emits":
        if args:
            fc.error(e.span, f"`flush_emits` takes no arguments, {len(args)} given")
            raise _compile_error()
        fc.span = e.span
        fc.emit("CALL_NATIVE", name="flush_emits", argc=0)
        return "Nil"
    if len(args) != 1:
        fc.error(e.span, f"`spawn` takes one function with no parameters, {len(args)} argument(s) given",
                 hint="write `spawn(|| work())`")
        raise _compile_error()
    arg = args[0]
    value_t: str | None
    if isinstance(arg, A.Closure) and arg.ret is None:
        if arg.params:
            fc.error(arg.span, "`spawn` needs a function with no parameters",
                     hint="write `spawn(|| work(x))`")
        value_t = fc.make_closure(arg.params, arg.body, arg.span)
    else:
        t = fc.expr(arg)
        value_t = _callable_result(fc, arg, t)
    fc.span = e.span
    fc.emit("SPAWN_ASYNC")
    if value_t in (None, "Never"):
        value_t = "Any"
    return f"Task<{value_t}>"


def _callable_result(fc: "FunctionCompiler", arg: A.Expr, t: str | None) -> str | None:
    """Check that `arg` (of type t) can be called with no arguments; return what it returns."""
    if isinstance(arg, (A.Name, A.Path)) and t == "fn":
        segs = [arg.name] if isinstance(arg, A.Name) else arg.segments
        qual = "::".join(fc.resolve_path(segs))
        info = fc.pb.fn_sigs.get(qual)
        if info is not None:
            if info.decl.params or info.decl.has_self:
                fc.error(arg.span, f"`spawn` needs a function with no parameters, but `{qual}` takes "
                         f"{len(info.decl.params)}", hint="write `spawn(|| f(x))`")
                return None
            if info.decl.ret is None:
                return "Nil"
            from concerto.compiler.codegen import FunctionCompiler

            owner = FunctionCompiler(fc.pb, info.module, "<sig>", self_type=info.self_type,
                                     generics=frozenset(info.decl.generics))
            return owner.type_str(info.decl.ret)
        return None
    if not T.is_callable(t, fc.generics):
        fc.error(arg.span, f"`spawn` needs a function with no parameters, found `{t}`",
                 hint="write `spawn(|| work())`: calling an async fn runs it at once")
        return None
    params = T.fn_params(t) if t else None
    if params:
        fc.error(arg.span, f"`spawn` needs a function with no parameters, found `{t}`")
        return None
    if t and t.startswith("fn(") and " -> " in t:
        ret = t.rsplit(" -> ", 1)[1]
        return None if ret == "Any" else ret
    return None


# ---------------------------------------------------------------- typed emit
def check_typed_emit(fc: "FunctionCompiler", e: A.Emit) -> None:
    """`emit<Schema>(channel, payload)` (spec 10 "Typed Emit"): the schema exists and
    a map-literal payload has its required fields, no others, and literals of the
    right types."""
    assert e.schema is not None
    written = str(e.schema)
    qual = "::".join(fc.resolve_path(e.schema.name.split("::")))
    if qual not in fc.symbols.schemas:
        fc.error(e.schema.span, f"typed emit: `{written}` is not a schema",
                 hint="declare it with `schema Name { ... }`")
        return
    fc.check_visible(qual, e.schema.span)
    if len(e.args) != 2:
        fc.error(e.span, f"typed emit `{written}` needs a payload: emit<{written}>(\"channel\", {{ ... }})")
        return
    payload = e.args[1].value
    if not isinstance(payload, A.MapExpr):
        return
    keys: list[tuple[str, A.Expr, A.Expr]] = []
    for k, v in payload.entries:
        if not (isinstance(k, A.Literal) and isinstance(k.value, str)):
            return  # computed keys: nothing to check before run time
        keys.append((k.value, k, v))
    decl, module = fc.symbols.schemas[qual]
    from concerto.compiler.codegen import FunctionCompiler, literal_type
    from concerto.compiler.resolve import schema_mode

    owner = FunctionCompiler(fc.pb, module, "<schema>")
    fields = {f.name: f for f in decl.fields}
    partial = schema_mode(decl) == "partial"
    seen: set[str] = set()
    for name, k, v in keys:
        f = fields.get(name)
        if f is None:
            fc.error(k.span, f"typed emit `{written}`: unknown field `{name}`",
                     hint="fields: " + ", ".join(fields) if fields else None)
            continue
        if name in seen:
            fc.error(k.span, f"typed emit `{written}`: field `{name}` is given twice")
        seen.add(name)
        value = _literal_value(v)
        if value is _NOT_LITERAL:
            continue
        if f.enum is not None:
            if not isinstance(value, str) or value not in f.enum:
                shown = f'"{value}"' if isinstance(value, str) else literal_type(value)
                fc.error(v.span, f"typed emit `{written}`: field `{name}` must be one of "
                         + " | ".join(f'"{x}"' for x in f.enum) + f", found {shown}")
            continue
        ft = owner.type_str(f.type) if f.type is not None else None
        lt = literal_type(value)
        if (f.optional or partial) and f.default is None and ft is not None:
            ft = f"Option<{ft}>"
        if ft is not None and not T.compatible(ft, lt):
            fc.error(v.span, f"typed emit `{written}`: field `{name}` expects `{ft}`, found `{lt}`")
    if partial:
        return
    for f in decl.fields:
        if not f.optional and f.default is None and f.name not in seen:
            fc.error(payload.span, f"typed emit `{written}`: missing field `{f.name}`")


_NOT_LITERAL = object()


def _literal_value(e: A.Expr) -> Any:
    if isinstance(e, A.Literal):
        return e.value
    if isinstance(e, A.Unary) and e.op == "-" and isinstance(e.operand, A.Literal) \
            and type(e.operand.value) in (int, float):
        return -e.operand.value
    return _NOT_LITERAL


# ---------------------------------------------------------------- decorators
# name -> (arguments in order, the one a positional argument means, required ones)
_DECORATORS: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    "retry": (("max", "backoff", "delay_ms"), "max", ("max",)),
    "timeout": (("seconds",), "seconds", ("seconds",)),
    "cache": (("ttl_seconds",), "ttl_seconds", ()),
    "log": (("channel",), "channel", ()),
}
KNOWN_DECORATORS = frozenset(_DECORATORS)
_BACKOFFS = ("none", "linear", "exponential")


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_number(v: Any) -> bool:
    return type(v) in (int, float)


def _arg_problem(dec: str, arg: str, v: Any) -> str | None:
    """Why v is no valid value for `@dec(arg: v)`, or None."""
    if dec == "retry" and arg == "max" and not (_is_int(v) and v >= 1):
        return "must be an Int of at least 1"
    if dec == "retry" and arg == "backoff" and v not in _BACKOFFS:
        return "must be \"none\", \"linear\" or \"exponential\""
    if dec == "retry" and arg == "delay_ms" and not (_is_int(v) and v >= 0):
        return "must be an Int of at least 0"
    if dec in ("timeout", "cache") and not (_is_number(v) and v > 0):
        return "must be a number (Int or Float) greater than 0"
    if dec == "log" and not isinstance(v, str):
        return "must be a String"
    return None


def _shown(v: Any) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


def check_decorators(pb: "ProgramBuilder", file: str, decorators: list[A.Decorator], where: str,
                     unknown_ok: bool = True) -> list[ir.DecoratorDef]:
    """Validate @retry/@timeout/@cache/@log and return them with named arguments.
    Other decorators are left alone (unknown_ok) or reported."""
    from concerto.compiler.llm import _NOT_CONST, _const_value

    out: list[ir.DecoratorDef] = []
    seen: set[str] = set()
    for d in decorators:
        spec = _DECORATORS.get(d.name)
        if spec is None:
            if not unknown_ok:
                pb.error(file, d.span, f"unknown decorator `@{d.name}` on {where}",
                         hint="known decorators: " + ", ".join(f"@{n}" for n in _DECORATORS))
            continue
        names, positional, required = spec
        if d.name in seen:
            pb.error(file, d.span, f"`@{d.name}` is given twice on {where}")
            continue
        seen.add(d.name)
        args: dict[str, Any] = {}
        ok = True
        for k, a in enumerate(d.args):
            if a.name is None:
                if k > 0:
                    pb.error(file, a.span, f"`@{d.name}` takes one positional argument (`{positional}`), "
                             "first; name the others", hint="arguments: " + ", ".join(names))
                    ok = False
                    continue
                arg = positional
            else:
                arg = a.name
            if arg not in names:
                pb.error(file, a.span, f"`@{d.name}` has no argument `{arg}`",
                         hint="arguments: " + ", ".join(names))
                ok = False
                continue
            if arg in args:
                pb.error(file, a.span, f"`@{d.name}` argument `{arg}` is given twice")
                ok = False
                continue
            v = _const_value(a.value)
            if v is _NOT_CONST:
                pb.error(file, a.value.span, f"`@{d.name}` argument `{arg}` must be a literal")
                ok = False
                continue
            problem = _arg_problem(d.name, arg, v)
            if problem:
                pb.error(file, a.value.span, f"`@{d.name}` argument `{arg}` {problem}, found {_shown(v)}")
                ok = False
                continue
            args[arg] = v
        for r in required:
            if ok and r not in args:
                pb.error(file, d.span, f"`@{d.name}` needs `{r}`", hint=f"write `@{d.name}({r}: ...)`")
                ok = False
        if ok:
            out.append(ir.DecoratorDef(d.name, args))
    return out


# ---------------------------------------------------------------- pipelines
def assignable(a: str | None, b: str | None) -> bool:
    """Spec 30 "Assignability Rules": may a stage output of type a feed an input of type b?"""
    if a is None or b is None or a == b or "Any" in (a, b) or "Unknown" in (a, b):
        return True
    if a == "Int" and b == "Float":
        return True
    a_head, a_args = T.split(a)
    b_head, b_args = T.split(b)
    if a_head == "Result" and b_head != "Result" and a_args:
        return assignable(a_args[0], b)
    if a_head != b_head:
        return False
    if not a_args or not b_args:
        return True
    if len(a_args) != len(b_args):
        return False
    if a_head == "Map":
        return all(assignable(x, y) and assignable(y, x) for x, y in zip(a_args, b_args))
    return all(assignable(x, y) for x, y in zip(a_args, b_args))


def effective_output(t: str | None) -> str | None:
    """The value a stage passes on: Result<T, E> is unwrapped to T (spec 30)."""
    if t is None:
        return None
    head, args = T.split(t)
    if head == "Result" and args:
        return args[0]
    return t


class PipelineInfo:
    def __init__(self, qual: str, decl: A.PipelineDecl, module: "ModuleInfo") -> None:
        self.qual = qual
        self.decl = decl
        self.module = module
        self.input: str | None = None
        self.output: str | None = None
        self.stages: list[ir.StageDef] = []


def collect_pipelines(pb: "ProgramBuilder") -> None:
    """Register every stage as a function `P::stage`, check the stage contracts
    (spec 30) and record each pipeline's input and output types for `P.run`."""
    from concerto.compiler.codegen import FunctionCompiler
    from concerto.compiler.resolve import FnInfo

    symbols = pb.symbols
    files = {m.path: m.file for m in symbols.modules}
    for qual, (decl, module) in symbols.pipelines.items():
        file = files.get(module.path, module.file)
        info = PipelineInfo(qual, decl, module)
        pb.pipelines[qual] = info
        fc = FunctionCompiler(pb, module, "<pipeline>")
        where = f"pipeline `{decl.name}`"
        pipeline_decorators = check_decorators(pb, file, decl.decorators, where, unknown_ok=False)
        sig_in: str | None = None
        sig_param: A.Param | None = None
        if decl.params is not None:
            if len(decl.params) != 1:
                pb.error(file, decl.span, f"{where} takes exactly one input: pipeline {decl.name}(input: T) -> U",
                         hint=f"it declares {len(decl.params)} parameters")
            else:
                sig_param = decl.params[0]
                sig_in = fc.type_str(sig_param.type)
        sig_out = fc.type_str(decl.ret) if decl.ret is not None else None
        if not decl.stages:
            pb.error(file, decl.span, f"{where} has no stages",
                     hint="add `stage name(input: T) -> U { ... }`")
            continue
        inputs: list[str | None] = []
        outputs: list[str | None] = []
        seen: dict[str, A.StageDecl] = {}
        for stage in decl.stages:
            fq = f"{qual}::{stage.name}"
            if stage.name in seen:
                pb.error(file, stage.span, f"stage `{stage.name}` is defined twice in {where}")
                inputs.append(None)
                outputs.append(None)
                continue
            seen[stage.name] = stage
            if stage.has_self or len(stage.params) != 1:
                count = len(stage.params) + (1 if stage.has_self else 0)
                pb.error(file, stage.span, f"stage `{stage.name}` in {where} must have exactly one parameter",
                         hint=f"it has {count}; a stage receives the previous stage's output")
            if stage.ret is None:
                pb.error(file, stage.span, f"stage `{stage.name}` in {where} must have a return type annotation",
                         hint="explicit return types are required for pipeline stage type checking")
            param = stage.params[0] if stage.params else None
            in_t = fc.type_str(param.type) if param is not None and param.type is not None else None
            out_t = fc.type_str(stage.ret) if stage.ret is not None else None
            inputs.append(in_t)
            outputs.append(out_t)
            fn_decl = A.FnDecl(stage.span, stage.name, decl.public, stage.params, stage.ret, stage.body)
            pb.fn_sigs[fq] = FnInfo(fq, fn_decl, module)
            pb.stage_functions.add(fq)
            symbols.item_module[fq] = module.path
            if decl.public:
                symbols.public.add(fq)
            decorators = check_decorators(pb, file, stage.decorators, f"stage `{stage.name}`", unknown_ok=False)
            given = {d.name for d in decorators}
            decorators += [d for d in pipeline_decorators if d.name not in given]
            info.stages.append(ir.StageDef(stage.name, fq, in_t or "any", out_t or "any", decorators))
        stages = decl.stages
        for i in range(len(stages) - 1):
            out = effective_output(outputs[i])
            nxt = stages[i + 1]
            if not nxt.params:
                continue
            if not assignable(out, inputs[i + 1]):
                pb.error(file, nxt.params[0].span,
                         f"pipeline `{decl.name}` stage type mismatch: `{stages[i].name}` returns `{out}` "
                         f"but `{nxt.name}` expects `{inputs[i + 1]}`",
                         hint="align stage signatures or insert a conversion stage")
        if sig_param is not None and not assignable(sig_in, inputs[0]):
            span = sig_param.type.span if sig_param.type is not None else sig_param.span
            pb.error(file, span,
                     f"pipeline `{decl.name}` input type mismatch: the pipeline declares input `{sig_in}` "
                     f"but first stage `{stages[0].name}` expects `{inputs[0]}`",
                     hint="align the pipeline signature with the first stage's parameter")
        last_out = effective_output(outputs[-1])
        if decl.ret is not None and not assignable(last_out, sig_out):
            pb.error(file, decl.ret.span,
                     f"pipeline `{decl.name}` output type mismatch: the pipeline declares output `{sig_out}` "
                     f"but last stage `{stages[-1].name}` returns `{last_out}`",
                     hint="align the pipeline signature with the last stage's return type")
        info.input = sig_in if sig_param is not None else inputs[0]
        info.output = sig_out if decl.ret is not None else last_out


def pipeline_defs(pb: "ProgramBuilder") -> list[ir.PipelineDef]:
    out = []
    for qual, info in pb.pipelines.items():
        out.append(ir.PipelineDef(qual, info.module.path or "main", info.input or "any", info.output or "any",
                                  list(info.stages)))
    return out


def run_pipeline(fc: "FunctionCompiler", e: A.Call, callee: A.Field, qual: str) -> str:
    """`P.run(input)`: RUN_PIPELINE, a Result<output, PipelineError>."""
    if callee.name != "run":
        fc.error(callee.span, f"no method `{callee.name}` on pipeline `{qual}`",
                 hint=f"run it with `{qual}.run(input)`")
        raise _compile_error()
    args = fc.positional(e)
    if len(args) != 1:
        fc.error(e.span, f"`{qual}.run` takes 1 argument (the pipeline's input), {len(args)} given")
        raise _compile_error()
    info = fc.pb.pipelines.get(qual)
    t = fc.expr(args[0])
    expected = info.input if info is not None else None
    if expected is not None and not T.compatible(expected, t, fc.generics):
        fc.error(args[0].span, f"mismatched types: pipeline `{qual}` takes `{expected}`, found `{t}`")
    fc.coerce(expected, t)
    fc.span = e.span
    fc.emit("RUN_PIPELINE", name=qual)
    output = info.output if info is not None else None
    return f"Result<{output or 'Any'}, PipelineError>"
