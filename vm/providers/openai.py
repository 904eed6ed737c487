"""The OpenAI Chat Completions wire format (also spoken by `ollama` and
`custom` connections): POST {base_url}/chat/completions.

Pure functions: build_request, parse_response, classify_error and a
StreamParser for the SSE stream; the connection manager does the sending.
"""

from __future__ import annotations

import json
import re
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

NAME = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def join_url(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def tool_name(name: str) -> str:
    """Names the API accepts: ^[a-zA-Z0-9_-]{1,64}$."""
    clean = re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64]
    return clean or "output"


def build_request(req: ChatRequest, endpoint: Endpoint) -> HttpCall:
    headers = {"Content-Type": "application/json", **endpoint.headers}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    if endpoint.organization:
        headers["OpenAI-Organization"] = endpoint.organization
    if endpoint.project:
        headers["OpenAI-Project"] = endpoint.project
    messages = [{"role": m.role, "content": m.content} for m in req.messages]
    body: dict[str, Any] = {"model": req.model, "messages": messages}
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.max_tokens is not None:
        body["max_tokens"] = req.max_tokens
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop"] = list(req.stop)
    if req.tools:
        body["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                            "parameters": t.parameters}} for t in req.tools]
    if req.structured is not None:
        from concerto.vm.schema import normalize_for_openai, openai_strict_supported

        schema = req.structured.schema
        if openai_strict_supported(schema):
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": tool_name(req.structured.name), "schema": normalize_for_openai(schema), "strict": True}}
        else:
            body["response_format"] = {"type": "json_object"}
            # json_object mode is refused unless some message mentions JSON.
            if not any("json" in m["content"].lower() for m in messages):
                messages.insert(0, {"role": "system", "content": "Respond with a JSON object."})
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return HttpCall(join_url(endpoint.base_url, "chat/completions"), headers, body)


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        snippet = body[:80].decode("utf-8", "replace")
        raise ProviderError("invalid_response", f"{NAME}: reply is not JSON: {snippet!r}") from None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_response(status: int, headers: Mapping[str, str], body: bytes) -> Completion:
    data = _decode(body)
    try:
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise TypeError("content")
        finish = choice.get("finish_reason")
        calls = []
        for call in message.get("tool_calls") or []:
            fn = call["function"]
            try:
                args = json.loads(fn.get("arguments") or "{}")
            except ValueError:
                raise ProviderError("invalid_response", f"{NAME}: tool call `{fn.get('name')}` has arguments that are not JSON") from None
            calls.append(ToolCall(str(call.get("id", "")), str(fn["name"]), args if isinstance(args, dict) else {"value": args}))
        usage = data.get("usage") or {}
        model = str(data.get("model", ""))
    except ProviderError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ProviderError("invalid_response", f"{NAME}: reply lacks choices[0].message") from None
    if finish == "content_filter":
        raise ProviderError("content_filter", f"{NAME}: the reply was withheld by the content filter", status)
    return Completion(content or "", model, _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")),
                      finish, calls)


def classify_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    message = ""
    try:
        data = json.loads(body)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            message = str(err.get("message") or "")
        elif isinstance(err, str):
            message = err
    except (ValueError, UnicodeDecodeError):
        message = ""
    return ProviderError(_kind(status, message), f"{NAME}: HTTP {status}" + (f": {message}" if message else ""),
                         status, retry_after_seconds(headers))


def _kind(status: int, message: str) -> str:
    if status == 429:
        return "rate_limit"
    if status == 529 or "overloaded" in message.lower():
        return "overloaded"
    if status >= 500:
        return "server"
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    return "bad_request"


class StreamParser:
    """`data: {chunk}` lines, ended by `data: [DONE]`."""

    def __init__(self) -> None:
        self.done = False

    def feed_line(self, line: str) -> list[StreamDelta]:
        if not line.startswith("data:"):
            return []  # blank separators, `:` comments, `event:` lines
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.done = True
            return [StreamDelta(done=True)]
        try:
            data = json.loads(payload)
        except ValueError:
            raise ProviderError("invalid_response", f"{NAME}: stream event is not JSON") from None
        if not isinstance(data, dict):
            raise ProviderError("invalid_response", f"{NAME}: stream event is not an object")
        if "error" in data:
            err = data["error"] if isinstance(data["error"], dict) else {"message": str(data["error"])}
            message = str(err.get("message", "stream error"))
            raise ProviderError(_kind(0, message) if "overloaded" in message.lower() else "server", f"{NAME}: {message}")
        out = []
        model = data.get("model") if isinstance(data.get("model"), str) else None
        for choice in data.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content")
            finish = choice.get("finish_reason")
            if finish == "content_filter":
                raise ProviderError("content_filter", f"{NAME}: the reply was withheld by the content filter")
            if text or finish:
                out.append(StreamDelta(text=text if isinstance(text, str) else "", finish_reason=finish, model=model))
        usage = data.get("usage")
        if isinstance(usage, dict):
            out.append(StreamDelta(tokens_in=_int(usage.get("prompt_tokens")),
                                   tokens_out=_int(usage.get("completion_tokens")), model=model))
        return out

    def finish(self) -> list[StreamDelta]:
        if not self.done:
            raise ProviderError("stream_cut", f"{NAME}: the stream ended before [DONE]")
        return []
