"""The Python host API: embed Concerto programs in a service.

    from concerto import Runtime, RuntimeConfig

    rt = Runtime(RuntimeConfig(execution_timeout=30))
    rt.load_source("app.conc")

    @rt.on("result")
    def show(payload):                     # an exact channel: called with the payload
        print(payload)

    @rt.on_emit("approval:*")
    async def approve(channel, payload):   # a pattern: called with (channel, payload)
        return "approved"                  # the answer to `await emit(...)`

    result = await rt.execute()            # or rt.run() from synchronous code
    print(rt.metrics())

Values cross the boundary as JSON-shaped data (spec 20): structs become
dicts, `Ok(v)` becomes {"ok": v}, `None` becomes None; answers from handlers
are mapped back the same way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio
import msgspec

from concerto import ir
from concerto.vm.connection_config import ConfigError, ConnectionOverride
from concerto.vm.decorators import elapsed_ms
from concerto.vm.emit import EmitChannel, Handlers
from concerto.vm.executor import Executor, Limits
from concerto.vm.loader import IRLoadError, Program, link, load_bytes
from concerto.vm.machine import Machine, Panic, RunConfig, TraceEntry, VMError
from concerto.vm.values import to_json

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["Runtime", "RuntimeConfig", "ConnectionOverride", "RunError", "LoadError"]


@dataclass
class RuntimeConfig:
    """How a Runtime runs programs. Every limit ends a run with a clear error."""

    #: Per-connection replacements (api_key, base_url), e.g. to point at a test server.
    connection_overrides: dict[str, ConnectionOverride] = field(default_factory=dict)
    #: Which tools models may call: tool name (or "*" for every tool) -> True
    #: (all methods), False, a list of method names, or {method: bool}.
    #: A tool not granted here is left out of what models are offered.
    tool_permissions: dict[str, bool | list[str] | dict[str, bool]] = field(default_factory=dict)
    #: "immediate" delivers each emit at once; "buffered" holds them until
    #: flush_emits(), an awaited emit, a full buffer, flush_interval or the end of the run.
    emit_mode: Literal["immediate", "buffered"] = "immediate"
    #: Buffered mode: deliver at least this often (seconds); None = only on the events above.
    flush_interval: float | None = None
    #: Wall-clock limit for a whole run (seconds); the run ends with a TimeoutError.
    execution_timeout: float | None = None
    #: Model calls in flight at once across the run (on top of each connection's limits).
    max_concurrent_model_calls: int | None = None
    #: Nested Concerto calls before "call depth exceeded".
    max_call_depth: int = 10_000
    #: Emits waiting for async handlers (or held in buffered mode) before an EmitError.
    max_emit_queue: int = 10_000
    #: Seconds a handler may take to answer an awaited emit; None waits forever.
    emit_timeout: float | None = None
    #: `parallel for` iterations running at once.
    max_parallel: int = 100
    #: Verbose errors: RunError.trace keeps every frame.
    debug: bool = False
    #: Answer every model call with the offline mock provider.
    mock: bool = False
    #: A JSON file of scripted mock replies (implies mock).
    mock_replies: str | None = None
    #: Where API keys are read from; None means os.environ.
    environ: Mapping[str, str] | None = None
    #: Compile functions to Python before running (vm/pycompile.py).
    jit: bool = True


class LoadError(Exception):
    """The program could not be loaded: bad IR, or source with compile errors.
    `diagnostics` lists each problem as "file:line:col: message"."""

    def __init__(self, message: str, diagnostics: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.diagnostics = diagnostics or []


class RunError(Exception):
    """A run ended with an error nothing in the program caught.

    kind: the Concerto error type (TimeoutError, CancelledError, EmitError,
    AgentError, ConfigError, Panic, RuntimeError, ...); trace: innermost first."""

    def __init__(self, message: str, kind: str, trace: list[TraceEntry] | None = None, value: Any = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.message = message
        self.kind = kind
        self.trace = trace or []
        self.value = value

    @property
    def location(self) -> TraceEntry | None:
        return self.trace[0] if self.trace else None


class Runtime:
    """Loads one program and runs it, as often as asked; one run at a time."""

    def __init__(self, config: RuntimeConfig | None = None) -> None:
        self.config = config or RuntimeConfig()
        self.handlers = Handlers()
        self._ir: ir.Program | None = None
        self._program: Program | None = None  # linked and not yet run
        self._source_file = "<ir>"
        self._cancel: anyio.CancelScope | None = None
        self._cancel_requested = False
        self._running = False
        self._metrics: dict[str, Any] = _empty_metrics()
        #: Where std::log lines go: (level, message). None sends them to the
        #: "log" channel as {"level": ..., "message": ...}.
        self.on_log: Callable[[str, str], None] | None = None

    # -- loading ---------------------------------------------------------------
    def load_ir(self, source: str | Path | bytes | dict[str, Any]) -> None:
        """Load a .conc-ir program: a path, the JSON bytes, or the decoded dict."""
        try:
            if isinstance(source, dict):
                data = msgspec.json.encode(source)
                name = "<ir>"
            elif isinstance(source, (bytes, bytearray)):
                data, name = bytes(source), "<ir>"
            else:
                path = Path(source)
                data, name = _read(path), str(path)
            program = load_bytes(data, source_file=None if name == "<ir>" else name)
        except IRLoadError as e:
            raise LoadError(f"invalid IR: {e}") from None
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise LoadError(f"invalid IR: {e}") from None
        self._set(program)

    def load_source(self, path: str | Path, mock: bool | None = None) -> None:
        """Compile a .conc file (with its Concerto.toml, if any) and load it."""
        from concerto.compiler import compile_file
        from concerto.compiler.diagnostics import render_plain

        path = Path(path)
        _read(path)
        result = compile_file(path, mock=self.config.mock if mock is None else mock)
        errors = [d for d in result.diagnostics if d.severity == "error"]
        if errors or result.program is None:
            lines = [render_plain(d, result.sources.get(d.file)).splitlines()[0] for d in errors]
            raise LoadError(f"{path}: {len(lines)} compile error(s)", lines)
        self._set(load_bytes(ir.encode(result.program, pretty=False), source_file=str(path)))

    def load_linked(self, program: Program) -> None:
        """Load an already linked program (what the CLI does after compiling)."""
        self._set(program)

    def _set(self, program: Program) -> None:
        self._ir = program.ir
        self._program = program
        self._source_file = program.source_file

    # -- subscriptions -------------------------------------------------------------
    def on(self, channel: str, handler: F | None = None) -> Any:
        """Subscribe to emits on `channel` (exact, `prefix:*` or `*`). Use as
        `rt.on("log", fn)` or as a decorator `@rt.on("log")`. Sync or async.
        An exact channel's handler gets the payload; a pattern's gets (channel, payload)."""
        return self._register(self.handlers.on, channel, handler)

    def on_emit(self, channel: str, handler: F | None = None) -> Any:
        """Answer `await emit(channel, ...)`: the handler's return value is the
        reply. The most specific pattern answers; an exception becomes an
        EmitError inside the program."""
        return self._register(self.handlers.on_emit, channel, handler)

    def off(self, channel: str) -> None:
        self.handlers.off(channel)

    def _register(self, add: Callable[..., None], channel: str, handler: Any) -> Any:
        if not isinstance(channel, str) or not channel:
            raise TypeError("a channel is a non-empty string")
        if handler is None:
            def decorate(fn: F) -> F:
                add(channel, fn)
                return fn
            return decorate
        add(channel, handler)
        return handler

    # -- running ---------------------------------------------------------------------
    async def execute(self) -> Any:
        """Run the program's main function to the end and return its result as
        host data. Raises RunError (kind TimeoutError after execution_timeout,
        CancelledError after cancel())."""
        if self._running:
            raise RuntimeError("this Runtime is already running a program")
        program = self._take_program()
        self._running = True
        self._cancel_requested = False
        try:
            return to_json(await self._execute(program))
        finally:
            self._running = False
            self._cancel = None

    def run(self) -> Any:
        """execute() for synchronous callers (starts its own event loop)."""
        return anyio.run(self.execute)

    def cancel(self) -> None:
        """Stop the current run: every task and pending request is cancelled and
        execute() raises RunError(kind="CancelledError"). Call from the loop's thread."""
        self._cancel_requested = True
        if self._cancel is not None:
            self._cancel.cancel()

    def metrics(self) -> dict[str, Any]:
        """The last run's figures: model calls, tokens, retries, failures,
        latency and cost per model and per connection (the table `concerto run
        --metrics` prints), plus emit_count, channels and execution_time_ms."""
        return self._metrics

    def list_channels(self) -> list[str]:
        return sorted(self._metrics.get("channels", []))

    # -- inside ----------------------------------------------------------------------
    def _take_program(self) -> Program:
        if self._ir is None:
            raise RuntimeError("load a program first (load_ir or load_source)")
        program, self._program = self._program, None
        if program is None:  # a second run starts from fresh globals
            program = link(self._ir, self._source_file)
        return program

    async def _execute(self, program: Program) -> Any:
        cfg = self.config
        models = self._models(program)
        emits = EmitChannel(self.handlers, cfg.emit_mode, cfg.max_emit_queue, cfg.flush_interval, cfg.emit_timeout)
        machine = Machine(program, config=RunConfig(max_call_depth=cfg.max_call_depth, jit=cfg.jit),
                          models=models, emits=emits, executor=Executor(Limits(cfg.max_parallel)))
        machine.on_log = self.on_log or (lambda level, message: emits.send("log", {"level": level, "message": message}))
        started = time.perf_counter()
        try:
            with anyio.CancelScope() as scope:
                self._cancel = scope
                if self._cancel_requested:
                    scope.cancel()
                if cfg.execution_timeout is not None:
                    scope.deadline = anyio.current_time() + cfg.execution_timeout
                return await machine.arun_main()
            raise _stopped(None if self._cancel_requested else cfg.execution_timeout)
        except (VMError, Panic) as exc:
            raise _as_run_error(exc, cfg.debug) from None
        finally:
            with anyio.CancelScope(shield=True):
                await emits.close()
                if models is not None:
                    await models.manager.aclose()
            self._metrics = _collect(models, emits, started)

    def _models(self, program: Program) -> Any:
        if not program.ir.models:
            return None
        from concerto.vm.models import build_runtime
        from concerto.vm.tools import ToolPermissions

        cfg = self.config
        try:
            permissions = ToolPermissions.from_config(cfg.tool_permissions)
        except TypeError as e:
            raise RunError(f"RuntimeConfig.{e}", "ConfigError") from None
        try:
            models = build_runtime(program, environ=cfg.environ if cfg.environ is not None else os.environ,
                                   overrides=cfg.connection_overrides, mock=cfg.mock or cfg.mock_replies is not None,
                                   mock_replies=cfg.mock_replies, tool_permissions=permissions)
        except ConfigError as e:
            raise RunError(str(e), "ConfigError") from None
        if models is not None and cfg.max_concurrent_model_calls:
            models.limiter = anyio.CapacityLimiter(cfg.max_concurrent_model_calls)
        return models


def _stopped(timeout: float | None) -> RunError:
    if timeout is not None:
        return RunError(f"execution timed out after {timeout:g} s (execution_timeout)", "TimeoutError")
    return RunError("the run was cancelled by the host", "CancelledError")


def _as_run_error(exc: VMError | Panic, debug: bool) -> RunError:
    if isinstance(exc, VMError):
        return RunError(exc.message, exc.kind, exc.trace if debug else exc.trace[:50], exc.value)
    return RunError(exc.message, "Panic")


def _collect(models: Any, emits: EmitChannel, started: float) -> dict[str, Any]:
    out = models.manager.metrics.snapshot() if models is not None else _empty_metrics()
    out["emit_count"] = emits.count
    out["channels"] = sorted(emits.channels)
    out["execution_time_ms"] = elapsed_ms(started)
    return out


def _empty_metrics() -> dict[str, Any]:
    from concerto.vm.metering import Metrics

    return Metrics().snapshot()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise LoadError(f"{path}: cannot read: {e.strerror or e}") from None
