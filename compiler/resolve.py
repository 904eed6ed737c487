"""Modules, items and imports -> one table of fully qualified names.

Items of the root module keep their plain names (`main`, `Point`); items of a
module `helpers` are `helpers::name`. `mod helpers;` loads `helpers.conc` (or
`helpers/mod.conc`) beside the file that declares it. `use` declarations become
per-module alias tables that codegen consults before anything else.

Once every module is loaded, `use` paths are made absolute (relative to the
importing module first, then to the root), `pub use` re-exports are followed,
unknown imports are reported and `use` cycles between modules are rejected
(spec 14 "Re-exports", "Module Resolution Order", "Circular Dependencies").
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from concerto.compiler import ast as A
from concerto.compiler.diagnostics import Diagnostic
from concerto.compiler.parse import parse_source
from concerto.stdlib import load as load_stdlib

BUILTIN_TYPES = {
    "Int", "Float", "String", "Bool", "Nil", "Any", "Array", "Map", "Option", "Result",
    "Tuple", "Range", "Set", "Queue", "Stack", "HashMap", "Prompt", "Response", "Message",
    "Self", "Memory", "Model", "ModelBuilder", "Stream", "StreamChunk", "Task", "Mcp",
}
# Built-in error types (spec 13): usable in typed catch and as struct-like values.
BUILTIN_ERRORS = {
    "Error", "AgentError", "SchemaError", "ToolError", "ConnectionError", "TimeoutError",
    "HashMapError", "EmitError", "RuntimeError", "ParseError", "JsonError", "EnvError",
    "TypeError", "IndexError", "KeyError", "ArithmeticError", "OverflowError",
    "PipelineError", "CancelledError", "ResourceError",
}


def schema_mode(decl: A.SchemaDecl) -> str:
    """Spec 12: `@partial` / `@coerce` (on the schema or on any of its fields)
    set the validation mode of the whole schema; strict is the default."""
    names = [d.name for d in decl.decorators] + [d.name for f in decl.fields for d in f.decorators]
    for mode in ("partial", "coerce", "strict"):
        if mode in names:
            return mode
    return "strict"


def schema_struct(decl: A.SchemaDecl) -> A.StructDecl:
    """The struct type a schema's validated values have. Optional fields (and
    every field of a partial schema) are Option<T>; a string-literal union is a
    String."""
    partial = schema_mode(decl) == "partial"
    fields = []
    for f in decl.fields:
        t = f.type if f.type is not None else A.TypeRef(f.span, "String")
        if (f.optional or partial) and f.default is None:
            t = A.TypeRef(f.span, "Option", [t])
        fields.append(A.FieldDecl(f.span, f.name, t, True, None))
    return A.StructDecl(decl.span, decl.name, decl.public, fields, decl.doc)


# Spec 14 "Standard Library Modules" that this implementation does not provide yet.
_STD_NOT_PROVIDED = ("fs", "http", "tools")


@dataclass
class ModuleInfo:
    path: str  # "" for the root module, else "helpers" / "a::b"
    file: str
    source: str
    aliases: dict[str, list[str]] = field(default_factory=dict)  # local name -> full path
    globs: list[list[str]] = field(default_factory=list)
    # Names bound by `pub use`: other modules may reach them as `<path>::<name>`.
    public_aliases: set[str] = field(default_factory=set)


# Where a module's `pub use` name leads (a full path), or None when it cannot be followed.
AliasTarget = Callable[[ModuleInfo, str], "list[str] | None"]


@dataclass
class FnInfo:
    qualname: str
    decl: A.FnDecl
    module: ModuleInfo
    self_type: str | None = None
    from_trait: str | None = None


@dataclass
class Symbols:
    modules: list[ModuleInfo] = field(default_factory=list)
    functions: dict[str, FnInfo] = field(default_factory=dict)
    structs: dict[str, A.StructDecl] = field(default_factory=dict)
    enums: dict[str, A.EnumDecl] = field(default_factory=dict)
    traits: dict[str, A.TraitDecl] = field(default_factory=dict)
    consts: dict[str, tuple[A.ConstDecl, ModuleInfo]] = field(default_factory=dict)
    hashmaps: dict[str, tuple[A.HashMapDecl, ModuleInfo]] = field(default_factory=dict)
    aliases: dict[str, tuple[A.TypeAlias, ModuleInfo]] = field(default_factory=dict)
    models: dict[str, tuple[A.ModelDecl, ModuleInfo]] = field(default_factory=dict)
    schemas: dict[str, tuple[A.SchemaDecl, ModuleInfo]] = field(default_factory=dict)
    memories: dict[str, tuple[A.MemoryDecl, ModuleInfo]] = field(default_factory=dict)
    pipelines: dict[str, tuple[A.PipelineDecl, ModuleInfo]] = field(default_factory=dict)
    tools: dict[str, tuple[A.ToolDecl, ModuleInfo]] = field(default_factory=dict)
    mcps: dict[str, tuple[A.McpDecl, ModuleInfo]] = field(default_factory=dict)
    connect_blocks: list[tuple[A.ConnectDecl, ModuleInfo]] = field(default_factory=list)
    public: set[str] = field(default_factory=set)
    item_module: dict[str, str] = field(default_factory=dict)
    impls: list[tuple[A.ImplDecl, ModuleInfo]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    def item_kind(self, qual: str) -> str | None:
        if qual in self.functions:
            return "fn"
        if qual in self.schemas:
            return "schema"
        if qual in self.tools:
            return "tool"
        if qual in self.mcps:
            return "mcp"
        if qual in self.structs:
            return "struct"
        if qual in self.models:
            return "model"
        if qual in self.memories:
            return "memory"
        if qual in self.pipelines:
            return "pipeline"
        if qual in self.enums:
            return "enum"
        if qual in self.traits:
            return "trait"
        if qual in self.consts:
            return "const"
        if qual in self.hashmaps:
            return "hashmap"
        if qual in self.aliases:
            return "alias"
        if qual in {m.path for m in self.modules if m.path}:
            return "mod"
        return None

    def module(self, path: str) -> ModuleInfo | None:
        return next((m for m in self.modules if m.path == path), None)

    def follow_reexports(self, segs: list[str], alias_target: AliasTarget | None = None) -> list[str]:
        """`h::inner_fn`, where module `h` says `pub use h2::inner_fn;`, -> `h::h2::inner_fn`.

        Spec 14 "Re-exports": a `pub use` name is an item of its module for
        every other module. Real items win over re-exported names. Paths that
        lead through a re-exported module are followed again further on.
        """
        target_of = alias_target or (lambda m, name: m.aliases.get(name))
        i = 0
        while i < len(segs):
            owner = self.module("::".join(segs[:i]))
            if owner is None:  # the prefix is a type or unknown: nothing more to follow
                break
            name = segs[i]
            target = None
            if name in owner.public_aliases and self.item_kind(qualify(owner, name)) is None:
                target = target_of(owner, name)
            if target is None:
                i += 1
                continue
            # The target is already a full path, so only what follows it is left to look at.
            segs = target + segs[i + 1:]
            i = len(target)
        return segs


def qualify(module: ModuleInfo, name: str) -> str:
    return f"{module.path}::{name}" if module.path else name


class Resolver:
    def __init__(self) -> None:
        self.symbols = Symbols()
        self.diagnostics: list[Diagnostic] = []
        # A file that did not parse: later checks would only add noise about it.
        self.syntax_failed = False
        # Files being loaded, outermost first: a `mod` that leads back into one is a cycle.
        self.loading: list[str] = []
        self.root_dir = Path(".")
        # Every `use` in load order; resolved once all modules are known.
        self.uses: list[tuple[ModuleInfo, A.UseDecl]] = []
        self._resolved_aliases: set[tuple[str, str]] = set()
        self._resolving_aliases: set[tuple[str, str]] = set()

    def error(self, module: ModuleInfo, span: A.Span, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(module.file, span.line, span.col, message, hint=hint))

    def load_root(self, source: str, file: str) -> A.Module | None:
        module_ast, diags = parse_source(source, file)
        self.diagnostics.extend(diags)
        self.syntax_failed |= module_ast is None
        if module_ast is None:
            return None
        info = ModuleInfo("", file, source)
        self.symbols.sources[file] = source
        self.root_dir = Path(file).parent
        # The root is on the stack too, so `mod main;` inside main.conc is a cycle.
        self.loading.append(str(Path(file).resolve()))
        self.add_module(info, module_ast.items)
        self.loading.pop()
        if not self.syntax_failed:
            self.resolve_imports()
        return module_ast

    def add_module(self, info: ModuleInfo, items: list[A.Node]) -> None:
        self.symbols.modules.append(info)
        seen: dict[str, A.Span] = {}
        for item in items:
            if isinstance(item, A.UseDecl):
                self.add_use(info, item)
                continue
            if isinstance(item, A.ImplDecl):
                self.symbols.impls.append((item, info))
                continue
            name = getattr(item, "name", None)
            if name is None:
                continue
            if name in seen:
                first = seen[name]
                self.error(info, item.span, f"`{name}` is defined more than once",
                           hint=f"the first definition is at line {first.line}")
                continue
            seen[name] = item.span
            qual = qualify(info, name)
            if getattr(item, "public", False):
                self.symbols.public.add(qual)
            self.symbols.item_module[qual] = info.path
            if isinstance(item, A.FnDecl):
                self.symbols.functions[qual] = FnInfo(qual, item, info)
            elif isinstance(item, A.StructDecl):
                self.symbols.structs[qual] = item
            elif isinstance(item, A.EnumDecl):
                self.symbols.enums[qual] = item
            elif isinstance(item, A.TraitDecl):
                self.symbols.traits[qual] = item
            elif isinstance(item, A.ConstDecl):
                self.symbols.consts[qual] = (item, info)
            elif isinstance(item, A.HashMapDecl):
                self.symbols.hashmaps[qual] = (item, info)
            elif isinstance(item, A.TypeAlias):
                self.symbols.aliases[qual] = (item, info)
            elif isinstance(item, A.ModDecl):
                self.add_submodule(info, item)
            elif isinstance(item, A.ModelDecl):
                self.symbols.models[qual] = (item, info)
            elif isinstance(item, A.SchemaDecl):
                self.symbols.schemas[qual] = (item, info)
                # A schema is also a struct type: field access, patterns and
                # literals type-check through the same path as structs.
                self.symbols.structs[qual] = schema_struct(item)
            elif isinstance(item, A.MemoryDecl):
                self.symbols.memories[qual] = (item, info)
            elif isinstance(item, A.PipelineDecl):
                self.symbols.pipelines[qual] = (item, info)
            elif isinstance(item, A.ToolDecl):
                self.symbols.tools[qual] = (item, info)
                # A tool is also a struct type (its state) with an impl (its
                # methods): `self.field`, method calls and `impl Trait` checks
                # go through the same paths as for structs.
                self.symbols.structs[qual] = A.StructDecl(item.span, item.name, item.public, item.fields, item.doc)
                self.symbols.impls.append((A.ImplDecl(item.span, A.TypeRef(item.span, item.name), item.trait,
                                                      item.methods), info))
            elif isinstance(item, A.McpDecl):
                self.symbols.mcps[qual] = (item, info)
            elif isinstance(item, A.ConnectDecl):
                self.symbols.connect_blocks.append((item, info))

    def add_submodule(self, parent: ModuleInfo, decl: A.ModDecl) -> None:
        path = qualify(parent, decl.name)
        if decl.items is not None:
            self.add_module(ModuleInfo(path, parent.file, parent.source), decl.items)
            return
        base = Path(parent.file).parent
        if parent.path and Path(parent.file).name != "mod.conc":
            base = base / Path(parent.file).stem
        candidates = [base / f"{decl.name}.conc", base / decl.name / "mod.conc"]
        target = next((c for c in candidates if c.is_file()), None)
        if target is None:
            self.error(parent, decl.span, f"cannot find module file for `mod {decl.name};`",
                       hint=f"looked for {candidates[0]} and {candidates[1]}")
            return
        key = str(target.resolve())
        if key in self.loading:
            chain = self.loading[self.loading.index(key):] + [key]
            self.error(parent, decl.span,
                       "circular module dependency: " + " -> ".join(self.display_file(f) for f in chain),
                       hint=f"`mod {decl.name};` loads a file that is already being loaded")
            return
        self.loading.append(key)
        try:
            text = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            self.error(parent, decl.span, f"cannot read module file {target}: {e}")
            self.loading.pop()
            return
        file = str(target)
        self.symbols.sources[file] = text
        module_ast, diags = parse_source(text, file)
        self.diagnostics.extend(diags)
        self.syntax_failed |= module_ast is None
        if module_ast is not None:
            self.add_module(ModuleInfo(path, file, text), module_ast.items)
        self.loading.pop()

    def add_use(self, info: ModuleInfo, use: A.UseDecl) -> None:
        self.uses.append((info, use))
        if use.alias == "*":
            info.globs.append(use.path)
            return
        if use.alias in info.aliases:
            self.error(info, use.span, f"`{use.alias}` is imported more than once")
            return
        info.aliases[use.alias] = use.path
        if use.public:
            info.public_aliases.add(use.alias)

    def display_file(self, file: str) -> str:
        return os.path.relpath(file, self.root_dir.resolve())

    def display_module(self, path: str) -> str:
        """Spec 14 "File-Based Modules": the root module is named after its file (`main`)."""
        return path or Path(self.symbols.modules[0].file).stem

    # ------------------------------------------------------------ imports
    def resolve_imports(self) -> None:
        """Turn every `use` path into a full path, then check the imports (spec 14)."""
        for info in self.symbols.modules:
            for name in info.aliases:
                self._resolve_alias(info, name)
            info.globs = [self.full_path(info, glob) for glob in info.globs]
        edges: dict[str, dict[str, tuple[ModuleInfo, A.Span]]] = {}
        for info, use in self.uses:
            self.check_import(info, use)
            source = self.imported_module(info, use.path)
            if source is not None and source != info.path:
                edges.setdefault(info.path, {}).setdefault(source, (info, use.span))
        self.report_import_cycles(edges)

    def anchor(self, info: ModuleInfo, path: list[str]) -> list[str]:
        """A `use` path from the root: `crate::`/`self::`/`super::` spelled out, and a
        name of the importing module's own (`pub use h2::f;` inside `h`) preferred over
        a root-level one, as codegen does for paths in code."""
        if not path or path[0] == "std":
            return path
        here = info.path.split("::") if info.path else []
        head = path[0]
        if head == "crate":
            return path[1:]
        if head == "self":
            return here + path[1:]
        if head == "super":
            return here[:-1] + path[1:]
        if info.path and self.symbols.item_kind(qualify(info, head)) is not None:
            return here + path
        return path

    def full_path(self, info: ModuleInfo, path: list[str]) -> list[str]:
        return self.symbols.follow_reexports(self.anchor(info, path), self._resolve_alias)

    def _resolve_alias(self, info: ModuleInfo, name: str) -> list[str] | None:
        """Make `info.aliases[name]` a full path (once); None while it is being resolved,
        so `pub use` names that lead back to themselves stop instead of recursing."""
        key = (info.path, name)
        if key in self._resolved_aliases:
            return info.aliases[name]
        if key in self._resolving_aliases:
            return None
        self._resolving_aliases.add(key)
        info.aliases[name] = self.full_path(info, info.aliases[name])
        self._resolving_aliases.discard(key)
        self._resolved_aliases.add(key)
        return info.aliases[name]

    def check_import(self, info: ModuleInfo, use: A.UseDecl) -> None:
        """Spec 14 "Module Resolution Order", step 7: an import that names nothing is an error."""
        path = self.full_path(info, use.path)
        if not path:
            return
        problem = self.std_import_problem(path) if path[0] == "std" else self.user_import_problem(path)
        if problem is None:
            return
        written = "::".join(use.path + (["*"] if use.alias == "*" else []))
        message, hint = problem
        self.error(info, use.span, f"unresolved import `{written}`: {message}", hint=hint)

    def std_import_problem(self, path: list[str]) -> tuple[str, str | None] | None:
        """Why `path` (std::...) names no module, type or function of the std registry."""
        natives = load_stdlib().functions

        def known(prefix: list[str]) -> bool:
            joined = "::".join(prefix)
            return joined in natives or any(n.startswith(joined + "::") for n in natives)

        if known(path):
            return None
        depth = max(i for i in range(1, len(path) + 1) if known(path[:i]))
        parent, missing = "::".join(path[:depth]), path[depth]
        offered = sorted({n[len(parent) + 2:].split("::")[0] for n in natives if n.startswith(parent + "::")})
        listing = f"`{parent}` provides: {', '.join(offered)}"
        if depth == 1 and missing in _STD_NOT_PROVIDED:
            return f"`std::{missing}` is not available yet", listing
        if depth == 1:
            return f"`std::{missing}` is not a standard library module", _did_you_mean(missing, offered) or listing
        return f"`{parent}` has no item `{missing}`", _did_you_mean(missing, offered) or listing

    def user_import_problem(self, path: list[str]) -> tuple[str, str | None] | None:
        """Why a full project path names no module or item (None when it does)."""
        if path[0] in BUILTIN_TYPES or path[0] in BUILTIN_ERRORS:
            return None  # `use Option::Some;` and the like: codegen knows these
        depth = self.module_depth(path)
        if depth == len(path):
            return None
        owner = self.symbols.module("::".join(path[:depth]))
        if owner is None:  # cannot happen: module_depth only counts modules that exist
            return None
        name = path[depth]
        if self.symbols.item_kind(qualify(owner, name)) is not None:
            return None  # later segments (variants, associated functions) are codegen's to check
        if name in owner.public_aliases:
            return None  # a `pub use` that could not be followed: its own import reports why
        where = self.display_module(owner.path)
        if name in owner.aliases:
            return (f"`{name}` is imported privately by module `{where}`",
                    f"write `pub use` in `{where}` to re-export it")
        if depth == 0 and len(path) > 1:
            return f"there is no module `{name}`", f"declare it with `mod {name};`"
        return f"module `{where}` has no item `{name}`", _did_you_mean(name, self.item_names(owner))

    def item_names(self, owner: ModuleInfo) -> list[str]:
        """The names of `owner`'s own items (for "did you mean")."""
        return [qual.rsplit("::", 1)[-1] for qual, module in self.symbols.item_module.items() if module == owner.path]

    def module_depth(self, path: list[str]) -> int:
        """How many leading segments of `path` name a module (0: only the root)."""
        return max(i for i in range(len(path) + 1) if self.symbols.module("::".join(path[:i])) is not None)

    def imported_module(self, info: ModuleInfo, path: list[str]) -> str | None:
        """The module a `use` imports from, as written (before re-exports are followed)."""
        anchored = self.anchor(info, path)
        if not anchored or anchored[0] == "std":
            return None
        return "::".join(anchored[:self.module_depth(anchored)])

    def report_import_cycles(self, edges: dict[str, dict[str, tuple[ModuleInfo, A.Span]]]) -> None:
        """Spec 14 "Circular Dependencies": modules may not import from each other in a
        cycle. Each cycle is reported once, at the `use` of its first-loaded module."""
        order = [m.path for m in self.symbols.modules]
        rank = {path: i for i, path in enumerate(order)}
        on_stack: list[str] = []
        done: set[str] = set()
        reported: set[tuple[str, ...]] = set()

        def visit(node: str) -> None:
            on_stack.append(node)
            for nxt in edges.get(node, {}):
                if nxt in on_stack:
                    cycle = on_stack[on_stack.index(nxt):]
                    start = min(range(len(cycle)), key=lambda i: rank.get(cycle[i], len(rank)))
                    cycle = cycle[start:] + cycle[:start]
                    if tuple(cycle) not in reported:
                        reported.add(tuple(cycle))
                        self.report_cycle(cycle, edges)
                elif nxt not in done:
                    visit(nxt)
            on_stack.pop()
            done.add(node)

        for path in order:
            if path not in done:
                visit(path)

    def report_cycle(self, cycle: list[str], edges: dict[str, dict[str, tuple[ModuleInfo, A.Span]]]) -> None:
        info, span = edges[cycle[0]][cycle[1]]
        names = " -> ".join(self.display_module(p) for p in cycle + cycle[:1])
        self.error(info, span, f"circular module dependency: {names}",
                   hint="move what the modules share into a separate module that both can import")


def _did_you_mean(name: str, candidates: list[str]) -> str | None:
    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return f"did you mean `{close[0]}`?" if close else None
