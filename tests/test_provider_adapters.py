"""The OpenAI and Anthropic adapters on literal wire payloads (shaped like the
providers' API references show them), and the retry-after header rules.

Adapters are pure, so every test is: build a request and look at the JSON, or
hand a reply body / stream lines in and look at what comes out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from concerto.vm.providers import anthropic, openai
from concerto.vm.providers.base import (
    ChatMessage,
    ChatRequest,
    Endpoint,
    ProviderError,
    StreamDelta,
    StructuredOutput,
    ToolCall,
    ToolSpec,
)
from concerto.vm.providers.mock import MockConfigError, MockProvider
from concerto.vm.providers.headers import go_duration, merge_headers, retry_after_seconds
from concerto.vm.schema import normalize_for_anthropic, normalize_for_openai, openai_strict_supported

KEY = "sk-proj-Zx9Qm2Lk7Yt4Hw1Pv8Rn3Bs6"
ANTHROPIC_KEY = "sk-ant-api03-Hq7Lw2Mz9Xc4Vb1Nk6Jt3Rp8"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)

PERSON = {
    "type": "object",
    "title": "Person",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name"],
}
# A Map<String, Int>: strict json_schema mode cannot express it.
SCORES = {"type": "object", "additionalProperties": {"type": "integer"}}
WEATHER = ToolSpec("get_weather", "Current weather for a city",
                   {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


def chat(*messages: tuple[str, str], **kw: Any) -> ChatRequest:
    return ChatRequest(model=kw.pop("model", "m"), messages=[ChatMessage(r, c) for r, c in messages], **kw)


def raw(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def feed(parser: Any, lines: list[str]) -> list[StreamDelta]:
    out: list[StreamDelta] = []
    for line in lines:
        out += parser.feed_line(line)
    return out + parser.finish()


def sse(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Anthropic-style SSE text, split into the lines the manager feeds."""
    lines: list[str] = []
    for name, data in events:
        lines += [f"event: {name}", "data: " + json.dumps(data), ""]
    return lines


def fail(fn: Any, *args: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        fn(*args)
    return info.value


def test_both_modules_offer_the_same_surface() -> None:
    for module in (openai, anthropic):
        for name in ("build_request", "parse_response", "reply_parser", "classify_error", "StreamParser",
                     "DEFAULT_BASE_URL"):
            assert hasattr(module, name), (module.NAME, name)
    assert openai.DEFAULT_BASE_URL == "https://api.openai.com/v1"
    assert anthropic.DEFAULT_BASE_URL == "https://api.anthropic.com"


# ---------------------------------------------------------------------------
# OpenAI: request
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("base, url", [
    ("https://api.openai.com/v1", "https://api.openai.com/v1/chat/completions"),
    ("https://api.openai.com/v1/", "https://api.openai.com/v1/chat/completions"),
    ("http://localhost:11434/v1", "http://localhost:11434/v1/chat/completions"),
    ("https://gw.example.com/openai//", "https://gw.example.com/openai/chat/completions"),
])
def test_openai_url_joins_without_doubled_slashes(base: str, url: str) -> None:
    assert openai.build_request(chat(("user", "hi")), Endpoint(base, KEY)).url == url


def test_openai_full_request_body_and_headers() -> None:
    req = chat(("system", "Be brief."), ("user", "Weather in Paris?"), model="gpt-4o-mini",
               temperature=0.0, max_tokens=256, top_p=0.9, stop=["\n\n", "END"], tools=[WEATHER])
    call = openai.build_request(req, Endpoint(openai.DEFAULT_BASE_URL, KEY, {"X-Team": "search"}, "org-abc", "proj_def"))
    assert call.headers == {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {KEY}",
        "OpenAI-Organization": "org-abc",
        "OpenAI-Project": "proj_def",
        "X-Team": "search",
    }
    assert call.body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}],
        "temperature": 0.0,  # zero is a setting, not "unset"
        "max_tokens": 256,
        "top_p": 0.9,
        "stop": ["\n\n", "END"],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    }


def test_openai_minimal_request_leaves_unset_options_out() -> None:
    call = openai.build_request(chat(("user", "hi")), Endpoint("http://localhost:11434/v1", None))
    assert call.body == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    # ollama / custom servers without a key: no Authorization header at all.
    assert call.headers == {"Content-Type": "application/json"}


def test_openai_streaming_asks_for_usage() -> None:
    call = openai.build_request(chat(("user", "hi"), stream=True), Endpoint(openai.DEFAULT_BASE_URL, KEY))
    assert call.body["stream"] is True and call.body["stream_options"] == {"include_usage": True}


def test_configured_headers_replace_ours_in_any_case_and_are_sent_once() -> None:
    endpoint = Endpoint("https://gw.example.com/v1", KEY, {"authorization": "Token gw-123", "content-type": "application/json; charset=utf-8"})
    headers = openai.build_request(chat(("user", "hi")), endpoint).headers
    assert headers == {"authorization": "Token gw-123", "content-type": "application/json; charset=utf-8"}
    a = anthropic.build_request(chat(("user", "hi")), Endpoint(anthropic.DEFAULT_BASE_URL, ANTHROPIC_KEY,
                                                               {"Anthropic-Version": "2024-01-01", "anthropic-beta": "x"}))
    assert [k for k in a.headers if k.lower() == "anthropic-version"] == ["Anthropic-Version"]
    assert a.headers["Anthropic-Version"] == "2024-01-01" and a.headers["anthropic-beta"] == "x"


def test_openai_strict_json_schema_with_sanitised_name() -> None:
    assert openai_strict_supported(PERSON)
    call = openai.build_request(chat(("user", "Who wrote Dune?"), structured=StructuredOutput("geo::Person v2!", PERSON)),
                                Endpoint(openai.DEFAULT_BASE_URL, KEY))
    assert call.body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "geo__Person_v2_", "schema": normalize_for_openai(PERSON), "strict": True}}
    schema = call.body["response_format"]["json_schema"]["schema"]
    assert schema["additionalProperties"] is False and sorted(schema["required"]) == ["age", "name"]
    # Strict mode needs no JSON note: the messages are sent as given.
    assert call.body["messages"] == [{"role": "user", "content": "Who wrote Dune?"}]


@pytest.mark.parametrize("name, sent", [("a" * 100, "a" * 64), ("", "output"), ("ok-name_1", "ok-name_1"), ("日本", "__")])
def test_schema_names_fit_the_name_pattern(name: str, sent: str) -> None:
    call = openai.build_request(chat(("user", "x"), structured=StructuredOutput(name, PERSON)), Endpoint("u", None))
    assert call.body["response_format"]["json_schema"]["name"] == sent
    a = anthropic.build_request(chat(("user", "x"), structured=StructuredOutput(name, PERSON)), Endpoint("u", None))
    assert a.body["tool_choice"] == {"type": "tool", "name": sent}


