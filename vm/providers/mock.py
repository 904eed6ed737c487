"""The offline `mock` provider: deterministic answers with no network, for
demos and tests. Chosen only on request (`provider = "mock"` in Concerto.toml,
or `concerto run --mock`), never as a fallback for a missing key.

Replies come from a JSON file when one is given, else they are made up:

    ["plain text reply", {"json": {"label": "legal"}}, ...]          # one queue
    {"replies": [...], "models": {"Classifier": [...]}}               # per model

A reply is a string, or an object with one of
    "text": "..."                        a text reply
    "json": {...}                        a JSON reply (for execute_with_schema)
    "error": {"kind": "rate_limit", "message": "..."}   a failure (kinds as ProviderError)
    "tool_calls": [{"name": "Calculator__add", "arguments": {"a": 1, "b": 2}, "id": "c1"}]
                                         the model asks for tools; "text" may come
                                         with it as prose, "arguments" defaults to
                                         {} and "id" to a generated mock_call_N
and optionally "tokens_in" / "tokens_out". When the queue is empty, a request
for structured output gets a schema-shaped value (vm.schema.fake_instance) and
any other request gets `mock reply to: <last user message>` (tool calls are
only ever scripted, never made up).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from concerto.vm.providers.base import ChatRequest, Completion, ProviderError, StreamDelta, ToolCall


class MockConfigError(Exception):
    """A bad replies file: the message names the file and the entry."""


@dataclass(frozen=True)
class ScriptedCall:
    name: str
    arguments: dict[str, Any]
    id: str | None = None  # None: the provider numbers it when the reply is used


@dataclass(frozen=True)
class ScriptedReply:
    text: str | None = None
    json: Any = None
    has_json: bool = False
    error_kind: str | None = None
    error_message: str = ""
    tokens_in: int | None = None
    tokens_out: int | None = None
    tool_calls: tuple[ScriptedCall, ...] = ()


def _parse_call(raw: Any, where: str) -> ScriptedCall:
    if not isinstance(raw, dict):
        raise MockConfigError(f"{where}: expected an object with name, arguments and id")
    extra = sorted(set(raw) - {"name", "arguments", "id"})
    if extra:
        raise MockConfigError(f"{where}: unknown field {extra[0]!r} (fields: arguments, id, name)")
    if not isinstance(raw.get("name"), str):
        raise MockConfigError(f"{where}.name: expected a string")
    arguments = raw.get("arguments", {})
    if not isinstance(arguments, dict):
        raise MockConfigError(f"{where}.arguments: expected an object")
    if "id" in raw and not isinstance(raw["id"], str):
        raise MockConfigError(f"{where}.id: expected a string")
    return ScriptedCall(raw["name"], arguments, raw.get("id"))


def _parse_calls(raw: Any, where: str) -> tuple[ScriptedCall, ...]:
    # An empty list is surely a mistake: it would be a reply with nothing in it.
    if not isinstance(raw, list) or not raw:
        raise MockConfigError(f"{where}: expected a non-empty list of tool calls")
    return tuple(_parse_call(c, f"{where}[{i}]") for i, c in enumerate(raw))


def _check_kinds(raw: dict[str, Any], where: str) -> None:
    """Exactly one kind of reply; prose may accompany tool calls."""
    kinds = [k for k in ("text", "json", "error", "tool_calls") if k in raw]
    if kinds == ["text", "tool_calls"]:
        return
    if len(kinds) != 1:
        raise MockConfigError(f"{where}: a reply needs exactly one of text, json, error or tool_calls "
                              "(text may accompany tool_calls)")


def _parse_reply(raw: Any, where: str) -> ScriptedReply:
    if isinstance(raw, str):
        return ScriptedReply(text=raw)
    if not isinstance(raw, dict):
        raise MockConfigError(f"{where}: a reply is a string or an object with text, json, error or tool_calls")
    known = {"text", "json", "error", "tool_calls", "tokens_in", "tokens_out"}
    extra = sorted(set(raw) - known)
    if extra:
        raise MockConfigError(f"{where}: unknown field {extra[0]!r} (fields: {', '.join(sorted(known))})")
    _check_kinds(raw, where)
    for count in ("tokens_in", "tokens_out"):
        if count in raw and not (isinstance(raw[count], int) and raw[count] >= 0):
            raise MockConfigError(f"{where}.{count}: expected a non-negative integer")
    common = {"tokens_in": raw.get("tokens_in"), "tokens_out": raw.get("tokens_out")}
    if "tool_calls" in raw:
        calls = _parse_calls(raw["tool_calls"], f"{where}.tool_calls")
        if "text" in raw and not isinstance(raw["text"], str):
            raise MockConfigError(f"{where}.text: expected a string")
        return ScriptedReply(text=raw.get("text"), tool_calls=calls, **common)
    if "text" in raw:
        if not isinstance(raw["text"], str):
            raise MockConfigError(f"{where}.text: expected a string")
        return ScriptedReply(text=raw["text"], **common)
    if "json" in raw:
        return ScriptedReply(json=raw["json"], has_json=True, **common)
    err = raw["error"]
    if not isinstance(err, dict) or not isinstance(err.get("kind"), str):
        raise MockConfigError(f"{where}.error: expected {{\"kind\": \"...\", \"message\": \"...\"}}")
    return ScriptedReply(error_kind=err["kind"], error_message=str(err.get("message", "mock failure")), **common)


def load_replies(path: str | Path) -> tuple[deque[ScriptedReply], dict[str, deque[ScriptedReply]]]:
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise MockConfigError(f"{p}: cannot read mock replies: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MockConfigError(f"{p}: mock replies are not valid JSON: {e}") from None
    shared: list[Any]
    per_model: dict[str, Any] = {}
    if isinstance(raw, list):
        shared = raw
    elif isinstance(raw, dict):
        extra = sorted(set(raw) - {"replies", "models"})
        if extra:
            raise MockConfigError(f"{p}: unknown field {extra[0]!r} (expected replies, models)")
        shared = raw.get("replies", [])
        per_model = raw.get("models", {})
        if not isinstance(shared, list) or not isinstance(per_model, dict):
            raise MockConfigError(f"{p}: `replies` is a list and `models` maps model names to lists")
    else:
        raise MockConfigError(f"{p}: expected a list of replies or an object with `replies`")
    queue = deque(_parse_reply(r, f"{p}: replies[{i}]") for i, r in enumerate(shared))
    models: dict[str, deque[ScriptedReply]] = {}
    for name, items in per_model.items():
        if not isinstance(items, list):
            raise MockConfigError(f"{p}: models.{name}: expected a list of replies")
        models[name] = deque(_parse_reply(r, f"{p}: models.{name}[{i}]") for i, r in enumerate(items))
    return queue, models


def _words(text: str) -> int:
    return max(1, len(text.split()))


class MockProvider:
    def __init__(self, replies_path: str | None = None) -> None:
        self.queue: deque[ScriptedReply] = deque()
        self.by_model: dict[str, deque[ScriptedReply]] = {}
        self._calls_made = 0  # numbers the generated tool call ids across the run
        if replies_path:
            self.queue, self.by_model = load_replies(replies_path)

    def _next(self, model_label: str) -> ScriptedReply | None:
        own = self.by_model.get(model_label)
        if own:
            return own.popleft()
        return self.queue.popleft() if self.queue else None

    def _tool_calls(self, reply: ScriptedReply | None) -> list[ToolCall]:
        """The scripted calls, each with an id (unique for the provider's life
        when the script gave none, as a real provider's are)."""
        out: list[ToolCall] = []
        for call in reply.tool_calls if reply is not None else ():
            self._calls_made += 1
            out.append(ToolCall(call.id or f"mock_call_{self._calls_made}", call.name, dict(call.arguments)))
        return out

    def complete(self, req: ChatRequest, model_label: str) -> Completion:
        prompt_words = sum(_words(m.content) for m in req.messages)
        reply = self._next(model_label)
        if reply is not None and reply.error_kind is not None:
            raise ProviderError(reply.error_kind, f"mock: {reply.error_message}")
        structured = None
        if reply is not None and reply.has_json:
            structured = reply.json
            text = json.dumps(reply.json)
        elif reply is not None:
            text = reply.text or ""
        elif req.structured is not None:
            from concerto.vm.schema import fake_instance

            structured = fake_instance(req.structured.schema, seed=model_label)
            text = json.dumps(structured)
        else:
            last = next((m.content for m in reversed(req.messages) if m.role == "user"), "")
            text = f"mock reply to: {last}"
        tokens_in = reply.tokens_in if reply is not None and reply.tokens_in is not None else prompt_words
        tokens_out = reply.tokens_out if reply is not None and reply.tokens_out is not None else _words(text)
        calls = self._tool_calls(reply)
        return Completion(text=text, model=req.model, tokens_in=tokens_in, tokens_out=tokens_out,
                          finish_reason="tool_calls" if calls else "stop", tool_calls=calls,
                          structured=None if reply is None or not reply.has_json else structured)

    def stream(self, req: ChatRequest, model_label: str) -> list[StreamDelta]:
        done = self.complete(req, model_label)
        pieces = done.text.split(" ")
        deltas = [StreamDelta(text=p if i == 0 else " " + p) for i, p in enumerate(pieces)]
        deltas.append(StreamDelta(tokens_in=done.tokens_in, tokens_out=done.tokens_out,
                                  finish_reason="stop", model=done.model, done=True))
        return deltas
