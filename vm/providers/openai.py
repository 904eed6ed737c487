"""The OpenAI Chat Completions wire format: POST {base_url}/chat/completions.

`ollama` and `custom` connections speak it too (OpenAI-compatible servers), so
nothing here may assume api.openai.com: no key means no Authorization header,
and optional reply fields (usage, model) are read leniently.

Pure functions only (build_request, parse_response, reply_parser,
classify_error and the SSE StreamParser); the connection manager does the
sending. The small helpers at the top (join_url, tool_name, error_message,
token_count, ...) are shared with the Anthropic adapter.

A tool-calling conversation is carried as OpenAI expects it: an assistant
turn with `tool_calls`, then one `tool` message per call's result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
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
    ToolSpec,
)
from concerto.vm.providers.headers import merge_headers, retry_after_seconds

NAME = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# json_object mode is refused unless some message mentions JSON; this note is
# added when none does.
JSON_NOTE = "Respond with a single JSON object."
# Provider messages end up in user-facing errors: keep them to one short line.
MESSAGE_LIMIT = 300

# ---------------------------------------------------------------------------
# Shared helpers (also used by the Anthropic adapter)
# ---------------------------------------------------------------------------

_TOOL_NAME_BAD = re.compile(r"[^a-zA-Z0-9_-]")
# Things in a provider's error text that could be a credential: a bearer token,
# a key after a key-ish label, or an OpenAI/Anthropic style "sk-..." key (also
# the masked "sk-proj-****abcd" form OpenAI echoes back on a 401).
# The label (group 1) is kept so the message still says what was wrong.
_SECRET = re.compile(
    r"(?i)((?:x-api-key|api[_-]?key|authorization)\"?\s*[:=]\s*\"?(?:bearer\s+)?|bearer\s+)[^\s\"',;]+"
    r"|\bsk-[A-Za-z0-9_*.\-]{4,}"
)
_TAG = re.compile(r"<[^>]*>")


def join_url(base: str, path: str) -> str:
    """`base` + "/" + `path` with exactly one slash between them."""
    return base.rstrip("/") + "/" + path.lstrip("/")


def tool_name(name: str) -> str:
    """A name both APIs accept for a tool / json_schema: ^[a-zA-Z0-9_-]{1,64}$."""
    return _TOOL_NAME_BAD.sub("_", name)[:64] or "output"


def token_count(value: Any) -> int | None:
    """A usage figure, or None when absent or not a whole number (bool is not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Provider text made safe for an error message: anything that looks like a
    credential redacted, whitespace collapsed, length capped."""
    text = _SECRET.sub(lambda m: (m.group(1) or "") + "[redacted]", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decode_json(provider: str, body: bytes) -> Any:
    """The JSON value of a reply body, or ProviderError(invalid_response)."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ProviderError("invalid_response", f"{provider}: reply is not JSON: {_snippet(body)!r}") from None


def _snippet(body: bytes) -> str:
    return one_line(body[:200].decode("utf-8", "replace"), 80)


def error_fields(body: bytes) -> tuple[str, str]:
    """(message, type) from an error reply body, both "" when absent (see error_info)."""
    message, etype, _code = error_info(body)
    return message, etype


def error_info(body: bytes) -> tuple[str, str, str]:
    """(message, type, code) from an error reply body, each "" when absent.

    Understands OpenAI and Anthropic {"error": {"message", "type"}}, Ollama's
    {"error": "text"}, and the {"message"} / {"detail"} shapes of other
    OpenAI-compatible servers; a non-JSON body (an HTML page from a proxy)
    yields its text with the tags stripped."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        text = body[:2000].decode("utf-8", "replace")
        return one_line(_TAG.sub(" ", text), 200), "", ""
    if not isinstance(data, dict):
        return "", "", ""
    err = data.get("error")
    if isinstance(err, dict):
        message, etype, code = err.get("message"), err.get("type"), err.get("code")
        return (one_line(message) if isinstance(message, str) else "",
                etype if isinstance(etype, str) else "", code if isinstance(code, str) else "")
    for key in ("error", "message", "detail"):
        if isinstance(data.get(key), str):
            return one_line(data[key]), "", ""
    return "", "", ""


def status_kind(status: int) -> str:
    """The ProviderError kind an HTTP status stands for (both providers)."""
    if status == 429:
        return "rate_limit"
    if status == 529:  # Anthropic's "overloaded"; also used by some gateways
        return "overloaded"
    if 500 <= status <= 599:
        return "server"
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    # Other 4xx, and anything else that is not a success (an unfollowed
    # redirect): retrying the same request would not help.
    return "bad_request"


def http_error_message(provider: str, status: int, message: str) -> str:
    """"openai: HTTP 429: Rate limit reached" - never any request header."""
    return f"{provider}: HTTP {status}" + (f": {message}" if message else "")


def invalid(message: str) -> ProviderError:
    return ProviderError("invalid_response", f"{NAME}: {message}")


# ---------------------------------------------------------------------------
# Request
# ---------------------------------------------------------------------------

def _headers(endpoint: Endpoint) -> dict[str, str]:
    ours = {"Content-Type": "application/json"}
    if endpoint.api_key:  # ollama and many local servers take no key at all
        ours["Authorization"] = f"Bearer {endpoint.api_key}"
    if endpoint.organization:
        ours["OpenAI-Organization"] = endpoint.organization
    if endpoint.project:
        ours["OpenAI-Project"] = endpoint.project
    return merge_headers(ours, endpoint.headers)


def _message(m: ChatMessage) -> dict[str, Any]:
    if m.role == "tool":
        # OpenAI has no error flag for a tool result: the content says what went wrong.
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}
    if m.role == "assistant" and m.tool_calls:
        # content is null, not "", when the turn is only tool calls.
        return {"role": "assistant", "content": m.content or None,
                "tool_calls": [_assistant_call(c) for c in m.tool_calls]}
    return {"role": m.role, "content": m.content}


def _assistant_call(call: ToolCall) -> dict[str, Any]:
    # The API takes arguments as a JSON string, not an object.
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}


def _tool(t: ToolSpec) -> dict[str, Any]:
    return {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}


def _response_format(out: StructuredOutput, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Strict json_schema when the schema fits strict mode, else json_object
    (which needs the word JSON in some message: add a note when missing)."""
    # Lazy import: vm.schema is heavier than the adapter and not needed without
    # structured output.
    from concerto.vm.schema import normalize_for_openai, openai_strict_supported

    if openai_strict_supported(out.schema):
        return {"type": "json_schema", "json_schema": {
            "name": tool_name(out.name), "schema": normalize_for_openai(out.schema), "strict": True}}
    # An assistant turn of only tool calls has content None.
    if not any("json" in (m.get("content") or "").lower() for m in messages):
        messages.append({"role": "system", "content": JSON_NOTE})
    return {"type": "json_object"}


def build_request(req: ChatRequest, endpoint: Endpoint) -> HttpCall:
    messages = [_message(m) for m in req.messages]
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
        body["tools"] = [_tool(t) for t in req.tools]
    if req.structured is not None:
        body["response_format"] = _response_format(req.structured, messages)
    if req.stream:
        body["stream"] = True
        # Without this the stream carries no token counts at all.
        body["stream_options"] = {"include_usage": True}
    return HttpCall(join_url(endpoint.base_url, "chat/completions"), _headers(endpoint), body)


# ---------------------------------------------------------------------------
# Reply
# ---------------------------------------------------------------------------

def _tool_arguments(name: str, raw: Any) -> dict[str, Any]:
    """`function.arguments` is a JSON string of an object; some compatible
    servers send the object itself, and "" for a function without arguments."""
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if not isinstance(raw, str):
        raise invalid(f"tool call `{name}` has arguments of type {type(raw).__name__}")
    try:
        args = json.loads(raw)
    except (ValueError, RecursionError):
        raise invalid(f"tool call `{name}` has arguments that are not JSON: {one_line(raw, 80)!r}") from None
    if not isinstance(args, dict):
        raise invalid(f"tool call `{name}` has arguments that are not a JSON object")
    return args


def _tool_call(call: Any) -> ToolCall:
    fn = call.get("function") if isinstance(call, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str):
        raise invalid("a tool call has no function name")
    call_id = call.get("id")
    return ToolCall(call_id if isinstance(call_id, str) else "", name, _tool_arguments(name, fn.get("arguments")))


def _first_message(data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(choices[0], choices[0].message), or invalid_response."""
    if not isinstance(data, dict):
        raise invalid("reply is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise invalid("reply has no choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise invalid("reply lacks choices[0].message")
    return choice, message


def _payload_error(err: Any, status: int | None) -> ProviderError:
    """An {"error": ...} payload inside a 200 reply or a stream."""
    if not isinstance(err, dict):
        err = {"message": str(err)}
    message = err.get("message") if isinstance(err.get("message"), str) else "error"
    marks = f"{err.get('type')} {err.get('code')}".lower()
    if "insufficient_quota" in marks:
        kind = "quota"
    elif "rate_limit" in marks:
        kind = "rate_limit"
    elif "invalid_request" in marks:
        kind = "bad_request"
    elif "auth" in marks or "permission" in marks:
        kind = "auth"
    else:
        kind = "server"  # mid-reply failures are the server's, and worth a retry
    return ProviderError(kind, f"{NAME}: {one_line(message)}", status)


def parse_response(status: int, headers: Mapping[str, str], body: bytes) -> Completion:
    data = decode_json(NAME, body)
    if isinstance(data, dict) and "choices" not in data and data.get("error") is not None:
        raise _payload_error(data["error"], status)  # some servers send errors with 200
    choice, message = _first_message(data)
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise invalid("choices[0].message.content is not a string")
    finish = choice.get("finish_reason")
    finish = finish if isinstance(finish, str) else None
    if finish == "content_filter":
        raise ProviderError("content_filter", f"{NAME}: the reply was withheld by the content filter", status)
    refusal = message.get("refusal")
    if content is None and isinstance(refusal, str) and refusal:
        # Structured outputs report a safety refusal here instead of content.
        raise ProviderError("content_filter", f"{NAME}: the model refused: {one_line(refusal)}", status)
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise invalid("choices[0].message.tool_calls is not a list")
    calls = [_tool_call(c) for c in raw_calls]
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    model = data.get("model") if isinstance(data.get("model"), str) else ""
    return Completion(content or "", model, token_count(usage.get("prompt_tokens")),
                      token_count(usage.get("completion_tokens")), finish, calls)


def reply_parser(req: ChatRequest) -> Callable[[int, Mapping[str, str], bytes], Completion]:
    """The parse_response to use for `req`'s reply. Structured output comes back
    as text here, so nothing about the request changes how a reply is read."""
    return parse_response


def classify_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    message, etype, code = error_info(body)
    # A 429 that means "out of credit": waiting does not help, so it is not a rate_limit.
    kind = "quota" if "insufficient_quota" in (etype, code) else status_kind(status)
    return ProviderError(kind, http_error_message(NAME, status, message), status, retry_after_seconds(headers))


# ---------------------------------------------------------------------------
# Stream
# ---------------------------------------------------------------------------

class StreamParser:
    """Server-sent events: `data: {chunk}` lines, ended by `data: [DONE]`.

    Blank lines, `:` comments and `event:` lines carry nothing for us. A chunk
    with empty `choices` and a `usage` object is the final usage report asked
    for with stream_options.include_usage."""

    def __init__(self) -> None:
        self.done = False

    def feed_line(self, line: str) -> list[StreamDelta]:
        if self.done or not line.startswith("data:"):
            return []
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.done = True
            return [StreamDelta(done=True)]
        try:
            data = json.loads(payload)
        except (ValueError, RecursionError):
            raise invalid(f"stream event is not JSON: {one_line(payload, 80)!r}") from None
        if not isinstance(data, dict):
            raise invalid("stream event is not a JSON object")
        if data.get("error") is not None:
            raise _payload_error(data["error"], None)
        return self._chunk(data)

    def _chunk(self, data: dict[str, Any]) -> list[StreamDelta]:
        model = data.get("model") if isinstance(data.get("model"), str) else None
        choices = data.get("choices") or []
        if not isinstance(choices, list):
            raise invalid("stream chunk `choices` is not a list")
        out = [d for d in (self._choice(c, model) for c in choices) if d is not None]
        usage = data.get("usage")
        if isinstance(usage, dict):  # null on every chunk but the last
            out.append(StreamDelta(tokens_in=token_count(usage.get("prompt_tokens")),
                                   tokens_out=token_count(usage.get("completion_tokens")), model=model))
        return out

    @staticmethod
    def _choice(choice: Any, model: str | None) -> StreamDelta | None:
        if not isinstance(choice, dict):
            raise invalid("stream chunk choice is not an object")
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else None
        text = text if isinstance(text, str) else ""
        finish = choice.get("finish_reason")
        finish = finish if isinstance(finish, str) else None
        if finish == "content_filter":
            raise ProviderError("content_filter", f"{NAME}: the reply was withheld by the content filter")
        if not text and finish is None:
            return None  # the role-only first chunk, tool-call fragments
        return StreamDelta(text=text, finish_reason=finish, model=model)

    def finish(self) -> list[StreamDelta]:
        if not self.done:
            raise ProviderError("stream_cut", f"{NAME}: the stream ended before [DONE]")
        return []