def test_openai_json_object_fallback_adds_a_json_note_when_no_message_says_json() -> None:
    assert not openai_strict_supported(SCORES)
    req = chat(("system", "You grade essays."), ("user", "Grade these."), structured=StructuredOutput("Scores", SCORES))
    call = openai.build_request(req, Endpoint(openai.DEFAULT_BASE_URL, KEY))
    assert call.body["response_format"] == {"type": "json_object"}
    assert call.body["messages"][:2] == [{"role": "system", "content": "You grade essays."},
                                         {"role": "user", "content": "Grade these."}]
    assert call.body["messages"][2]["role"] == "system" and "JSON" in call.body["messages"][2]["content"]
    assert [m.content for m in req.messages] == ["You grade essays.", "Grade these."]  # request untouched


def test_openai_json_object_fallback_keeps_messages_that_already_say_json() -> None:
    req = chat(("user", "Reply with a json map of scores."), structured=StructuredOutput("Scores", SCORES))
    call = openai.build_request(req, Endpoint(openai.DEFAULT_BASE_URL, KEY))
    assert call.body["response_format"] == {"type": "json_object"}
    assert call.body["messages"] == [{"role": "user", "content": "Reply with a json map of scores."}]


# ---------------------------------------------------------------------------
# OpenAI: reply
# ---------------------------------------------------------------------------

OPENAI_REPLY = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-2024-08-06",
    "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "Hello! How can I assist you today?", "refusal": None,
                    "annotations": []},
        "logprobs": None,
        "finish_reason": "stop",
    }],
    "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
    "service_tier": "default",
    "system_fingerprint": "fp_fc9f1d7035",
}

OPENAI_TOOL_REPLY = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1699896916,
    "model": "gpt-4o-mini",
    "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_abc123", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\n\"city\": \"Boston, MA\"\n}"}}]},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }],
    "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99},
}


def test_openai_parse_text_reply() -> None:
    done = openai.parse_response(200, {"content-type": "application/json"}, raw(OPENAI_REPLY))
    assert done.text == "Hello! How can I assist you today?"
    assert (done.model, done.tokens_in, done.tokens_out, done.finish_reason) == ("gpt-4o-2024-08-06", 19, 10, "stop")
    assert done.tool_calls == [] and done.structured is None


def test_openai_parse_tool_calls_with_null_content() -> None:
    done = openai.parse_response(200, {}, raw(OPENAI_TOOL_REPLY))
    assert done.text == "" and done.finish_reason == "tool_calls"
    [call] = done.tool_calls
    assert (call.id, call.name, call.arguments) == ("call_abc123", "get_weather", {"city": "Boston, MA"})


