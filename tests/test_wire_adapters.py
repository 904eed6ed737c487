"""Provider adapters on literal wire payloads, the retry-after header rules, and
the connection limits shared by every model on a connection (measured on the
fake server)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import anyio
import pytest

from concerto import ir
from concerto.compiler import compile_source
from concerto.compiler.manifest import Manifest
from concerto.vm.connections import CallOptions, ConnectionManager
from concerto.vm.loader import load_bytes
from concerto.vm.models import build_runtime
from concerto.vm.providers import anthropic, openai
from concerto.vm.providers.base import (
    ChatMessage,
    ChatRequest,
    Completion,
    Endpoint,
    ProviderError,
    StructuredOutput,
    ToolCall,
    ToolSpec,
)
from concerto.vm.providers.headers import go_duration, retry_after_seconds
from concerto.vm.values import Ok
from tests import fake_provider
from tests.fake_provider import FakeProvider

KEY = "sk-SECRET-key"
SCHEMA = {"type": "object", "title": "Out", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
          "required": ["a"]}


def request(**kw) -> ChatRequest:
    base = dict(model="m", messages=[ChatMessage("system", "sys"), ChatMessage("user", "hi")])
    base.update(kw)
    return ChatRequest(**base)


def test_openai_request_shape() -> None:
    call = openai.build_request(request(temperature=0.5, stop=["x"], stream=True),
                                Endpoint("https://h/v1/", KEY, {"X-Team": "a"}, "org-1", "proj-1"))
    assert call.url == "https://h/v1/chat/completions"
    assert call.headers["Authorization"] == f"Bearer {KEY}" and call.headers["OpenAI-Organization"] == "org-1"
    assert call.headers["OpenAI-Project"] == "proj-1" and call.headers["X-Team"] == "a"
    assert call.body["stream"] is True and call.body["stream_options"] == {"include_usage": True}
    assert call.body["stop"] == ["x"] and "max_tokens" not in call.body


def test_openai_structured_output_falls_back_to_json_object_for_maps() -> None:
    strict = openai.build_request(request(structured=StructuredOutput("My Out", SCHEMA)), Endpoint("u", None))
    assert strict.body["response_format"]["json_schema"]["name"] == "My_Out"
    assert "Authorization" not in strict.headers
    loose_schema = {"type": "object", "additionalProperties": {"type": "integer"}}
    loose = openai.build_request(request(structured=StructuredOutput("M", loose_schema)), Endpoint("u", None))
    assert loose.body["response_format"] == {"type": "json_object"}
    assert any("JSON" in m["content"] for m in loose.body["messages"])


def test_openai_parse_reply_usage_tool_calls_and_filters() -> None:
    body = {"id": "c", "model": "gpt-4o", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": 1}"}}]}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}
    done = openai.parse_response(200, {}, json.dumps(body).encode())
    assert done.text == "" and done.tokens_in == 11 and done.tokens_out == 3 and done.model == "gpt-4o"
    assert done.tool_calls[0].name == "lookup" and done.tool_calls[0].arguments == {"q": 1}
    body["choices"][0]["finish_reason"] = "content_filter"
    with pytest.raises(ProviderError) as info:
        openai.parse_response(200, {}, json.dumps(body).encode())
    assert info.value.kind == "content_filter"
    for bad in (b"{", b"[]", b'{"choices": []}', b'{"choices": [{"message": {"content": 5}}]}'):
        with pytest.raises(ProviderError) as info:
            openai.parse_response(200, {}, bad)
        assert info.value.kind == "invalid_response"


def test_anthropic_request_merges_roles_and_lifts_system() -> None:
    req = request(messages=[ChatMessage("system", "a"), ChatMessage("assistant", "x"), ChatMessage("user", "u1"),
                            ChatMessage("user", "u2"), ChatMessage("system", "b")],
                  structured=StructuredOutput("Out", SCHEMA))
    call = anthropic.build_request(req, Endpoint("https://api.example.com/v1", KEY))
    assert call.url == "https://api.example.com/v1/messages"
    assert call.headers["x-api-key"] == KEY and call.headers["anthropic-version"] == "2023-06-01"
    body = call.body
    assert body["system"] == "a\n\nb" and body["max_tokens"] == anthropic.DEFAULT_MAX_TOKENS
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][2]["content"] == "u1\n\nu2"
    assert body["tool_choice"] == {"type": "tool", "name": "Out"}
    assert body["tools"][0]["input_schema"]["type"] == "object"


def test_anthropic_parse_tool_use_as_structured_answer() -> None:
    body = {"id": "m", "type": "message", "role": "assistant", "model": "claude", "stop_reason": "tool_use",
            "content": [{"type": "tool_use", "id": "t", "name": "Out", "input": {"a": "x"}}],
            "usage": {"input_tokens": 5, "output_tokens": 2}}
    done = anthropic.parse_response(200, {}, json.dumps(body).encode())
    assert done.structured == {"a": "x"} and json.loads(done.text) == {"a": "x"} and done.tokens_in == 5


def test_error_classification_and_messages_never_carry_the_key() -> None:
    cases = [
        (openai, 429, {"error": {"message": "slow down"}}, "rate_limit"),
        (openai, 503, {"error": {"message": "down"}}, "server"),
        (openai, 401, {"error": {"message": "bad key"}}, "auth"),
        (openai, 404, {"error": {"message": "no model"}}, "not_found"),
        (openai, 400, {"error": {"message": "bad"}}, "bad_request"),
        (anthropic, 529, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}, "overloaded"),
        (anthropic, 429, {"type": "error", "error": {"type": "rate_limit_error", "message": "rl"}}, "rate_limit"),
    ]
    for module, status, body, kind in cases:
        err = module.classify_error(status, {"retry-after": "2"}, json.dumps(body).encode())
        assert err.kind == kind and str(status) in err.message and err.retry_after == 2.0
        assert KEY not in err.message
    assert openai.classify_error(500, {}, b"<html>").kind == "server"


def test_stream_parsers_and_cut_detection() -> None:
    p = openai.StreamParser()
    deltas = []
    for line in ['data: {"choices":[{"delta":{"content":"he"}}]}', "", ": keep-alive",
                 'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}',
                 'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}', "data: [DONE]"]:
        deltas += p.feed_line(line)
    assert "".join(d.text for d in deltas) == "he" and deltas[-1].done and p.finish() == []
    assert any(d.tokens_in == 3 for d in deltas)
    cut = openai.StreamParser()
    cut.feed_line('data: {"choices":[{"delta":{"content":"x"}}]}')
    with pytest.raises(ProviderError) as info:
        cut.finish()
    assert info.value.kind == "stream_cut" and info.value.retryable
    a = anthropic.StreamParser()
    out = []
    for event, data in [("message_start", {"type": "message_start", "message": {"model": "c", "usage": {"input_tokens": 4}}}),
                        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "yo"}}),
                        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}),
                        ("message_stop", {"type": "message_stop"})]:
        out += a.feed_line(f"event: {event}") + a.feed_line("data: " + json.dumps(data))
    assert "".join(d.text for d in out) == "yo" and out[-1].done and a.finish() == []
    with pytest.raises(ProviderError) as info:
        anthropic.StreamParser().feed_line('data: {"type":"error","error":{"type":"overloaded_error","message":"busy"}}')
    assert info.value.kind == "overloaded"


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert retry_after_seconds({"Retry-After-Ms": "250"}) == 0.25
    assert retry_after_seconds({"RETRY-AFTER": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "Thu, 01 Jan 2026 00:00:07 GMT"}, now) == 7.0
    assert retry_after_seconds({"x-ratelimit-reset-requests": "1m2.5s", "x-ratelimit-reset-tokens": "20ms",
                                "x-ratelimit-remaining-tokens": "0"}) == 0.02
    assert retry_after_seconds({"x-ratelimit-reset-requests": "6m0s"}) == 360.0
    reset = (now + timedelta(seconds=12)).isoformat().replace("+00:00", "Z")
    assert retry_after_seconds({"anthropic-ratelimit-requests-reset": reset}, now) == 12.0
    for garbage in ({"retry-after": "soon"}, {"retry-after-ms": "-5"}, {"x-ratelimit-reset-requests": "1x"},
                    {"anthropic-ratelimit-tokens-reset": "yesterday"}, {}):
        assert retry_after_seconds(garbage, now) is None
    assert go_duration("1h2m3.5s") == 3723.5 and go_duration("") is None


def test_concurrent_requests_are_shared_by_every_model_on_a_connection() -> None:
    with FakeProvider(latency=0.05) as fake:
        conn = ir.ConnectionConfig(provider="openai", api_key_env="K", base_url=fake.openai_base_url,
                                   default_model="gpt-4o-mini",
                                   rate_limit=ir.RateLimitConfig(concurrent_requests=3))
        manifest = Manifest(path=None, name="t", version="0", entry=None, connections={"shared": conn},  # type: ignore[arg-type]
                            pricing={}, mcp={})
        src = "model A { provider: shared }\nmodel B { provider: shared }\nfn main() {}\n"
        result = compile_source(src, "main.conc", manifest=manifest)
        assert result.ok, [d.header() for d in result.diagnostics]
        runtime = build_runtime(load_bytes(ir.encode(result.program)), environ={"K": "k"})

        async def main() -> list:
            results: list = []

            async def one(model: str, i: int) -> None:
                results.append(await runtime.aexecute(model, f"q{i}"))

            async with anyio.create_task_group() as tg:
                for i in range(12):
                    tg.start_soon(one, "A" if i % 2 else "B", i)
            await runtime.manager.aclose()
            return results

        results = anyio.run(main)
        assert all(type(r) is Ok for r in results) and len(results) == 12
        assert fake.max_in_flight == 3
        snap = runtime.manager.metrics.snapshot()
        assert snap["connections"]["shared"]["calls"] == 12
        assert snap["models"]["A"]["calls"] == snap["models"]["B"]["calls"] == 6


def complete_on(fake: FakeProvider, provider: str, req: ChatRequest) -> Completion:
    """One call through the connection manager (the path the runtime takes)."""
    base = fake.anthropic_base_url if provider == "anthropic" else fake.openai_base_url
    manager = ConnectionManager({"c": ir.ConnectionConfig(provider=provider, api_key_env="K", base_url=base)},
                                environ={"K": "k"})

    async def main() -> Completion:
        try:
            return await manager.complete("c", req, CallOptions("M", 5.0))
        finally:
            await manager.aclose()

    return anyio.run(main)


ADD = ToolSpec("Calculator__add", "Add two numbers",
               {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}})


def test_anthropic_structured_reply_through_the_manager_leaves_only_user_calls_to_run() -> None:
    with FakeProvider() as fake:
        fake.script(fake_provider.ToolCalls([fake_provider.ToolCall("Calculator__add", {"a": 1, "b": 2}, id="t1"),
                                             fake_provider.ToolCall("Out", {"a": "x"}, id="t2")]))
        done = complete_on(fake, "anthropic", request(tools=[ADD], structured=StructuredOutput("Out", SCHEMA)))
        assert fake.requests[-1].body["tool_choice"] == {"type": "any"}
    assert done.structured == {"a": "x"}
    assert done.tool_calls == [ToolCall("t1", "Calculator__add", {"a": 1, "b": 2})]


def test_anthropic_plain_request_through_the_manager_never_guesses_a_structured_answer() -> None:
    with FakeProvider() as fake:
        fake.script(fake_provider.ToolCall("Calculator__add", {"a": 1, "b": 2}, id="t1"))
        done = complete_on(fake, "anthropic", request(tools=[ADD]))
    assert done.structured is None and done.text == ""
    assert done.tool_calls == [ToolCall("t1", "Calculator__add", {"a": 1, "b": 2})]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_tool_conversation_is_accepted_and_its_results_arrive(provider: str) -> None:
    call = ToolCall("t1", "Calculator__add", {"a": 1, "b": 2})
    messages = [ChatMessage("system", "Use tools."), ChatMessage("user", "1+2?"),
                ChatMessage("assistant", "", tool_calls=(call,)),
                ChatMessage("tool", "division by zero", tool_call_id="t1", is_error=True),
                ChatMessage("user", "And now?")]
    with FakeProvider() as fake:
        fake.script(fake_provider.Text("It failed."))
        done = complete_on(fake, provider, request(messages=messages, tools=[ADD]))
        results = fake.requests[-1].tool_results()
    assert done.text == "It failed."
    # OpenAI's format has no error flag, so only Anthropic carries it.
    assert results == [("t1", "division by zero", provider == "anthropic")]
