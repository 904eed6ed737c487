"""The model registry: what `Model.execute(...)` and friends do (spec 07, 12, 24).

Runtime values:
    ModelRef      a declared model, as a value (`let m = Classifier;`)
    ModelBuilder  `Model.with_memory(m)`: a model plus per-call settings
    MemoryStore   a `memory` declaration: an ordered list of chat messages
    ModelStream   the chunks of `Model.stream(p)`, pulled as they arrive

ModelRuntime is the synchronous face the VM calls. It builds the provider
request (system prompt, memory, prompt, schema), hands it to the connection
manager through the bridge, validates structured replies, and turns every
failure into an error value (AgentError / SchemaError) with a `message`:
a model call never crashes the program.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from concerto import ir
from concerto.vm import schema as schemas
from concerto.vm.bridge import Bridge, NoBridge
from concerto.vm.decorators import chain
from concerto.vm.llm_values import MemoryStore, ModelBuilder, ModelRef, ModelStream
from concerto.vm.connections import CallFailed, CallOptions, ConnectionManager, RetryPlan
from concerto.vm.providers.base import ChatMessage, ChatRequest, StructuredOutput
from concerto.vm.metering import CallStats
from concerto.vm.tools import MAX_TOOL_ROUNDS, ToolBox, ToolPermissions, ToolSet
from concerto.vm.values import NONE, ConcertoError, Err, Ok, Some, StructValue, debug

DEFAULT_TIMEOUT = 30.0
# execute_with_schema attempts when the model sets no retry_policy (spec 07:
# "automatically retries on schema mismatch").
DEFAULT_SCHEMA_ATTEMPTS = 3
# Providers that can be asked for JSON natively (spec 12 "Provider-Native Structured Output").
NATIVE_STRUCTURED = ("openai", "anthropic")


# ---------------------------------------------------------------- runtime
@dataclass
class ModelSpec:
    name: str
    connection: str
    config: ir.ModelConfig
    memory: str | None
    retry: RetryPlan | None  # the model's own policy (@retry or retry_policy), if any
    schema_attempts: int
    timeout: float | None
    tools: tuple[str, ...] = ()


def _model_spec(m: ir.ModelDef) -> ModelSpec:
    retry = None
    attempts = DEFAULT_SCHEMA_ATTEMPTS
    policy = m.config.retry_policy
    if policy is not None:
        attempts = int(policy.get("max_attempts", attempts))
    timeout = m.config.timeout
    for d in m.decorators:
        if d.name == "retry":
            n = int(d.args.get("max", d.args.get("max_attempts", d.args.get("0", 3))))
            retry = RetryPlan(n, str(d.args.get("backoff", "exponential")),
                              float(d.args.get("delay_ms", 1000)) / 1000, 30.0)
            attempts = n
        elif d.name == "timeout":
            timeout = float(d.args.get("seconds", d.args.get("0", timeout or DEFAULT_TIMEOUT)))
    return ModelSpec(m.name, m.connection, m.config, m.memory, retry, max(1, attempts), timeout, tuple(m.tools))


class ModelRuntime:
    def __init__(self, program: ir.Program, manager: ConnectionManager, memories: dict[str, MemoryStore],
                 bridge: Bridge | None = None, toolbox: ToolBox | None = None) -> None:
        self.manager = manager
        self.toolbox = toolbox or ToolBox({})
        self.bridge: Bridge = bridge or NoBridge()  # a run sets its TaskBridge
        self.models = {m.name: _model_spec(m) for m in program.models}
        self.schemas = {s.name: s for s in program.schemas}
        self.memories = memories  # the loader has checked every model's connection
        # The host's max_concurrent_model_calls, across every connection.
        self.limiter: Any = None
        # Per model: `(vm, [method, schema, args]) -> value` behind @cache / @log.
        self.decorated: dict[str, Any] = {
            m.name: chain(lambda vm, a: self.call(*a, vm=vm), [d for d in m.decorators if d.name in ("cache", "log")],
                          f"model `{m.name}`", "model:log")
            for m in program.models if any(d.name in ("cache", "log") for d in m.decorators)}

    # -- the VM's entry point ------------------------------------------------
    def call(self, receiver: Any, method: str, schema: str | None, args: list[Any], vm: Any = None) -> Any:
        """`vm` is the calling task's machine: tool calls a model asks for run on it."""
        if isinstance(receiver, ModelRef):
            builder = ModelBuilder(receiver.name)
        elif isinstance(receiver, ModelBuilder):
            builder = receiver
        else:
            raise ConcertoError(f"`{method}` needs a model, got {type(receiver).__name__}", "TypeError")
        spec = self.models.get(builder.model)
        if spec is None:
            raise ConcertoError(f"unknown model `{builder.model}`", "RuntimeError")
        if method in ("with_memory", "with_tools", "without_tools"):
            return self._build(builder, method, args)
        memory, auto = builder.memory, builder.auto
        if memory is None and spec.memory is not None:
            memory = self.memories.get(spec.memory)
        if method == "stream":
            return self._stream(spec, _prompt(args), memory, auto)
        turn = _Turn(self._toolset(spec, builder, vm), vm)
        failed = self._start_servers(spec, turn.tools)
        if failed is not None:
            return failed
        if method == "execute":
            return self._execute(spec, _prompt(args), memory, auto, turn)
        if method == "schema":
            retry_message = args[1] if len(args) > 1 else None
            return self._execute_schema(spec, _prompt(args), memory, auto, schema or "", retry_message, turn)
        if method == "chat":
            return self._chat(spec, args[0] if args else None, turn)
        raise ConcertoError(f"no method `{method}` on a model", "TypeError")

    def _build(self, builder: ModelBuilder, method: str, args: list[Any]) -> ModelBuilder:
        if method == "with_memory":
            store = args[0] if args else None
            if not isinstance(store, MemoryStore):
                raise ConcertoError("`with_memory` needs a memory", "TypeError")
            flag = args[1] if len(args) > 1 else True
            return builder.but(memory=store, auto=flag is not False)
        if method == "without_tools":
            return builder.but(no_default_tools=True)
        items = args[0] if args else None
        if not isinstance(items, list):
            raise ConcertoError("`with_tools` needs an Array of tools", "TypeError")
        names = []
        for item in items:
            name = self.toolbox.tool_of(item)
            if name is None:
                raise ConcertoError(f"`with_tools`: {debug(item)} is not a tool", "TypeError")
            names.append(name)
        return builder.but(extra_tools=builder.extra_tools + tuple(names))

    def _toolset(self, spec: ModelSpec, builder: ModelBuilder, vm: Any) -> ToolSet:
        """Spec 25 "Tool Resolution Order": the model's own tools unless
        without_tools(), then with_tools() ones, each once."""
        names = ([] if builder.no_default_tools else list(spec.tools)) + list(builder.extra_tools)
        if not names:
            return ToolSet()
        warn = (lambda text: vm.log("warn", f"model `{spec.name}`: {text}")) if vm is not None else None
        return self.toolbox.toolset(names, warn)

    # -- methods ------------------------------------------------------------------
    def _messages(self, spec: ModelSpec, prompt: str, memory: MemoryStore | None) -> list[ChatMessage]:
        out = []
        if spec.config.system_prompt:
            out.append(ChatMessage("system", spec.config.system_prompt))
        if memory is not None:
            out.extend(ChatMessage(r, c) for r, c in memory.messages)
        out.append(ChatMessage("user", prompt))
        return out

    def _request(self, spec: ModelSpec, messages: list[ChatMessage], stream: bool = False,
                 structured: StructuredOutput | None = None) -> ChatRequest:
        c = spec.config
        return ChatRequest(model=c.model or "", messages=messages, temperature=c.temperature,
                           max_tokens=c.max_tokens, top_p=c.top_p, stop=list(c.stop_sequences),
                           structured=structured, stream=stream)

    def _options(self, spec: ModelSpec) -> CallOptions:
        conn = self.manager.configs[spec.connection]
        return CallOptions(spec.name, spec.timeout or conn.timeout or DEFAULT_TIMEOUT, spec.retry)

    async def _acomplete(self, spec: ModelSpec, req: ChatRequest) -> tuple[Any, float]:
        started = time.perf_counter()
        try:
            if self.limiter is not None:
                async with self.limiter:
                    done = await self.manager.complete(spec.connection, req, self._options(spec))
            else:
                done = await self.manager.complete(spec.connection, req, self._options(spec))
        except CallFailed as failed:
            return self._agent_error(spec, req, failed), 0.0
        return done, (time.perf_counter() - started) * 1000

    def _complete(self, spec: ModelSpec, req: ChatRequest) -> tuple[Any, float]:
        return self.bridge.call(self._acomplete, spec, req)

    def _start_servers(self, spec: ModelSpec, tools: ToolSet) -> Err | None:
        """Start the MCP servers whose tools this call offers (spec 20 "Runtime
        Validation"); one that cannot start fails the call as an AgentError."""
        from concerto.vm.mcp import McpError

        for server in self.toolbox.servers(tools):
            try:
                self.bridge.call(self.toolbox.mcp.ready, server, self.bridge.spawn)
            except McpError as exc:
                return Err(self._error_value(spec, f"model `{spec.name}`: {exc}", "tool_unavailable",
                                             spec.config.model or "", attempts=0))
        return None

    def _converse(self, spec: ModelSpec, req: ChatRequest, turn: "_Turn") -> tuple[Any, float]:
        """One model call, with its tool loop (spec 25): while the reply asks
        for tools, run them and send the results back; at most
        MAX_TOOL_ROUNDS rounds. Tokens and latency add up over the rounds."""
        if not turn.tools or turn.vm is None:
            done, ms = self._complete(spec, req)
            return self._untooled(spec, req, done), ms
        req.tools = turn.tools.specs()
        messages = list(req.messages)
        tokens_in = tokens_out = 0
        latency = 0.0
        for _round in range(MAX_TOOL_ROUNDS + 1):
            req.messages = messages
            done, ms = self._complete(spec, req)
            if isinstance(done, Err):
                return done, 0.0
            latency += ms
            tokens_in += done.tokens_in or 0
            tokens_out += done.tokens_out or 0
            if not done.tool_calls or done.structured is not None:
                done.tokens_in, done.tokens_out = tokens_in, tokens_out
                return done, latency
            if _round == MAX_TOOL_ROUNDS:
                break
            messages = messages + [ChatMessage("assistant", done.text, tuple(done.tool_calls))]
            for call in done.tool_calls:
                outcome = self.toolbox.run(turn.vm, turn.tools, call.name, call.arguments, self.bridge)
                messages.append(ChatMessage("tool", outcome.content, tool_call_id=call.id, is_error=outcome.is_error))
            self.manager.metrics.record(spec.name, spec.connection, CallStats(tool_calls=len(done.tool_calls)))
        return Err(self._error_value(
            spec, f"model `{spec.name}` still asked for tools after {MAX_TOOL_ROUNDS} rounds of tool calls",
            "tool_loop", req.model, attempts=MAX_TOOL_ROUNDS + 1)), 0.0

    def _untooled(self, spec: ModelSpec, req: ChatRequest, done: Any) -> Any:
        """A reply to a request that offered no tools may not call one: its text
        (often empty) is not an answer, so it must not pass for Ok("")."""
        if isinstance(done, Err) or not done.tool_calls or done.structured is not None:
            return done
        self.manager.metrics.record(spec.name, spec.connection, CallStats(failures=1))
        names = ", ".join(f"`{c.name}`" for c in done.tool_calls)
        return Err(self._error_value(
            spec, f"model `{spec.name}` asked to call {names}, but no tools were offered to it",
            "unexpected_tool_call", done.model or req.model))

    def _execute(self, spec: ModelSpec, prompt: str, memory: MemoryStore | None, auto: bool, turn: "_Turn") -> Any:
        req = self._request(spec, self._messages(spec, prompt, memory))
        return self._executed(spec, prompt, memory, auto, *self._converse(spec, req, turn))

    async def aexecute(self, model: str, prompt: str, memory: MemoryStore | None = None, auto: bool = True) -> Any:
        """`Model.execute(prompt)` for async callers already on the event loop
        (many calls at once share the connection's limits)."""
        spec = self.models[model]
        req = self._request(spec, self._messages(spec, prompt, memory))
        done, latency = await self._acomplete(spec, req)
        return self._executed(spec, prompt, memory, auto, self._untooled(spec, req, done), latency)

    def _executed(self, spec: ModelSpec, prompt: str, memory: MemoryStore | None, auto: bool,
                  done: Any, latency: float) -> Any:
        if isinstance(done, Err):
            return done
        if memory is not None and auto:
            memory.append("user", prompt)
            memory.append("assistant", done.text)
        return Ok(self._response(spec, done, latency))

    def _chat(self, spec: ModelSpec, messages: Any, turn: "_Turn") -> Any:
        if not isinstance(messages, list):
            raise ConcertoError("`chat` needs an Array of messages", "TypeError")
        out = [ChatMessage("system", spec.config.system_prompt)] if spec.config.system_prompt else []
        for i, m in enumerate(messages):
            role, content = _message_parts(m, i)
            out.append(ChatMessage(role, content))
        done, latency = self._converse(spec, self._request(spec, out), turn)
        return done if isinstance(done, Err) else Ok(self._response(spec, done, latency))

    def _execute_schema(self, spec: ModelSpec, prompt: str, memory: MemoryStore | None, auto: bool,
                        schema_name: str, retry_message: Any, turn: "_Turn") -> Any:
        sdef = self.schemas.get(schema_name)
        if sdef is None:
            raise ConcertoError(f"unknown schema `{schema_name}`", "RuntimeError")
        provider = self.manager.provider_of(spec.connection)
        native = provider in NATIVE_STRUCTURED or provider == "mock"
        structured = StructuredOutput(schema_name.rsplit("::", 1)[-1], sdef.json_schema) if native else None
        # Spec 07: the schema is described in the prompt in every case; native
        # structured output is a stronger guarantee on top, not a replacement.
        first = f"{prompt}\n\n{schemas.describe_schema(sdef.json_schema)}"
        messages = self._messages(spec, first, memory)
        issues: list[schemas.SchemaIssue] = []
        raw = ""
        started = time.perf_counter()
        for attempt in range(1, spec.schema_attempts + 1):
            done, _ = self._converse(spec, self._request(spec, messages, structured=structured), turn)
            if isinstance(done, Err):
                return done
            raw = done.text
            if done.structured is not None:
                value, parse_issue = done.structured, None
            else:
                value, parse_issue = schemas.parse_json_reply(raw)
            if parse_issue is not None:
                issues = [parse_issue]
            else:
                value, issues = schemas.validate(value, sdef.json_schema, sdef.validation_mode)
            if not issues:
                if memory is not None and auto:
                    memory.append("user", prompt)
                    memory.append("assistant", raw)
                return Ok(to_value(value, sdef.json_schema, schema_name, sdef.validation_mode == "partial"))
            if attempt < spec.schema_attempts:
                feedback = str(retry_message) if isinstance(retry_message, str) else schemas.retry_prompt(issues, sdef.json_schema)
                messages = messages + [ChatMessage("assistant", raw), ChatMessage("user", feedback)]
        last = "; ".join(i.message for i in issues)
        return Err(StructValue("SchemaError", {
            "message": f"`{spec.name}` did not return a valid `{schema_name}` after {spec.schema_attempts} attempt(s): {last}",
            "kind": "max_retries_exceeded", "attempts": spec.schema_attempts, "last_error": last,
            "errors": [{"path": i.path, "kind": i.kind, "message": i.message} for i in issues],
            "raw_response": raw, "model": spec.name, "provider": spec.connection,
            "latency_ms": int((time.perf_counter() - started) * 1000),
        }))

    def _stream(self, spec: ModelSpec, prompt: str, memory: MemoryStore | None, auto: bool) -> Any:
        req = self._request(spec, self._messages(spec, prompt, memory), stream=True)

        def finished(text: str) -> None:
            if memory is not None and auto:
                memory.append("user", prompt)
                memory.append("assistant", text)

        stream = ModelStream(spec.name, finished, lambda failed: self._failure_value(spec, req, failed))
        self.bridge.spawn(self.manager.stream, spec.connection, req, self._options(spec), stream.deliver)
        # Like execute, a call that fails before any text arrives is an Err;
        # a failure after that reaches the loop as a thrown AgentError.
        first = self.bridge.call(stream.first)
        if isinstance(first, CallFailed):
            return Err(self._failure_value(spec, req, first))
        return Ok(stream)

    # -- results ----------------------------------------------------------------
    def _response(self, spec: ModelSpec, done: Any, latency_ms: float) -> StructValue:
        return StructValue("Response", {
            "text": done.text, "tokens_in": done.tokens_in or 0, "tokens_out": done.tokens_out or 0,
            "model": done.model or spec.config.model or "", "provider": self.manager.provider_of(spec.connection),
            "latency_ms": int(latency_ms),
        })

    def _agent_error(self, spec: ModelSpec, req: ChatRequest, failed: CallFailed) -> Err:
        return Err(self._failure_value(spec, req, failed))

    def _failure_value(self, spec: ModelSpec, req: ChatRequest, failed: CallFailed) -> StructValue:
        """The AgentError of a failed call: the same fields for execute,
        execute_with_schema, chat and stream (before or during the reply)."""
        e = failed.error
        message = f"model `{spec.name}`: {e.message}" + (f" (after {failed.attempts} attempts)" if failed.attempts > 1 else "")
        return self._error_value(spec, message, e.kind, req.model, e.status, failed.attempts)

    def _error_value(self, spec: ModelSpec, message: str, kind: str, model: str, status: int | None = None,
                     attempts: int = 1) -> StructValue:
        return StructValue("AgentError", {
            "message": self.manager.redactor.text(message), "kind": kind, "status": status, "model": model,
            "provider": spec.connection, "attempts": attempts,
        })