@pytest.mark.parametrize("arguments, parsed", [({"city": "Oslo"}, {"city": "Oslo"}), ("", {}), (None, {})])
def test_openai_tool_arguments_from_compatible_servers(arguments: Any, parsed: dict[str, Any]) -> None:
    reply = json.loads(json.dumps(OPENAI_TOOL_REPLY))
    reply["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = arguments
    assert openai.parse_response(200, {}, raw(reply)).tool_calls[0].arguments == parsed


@pytest.mark.parametrize("arguments", ['{"city": "Bos', "[1, 2]", "42", 7])
def test_openai_bad_tool_arguments_are_invalid_responses(arguments: Any) -> None:
    reply = json.loads(json.dumps(OPENAI_TOOL_REPLY))
    reply["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = arguments
    err = fail(openai.parse_response, 200, {}, raw(reply))
    assert err.kind == "invalid_response" and "get_weather" in err.message and not err.retryable


def test_openai_content_filter_and_refusal() -> None:
    reply = json.loads(json.dumps(OPENAI_REPLY))
    reply["choices"][0]["finish_reason"] = "content_filter"
    reply["choices"][0]["message"]["content"] = None
    err = fail(openai.parse_response, 200, {}, raw(reply))
    assert err.kind == "content_filter" and not err.retryable
    refused = json.loads(json.dumps(OPENAI_REPLY))
    refused["choices"][0]["message"].update(content=None, refusal="I'm sorry, I cannot assist with that request.")
    err = fail(openai.parse_response, 200, {}, raw(refused))
    assert err.kind == "content_filter" and "cannot assist" in err.message


def test_openai_missing_usage_and_model_are_tolerated() -> None:
    # Some OpenAI-compatible servers leave them out (or send garbage).
    done = openai.parse_response(200, {}, raw({"choices": [{"message": {"content": "ok"}, "finish_reason": None}],
                                               "usage": "n/a"}))
    assert (done.text, done.model, done.tokens_in, done.tokens_out, done.finish_reason) == ("ok", "", None, None, None)


@pytest.mark.parametrize("body", [
    b"", b"not json", b"<html><body>502 Bad Gateway</body></html>", b"\xff\xfe\x00", b"[]", b"null", b"42",
    raw({}), raw({"choices": []}), raw({"choices": "x"}), raw({"choices": [None]}), raw({"choices": [{}]}),
    raw({"choices": [{"message": "hi"}]}), raw({"choices": [{"message": {"content": 5}}]}),
    raw({"choices": [{"message": {"content": None, "tool_calls": {"id": "x"}}}]}),
    raw({"choices": [{"message": {"content": None, "tool_calls": ["x"]}}]}),
    raw({"choices": [{"message": {"content": None, "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}}]}),
])
def test_openai_garbled_replies_are_invalid_responses(body: bytes) -> None:
    err = fail(openai.parse_response, 200, {}, body)
    assert err.kind == "invalid_response" and err.message.startswith("openai: ")


def test_openai_error_payload_in_a_200_reply() -> None:
    err = fail(openai.parse_response, 200, {}, raw({"error": {"message": "The server had an error", "type": "server_error"}}))
    assert err.kind == "server" and "The server had an error" in err.message


# ---------------------------------------------------------------------------
# OpenAI: stream
# ---------------------------------------------------------------------------

def openai_chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> str:
    return "data: " + json.dumps({
        "id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
        "model": "gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], "usage": usage})


OPENAI_STREAM = [
    openai_chunk({"role": "assistant", "content": "", "refusal": None}), "",
    ": OPENROUTER PROCESSING", "",
    openai_chunk({"content": "Hello"}), "",
    "event: message",  # some proxies label events; OpenAI's format ignores them
    openai_chunk({"content": " there"}), "",
    openai_chunk({}, "stop"), "",
    "data: " + json.dumps({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
                           "model": "gpt-4o-mini", "choices": [],
                           "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}), "",
    "data: [DONE]", "",
]


def test_openai_stream_text_finish_usage_and_done() -> None:
    deltas = feed(openai.StreamParser(), OPENAI_STREAM)
    assert "".join(d.text for d in deltas) == "Hello there"
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert [(d.tokens_in, d.tokens_out) for d in deltas if d.tokens_in is not None] == [(9, 2)]
    assert deltas[-1].done and sum(d.done for d in deltas) == 1
    assert all(d.model == "gpt-4o-mini" for d in deltas if not d.done)


def test_openai_stream_accepts_data_without_a_space_and_ignores_lines_after_done() -> None:
    parser = openai.StreamParser()
    assert parser.feed_line('data:{"choices":[{"delta":{"content":"x"}}]}')[0].text == "x"
    assert parser.feed_line("data: [DONE]") == [StreamDelta(done=True)]
    assert parser.feed_line("data: not even json") == []
    assert parser.finish() == []


@pytest.mark.parametrize("cut_after", [0, 1, 5, len(OPENAI_STREAM) - 2])
def test_openai_stream_cut_before_done(cut_after: int) -> None:
    parser = openai.StreamParser()
    for line in OPENAI_STREAM[:cut_after]:
        parser.feed_line(line)
    err = fail(parser.finish)
    assert err.kind == "stream_cut" and err.retryable and "[DONE]" in err.message


@pytest.mark.parametrize("payload, kind", [
    ({"error": {"message": "The server had an error while processing your request.", "type": "server_error",
                "param": None, "code": None}}, "server"),
    ({"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "code": "rate_limit_exceeded"}},
     "rate_limit"),
    ({"error": {"message": "bad", "type": "invalid_request_error", "code": None}}, "bad_request"),
    ({"error": "model crashed"}, "server"),  # ollama puts a bare string there
])
def test_openai_stream_error_payload(payload: dict[str, Any], kind: str) -> None:
    parser = openai.StreamParser()
    parser.feed_line(openai_chunk({"content": "Hel"}))
    err = fail(parser.feed_line, "data: " + json.dumps(payload))
    assert err.kind == kind
    message = payload["error"]["message"] if isinstance(payload["error"], dict) else payload["error"]
    assert message in err.message


@pytest.mark.parametrize("line", ["data: {not json", "data: [1, 2]", 'data: {"choices": 3}', 'data: {"choices": [7]}'])
def test_openai_stream_garbage_is_an_invalid_response(line: str) -> None:
    assert fail(openai.StreamParser().feed_line, line).kind == "invalid_response"


def test_openai_stream_content_filter() -> None:
    err = fail(openai.StreamParser().feed_line, openai_chunk({}, "content_filter"))
    assert err.kind == "content_filter"


# ---------------------------------------------------------------------------
# Anthropic: request
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("base, url", [
    ("https://api.anthropic.com", "https://api.anthropic.com/v1/messages"),
    ("https://api.anthropic.com/", "https://api.anthropic.com/v1/messages"),
    ("https://api.anthropic.com/v1", "https://api.anthropic.com/v1/messages"),
    ("https://api.anthropic.com/v1/", "https://api.anthropic.com/v1/messages"),
    ("https://gw.example.com/anthropic", "https://gw.example.com/anthropic/v1/messages"),
])
def test_anthropic_url(base: str, url: str) -> None:
    assert anthropic.build_request(chat(("user", "hi")), Endpoint(base, ANTHROPIC_KEY)).url == url


def test_anthropic_full_request_body_and_headers() -> None:
    req = chat(("system", "You are terse."), ("user", "Weather in Paris?"), ("system", "Use metric units."),
               model="claude-sonnet-4-5", temperature=0.2, top_p=0.8, max_tokens=512, stop=["###"],
               tools=[WEATHER], stream=True)
    call = anthropic.build_request(req, Endpoint(anthropic.DEFAULT_BASE_URL, ANTHROPIC_KEY, {"anthropic-beta": "b1"}))
    assert call.headers == {"content-type": "application/json", "anthropic-version": "2023-06-01",
                            "x-api-key": ANTHROPIC_KEY, "anthropic-beta": "b1"}
    assert call.body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "system": "You are terse.\n\nUse metric units.",
        "temperature": 0.2,
        "top_p": 0.8,
        "stop_sequences": ["###"],
        "tools": [{"name": "get_weather", "description": "Current weather for a city",
                   "input_schema": WEATHER.parameters}],
        "stream": True,
    }


def test_anthropic_minimal_request_defaults_max_tokens_and_omits_the_rest() -> None:
    call = anthropic.build_request(chat(("user", "hi")), Endpoint(anthropic.DEFAULT_BASE_URL, None))
    assert call.body == {"model": "m", "max_tokens": 4096, "messages": [{"role": "user", "content": "hi"}]}
    assert "x-api-key" not in call.headers


def test_anthropic_merges_same_role_runs_and_lifts_every_system_message() -> None:
    req = chat(("system", "S1"), ("user", "u1"), ("user", "u2"), ("system", "S2"), ("user", "u3"),
               ("assistant", "a1"), ("assistant", "a2"), ("user", "u4"))
    body = anthropic.build_request(req, Endpoint(anthropic.DEFAULT_BASE_URL, ANTHROPIC_KEY)).body
    assert body["system"] == "S1\n\nS2"
    assert body["messages"] == [
        {"role": "user", "content": "u1\n\nu2\n\nu3"},  # S2 between them does not split the run
        {"role": "assistant", "content": "a1\n\na2"},
        {"role": "user", "content": "u4"},
    ]


def test_anthropic_first_turn_is_always_user() -> None:
    body = anthropic.build_request(chat(("system", "S"), ("assistant", "Hi, how can I help?"), ("user", "q")),
                                   Endpoint("u", None)).body
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"] == anthropic.LEAD_IN
    only_system = anthropic.build_request(chat(("system", "Tell a joke.")), Endpoint("u", None)).body
    assert only_system["messages"] == [{"role": "user", "content": anthropic.LEAD_IN}]
    assert only_system["system"] == "Tell a joke."


def test_anthropic_drops_empty_turns_and_trims_a_trailing_prefill() -> None:
    body = anthropic.build_request(chat(("user", "q"), ("assistant", "  "), ("user", "more"), ("assistant", "{\n ")),
                                   Endpoint("u", None)).body
    assert body["messages"] == [{"role": "user", "content": "q\n\nmore"}, {"role": "assistant", "content": "{"}]
    assert "system" not in body


def test_anthropic_structured_output_is_a_forced_tool() -> None:
    req = chat(("user", "Who wrote Dune?"), structured=StructuredOutput("lib::Person", PERSON))
    body = anthropic.build_request(req, Endpoint(anthropic.DEFAULT_BASE_URL, ANTHROPIC_KEY)).body
    assert [t["name"] for t in body["tools"]] == ["lib__Person"]
    assert body["tools"][0]["input_schema"] == normalize_for_anthropic(PERSON)
    assert body["tools"][0]["input_schema"]["type"] == "object" and "title" not in body["tools"][0]["input_schema"]
    assert body["tool_choice"] == {"type": "tool", "name": "lib__Person"}


def test_anthropic_structured_output_next_to_user_tools_lets_the_model_pick_any_tool() -> None:
    req = chat(("user", "Dress for Paris?"), tools=[WEATHER], structured=StructuredOutput("lib::Person", PERSON))
    body = anthropic.build_request(req, Endpoint(anthropic.DEFAULT_BASE_URL, ANTHROPIC_KEY)).body
    assert [t["name"] for t in body["tools"]] == ["get_weather", "lib__Person"]
    assert body["tools"][1]["input_schema"] == normalize_for_anthropic(PERSON)
    # Forcing lib__Person would make get_weather uncallable; "any" still forbids plain text.
    assert body["tool_choice"] == {"type": "any"}


# ---------------------------------------------------------------------------
# Both: a tool-calling conversation
# ---------------------------------------------------------------------------

PARIS = ToolCall("call_1", "get_weather", {"city": "Paris"})
ROME = ToolCall("call_2", "get_weather", {"city": "Rome"})
# system, user, the model's two tool calls, one result, one failure, a follow-up.
TOOL_CONVERSATION = [
    ChatMessage("system", "Use the tools."),
    ChatMessage("user", "Weather in Paris and Rome?"),
    ChatMessage("assistant", "", tool_calls=(PARIS, ROME)),
    ChatMessage("tool", "18C, sunny", tool_call_id="call_1"),
    ChatMessage("tool", "weather service unreachable", tool_call_id="call_2", is_error=True),
    ChatMessage("user", "Summarise in one line."),
]


def conversation(messages: list[ChatMessage], **kw: Any) -> dict[str, Any]:
    module = kw.pop("module")
    return module.build_request(ChatRequest(model="m", messages=messages, tools=[WEATHER], **kw),
                                Endpoint("https://h", None)).body


def test_chat_message_is_still_built_from_role_and_content_alone() -> None:
    m = ChatMessage("user", "hi")
    assert (m.role, m.content, m.tool_calls, m.tool_call_id, m.is_error) == ("user", "hi", (), None, False)


def test_openai_tool_conversation_body() -> None:
    assert conversation(TOOL_CONVERSATION, module=openai)["messages"] == [
        {"role": "system", "content": "Use the tools."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
        # OpenAI has no error flag: the text is all the model gets.
        {"role": "tool", "tool_call_id": "call_2", "content": "weather service unreachable"},
        {"role": "user", "content": "Summarise in one line."},
    ]


def test_openai_assistant_prose_next_to_tool_calls_is_kept() -> None:
    messages = [ChatMessage("user", "q"), ChatMessage("assistant", "Checking.", tool_calls=(PARIS,))]
    [_, turn] = conversation(messages, module=openai)["messages"]
    assert turn["content"] == "Checking." and [c["id"] for c in turn["tool_calls"]] == ["call_1"]


def test_openai_json_note_check_copes_with_a_tool_call_turn_without_content() -> None:
    body = conversation(TOOL_CONVERSATION, module=openai, structured=StructuredOutput("Scores", SCORES))
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][-1] == {"role": "system", "content": openai.JSON_NOTE}


def test_anthropic_tool_conversation_body() -> None:
    body = conversation(TOOL_CONVERSATION, module=anthropic)
    assert body["system"] == "Use the tools."
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        # No text block: the turn's text is empty, but the turn is never dropped.
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
        ]},
        # Both results and the follow-up in one user turn, results first.
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sunny"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "weather service unreachable",
             "is_error": True},
            {"type": "text", "text": "Summarise in one line."},
        ]},
    ]


def test_anthropic_assistant_prose_and_text_merges_next_to_blocks() -> None:
    messages = [ChatMessage("user", "q"), ChatMessage("assistant", "Let me see."),
                ChatMessage("assistant", "Checking.", tool_calls=(PARIS,)),
                ChatMessage("tool", "18C", tool_call_id="call_1"), ChatMessage("user", "  "),
                ChatMessage("assistant", "It is 18C. "), ChatMessage("user", "Thanks"), ChatMessage("user", "Bye")]
    assert conversation(messages, module=anthropic)["messages"] == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me see."}, {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "18C"}]},
        {"role": "assistant", "content": "It is 18C. "},  # not the last turn: no trimming
        {"role": "user", "content": "Thanks\n\nBye"},  # plain turns keep the plain shape
    ]


def test_anthropic_tool_results_go_before_user_text_in_a_merged_turn() -> None:
    messages = [ChatMessage("assistant", "", tool_calls=(PARIS,)), ChatMessage("user", "also this"),
                ChatMessage("tool", "18C", tool_call_id="call_1")]
    turns = conversation(messages, module=anthropic)["messages"]
    assert turns[0] == {"role": "user", "content": anthropic.LEAD_IN}
    assert [b["type"] for b in turns[2]["content"]] == ["tool_result", "text"]


def test_anthropic_trailing_prefill_after_tool_use_is_trimmed_in_its_last_text_block() -> None:
    messages = [ChatMessage("user", "q"), ChatMessage("assistant", "", tool_calls=(PARIS,)),
                ChatMessage("assistant", "So:\n ")]
    last = conversation(messages, module=anthropic)["messages"][-1]
    assert last["content"][-1] == {"type": "text", "text": "So:"}


# ---------------------------------------------------------------------------
# Anthropic: reply
# ---------------------------------------------------------------------------

ANTHROPIC_REPLY = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Hi! My name is Claude."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 0,
              "cache_read_input_tokens": 0, "service_tier": "standard"},
}

ANTHROPIC_TOOL_REPLY = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
         "input": {"city": "San Francisco, CA"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 384, "output_tokens": 70},
}

ANTHROPIC_FORCED_REPLY = {
    "id": "msg_01Bq", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "tool_use", "id": "toolu_01X", "name": "Person",
                 "input": {"name": "Frank Herbert", "age": 65, "note": "ünïcode"}}],
    "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 410, "output_tokens": 31},
}


