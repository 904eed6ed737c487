"""Modules, items and imports -> one table of fully qualified names.

Items of the root module keep their plain names (`main`, `Point`); items of a
module `helpers` are `helpers::name`. `mod helpers;` loads `helpers.conc` (or
`helpers/mod.conc`) beside the file that declares it. `use` declarations become
per-module alias tables that codegen consults before anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from concerto.compiler import ast as A
from concerto.compiler.diagnostics import Diagnostic
from concerto.compiler.parse import parse_source

BUILTIN_TYPES = {
    "Int", "Float", "String", "Bool", "Nil", "Any", "Array", "Map", "Option", "Result",
    "Tuple", "Range", "Set", "Queue", "Stack", "HashMap", "Prompt", "Response", "Message",
    "Self",
}
# Built-in error types (spec 13): usable in typed catch and as struct-like values.
BUILTIN_ERRORS = {
    "Error", "AgentError", "SchemaError", "ToolError", "ConnectionError", "TimeoutError",
    "HashMapError", "EmitError", "RuntimeError", "ParseError", "JsonError", "EnvError",
    "TypeError", "IndexError", "KeyError", "ArithmeticError", "OverflowError",
}


@dataclass
class ModuleInfo:
    path: str  # "" for the root module, else "helpers" / "a::b"
    file: str
    source: str
    aliases: dict[str, list[str]] = field(default_factory=dict)  # local name -> full path
    globs: list[list[str]] = field(default_factory=list)


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
    public: set[str] = field(default_factory=set)
    item_module: dict[str, str] = field(default_factory=dict)
    impls: list[tuple[A.ImplDecl, ModuleInfo]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    def item_kind(self, qual: str) -> str | None:
        if qual in self.functions:
            return "fn"
        if qual in self.structs:
            return "struct"
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


def qualify(module: ModuleInfo, name: str) -> str:
    return f"{module.path}::{name}" if module.path else name


class Resolver:
    def __init__(self) -> None:
        self.symbols = Symbols()
        self.diagnostics: list[Diagnostic] = []
        # A file that did not parse: later checks would only add noise about it.
        self.syntax_failed = False
        self.loading: list[str] = []

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
        self.add_module(info, module_ast.items)
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
            self.error(parent, decl.span, f"circular module dependency through `{decl.name}`")
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
        if use.alias == "*":
            info.globs.append(use.path)
            return
        if use.alias in info.aliases:
            self.error(info, use.span, f"`{use.alias}` is imported more than once")
            return
        info.aliases[use.alias] = use.path
