"""The Anthropic Messages wire format: POST {base_url}/v1/messages with
`x-api-key` and `anthropic-version`.

The API differs from OpenAI's in ways build_request must bridge: system
prompts go in a top-level `system` string, the messages must alternate
user/assistant starting with user, and `max_tokens` is required.

Tool calling: an assistant turn that asked for tools becomes text plus
`tool_use` blocks, and the results go back as `tool_result` blocks at the
start of the next user turn.

Structured output is tool use: one extra tool whose input_schema is the
(normalised) schema. Alone it is forced with a tool_choice naming it; next to
the caller's own tools the choice is "any" (the model may gather data with a
user tool first). The output tool's `input` is the answer, and that call is
not reported among the tool calls to run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from concerto.vm.providers.base import (
    ChatMessage,
    ChatRequest,
    Completion,
    Endpoint,
    HttpCall,
    ProviderError,
    StreamDelta,
    StructuredOutput,
    ToolCall,
)
from concerto.vm.providers.headers import merge_headers, retry_after_seconds
from concerto.vm.providers.openai import (
    decode_json,
    error_fields,
    http_error_message,
    join_url,
    one_line,
    status_kind,
    token_count,
    tool_name,
)

NAME = "anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
# The API requires max_tokens; this is sent when the request sets none.
DEFAULT_MAX_TOKENS = 4096
# Sent as the first turn when a conversation does not start with a user
# message (the API rejects that); short so it steers the model as little as can be.
LEAD_IN = "(continue)"

# Error `type` values of the API (HTTP bodies and stream `error` events).
ERROR_KINDS = {
    "invalid_request_error": "bad_request",
    "request_too_large": "bad_request",
    "authentication_error": "auth",
    "permission_error": "auth",
    "billing_error": "quota",
    "not_found_error": "not_found",
    "rate_limit_error": "rate_limit",
    "api_error": "server",
    "timeout_error": "timeout",
    "overloaded_error": "overloaded",
}


def invalid(message: str) -> ProviderError:
    return ProviderError("invalid_response", f"{NAME}: {message}")


# ---------------------------------------------------------------------------
# Request
# ---------------------------------------------------------------------------

def messages_url(base_url: str) -> str:
    """{base}/v1/messages; a base that already ends in /v1 is not doubled."""
    base = base_url.rstrip("/")
    return join_url(base, "messages" if base.endswith("/v1") else "v1/messages")


def _headers(endpoint: Endpoint) -> dict[str, str]:
    ours = {"content-type": "application/json", "anthropic-version": API_VERSION}
    if endpoint.api_key:
        ours["x-api-key"] = endpoint.api_key
    return merge_headers(ours, endpoint.headers)


# A turn's content: a plain string, or a list of content blocks.
Content = str | list[dict[str, Any]]


def split_messages(messages: list[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    """(system, turns): every system message joined into one string, and the
    rest as turns that alternate user/assistant and start with user.

    Consecutive same-role messages are merged (the API rejects two in a row),
    empty ones dropped (it rejects empty content), and the final assistant turn
    - a prefill - loses trailing whitespace (it rejects that too). Tool results
    are user turns; roles other than assistant are sent as user."""
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content.strip())
    turns: list[dict[str, Any]] = []
    for m in messages:
        turn = None if m.role == "system" else _turn(m)
        if turn is None:
            continue
        if turns and turns[-1]["role"] == turn["role"]:
            turns[-1]["content"] = _merge(turns[-1]["content"], turn["content"])
        else:
            turns.append(turn)
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": LEAD_IN})
    if turns[-1]["role"] == "assistant":
        turns[-1]["content"] = _trim_prefill(turns[-1]["content"])
    return system, turns


def _turn(m: ChatMessage) -> dict[str, Any] | None:
    """One non-system message as a turn, or None when it has nothing to send."""
    if m.role == "tool":
        return {"role": "user", "content": [_tool_result(m)]}
    if m.role == "assistant" and m.tool_calls:
        # Kept even with no text: every tool_result must answer a tool_use.
        text = [{"type": "text", "text": m.content}] if m.content.strip() else []
        return {"role": "assistant", "content": text + [_tool_use_block(c) for c in m.tool_calls]}
    if not m.content.strip():
        return None
    return {"role": "assistant" if m.role == "assistant" else "user", "content": m.content}


def _tool_use_block(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}


def _tool_result(m: ChatMessage) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
    if m.is_error:
        block["is_error"] = True
    return block


def _blocks_of(content: Content) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _merge(first: Content, second: Content) -> Content:
    """Two same-role contents as one: strings stay a string (today's shape),
    anything else becomes one block list."""
    if isinstance(first, str) and isinstance(second, str):
        return first + "\n\n" + second
    blocks = _blocks_of(first) + _blocks_of(second)
    # The API requires a user turn's tool_result blocks before any other block;
    # the sort is stable, so each group keeps its order.
    return sorted(blocks, key=lambda block: block.get("type") != "tool_result")


def _trim_prefill(content: Content) -> Content:
    """A final assistant turn without trailing whitespace (the API rejects it)."""
    if isinstance(content, str):
        return content.rstrip()
    if content and content[-1].get("type") == "text":
        # Text blocks here are never blank (blank ones are not sent), so this
        # cannot leave an empty block behind.
        return content[:-1] + [{**content[-1], "text": content[-1]["text"].rstrip()}]
    return content


def _structured_tool(out: StructuredOutput) -> dict[str, Any]:
    # Lazy import: vm.schema is only needed for structured output.
    from concerto.vm.schema import normalize_for_anthropic

    return {"name": tool_name(out.name), "description": f"Return the answer as a {out.name} object.",
            "input_schema": normalize_for_anthropic(out.schema)}


def _output_choice(name: str, own_tools: bool) -> dict[str, Any]:
    """Forcing the output tool would stop the model from ever calling the
    caller's tools; "any" still rules out a plain-text reply."""
    return {"type": "any"} if own_tools else {"type": "tool", "name": name}


def build_request(req: ChatRequest, endpoint: Endpoint) -> HttpCall:
    system, turns = split_messages(req.messages)
    max_tokens = req.max_tokens if req.max_tokens is not None else DEFAULT_MAX_TOKENS
    body: dict[str, Any] = {"model": req.model, "max_tokens": max_tokens, "messages": turns}
    if system:
        body["system"] = system
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop_sequences"] = list(req.stop)
    tools = [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in req.tools]
    if req.structured is not None:
        output = _structured_tool(req.structured)
        tools.append(output)
        body["tool_choice"] = _output_choice(output["name"], own_tools=bool(req.tools))
    if tools:
        body["tools"] = tools
    if req.stream:
        body["stream"] = True
    return HttpCall(messages_url(endpoint.base_url), _headers(endpoint), body)


# ---------------------------------------------------------------------------
# Reply
# ---------------------------------------------------------------------------

def _payload_error(err: Any, status: int | None) -> ProviderError:
    """An {"type": "error", "error": {...}} payload: a stream event, or a 200 body."""
    err = err if isinstance(err, dict) else {}
    etype = err.get("type") if isinstance(err.get("type"), str) else ""
    message = err.get("message") if isinstance(err.get("message"), str) else etype or "error"
    # An unknown type mid-stream is most likely transient: let it be retried.
    return ProviderError(ERROR_KINDS.get(etype, "server"), f"{NAME}: {one_line(message)}", status)


def _blocks(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, dict):
        raise invalid("reply is not a JSON object")
    content = data.get("content")
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise invalid("reply lacks a list of content blocks")
    return content


def _tool_use(block: dict[str, Any]) -> ToolCall:
    name, args = block.get("name"), block.get("input")
    if not isinstance(name, str) or not isinstance(args, dict):
        raise invalid("a tool_use block lacks its name or input object")
    block_id = block.get("id")
    return ToolCall(block_id if isinstance(block_id, str) else "", name, args)


def _structured_call(calls: list[ToolCall], text: str, structured_tool: str | None) -> ToolCall | None:
    """The tool call that carries a structured answer, if any.

    parse_response does not see the request, so without `structured_tool`
    this is the shape forced tool use produces: a single tool_use block and no
    text. (reply_parser passes the name, so the connection manager never guesses.)"""
    if structured_tool is not None:
        return next((c for c in calls if c.name == structured_tool), None)
    return calls[0] if len(calls) == 1 and not text.strip() else None


def parse_response(status: int, headers: Mapping[str, str], body: bytes,
                   structured_tool: str | None = None) -> Completion:
    """The reply as a Completion. When `structured_tool` names the output tool,
    its call is the structured answer and the other calls are the tool_calls
    to run; without it, a lone tool_use with no text is taken as the answer."""
    done = _plain_reply(status, headers, body)
    chosen = _structured_call(done.tool_calls, done.text, structured_tool)
    if chosen is not None:
        done.structured = chosen.arguments
        done.text = json.dumps(chosen.arguments, separators=(",", ":"), ensure_ascii=False)
        if structured_tool is not None:
            # The answer is not a call for the runtime to run.
            done.tool_calls = [c for c in done.tool_calls if c is not chosen]
    return done


def reply_parser(req: ChatRequest) -> Callable[[int, Mapping[str, str], bytes], Completion]:
    """The parse_response to use for `req`'s reply: told the output tool's
    name when `req` asked for structured output, and never guessing a
    structured answer when it did not (a lone call is then a user tool's)."""
    if req.structured is None:
        return _plain_reply
    return partial(parse_response, structured_tool=tool_name(req.structured.name))


def _plain_reply(status: int, headers: Mapping[str, str], body: bytes) -> Completion:
    """Text and every tool call, with no structured answer picked out."""
    data = decode_json(NAME, body)
    if isinstance(data, dict) and data.get("type") == "error":
        raise _payload_error(data.get("error"), status)
    blocks = _blocks(data)
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in blocks:
        if block.get("type") == "text":
            if not isinstance(block.get("text"), str):
                raise invalid("a text block has no text")
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append(_tool_use(block))
        # thinking, redacted_thinking, server tool blocks: nothing for us
    stop = data.get("stop_reason") if isinstance(data.get("stop_reason"), str) else None
    if stop == "refusal":
        raise ProviderError("content_filter", f"{NAME}: the model refused to answer", status)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    model = data.get("model") if isinstance(data.get("model"), str) else ""
    return Completion("".join(texts), model, token_count(usage.get("input_tokens")),
                      token_count(usage.get("output_tokens")), stop, calls)


def classify_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    message, etype = error_fields(body)
    # "overloaded_error" can come with statuses other than 529 (through proxies);
    # "billing_error" (402, out of credit) is not helped by waiting.
    kind = {"overloaded_error": "overloaded", "billing_error": "quota"}.get(etype) or status_kind(status)
    return ProviderError(kind, http_error_message(NAME, status, message), status, retry_after_seconds(headers))


# ---------------------------------------------------------------------------
# Stream
# ---------------------------------------------------------------------------

class StreamParser:
    """Server-sent events: `event: X` / `data: {...}` pairs, ended by message_stop.

    The JSON's own "type" names the event; the `event:` line is only a
    fallback for a payload without one. ping, content_block_start/stop and
    non-text deltas (tool input JSON, thinking) carry nothing for us."""

    def __init__(self) -> None:
        self.done = False
        self.model: str | None = None
        self._event = ""

    def feed_line(self, line: str) -> list[StreamDelta]:
        if line.startswith("event:"):
            self._event = line[6:].strip()
            return []
        if self.done or not line.startswith("data:"):
            return []
        payload = line[5:].strip()
        try:
            data = json.loads(payload)
        except (ValueError, RecursionError):
            raise invalid(f"stream event is not JSON: {one_line(payload, 80)!r}") from None
        if not isinstance(data, dict):
            raise invalid("stream event is not a JSON object")
        kind = data.get("type") if isinstance(data.get("type"), str) else self._event
        handlers = {
            "message_start": self._on_message_start,
            "content_block_delta": self._on_content_block_delta,
            "message_delta": self._on_message_delta,
            "message_stop": self._on_message_stop,
            "error": self._on_error,
        }
        handler = handlers.get(kind)
        return handler(data) if handler is not None else []

    def _on_message_start(self, data: dict[str, Any]) -> list[StreamDelta]:
        message = data.get("message") if isinstance(data.get("message"), dict) else {}
        self.model = message.get("model") if isinstance(message.get("model"), str) else None
        usage = message.get("usage") if isinstance(message.get("usage"), dict) else {}
        return [StreamDelta(tokens_in=token_count(usage.get("input_tokens")), model=self.model)]

    def _on_content_block_delta(self, data: dict[str, Any]) -> list[StreamDelta]:
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        text = delta.get("text")
        if delta.get("type") == "text_delta" and isinstance(text, str) and text:
            return [StreamDelta(text=text, model=self.model)]
        return []

    def _on_message_delta(self, data: dict[str, Any]) -> list[StreamDelta]:
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        stop = delta.get("stop_reason") if isinstance(delta.get("stop_reason"), str) else None
        if stop == "refusal":
            raise ProviderError("content_filter", f"{NAME}: the model refused to answer")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        # output_tokens here is the running total for the whole reply.
        return [StreamDelta(tokens_in=token_count(usage.get("input_tokens")),
                            tokens_out=token_count(usage.get("output_tokens")), finish_reason=stop, model=self.model)]

    def _on_message_stop(self, data: dict[str, Any]) -> list[StreamDelta]:
        self.done = True
        return [StreamDelta(done=True, model=self.model)]

    def _on_error(self, data: dict[str, Any]) -> list[StreamDelta]:
        raise _payload_error(data.get("error"), None)

    def finish(self) -> list[StreamDelta]:
        if not self.done:
            raise ProviderError("stream_cut", f"{NAME}: the stream ended before message_stop")
        return []