def test_anthropic_parse_text_reply() -> None:
    done = anthropic.parse_response(200, {}, raw(ANTHROPIC_REPLY))
    assert (done.text, done.model, done.tokens_in, done.tokens_out, done.finish_reason) == (
        "Hi! My name is Claude.", "claude-sonnet-4-5-20250929", 2095, 503, "end_turn")
    assert done.tool_calls == [] and done.structured is None


def test_anthropic_joins_text_blocks_and_skips_thinking() -> None:
    reply = dict(ANTHROPIC_REPLY, content=[
        {"type": "thinking", "thinking": "Let me think...", "signature": "EqQBCgIYAhIM"},
        {"type": "text", "text": "Part one. "}, {"type": "text", "text": "Part two."}])
    assert anthropic.parse_response(200, {}, raw(reply)).text == "Part one. Part two."


def test_anthropic_tool_use_next_to_text_is_a_tool_call_not_structured() -> None:
    done = anthropic.parse_response(200, {}, raw(ANTHROPIC_TOOL_REPLY))
    assert done.text == "I'll check the current weather in San Francisco for you."
    [call] = done.tool_calls
    assert (call.id, call.name, call.arguments) == ("toolu_01A09q90qw90lq917835lq9", "get_weather",
                                                    {"city": "San Francisco, CA"})
    assert done.structured is None and done.finish_reason == "tool_use"


