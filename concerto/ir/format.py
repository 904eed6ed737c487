"""The `.conc-ir` format (spec 16) as msgspec Structs: one definition, used by
the compiler to write IR and by the VM loader to read it.

Where spec 16 leaves a detail open, this module fixes it (docs/ir.md):
* jump targets (`arg` of JUMP*, TRY_BEGIN) are absolute instruction indexes;
* LOAD_LOCAL/STORE_LOCAL name a local from the function's `locals` list
  (shadowed bindings get distinct names such as `x.1`);
* a handful of opcodes the spec does not list carry what it has no opcode
  for (closures, tuples, ranges, enum variants, pattern tests); the opcode
  table (concerto/ir/opcodes.py) marks them as extensions.
"""

from __future__ import annotations

from typing import Any

import msgspec

IR_VERSION = "0.1.0"


class Instr(msgspec.Struct, omit_defaults=True):
    op: str
    arg: Any = None
    name: str | None = None
    argc: int | None = None
    type_name: str | None = None
    names: list[str] | None = None
    span: tuple[int, int] = (0, 0)


class Constant(msgspec.Struct):
    index: int
    type: str  # string | int | float | bool | nil
    value: Any


class Param(msgspec.Struct, omit_defaults=True):
    name: str
    type: Any = "any"
    default: Any = None  # index of a function computing the default, if any


class DecoratorDef(msgspec.Struct):
    name: str
    args: dict[str, Any] = {}


# Function, Metadata and Program always write every field spec 16 lists, even
# at its default, so a reader never has to know our defaults.
class Function(msgspec.Struct):
    name: str
    module: str = "main"
    visibility: str = "private"
    params: list[Param] = []
    return_type: Any = "nil"
    is_async: bool = False
    locals: list[str] = []
    instructions: list[Instr] = []
    # Extensions: closures list the names they capture (the first locals
    # after the params); methods name their receiver type.
    captures: list[str] = []
    self_type: str | None = None
    # Extension: `@retry`, `@timeout`, `@cache`, `@log` on a function.
    decorators: list[DecoratorDef] = []


class FieldDef(msgspec.Struct, omit_defaults=True):
    name: str
    type: Any = "any"
    required: bool | None = None


class VariantDef(msgspec.Struct, omit_defaults=True):
    name: str
    data: list[dict[str, Any]] = []
    fields: list[FieldDef] | None = None  # struct-like variants


class TypeDef(msgspec.Struct, omit_defaults=True):
    name: str
    kind: str  # struct | enum | schema | trait | alias
    fields: list[FieldDef] | None = None
    variants: list[VariantDef] | None = None
    methods: list[str] | None = None
    target: Any = None  # alias target


class HashMapDef(msgspec.Struct, omit_defaults=True):
    name: str
    key_type: Any = "string"
    value_type: Any = "any"
    persistence: Any = None


class RetryConfig(msgspec.Struct):
    """`[connections.NAME.retry]` (spec 22). max_attempts counts the first try."""

    max_attempts: int = 1
    backoff: str = "none"  # none | linear | exponential
    initial_delay_ms: int = 1000
    max_delay_ms: int = 30000
    # The longest Retry-After (or rate-limit reset) honoured; a provider asking
    # for more ends the call at once (docs/semantics.md "Retry-After cap").
    max_retry_after_ms: int = 60000


class RateLimitConfig(msgspec.Struct):
    """`[connections.NAME.rate_limit]`; None means unlimited."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None


class Pricing(msgspec.Struct):
    """US dollars per million tokens."""

    input_per_mtok: float
    output_per_mtok: float


class ConnectionConfig(msgspec.Struct):
    """One `[connections.NAME]` table. Holds the *name* of the key's
    environment variable, never the key."""

    provider: str  # openai | anthropic | ollama | custom | mock
    api_key_env: str | None = None
    base_url: str | None = None
    default_model: str | None = None
    timeout: float = 30.0
    organization: str | None = None
    project: str | None = None
    headers: dict[str, str] = {}
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)
    rate_limit: RateLimitConfig = msgspec.field(default_factory=RateLimitConfig)
    models: dict[str, str] = {}  # aliases
    pricing: dict[str, Pricing] = {}  # model id -> price, overrides the built-in table
    replies: str | None = None  # mock provider: scripted replies (JSON file)
    # Secret headers: header name -> the environment variable holding its value.
    headers_env: dict[str, str] = {}
    # Largest reply body (streams: in total) accepted; None: 16 MiB.
    max_response_bytes: int | None = None
    # Longest gap between two events of a streamed reply; None: min(timeout, 60 s).
    stream_idle_timeout: float | None = None


class ConnectionDef(msgspec.Struct):
    name: str
    config: ConnectionConfig


class ModelConfig(msgspec.Struct, omit_defaults=True):
    """A model's settings (spec 07 fields; `model` is the resolved `base`)."""

    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    system_prompt: str | None = None
    timeout: float | None = None
    stop_sequences: list[str] = []
    retry_policy: dict[str, Any] | None = None


