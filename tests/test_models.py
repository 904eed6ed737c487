"""Models, connections and schema validation end to end: `concerto run` (and
`compile`) against the loopback fake provider speaking the real OpenAI and
Anthropic wire formats (issue 3)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli
from tests.fake_provider import (
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
)

KEY = "sk-test-SECRET-0123456789"
ANTHROPIC_KEY = "sk-ant-SECRET-9876543210"
KEYS = {"TEST_OPENAI_KEY": KEY, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY}
PROJECT = '[project]\nname = "t"\nversion = "0.1.0"\nentry = "src/main.conc"\n\n'


@pytest.fixture(scope="module")
def strict_server():
    """A server that checks the key, for the auth tests."""
    with FakeProvider(api_key=KEY) as f:
        yield f


def openai_conn(fake: FakeProvider, name: str = "openai", extra: str = "") -> str:
    return (f'[connections.{name}]\nprovider = "openai"\napi_key_env = "TEST_OPENAI_KEY"\n'
            f'base_url = "{fake.openai_base_url}"\ndefault_model = "gpt-4o-mini"\ntimeout = 10\n{extra}\n')


def anthropic_conn(fake: FakeProvider, name: str = "claude", extra: str = "") -> str:
    return (f'[connections.{name}]\nprovider = "anthropic"\napi_key_env = "TEST_ANTHROPIC_KEY"\n'
            f'base_url = "{fake.anthropic_base_url}"\ndefault_model = "claude-sonnet-4-20250514"\ntimeout = 10\n{extra}\n')


def project(tmp_path: Path, source: str, connections: str) -> Path:
    """Concerto.toml at the root, the program in src/: the compiler must walk up."""
    (tmp_path / "Concerto.toml").write_text(PROJECT + connections)
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    main = src / "main.conc"
    main.write_text(source)
    return main


def run(path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, list[Any], str]:
    code, out, err = cli("run", str(path), "--emit-format", "jsonl", *args,
                         env_extra=KEYS if env is None else env)
    emits = [json.loads(line) for line in out.splitlines() if line.strip()]
    return code, emits, err


def payloads(emits: list[Any], channel: str) -> list[Any]:
    return [e["payload"] for e in emits if e["channel"] == channel]


EXECUTE = """
model Assistant {
    provider: %(conn)s,
    %(base)s
    temperature: 0.2,
    max_tokens: 50,
    system_prompt: "Be brief.",
}

