#!/usr/bin/env python3
"""A loopback fake LLM provider: OpenAI Chat Completions and Anthropic Messages.

It speaks the real 2025 wire formats (bodies, SSE event sequences, error
shapes, rate-limit headers) so provider adapters and the connection manager can
be tested end to end without network access, and so a benchmark can push
thousands of requests per second through a real HTTP stack.

In-process use (tests)::

    with FakeProvider(latency=0.01) as fake:
        fake.script(Text("hi"), RateLimit(retry_after=2), ToolCall("f", {"x": 1}),
                    ToolCalls([ToolCall("f", {"x": 1}), ToolCall("g")]))
        httpx.post(fake.url + "/v1/chat/completions", json={...})
        fake.requests[-1].body
        fake.requests[-1].tool_results()  # [(call id, text, is_error)] the client sent back

Requests are validated like the real APIs do, including multi-turn tool
conversations (every tool call answered by a tool result right after it, no
stray results, valid tool names and tool_choice), with the real 400 bodies.

As a process (benchmark)::

    python tests/fake_provider.py --port 0 --latency-ms 50 [--rpm N]
    -> stdout: "READY http://127.0.0.1:PORT"; on SIGTERM/SIGINT a JSON summary on stderr.

Routing: any POST path ending in /chat/completions is OpenAI, any POST path
ending in /v1/messages is Anthropic, anything else is a 404.

Only the standard library is used, and this file must never import `concerto`:
it is the independent reference the adapters are checked against.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import email.utils
import http
import itertools
import json
import math
import re
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Literal

__all__ = [
    "FakeProvider",
    "RecordedRequest",
    "Reply",
    "Default",
    "Text",
    "JsonObject",
    "ToolCall",
    "ToolCalls",
    "ErrorStatus",
    "RateLimit",
    "ServerError",
    "Overloaded",
    "Slow",
    "Malformed",
    "StreamCut",
    "Raw",
    "Hangup",
    "HugeBody",
    "KeepAliveOnly",
    "Drip",
    "canned_body",
    "canned_events",
    "schema_example",
]

Flavour = Literal["openai", "anthropic"]


# --------------------------------------------------------------------------
# Scripted replies
# --------------------------------------------------------------------------


@dataclass
class Reply:
    """Base of every scripted reply.

    `headers` are added to (and override) the response headers, whatever the
    reply is: e.g. {"x-ratelimit-reset-requests": "1.5s"} on a 429.
    `delay` is waited (on top of the server's latency) before the first byte;
    `chunk_delay` between the events of a streamed reply.
    All are keyword-only so subclasses keep their natural positional fields.
    """

    _: KW_ONLY
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunk_delay: float = 0.0


@dataclass
class Default(Reply):
    """Exactly what the server answers when nothing is scripted (echo text, or a
    schema-shaped object for structured requests); useful to attach headers or
    a delay to an otherwise ordinary reply."""


@dataclass
class Text(Reply):
    """A plain assistant text reply (finish_reason "stop" / stop_reason "end_turn")."""

    text: str


@dataclass
class JsonObject(Reply):
    """A structured-output reply. OpenAI: the message content is json.dumps(value).
    Anthropic: a tool_use block whose input is `value` when the request forced a
    tool (tool_choice {"type":"tool"}; with {"type":"any"} the last tool in
    `tools`), otherwise a text block of json.dumps(value)."""

    value: Any


@dataclass
class ToolCall(Reply):
    """The model calls a tool. `arguments` may be a str to send malformed or
    exotic arguments verbatim (OpenAI only; Anthropic `input` must be an object).
    `text`, if given, is the prose the model writes before the call."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    text: str | None = None
    id: str | None = None  # default: a generated call_... / toolu_... id


@dataclass
class ToolCalls(Reply):
    """The model calls several tools in one reply (parallel tool calls).
    OpenAI: one `message.tool_calls` entry per call (finish_reason "tool_calls");
    Anthropic: one `tool_use` block per call, after a text block when `text` is
    given (stop_reason "tool_use"). Streamed requests stream every call. Only the
    name, arguments and id of each ToolCall are used: give the prose here."""

    calls: list[ToolCall]
    text: str | None = None

    def __post_init__(self) -> None:
        if not self.calls or not all(isinstance(c, ToolCall) for c in self.calls):
            raise TypeError("ToolCalls needs a non-empty list of ToolCall")
        if any(c.text is not None for c in self.calls):
            raise ValueError("ToolCalls: give the prose as ToolCalls(text=...), not on each call")
        ids = [c.id for c in self.calls if c.id is not None]
        if len(ids) != len(set(ids)):
            raise ValueError(f"ToolCalls: duplicate call ids {ids}")


@dataclass
class ErrorStatus(Reply):
    """Any HTTP status with the provider's error body. `error_type`/`message`/
    `code` default to what the real provider sends for that status."""

    status: int
    message: str | None = None
    error_type: str | None = None
    code: str | None = None  # OpenAI only (the `code` field of the error object)


@dataclass
class RateLimit(Reply):
    """HTTP 429 in the provider's shape. `retry_after` -> `Retry-After: <seconds>`,
    `retry_after_ms` -> `retry-after-ms: <ms>` (OpenAI sends both); None omits one."""

    retry_after: float | None = 1.0
    retry_after_ms: float | None = None
    message: str | None = None


@dataclass
class ServerError(Reply):
    """HTTP 500 (or another 5xx via `status`) in the provider's error shape."""

    message: str | None = None
    status: int = 500


@dataclass
class Overloaded(Reply):
    """HTTP 529, Anthropic's `overloaded_error` (OpenAI flavour gets its shape too)."""

    message: str = "Overloaded"


@dataclass
class Slow(Reply):
    """Wait `seconds` before answering with `then` (default: the default reply)."""

    seconds: float
    then: Reply | None = None


@dataclass
class Malformed(Reply):
    """200 with an invalid JSON body: `body` verbatim, or the real reply cut in
    half. On a streamed request one SSE event carries truncated JSON; the stream
    is otherwise complete."""

    body: bytes | None = None


@dataclass
class StreamCut(Reply):
    """Streamed request: send `after` SSE events (headers first) and then close
    the socket without ending the chunked body. Non-streamed request: send the
    headers and half the announced body, then close."""

    after: int = 2


@dataclass
class Raw(Reply):
    """These exact bytes as the whole response (status line, headers, body:
    anything, valid or not), then close the connection unless `keep`."""

    data: bytes
    keep: bool = False


@dataclass
class Hangup(Reply):
    """Read the request, then close the connection without a byte of reply;
    `reset` sends a TCP RST instead of a FIN."""

    reset: bool = False


@dataclass
class HugeBody(Reply):
    """`status` with a body of `size` bytes (a JSON-looking prefix, then
    padding), with a Content-Length or chunked, written in 64 KiB pieces until
    done or the client hangs up. `bytes_sent` records what went out."""

    size: int
    status: int = 200
    chunked: bool = False


@dataclass
class KeepAliveOnly(Reply):
    """Streamed request: the 200 head, the first `events` SSE events of the
    real reply, then only `: keep-alive` comments every `interval` seconds,
    for at most `limit` seconds or until the client hangs up."""

    events: int = 0
    interval: float = 0.05
    limit: float = 30.0


@dataclass
class Drip(Reply):
    """The real reply (streamed or not), written `piece` bytes at a time with
    `interval` seconds between pieces."""

    interval: float = 0.05
    piece: int = 16


# --------------------------------------------------------------------------
# Recorded requests
# --------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ", "
    body: Any  # parsed JSON, or None when empty / not JSON
    raw: bytes
    t: float  # time.monotonic() when the request had been fully read
    query: str = ""

    def tool_results(self) -> list[tuple[str, str, bool]]:
        """The tool results the client sent, in message order, as (call id, text,
        is_error). OpenAI: every role "tool" message (is_error is always False,
        the format has no such flag); Anthropic: every `tool_result` block."""
        body = self.body
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return []
        openai = self.path.endswith("/chat/completions")
        out: list[tuple[str, str, bool]] = []
        for m in body["messages"]:
            if not isinstance(m, dict):
                continue
            if openai:
                if m.get("role") == "tool":
                    out.append((m.get("tool_call_id"), _text_of(m.get("content")), False))
            elif isinstance(m.get("content"), list):
                for b in m["content"]:
                    if isinstance(b, dict) and b.get("type") == "tool_result":
                        out.append((b.get("tool_use_id"), _text_of(b.get("content", "")),
                                    bool(b.get("is_error", False))))
        return out


# --------------------------------------------------------------------------
# JSON Schema -> deterministic example
# --------------------------------------------------------------------------


def _is_null_schema(s: Any) -> bool:
    return isinstance(s, dict) and (s.get("type") == "null" or ("const" in s and s["const"] is None))


def _resolve_ref(ref: str, root: Any) -> Any:
    # Only local JSON pointers ("#/$defs/X"): that is all structured-output
    # schemas may contain.
    if not ref.startswith("#"):
        return None
    node = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def schema_example(schema: Any, root: Any = None, _depth: int = 0) -> Any:
    """A deterministic value shaped like `schema`: strings "example", integers 1,
    numbers 1.5, booleans true, arrays of one item (or minItems), the first enum
    value, the first non-null anyOf/oneOf branch, objects with every property."""
    if root is None:
        root = schema
    if _depth > 40 or not isinstance(schema, dict):  # recursive $ref, or `true`
        return None if _depth > 40 else "example"
    rec = lambda s: schema_example(s, root, _depth + 1)  # noqa: E731
    if "$ref" in schema:
        target = _resolve_ref(schema["$ref"], root)
        return rec(target) if target is not None else "example"
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if branches:
            non_null = [b for b in branches if not _is_null_schema(b)]
            return rec((non_null or branches)[0])
    if schema.get("allOf"):
        parts = [rec(b) for b in schema["allOf"]]
        if all(isinstance(p, dict) for p in parts):
            merged: dict[str, Any] = {}
            for p in parts:
                merged.update(p)
            return merged
        return parts[0]
    t = schema.get("type")
    if isinstance(t, list):
        non_null_types = [x for x in t if x != "null"]
        t = non_null_types[0] if non_null_types else "null"
    if t is None:
        t = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if t == "object":
        return {k: rec(v) for k, v in (schema.get("properties") or {}).items()}
    if t == "array":
        if schema.get("prefixItems"):
            return [rec(s) for s in schema["prefixItems"]]
        n = max(1, int(schema.get("minItems", 1)))
        return [rec(schema.get("items", {"type": "string"})) for _ in range(n)]
    return {"string": "example", "integer": 1, "number": 1.5, "boolean": True, "null": None}.get(t, "example")


# --------------------------------------------------------------------------
# Helpers for bodies
# --------------------------------------------------------------------------

_WORD_SPLIT = re.compile(r"(?<=\s)(?=\S)")


def _pieces(text: str) -> list[str]:
    """Split text into per-word stream deltas whose concatenation is exactly `text`."""
    return [p for p in _WORD_SPLIT.split(text) if p]


def _text_of(content: Any) -> str:
    """The text of a message `content`: a string, or a list of content blocks
    (OpenAI parts / Anthropic blocks, including nested tool_result content)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for block in content:
            if isinstance(block, dict):
                if isinstance(block.get("text"), str):
                    out.append(block["text"])
                elif "content" in block:
                    out.append(_text_of(block["content"]))
            elif isinstance(block, str):
                out.append(block)
        return " ".join(out)
    return ""


def _words(text: str) -> int:
    return len(text.split())


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _fmt_seconds(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _openai_duration(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* format: "120ms", "1.5s", "6m0s"."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    m, s = divmod(seconds, 60)
    return f"{int(m)}m{round(s, 3):g}s"


def _rfc3339_in(seconds: float) -> str:
    when = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


_OPENAI_ERR_TYPE = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
                    404: "invalid_request_error", 409: "invalid_request_error", 422: "invalid_request_error",
                    429: "requests"}
_OPENAI_ERR_CODE = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
_OPENAI_ERR_MSG = {
    401: "Incorrect API key provided.",
    404: "The model does not exist or you do not have access to it.",
    429: "Rate limit reached",
    500: "The server had an error while processing your request. Sorry about that!",
    503: "The engine is currently overloaded, please try again later.",
    529: "The engine is currently overloaded, please try again later.",
}
_ANTHROPIC_ERR_TYPE = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                       403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                       429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}
_ANTHROPIC_ERR_MSG = {401: "invalid x-api-key", 403: "Permission denied", 404: "Not found",
                      429: "Number of requests has exceeded your rate limit", 500: "Internal server error",
                      529: "Overloaded"}
_REASONS = {s.value: s.phrase for s in http.HTTPStatus}
_REASONS[529] = "Site is overloaded"


class _BadRequest(Exception):
    """Request validation failure, carrying the provider error to send."""

    def __init__(self, status: int, message: str, error_type: str | None = None,
                 code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type
        self.code, self.param, self.headers = code, param, headers or {}


# --------------------------------------------------------------------------
# Tool conversations: the checks both APIs make on tools and tool turns
# --------------------------------------------------------------------------

_OPENAI_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]+")
_ANTHROPIC_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def _json_type(v: Any) -> str:
    """The JSON type name OpenAI's 'Invalid type' messages use."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _oa_missing(param: str) -> _BadRequest:
    return _BadRequest(400, f"Missing required parameter: '{param}'.", param=param,
                       code="missing_required_parameter")


def _oa_type(param: str, expected: str, got: Any) -> _BadRequest:
    return _BadRequest(400, f"Invalid type for '{param}': expected {expected}, but got {_json_type(got)} instead.",
                       param=param, code="invalid_type")


def _validate_openai_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _oa_type("tools", "an array", tools)
    for k, t in enumerate(tools):
        if not isinstance(t, dict):
            raise _oa_type(f"tools[{k}]", "an object", t)
        if "type" not in t:
            raise _oa_missing(f"tools[{k}].type")
        if t["type"] != "function":
            continue  # "custom" tools and the like: not ours to check
        fn = t.get("function")
        if fn is None:
            raise _oa_missing(f"tools[{k}].function")
        if not isinstance(fn, dict):
            raise _oa_type(f"tools[{k}].function", "an object", fn)
        param = f"tools[{k}].function.name"
        name = fn.get("name")
        if name is None:
            raise _oa_missing(param)
        if not isinstance(name, str):
            raise _oa_type(param, "a string", name)
        if not name:
            raise _BadRequest(400, f"Invalid '{param}': empty string. Expected a string with minimum length 1, "
                              "but got an empty string instead.", param=param, code="empty_string")
        if len(name) > 64:
            raise _BadRequest(400, f"Invalid '{param}': string too long. Expected a string with maximum length "
                              f"64, but got a string with length {len(name)} instead.", param=param,
                              code="string_above_max_length")
        if not _OPENAI_TOOL_NAME.fullmatch(name):
            raise _BadRequest(400, f"Invalid '{param}': string does not match pattern. Expected a string that "
                              "matches the pattern '^[a-zA-Z0-9_-]+$'.", param=param, code="invalid_value")


def _validate_openai_message(i: int, m: dict[str, Any]) -> None:
    """The shape of one tool message, or of one assistant message's tool_calls."""
    role = m["role"]
    if role == "tool":
        tid = m.get("tool_call_id")
        if tid is None:
            raise _BadRequest(400, "Missing parameter 'tool_call_id': messages with role 'tool' must have a "
                              "'tool_call_id'.", param=f"messages.[{i}].tool_call_id")
        if not isinstance(tid, str):
            raise _oa_type(f"messages[{i}].tool_call_id", "a string", tid)
        if "content" not in m or m["content"] is None:
            raise _oa_missing(f"messages[{i}].content")
        content = m["content"]
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict):
                    raise _oa_type(f"messages[{i}].content[{j}]", "an object", part)
                if part.get("type") != "text":
                    raise _BadRequest(400, f"Invalid value: '{part.get('type')}'. Supported values are: 'text'.",
                                      param=f"messages[{i}].content[{j}].type", code="invalid_value")
                if not isinstance(part.get("text"), str):
                    raise (_oa_missing(f"messages[{i}].content[{j}].text") if part.get("text") is None
                           else _oa_type(f"messages[{i}].content[{j}].text", "a string", part.get("text")))
        elif not isinstance(content, str):
            raise _oa_type(f"messages[{i}].content", "one of a string or array of objects", content)
    elif role == "assistant" and m.get("tool_calls") is not None:
        calls = m["tool_calls"]
        if not isinstance(calls, list):
            raise _oa_type(f"messages[{i}].tool_calls", "an array", calls)
        if not calls:
            raise _BadRequest(400, f"Invalid 'messages[{i}].tool_calls': empty array. Expected an array with "
                              "minimum length 1, but got an empty array instead.",
                              param=f"messages[{i}].tool_calls", code="empty_array")
        for j, tc in enumerate(calls):
            at = f"messages[{i}].tool_calls[{j}]"
            if not isinstance(tc, dict):
                raise _oa_type(at, "an object", tc)
            for key in ("id", "type", "function"):
                if tc.get(key) is None:
                    raise _oa_missing(f"{at}.{key}")
            if not isinstance(tc["id"], str):
                raise _oa_type(f"{at}.id", "a string", tc["id"])
            fn = tc["function"]
            if not isinstance(fn, dict):
                raise _oa_type(f"{at}.function", "an object", fn)
            for key in ("name", "arguments"):
                if fn.get(key) is None:
                    raise _oa_missing(f"{at}.function.{key}")
                if not isinstance(fn[key], str):
                    raise _oa_type(f"{at}.function.{key}", "a string", fn[key])


