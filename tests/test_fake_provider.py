"""Checks of the fake provider itself (tests/fake_provider.py): if it drifted
from the real OpenAI / Anthropic wire formats, every adapter test built on it
would prove nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from fake_provider import (
    Default,
    ErrorStatus,
    FakeProvider,
    JsonObject,
    Malformed,
    Overloaded,
    RateLimit,
    ServerError,
    Slow,
    StreamCut,
    Text,
    ToolCall,
    ToolCalls,
    schema_example,
)

HERE = Path(__file__).resolve().parent
AV = {"anthropic-version": "2023-06-01"}


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as f:
        yield f


@pytest.fixture
def client(fake: FakeProvider) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=5) as c:
        yield c


def oa(content: str = "hello fake world", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "be brief"},
                                                 {"role": "user", "content": content}], **extra}


def an(content: str = "hello fake world", **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-20250514", "max_tokens": 64, "system": "be brief",
            "messages": [{"role": "user", "content": content}], **extra}


def sse(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) per SSE event."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
        out.append((name, "\n".join(data)))
    return out


# ----- OpenAI ---------------------------------------------------------------


def test_openai_default_echo(fake: FakeProvider, client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json=oa())
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"].startswith("req_")
    body = r.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-4o-mini"
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "echo: hello fake world"
    assert "tool_calls" not in choice["message"]
    # input: "be brief" + "hello fake world" = 5 words; output: 4 words
    u = body["usage"]
    assert (u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]) == (5, 4, 9)
    rec = fake.requests[-1]
    assert (rec.method, rec.path) == ("POST", "/v1/chat/completions")
    assert rec.body == oa() and json.loads(rec.raw) == oa()
    assert rec.headers["content-type"] == "application/json"
    assert fake.status_counts == {200: 1}


def test_openai_stream_with_usage(client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json=oa(stream=True, stream_options={"include_usage": True}))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    assert all(name is None for name, _ in events)
    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
    assert sum(1 for p in pieces if p) > 1  # really split
    assert "".join(pieces) == "echo: hello fake world"
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == "stop"
    assert finals[0]["choices"][0]["delta"] == {}
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] == 5 and usage_chunk["usage"]["completion_tokens"] == 4
    assert all(c["usage"] is None for c in chunks[:-1])


def test_openai_stream_without_usage(client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json=oa(stream=True))
    events = sse(r.text)
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert events[-1][1] == "[DONE]"
    assert all("usage" not in c and len(c["choices"]) == 1 for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_openai_tool_call(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(ToolCall("get_weather", {"city": "Paris"}))
    body = client.post("/v1/chat/completions", json=oa()).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_openai_streamed_tool_call(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(ToolCall("f", {"a": 1, "b": "two words"}))
    chunks = [json.loads(d) for _, d in sse(client.post("/v1/chat/completions", json=oa(stream=True)).text)[:-1]]
    first = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first["function"]["name"] == "f" and first["id"].startswith("call_")
    args = "".join(tc["function"].get("arguments", "") for c in chunks
                   for tc in c["choices"][0]["delta"].get("tool_calls", []))
    assert json.loads(args) == {"a": 1, "b": "two words"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "score": {"type": "number"},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "mood": {"type": "string", "enum": ["happy", "sad"]},
        "maybe": {"anyOf": [{"type": "null"}, {"type": "integer"}]},
        "pet": {"type": "object", "properties": {"kind": {"type": "string"}}, "required": ["kind"],
                "additionalProperties": False},
        "ref": {"$ref": "#/$defs/Point"},
    },
    "required": ["name", "age", "score", "ok", "tags", "mood", "maybe", "pet", "ref"],
    "additionalProperties": False,
    "$defs": {"Point": {"type": "object", "properties": {"x": {"type": ["number", "null"]}}}},
}
SCHEMA_EXAMPLE = {"name": "example", "age": 1, "score": 1.5, "ok": True, "tags": ["example"], "mood": "happy",
                  "maybe": 1, "pet": {"kind": "example"}, "ref": {"x": 1.5}}


def test_schema_example() -> None:
    assert schema_example(SCHEMA) == SCHEMA_EXAMPLE


def test_openai_response_format_default(client: httpx.Client) -> None:
    rf = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}}
    body = client.post("/v1/chat/completions", json=oa(response_format=rf)).json()
    msg = body["choices"][0]["message"]
    assert isinstance(msg["content"], str)
    assert json.loads(msg["content"]) == SCHEMA_EXAMPLE
    assert body["choices"][0]["finish_reason"] == "stop"


def test_scripted_json_object(fake: FakeProvider, client: httpx.Client) -> None:
    tool = {"name": "emit", "description": "d", "input_schema": SCHEMA}
    fake.script(JsonObject({"a": [1, 2]}), JsonObject({"b": 2}), JsonObject({"c": 3}))
    oa_body = client.post("/v1/chat/completions", json=oa()).json()
    assert json.loads(oa_body["choices"][0]["message"]["content"]) == {"a": [1, 2]}
    forced = client.post("/v1/messages", headers=AV,
                         json=an(tools=[tool], tool_choice={"type": "tool", "name": "emit"})).json()
    assert forced["content"] == [{"type": "tool_use", "id": forced["content"][0]["id"], "name": "emit",
                                  "input": {"b": 2}}]
    plain = client.post("/v1/messages", headers=AV, json=an()).json()
    assert json.loads(plain["content"][0]["text"]) == {"c": 3}


# ----- Anthropic --------------------------------------------------------------


def test_anthropic_default_echo(fake: FakeProvider, client: httpx.Client) -> None:
    r = client.post("/v1/messages", headers=AV, json=an())
    assert r.status_code == 200 and r.headers["request-id"].startswith("req_")
    body = r.json()
    assert body["id"].startswith("msg_") and body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == "claude-sonnet-4-20250514"
    assert body["content"] == [{"type": "text", "text": "echo: hello fake world"}]
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    assert body["usage"]["input_tokens"] == 5 and body["usage"]["output_tokens"] == 4


def test_anthropic_content_blocks_and_last_user(client: httpx.Client) -> None:
    req = an()
    req["messages"] = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
                       {"role": "user", "content": [{"type": "text", "text": "second one"}]}]
    body = client.post("/v1/messages", headers=AV, json=req).json()
    assert body["content"][0]["text"] == "echo: second one"
    assert body["usage"]["input_tokens"] == 2 + 1 + 1 + 2


def test_anthropic_stream(client: httpx.Client) -> None:
    r = client.post("/v1/messages", headers=AV, json=an(stream=True))
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    names = [n for n, _ in events]
    datas = [json.loads(d) for _, d in events]
    assert all(d["type"] == n for n, d in zip(names, datas))
    non_ping = [n for n in names if n != "ping"]
    deltas = [d for d in datas if d["type"] == "content_block_delta"]
    assert non_ping == ["message_start", "content_block_start"] + ["content_block_delta"] * len(deltas) + \
        ["content_block_stop", "message_delta", "message_stop"]
    assert len(deltas) > 1
    start = datas[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] == 5
    assert datas[1]["content_block"] == {"type": "text", "text": ""} and datas[1]["index"] == 0
    assert all(d["delta"]["type"] == "text_delta" for d in deltas)
    assert "".join(d["delta"]["text"] for d in deltas) == "echo: hello fake world"
    md = next(d for d in datas if d["type"] == "message_delta")
    assert md["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert md["usage"]["output_tokens"] == 4


def test_anthropic_tool_call(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(ToolCall("get_weather", {"city": "Paris"}, text="Let me check."))
    body = client.post("/v1/messages", headers=AV, json=an()).json()
    assert body["stop_reason"] == "tool_use"
    text, use = body["content"]
    assert text == {"type": "text", "text": "Let me check."}
    assert use["type"] == "tool_use" and use["id"].startswith("toolu_")
    assert (use["name"], use["input"]) == ("get_weather", {"city": "Paris"})


def test_anthropic_forced_tool_default(client: httpx.Client) -> None:
    tools = [{"name": "other", "input_schema": {"type": "object"}},
             {"name": "person", "description": "emit", "input_schema": SCHEMA}]
    body = client.post("/v1/messages", headers=AV,
                       json=an(tools=tools, tool_choice={"type": "tool", "name": "person"})).json()
    (block,) = body["content"]
    assert block["type"] == "tool_use" and block["name"] == "person"
    assert block["input"] == SCHEMA_EXAMPLE
    assert body["stop_reason"] == "tool_use"


# ----- tool conversations --------------------------------------------------------

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "weather in a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
AN_WEATHER = {"name": "get_weather", "description": "weather in a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
AN_TIME = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}


def oa_error(r: httpx.Response, message: str, param: str | None, code: str | None = None) -> None:
    assert r.status_code == 400, r.text
    assert r.json() == {"error": {"message": message, "type": "invalid_request_error", "param": param,
                                  "code": code}}


def an_error(r: httpx.Response, message: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "error" and body["request_id"].startswith("req_")
    assert body["error"] == {"type": "invalid_request_error", "message": message}


def oa_call(cid: str, name: str = "get_weather", args: str = '{"city": "Paris"}') -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def oa_turns(*tail: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A chat request: the user question, then `tail`."""
    return {"model": "gpt-4o-mini", "tools": [WEATHER, TIME],
            "messages": [{"role": "user", "content": "weather and time in Paris?"}, *tail], **extra}