class ModelDef(msgspec.Struct):
    name: str
    connection: str
    module: str = "main"
    config: ModelConfig = msgspec.field(default_factory=ModelConfig)
    tools: list[str] = []
    memory: str | None = None
    decorators: list[DecoratorDef] = []
    methods: list[Any] = []


class ToolField(msgspec.Struct, omit_defaults=True):
    """A tool's state field; `default` is its JSON value (spec 20 mapping)."""

    name: str
    type: Any = "any"
    default: Any = None


class ToolParam(msgspec.Struct, omit_defaults=True):
    name: str
    type: Any = "any"
    description: str = ""
    # A parameter with a default (or an Option) may be left out by the model.
    required: bool = True
    default: Any = None  # JSON value of a literal default


class ToolSchemaEntry(msgspec.Struct):
    """What the model is shown for one method (spec 25): `Tool::method`, its
    description and the JSON Schema of its arguments object."""

    method_name: str
    description: str
    parameters: dict[str, Any]


class ToolMethod(msgspec.Struct, omit_defaults=True):
    name: str
    function: str  # the compiled method, a name in `functions` (`Tool::method`)
    description: str = ""
    params: list[ToolParam] = []
    return_type: Any = "any"


class ToolDef(msgspec.Struct):
    """A `tool` declaration (spec 08, 16): its state and its `pub fn` methods.
    Methods reference compiled functions instead of carrying instructions
    inline, as pipeline stages do."""

    name: str
    module: str = "main"
    description: str = ""
    fields: list[ToolField] = []
    methods: list[ToolMethod] = []
    tool_schemas: list[ToolSchemaEntry] = []


class McpToolDef(msgspec.Struct, omit_defaults=True):
    """One tool an MCP server is declared to provide (spec 08 `mcp` blocks)."""

    name: str
    description: str = ""
    params: list[ToolParam] = []
    return_type: Any = "any"


class McpDef(msgspec.Struct, omit_defaults=True):
    """An `mcp` declaration: its typed tools (source) and how to reach the
    server (Concerto.toml `[mcp.NAME]`, or the block's own settings). `env`
    maps a variable the server sees to the variable of ours that supplies it:
    names only, never values."""

    name: str
    module: str = "main"
    transport: str | None = None  # stdio | sse
    command: str | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    url: str | None = None
    timeout: float | None = None
    tools: list[McpToolDef] = []
    tool_schemas: list[ToolSchemaEntry] = []


class StageDef(msgspec.Struct):
    """One pipeline stage: a function of one parameter (spec 15, 30)."""

    name: str
    function: str  # the compiled stage body, a name in `functions`
    input_type: Any = "any"
    output_type: Any = "any"
    decorators: list[DecoratorDef] = []


class PipelineDef(msgspec.Struct):
    name: str
    module: str = "main"
    input_type: Any = "any"
    output_type: Any = "any"
    stages: list[StageDef] = []


class SchemaDef(msgspec.Struct):
    name: str
    json_schema: dict[str, Any]
    validation_mode: str = "strict"  # strict | partial | coerce


class MemoryDef(msgspec.Struct):
    name: str
    max_messages: int | None = None


class Mapping(msgspec.Struct):
    function: str
    instruction: int
    line: int
    column: int


class SourceMap(msgspec.Struct):
    file: str
    mappings: list[Mapping] = []


class Metadata(msgspec.Struct):
    compiler_version: str
    entry_point: str = "main"
    optimization_level: int = 0
    debug_info: bool = True
    compiled_at: str | None = None
    # Extension: the function that initialises module-level values (consts,
    # hashmaps) before the entry point runs.
    init: str | None = None


class Program(msgspec.Struct):
    version: str
    module: str
    source_file: str
    constants: list[Constant]
    types: list[TypeDef]
    functions: list[Function]
    models: list[ModelDef] = []
    tools: list[ToolDef] = []
    mcp_connections: list[McpDef] = []
    schemas: list[SchemaDef] = []
    connections: list[ConnectionDef] = []
    hashmaps: list[HashMapDef] = []
    pipelines: list[PipelineDef] = []
    memories: list[MemoryDef] = []  # spec 24
    source_map: SourceMap | None = None
    metadata: Metadata | None = None


REQUIRED_SECTIONS = ("version", "module", "constants", "types", "functions")

def encode(program: Program, pretty: bool = True) -> bytes:
    raw = msgspec.json.encode(program)
    if not pretty:
        return raw
    return msgspec.json.format(raw, indent=2)


def decode(data: bytes | str) -> Program:
    return msgspec.json.decode(data, type=Program)