@dataclass(frozen=True)
class _Turn:
    """What one model call may use besides its prompt: the tools offered,
    and the machine their methods run on."""

    tools: ToolSet
    vm: Any


def _prompt(args: list[Any]) -> str:
    if not args or not isinstance(args[0], str):
        raise ConcertoError("a prompt must be a String", "TypeError")
    return args[0]


def _message_parts(m: Any, i: int) -> tuple[str, str]:
    if isinstance(m, StructValue):
        fields = m.fields
    elif isinstance(m, dict):
        fields = m
    else:
        raise ConcertoError(f"chat message {i} is not a Message", "TypeError")
    role, content = fields.get("role"), fields.get("content")
    if role not in ("system", "user", "assistant") or not isinstance(content, str):
        raise ConcertoError(f"chat message {i} needs role system|user|assistant and String content", "TypeError")
    return role, content


def to_value(data: Any, schema: dict[str, Any], type_name: str, partial: bool = False) -> Any:
    """Validated JSON -> Concerto value: schema objects become structs of the
    schema type, optional fields Option values, everything else stays plain."""
    if "anyOf" in schema:
        branch = next((b for b in schema["anyOf"] if b.get("type") != "null"), {})
        return to_value(data, branch, type_name) if data is not None else None
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        name = schema.get("title", type_name)
        required = set(schema.get("required", ()))
        fields: dict[str, Any] = {}
        for field_name, sub in schema["properties"].items():
            optional = (field_name not in required and "default" not in sub) or (partial and "default" not in sub)
            present = isinstance(data, dict) and field_name in data and data[field_name] is not None
            if optional:
                fields[field_name] = Some(to_value(data[field_name], sub, name)) if present else NONE
            else:
                fields[field_name] = to_value(data[field_name], sub, name) if present else None
        return StructValue(name, fields)
    if kind == "array" and isinstance(data, list):
        items = schema.get("items", {})
        return [to_value(v, items, type_name) for v in data]
    if kind == "object" and isinstance(data, dict):
        inner = schema.get("additionalProperties", {})
        inner = inner if isinstance(inner, dict) else {}
        return {k: to_value(v, inner, type_name) for k, v in data.items()}
    if kind == "number" and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    return data


