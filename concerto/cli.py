"""The `concerto` command line."""

from __future__ import annotations

import math
import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import msgspec
import typer
from rich.console import Console

from concerto import ir
from concerto.compiler.diagnostics import Diagnostic, render_plain
from concerto.vm.loader import IRLoadError, load_bytes
from concerto.vm.values import debug, to_json

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Compile and run Concerto programs (.conc source or .conc-ir).",
    pretty_exceptions_enable=False,
)
class _PipeConsole(Console):
    """Stdout may be a pipe whose reader leaves (`concerto run x.conc | head`).
    rich would exit the process from inside the emit handler; the CLI wants
    BrokenPipeError, to end the run quietly with 141."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = _PipeConsole(highlight=False, soft_wrap=True)


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


def _finite(value: Optional[float]) -> Optional[float]:
    # typer's range check lets `nan` and `inf` through.
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number of seconds, not {value}")
    return value


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
        None, "--timeout", min=0.001, callback=_finite,
        help="End the run with a TimeoutError after this many seconds."),
    allow_tool: list[str] = typer.Option(
        [], "--allow-tool",
        help="Let models call this tool: NAME (every method), NAME.method, or '*' (every tool). "
             "Repeat for more. Tools are disabled unless allowed."),
    allow_host: list[str] = typer.Option(
        [], "--allow-host",
        help="Let connections send their key to HOST (any port) or HOST:PORT, besides the provider's default "
             "host and the hosts the local Concerto.toml names. Repeatable."),
    allow_env: list[str] = typer.Option(
        [], "--allow-env",
        help="Let the program read environment variable NAME with std::env; glob patterns ('APP_*', '*') "
             "allowed. Repeatable; adds to [permissions] env of the local Concerto.toml. Nothing is readable "
             "otherwise, and API keys never are."),
    max_string_length: Optional[int] = typer.Option(
        None, "--max-string-length", min=1024,
        help="Longest String the program may build, in characters (default 100000000); "
             "longer is a catchable ResourceError."),
    max_collection_size: Optional[int] = typer.Option(
        None, "--max-collection-size", min=1024,
        help="Most elements of one Array, Map, Set, Queue or Stack (default 10000000); "
             "more is a catchable ResourceError."),
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
    _redact_stderr(program)
    permissions = _tool_permissions(allow_tool, program)
    local = _local_manifest(file, manifest)
    hosts = _allowed_hosts(allow_host, local)
    env_allowed, env_denied = _env_permissions(allow_env, local)
    caps = {k: v for k, v in (("max_string_length", max_string_length),
                              ("max_collection_size", max_collection_size)) if v is not None}
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
                                    execution_timeout=timeout, tool_permissions=permissions,
                                    allowed_hosts=hosts, allow_env=env_allowed, deny_env=env_denied, **caps))
    runtime.load_linked(program)
    runtime.handlers.on("*", on_emit_jsonl if emit_format is EmitFormat.jsonl else on_emit_pretty, raw=True)
    if responder is not None:
        runtime.handlers.on_emit("*", responder)
    runtime.on_log = on_log
    import anyio

    stopped_by: list[int] = []
    try:
        try:
            anyio.run(_run_until_signalled, runtime, stopped_by)
        finally:
            _print_metrics(runtime, metrics)
    except RunError as e:
        if reader_gone:
            raise typer.Exit(141) from None
        if stopped_by and e.kind == "CancelledError":
            err_console.print("interrupted" if stopped_by[0] == signal.SIGINT else "terminated", markup=False)
            raise typer.Exit(128 + stopped_by[0]) from None
        if e.kind == "ConfigError":
            for line in e.message.splitlines():
                err_console.print(f"{program.source_file}: error: {line}", markup=False)
        elif e.kind == "Panic":
            err_console.print(f"{program.source_file}: panic: {e.message}", markup=False)
        else:
            _report_runtime_error(e, sources, program.source_file)
        if e.kind == "InternalError":
            _report_internal_error(e)
            raise typer.Exit(EXIT_INTERNAL) from None
        raise typer.Exit(1) from None


async def _run_until_signalled(runtime: Any, stopped_by: list[int]) -> Any:
    """runtime.execute(), ended by SIGINT or SIGTERM as by cancel(): the run
    unwinds normally, so MCP servers and their children are stopped."""
    import anyio

    async with anyio.create_task_group() as tasks:
        async def watch() -> None:
            # Kept open until the run is over: a second signal during cleanup
            # must not cut it short (it is bounded by the servers' kill grace).
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    if not stopped_by:
                        stopped_by.append(int(signum))
                        runtime.cancel()

        if os.name == "posix":
            tasks.start_soon(watch)
        try:
            result = await runtime.execute()
        except Exception as exc:  # noqa: BLE001 - re-raised as itself, not inside an ExceptionGroup
            failure: Exception | None = exc
        else:
            failure = None
        finally:
            tasks.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result


def _local_manifest(file: Path, manifest: Optional[Path]) -> Any:
    """The Concerto.toml this run trusts for hosts and environment grants: for
    a .conc, the one the compiler used (--manifest, else walking up from the
    file); for a .conc-ir, --manifest or the one found walking up from the
    current directory, never one that travelled with the IR file (it could
    grant itself anything). None when there is none."""
    from concerto.compiler.manifest import find_manifest, load_manifest

    if manifest is not None:
        _require_file(manifest)
    path = manifest or find_manifest(Path.cwd() if _is_ir(file) else file.resolve().parent)
    if path is None:
        return None
    loaded, problems = load_manifest(path)
    if loaded is None:
        _report(problems, {})
        raise typer.Exit(1)
    return loaded


def _env_permissions(allowed: list[str], local: Any) -> tuple[list[str], list[str]]:
    """(allow_env, deny_env): --allow-env plus [permissions] env of the local
    Concerto.toml, and the manifest's credential variables, never readable."""
    for entry in allowed:
        if not entry or "=" in entry or "\0" in entry:
            raise _usage_error(f"--allow-env: {entry!r} is not a variable name or pattern")
    if local is None:
        return list(allowed), []
    return list(allowed) + local.permissions.env, sorted(local.credential_variables())