def _validate_openai_tool_turns(msgs: list[dict[str, Any]]) -> None:
    """Every role "tool" message answers a call of the assistant message just
    before it (other tool messages aside), and every call gets its answer."""
    calls: list[str] | None = None  # ids of the assistant message the tool messages answer
    pending: list[str] = []
    owner = -1

    def unanswered() -> _BadRequest:
        return _BadRequest(400, "An assistant message with 'tool_calls' must be followed by tool messages "
                           "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                           f"response messages: {', '.join(pending)}", param=f"messages.[{owner}].role")

    for i, m in enumerate(msgs):
        if m["role"] == "tool":
            if calls is None:
                raise _BadRequest(400, "Invalid parameter: messages with role 'tool' must be a response to a "
                                  "preceeding message with 'tool_calls'.", param=f"messages.[{i}].role")
            tid = m["tool_call_id"]
            if tid not in calls:
                raise _BadRequest(400, f"Invalid parameter: 'tool_call_id' of '{tid}' not found in 'tool_calls' "
                                  "of previous message.", param=f"messages.[{i}].tool_call_id")
            if tid in pending:
                pending.remove(tid)
            continue
        if pending:
            raise unanswered()
        calls = None
        if m["role"] == "assistant" and m.get("tool_calls"):
            calls = [tc["id"] for tc in m["tool_calls"]]
            pending = list(dict.fromkeys(calls))
            owner = i
    if pending:
        raise unanswered()


def _validate_anthropic_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _BadRequest(400, "tools: Input should be a valid list")
        for k, t in enumerate(tools):
            if not isinstance(t, dict):
                raise _BadRequest(400, f"tools.{k}: Input should be a valid dictionary")
            if t.get("type") not in (None, "custom"):
                continue  # server tools (web_search_..., bash_...): their own shapes
            name = t.get("name")
            if name is None:
                raise _BadRequest(400, f"tools.{k}.custom.name: Field required")
            if not isinstance(name, str):
                raise _BadRequest(400, f"tools.{k}.custom.name: Input should be a valid string")
            if not _ANTHROPIC_TOOL_NAME.fullmatch(name):
                raise _BadRequest(400, f"tools.{k}.custom.name: String should match pattern "
                                  "'^[a-zA-Z0-9_-]{1,64}$'")
            if "input_schema" not in t:
                raise _BadRequest(400, f"tools.{k}.custom.input_schema: Field required")
    tc = body.get("tool_choice")
    if tc is None:
        return
    if not isinstance(tc, dict):
        raise _BadRequest(400, "tool_choice: Input should be a valid dictionary or object to extract fields from")
    ctype = tc.get("type")
    if ctype not in ("auto", "any", "tool", "none"):
        raise _BadRequest(400, f"tool_choice: Input tag '{ctype}' found using 'type' does not match any of the "
                          "expected tags: 'auto', 'any', 'tool', 'none'")
    if ctype != "none" and not tools:
        raise _BadRequest(400, "tool_choice may only be specified while providing tools.")
    if ctype == "tool":
        names = [t.get("name") for t in tools or [] if isinstance(t, dict)]
        if tc.get("name") not in names:
            raise _BadRequest(400, f"tool_choice: Tool '{tc.get('name')}' not found in tools")


def _validate_anthropic_tool_turns(msgs: list[dict[str, Any]]) -> None:
    """Block shapes, then: the tool_use blocks of an assistant turn are answered by
    tool_result blocks at the very start of the next message (a user message),
    and every tool_result answers a tool_use of the message just before it."""
    for i, m in enumerate(msgs):
        content = m.get("content")
        if not isinstance(content, list):
            continue
        for j, b in enumerate(content):
            if not isinstance(b, dict):
                continue
            at = f"messages.{i}.content.{j}"
            if b.get("type") == "tool_use":
                for key in ("id", "name", "input"):
                    if key not in b:
                        raise _BadRequest(400, f"{at}.tool_use.{key}: Field required")
                if not isinstance(b["input"], dict):
                    raise _BadRequest(400, f"{at}.tool_use.input: Input should be a valid dictionary")
            elif b.get("type") == "tool_result":
                if "tool_use_id" not in b:
                    raise _BadRequest(400, f"{at}.tool_result.tool_use_id: Field required")
                if "is_error" in b and not isinstance(b["is_error"], bool):
                    raise _BadRequest(400, f"{at}.tool_result.is_error: Input should be a valid boolean")
                c = b.get("content")
                if c is not None and not isinstance(c, (str, list)):
                    raise _BadRequest(400, f"{at}.tool_result.content: Input should be a valid list")

    def blocks(m: dict[str, Any]) -> list[dict[str, Any]]:
        c = m.get("content")
        return [b for b in c if isinstance(b, dict)] if isinstance(c, list) else []

    def unanswered(i: int, ids: list[str]) -> _BadRequest:
        return _BadRequest(400, f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                           f"immediately after: {', '.join(ids)}. Each `tool_use` block must have a "
                           "corresponding `tool_result` block in the next message.")

    uses: list[str] = []  # tool_use ids of the previous message
    for i, m in enumerate(msgs):
        bs = blocks(m)
        if uses:
            # The results must open this message: a tool_result after a text
            # block is not "immediately after" the call.
            leading: set[str] = set()
            for b in bs:
                if b.get("type") != "tool_result":
                    break
                leading.add(b["tool_use_id"])
            missing = [u for u in uses if u not in leading]
            if m["role"] != "user" or missing:
                raise unanswered(i - 1, missing or uses)
        for j, b in enumerate(bs):
            if b.get("type") == "tool_result" and b["tool_use_id"] not in uses:
                raise _BadRequest(400, f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                                  f"`tool_result` blocks: {b['tool_use_id']}. Each `tool_result` block must "
                                  "have a corresponding `tool_use` block in the previous message.")
        uses = list(dict.fromkeys(b["id"] for b in bs if b.get("type") == "tool_use")) \
            if m["role"] == "assistant" else []
    if uses:
        raise unanswered(len(msgs) - 1, uses)


def canned_body(flavour: Flavour, text: str) -> bytes:
    """A minimal valid non-streamed reply body saying `text` (for Raw replies)."""
    if flavour == "openai":
        return _dumps({"id": "chatcmpl-canned", "object": "chat.completion", "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    return _dumps({"id": "msg_canned", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
                   "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                   "usage": {"input_tokens": 1, "output_tokens": 1}})


def canned_events(flavour: Flavour, text: str) -> list[bytes]:
    """The SSE events of a minimal valid streamed reply saying `text` (for Raw replies)."""
    if flavour == "openai":
        chunk = lambda delta, finish=None: b"data: " + _dumps(  # noqa: E731
            {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"
        return [chunk({"role": "assistant", "content": ""}), chunk({"content": text}), chunk({}, "stop"),
                b"data: [DONE]\n\n"]
    ev = lambda name, obj: b"event: " + name.encode() + b"\ndata: " + _dumps(obj) + b"\n\n"  # noqa: E731
    return [ev("message_start", {"type": "message_start", "message": {"model": "claude-sonnet-4-20250514",
                                                                       "usage": {"input_tokens": 1}}}),
            ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": text}}),
            ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                 "usage": {"output_tokens": 1}}),
            ev("message_stop", {"type": "message_stop"})]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0) rather than a FIN."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


@dataclass
class _Content:
    """What the assistant says, independent of the wire format."""

    text: str | None
    tools: list[tuple[str, str, Any]] = field(default_factory=list)  # (id, name, arguments dict or raw str)
    finish: str | None = None  # override ("stop" for OpenAI forced tool_choice)


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


class FakeProvider:
    """An HTTP/1.1 keep-alive server on its own event loop in a background thread."""

    def __init__(self, latency: float = 0.0, rpm: int | None = None, api_key: str | None = None,
                 port: int = 0, *, host: str = "127.0.0.1", record: bool = True) -> None:
        self.latency = latency
        self.rpm = rpm
        self.api_key = api_key
        self.host = host
        self.port = port
        self.record = record  # False in the benchmark process: nobody reads them, memory would grow
        self.requests: list[RecordedRequest] = []
        self.status_counts: dict[int, int] = {}
        self.max_in_flight = 0
        self.request_count = 0  # every request read, recorded or not
        self.connections = 0  # TCP connections accepted (keep-alive tests check reuse)
        self._in_flight = 0
        # Requests whose client hung up while the server was still waiting to
        # answer (a cancelled call, e.g. the loser of a `race`).
        self.hangups = 0
        # Body bytes written for each HugeBody reply, in order.
        self.bytes_sent: list[int] = []
        # Connections to reset on accept, before reading anything.
        self.reset_on_accept = 0
        self._readers: dict[Any, asyncio.StreamReader] = {}
        self._script: collections.deque[Reply] = collections.deque()
        self._window: collections.deque[float] = collections.deque()  # rpm: accepted request times
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._date = ("", -1)  # (Date header, the second it was made for)

    # ----- public API ------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    @property
    def script_remaining(self) -> int:
        return len(self._script)

    def script(self, *replies: Reply) -> None:
        """Queue replies; each request that reaches the reply stage takes the next
        one, whatever its endpoint. Requests refused earlier (404, auth, rpm,
        validation) do not consume the script."""
        for r in replies:
            if not isinstance(r, Reply):
                raise TypeError(f"not a Reply: {r!r}")
        self._script.extend(replies)  # deque.extend is atomic under the GIL

    def reset(self) -> None:
        """Forget the script, recorded requests, counters and the rpm window."""
        self._script.clear()
        self.requests.clear()
        self.status_counts.clear()
        self._window.clear()
        self.max_in_flight = self._in_flight
        self.request_count = 0
        self.connections = 0
        self.hangups = 0
        self.bytes_sent = []
        self.reset_on_accept = 0
        self._ids = itertools.count(1)

    def start(self) -> FakeProvider:
        if self._thread is not None:
            return self
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self._serve(ready.set))
            except BaseException as e:  # surfaced by start() (e.g. port in use)
                errors.append(e)
                ready.set()

        self._thread = threading.Thread(target=run, name=f"FakeProvider:{self.port}", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("FakeProvider did not start within 10 s")
        if errors:
            self._thread = None
            raise errors[0]
        return self

    def stop(self) -> None:
        thread, loop, ev = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and ev is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # loop already closed by a crash
                pass
        thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self) -> dict[str, Any]:
        return {
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
            "max_in_flight": self.max_in_flight,
            "requests": self.request_count,
            "connections": self.connections,
        }

    # ----- serving ---------------------------------------------------------

    async def _serve(self, on_ready: Callable[[], None], handle_signals: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        # A large backlog: the benchmark opens 100 connections at once.
        server = await asyncio.start_server(self._on_connection, self.host, self.port,
                                            backlog=1024, limit=1 << 20)
        self.port = server.sockets[0].getsockname()[1]
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._stop_event.set)
        on_ready()
        try:
            await self._stop_event.wait()
        finally:
            server.close()
            # Idle keep-alive connections would otherwise keep their handlers
            # waiting for a next request forever.
            for w in list(self._writers):
                w.transport.abort()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.reset_on_accept > 0:
            self.reset_on_accept -= 1
            _reset(writer)
            return
        self._readers[writer] = reader
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    await self._send_plain(writer, 431, b"request header too large")
                    return
                parsed = self._parse_head(head)
                if parsed is None:
                    await self._send_plain(writer, 400, b"bad request")
                    return
                method, target, version, headers = parsed
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                raw = await self._read_body(reader, headers)
                if raw is None:
                    await self._send_plain(writer, 400, b"bad request body framing")
                    return
                conn = headers.get("connection", "").lower()
                keep = ("keep-alive" in conn) if version == "HTTP/1.0" else ("close" not in conn)
                if not await self._handle(method, target, version, headers, raw, writer, keep):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # client went away (or we are shutting down): nothing to answer
        finally:
            self._writers.discard(writer)
            self._readers.pop(writer, None)
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    @staticmethod
    def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]] | None:
        lines = head.lstrip(b"\r\n")[:-4].split(b"\r\n")
        try:
            method, target, version = lines[0].decode("latin-1").split(" ", 2)
        except ValueError:
            return None
        if not version.startswith("HTTP/1."):
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                return None
            k = name.strip().lower().decode("latin-1")
            v = value.strip().decode("latin-1")
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        return method, target, version, headers

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes | None:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    return None
                if size == 0:
                    # Trailers (rare) end with an empty line.
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    return b"".join(parts)
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
        try:
            n = int(headers.get("content-length", "0"))
        except ValueError:
            return None
        return await reader.readexactly(n) if n > 0 else b""

    # ----- one request -----------------------------------------------------

    async def _handle(self, method: str, target: str, version: str, headers: dict[str, str],
                      raw: bytes, writer: asyncio.StreamWriter, keep: bool) -> bool:
        """Answer one request; False when the connection must be closed."""
        path, _, query = target.partition("?")
        body: Any = None
        body_ok = True
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body_ok = False
        self.request_count += 1
        if self.record:
            self.requests.append(RecordedRequest(method, path, headers, body, raw, time.monotonic(), query))
        self._in_flight += 1
        if self._in_flight > self.max_in_flight:
            self.max_in_flight = self._in_flight
        try:
            return await self._respond(method, path, version, headers, body, body_ok, writer, keep)
        finally:
            self._in_flight -= 1

    async def _respond(self, method: str, path: str, version: str, headers: dict[str, str], body: Any,
                       body_ok: bool, writer: asyncio.StreamWriter, keep: bool) -> bool:
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        flavour: Flavour | None = None
        if method == "POST" and path.endswith("/chat/completions"):
            flavour = "openai"
        elif method == "POST" and path.endswith("/v1/messages"):
            flavour = "anthropic"
        if flavour is None:
            # No provider to imitate: pick the shape the client would understand.
            shape: Flavour = "anthropic" if "anthropic-version" in headers else "openai"
            msg = f"Invalid URL ({method} {path})" if shape == "openai" else "Not Found"
            return await self._send_error(writer, shape, 404, msg, keep)

        rate_headers: dict[str, str] = {}
        try:
            self._check_auth(flavour, headers)
            rate_headers = self._check_rpm(flavour)
            if not body_ok:
                raise _BadRequest(400, "We could not parse the JSON body of your request."
                                  if flavour == "openai" else "There was an error parsing the body of your request.")
            if flavour == "openai":
                self._validate_openai(body)
            else:
                self._validate_anthropic(body)
        except _BadRequest as e:
            return await self._send_error(writer, flavour, e.status, e.message, keep, error_type=e.error_type,
                                          code=e.code, param=e.param, extra={**rate_headers, **e.headers})

        try:
            reply: Reply | None = self._script.popleft()
        except IndexError:
            reply = None
        # Unwrap Slow / per-reply delays and headers into one wait and one header set.
        wait = 0.0
        extra = dict(rate_headers)
        while reply is not None:
            wait += reply.delay
            extra.update({k.lower(): v for k, v in reply.headers.items()})
            if isinstance(reply, Slow):
                wait += reply.seconds
                reply = reply.then
            else:
                break
        if wait > 0 and not await self._wait_unless_hung_up(writer, wait):
            self.hangups += 1
            return False

        if isinstance(reply, Raw):
            writer.write(reply.data)
            await writer.drain()
            if not reply.keep:
                writer.close()
            return reply.keep
        if isinstance(reply, Hangup):
            if reply.reset:
                _reset(writer)
            else:
                writer.close()
            return False
        if isinstance(reply, HugeBody):
            return await self._send_huge(writer, flavour, reply)
        if isinstance(reply, (ErrorStatus, RateLimit, ServerError, Overloaded)):
            return await self._send_fault(writer, flavour, reply, keep, extra)

        stream = bool(body.get("stream"))
        content = self._content_for(flavour, body, reply)
        if stream:
            return await self._send_stream(writer, flavour, body, content, reply, version, keep, extra)
        payload = (self._openai_body if flavour == "openai" else self._anthropic_body)(body, content)
        data = _dumps(payload)
        if isinstance(reply, Malformed):
            data = reply.body if reply.body is not None else data[: len(data) // 2]
        if isinstance(reply, Drip):
            head = self._head(200, flavour, {"content-type": "application/json", **extra}, False, len(data))
            return await self._send_drip(writer, head + data, reply)
        if isinstance(reply, StreamCut):
            # Announce the whole body, deliver half, hang up.
            head = self._head(200, flavour, {"content-type": "application/json", **extra}, True, len(data))
            writer.write(head + data[: len(data) // 2])
            await writer.drain()
            writer.close()  # close() flushes what is buffered, then FIN
            return False
        return await self._send(writer, flavour, 200, {"content-type": "application/json", **extra}, data, keep)

    async def _wait_unless_hung_up(self, writer: asyncio.StreamWriter, seconds: float) -> bool:
        """Sleep, but notice a client that closes the connection meanwhile (False)."""
        reader = self._readers.get(writer)
        if reader is None:
            await asyncio.sleep(seconds)
            return True
        sleeping = asyncio.ensure_future(asyncio.sleep(seconds))
        reading = asyncio.ensure_future(reader.read(1))
        try:
            done, _pending = await asyncio.wait({sleeping, reading}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            reading.cancel()
            # Let the read finish cancelling before the connection reads the next
            # request: a StreamReader allows one waiting reader at a time.
            await asyncio.gather(sleeping, reading, return_exceptions=True)
        if reading in done and not reading.cancelled() and reading.exception() is None:
            return reading.result() != b""  # EOF: the client is gone
        return True

    # ----- checks ----------------------------------------------------------

    def _check_auth(self, flavour: Flavour, headers: dict[str, str]) -> None:
        if flavour == "openai":
            if self.api_key is None:
                return
            auth = headers.get("authorization")
            if auth is None:
                raise _BadRequest(401, "You didn't provide an API key. You need to provide your API key in an "
                                  "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                                  code="invalid_api_key")
            if auth != f"Bearer {self.api_key}":
                raise _BadRequest(401, "Incorrect API key provided.", code="invalid_api_key")
            return
        if self.api_key is not None:
            key = headers.get("x-api-key")
            if key is None:
                raise _BadRequest(401, "x-api-key header is required")
            if key != self.api_key:
                raise _BadRequest(401, "invalid x-api-key")
        if "anthropic-version" not in headers:
            raise _BadRequest(400, "anthropic-version: header is required")

    def _check_rpm(self, flavour: Flavour) -> dict[str, str]:
        """Sliding 60 s window; returns the rate-limit headers the provider would send."""
        if self.rpm is None:
            return {}
        now = time.monotonic()
        window = self._window
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= self.rpm:
            wait = window[0] + 60 - now
            hdrs = self._rate_headers(flavour, 0, wait)
            hdrs["retry-after"] = str(max(1, math.ceil(wait)))
            msg = (f"Rate limit reached for requests per min (RPM): Limit {self.rpm}, Used {len(window)}, "
                   f"Requested 1. Please try again in {_openai_duration(wait)}.") if flavour == "openai" else \
                f"This request would exceed your organization's rate limit of {self.rpm} requests per minute."
            raise _BadRequest(429, msg, headers=hdrs)
        window.append(now)
        return self._rate_headers(flavour, self.rpm - len(window), window[0] + 60 - now)

    def _rate_headers(self, flavour: Flavour, remaining: int, reset: float) -> dict[str, str]:
        if flavour == "openai":
            return {"x-ratelimit-limit-requests": str(self.rpm),
                    "x-ratelimit-remaining-requests": str(remaining),
                    "x-ratelimit-reset-requests": _openai_duration(reset)}
        return {"anthropic-ratelimit-requests-limit": str(self.rpm),
                "anthropic-ratelimit-requests-remaining": str(remaining),
                "anthropic-ratelimit-requests-reset": _rfc3339_in(reset)}

    @staticmethod
    def _validate_openai(body: Any) -> None:
        if not isinstance(body, dict):
            raise _BadRequest(400, "We could not parse the JSON body of your request.")
        if not body.get("model"):
            raise _BadRequest(400, "you must provide a model parameter")
        msgs = body.get("messages")
        if msgs is None:
            raise _BadRequest(400, "Missing required parameter: 'messages'.", param="messages",
                              code="missing_required_parameter")
        if not isinstance(msgs, list) or not msgs:
            raise _BadRequest(400, "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                              "but got an empty array instead.", param="messages", code="empty_array")
        roles = ("system", "developer", "user", "assistant", "tool", "function")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in roles:
                role = m.get("role") if isinstance(m, dict) else None
                raise _BadRequest(400, f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                                  "'user', 'function', 'tool', and 'developer'.", param=f"messages[{i}].role",
                                  code="invalid_value")
            _validate_openai_message(i, m)
        _validate_openai_tools(body)
        _validate_openai_tool_turns(msgs)
        if body.get("stream_options") is not None and not body.get("stream"):
            raise _BadRequest(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                              param="stream_options", code="invalid_value")
        rf = body.get("response_format")
        if isinstance(rf, dict) and rf.get("type") == "json_schema":
            js = rf.get("json_schema")
            if not isinstance(js, dict):
                raise _BadRequest(400, "Missing required parameter: 'response_format.json_schema'.",
                                  param="response_format.json_schema", code="missing_required_parameter")
            if not js.get("name"):
                raise _BadRequest(400, "Missing required parameter: 'response_format.json_schema.name'.",
                                  param="response_format.json_schema.name", code="missing_required_parameter")

    @staticmethod
    def _validate_anthropic(body: Any) -> None:
        if not isinstance(body, dict):
            raise _BadRequest(400, "There was an error parsing the body of your request.")
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                raise _BadRequest(400, f"{name}: Field required")
        if not isinstance(body["max_tokens"], int) or isinstance(body["max_tokens"], bool):
            raise _BadRequest(400, "max_tokens: Input should be a valid integer")
        msgs = body["messages"]
        if not isinstance(msgs, list):
            raise _BadRequest(400, "messages: Input should be a valid list")
        for i, m in enumerate(msgs):
            role = m.get("role") if isinstance(m, dict) else None
            if role == "system":
                raise _BadRequest(400, 'messages: Unexpected role "system". The Messages API accepts a top-level '
                                  '`system` parameter, not "system" as an input message role.')
            if role not in ("user", "assistant"):
                raise _BadRequest(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        _validate_anthropic_tools(body)
        _validate_anthropic_tool_turns(msgs)

    # ----- what to say -----------------------------------------------------

    def _next_id(self) -> int:
        return next(self._ids)

    def _content_for(self, flavour: Flavour, body: dict[str, Any], reply: Reply | None) -> _Content:
        forced = self._forced_tool(flavour, body)
        if isinstance(reply, Text):
            return _Content(reply.text)
        if isinstance(reply, JsonObject):
            if flavour == "anthropic" and forced is not None:
                return _Content(None, [(self._tool_id(flavour), forced[0], reply.value)])
            return _Content(json.dumps(reply.value))
        if isinstance(reply, ToolCall):
            return _Content(reply.text, [(reply.id or self._tool_id(flavour), reply.name, reply.arguments)])
        if isinstance(reply, ToolCalls):
            return _Content(reply.text, [(c.id or self._tool_id(flavour), c.name, c.arguments)
                                         for c in reply.calls])
        # Default, Malformed, StreamCut and None all carry the default reply.
        if flavour == "openai":
            rf = body.get("response_format")
            if isinstance(rf, dict) and rf.get("type") == "json_schema":
                return _Content(json.dumps(schema_example(rf["json_schema"].get("schema", {}))))
            if isinstance(rf, dict) and rf.get("type") == "json_object":
                return _Content(json.dumps({"echo": self._last_user(body)}))
            if forced is not None:
                # OpenAI documents that a forced tool_choice finishes with "stop",
                # not "tool_calls".
                return _Content(None, [(self._tool_id(flavour), forced[0],
                                        schema_example(forced[1]))], finish="stop")
        elif forced is not None:
            return _Content(None, [(self._tool_id(flavour), forced[0], schema_example(forced[1]))])
        return _Content("echo: " + self._last_user(body))

    @staticmethod
    def _forced_tool(flavour: Flavour, body: dict[str, Any]) -> tuple[str, Any] | None:
        """(name, parameters schema) of the tool the request forces, if any.
        Anthropic {"type":"any"} (some tool, the model picks) counts as forcing the
        last tool: our adapter appends its structured-output tool last."""
        tc = body.get("tool_choice")
        if not isinstance(tc, dict):
            return None
        if flavour == "anthropic" and tc.get("type") == "any":
            tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")]
            if tools:
                return tools[-1]["name"], tools[-1].get("input_schema", {})
        if flavour == "anthropic" and tc.get("type") == "tool":
            for t in body.get("tools") or []:
                if isinstance(t, dict) and t.get("name") == tc.get("name"):
                    return t["name"], t.get("input_schema", {})
        if flavour == "openai" and tc.get("type") == "function":
            name = (tc.get("function") or {}).get("name")
            for t in body.get("tools") or []:
                fn = t.get("function") if isinstance(t, dict) else None
                if isinstance(fn, dict) and fn.get("name") == name:
                    return name, fn.get("parameters", {})
        return None

    def _tool_id(self, flavour: Flavour) -> str:
        n = self._next_id()
        return f"call_fake{n:020d}" if flavour == "openai" else f"toolu_fake{n:020d}"

    @staticmethod
    def _last_user(body: dict[str, Any]) -> str:
        for m in reversed(body.get("messages") or []):
            if isinstance(m, dict) and m.get("role") == "user":
                return _text_of(m.get("content"))
        return ""

    @staticmethod
    def _input_tokens(body: dict[str, Any]) -> int:
        n = _words(_text_of(body.get("system"))) if "system" in body else 0
        for m in body.get("messages") or []:
            if isinstance(m, dict):
                n += _words(_text_of(m.get("content")))
        return max(1, n)

    @staticmethod
    def _output_tokens(content: _Content) -> int:
        n = _words(content.text or "")
        for _tid, _name, args in content.tools:
            n += _words(args if isinstance(args, str) else json.dumps(args))
        return max(1, n)

    @staticmethod
    def _args_str(args: Any) -> str:
        return args if isinstance(args, str) else json.dumps(args)

    @staticmethod
    def _args_obj(args: Any) -> Any:
        if isinstance(args, str):
            try:
                return json.loads(args)
            except ValueError:
                return {}
        return args

    @staticmethod
    def _openai_usage(p: int, c: int) -> dict[str, Any]:
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}

    @staticmethod
    def _anthropic_usage(i: int, o: int) -> dict[str, Any]:
        return {"input_tokens": i, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                "output_tokens": o, "service_tier": "standard"}

    def _openai_body(self, body: dict[str, Any], c: _Content) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": c.text, "refusal": None, "annotations": []}
        finish = "stop"
        if c.tools:
            message["tool_calls"] = [{"id": tid, "type": "function",
                                      "function": {"name": name, "arguments": self._args_str(args)}}
                                     for tid, name, args in c.tools]
            finish = c.finish or "tool_calls"
        return {
            "id": f"chatcmpl-fake{self._next_id():024d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": self._openai_usage(self._input_tokens(body), self._output_tokens(c)),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }

    def _anthropic_body(self, body: dict[str, Any], c: _Content) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = []
        if c.text is not None:
            blocks.append({"type": "text", "text": c.text})
        for tid, name, args in c.tools:
            blocks.append({"type": "tool_use", "id": tid, "name": name, "input": self._args_obj(args)})
        return {
            "id": f"msg_fake{self._next_id():024d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": blocks,
            "stop_reason": "tool_use" if c.tools else "end_turn",
            "stop_sequence": None,
            "usage": self._anthropic_usage(self._input_tokens(body), self._output_tokens(c)),
        }

    # ----- streams ---------------------------------------------------------

    def _openai_events(self, body: dict[str, Any], c: _Content) -> list[bytes]:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base: dict[str, Any] = {"id": f"chatcmpl-fake{self._next_id():024d}", "object": "chat.completion.chunk",
                                "created": int(time.time()), "model": body["model"],
                                "service_tier": "default", "system_fingerprint": "fp_fake"}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            obj = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            if include_usage:
                obj["usage"] = None  # the real API sends null on every chunk but the last
            return b"data: " + _dumps(obj) + b"\n\n"

        events: list[bytes] = []
        if c.text is not None:
            events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
            events.extend(chunk({"content": p}) for p in _pieces(c.text))
        # Parallel calls come one after the other, each opened by a chunk with its
        # id and name, its arguments then streamed under the same `index`.
        for k, (tid, name, args) in enumerate(c.tools):
            head = {"index": k, "id": tid, "type": "function", "function": {"name": name, "arguments": ""}}
            first: dict[str, Any] = {"tool_calls": [head]}
            if c.text is None and k == 0:
                first = {"role": "assistant", "content": None, "tool_calls": [head], "refusal": None}
            events.append(chunk(first))
            events.extend(chunk({"tool_calls": [{"index": k, "function": {"arguments": p}}]})
                          for p in _pieces(self._args_str(args)))
        if c.tools:
            finish = c.finish or "tool_calls"
        else:
            finish = "stop"
        events.append(chunk({}, finish))
        if include_usage:
            usage = self._openai_usage(self._input_tokens(body), self._output_tokens(c))
            events.append(b"data: " + _dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        return events

    def _anthropic_events(self, body: dict[str, Any], c: _Content) -> list[bytes]:
        def ev(name: str, obj: dict[str, Any]) -> bytes:
            return b"event: " + name.encode() + b"\ndata: " + _dumps(obj) + b"\n\n"

        message = {"id": f"msg_fake{self._next_id():024d}", "type": "message", "role": "assistant",
                   "model": body["model"], "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": self._anthropic_usage(self._input_tokens(body), 1)}
        events = [ev("message_start", {"type": "message_start", "message": message})]
        index = 0
        if c.text is not None:
            events.append(ev("content_block_start", {"type": "content_block_start", "index": index,
                                                     "content_block": {"type": "text", "text": ""}}))
            events.append(ev("ping", {"type": "ping"}))
            events.extend(ev("content_block_delta", {"type": "content_block_delta", "index": index,
                                                     "delta": {"type": "text_delta", "text": p}})
                          for p in _pieces(c.text))
            events.append(ev("content_block_stop", {"type": "content_block_stop", "index": index}))
            index += 1
        for tid, name, args in c.tools:
            events.append(ev("content_block_start", {"type": "content_block_start", "index": index,
                                                     "content_block": {"type": "tool_use", "id": tid,
                                                                       "name": name, "input": {}}}))
            events.extend(ev("content_block_delta", {"type": "content_block_delta", "index": index,
                                                     "delta": {"type": "input_json_delta", "partial_json": p}})
                          for p in _pieces(json.dumps(self._args_obj(args))))
            events.append(ev("content_block_stop", {"type": "content_block_stop", "index": index}))
            index += 1
        events.append(ev("message_delta", {"type": "message_delta",
                                           "delta": {"stop_reason": "tool_use" if c.tools else "end_turn",
                                                     "stop_sequence": None},
                                           "usage": {"output_tokens": self._output_tokens(c)}}))
        events.append(ev("message_stop", {"type": "message_stop"}))
        return events

    async def _send_huge(self, writer: asyncio.StreamWriter, flavour: Flavour, reply: HugeBody) -> bool:
        head = self._head(reply.status, flavour, {"content-type": "application/json"}, False,
                          None if reply.chunked else reply.size, chunked=reply.chunked)
        prefix = b'{"error": {"message": "' if reply.status >= 400 else b'{"choices": [{"message": {"content": "'
        piece = b"x" * 65536
        sent = 0
        try:
            writer.write(head)
            while sent < reply.size:
                data = (prefix + piece)[: min(65536, reply.size - sent)] if sent == 0 else piece[: reply.size - sent]
                writer.write(b"%x\r\n%s\r\n" % (len(data), data) if reply.chunked else data)
                await writer.drain()
                sent += len(data)
            if reply.chunked:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.bytes_sent.append(sent)
            writer.close()
        return False

    async def _send_keepalive_only(self, writer: asyncio.StreamWriter, flavour: Flavour, events: list[bytes],
                                   reply: KeepAliveOnly) -> bool:
        writer.write(self._head(200, flavour, {"content-type": "text/event-stream"}, False, None))
        for e in events[: reply.events]:
            writer.write(b"%x\r\n%s\r\n" % (len(e), e))
        comment = b": keep-alive\n\n"
        deadline = time.monotonic() + reply.limit
        try:
            await writer.drain()
            while time.monotonic() < deadline:
                await asyncio.sleep(reply.interval)
                writer.write(b"%x\r\n%s\r\n" % (len(comment), comment))
                await writer.drain()
        except (ConnectionError, OSError):
            self.hangups += 1
        writer.close()
        return False

    async def _send_drip(self, writer: asyncio.StreamWriter, data: bytes, reply: Drip) -> bool:
        try:
            for i in range(0, len(data), reply.piece):
                writer.write(data[i: i + reply.piece])
                await writer.drain()
                if i + reply.piece < len(data):
                    await asyncio.sleep(reply.interval)
        except (ConnectionError, OSError):
            self.hangups += 1
        writer.close()
        return False

    async def _send_stream(self, writer: asyncio.StreamWriter, flavour: Flavour, body: dict[str, Any],
                           c: _Content, reply: Reply | None, version: str, keep: bool,
                           extra: dict[str, str]) -> bool:
        events = (self._openai_events if flavour == "openai" else self._anthropic_events)(body, c)
        if isinstance(reply, KeepAliveOnly):
            return await self._send_keepalive_only(writer, flavour, events, reply)
        if isinstance(reply, Drip):
            hdrs = {"content-type": "text/event-stream; charset=utf-8", **extra}
            data = self._head(200, flavour, hdrs, False, None, chunked=False) + b"".join(events)
            return await self._send_drip(writer, data, reply)
        if isinstance(reply, Malformed):
            # Corrupt the second event (the first after the stream's opening
            # one): keep its SSE framing, cut its JSON in half.
            i = min(1, len(events) - 1)
            bad = reply.body if reply.body is not None else events[i][: len(events[i]) // 2].rstrip(b"\n")
            events[i] = bad + b"\n\n"
        cut = reply.after if isinstance(reply, StreamCut) else None
        # HTTP/1.0 has no chunked encoding: the body then ends when we close.
        chunked = version != "HTTP/1.0"
        keep = keep and chunked and cut is None
        hdrs = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", **extra}
        out = [self._head(200, flavour, hdrs, keep, None, chunked=chunked)]
        for i, e in enumerate(events):
            if cut is not None and i >= cut:
                break
            out.append(b"%x\r\n%s\r\n" % (len(e), e) if chunked else e)
            # Flush per event so clients really receive them one by one.
            writer.write(b"".join(out))
            out.clear()
            await writer.drain()
            if reply is not None and reply.chunk_delay and i + 1 < len(events):
                await asyncio.sleep(reply.chunk_delay)
        if cut is not None:
            writer.write(b"".join(out))
            await writer.drain()
            writer.close()  # FIN without the terminating 0-length chunk
            return False
        if chunked:
            out.append(b"0\r\n\r\n")
        writer.write(b"".join(out))
        await writer.drain()
        return keep

    # ----- errors and raw sends -------------------------------------------

    async def _send_fault(self, writer: asyncio.StreamWriter, flavour: Flavour, reply: Reply, keep: bool,
                          extra: dict[str, str]) -> bool:
        error_type = code = None
        if isinstance(reply, RateLimit):
            status, message = 429, reply.message
            if reply.retry_after is not None:
                extra.setdefault("retry-after", _fmt_seconds(reply.retry_after))
            if reply.retry_after_ms is not None:
                extra.setdefault("retry-after-ms", _fmt_seconds(reply.retry_after_ms))
        elif isinstance(reply, ServerError):
            status, message = reply.status, reply.message
        elif isinstance(reply, Overloaded):
            status, message = 529, reply.message
        else:
            assert isinstance(reply, ErrorStatus)
            status, message, error_type, code = reply.status, reply.message, reply.error_type, reply.code
        return await self._send_error(writer, flavour, status, message, keep, error_type=error_type,
                                      code=code, extra=extra)

    async def _send_error(self, writer: asyncio.StreamWriter, flavour: Flavour, status: int,
                          message: str | None, keep: bool, *, error_type: str | None = None,
                          code: str | None = None, param: str | None = None,
                          extra: dict[str, str] | None = None) -> bool:
        if flavour == "openai":
            payload: dict[str, Any] = {"error": {
                "message": message or _OPENAI_ERR_MSG.get(status, _REASONS.get(status, "Error")),
                "type": error_type or _OPENAI_ERR_TYPE.get(status, "server_error" if status >= 500
                                                           else "invalid_request_error"),
                "param": param,
                "code": code if code is not None else _OPENAI_ERR_CODE.get(status),
            }}
        else:
            payload = {"type": "error",
                       "error": {"type": error_type or _ANTHROPIC_ERR_TYPE.get(
                           status, "api_error" if status >= 500 else "invalid_request_error"),
                           "message": message or _ANTHROPIC_ERR_MSG.get(status, _REASONS.get(status, "Error"))},
                       "request_id": f"req_fake{self._next_id():024d}"}
        return await self._send(writer, flavour, status, {"content-type": "application/json", **(extra or {})},
                                _dumps(payload), keep)

    async def _send(self, writer: asyncio.StreamWriter, flavour: Flavour, status: int,
                    headers: dict[str, str], data: bytes, keep: bool) -> bool:
        writer.write(self._head(status, flavour, headers, keep, len(data)) + data)
        await writer.drain()
        return keep

    async def _send_plain(self, writer: asyncio.StreamWriter, status: int, data: bytes) -> None:
        self.status_counts[status] = self.status_counts.get(status, 0) + 1
        writer.write(f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\ncontent-type: text/plain\r\n"
                     f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode() + data)
        await writer.drain()

    def _http_date(self) -> str:
        now = int(time.time())
        if self._date[1] != now:
            self._date = (email.utils.formatdate(now, usegmt=True), now)
        return self._date[0]

    def _head(self, status: int, flavour: Flavour, headers: dict[str, str], keep: bool,
              length: int | None, *, chunked: bool = True) -> bytes:
        """Status line and headers; also where every response is counted."""
        self.status_counts[status] = self.status_counts.get(status, 0) + 1
        rid = f"req_fake{self._next_id():024d}"
        base = {"date": self._http_date()}
        if flavour == "openai":
            base.update({"x-request-id": rid, "openai-version": "2020-10-01", "openai-processing-ms": "1"})
        else:
            base["request-id"] = rid
        base.update(headers)
        if length is not None:
            base["content-length"] = str(length)
        elif chunked:
            base["transfer-encoding"] = "chunked"
        base["connection"] = "keep-alive" if keep else "close"
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
        lines.extend(f"{k}: {v}" for k, v in base.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


# --------------------------------------------------------------------------
# Process mode (benchmark)
# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--rpm", type=int, default=None)
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--record", action="store_true", help="keep every request in memory (off: it grows)")
    args = ap.parse_args(argv)
    fake = FakeProvider(latency=args.latency_ms / 1000, rpm=args.rpm, api_key=args.api_key,
                        port=args.port, host=args.host, record=args.record)

    def ready() -> None:
        print(f"READY {fake.url}", flush=True)

    # Serve on the main thread so SIGTERM/SIGINT reach the loop's handlers.
    asyncio.run(fake._serve(ready, handle_signals=True))
    print(json.dumps(fake.summary()), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
