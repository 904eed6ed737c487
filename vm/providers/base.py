"""What every provider adapter speaks: a provider-neutral chat request in, an
HTTP call description out; an HTTP reply in, a Completion (or a ProviderError)
out. Adapters never send anything themselves: the connection manager
(vm/connections.py) owns the httpx client, rate limits, retries and timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    role: str  # system | user | assistant | tool
    content: str
    # An assistant turn that asked for tools carries its calls (content may be "").
    tool_calls: tuple[ToolCall, ...] = ()
    # A "tool" turn answers one call: the call's id, and whether content reports a failure.
    tool_call_id: str | None = None
    is_error: bool = False


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call (OpenAI `tools`, Anthropic `tools`)."""

    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments object


@dataclass(frozen=True)
class StructuredOutput:
    """Ask the provider for JSON matching `schema` (already normalised by the caller
    is NOT assumed: adapters normalise with vm.schema.normalize_for_*)."""

    name: str
    schema: dict[str, Any]


@dataclass
class ChatRequest:
    model: str
    messages: list[ChatMessage]  # in order; may start with role "system"
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[ToolSpec] = field(default_factory=list)
    structured: StructuredOutput | None = None
    stream: bool = False


@dataclass(frozen=True)
class HttpCall:
    """What to send: the connection manager adds nothing but the transport."""

    url: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Completion:
    text: str
    model: str
    tokens_in: int | None = None  # None when the provider sent no usage
    tokens_out: int | None = None
    finish_reason: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    # The JSON object of a structured reply when the provider returned it as a
    # tool call (Anthropic forced tool use) rather than as text.
    structured: Any = None


@dataclass
class StreamDelta:
    """One event of a streamed reply: text to deliver now, and/or usage/final info."""

    text: str = ""
    tokens_in: int | None = None
    tokens_out: int | None = None
    finish_reason: str | None = None
    model: str | None = None
    done: bool = False


class ProviderError(Exception):
    """A failed call, classified so the connection manager can decide to retry.

    kind: rate_limit | overloaded | server | timeout | network | auth |
          bad_request | not_found | invalid_response | content_filter | stream_cut |
          quota (out of credit: OpenAI insufficient_quota, Anthropic billing_error) |
          response_too_large (past the connection's max_response_bytes)
    retry_after: seconds the provider asked us to wait (Retry-After,
          retry-after-ms or a rate-limit reset header), if any.
    """

    RETRYABLE = frozenset({"rate_limit", "overloaded", "server", "timeout", "network", "stream_cut"})

    def __init__(self, kind: str, message: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in self.RETRYABLE


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach a provider: the connection's resolved settings."""

    base_url: str
    api_key: str | None
    headers: dict[str, str] = field(default_factory=dict)
    organization: str | None = None
    project: str | None = None
