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
