"""Compiler driver: resolve, generate code, assemble the IR Program.

    compile_source(text, file) -> CompileResult
    compile_file(path)         -> CompileResult

Pure functions: they read source files (the root and its `mod` files) and
return IR plus diagnostics; they never print.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path

from concerto import ir
import msgspec

from concerto.compiler import ast as A
from concerto.compiler import concurrency
from concerto.compiler import headroom
from concerto.compiler import llm
from concerto.compiler import tools as tool_checks
from concerto.compiler.manifest import Manifest, find_manifest, load_manifest
from concerto.compiler.codegen import CompileError, FunctionCompiler, ProgramBuilder
from concerto.compiler.diagnostics import Diagnostic, sort_key
from concerto.compiler.resolve import FnInfo, Resolver

COMPILER_VERSION = "0.1.0"
INIT_FUNCTION = "$init"


@dataclass
class CompileResult:
    program: ir.Program | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.program is not None and not any(d.severity == "error" for d in self.diagnostics)


def compile_file(path: str | os.PathLike[str], *, manifest: str | os.PathLike[str] | None = None,
                 mock: bool = False) -> CompileResult:
    """Compile a source file. Its Concerto.toml is `manifest`, or else the
    first one found walking up from the file's folder (spec 22). With `mock`,
    models whose connection the manifest lacks run on the offline mock provider."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        return CompileResult(None, [Diagnostic(str(p), 0, 0, f"cannot read file: {e.strerror or e}")])
    except UnicodeDecodeError:
        return CompileResult(None, [Diagnostic(str(p), 0, 0, "file is not valid UTF-8")])
    manifest_path = Path(manifest) if manifest is not None else find_manifest(p.resolve().parent)
    loaded = None
    if manifest_path is not None:
        loaded, problems = load_manifest(manifest_path)
        if loaded is None:
            return CompileResult(None, problems or [Diagnostic(str(manifest_path), 1, 1, "invalid Concerto.toml")])
    return compile_source(text, str(p), manifest=loaded, mock=mock)


def compile_source(text: str, file: str, *, manifest: Manifest | None = None, mock: bool = False) -> CompileResult:
    """Compile source text. `manifest` supplies the connections models use;
    without one, a program that declares models fails to compile unless `mock`.

    Runs on a worker thread with room for the deepest nesting the parser
    accepts (compiler/headroom.py)."""
    try:
        return headroom.call(_compile_source, text, file, manifest, mock)
    except RecursionError:
        # Reached when no big-stack thread could be made (headroom.call then
        # compiles in place with the usual limit), or should a pass ever need
        # more frames per level than headroom allows: a message, not a traceback.
        return CompileResult(None, [Diagnostic(
            file, 1, 1, "nesting too deep: this program is nested too deeply to compile here",
            hint="move deeply nested parts into `let` bindings or functions")], {file: text})