def an_turns(*tail: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-20250514", "max_tokens": 64, "tools": [AN_WEATHER, AN_TIME],
            "messages": [{"role": "user", "content": "weather and time in Paris?"}, *tail], **extra}


def an_use(tid: str, name: str = "get_weather", inp: Any = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": tid, "name": name, "input": {"city": "Paris"} if inp is None else inp}


def an_result(tid: str, content: Any = "18C", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tid, "content": content, **extra}


def test_tool_calls_reply_checks_its_calls() -> None:
    with pytest.raises(TypeError):
        ToolCalls([])
    with pytest.raises(TypeError):
        ToolCalls([Text("no")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="prose"):
        ToolCalls([ToolCall("f", text="hi")])
    with pytest.raises(ValueError, match="duplicate"):
        ToolCalls([ToolCall("f", id="x"), ToolCall("g", id="x")])


def test_openai_parallel_tool_calls(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(ToolCalls([ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_time", id="call_mine")]),
                ToolCalls([ToolCall("get_time")], text="Checking."))
    body = client.post("/v1/chat/completions", json=oa_turns()).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    first, second = choice["message"]["tool_calls"]
    assert first["id"].startswith("call_") and second["id"] == "call_mine"
    assert [c["type"] for c in (first, second)] == ["function", "function"]
    assert (first["function"]["name"], json.loads(first["function"]["arguments"])) == ("get_weather",
                                                                                       {"city": "Paris"})
    assert (second["function"]["name"], second["function"]["arguments"]) == ("get_time", "{}")
    body = client.post("/v1/chat/completions", json=oa_turns()).json()
    assert body["choices"][0]["message"]["content"] == "Checking."
    assert [c["function"]["name"] for c in body["choices"][0]["message"]["tool_calls"]] == ["get_time"]


def test_openai_streamed_parallel_tool_calls(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(ToolCalls([ToolCall("get_weather", {"city": "New York City"}), ToolCall("get_time", {"tz": "CET"})]))
    events = sse(client.post("/v1/chat/completions", json=oa_turns(stream=True)).text)
    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    heads: dict[int, dict[str, Any]] = {}
    args: dict[int, str] = {}
    for c in chunks:
        for tc in c["choices"][0]["delta"].get("tool_calls", []):
            if "id" in tc:
                heads[tc["index"]] = tc
            args[tc["index"]] = args.get(tc["index"], "") + tc["function"].get("arguments", "")
    assert sorted(heads) == [0, 1]
    assert [heads[k]["function"]["name"] for k in (0, 1)] == ["get_weather", "get_time"]
    assert heads[0]["id"] != heads[1]["id"]
    assert json.loads(args[0]) == {"city": "New York City"} and json.loads(args[1]) == {"tz": "CET"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_openai_two_round_tool_conversation(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(ToolCalls([ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_time")]), Text("18C, noon"))
    req = oa_turns()
    msg = client.post("/v1/chat/completions", json=req).json()["choices"][0]["message"]
    w, t = (c["id"] for c in msg["tool_calls"])
    # The assistant message goes back as received; the answers may come in any order.
    req["messages"] += [msg, {"role": "tool", "tool_call_id": t, "content": [{"type": "text", "text": "noon"}]},
                        {"role": "tool", "tool_call_id": w, "content": "18C"}]
    r = client.post("/v1/chat/completions", json=req)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "18C, noon"
    assert fake.requests[-1].tool_results() == [(t, "noon", False), (w, "18C", False)]
    assert fake.requests[0].tool_results() == []
    # A later round (tool messages behind us, a new user question) is fine too.
    req["messages"] += [{"role": "assistant", "content": "18C, noon"}, {"role": "user", "content": "thanks"}]
    assert client.post("/v1/chat/completions", json=req).json()["choices"][0]["message"]["content"] \
        == "echo: thanks"


def test_openai_tool_name_must_match_pattern(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(Text("kept"))
    bad = {"type": "function", "function": {"name": "get weather", "parameters": {"type": "object"}}}
    r = client.post("/v1/chat/completions", json=oa(tools=[bad]))
    oa_error(r, "Invalid 'tools[0].function.name': string does not match pattern. Expected a string that "
             "matches the pattern '^[a-zA-Z0-9_-]+$'.", "tools[0].function.name", "invalid_value")
    r = client.post("/v1/chat/completions", json=oa(tools=[WEATHER, {**bad, "function": {"name": "x" * 65}}]))
    oa_error(r, "Invalid 'tools[1].function.name': string too long. Expected a string with maximum length 64, "
             "but got a string with length 65 instead.", "tools[1].function.name", "string_above_max_length")
    r = client.post("/v1/chat/completions", json=oa(tools=[{"type": "function", "function": {}}]))
    oa_error(r, "Missing required parameter: 'tools[0].function.name'.", "tools[0].function.name",
             "missing_required_parameter")
    assert fake.script_remaining == 1  # refused requests do not consume the script
    ok = {"type": "function", "function": {"name": "A-z_0-9" + "x" * 57}}
    r = client.post("/v1/chat/completions", json=oa(tools=[ok]))
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "kept"


def test_openai_tool_message_needs_preceding_tool_calls(client: httpx.Client) -> None:
    msg = ("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
           "'tool_calls'.")
    r = client.post("/v1/chat/completions", json=oa_turns({"role": "tool", "tool_call_id": "call_1",
                                                           "content": "18C"}))
    oa_error(r, msg, "messages.[1].role")
    # After a plain assistant message, and after the tool block has ended.
    r = client.post("/v1/chat/completions", json=oa_turns(
        {"role": "assistant", "content": "let me see"}, {"role": "tool", "tool_call_id": "call_1", "content": "x"}))
    oa_error(r, msg, "messages.[2].role")
    r = client.post("/v1/chat/completions", json=oa_turns(
        {"role": "assistant", "content": None, "tool_calls": [oa_call("call_1")]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "user", "content": "and?"},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"}))
    oa_error(r, msg, "messages.[4].role")


def test_openai_tool_call_id_must_be_one_of_the_calls(client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json=oa_turns(
        {"role": "assistant", "content": None, "tool_calls": [oa_call("call_1")]},
        {"role": "tool", "tool_call_id": "call_2", "content": "18C"}))
    oa_error(r, "Invalid parameter: 'tool_call_id' of 'call_2' not found in 'tool_calls' of previous message.",
             "messages.[2].tool_call_id")


def test_openai_every_tool_call_needs_an_answer(client: httpx.Client) -> None:
    calls = {"role": "assistant", "content": None,
             "tool_calls": [oa_call("call_a"), oa_call("call_b", "get_time", "{}"), oa_call("call_c")]}
    r = client.post("/v1/chat/completions", json=oa_turns(
        calls, {"role": "tool", "tool_call_id": "call_b", "content": "noon"}, {"role": "user", "content": "?"}))
    oa_error(r, "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
             "'tool_call_id'. The following tool_call_ids did not have response messages: call_a, call_c",
             "messages.[1].role")
    # Unanswered at the end of the conversation too.
    r = client.post("/v1/chat/completions", json=oa_turns(calls))
    oa_error(r, "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
             "'tool_call_id'. The following tool_call_ids did not have response messages: call_a, call_b, "
             "call_c", "messages.[1].role")


def test_openai_tool_message_shapes(client: httpx.Client) -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [oa_call("call_1")]}
    r = client.post("/v1/chat/completions", json=oa_turns(call, {"role": "tool", "content": "18C"}))
    oa_error(r, "Missing parameter 'tool_call_id': messages with role 'tool' must have a 'tool_call_id'.",
             "messages.[2].tool_call_id")
    r = client.post("/v1/chat/completions", json=oa_turns(call, {"role": "tool", "tool_call_id": "call_1"}))
    oa_error(r, "Missing required parameter: 'messages[2].content'.", "messages[2].content",
             "missing_required_parameter")
    r = client.post("/v1/chat/completions", json=oa_turns(call, {"role": "tool", "tool_call_id": "call_1",
                                                                 "content": {"temp": 18}}))
    oa_error(r, "Invalid type for 'messages[2].content': expected one of a string or array of objects, but got "
             "object instead.", "messages[2].content", "invalid_type")
    image = {"type": "image_url", "image_url": {"url": "http://x/y.png"}}
    r = client.post("/v1/chat/completions", json=oa_turns(call, {"role": "tool", "tool_call_id": "call_1",
                                                                 "content": [image]}))
    oa_error(r, "Invalid value: 'image_url'. Supported values are: 'text'.", "messages[2].content[0].type",
             "invalid_value")
    # The arguments of a call sent back must stay the JSON *string* the API gave.
    dict_args = {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "call_1", "type": "function",
                                 "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    r = client.post("/v1/chat/completions", json=oa_turns(dict_args, {"role": "tool", "tool_call_id": "call_1",
                                                                      "content": "18C"}))
    oa_error(r, "Invalid type for 'messages[1].tool_calls[0].function.arguments': expected a string, but got "
             "object instead.", "messages[1].tool_calls[0].function.arguments", "invalid_type")


def test_anthropic_parallel_tool_calls(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(ToolCalls([ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_time", id="toolu_mine")],
                          text="Let me check both."))
    body = client.post("/v1/messages", headers=AV, json=an_turns()).json()
    assert body["stop_reason"] == "tool_use"
    text, w, t = body["content"]
    assert text == {"type": "text", "text": "Let me check both."}
    assert w["type"] == "tool_use" and w["id"].startswith("toolu_")
    assert (w["name"], w["input"]) == ("get_weather", {"city": "Paris"})
    assert t == {"type": "tool_use", "id": "toolu_mine", "name": "get_time", "input": {}}


def test_anthropic_streamed_parallel_tool_calls(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(ToolCalls([ToolCall("get_weather", {"city": "New York City"}), ToolCall("get_time", {"tz": "CET"})],
                          text="On it."))
    datas = [json.loads(d) for _, d in sse(client.post("/v1/messages", headers=AV, json=an_turns(stream=True)).text)]
    starts = [d for d in datas if d["type"] == "content_block_start"]
    assert [(d["index"], d["content_block"]["type"]) for d in starts] == [(0, "text"), (1, "tool_use"),
                                                                           (2, "tool_use")]
    assert [d["content_block"]["name"] for d in starts[1:]] == ["get_weather", "get_time"]
    assert starts[1]["content_block"]["id"] != starts[2]["content_block"]["id"]
    partial = {1: "", 2: ""}
    for d in datas:
        if d["type"] == "content_block_delta" and d["delta"]["type"] == "input_json_delta":
            partial[d["index"]] += d["delta"]["partial_json"]
    assert json.loads(partial[1]) == {"city": "New York City"} and json.loads(partial[2]) == {"tz": "CET"}
    assert sorted(d["index"] for d in datas if d["type"] == "content_block_stop") == [0, 1, 2]
    assert next(d for d in datas if d["type"] == "message_delta")["delta"]["stop_reason"] == "tool_use"


def test_anthropic_two_round_tool_conversation(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(ToolCalls([ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_time")], text="Checking."))
    req = an_turns()
    reply = client.post("/v1/messages", headers=AV, json=req).json()
    w, t = (b["id"] for b in reply["content"] if b["type"] == "tool_use")
    req["messages"] += [
        {"role": "assistant", "content": reply["content"]},
        {"role": "user", "content": [an_result(t, [{"type": "text", "text": "clock"},
                                                   {"type": "text", "text": "broken"}], is_error=True),
                                     an_result(w, "18C"),
                                     {"type": "text", "text": "be quick"}]},
    ]
    r = client.post("/v1/messages", headers=AV, json=req)
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"].startswith("echo: ")
    assert fake.requests[-1].tool_results() == [(t, "clock broken", True), (w, "18C", False)]
    assert fake.requests[0].tool_results() == []


def test_anthropic_tool_name_must_match_pattern(client: httpx.Client) -> None:
    r = client.post("/v1/messages", headers=AV, json=an(tools=[{**AN_WEATHER, "name": "get.weather"}]))
    an_error(r, "tools.0.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'")
    r = client.post("/v1/messages", headers=AV, json=an(tools=[AN_TIME, {**AN_WEATHER, "name": "x" * 65}]))
    an_error(r, "tools.1.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'")
    r = client.post("/v1/messages", headers=AV, json=an(tools=[{"name": "no_schema"}]))
    an_error(r, "tools.0.custom.input_schema: Field required")
    r = client.post("/v1/messages", headers=AV, json=an(tools=[{**AN_WEATHER, "name": "x" * 64}]))
    assert r.status_code == 200


def test_anthropic_tool_use_needs_results_right_after(client: httpx.Client) -> None:
    both = {"role": "assistant", "content": [{"type": "text", "text": "Checking."}, an_use("toolu_a"),
                                             an_use("toolu_b", "get_time", {})]}

    def msg(i: int, ids: str) -> str:
        return (f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {ids}. "
                "Each `tool_use` block must have a corresponding `tool_result` block in the next message.")

    r = client.post("/v1/messages", headers=AV, json=an_turns(both, {"role": "user", "content": "well?"}))
    an_error(r, msg(1, "toolu_a, toolu_b"))
    r = client.post("/v1/messages", headers=AV, json=an_turns(
        both, {"role": "user", "content": [an_result("toolu_b", "noon")]}))
    an_error(r, msg(1, "toolu_a"))
    # The results must be in the very next message, not split over two.
    r = client.post("/v1/messages", headers=AV, json=an_turns(
        both, {"role": "user", "content": [an_result("toolu_a")]},
        {"role": "user", "content": [an_result("toolu_b", "noon")]}))
    an_error(r, msg(1, "toolu_b"))
    # Nor may the conversation end on unanswered calls.
    r = client.post("/v1/messages", headers=AV, json=an_turns(both))
    an_error(r, msg(1, "toolu_a, toolu_b"))


def test_anthropic_tool_results_come_before_text(client: httpx.Client) -> None:
    use = {"role": "assistant", "content": [an_use("toolu_a")]}
    r = client.post("/v1/messages", headers=AV, json=an_turns(
        use, {"role": "user", "content": [{"type": "text", "text": "here:"}, an_result("toolu_a")]}))
    an_error(r, "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_a. "
             "Each `tool_use` block must have a corresponding `tool_result` block in the next message.")
    r = client.post("/v1/messages", headers=AV, json=an_turns(
        use, {"role": "user", "content": [an_result("toolu_a"), {"type": "text", "text": "here:"}]}))
    assert r.status_code == 200


def test_anthropic_unexpected_tool_result(client: httpx.Client) -> None:
    def msg(at: str, tid: str) -> str:
        return (f"{at}: unexpected `tool_use_id` found in `tool_result` blocks: {tid}. Each `tool_result` block "
                "must have a corresponding `tool_use` block in the previous message.")

    req = an_turns()
    req["messages"] = [{"role": "user", "content": [an_result("toolu_x")]}]
    an_error(client.post("/v1/messages", headers=AV, json=req), msg("messages.0.content.0", "toolu_x"))
    r = client.post("/v1/messages", headers=AV, json=an_turns(
        {"role": "assistant", "content": [an_use("toolu_a")]},
        {"role": "user", "content": [an_result("toolu_a"), an_result("toolu_zz")]}))
    an_error(r, msg("messages.2.content.1", "toolu_zz"))
    # A result answering a call from an earlier turn is unexpected too.
    r = client.post("/v1/messages", headers=AV, json=an_turns(
        {"role": "assistant", "content": [an_use("toolu_a")]},
        {"role": "user", "content": [an_result("toolu_a")]},
        {"role": "assistant", "content": "18C in Paris."},
        {"role": "user", "content": [an_result("toolu_a")]}))
    an_error(r, msg("messages.4.content.0", "toolu_a"))


def test_anthropic_tool_use_input_must_be_an_object(client: httpx.Client) -> None:
    r = client.post("/v1/messages", headers=AV, json=an_turns(
        {"role": "assistant", "content": [an_use("toolu_a", inp='{"city": "Paris"}')]},
        {"role": "user", "content": [an_result("toolu_a")]}))
    an_error(r, "messages.1.content.0.tool_use.input: Input should be a valid dictionary")


def test_anthropic_tool_choice(fake: FakeProvider, client: httpx.Client) -> None:
    person = {"name": "person", "description": "the answer", "input_schema": SCHEMA}
    # "any": the default reply calls the LAST tool (where our adapter puts its output tool).
    r = client.post("/v1/messages", headers=AV, json=an(tools=[AN_WEATHER, person], tool_choice={"type": "any"}))
    assert r.status_code == 200
    body = r.json()
    (block,) = body["content"]
    assert (block["type"], block["name"], block["input"]) == ("tool_use", "person", SCHEMA_EXAMPLE)
    assert block["id"].startswith("toolu_") and body["stop_reason"] == "tool_use"
    # A scripted JsonObject goes to that tool as well; a scripted ToolCall still wins.
    fake.script(JsonObject({"name": "Ada"}), ToolCall("get_weather", {"city": "Rome"}))
    body = client.post("/v1/messages", headers=AV, json=an(tools=[AN_WEATHER, person],
                                                           tool_choice={"type": "any"})).json()
    assert [(b["name"], b["input"]) for b in body["content"]] == [("person", {"name": "Ada"})]
    body = client.post("/v1/messages", headers=AV, json=an(tools=[AN_WEATHER, person],
                                                           tool_choice={"type": "any"})).json()
    assert [(b["name"], b["input"]) for b in body["content"]] == [("get_weather", {"city": "Rome"})]
    # "auto" with tools: the model may just talk.
    body = client.post("/v1/messages", headers=AV, json=an(tools=[AN_WEATHER], tool_choice={"type": "auto"})).json()
    assert body["content"] == [{"type": "text", "text": "echo: hello fake world"}]
    assert body["stop_reason"] == "end_turn"
    # Without tools, only "none" is accepted.
    for choice in ({"type": "any"}, {"type": "auto"}):
        an_error(client.post("/v1/messages", headers=AV, json=an(tool_choice=choice)),
                 "tool_choice may only be specified while providing tools.")
        an_error(client.post("/v1/messages", headers=AV, json=an(tools=[], tool_choice=choice)),
                 "tool_choice may only be specified while providing tools.")
    assert client.post("/v1/messages", headers=AV, json=an(tool_choice={"type": "none"})).status_code == 200
    an_error(client.post("/v1/messages", headers=AV, json=an(tools=[AN_WEATHER], tool_choice={"type": "required"})),
             "tool_choice: Input tag 'required' found using 'type' does not match any of the expected tags: "
             "'auto', 'any', 'tool', 'none'")


# ----- faults -------------------------------------------------------------------


def test_rate_limit_fault_both_shapes(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(RateLimit(retry_after=2, retry_after_ms=1500,
                          headers={"x-ratelimit-reset-requests": "1.5s"}),
                RateLimit(retry_after=3,
                          headers={"anthropic-ratelimit-requests-reset": "2025-01-01T00:00:03Z"}))
    r = client.post("/v1/chat/completions", json=oa())
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2" and r.headers["retry-after-ms"] == "1500"
    assert r.headers["x-ratelimit-reset-requests"] == "1.5s"
    err = r.json()["error"]
    assert err["type"] == "requests" and err["code"] == "rate_limit_exceeded" and err["message"]
    r = client.post("/v1/messages", headers=AV, json=an())
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.headers["anthropic-ratelimit-requests-reset"] == "2025-01-01T00:00:03Z"
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert fake.status_counts == {429: 2}


def test_server_errors(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(ServerError(), ServerError(), Overloaded(), Overloaded())
    r = client.post("/v1/chat/completions", json=oa())
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    r = client.post("/v1/messages", headers=AV, json=an())
    assert r.status_code == 500 and r.json()["error"]["type"] == "api_error"
    r = client.post("/v1/messages", headers=AV, json=an())
    assert r.status_code == 529
    body = r.json()
    assert body["type"] == "error"
    assert body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    r = client.post("/v1/chat/completions", json=oa())
    assert r.status_code == 529 and "error" in r.json()
    assert fake.status_counts == {500: 2, 529: 2}


def test_any_status(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(ErrorStatus(403), ErrorStatus(400, "bad thing", code="x"), ErrorStatus(418, error_type="teapot"))
    r = client.post("/v1/messages", headers=AV, json=an())
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    r = client.post("/v1/chat/completions", json=oa())
    assert r.status_code == 400
    assert r.json() == {"error": {"message": "bad thing", "type": "invalid_request_error",
                                  "param": None, "code": "x"}}
    r = client.post("/v1/chat/completions", json=oa())
    assert r.status_code == 418 and r.json()["error"]["type"] == "teapot"


def test_slow_and_headers(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(Slow(0.3), Default(headers={"x-custom": "yes"}))
    t0 = time.monotonic()
    r = client.post("/v1/chat/completions", json=oa())
    assert time.monotonic() - t0 >= 0.3
    assert r.json()["choices"][0]["message"]["content"] == "echo: hello fake world"
    r = client.post("/v1/chat/completions", json=oa())
    assert r.headers["x-custom"] == "yes"
    fake.script(Slow(0.2, Text("late")))
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/messages", headers=AV, json=an(), timeout=0.05)


def test_malformed(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(Malformed(), Malformed(b"{not json"), Malformed())
    for path, body, headers in [("/v1/chat/completions", oa(), {}), ("/v1/messages", an(), AV)]:
        r = client.post(path, json=body, headers=headers)
        assert r.status_code == 200
        with pytest.raises(ValueError):
            json.loads(r.text)
    r = client.post("/v1/chat/completions", json=oa(stream=True))
    datas = [d for _, d in sse(r.text)]
    assert datas[-1] == "[DONE]"  # the stream itself is complete ...
    with pytest.raises(ValueError):  # ... but one event is not JSON
        [json.loads(d) for d in datas[:-1]]


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
def test_stream_cut(fake: FakeProvider, client: httpx.Client, flavour: str) -> None:
    fake.script(StreamCut(after=3))
    path, body, headers = (("/v1/chat/completions", oa(stream=True), {}) if flavour == "openai"
                           else ("/v1/messages", an(stream=True), AV))
    got: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("POST", path, json=body, headers=headers) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    got.append(line)
    assert len(got) == 3
    # The client's pool drops the broken connection; the next request works.
    assert client.post(path, json={**body, "stream": False}, headers=headers).status_code == 200


def test_stream_cut_non_streamed(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(StreamCut())
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/v1/chat/completions", json=oa())


def test_script_is_fifo_across_endpoints(fake: FakeProvider, client: httpx.Client) -> None:
    fake.script(Text("one"), Text("two"))
    assert fake.script_remaining == 2
    assert client.post("/v1/messages", headers=AV, json=an()).json()["content"][0]["text"] == "one"
    assert client.post("/v1/chat/completions", json=oa()).json()["choices"][0]["message"]["content"] == "two"
    assert client.post("/v1/chat/completions", json=oa()).json()["choices"][0]["message"]["content"] \
        == "echo: hello fake world"
    fake.script(Text("never"))
    fake.reset()
    assert fake.requests == [] and fake.status_counts == {} and fake.script_remaining == 0
    assert client.post("/v1/chat/completions", json=oa()).json()["choices"][0]["message"]["content"] \
        == "echo: hello fake world"


# ----- auth, validation, routing ---------------------------------------------------


def test_auth() -> None:
    with FakeProvider(api_key="sk-test") as fake, httpx.Client(base_url=fake.url) as c:
        fake.script(Text("kept for the authorised request"))
        r = c.post("/v1/chat/completions", json=oa())
        assert r.status_code == 401
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["code"] == "invalid_api_key"
        r = c.post("/v1/chat/completions", json=oa(), headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        r = c.post("/v1/messages", json=an(), headers={**AV, "x-api-key": "wrong"})
        assert r.status_code == 401
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "authentication_error"
        r = c.post("/v1/messages", json=an(), headers=AV)
        assert r.status_code == 401
        r = c.post("/v1/messages", json=an(), headers={"x-api-key": "sk-test"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        assert "anthropic-version" in r.json()["error"]["message"]
        r = c.post("/v1/chat/completions", json=oa(), headers={"Authorization": "Bearer sk-test"})
        assert r.json()["choices"][0]["message"]["content"] == "kept for the authorised request"
        r = c.post("/v1/messages", json=an(), headers={**AV, "x-api-key": "sk-test"})
        assert r.status_code == 200
        assert fake.status_counts == {401: 4, 400: 1, 200: 2}


def test_anthropic_version_required_without_key(client: httpx.Client) -> None:
    r = client.post("/v1/messages", json=an())
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_validation(client: httpx.Client) -> None:
    cases: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, {}),
        ("/v1/chat/completions", {"model": "m"}, {}),
        ("/v1/chat/completions", oa(stream_options={"include_usage": True}), {}),
        ("/v1/messages", {"model": "m", "messages": [{"role": "user", "content": "x"}]}, AV),
        ("/v1/messages", {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, AV),
        ("/v1/messages", {"model": "m", "max_tokens": 5}, AV),
        ("/v1/messages", {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"},
                                                                      {"role": "user", "content": "x"}]}, AV),
    ]
    for path, body, headers in cases:
        r = client.post(path, json=body, headers=headers)
        assert r.status_code == 400, (path, body)
        j = r.json()
        if path.endswith("/messages"):
            assert j["type"] == "error" and j["error"]["type"] == "invalid_request_error"
        else:
            assert j["error"]["type"] == "invalid_request_error"
    r = client.post("/v1/messages", json=cases[-1][1], headers=AV)
    assert "top-level `system`" in r.json()["error"]["message"]
    r = client.post("/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_unknown_path(fake: FakeProvider, client: httpx.Client) -> None:
    r = client.post("/v1/completions", json=oa())
    assert r.status_code == 404 and "error" in r.json()
    r = client.get("/v1/chat/completions")
    assert r.status_code == 404
    r = client.post("/v2/nothing", json={}, headers=AV)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    assert fake.status_counts == {404: 3}


def test_base_urls_with_prefix(fake: FakeProvider) -> None:
    # Any POST path ending in /chat/completions or /v1/messages routes.
    with httpx.Client(base_url=fake.url) as c:
        assert c.post("/openai/deployments/x/chat/completions", json=oa()).status_code == 200
        assert c.post("/proxy/v1/messages", json=an(), headers=AV).status_code == 200
    assert fake.requests[0].path == "/openai/deployments/x/chat/completions"


# ----- rate limiting, latency, connections ------------------------------------------------


def test_rpm_enforced() -> None:
    with FakeProvider(rpm=3) as fake, httpx.Client(base_url=fake.url) as c:
        for i in range(3):
            r = c.post("/v1/chat/completions", json=oa())
            assert r.status_code == 200
            assert r.headers["x-ratelimit-limit-requests"] == "3"
            assert r.headers["x-ratelimit-remaining-requests"] == str(2 - i)
        r = c.post("/v1/chat/completions", json=oa())
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        err = r.json()["error"]
        assert (err["type"], err["code"]) == ("requests", "rate_limit_exceeded")
        assert err["message"].startswith("Rate limit reached")
        r = c.post("/v1/messages", json=an(), headers=AV)
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert r.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
        assert fake.status_counts == {200: 3, 429: 2}


def test_latency_and_concurrency() -> None:
    n = 8
    with FakeProvider(latency=0.25) as fake:
        def one(_: int) -> int:
            with httpx.Client(base_url=fake.url) as c:
                return c.post("/v1/chat/completions", json=oa()).status_code

        t0 = time.monotonic()
        with ThreadPoolExecutor(n) as pool:
            codes = list(pool.map(one, range(n)))
        elapsed = time.monotonic() - t0
        assert codes == [200] * n
        assert 0.25 <= elapsed < 0.25 * n / 2  # concurrent, not serialised
        assert fake.max_in_flight == n
        assert len(fake.requests) == n and all(r.t > 0 for r in fake.requests)


def test_keep_alive_and_connection_close(fake: FakeProvider) -> None:
    with httpx.Client(base_url=fake.url) as c:
        for _ in range(5):
            assert c.post("/v1/chat/completions", json=oa()).status_code == 200
            assert c.post("/v1/messages", json=an(stream=True), headers=AV).status_code == 200
        assert fake.connections == 1
        r = c.post("/v1/chat/completions", json=oa(), headers={"Connection": "close"})
        assert r.status_code == 200 and r.headers["connection"] == "close"
        assert c.post("/v1/chat/completions", json=oa()).status_code == 200
        assert fake.connections == 2
    assert fake.status_counts == {200: 12}


# ----- process mode -------------------------------------------------------------


def test_subprocess_mode() -> None:
    proc = subprocess.Popen([sys.executable, str(HERE / "fake_provider.py"), "--port", "0", "--latency-ms", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:"), line
        url = line.split()[1]
        r = httpx.post(url + "/v1/chat/completions", json=oa("from the benchmark"))
        assert r.json()["choices"][0]["message"]["content"] == "echo: from the benchmark"
        proc.terminate()
        out, err = proc.communicate(timeout=5)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, err
    assert out == ""
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["status_counts"] == {"200": 1} and summary["max_in_flight"] == 1


def test_standalone_no_concerto_import() -> None:
    code = ("import runpy, sys; runpy.run_path(sys.argv[1], run_name='fake'); "
            "print(any(m == 'concerto' or m.startswith('concerto.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(HERE / "fake_provider.py")],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