def test_anthropic_forced_tool_reply_is_the_structured_answer() -> None:
    done = anthropic.parse_response(200, {}, raw(ANTHROPIC_FORCED_REPLY))
    answer = {"name": "Frank Herbert", "age": 65, "note": "ünïcode"}
    assert done.structured == answer
    assert done.text == '{"name":"Frank Herbert","age":65,"note":"ünïcode"}'  # compact JSON
    assert (done.tokens_in, done.tokens_out) == (410, 31)


def test_anthropic_structured_tool_by_name_is_left_out_of_the_calls_to_run() -> None:
    reply = dict(ANTHROPIC_TOOL_REPLY, content=ANTHROPIC_TOOL_REPLY["content"] + ANTHROPIC_FORCED_REPLY["content"])
    done = anthropic.parse_response(200, {}, raw(reply), structured_tool="Person")
    assert done.structured == {"name": "Frank Herbert", "age": 65, "note": "ünïcode"}
    assert [(c.id, c.name) for c in done.tool_calls] == [("toolu_01A09q90qw90lq917835lq9", "get_weather")]
    other = anthropic.parse_response(200, {}, raw(reply), structured_tool="Other")
    assert other.structured is None and [c.name for c in other.tool_calls] == ["get_weather", "Person"]


def test_anthropic_named_output_tool_alone_leaves_no_calls_to_run() -> None:
    done = anthropic.parse_response(200, {}, raw(ANTHROPIC_FORCED_REPLY), structured_tool="Person")
    assert done.structured["name"] == "Frank Herbert" and done.tool_calls == []


def test_anthropic_heuristic_without_a_name_keeps_the_call() -> None:
    # parse_response without structured_tool cannot know the call is the answer,
    # so it reports both (today's behaviour, kept for callers that do not say).
    done = anthropic.parse_response(200, {}, raw(ANTHROPIC_FORCED_REPLY))
    assert done.structured["age"] == 65 and [c.name for c in done.tool_calls] == ["Person"]