def _compile_source(text: str, file: str, manifest: Manifest | None, mock: bool) -> CompileResult:
    resolver = Resolver()
    resolver.load_root(text, file)
    sources = dict(resolver.symbols.sources) or {file: text}
    if resolver.syntax_failed:
        return CompileResult(None, sorted(resolver.diagnostics, key=sort_key), sources)
    pb = ProgramBuilder(resolver.symbols)
    pb.diagnostics.extend(resolver.diagnostics)
    _check_type_declarations(pb)
    llm.check_schemas(pb)
    pb.diagnostics.extend(llm.connect_block_errors(pb))
    models, used_connections = llm.model_defs(pb, manifest.connections if manifest else None, mock)
    memories = llm.memory_defs(pb)
    tools = tool_checks.tool_defs(pb)
    mcp_servers = tool_checks.mcp_defs(pb, manifest.mcp if manifest else None)
    _collect_methods(pb)
    concurrency.collect_pipelines(pb)
    _compile_functions(pb)
    init = _compile_init(pb)
    root = resolver.symbols.modules[0] if resolver.symbols.modules else None
    entry = "main"
    if "main" not in resolver.symbols.functions:
        pb.diagnostics.append(Diagnostic(file, 1, 1, "no `main` function", hint="add `fn main() { ... }`"))
    else:
        main = resolver.symbols.functions["main"].decl
        if main.params:
            pb.diagnostics.append(Diagnostic(file, main.span.line, main.span.col, "`main` takes no parameters"))
    diagnostics = sorted(pb.diagnostics, key=sort_key)
    if any(d.severity == "error" for d in diagnostics):
        return CompileResult(None, diagnostics, sources)
    types = _type_defs(pb)
    hashmaps = [ir.HashMapDef(name) for name in resolver.symbols.hashmaps]
    stamp = os.environ.get("SOURCE_DATE_EPOCH")
    compiled_at = None
    if stamp is not None:
        try:
            compiled_at = datetime.datetime.fromtimestamp(int(stamp), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            compiled_at = None
    functions = pb.functions + ([init] if init else [])
    mappings = []
    for fn in functions:
        last = None
        for i, ins in enumerate(fn.instructions):
            if ins.span != last:
                mappings.append(ir.Mapping(fn.name, i, ins.span[0], ins.span[1]))
                last = ins.span
    program = ir.Program(
        version=ir.IR_VERSION,
        module="main",
        source_file=Path(file).name if root else file,
        constants=pb.constants,
        types=types,
        functions=functions,
        hashmaps=hashmaps,
        models=[msgspec.convert(m, ir.ModelDef) for m in models],
        schemas=[msgspec.convert(s, ir.SchemaDef) for s in llm.schema_defs(pb)],
        connections=[ir.ConnectionDef(name, conf) for name, conf in used_connections.items()],
        memories=[msgspec.convert(m, ir.MemoryDef) for m in memories],
        tools=tools,
        mcp_connections=mcp_servers,
        pipelines=concurrency.pipeline_defs(pb),
        source_map=ir.SourceMap(Path(file).name, mappings),
        metadata=ir.Metadata(compiler_version=COMPILER_VERSION, entry_point=entry,
                             compiled_at=compiled_at, init=INIT_FUNCTION if init else None),
    )
    return CompileResult(program, diagnostics, sources)


def _collect_methods(pb: ProgramBuilder) -> None:
    """impl blocks -> `Type::method` functions; trait defaults filled in."""
    symbols = pb.symbols
    for impl, module in symbols.impls:
        fc = FunctionCompiler(pb, module, "<impl>")
        type_name = "::".join(fc.resolve_path(impl.type.name.split("::")))
        if type_name not in symbols.structs and type_name not in symbols.enums:
            pb.error(module.file, impl.type.span, f"cannot implement methods for unknown type `{impl.type.name}`")
            continue
        trait_decl = None
        if impl.trait is not None:
            trait_name = "::".join(fc.resolve_path(impl.trait.name.split("::")))
            trait_decl = symbols.traits.get(trait_name)
            pb.trait_impls.add((type_name, trait_name))
            if trait_decl is None and trait_name not in ("From", "Display", "Debug", "Clone"):
                pb.error(module.file, impl.trait.span, f"unknown trait `{impl.trait.name}`")
        defined = set()
        for m in impl.methods:
            qual = f"{type_name}::{m.name}"
            if qual in pb.fn_sigs:
                pb.error(module.file, m.span, f"method `{m.name}` is defined more than once for `{type_name}`")
                continue
            if m.body is None:
                pb.error(module.file, m.span, f"method `{m.name}` needs a body")
                continue
            pb.fn_sigs[qual] = FnInfo(qual, m, module, self_type=type_name)
            symbols.item_module[qual] = module.path
            if m.public or trait_decl is not None:
                symbols.public.add(qual)
            defined.add(m.name)
        if trait_decl is not None:
            for tm in trait_decl.methods:
                if tm.name in defined:
                    continue
                if tm.body is None:
                    pb.error(module.file, impl.span, f"`{type_name}` does not implement `{tm.name}` required by trait `{trait_decl.name}`")
                    continue
                qual = f"{type_name}::{tm.name}"
                pb.fn_sigs[qual] = FnInfo(qual, tm, module, self_type=type_name, from_trait=trait_decl.name)
                symbols.item_module[qual] = module.path
                symbols.public.add(qual)


def _compile_functions(pb: ProgramBuilder) -> None:
    for qual, info in list(pb.fn_sigs.items()):
        decl = info.decl
        if decl.body is None:
            pb.error(info.module.file, decl.span, f"function `{decl.name}` needs a body")
            continue
        generics = frozenset(decl.generics)
        probe = FunctionCompiler(pb, info.module, qual, self_type=info.self_type, generics=generics)
        ret = probe.type_str(decl.ret) if decl.ret else "Nil"
        is_stage = qual in pb.stage_functions
        # A stage without its (required) return type was reported already:
        # its body is still checked, against no particular type.
        fc = FunctionCompiler(pb, info.module, qual, ret_type=ret if decl.ret or not is_stage else None,
                              ret_declared=bool(decl.ret) or not is_stage,
                              self_type=info.self_type, self_mutable=decl.self_mutable, generics=generics)
        fc.is_stage = is_stage
        decorators = concurrency.check_decorators(pb, info.module.file, decl.decorators, f"function `{decl.name}`")
        try:
            fn = fc.compile_body(decl.params, decl.body, has_self=decl.has_self)
        except CompileError:
            continue
        params = []
        if decl.has_self:
            params.append(ir.Param("self", info.self_type or "any"))
        params += [ir.Param(p.name, fc.type_str(p.type) or "any") for p in decl.params]
        fn.params = params
        fn.return_type = ret or "any"
        fn.visibility = "public" if decl.public else "private"
        fn.is_async = decl.is_async
        fn.self_type = info.self_type
        fn.decorators = decorators
        pb.functions.append(fn)


def _compile_init(pb: ProgramBuilder) -> ir.Function | None:
    """Module-level consts and hashmaps, evaluated once before `main`."""
    symbols = pb.symbols
    if not symbols.consts and not symbols.hashmaps:
        return None
    root = symbols.modules[0]
    fc = FunctionCompiler(pb, root, INIT_FUNCTION)
    for qual, (decl, module) in symbols.consts.items():
        fc.module = module
        fc.span = decl.span
        if not _is_const_expr(decl.value):
            pb.error(module.file, decl.value.span, f"constant `{decl.name}` must be computable at compile time",
                     hint="use literals, operators and other constants (no calls or variables)")
            continue
        try:
            t = fc.expr(decl.value)
        except CompileError:
            continue
        declared = fc.type_str(decl.type)
        from concerto.compiler import types as T

        if not T.compatible(declared, t):
            pb.error(module.file, decl.value.span, f"mismatched types: expected `{declared}`, found `{t}`")
        if declared == "Float" and t == "Int":
            fc.emit("CAST", type_name="Float")
        fc.emit("STORE_GLOBAL", name=qual)
    for qual, (decl, module) in symbols.hashmaps.items():
        fc.module = module
        fc.span = decl.span
        fc.emit("BUILD_MAP", arg=0)
        fc.emit("STORE_GLOBAL", name=qual)
    fc.emit("LOAD_CONST", arg=pb.const(None))
    fc.emit("RETURN")
    return ir.Function(name=INIT_FUNCTION, module="main", locals=list(fc.locals), instructions=fc.code)


def _is_const_expr(e: A.Expr) -> bool:
    """Literals, other constants, operators, casts, interpolation and collections of them."""
    todo = [e]  # a work list: operator chains may be arbitrarily long
    while todo:
        e = todo.pop()
        if isinstance(e, (A.Literal, A.Name, A.Path)):
            continue  # a Name/Path is another constant; codegen reports anything else
        if isinstance(e, A.Unary):
            todo.append(e.operand)
        elif isinstance(e, (A.Binary, A.Logical)):
            todo += (e.left, e.right)
        elif isinstance(e, A.Interp):
            todo += (p for p in e.parts if not isinstance(p, str))
        elif isinstance(e, (A.ArrayExpr, A.TupleExpr)):
            todo += e.items
        elif isinstance(e, A.MapExpr):
            for k, v in e.entries:
                todo += (k, v)
        elif isinstance(e, A.Cast):
            todo.append(e.expr)
        else:
            return False
    return True


def _check_type_declarations(pb: ProgramBuilder) -> None:
    """A struct's fields and an enum's variants (and a struct variant's fields) are unique."""
    symbols = pb.symbols
    files = {m.path: m.file for m in symbols.modules}

    def unique(file: str, members: list, what: str, owner: str) -> None:
        seen: set[str] = set()
        for member in members:
            if member.name in seen:
                pb.error(file, member.span, f"{what} `{member.name}` is declared twice in {owner}",
                         hint=f"each {what} of {owner} needs its own name")
            seen.add(member.name)

    for qual, decl in symbols.structs.items():
        file = files.get(symbols.item_module.get(qual, ""), "")
        unique(file, decl.fields, "field", f"struct `{decl.name}`")
    for qual, decl in symbols.enums.items():
        file = files.get(symbols.item_module.get(qual, ""), "")
        unique(file, decl.variants, "variant", f"enum `{decl.name}`")
        for variant in decl.variants:
            unique(file, variant.fields, "field", f"variant `{decl.name}::{variant.name}`")


def _type_defs(pb: ProgramBuilder) -> list[ir.TypeDef]:
    out: list[ir.TypeDef] = []
    symbols = pb.symbols
    for qual, s in symbols.structs.items():
        if qual in symbols.schemas:
            fields = [ir.FieldDef(f.name, str(f.type)) for f in s.fields]
            out.append(ir.TypeDef(qual, "schema", fields=fields))
            continue
        fields = [ir.FieldDef(f.name, str(f.type)) for f in s.fields]
        methods = sorted(k.split("::")[-1] for k in pb.fn_sigs if k.startswith(qual + "::"))
        out.append(ir.TypeDef(qual, "struct", fields=fields, methods=methods or None))
    for qual, e in symbols.enums.items():
        variants = []
        for v in e.variants:
            if v.kind == "struct":
                variants.append(ir.VariantDef(v.name, fields=[ir.FieldDef(f.name, str(f.type)) for f in v.fields]))
            else:
                variants.append(ir.VariantDef(v.name, data=[{"type": str(t)} for t in v.types]))
        out.append(ir.TypeDef(qual, "enum", variants=variants))
    for qual, t in symbols.traits.items():
        out.append(ir.TypeDef(qual, "trait", methods=[m.name for m in t.methods]))
    return out
