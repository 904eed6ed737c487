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

import math
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
from concerto.vm.environment import EnvPermissionError, EnvironmentGate, secret_variables
from concerto.vm.executor import Executor, Limits, RunStopped
from concerto.vm.loader import IRLoadError, Program, link, load_bytes, load_object
from concerto.vm.limits import ResourceLimits
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
    #: Where API keys (and what allow_env grants std::env) are read from; None means os.environ.
    environ: Mapping[str, str] | None = None
    #: Compile functions to Python before running (vm/pycompile.py).
    jit: bool = True
    #: Hosts ("host" for any port, or "host:port") a connection's key may be sent
    #: to besides its provider's default host. A program loaded with load_source
    #: may also use the hosts its Concerto.toml names; one loaded with load_ir
    #: only these (docs/semantics.md "Where a key may go").
    allowed_hosts: list[str] = field(default_factory=list)
    #: Environment variables std::env may read: names or glob patterns
    #: (`*`, `?`, `[...]`, case-sensitive). Nothing is readable by default.
    allow_env: list[str] = field(default_factory=list)
    #: Variables program code may never read, whatever allow_env says (glob
    #: patterns). The program's connection keys, secret headers and MCP server
    #: variables are always denied.
    deny_env: list[str] = field(default_factory=list)
    #: Longest String a program may build (characters); longer is a ResourceError.
    max_string_length: int = 100_000_000
    #: Most elements of one Array, Map, Set, Queue or Stack; more is a ResourceError.
    max_collection_size: int = 10_000_000


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
    AgentError, ConfigError, Panic, RuntimeError, ...), MemoryError when the
    process ran out of memory, or InternalError for a defect of concerto
    itself (python_traceback then holds the Python traceback); trace:
    innermost first."""

    def __init__(self, message: str, kind: str, trace: list[TraceEntry] | None = None, value: Any = None,
                 python_traceback: str | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.message = message
        self.kind = kind
        self.trace = trace or []
        self.value = value
        self.python_traceback = python_traceback

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
        # Hosts named by the Concerto.toml the program was compiled with (load_source).
        self._manifest_hosts: set[str] = set()
        self._executor: Executor | None = None  # of the current run
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
                # Verified as it is: encoding it first would recurse through
                # whatever nesting the dict holds.
                program = load_object(source)
            elif isinstance(source, (bytes, bytearray)):
                program = load_bytes(bytes(source))
            else:
                path = Path(source)
                program = load_bytes(_read(path), source_file=str(path))
        except IRLoadError as e:
            raise LoadError(f"invalid IR: {e}") from None
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise LoadError(f"invalid IR: {e}") from None
        self._set(program)
        self._manifest_hosts = set()  # IR from elsewhere names no trusted host

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
        from concerto.vm.secrets import connection_hosts

        # The program's connections are those of the Concerto.toml it was just compiled with.
        self._manifest_hosts = connection_hosts(c.config for c in result.program.connections)

    def load_linked(self, program: Program) -> None:
        """Load an already linked program (what the CLI does after compiling)."""
        self._set(program)
        self._manifest_hosts = set()  # the caller says which hosts to trust (allowed_hosts)

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
            self._executor = None

    def run(self) -> Any:
        """execute() for synchronous callers (starts its own event loop)."""
        return anyio.run(self.execute)

    def cancel(self) -> None:
        """Stop the current run: every task and pending request is cancelled and
        execute() raises RunError(kind="CancelledError"). Safe to call from any
        thread; code that is computing stops within a few milliseconds."""
        self._cancel_requested = True
        if self._executor is not None:
            self._executor.cancel()

    def metrics(self) -> dict[str, Any]:
        """The last run's figures: model calls, tokens, retries, failures,
        latency and cost per model and per connection (the table `concerto run
        --metrics` prints), plus emit_count, channels and execution_time_ms."""
        return self._metrics

    def list_channels(self) -> list[str]:
        return sorted(self._metrics.get("channels", []))

    # -- permissions and caps -------------------------------------------------------
    def _environment(self, program: Program) -> EnvironmentGate:
        cfg = self.config
        try:
            return EnvironmentGate.build(cfg.environ if cfg.environ is not None else os.environ,
                                         allow=cfg.allow_env, deny=cfg.deny_env,
                                         hidden=secret_variables(program.ir), where="RuntimeConfig.allow_env")
        except EnvPermissionError as e:
            raise RunError(str(e), "ConfigError") from None

    def _check_numbers(self) -> None:
        """Durations are positive finite seconds, counts positive integers: a
        NaN deadline or a string count is the host's mistake, said as such."""
        cfg = self.config
        for name in ("execution_timeout", "emit_timeout", "flush_interval"):
            value = getattr(cfg, name)
            if value is None:
                continue
            if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
                raise RunError(f"RuntimeConfig.{name} must be a positive number of seconds or None, "
                               f"not {value!r}", "ConfigError")
        for name in ("max_call_depth", "max_parallel", "max_emit_queue", "max_concurrent_model_calls"):
            value = getattr(cfg, name)
            if value is None and name == "max_concurrent_model_calls":
                continue
            if type(value) is not int or value < 1:
                raise RunError(f"RuntimeConfig.{name} must be a positive integer, not {value!r}", "ConfigError")

    def _limits(self) -> ResourceLimits:
        cfg = self.config
        limits = ResourceLimits(max_string_length=cfg.max_string_length,
                                max_collection_size=cfg.max_collection_size)
        problems = limits.problems()
        if problems:
            raise RunError("RuntimeConfig." + problems[0], "ConfigError")
        return limits

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
        # Checked before anything that needs closing is opened.
        self._check_numbers()
        run_config = RunConfig(max_call_depth=cfg.max_call_depth, jit=cfg.jit,
                               environment=self._environment(program), limits=self._limits())
        redactor = self._redactor(program)
        models = self._models(program, redactor)
        emits = EmitChannel(self.handlers, cfg.emit_mode, cfg.max_emit_queue, cfg.flush_interval, cfg.emit_timeout,
                            redactor=redactor)
        executor = Executor(Limits(cfg.max_parallel), timeout=cfg.execution_timeout)
        self._executor = executor
        if self._cancel_requested:
            executor.cancel()
        machine = Machine(program, config=run_config, models=models, emits=emits, executor=executor)
        sink = self.on_log
        machine.on_log = ((lambda level, message: sink(level, redactor.text(message))) if sink is not None
                          else (lambda level, message: emits.send("log", {"level": level, "message": message})))
        started = time.perf_counter()
        try:
            return await machine.arun_main()
        except RunStopped as stop:
            raise _stopped(cfg.execution_timeout if stop.reason == "timeout" else None) from None
        except (VMError, Panic) as exc:
            raise _as_run_error(exc, cfg.debug, redactor) from None
        finally:
            with anyio.CancelScope(shield=True):
                await emits.close()
                if models is not None:
                    await models.manager.aclose()
            self._metrics = redactor.data(_collect(models, emits, started))

    def _redactor(self, program: Program) -> Any:
        """The exact secrets this run can read, to keep them out of everything it reports."""
        from concerto.vm.secrets import Redactor, run_secrets

        cfg = self.config
        environ = cfg.environ if cfg.environ is not None else os.environ
        keys = [o.api_key for o in cfg.connection_overrides.values()]
        return Redactor(run_secrets(program.ir.connections, environ, keys))

    def _host_policy(self) -> Any:
        from concerto.vm.secrets import HostPolicy, parse_allowed_host

        hosts = set(self._manifest_hosts)
        for entry in self.config.allowed_hosts:
            try:
                hosts.add(parse_allowed_host(entry))
            except (ValueError, AttributeError) as e:
                raise RunError(f"RuntimeConfig.allowed_hosts: {e}", "ConfigError") from None
        return HostPolicy(frozenset(hosts))

    def _models(self, program: Program, redactor: Any) -> Any:
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
                                   mock_replies=cfg.mock_replies, tool_permissions=permissions,
                                   host_policy=self._host_policy(), redactor=redactor)
        except ConfigError as e:
            raise RunError(str(e), "ConfigError") from None
        if models is not None and cfg.max_concurrent_model_calls:
            models.limiter = anyio.CapacityLimiter(cfg.max_concurrent_model_calls)
        return models


def _stopped(timeout: float | None) -> RunError:
    if timeout is not None:
        return RunError(f"execution timed out after {timeout:g} s (execution_timeout)", "TimeoutError")
    return RunError("the run was cancelled by the host", "CancelledError")


def _as_run_error(exc: VMError | Panic, debug: bool, redactor: Any) -> RunError:
    """The host's view of a run's end, with every text the run could have
    filled with a secret redacted."""
    if isinstance(exc, Panic):
        return RunError(redactor.text(exc.message), "Panic")
    trace = exc.trace if debug else exc.trace[:50]
    tb = exc.python_traceback
    return RunError(redactor.text(exc.message), exc.kind, trace, redactor.value(exc.value),
                    python_traceback=redactor.text(tb) if tb is not None else None)


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