def _allowed_hosts(allowed: list[str], local: Any) -> list[str]:
    """--allow-host values plus the hosts the local Concerto.toml names."""
    from concerto.vm.secrets import connection_hosts, parse_allowed_host

    hosts = []
    for entry in allowed:
        try:
            hosts.append(parse_allowed_host(entry))
        except ValueError as e:
            raise _usage_error(f"--allow-host: {e}") from None
    return hosts + (sorted(connection_hosts(local.connections.values())) if local is not None else [])


class _RedactingStream:
    """stderr with the run's secrets replaced, for everything the CLI prints there."""

    def __init__(self, stream: Any, redactor: Any) -> None:
        self._stream = stream
        self._redactor = redactor

    def write(self, text: str) -> int:
        return self._stream.write(self._redactor.text(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _redact_stderr(program: Any) -> None:
    from concerto.vm.secrets import Redactor, run_secrets

    redactor = Redactor(run_secrets(program.ir.connections, os.environ))
    if redactor:
        err_console.file = _RedactingStream(sys.stderr, redactor)


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


# Exit status of a run that hit a defect of concerto itself (sysexits' EX_SOFTWARE).
EXIT_INTERNAL = 70


def _report_internal_error(e: Any) -> None:
    if os.environ.get("CONCERTO_DEBUG"):
        err_console.print(e.python_traceback or "(no Python traceback)", markup=False)
        return
    err_console.print("note: this is a defect in concerto, not in your program; run again with "
                      "CONCERTO_DEBUG=1 to see the Python traceback, and please report it", markup=False)


def _report_runtime_error(e: Any, sources: dict[str, str], default_file: str) -> None:
    internal = e.kind == "InternalError"
    headline = f"internal error: {e.message}" if internal else f"{e.kind}: {e.message}"
    loc = e.location
    if loc is None:
        label = "" if internal else "error: "
        err_console.print(f"{default_file}: {label}{headline}", markup=False)
        return
    source = sources.get(loc.file)
    if source is None:
        source = next(iter(sources.values()), None) if len(sources) == 1 else None
    diag = Diagnostic(loc.file, loc.line, loc.col, headline)
    text = render_plain(diag, source).replace(": error: ", ": " if internal else ": runtime error: ", 1)
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
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object per instruction (function, offset, opname, operands, "
                              "jump target, stack depth, line, column) instead of the listing."),
) -> None:
    """Print a readable listing of every function: spans, stack depth before
    each instruction (as the loader's verifier computed it), opcodes and
    resolved operands. The IR is verified first; invalid IR is an error."""
    _require_file(file)
    program_, _sources = _load_program(file)
    if python:
        from concerto.vm.pycompile import compile_program

        compile_program(program_)
        interpreted = [name for name, fn in program_.functions.items() if fn.jit is None]
        sys.stdout.write(program_.jit_source + "\n")
        if interpreted:
            sys.stdout.write("# interpreted (not compiled): " + ", ".join(interpreted) + "\n")
        return
    depths = {name: fn.depths for name, fn in program_.functions.items()}
    if not as_json:
        from concerto.ir.disasm import disassemble

        sys.stdout.write(disassemble(program_.ir, depths))
        return
    import dataclasses

    from concerto.ir.disasm import get_instructions

    encoder = msgspec.json.Encoder()
    for fn in program_.ir.functions:
        for rec in get_instructions(fn, program_.ir, depths[fn.name]):
            row = {"function": fn.name, **dataclasses.asdict(rec)}
            del row["flags"]  # the opcode's, not the instruction's: docs/ir.md lists them
            sys.stdout.write(encoder.encode(row).decode("utf-8") + "\n")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