def build_runtime(program: Any, *, environ: Any = None, overrides: Any = None, mock: bool = False,
                  mock_replies: str | None = None, bridge: Bridge | None = None,
                  tool_permissions: ToolPermissions | None = None, **manager_options: Any) -> ModelRuntime | None:
    """The model runtime for a linked program (vm.loader.Program), or None when
    it declares no models. Raises connections.ConfigError, naming the
    connection and the variable, when a key is missing: before any request."""
    import os

    from concerto.vm.llm_values import MemoryStore as _Memory

    ir_program = program.ir
    if not ir_program.models:
        return None
    manager = ConnectionManager(
        {c.name: c.config for c in ir_program.connections},
        environ=os.environ if environ is None else environ,
        overrides=overrides or {},
        mock_all=mock,
        mock_replies=mock_replies,
        **manager_options,
    )
    memories = {m.name: program.globals[m.name][0] for m in ir_program.memories
                if isinstance(program.globals.get(m.name, [None])[0], _Memory)}
    servers = None
    if ir_program.mcp_connections:
        from concerto.vm.mcp_servers import McpServers

        servers = McpServers(ir_program.mcp_connections, manager.environ)
    return ModelRuntime(ir_program, manager, memories, bridge, ToolBox(program.tools, tool_permissions, servers))
