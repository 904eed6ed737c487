"""The `concerto` command line."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import msgspec
import typer
from rich.console import Console

from concerto import ir
from concerto.compiler.diagnostics import Diagnostic, render_plain
from concerto.disasm import disassemble
from concerto.vm.loader import IRLoadError, load_bytes
from concerto.vm.values import debug, to_json

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Compile and run Concerto programs (.conc source or .conc-ir).",
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


class EmitFormat(str, Enum):
    pretty = "pretty"
    jsonl = "jsonl"


def _usage_error(message: str) -> typer.Exit:
    err_console.print(f"error: {message}", markup=False)
    return typer.Exit(2)


def _report(diagnostics: list[Diagnostic], sources: dict[str, str]) -> None:
    for d in diagnostics:
        source = sources.get(d.file)
        if source is None and d.file and Path(d.file).is_file():
            try:
                source = Path(d.file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                source = None
        err_console.print(render_plain(d, source), markup=False)
    errors = sum(1 for d in diagnostics if d.severity == "error")
    if errors:
        err_console.print(f"error: could not compile: {errors} error{'s' if errors != 1 else ''}", markup=False)


def _require_file(path: Path) -> None:
    if not path.exists():
        raise _usage_error(f"no such file: {path}")
    if path.is_dir():
        raise _usage_error(f"{path} is a directory, not a .conc or .conc-ir file")


_ENV_HELP = "Load environment variables (API keys) from this dotenv file first; variables already set win."
_MANIFEST_HELP = "Use this Concerto.toml instead of the one found by walking up from FILE."


def _load_env(env: Optional[Path]) -> None:
    if env is None:
        return
    from concerto.compiler.manifest import load_dotenv

    problems = load_dotenv(env)
    if problems:
        _report(problems, {})
        raise typer.Exit(1)


def _compile(path: Path, manifest: Optional[Path] = None, mock: bool = False) -> Any:
    # Imported here so running compiled IR never loads the compiler.
    from concerto.compiler import compile_file

    _require_file(path)
    if manifest is not None:
        _require_file(manifest)
    result = compile_file(path, manifest=manifest, mock=mock)
    if not result.ok:
        _report(result.diagnostics, result.sources)
        raise typer.Exit(1)
    return result


def _is_ir(path: Path) -> bool:
    return path.suffix in (".conc-ir", ".json") or path.name.endswith(".conc-ir")


@app.command()
def compile(
    file: Path = typer.Argument(..., help="The .conc source file."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Where to write the IR (default: FILE with .conc-ir)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help=_MANIFEST_HELP),
    env: Optional[Path] = typer.Option(None, "--env", help=_ENV_HELP),
) -> None:
    """Compile FILE to spec-16 IR (.conc-ir JSON).

    Connections come from Concerto.toml (spec 22) and are embedded in the IR by
    name and settings; API keys never are (only the variable names)."""
    _load_env(env)
    result = _compile(file, manifest)
    assert result.program is not None
    out = output or file.with_suffix(".conc-ir")
    try:
        out.write_bytes(ir.encode(result.program) + b"\n")
    except OSError as e:
        err_console.print(f"error: cannot write {out}: {e.strerror or e}", markup=False)
        raise typer.Exit(1) from None
    err_console.print(f"wrote {out}", markup=False)


@app.command()
def check(
    file: Path = typer.Argument(..., help="The .conc source file."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help=_MANIFEST_HELP),
) -> None:
    """Parse and check FILE, reporting every error; write nothing."""
    result = _compile(file, manifest)
    _report(result.diagnostics, result.sources)
    err_console.print(f"{file}: no errors", markup=False)


def _load_program(file: Path, manifest: Optional[Path] = None, mock: bool = False):
    _require_file(file)
    if _is_ir(file):
        try:
            program = load_bytes(file.read_bytes())
        except IRLoadError as e:
            err_console.print(f"{file}: error: invalid IR: {e}", markup=False)
            raise typer.Exit(1) from None
        except OSError as e:
            raise _usage_error(f"cannot read {file}: {e.strerror or e}") from None
        sources: dict[str, str] = {}
        src_path = file.parent / program.source_file
        if src_path.is_file():
            try:
                sources[program.source_file] = src_path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                pass
        for w in program.warnings:
            err_console.print(f"{file}: warning: {w}", markup=False)
        return program, sources
    result = _compile(file, manifest, mock)
    assert result.program is not None
    program = load_bytes(ir.encode(result.program, pretty=False), source_file=str(file))
    return program, result.sources


@app.command()
def run(
    file: Path = typer.Argument(..., help="A .conc source file or compiled .conc-ir."),
    emit_format: EmitFormat = typer.Option(
        EmitFormat.pretty, "--emit-format", help="pretty: readable lines; jsonl: one JSON object per emit on stdout."),
    max_call_depth: int = typer.Option(10_000, "--max-call-depth", min=1, help="Fail the run beyond this many nested calls."),
    jit: bool = typer.Option(
        True, "--jit/--no-jit",
        help="Compile functions to Python before running (fast); --no-jit runs every instruction in the interpreter."),
    env: Optional[Path] = typer.Option(None, "--env", help=_ENV_HELP),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help=_MANIFEST_HELP),
    mock: bool = typer.Option(
        False, "--mock", help="Answer every model call with the offline mock provider (no network, no keys)."),
    mock_replies: Optional[Path] = typer.Option(
        None, "--mock-replies", help="Scripted mock replies (JSON list); implies --mock."),
    metrics: bool = typer.Option(
        False, "--metrics", help="After the run, print model calls, tokens, retries, latency and cost on stderr."),
    answers: Optional[Path] = typer.Option(
        None, "--answers",
        help="Answer awaited emits (`await emit(...)`) from this JSON file: {\"channel\": answer, \"prefix:*\": answer} "
             "or a list of {\"channel\", \"answer\"} used in order. Without it, a terminal asks you."),
    timeout: Optional[float] = typer.Option(
        None, "--timeout", min=0.001, help="End the run with a TimeoutError after this many seconds."),
    allow_tool: list[str] = typer.Option(
        [], "--allow-tool",
        help="Let models call this tool: NAME (every method), NAME.method, or '*' (every tool). "
             "Repeat for more. Tools are disabled unless allowed."),
) -> None:
    """Run FILE. Emits go to stdout; diagnostics and logs go to stderr.

    Model calls use the connections of Concerto.toml; keys come from the
    environment (or --env). A missing key stops the run before any request,
    naming the variable; nothing falls back to the mock unless you ask (--mock).
    An awaited emit is answered from --answers, or by you on a terminal;
    otherwise the program gets an EmitError naming the channel. Models call
    only the tools you allow with --allow-tool."""
    from concerto.host import RunError, Runtime, RuntimeConfig

    _load_env(env)
    mock = mock or mock_replies is not None
    if mock_replies is not None:
        _require_file(mock_replies)
    responder = _responder(answers)
    program, sources = _load_program(file, manifest, mock)
    permissions = _tool_permissions(allow_tool, program)
    encoder = msgspec.json.Encoder()
    out = sys.stdout

    reader_gone = False

    def closed_pipe() -> None:
        # The reader went away (`concerto run x.conc | head`): stop quietly, as
        # shell tools do when SIGPIPE ends them.
        nonlocal reader_gone
        reader_gone = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        runtime.cancel()

    def on_emit_jsonl(channel: str, payload: Any) -> None:
        try:
            out.write(encoder.encode({"channel": channel, "payload": to_json(payload)}).decode("utf-8") + "\n")
            out.flush()
        except BrokenPipeError:
            closed_pipe()

    def on_emit_pretty(channel: str, payload: Any) -> None:
        try:
            out_console.print(f"[bold cyan]{channel}[/] {_escape(debug(payload))}")
        except BrokenPipeError:
            closed_pipe()

    def on_log(level: str, message: str) -> None:
        style = {"error": "red", "warn": "yellow", "info": "green", "debug": "dim"}.get(level, "")
        err_console.print(f"[{style}]{level}[/] {_escape(message)}" if style else f"{level} {message}")

    runtime = Runtime(RuntimeConfig(max_call_depth=max_call_depth, jit=jit, mock=mock,
                                    mock_replies=str(mock_replies) if mock_replies else None,
                                    execution_timeout=timeout, tool_permissions=permissions))
    runtime.load_linked(program)
    runtime.handlers.on("*", on_emit_jsonl if emit_format is EmitFormat.jsonl else on_emit_pretty, raw=True)
    if responder is not None:
        runtime.handlers.on_emit("*", responder)
    runtime.on_log = on_log
    try:
        try:
            runtime.run()
        finally:
            _print_metrics(runtime, metrics)
    except RunError as e:
        if reader_gone:
            raise typer.Exit(141) from None
        if e.kind == "ConfigError":
            for line in e.message.splitlines():
                err_console.print(f"{program.source_file}: error: {line}", markup=False)
        elif e.kind == "Panic":
            err_console.print(f"{program.source_file}: panic: {e.message}", markup=False)
        else:
            _report_runtime_error(e, sources, program.source_file)
        raise typer.Exit(1) from None


def _tool_permissions(allowed: list[str], program: Any) -> dict[str, Any]:
    """--allow-tool NAME / NAME.method / '*' -> RuntimeConfig.tool_permissions."""
    tools = {t.name: {m.name for m in t.methods} for t in program.ir.tools}
    tools.update((s.name, {t.name for t in s.tools}) for s in program.ir.mcp_connections)
    # A tool in a module may be named without its path when that is unambiguous.
    short: dict[str, list[str]] = {}
    for qual in tools:
        short.setdefault(qual.rsplit("::", 1)[-1], []).append(qual)
    grants: dict[str, Any] = {}
    for entry in allowed:
        name, _, method = entry.partition(".")
        if name == "*" and not method:
            grants["*"] = True
            continue
        if name not in tools and len(short.get(name, [])) == 1:
            name = short[name][0]
        if name not in tools:
            known = ", ".join(sorted(tools)) or "none"
            err_console.print(f"error: --allow-tool {entry}: the program has no tool `{name}` (tools: {known})",
                              markup=False)
            raise typer.Exit(1)
        if not method:
            grants[name] = True
        elif method not in tools[name]:
            known = ", ".join(sorted(tools[name]))
            err_console.print(f"error: --allow-tool {entry}: tool `{name}` has no method `{method}` (methods: {known})",
                              markup=False)
            raise typer.Exit(1)
        elif grants.get(name) is not True:
            grants.setdefault(name, []).append(method)
    return grants


def _responder(answers: Optional[Path]) -> Any:
    """Who answers awaited emits: the --answers file, a person at a terminal, or nobody."""
    from concerto.answers import AnswersError, ask_person, load_answers

    if answers is not None:
        try:
            return load_answers(answers)
        except AnswersError as e:
            err_console.print(f"error: {e}", markup=False)
            raise typer.Exit(1) from None
    if sys.stdin.isatty() and sys.stderr.isatty():
        return ask_person
    return None


def _print_metrics(runtime: Any, metrics: bool) -> None:
    if not metrics:
        return
    snapshot = runtime.metrics()
    if not snapshot["models"]:
        err_console.print("no model calls", markup=False)
        return
    from concerto.metrics_view import metrics_table

    sys.stdout.flush()
    # Wide enough for every column even when stderr is not a terminal.
    Console(stderr=True, highlight=False, width=max(err_console.width, 150)).print(metrics_table(snapshot))


def _escape(text: str) -> str:
    return text.replace("[", "\\[")


def _report_runtime_error(e: Any, sources: dict[str, str], default_file: str) -> None:
    loc = e.location
    if loc is None:
        err_console.print(f"{default_file}: error: {e.kind}: {e.message}", markup=False)
        return
    source = sources.get(loc.file)
    if source is None:
        source = next(iter(sources.values()), None) if len(sources) == 1 else None
    diag = Diagnostic(loc.file, loc.line, loc.col, f"{e.kind}: {e.message}")
    text = render_plain(diag, source).replace(": error: ", ": runtime error: ", 1)
    err_console.print(text, markup=False)
    shown = e.trace[:12]
    for entry in shown:
        err_console.print(f"  at {entry.function} ({entry.file}:{entry.line}:{entry.col})", markup=False)
    if len(e.trace) > len(shown):
        err_console.print(f"  ... {len(e.trace) - len(shown)} more frames", markup=False)


@app.command()
def disasm(
    file: Path = typer.Argument(..., help="A .conc source file or compiled .conc-ir."),
    python: bool = typer.Option(
        False, "--python", help="Print the Python source that `run` compiles the functions to, instead."),
) -> None:
    """Print a readable listing of every function: spans, opcodes, resolved operands."""
    _require_file(file)
    if python:
        from concerto.vm.pycompile import compile_program

        program_, _sources = _load_program(file)
        compile_program(program_)
        interpreted = [name for name, fn in program_.functions.items() if fn.jit is None]
        sys.stdout.write(program_.jit_source + "\n")
        if interpreted:
            sys.stdout.write("# interpreted (not compiled): " + ", ".join(interpreted) + "\n")
        return
    if _is_ir(file):
        try:
            program = ir.decode(file.read_bytes())
            load_bytes(file.read_bytes())  # validate before printing
        except (IRLoadError, msgspec.DecodeError, msgspec.ValidationError) as e:
            err_console.print(f"{file}: error: invalid IR: {e}", markup=False)
            raise typer.Exit(1) from None
    else:
        result = _compile(file)
        assert result.program is not None
        program = result.program
    sys.stdout.write(disassemble(program))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