def test_anthropic_reply_parser_names_the_output_tool_of_a_structured_request() -> None:
    reply = dict(ANTHROPIC_FORCED_REPLY, content=[
        {"type": "tool_use", "id": "toolu_w", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_o", "name": "lib__Person", "input": {"name": "Ann"}}])
    structured = chat(("user", "q"), tools=[WEATHER], structured=StructuredOutput("lib::Person", PERSON))
    done = anthropic.reply_parser(structured)(200, {}, raw(reply))
    assert done.structured == {"name": "Ann"} and done.text == '{"name":"Ann"}'
    assert [c.id for c in done.tool_calls] == ["toolu_w"]


def test_anthropic_reply_parser_of_a_plain_request_never_takes_a_call_for_an_answer() -> None:
    lone_call = dict(ANTHROPIC_FORCED_REPLY, content=[
        {"type": "tool_use", "id": "toolu_w", "name": "get_weather", "input": {"city": "Paris"}}])
    done = anthropic.reply_parser(chat(("user", "q"), tools=[WEATHER]))(200, {}, raw(lone_call))
    assert done.structured is None and done.text == ""
    assert [(c.id, c.arguments) for c in done.tool_calls] == [("toolu_w", {"city": "Paris"})]


def test_openai_reply_parser_is_parse_response() -> None:
    req = chat(("user", "q"), structured=StructuredOutput("Person", PERSON))
    assert openai.reply_parser(req) is openai.parse_response
    assert openai.reply_parser(req)(200, {}, raw(OPENAI_TOOL_REPLY)).tool_calls[0].name == "get_weather"


def test_anthropic_refusal_is_a_content_filter() -> None:
    reply = dict(ANTHROPIC_REPLY, content=[], stop_reason="refusal")
    assert fail(anthropic.parse_response, 200, {}, raw(reply)).kind == "content_filter"


def test_anthropic_error_payload_in_a_200_reply() -> None:
    err = fail(anthropic.parse_response, 200, {},
               raw({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    assert err.kind == "overloaded" and "Overloaded" in err.message


@pytest.mark.parametrize("body", [
    b"", b"{", b"<html>oops</html>", b"[]", b"null", raw({"type": "message"}), raw({"content": "hello"}),
    raw({"content": ["hello"]}), raw({"content": [{"type": "text"}]}), raw({"content": [{"type": "text", "text": 3}]}),
    raw({"content": [{"type": "tool_use", "id": "t", "name": "x", "input": "{}"}]}),
    raw({"content": [{"type": "tool_use", "id": "t", "input": {}}]}),
])
def test_anthropic_garbled_replies_are_invalid_responses(body: bytes) -> None:
    err = fail(anthropic.parse_response, 200, {}, body)
    assert err.kind == "invalid_response" and err.message.startswith("anthropic: ")


# ---------------------------------------------------------------------------
# Anthropic: stream
# ---------------------------------------------------------------------------

ANTHROPIC_STREAM = sse([
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [],
        "model": "claude-sonnet-4-5-20250929", "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 25, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Par"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"output_tokens": 15}}),
    ("message_stop", {"type": "message_stop"}),
])


def test_anthropic_stream_text_usage_stop_and_done() -> None:
    deltas = feed(anthropic.StreamParser(), ANTHROPIC_STREAM)
    assert "".join(d.text for d in deltas) == "Hello!"
    assert [d.tokens_in for d in deltas if d.tokens_in is not None] == [25]
    assert [d.tokens_out for d in deltas if d.tokens_out is not None] == [15]
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["end_turn"]
    assert deltas[-1].done and sum(d.done for d in deltas) == 1
    assert {d.model for d in deltas} == {"claude-sonnet-4-5-20250929"}


@pytest.mark.parametrize("cut_after", [0, 3, 12, len(ANTHROPIC_STREAM) - 3])
def test_anthropic_stream_cut_before_message_stop(cut_after: int) -> None:
    parser = anthropic.StreamParser()
    for line in ANTHROPIC_STREAM[:cut_after]:
        parser.feed_line(line)
    err = fail(parser.finish)
    assert err.kind == "stream_cut" and err.retryable and "message_stop" in err.message


@pytest.mark.parametrize("etype, kind", [
    ("overloaded_error", "overloaded"), ("api_error", "server"), ("rate_limit_error", "rate_limit"),
    ("invalid_request_error", "bad_request"), ("something_new", "server"),
])
def test_anthropic_stream_error_event(etype: str, kind: str) -> None:
    parser = anthropic.StreamParser()
    for line in ANTHROPIC_STREAM[:9]:
        parser.feed_line(line)
    assert parser.feed_line("event: error") == []
    err = fail(parser.feed_line, "data: " + json.dumps({"type": "error", "error": {"type": etype, "message": "Overloaded"}}))
    assert err.kind == kind and "Overloaded" in err.message


def test_anthropic_stream_uses_the_event_line_when_the_payload_has_no_type() -> None:
    parser = anthropic.StreamParser()
    parser.feed_line("event: error")
    assert fail(parser.feed_line, 'data: {"error": {"type": "overloaded_error", "message": "busy"}}').kind == "overloaded"


@pytest.mark.parametrize("line", ["data: {oops", 'data: "text"', "data: "])
def test_anthropic_stream_garbage_is_an_invalid_response(line: str) -> None:
    assert fail(anthropic.StreamParser().feed_line, line).kind == "invalid_response"


def test_anthropic_stream_tolerates_odd_but_valid_payloads() -> None:
    parser = anthropic.StreamParser()
    assert parser.feed_line('data: {"type": "message_start", "message": "x"}') == [StreamDelta()]
    assert parser.feed_line('data: {"type": "content_block_delta", "delta": null}') == []
    assert parser.feed_line('data: {"type": "future_event", "x": 1}') == []
    assert parser.feed_line('data: {"type": "message_stop"}')[0].done


# ---------------------------------------------------------------------------
# classify_error
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("status, kind", [
    (400, "bad_request"), (401, "auth"), (403, "auth"), (404, "not_found"), (409, "bad_request"),
    (413, "bad_request"), (422, "bad_request"), (429, "rate_limit"), (500, "server"), (502, "server"),
    (503, "server"), (504, "server"), (529, "overloaded"),
])
@pytest.mark.parametrize("module", [openai, anthropic])
def test_status_classification(module: Any, status: int, kind: str) -> None:
    err = module.classify_error(status, {}, raw({"error": {"message": "boom", "type": "x"}}))
    assert err.kind == kind and err.status == status
    assert err.message == f"{module.NAME}: HTTP {status}: boom"
    assert err.retryable == (kind in {"rate_limit", "overloaded", "server"})


def test_openai_error_message_from_the_documented_body() -> None:
    body = raw({"error": {
        "message": "Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, "
                   "Used 29900, Requested 500. Please try again in 800ms.",
        "type": "tokens", "param": None, "code": "rate_limit_exceeded"}})
    err = openai.classify_error(429, {"retry-after-ms": "800", "retry-after": "1"}, body)
    assert err.kind == "rate_limit" and err.retry_after == 0.8
    assert err.message.startswith("openai: HTTP 429: Rate limit reached for gpt-4o")


def test_anthropic_error_message_from_the_documented_body() -> None:
    body = raw({"type": "error", "error": {"type": "not_found_error", "message": "The requested resource could not be found."},
                "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"})
    err = anthropic.classify_error(404, {}, body)
    assert (err.kind, err.message) == ("not_found", "anthropic: HTTP 404: The requested resource could not be found.")


def test_anthropic_overloaded_type_wins_over_the_status() -> None:
    body = raw({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert anthropic.classify_error(500, {}, body).kind == "overloaded"
    assert anthropic.classify_error(529, {}, body).message == "anthropic: HTTP 529: Overloaded"


@pytest.mark.parametrize("body, message", [
    (b"", "openai: HTTP 502"),
    (b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>",
     "openai: HTTP 502: 502 Bad Gateway 502 Bad Gateway"),
    (raw({"error": "model 'llama9' not found, try pulling it first"}),
     "openai: HTTP 502: model 'llama9' not found, try pulling it first"),  # ollama
    (raw({"detail": "Not authenticated"}), "openai: HTTP 502: Not authenticated"),  # FastAPI-style servers
    (raw([1, 2]), "openai: HTTP 502"),
    (raw({"error": {"message": "line one\n\n   line two"}}), "openai: HTTP 502: line one line two"),
])
def test_error_bodies_of_every_shape(body: bytes, message: str) -> None:
    err = openai.classify_error(502, {}, body)
    assert err.kind == "server" and err.message == message


def test_long_provider_messages_are_capped() -> None:
    err = openai.classify_error(400, {}, raw({"error": {"message": "x" * 5000}}))
    assert len(err.message) < 400


def test_classify_error_reads_retry_after_for_both() -> None:
    assert openai.classify_error(503, httpx.Headers({"Retry-After": "7"}), b"").retry_after == 7.0
    assert anthropic.classify_error(429, {"retry-after": "12"}, b"").retry_after == 12.0
    assert openai.classify_error(500, {}, b"").retry_after is None


def key_bearing_bodies(key: str) -> Iterator[bytes]:
    masked = key[:8] + "*" * 16 + key[-4:]
    yield raw({"error": {"message": f"Incorrect API key provided: {masked}. You can find your API key at "
                                    "https://platform.openai.com/account/api-keys.",
                         "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})
    yield raw({"error": {"message": f"Incorrect API key provided: {key}.", "type": "invalid_request_error"}})
    yield raw({"type": "error", "error": {"type": "authentication_error", "message": f"invalid x-api-key: {key}"}})
    yield raw({"error": f"request had Authorization: Bearer {key}"})
    yield raw({"detail": f'echo {{"api_key": "{key}"}}'})
    yield f"<html><pre>Authorization: Bearer {key}\nx-api-key: {key}</pre></html>".encode()
    yield f"not json at all {key}".encode()


@pytest.mark.parametrize("key", [KEY, ANTHROPIC_KEY])
def test_the_api_key_never_appears_in_an_error_message(key: str) -> None:
    request_headers = {"Authorization": f"Bearer {key}", "x-api-key": key}
    messages: list[str] = []
    for module in (openai, anthropic):
        # What build_request sends does hold the key; no error built later may.
        call = module.build_request(chat(("user", "hi")), Endpoint(module.DEFAULT_BASE_URL, key))
        assert key in json.dumps(call.headers)
        for body in key_bearing_bodies(key):
            for status in (400, 401, 403, 404, 429, 500, 529):
                messages.append(module.classify_error(status, request_headers, body).message)
            with pytest.raises(ProviderError) as info:
                module.parse_response(200, request_headers, body)
            messages.append(info.value.message)
    stream_lines = [
        (openai.StreamParser, {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}}),
        (openai.StreamParser, {"error": f"Authorization: Bearer {key}"}),
        (anthropic.StreamParser, {"type": "error", "error": {"type": "authentication_error", "message": f"bad key {key}"}}),
        (openai.StreamParser, f"{{broken json with {key}"),
        (anthropic.StreamParser, f"{{broken json with {key}"),
    ]
    for make, payload in stream_lines:
        line = "data: " + (payload if isinstance(payload, str) else json.dumps(payload))
        with pytest.raises(ProviderError) as info:
            make().feed_line(line)
        messages.append(info.value.message)
    assert messages and all(key not in m for m in messages)
    # The tail of the key (all a masked form shows) does not leak either.
    assert all(key[-12:] not in m for m in messages)


@pytest.mark.parametrize("body", [
    raw({"detail": {"headers": {"Authorization": "Bearer gw-9f8e7d6c5b4a3210"}}}),
    raw({"error": 'echo {"api_key": "gw-9f8e7d6c5b4a3210"}'}),
    raw({"message": "x-api-key=gw-9f8e7d6c5b4a3210 rejected"}),
    b"API-KEY: gw-9f8e7d6c5b4a3210",
])
def test_labelled_keys_of_any_shape_are_redacted(body: bytes) -> None:
    # A custom gateway's key need not look like "sk-...": a label gives it away.
    for module in (openai, anthropic):
        assert "9f8e7d6c5b4a3210" not in module.classify_error(401, {}, body).message


# ---------------------------------------------------------------------------
# retry_after_seconds
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("headers, seconds", [
    ({"retry-after-ms": "1500"}, 1.5),
    ({"Retry-After-Ms": "12.5"}, 0.0125),
    ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),  # the finer one wins
    ({"retry-after-ms": "soon", "Retry-After": "9"}, 9.0),  # garbage falls through
    ({"Retry-After": "30"}, 30.0),
    ({"RETRY-AFTER": "0"}, 0.0),
    ({"retry-after": " 1.5 "}, 1.5),
    ({"Retry-After": "Sun, 01 Mar 2026 12:00:45 GMT"}, 45.0),
    ({"Retry-After": "Sun, 01 Mar 2026 11:00:00 GMT"}, 0.0),  # already past
    # The two obsolete HTTP date forms recipients must still accept (RFC 9110).
    ({"Retry-After": "Sunday, 01-Mar-26 12:01:00 GMT"}, 60.0),
    ({"Retry-After": "Sun Mar  1 12:00:20 2026"}, 20.0),
])
def test_retry_after_headers(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(headers, NOW) == seconds


@pytest.mark.parametrize("headers, seconds", [
    ({"x-ratelimit-reset-requests": "1s"}, 1.0),
    ({"x-ratelimit-reset-tokens": "6m0s"}, 360.0),
    ({"x-ratelimit-reset-tokens": "20ms"}, 0.02),
    ({"x-ratelimit-reset-requests": "1h2m3.5s"}, 3723.5),
    # No limit reported exhausted: the longest reset.
    ({"x-ratelimit-reset-requests": "8.64s", "x-ratelimit-reset-tokens": "17ms",
      "x-ratelimit-remaining-requests": "499", "x-ratelimit-remaining-tokens": "29900"}, 8.64),
    # The exhausted limit decides, even when another resets later.
    ({"x-ratelimit-reset-requests": "8.64s", "x-ratelimit-reset-tokens": "17ms",
      "x-ratelimit-remaining-requests": "12", "x-ratelimit-remaining-tokens": "0"}, 0.017),
    ({"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "5s",
      "x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": "0"}, 5.0),
    # Retry-After, when present, is preferred over the resets.
    ({"x-ratelimit-reset-requests": "20s", "retry-after": "3"}, 3.0),
])
def test_openai_reset_headers(headers: dict[str, str], seconds: float) -> None:
    assert retry_after_seconds(headers, NOW) == pytest.approx(seconds)


def at(seconds: float) -> str:
    return (NOW + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("headers, seconds", [
    ({"anthropic-ratelimit-requests-reset": at(12)}, 12.0),
    ({"anthropic-ratelimit-tokens-reset": "2026-03-01T12:00:30.500Z"}, 30.5),
    ({"anthropic-ratelimit-input-tokens-reset": "2026-03-01T13:00:05+01:00"}, 5.0),
    ({"anthropic-ratelimit-output-tokens-reset": at(-60)}, 0.0),  # in the past: floored
    ({"anthropic-ratelimit-requests-reset": at(3), "anthropic-ratelimit-tokens-reset": at(40)}, 40.0),
    ({"anthropic-ratelimit-requests-reset": at(3), "anthropic-ratelimit-tokens-reset": at(40),
      "anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-tokens-remaining": "18000"}, 3.0),
    ({"anthropic-ratelimit-input-tokens-reset": at(20), "anthropic-ratelimit-output-tokens-reset": at(9),
      "anthropic-ratelimit-output-tokens-remaining": "0"}, 9.0),
    ({"anthropic-ratelimit-tokens-reset": at(40), "retry-after": "2"}, 2.0),
])
def test_anthropic_reset_headers(headers: dict[str, str], seconds: float) -> None:
    assert retry_after_seconds(headers, NOW) == pytest.approx(seconds)


def test_retry_after_lookup_is_case_insensitive_for_dicts_and_httpx_headers() -> None:
    for make in (dict, httpx.Headers):
        assert retry_after_seconds(make({"Retry-After": "4"}), NOW) == 4.0
        assert retry_after_seconds(make({"RETRY-AFTER-MS": "40"}), NOW) == 0.04
        assert retry_after_seconds(make({"X-RateLimit-Reset-Tokens": "2s", "X-RateLimit-Remaining-Tokens": "0"}), NOW) == 2.0
        assert retry_after_seconds(make({"Anthropic-RateLimit-Requests-Reset": at(5)}), NOW) == 5.0


def test_a_naive_now_is_taken_as_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert retry_after_seconds({"anthropic-ratelimit-requests-reset": at(8)}, naive) == 8.0
    assert retry_after_seconds({"retry-after": "Sun, 01 Mar 2026 12:00:10 GMT"}, naive) == 10.0


def test_without_now_the_clock_is_used() -> None:
    soon = (datetime.now(timezone.utc) + timedelta(seconds=100)).isoformat()
    assert 95 <= (retry_after_seconds({"anthropic-ratelimit-requests-reset": soon}) or 0) <= 100


class Exploding(Mapping[str, str]):
    def __getitem__(self, key: str) -> str:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1


@pytest.mark.parametrize("headers", [
    {}, {"retry-after": "soon"}, {"retry-after": ""}, {"retry-after": "-5"}, {"retry-after": "nan"},
    {"retry-after": "inf"}, {"retry-after-ms": "-1"}, {"retry-after-ms": "1e999"},
    {"retry-after": "Mon, 99 Foo 2026 99:99:99 GMT"}, {"retry-after": "Thu, 01 Jan 99999 00:00:00 GMT"},
    {"x-ratelimit-reset-requests": "1x"}, {"x-ratelimit-reset-requests": "s"}, {"x-ratelimit-reset-requests": "1s2"},
    {"x-ratelimit-reset-tokens": "-1s"}, {"x-ratelimit-reset-tokens": ""},
    {"anthropic-ratelimit-tokens-reset": "yesterday"}, {"anthropic-ratelimit-requests-reset": "2026-13-45T99:00:00Z"},
    {"x-unrelated": "5"}, Exploding(),
])
def test_garbage_is_ignored(headers: Mapping[str, str]) -> None:
    assert retry_after_seconds(headers, NOW) is None


@pytest.mark.parametrize("text, seconds", [
    ("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0s", 0.0), ("1.5", 1.5),
    ("250us", 0.00025), ("3µs", 3e-6), ("100ns", 1e-7), (" 2m ", 120.0),
    ("", None), ("1", 1.0), ("ms", None), ("1d", None), ("1s 2s", None), ("-1s", None), ("1m-2s", None),
])
def test_go_duration(text: str, seconds: float | None) -> None:
    assert go_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_merge_headers() -> None:
    assert merge_headers({"A": "1", "B": "2"}, {"b": "3", "C": "4"}) == {"A": "1", "b": "3", "C": "4"}
    assert merge_headers({"A": "1"}, {}) == {"A": "1"}


# ---------------------------------------------------------------------------
# Mock provider: scripted tool calls
# ---------------------------------------------------------------------------

def mock_with(tmp_path: Path, replies: Any) -> MockProvider:
    path = tmp_path / "replies.json"
    path.write_text(json.dumps(replies), encoding="utf-8")
    return MockProvider(str(path))


def test_mock_scripted_tool_calls_round_trip(tmp_path: Path) -> None:
    mock = mock_with(tmp_path, [
        {"tool_calls": [{"name": "Calculator__add", "arguments": {"a": 1, "b": 2}, "id": "c1"},
                        {"name": "Clock__now"}], "text": "Let me compute."},
        {"tool_calls": [{"name": "Calculator__add", "arguments": {"a": 3, "b": 4}}]},
        "It is 3.",
    ])
    req = chat(("user", "1+2?"))
    first = mock.complete(req, "M")
    assert first.text == "Let me compute." and first.finish_reason == "tool_calls"
    assert first.tool_calls == [ToolCall("c1", "Calculator__add", {"a": 1, "b": 2}),
                                ToolCall("mock_call_2", "Clock__now", {})]
    second = mock.complete(req, "M")
    assert second.text == "" and second.tool_calls == [ToolCall("mock_call_3", "Calculator__add", {"a": 3, "b": 4})]
    last = mock.complete(req, "M")
    assert (last.text, last.tool_calls, last.finish_reason) == ("It is 3.", [], "stop")


def test_mock_with_an_empty_queue_never_invents_tool_calls(tmp_path: Path) -> None:
    done = MockProvider().complete(chat(("user", "q"), tools=[WEATHER]), "M")
    assert done.tool_calls == [] and done.text == "mock reply to: q"


@pytest.mark.parametrize("reply, where, problem", [
    ({"tool_calls": [{"name": 5}]}, "replies[2].tool_calls[0].name", "expected a string"),
    ({"tool_calls": [{"name": "f", "arguments": [1]}]}, "replies[2].tool_calls[0].arguments", "expected an object"),
    ({"tool_calls": [{"name": "f", "id": 7}]}, "replies[2].tool_calls[0].id", "expected a string"),
    ({"tool_calls": [{"name": "f", "args": {}}]}, "replies[2].tool_calls[0]", "unknown field 'args'"),
    ({"tool_calls": ["f"]}, "replies[2].tool_calls[0]", "expected an object"),
    ({"tool_calls": []}, "replies[2].tool_calls", "expected a non-empty list"),
    ({"tool_calls": {"name": "f"}}, "replies[2].tool_calls", "expected a non-empty list"),
    ({"tool_calls": [{"name": "f"}], "text": 3}, "replies[2].text", "expected a string"),
    ({"tool_calls": [{"name": "f"}], "json": {}}, "replies[2]",
     "a reply needs exactly one of text, json, error or tool_calls"),
])
def test_mock_bad_tool_call_shapes_name_the_entry(tmp_path: Path, reply: Any, where: str, problem: str) -> None:
    with pytest.raises(MockConfigError) as info:
        mock_with(tmp_path, ["a", "b", reply])
    # The message starts with the file and the entry; some add a hint after the problem.
    assert str(info.value).startswith(f"{tmp_path / 'replies.json'}: {where}: {problem}")


def test_mock_per_model_tool_calls_name_their_model(tmp_path: Path) -> None:
    with pytest.raises(MockConfigError, match=r"models\.Agent\[0\]\.tool_calls\[1\]\.name: expected a string"):
        mock_with(tmp_path, {"models": {"Agent": [{"tool_calls": [{"name": "ok"}, {}]}]}})