fn main() {
    match Assistant.execute("hello there") {
        Ok(r) => emit("response", {
            "text": r.text, "model": r.model, "provider": r.provider,
            "tokens_in": r.tokens_in, "tokens_out": r.tokens_out, "latency_ok": r.latency_ms >= 0,
        }),
        Err(e) => emit("error", e.message),
    }
}
"""


# ---------------------------------------------------------------- 2, 3: wire formats
def test_openai_execute_speaks_chat_completions(tmp_path: Path, fake: FakeProvider) -> None:
    main = project(tmp_path, EXECUTE % {"conn": "openai", "base": 'base: "smart",'},
                   openai_conn(fake, extra='[connections.openai.models]\nsmart = "gpt-4o"\n'))
    code, emits, err = run(main)
    assert code == 0, err
    [resp] = payloads(emits, "response")
    assert resp["text"] == "echo: hello there"
    assert resp["model"] == "gpt-4o" and resp["provider"] == "openai" and resp["latency_ok"]
    assert resp["tokens_in"] > 0 and resp["tokens_out"] > 0
    [req] = fake.requests
    assert req.method == "POST" and req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.body["model"] == "gpt-4o"  # the alias, resolved
    assert req.body["messages"] == [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "hello there"}]
    assert req.body["temperature"] == 0.2 and req.body["max_tokens"] == 50


def test_anthropic_execute_speaks_messages_api(tmp_path: Path, fake: FakeProvider) -> None:
    main = project(tmp_path, EXECUTE % {"conn": "claude", "base": ""}, anthropic_conn(fake))
    code, emits, err = run(main)
    assert code == 0, err
    [resp] = payloads(emits, "response")
    assert resp["text"] == "echo: hello there" and resp["provider"] == "anthropic"
    assert resp["model"] == "claude-sonnet-4-20250514"  # default_model
    [req] = fake.requests
    assert req.path == "/v1/messages"
    assert req.headers["x-api-key"] == ANTHROPIC_KEY and "anthropic-version" in req.headers
    assert "authorization" not in req.headers
    assert req.body["system"] == "Be brief."
    assert req.body["messages"] == [{"role": "user", "content": "hello there"}]
    assert req.body["max_tokens"] == 50


def test_legacy_agent_form_is_a_model(tmp_path: Path, fake: FakeProvider) -> None:
    src = 'agent Old { provider: openai, model: "gpt-4o" }\nfn main() { emit("t", Old.execute("hi").unwrap().text); }\n'
    code, emits, err = run(project(tmp_path, src, openai_conn(fake)))
    assert code == 0, err
    assert payloads(emits, "t") == ["echo: hi"]
    assert fake.requests[0].body["model"] == "gpt-4o"


def test_auth_failure_is_an_agent_error_value_without_the_key(tmp_path: Path, strict_server: FakeProvider) -> None:
    strict_server.reset()
    main = project(tmp_path, EXECUTE % {"conn": "openai", "base": ""}, openai_conn(strict_server))
    code, emits, err = run(main, env={"TEST_OPENAI_KEY": "sk-wrong-SECRET-key"})
    assert code == 0, err
    [message] = payloads(emits, "error")
    assert "401" in message and "Assistant" in message
    assert "sk-wrong-SECRET-key" not in message + err


def test_ollama_and_custom_need_no_key(tmp_path: Path, fake: FakeProvider) -> None:
    conns = (f'[connections.local]\nprovider = "ollama"\nbase_url = "{fake.openai_base_url}"\ndefault_model = "llama3.1"\n\n'
             f'[connections.mine]\nprovider = "custom"\nbase_url = "{fake.openai_base_url}"\ndefault_model = "m1"\n')
    src = ('model A { provider: local }\nmodel B { provider: mine }\n'
           'fn main() { emit("a", A.execute("x").unwrap().text); emit("b", B.execute("y").unwrap().text); }\n')
    code, emits, err = run(project(tmp_path, src, conns), env={})
    assert code == 0, err
    assert payloads(emits, "a") == ["echo: x"] and payloads(emits, "b") == ["echo: y"]
    assert all("authorization" not in r.headers for r in fake.requests)
    assert [r.body["model"] for r in fake.requests] == ["llama3.1", "m1"]


def test_missing_key_names_the_variable_before_any_request(tmp_path: Path, fake: FakeProvider) -> None:
    main = project(tmp_path, EXECUTE % {"conn": "openai", "base": ""}, openai_conn(fake))
    code, emits, err = run(main, env={"TEST_OPENAI_KEY": ""})
    assert code == 1
    assert "TEST_OPENAI_KEY" in err and "is not set" in err and "--mock" in err
    assert "Traceback" not in err
    assert emits == [] and fake.requests == []


def test_mock_is_used_only_when_asked(tmp_path: Path, fake: FakeProvider) -> None:
    main = project(tmp_path, EXECUTE % {"conn": "openai", "base": ""}, openai_conn(fake))
    code, emits, err = run(main, "--mock", env={})
    assert code == 0, err
    assert payloads(emits, "response")[0]["text"] == "mock reply to: hello there"
    assert fake.requests == []


def test_mock_provider_in_the_manifest_with_scripted_replies(tmp_path: Path) -> None:
    (tmp_path / "replies.json").write_text(json.dumps(["first", {"text": "second", "tokens_out": 7}]))
    conns = '[connections.demo]\nprovider = "mock"\ndefault_model = "gpt-4o"\nreplies = "replies.json"\n'
    src = ('model M { provider: demo }\nfn main() { for i in 0..3 { let r = M.execute("q${i}").unwrap();'
           ' emit("r", (r.text, r.tokens_out)); } }\n')
    code, emits, err = run(project(tmp_path, src, conns), env={})
    assert code == 0, err
    assert payloads(emits, "r") == [["first", 1], ["second", 7], ["mock reply to: q2", 4]]


def test_bad_replies_file_is_reported_with_its_entry(tmp_path: Path) -> None:
    (tmp_path / "replies.json").write_text(json.dumps([{"txt": "typo"}]))
    conns = '[connections.demo]\nprovider = "mock"\nreplies = "replies.json"\n'
    code, _, err = run(project(tmp_path, 'model M { provider: demo }\nfn main() {}\n', conns), env={})
    assert code == 1
    assert "replies[0]" in err and "'txt'" in err and "Traceback" not in err


def test_run_without_a_manifest_needs_mock(tmp_path: Path) -> None:
    main = tmp_path / "solo.conc"
    main.write_text('model M { provider: openai }\nfn main() { emit("t", M.execute("x").unwrap().text); }\n')
    code, _, err = run(main, env={})
    assert code == 1 and "no Concerto.toml was found" in err
    code, emits, err = run(main, "--mock", env={})
    assert code == 0, err
    assert payloads(emits, "t") == ["mock reply to: x"]


# ---------------------------------------------------------------- 1: manifest
def test_bad_manifest_fields_are_reported_with_toml_paths(tmp_path: Path, fake: FakeProvider) -> None:
    conns = openai_conn(fake, extra='[connections.openai.retry]\nbackoff = "fast"\n\n[connections.openai.rate_limit]\nrequests_per_minute = 0\n')
    main = project(tmp_path, EXECUTE % {"conn": "openai", "base": ""}, conns)
    for command in ("run", "compile"):
        code, out, err = cli(command, str(main), env_extra=KEYS)
        assert code == 1, (command, err)
        assert "connections.openai.retry.backoff" in err and "Concerto.toml:" in err
        assert "connections.openai.rate_limit.requests_per_minute" in err
        assert "Traceback" not in err
    assert fake.requests == []


def test_unknown_connection_is_a_compile_error_at_the_provider_field(tmp_path: Path, fake: FakeProvider) -> None:
    main = project(tmp_path, 'model M {\n    provider: nope,\n}\nfn main() {}\n', openai_conn(fake))
    code, _, err = cli("check", str(main))
    assert code == 1
    assert "main.conc:2:15" in err and "unknown connection `nope`" in err and "[connections.nope]" in err


def test_env_file_supplies_the_key(tmp_path: Path, fake: FakeProvider) -> None:
    main = project(tmp_path, EXECUTE % {"conn": "openai", "base": ""}, openai_conn(fake))
    (tmp_path / ".env").write_text(f'# keys\nexport TEST_OPENAI_KEY="{KEY}"\n')
    code, emits, err = run(main, "--env", str(tmp_path / ".env"), env={"TEST_OPENAI_KEY": ""})
    # An empty variable in the environment still counts as set, so --env does not override it.
    assert code == 1 and "TEST_OPENAI_KEY" in err
    code, emits, err = cli("run", str(main), "--emit-format", "jsonl", "--env", str(tmp_path / ".env"),
                           env_extra={"PATH": "/usr/bin:/bin"})
    assert code == 0, err
    assert fake.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_compiled_ir_embeds_connections_but_never_keys(tmp_path: Path, fake: FakeProvider) -> None:
    main = project(tmp_path, EXECUTE % {"conn": "openai", "base": ""}, openai_conn(fake))
    out = tmp_path / "main.conc-ir"
    code, _, err = cli("compile", str(main), "-o", str(out), env_extra=KEYS)
    assert code == 0, err
    text = out.read_text()
    assert KEY not in text
    data = json.loads(text)
    [conn] = data["connections"]
    assert conn["name"] == "openai" and conn["config"]["api_key_env"] == "TEST_OPENAI_KEY"
    assert data["models"][0]["config"]["model"] == "gpt-4o-mini"
    code, emits, err = run(out, "--metrics", "--allow-host", "127.0.0.1")  # IR run: no manifest names the host
    assert code == 0, err
    assert payloads(emits, "response")[0]["text"] == "echo: hello there"
    assert KEY not in err and KEY not in json.dumps(emits)


# ---------------------------------------------------------------- 3: chat, stream, memory
def test_chat_sends_the_messages_in_order(tmp_path: Path, fake: FakeProvider) -> None:
    src = '''
model Helper { provider: openai, system_prompt: "sys" }
fn main() {
    let msgs = [Message::user("one"), Message::assistant("two"), Message::user("three")];
    emit("t", Helper.chat(msgs).unwrap().text);
}
'''
    code, emits, err = run(project(tmp_path, src, openai_conn(fake)))
    assert code == 0, err
    assert payloads(emits, "t") == ["echo: three"]
    assert [m["role"] for m in fake.requests[0].body["messages"]] == ["system", "user", "assistant", "user"]


STREAM = '''
model Writer { provider: %s }
fn main() {
    match Writer.stream("alpha beta gamma") {
        Ok(chunks) => {
            let mut full = "";
            for chunk in chunks {
                full += chunk.text;
                emit("chunk", chunk.text);
            }
            emit("full", full);
        },
        Err(e) => emit("error", e.message),
    }
}
'''


@pytest.mark.parametrize("conn", ["openai", "claude"])
def test_stream_delivers_every_chunk(tmp_path: Path, fake: FakeProvider, conn: str) -> None:
    main = project(tmp_path, STREAM % conn, openai_conn(fake) + anthropic_conn(fake))
    code, emits, err = run(main, "--metrics")
    assert code == 0, err
    chunks = payloads(emits, "chunk")
    assert len(chunks) > 1
    assert payloads(emits, "full") == ["echo: alpha beta gamma"] == ["".join(chunks)]
    assert fake.requests[0].body["stream"] is True
    assert "model Writer" in err  # metered like any call


def test_stream_cut_midway_is_an_agent_error_the_program_catches(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script(StreamCut(after=2))
    src = '''
model Writer { provider: openai }
fn main() {
    let chunks = Writer.stream("one two three four five").unwrap();
    try {
        for chunk in chunks { emit("chunk", chunk.text); }
        emit("done", true);
    } catch AgentError(e) {
        emit("cut", e.message);
    }
}
'''
    code, emits, err = run(project(tmp_path, src, openai_conn(fake)))
    assert code == 0, err
    assert payloads(emits, "done") == []
    [message] = payloads(emits, "cut")
    assert "Writer" in message


def test_memory_carries_the_conversation(tmp_path: Path, fake: FakeProvider) -> None:
    src = '''
memory chat: Memory = Memory::new();
memory short: Memory = Memory::new(2);
model Bot { provider: openai, system_prompt: "sys" }
fn main() {
    Bot.with_memory(chat).execute("first");
    Bot.with_memory(chat).execute("second");
    emit("len", chat.len());
    emit("roles", chat.messages().map(|m| m.role));
    Bot.with_memory(chat, auto: false).execute("third");
    emit("len", chat.len());
    Bot.with_memory(chat, false).execute("fourth");
    emit("len", chat.len());
    short.append("user", "a");
    Bot.with_memory(short).execute("b");
    emit("short", short.messages().map(|m| m.content));
}
'''
    code, emits, err = run(project(tmp_path, src, openai_conn(fake)))
    assert code == 0, err
    assert payloads(emits, "len") == [4, 4, 4]
    assert payloads(emits, "roles") == [["user", "assistant", "user", "assistant"]]
    assert payloads(emits, "short") == [["b", "echo: b"]]
    assert fake.requests[3].body["messages"][-1]["content"] == "fourth"
    second = fake.requests[1].body["messages"]
    assert [(m["role"], m["content"]) for m in second] == [
        ("system", "sys"), ("user", "first"), ("assistant", "echo: first"), ("user", "second")]


# ---------------------------------------------------------------- 5: schemas
SCHEMA_SRC = '''
schema Address { city: String, zip?: String }
schema Person {
    name: String,
    age: Int,
    role: "admin" | "user",
    address: Address,
    tags: Array<String> = [],
}
model Extractor { provider: %s, retry_policy: { max_attempts: 2 } }
fn main() {
    match Extractor.execute_with_schema<Person>("Extract: Ada, 36, admin, London") {
        Ok(p) => emit("person", { "name": p.name, "age": p.age + 1, "role": p.role,
                                  "city": p.address.city, "zip": p.address.zip ?? "none" }),
        Err(e) => emit("error", { "message": e.message, "kind": e.kind }),
    }
}
'''
GOOD_PERSON = {"name": "Ada", "age": 36, "role": "admin", "address": {"city": "London"}}


def test_schema_in_the_ir_is_json_schema(tmp_path: Path, fake: FakeProvider, snapshot) -> None:
    main = project(tmp_path, SCHEMA_SRC % "openai", openai_conn(fake))
    out = tmp_path / "x.conc-ir"
    code, _, err = cli("compile", str(main), "-o", str(out))
    assert code == 0, err
    assert json.loads(out.read_text())["schemas"] == snapshot


def test_openai_structured_output_uses_json_schema_response_format(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script(JsonObject(GOOD_PERSON))
    code, emits, err = run(project(tmp_path, SCHEMA_SRC % "openai", openai_conn(fake)))
    assert code == 0, err
    assert payloads(emits, "person") == [{"name": "Ada", "age": 37, "role": "admin", "city": "London", "zip": "none"}]
    fmt = fake.requests[0].body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["additionalProperties"] is False and set(schema["required"]) == set(schema["properties"])


def test_anthropic_structured_output_forces_a_tool(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script(JsonObject(GOOD_PERSON))
    code, emits, err = run(project(tmp_path, SCHEMA_SRC % "claude", anthropic_conn(fake)))
    assert code == 0, err
    assert payloads(emits, "person")[0]["city"] == "London"
    body = fake.requests[0].body
    assert body["tool_choice"]["type"] == "tool"
    tool = next(t for t in body["tools"] if t["name"] == body["tool_choice"]["name"])
    assert tool["input_schema"]["type"] == "object" and "address" in tool["input_schema"]["properties"]


def test_invalid_output_is_retried_with_the_errors_and_schema(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script(JsonObject({**GOOD_PERSON, "role": "wizard", "age": "old"}), JsonObject(GOOD_PERSON))
    code, emits, err = run(project(tmp_path, SCHEMA_SRC % "openai", openai_conn(fake)))
    assert code == 0, err
    assert payloads(emits, "person")[0]["name"] == "Ada"
    assert len(fake.requests) == 2
    retry = fake.requests[1].body["messages"][-1]["content"]
    assert "wizard" in retry and "age" in retry and '"properties"' in retry


def test_schema_failure_after_all_attempts_is_a_schema_error(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script(Text("not json at all"), JsonObject({"name": "Ada"}))
    code, emits, err = run(project(tmp_path, SCHEMA_SRC % "openai", openai_conn(fake)))
    assert code == 0, err
    [error] = payloads(emits, "error")
    assert error["kind"] == "max_retries_exceeded" and "2 attempt" in error["message"]
    assert "missing required field" in error["message"]
    assert len(fake.requests) == 2


def test_partial_and_coerce_modes(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script(JsonObject({"title": "x"}), JsonObject({"count": "42", "ratio": "0.5", "active": "true"}))
    src = '''
schema Loose { @partial title: String, pages: Int }
schema Lenient { @coerce count: Int, ratio: Float, active: Bool }
model M { provider: openai }
fn main() {
    let l = M.execute_with_schema<Loose>("a").unwrap();
    emit("loose", (l.title ?? "-", l.pages.is_none()));
    let c = M.execute_with_schema<Lenient>("b").unwrap();
    emit("lenient", (c.count + 1, c.ratio * 2.0, c.active));
}
'''
    code, emits, err = run(project(tmp_path, src, openai_conn(fake)))
    assert code == 0, err
    assert payloads(emits, "loose") == [["x", True]]
    assert payloads(emits, "lenient") == [[43, 1.0, True]]


# ---------------------------------------------------------------- 4: retries and faults
RETRYING = '[connections.%s.retry]\nmax_attempts = 3\nbackoff = "exponential"\ninitial_delay_ms = 20\nmax_delay_ms = 200\n'


def test_429_is_retried_after_the_retry_after_header(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script(RateLimit(retry_after=1), Default())
    main = project(tmp_path, EXECUTE % {"conn": "openai", "base": ""}, openai_conn(fake, extra=RETRYING % "openai"))
    code, emits, err = run(main, "--metrics")
    assert code == 0, err
    assert payloads(emits, "response")[0]["text"] == "echo: hello there"
    first, second = fake.requests
    assert second.t - first.t >= 0.95
    assert "retries" in err


def test_retry_after_ms_and_5xx_and_overloaded_are_retried(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script(RateLimit(retry_after=None, retry_after_ms=300), Overloaded(), Default())
    main = project(tmp_path, EXECUTE % {"conn": "claude", "base": ""}, anthropic_conn(fake, extra=RETRYING % "claude"))
    code, emits, err = run(main)
    assert code == 0, err
    assert len(fake.requests) == 3
    assert fake.requests[1].t - fake.requests[0].t >= 0.28
    fake.reset()
    fake.script(ServerError(), ServerError(), ServerError())
    code, emits, err = run(main)
    [message] = payloads(emits, "error")
    assert "500" in message and "after 3 attempts" in message
    assert len(fake.requests) == 3


def test_other_4xx_is_not_retried(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script(ErrorStatus(400, message="bad temperature"))
    src = '''
model M { provider: openai }
fn main() {
    match M.execute("x") {
        Ok(_) => emit("ok", true),
        Err(e) => emit("error", (e.kind, e.status, e.message)),
    }
}
'''
    code, emits, err = run(project(tmp_path, src, openai_conn(fake, extra=RETRYING % "openai")))
    assert code == 0, err
    [[kind, status, message]] = payloads(emits, "error")
    assert kind == "bad_request" and status == 400 and "bad temperature" in message
    assert len(fake.requests) == 1


def test_slow_replies_time_out_per_request_and_are_retried(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script(Slow(2.0), Slow(2.0))
    src = '''
model M { provider: openai, timeout: 0.3 }
fn main() {
    match M.execute("x") { Ok(_) => emit("ok", true), Err(e) => emit("error", (e.kind, e.message)) }
}
'''
    retry2 = '[connections.openai.retry]\nmax_attempts = 2\ninitial_delay_ms = 10\n'
    started = time.monotonic()
    code, emits, err = run(project(tmp_path, src, openai_conn(fake, extra=retry2)))
    assert code == 0, err
    [[kind, message]] = payloads(emits, "error")
    assert kind == "timeout" and "0.3 s" in message
    assert len(fake.requests) == 2
    assert time.monotonic() - started < 3.5  # a real deadline, not the server's 2 s twice plus start-up


def test_malformed_body_and_unreachable_server_are_agent_errors(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script(Malformed())
    dead = '[connections.dead]\nprovider = "custom"\nbase_url = "http://127.0.0.1:9/v1"\n'
    src = '''
model M { provider: openai }
model Gone { provider: dead, base: "x" }
fn main() {
    match M.execute("x") { Ok(_) => emit("ok", true), Err(e) => emit("error", e.kind) }
    match Gone.execute("x") { Ok(_) => emit("ok", true), Err(e) => emit("error", e.kind) }
}
'''
    code, emits, err = run(project(tmp_path, src, openai_conn(fake) + dead))
    assert code == 0, err
    assert payloads(emits, "error") == ["invalid_response", "network"]


# ---------------------------------------------------------------- 6: metering
def test_metrics_table_counts_tokens_retries_and_cost(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script(ServerError(), Default())
    pricing = '[pricing."gpt-4o-mini"]\ninput_per_mtok = 1000000.0\noutput_per_mtok = 0.0\n'
    main = project(tmp_path, EXECUTE % {"conn": "openai", "base": ""},
                   openai_conn(fake, extra=RETRYING % "openai") + pricing)
    code, emits, err = run(main, "--metrics")
    assert code == 0, err
    tokens_in = payloads(emits, "response")[0]["tokens_in"]
    row = next(line for line in err.splitlines() if "model Assistant" in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    # calls, requests, retries, failures, tool calls, tokens in, tokens out, avg latency, cost
    assert cells[1:6] == ["1", "2", "1", "0", "0"]
    assert cells[6] == str(tokens_in)
    assert float(cells[9]) == pytest.approx(tokens_in * 1.0)  # $1 per input token, as priced


# ---------------------------------------------------------------- syntax decisions (docs/semantics.md)
def _compile(src: str, **kw: Any):
    from concerto.compiler import compile_source

    return compile_source(src, "main.conc", **kw)


def test_llm_keywords_are_contextual() -> None:
    src = '''
model M { provider: demo }
fn main() {
    let model = "m";
    let schema = 1;
    let memory = [model];
    let agent = { "model": model };
    let r = M.execute("x").unwrap();
    emit("t", (model, schema, memory, agent, r.model));
}
'''
    result = _compile(src, mock=True)
    assert result.ok, [d.header() for d in result.diagnostics]


def test_connect_blocks_and_process_agents_are_clear_errors() -> None:
    result = _compile('connect openai { api_key: env("K") }\nagent Coder { command: "claude" }\nfn main() {}\n', mock=True)
    messages = [d.message for d in result.diagnostics]
    assert any("removed by spec 22" in m for m in messages)
    assert any("external process agent (spec 26)" in m for m in messages)
    hints = " ".join(d.hint or "" for d in result.diagnostics)
    assert "api_key_env" in hints


def test_model_fields_and_schema_types_are_checked() -> None:
    src = '''
schema Loop { next: Loop }
schema Bad { when: fn(Int) -> Int }
model M { provider: demo, temprature: 0.5, max_tokens: "many", temperature: 3.0 }
fn main() { let r = M.execute_with_schema<Int>("x"); }
'''
    messages = [d.message for d in _compile(src, mock=True).diagnostics]
    assert any("cannot contain itself" in m for m in messages)
    assert any("has no JSON form" in m for m in messages)
    assert any("unknown model field `temprature`" in m for m in messages)
    assert any("max_tokens` must be Int" in m for m in messages)
    assert any("temperature must be between" in m for m in messages)
    assert any("`Int` is not a schema" in m for m in messages)


def test_ir_model_sections_are_validated_with_their_paths(tmp_path: Path) -> None:
    from concerto.vm.loader import IRLoadError, load_object

    result = _compile('model M { provider: demo }\nfn main() { M.execute("x"); }\n', mock=True)
    data = json.loads(__import__("concerto.ir", fromlist=["encode"]).encode(result.program))
    bad_type = json.loads(json.dumps(data))
    bad_type["models"][0]["name"] = 5
    with pytest.raises(IRLoadError, match=r"\$\.models\[0\]\.name"):
        load_object(bad_type)
    missing = json.loads(json.dumps(data))
    missing["connections"] = []
    with pytest.raises(IRLoadError, match="connection `demo`, which is not in `connections`"):
        load_object(missing)
    keyed = json.loads(json.dumps(data))
    keyed["connections"][0]["config"]["headers"] = {"Authorization": "Bearer x"}
    with pytest.raises(IRLoadError, match="header `Authorization` holds a literal credential"):
        load_object(keyed)
    ir_file = tmp_path / "bad.conc-ir"
    ir_file.write_text(json.dumps(missing))
    code, _, err = cli("run", str(ir_file))
    assert code == 1 and "invalid IR" in err and "Traceback" not in err
