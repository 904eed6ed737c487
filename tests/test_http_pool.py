"""The HTTP path to providers (issue 11, points 9, 7 and 10): no request is
sent twice behind the program's back, every attempt is metered, malformed
framing and oversized bodies are AgentErrors, error bodies are read only up
to a small cap, `insufficient_quota` is a non-retryable `quota` error, a
Retry-After beyond the connection's cap ends the call at once, and a tool
call nobody offered is an error, not Ok(""). Both wire formats."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from concerto.compiler.manifest import load_manifest
from tests.conftest import model_connections, model_project, run_project
from tests.fake_provider import (
    Default,
    ErrorStatus,
    FakeProvider,
    Hangup,
    HugeBody,
    RateLimit,
    Raw,
    ToolCall,
    canned_body,
)

CONNS = ["openai", "claude"]
FLAVOUR = {"openai": "openai", "claude": "anthropic"}

CALL = '''
model M { provider: %s }
fn main() {
    for i in 0..%d {
        match M.execute("hello") {
            Ok(r) => emit("ok", r.text),
            Err(e) => emit("err", {"kind": e.kind, "status": "${e.status}", "attempts": e.attempts,
                                   "message": e.message}),
        }
        std::time::sleep(%d);
    }
}
'''


def retry(attempts: int, extra: str = "") -> str:
    return f"retry = {{ max_attempts = {attempts}, initial_delay_ms = 10, max_delay_ms = 50{extra} }}"


def run_calls(tmp_path: Path, fake: FakeProvider, conn: str, calls: int = 1, extra: str = "",
              pause_ms: int = 0) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    main = model_project(tmp_path, CALL % (conn, calls, pause_ms), model_connections(fake, extra))
    emits, error, metrics = run_project(main)
    assert error is None, error
    return emits, metrics["connections"].get(conn, {})


def sent_sizes(fake: FakeProvider, n: int) -> list[int]:
    """The body sizes of the first n HugeBody replies, once the server has
    noticed the client hang up (it records them from its own thread)."""
    deadline = time.monotonic() + 15
    while len(fake.bytes_sent) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return fake.bytes_sent[:n]


def raw_ok(conn: str, text: str, head: str = "") -> bytes:
    body = canned_body(FLAVOUR[conn], text)  # type: ignore[arg-type]
    return (f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{head}\r\n").encode() + body


# ---------------------------------------------------------------- 9: no duplicate billed requests
def test_connections_are_reused_when_descriptors_pass_1024(tmp_path: Path, fake: FakeProvider) -> None:
    # select() refuses descriptors from 1024 on; a host process with many open
    # files must still reuse its pooled connections.
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("the descriptor limit is below 1200 here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        emits, stats = run_calls(tmp_path, fake, "openai", calls=3)
    finally:
        for fd in spare:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert [c for c, _ in emits] == ["ok"] * 3
    assert fake.request_count == 3 and fake.connections == 1


@pytest.mark.parametrize("conn", CONNS)
def test_a_request_the_server_read_is_not_sent_again_on_a_fresh_connection(tmp_path: Path, fake: FakeProvider,
                                                                           conn: str) -> None:
    fake.script(Default(), Hangup())
    emits, stats = run_calls(tmp_path, fake, conn, calls=2)
    assert emits[0][0] == "ok"
    assert emits[1] == ("err", {"kind": "network", "status": "nil", "attempts": 1, "message": emits[1][1]["message"]})
    assert fake.request_count == 2 and fake.connections == 1  # the second went out on the reused connection
    assert stats["requests"] == 2 and stats["failures"] == 1


@pytest.mark.parametrize("conn", CONNS)
def test_only_the_programs_retry_policy_sends_it_again_and_it_is_counted(tmp_path: Path, fake: FakeProvider,
                                                                        conn: str) -> None:
    fake.script(Default(), Hangup())
    emits, stats = run_calls(tmp_path, fake, conn, calls=2, extra=retry(2))
    assert [c for c, _ in emits] == ["ok", "ok"]
    assert fake.request_count == 3
    assert stats["requests"] == 3 and stats["retries"] == 1 and stats["failures"] == 0


@pytest.mark.parametrize("conn", CONNS)
def test_an_idle_connection_the_server_closed_is_replaced_before_anything_is_sent(
        tmp_path: Path, fake: FakeProvider, conn: str) -> None:
    # The reply says keep-alive, then the server closes the connection while it sits in the pool.
    fake.script(Raw(raw_ok(conn, "first", "connection: keep-alive\r\n")))
    emits, stats = run_calls(tmp_path, fake, conn, calls=2, pause_ms=100)
    assert emits == [("ok", "first"), ("ok", "echo: hello")]
    assert fake.request_count == 2 and fake.connections == 2
    assert stats["requests"] == 2 and stats["failures"] == 0


@pytest.mark.parametrize("conn", CONNS)
@pytest.mark.parametrize("length", ["abc", "-5", "10, 20", "99999999999999999999"])
def test_a_bad_content_length_is_an_invalid_response(tmp_path: Path, fake: FakeProvider, conn: str,
                                                     length: str) -> None:
    body = canned_body(FLAVOUR[conn], "x")  # type: ignore[arg-type]
    fake.script(Raw(f"HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n\r\n".encode() + body))
    emits, stats = run_calls(tmp_path, fake, conn, extra=retry(3))
    [(channel, err)] = emits
    assert channel == "err" and err["kind"] == "invalid_response" and "Content-Length" in err["message"]
    assert fake.request_count == 1 and stats["requests"] == 1  # not retried


# ---------------------------------------------------------------- 7: bodies are capped
@pytest.mark.parametrize("conn", CONNS)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_reply_larger_than_max_response_bytes_is_an_agent_error(tmp_path: Path, fake: FakeProvider, conn: str,
                                                                  chunked: bool) -> None:
    fake.script(HugeBody(20_000_000, chunked=chunked))
    emits, _ = run_calls(tmp_path, fake, conn, extra="max_response_bytes = 100000\n" + retry(3))
    [(channel, err)] = emits
    assert channel == "err" and err["kind"] == "response_too_large"
    assert "larger than 100000 bytes" in err["message"]
    assert fake.request_count == 1
    # A declared length is refused before reading; a chunked body is dropped at the cap.
    [sent] = sent_sizes(fake, 1)
    assert sent < 15_000_000


@pytest.mark.parametrize("conn", CONNS)
def test_the_default_cap_lets_an_ordinary_reply_through(tmp_path: Path, fake: FakeProvider, conn: str) -> None:
    long = "y" * 1_000_000
    fake.script(Raw(raw_ok(conn, long)))
    emits, _ = run_calls(tmp_path, fake, conn)
    assert emits == [("ok", long)]


@pytest.mark.parametrize("conn", CONNS)
def test_an_error_body_is_read_only_up_to_its_cap_on_each_attempt(tmp_path: Path, fake: FakeProvider,
                                                                  conn: str) -> None:
    fake.script(*[HugeBody(50_000_000, status=500)] * 3)
    started = time.monotonic()
    emits, stats = run_calls(tmp_path, fake, conn, extra=retry(3))
    [(channel, err)] = emits
    assert channel == "err" and err["kind"] == "server" and err["status"] == "500" and err["attempts"] == 3
    assert fake.request_count == 3 and stats["requests"] == 3
    # Each attempt stopped reading after 64 KiB; what the server got out is its socket buffers' worth.
    sent = sent_sizes(fake, 3)
    assert len(sent) == 3 and all(n < 20_000_000 for n in sent), sent
    assert time.monotonic() - started < 20


# ---------------------------------------------------------------- 10: quota, Retry-After cap, tool calls
def test_insufficient_quota_is_a_quota_error_and_not_retried(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script(ErrorStatus(429, message="You exceeded your current quota", error_type="insufficient_quota",
                            code="insufficient_quota"))
    emits, stats = run_calls(tmp_path, fake, "openai", extra=retry(3))
    [(channel, err)] = emits
    assert channel == "err" and err["kind"] == "quota" and err["status"] == "429"
    assert fake.request_count == 1 and stats["retries"] == 0


def test_anthropic_billing_error_is_a_quota_error_and_not_retried(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script(ErrorStatus(402))
    emits, _ = run_calls(tmp_path, fake, "claude", extra=retry(3))
    assert emits[0][1]["kind"] == "quota" and fake.request_count == 1


@pytest.mark.parametrize("conn", CONNS)
def test_a_retry_after_beyond_the_cap_ends_the_call_at_once(tmp_path: Path, fake: FakeProvider, conn: str) -> None:
    fake.script(RateLimit(retry_after=120))
    started = time.monotonic()
    emits, stats = run_calls(tmp_path, fake, conn, extra=retry(3))
    [(channel, err)] = emits
    assert channel == "err" and err["kind"] == "rate_limit" and err["attempts"] == 1
    assert "asked to wait 120 s" in err["message"] and "60 s" in err["message"]
    assert fake.request_count == 1 and stats["failures"] == 1
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("conn", CONNS)
def test_the_retry_after_cap_is_configurable(tmp_path: Path, fake: FakeProvider, conn: str) -> None:
    fake.script(RateLimit(retry_after=0.1), Default())
    emits, stats = run_calls(tmp_path, fake, conn, extra=retry(3, ", max_retry_after_ms = 500"))
    assert emits == [("ok", "echo: hello")] and stats["retries"] == 1
    fake.reset()
    fake.script(RateLimit(retry_after=1), Default())
    emits, _ = run_calls(tmp_path, fake, conn, extra=retry(3, ", max_retry_after_ms = 500"))
    assert emits[0][1]["kind"] == "rate_limit" and "0.5 s" in emits[0][1]["message"]
    assert fake.request_count == 1


def test_manifest_bounds_the_new_connection_fields(tmp_path: Path) -> None:
    (tmp_path / "Concerto.toml").write_text(
        '[project]\nname = "t"\nversion = "0"\nentry = "m.conc"\n\n[connections.l]\nprovider = "ollama"\n'
        'max_response_bytes = 0\nstream_idle_timeout = -1\n[connections.l.retry]\nmax_retry_after_ms = 600000\n')
    manifest, diags = load_manifest(tmp_path / "Concerto.toml")
    assert manifest is None
    assert [(d.line, d.message) for d in diags] == [
        (8, "connections.l.max_response_bytes: expected an integer >= 1, got 0"),
        (9, "connections.l.stream_idle_timeout: expected a number > 0, got -1"),
        (11, "connections.l.retry.max_retry_after_ms: expected an integer <= 300000 (5 minutes), got 600000"),
    ]


UNOFFERED = '''
schema Out { a: String }
model M { provider: %s }
fn main() {
    match M.execute("hi") { Ok(r) => emit("ok", r.text), Err(e) => emit("err", (e.kind, e.message)) }
    match M.execute_with_schema<Out>("hi") { Ok(r) => emit("ok", r.a), Err(e) => emit("err", (e.kind, e.message)) }
}
'''


@pytest.mark.parametrize("conn", CONNS)
def test_a_tool_call_when_no_tools_were_offered_is_an_error_not_ok(tmp_path: Path, fake: FakeProvider,
                                                                   conn: str) -> None:
    fake.script(ToolCall("lookup", {"q": "x"}), ToolCall("lookup", {"q": "y"}))
    main = model_project(tmp_path, UNOFFERED % conn, model_connections(fake))
    emits, error, metrics = run_project(main)
    assert error is None, error
    assert [e[0] for e in emits] == ["err", "err"]
    for _, (kind, message) in emits:
        assert kind == "unexpected_tool_call"
        assert "`lookup`" in message and "no tools were offered" in message
    assert metrics["models"]["M"]["failures"] == 2
