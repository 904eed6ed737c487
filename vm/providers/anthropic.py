"""The Anthropic Messages wire format: POST {base_url}/v1/messages with
x-api-key and anthropic-version; system prompts go in the top-level `system`.

Structured output is forced tool use: one tool whose input_schema is the
schema, and tool_choice naming it; the tool call's `input` is the answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from concerto.vm.providers.base import (
    ChatRequest,
    Completion,
    Endpoint,
    HttpCall,
    ProviderError,
    StreamDelta,
    ToolCall,
)
from concerto.vm.providers.headers import retry_after_seconds
from concerto.vm.providers.openai import join_url, tool_name

NAME = "anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
# The API requires max_tokens; this is used when the model sets none.
DEFAULT_MAX_TOKENS = 4096


def _alternating(req: ChatRequest) -> tuple[str, list[dict[str, Any]]]:
    """System text apart; the rest merged so roles alternate, starting with user."""
    system = "\n\n".join(m.content for m in req.messages if m.role == "system")
    turns: list[dict[str, Any]] = []
    for m in req.messages:
        if m.role == "system":
            continue
        if turns and turns[-1]["role"] == m.role:
            turns[-1]["content"] += "\n\n" + m.content
        else:
            turns.append({"role": m.role, "content": m.content})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": "(continue)"})
    return system, turns


def build_request(req: ChatRequest, endpoint: Endpoint) -> HttpCall:
    headers = {"content-type": "application/json", "anthropic-version": API_VERSION, **endpoint.headers}
    if endpoint.api_key:
        headers["x-api-key"] = endpoint.api_key
    system, turns = _alternating(req)
    body: dict[str, Any] = {"model": req.model, "max_tokens": req.max_tokens or DEFAULT_MAX_TOKENS, "messages": turns}
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
        from concerto.vm.schema import normalize_for_anthropic

        name = tool_name(req.structured.name)
        tools.append({"name": name, "description": f"Return the answer as a {req.structured.name} object.",
                      "input_schema": normalize_for_anthropic(req.structured.schema)})
        body["tool_choice"] = {"type": "tool", "name": name}
    if tools:
        body["tools"] = tools
    if req.stream:
        body["stream"] = True
    base = endpoint.base_url.rstrip("/")
    url = join_url(base, "messages") if base.endswith("/v1") else join_url(base, "v1/messages")
    return HttpCall(url, headers, body)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_response(status: int, headers: Mapping[str, str], body: bytes, structured_tool: str | None = None) -> Completion:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ProviderError("invalid_response", f"{NAME}: reply is not JSON: {body[:80].decode('utf-8', 'replace')!r}") from None
    try:
        blocks = data["content"]
        texts, calls = [], []
        for block in blocks:
            if block.get("type") == "text":
                texts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_use":
                args = block.get("input")
                calls.append(ToolCall(str(block.get("id", "")), str(block["name"]),
                                      args if isinstance(args, dict) else {"value": args}))
        usage = data.get("usage") or {}
        stop = data.get("stop_reason")
        model = str(data.get("model", ""))
    except (KeyError, TypeError, AttributeError):
        raise ProviderError("invalid_response", f"{NAME}: reply lacks a content list") from None
    if stop == "refusal":
        raise ProviderError("content_filter", f"{NAME}: the model refused to answer", status)
    done = Completion("".join(texts), model, _int(usage.get("input_tokens")), _int(usage.get("output_tokens")), stop, calls)
    # With forced tool use the structured answer is the (only) tool call's input.
    if calls and not texts or (structured_tool and any(c.name == structured_tool for c in calls)):
        chosen = next((c for c in calls if c.name == structured_tool), calls[0]) if calls else None
        if chosen is not None:
            done.structured = chosen.arguments
            done.text = json.dumps(chosen.arguments)
    return done


def classify_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    message, etype = "", ""
    try:
        data = json.loads(body)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            message, etype = str(err.get("message") or ""), str(err.get("type") or "")
    except (ValueError, UnicodeDecodeError):
        pass
    return ProviderError(_kind(status, etype), f"{NAME}: HTTP {status}" + (f": {message}" if message else ""),
                         status, retry_after_seconds(headers))


def _kind(status: int, etype: str) -> str:
    if status == 529 or etype == "overloaded_error":
        return "overloaded"
    if status == 429 or etype == "rate_limit_error":
        return "rate_limit"
    if status >= 500 or etype == "api_error":
        return "server"
    if status in (401, 403) or etype in ("authentication_error", "permission_error"):
        return "auth"
    if status == 404 or etype == "not_found_error":
        return "not_found"
    return "bad_request"


class StreamParser:
    """`event: X` / `data: {...}` pairs, ended by message_stop."""

    def __init__(self) -> None:
        self.done = False
        self.model: str | None = None

    def feed_line(self, line: str) -> list[StreamDelta]:
        if not line.startswith("data:"):
            return []
        try:
            data = json.loads(line[5:].strip())
        except ValueError:
            raise ProviderError("invalid_response", f"{NAME}: stream event is not JSON") from None
        if not isinstance(data, dict):
            raise ProviderError("invalid_response", f"{NAME}: stream event is not an object")
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self.model = message.get("model") if isinstance(message.get("model"), str) else None
            usage = message.get("usage") or {}
            return [StreamDelta(tokens_in=_int(usage.get("input_tokens")), model=self.model)]
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                return [StreamDelta(text=delta["text"], model=self.model)]
            return []
        if kind == "message_delta":
            usage = data.get("usage") or {}
            stop = (data.get("delta") or {}).get("stop_reason")
            return [StreamDelta(tokens_out=_int(usage.get("output_tokens")), finish_reason=stop, model=self.model)]
        if kind == "message_stop":
            self.done = True
            return [StreamDelta(done=True, model=self.model)]
        if kind == "error":
            err = data.get("error") or {}
            etype = str(err.get("type", ""))
            raise ProviderError(_kind(0, etype) if etype else "server", f"{NAME}: {err.get('message', 'stream error')}")
        return []  # ping, content_block_start/stop

    def finish(self) -> list[StreamDelta]:
        if not self.done:
            raise ProviderError("stream_cut", f"{NAME}: the stream ended before message_stop")
        return []
