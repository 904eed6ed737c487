"""Fault injection on the loopback fake provider (issue 11, point 12).

Every fault x both wire formats x execute / execute_with_schema / stream,
each on a connection reused from a first call: the call must end in Ok or a
clean error value the program handles (never a RunError, an internal error
or a traceback), and the requests the server saw must be exactly the
attempts the client metered (no request sent twice behind the program's
back; a connection reset before the server read anything is the one attempt
the server never sees).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concerto import Runtime, RuntimeConfig, ir
from concerto.compiler import compile_file
from concerto.host import RunError
from tests.conftest import MODEL_KEYS, model_connections, model_project
from tests.fake_provider import (
    Default,
    Drip,
    ErrorStatus,
    FakeProvider,
    Hangup,
    HugeBody,
    KeepAliveOnly,
    Malformed,
    RateLimit,
    Raw,
    ServerError,
    StreamCut,
    canned_body,
    canned_events,
)

KINDS = {"rate_limit", "overloaded", "server", "timeout", "network", "auth", "bad_request", "not_found",
         "invalid_response", "content_filter", "stream_cut", "quota", "response_too_large",
         "unexpected_tool_call", "max_retries_exceeded"}
CONNS = {"openai": "openai", "claude": "anthropic"}
SETTINGS = ("max_response_bytes = 1000000\nstream_idle_timeout = 0.3\n"
            "retry = { max_attempts = 2, initial_delay_ms = 10, max_delay_ms = 20, max_retry_after_ms = 200 }")

CALLS = {
    "execute": 'match M.execute("q") { Ok(r) => emit("ok", r.text), Err(e) => emit("err", e) }',
    "schema": 'match M.execute_with_schema<Out>("q") { Ok(v) => emit("ok", v.answer), Err(e) => emit("err", e) }',
    "stream": '''match M.stream("q") {
        Ok(chunks) => {
            try {
                let mut text = "";
                for c in chunks { text += c.text; }
                emit("ok", text);
            } catch AgentError(e) {
                emit("err", e);
            }
        },
        Err(e) => emit("err", e),
    }''',
}
# The warm-up call leaves a pooled connection, so each fault hits a reused
# one: where a careless pool would send the request a second time.
PROGRAM = ('schema Out { answer: String }\nmodel M { provider: %s, timeout: 1 }\n'
           'fn main() {\n    let warm = M.execute("warm-up");\n    %s\n}\n')


def head(status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}".encode()


def ok_body(flavour: str, stream: bool) -> bytes:
    return b"".join(canned_events(flavour, "fine")) if stream else canned_body(flavour, "fine")  # type: ignore[arg-type]


def sse(data: bytes) -> bytes:
    return head(extra="connection: close\r\n") + b"\r\n" + data


@dataclass(frozen=True)
class Fault:
    name: str
    reply: Callable[[str, bool], Any]  # (flavour, streamed) -> Reply, or None for the default
    resets_on_accept: int = 0  # connections the server resets before reading a request


FAULTS = [
    Fault("cut-stream", lambda f, s: StreamCut(after=2)),
    Fault("truncated-json", lambda f, s: Malformed()),
    Fault("garbage-body", lambda f, s: Malformed(body=b"\x00\xff<html>not json")),
    Fault("deep-json", lambda f, s: Raw(sse(b"data: " + b"[" * 50_000 + b"\n\n")) if s
          else Raw(head(extra="content-length: 50000\r\n\r\n") + b"[" * 50_000)),
    Fault("bad-content-length", lambda f, s: Raw(head(extra="content-length: 12x\r\n\r\n") + ok_body(f, s))),
    Fault("conflicting-content-length", lambda f, s: Raw(head(extra="content-length: 5\r\ncontent-length: 6\r\n\r\n")
                                                         + b"hello!")),
    Fault("short-content-length", lambda f, s: Raw(head(extra="content-length: 10\r\n\r\n") + ok_body(f, s), keep=True)),
    Fault("long-content-length", lambda f, s: Raw(head(extra="content-length: 99999\r\n\r\n") + ok_body(f, s))),
    Fault("no-content-length", lambda f, s: Raw(head(extra="connection: close\r\n\r\n") + ok_body(f, s))),
    Fault("bad-chunk-size", lambda f, s: Raw(head(extra="transfer-encoding: chunked\r\n\r\n") + b"zz\r\nhello\r\n0\r\n\r\n")),
    Fault("chunk-overrun", lambda f, s: Raw(head(extra="transfer-encoding: chunked\r\n\r\n") + b"2\r\nhello\r\n0\r\n\r\n")),
    Fault("chunked-no-end", lambda f, s: Raw(head(extra="transfer-encoding: chunked\r\n\r\n") + b"5\r\nhello\r\n")),
    Fault("huge-chunk-size", lambda f, s: Raw(head(extra="transfer-encoding: chunked\r\n\r\n") + b"fffffffffff\r\nx")),
    Fault("huge-body", lambda f, s: HugeBody(30_000_000, chunked=s)),
    Fault("huge-error-body", lambda f, s: HugeBody(30_000_000, status=503)),
    Fault("slow-drip", lambda f, s: Drip(interval=0.01, piece=64)),
    Fault("keepalive-only", lambda f, s: KeepAliveOnly(events=1, interval=0.05)),
    Fault("eof-after-headers", lambda f, s: Raw(head(extra="content-length: 100\r\n\r\n"))),
    Fault("eof-before-headers", lambda f, s: Raw(b"HTTP/1.1 200 OK\r\ncontent-le")),
    Fault("not-http", lambda f, s: Raw(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")),
    Fault("huge-headers", lambda f, s: Raw(head(extra="x-junk: " + "a" * 70_000 + "\r\n\r\n"))),
    Fault("interim-100", lambda f, s: Raw(b"HTTP/1.1 100 Continue\r\n\r\n" + head(extra="connection: close\r\n")
                                          + (b"" if s else b"content-length: %d\r\n" % len(ok_body(f, s)))
                                          + b"\r\n" + ok_body(f, s))),
    Fault("invalid-utf8", lambda f, s: Raw(sse(ok_body(f, s).replace(b"fine", b"fi\xff\xfene"))) if s
          else Raw(head(extra="connection: close\r\n\r\n") + ok_body(f, s).replace(b"fine", b"fi\xff\xfene"))),
    Fault("html-502", lambda f, s: Raw(head("502 Bad Gateway", "content-type: text/html\r\ncontent-length: 22\r\n\r\n")
                                       + b"<html>bad gateway</html>"[:22])),
    Fault("429-negative-retry-after", lambda f, s: RateLimit(retry_after=None, headers={"retry-after": "-5"})),
    Fault("429-nan-retry-after", lambda f, s: RateLimit(retry_after=None, headers={"retry-after": "NaN"})),
    Fault("429-huge-retry-after", lambda f, s: RateLimit(retry_after=None, headers={"retry-after": "1e308"})),
    Fault("429-date-retry-after", lambda f, s: RateLimit(retry_after=None,
                                                         headers={"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})),
    Fault("429-garbage-reset", lambda f, s: RateLimit(retry_after=None, headers={"x-ratelimit-reset-requests": "1x",
                                                                                  "retry-after-ms": "soon"})),
    Fault("503-retry-after", lambda f, s: ServerError(status=503, headers={"retry-after": "0.05"})),
    Fault("quota", lambda f, s: ErrorStatus(429, error_type="insufficient_quota", code="insufficient_quota")),
    Fault("hangup-after-request", lambda f, s: Hangup()),
    Fault("reset-after-request", lambda f, s: Hangup(reset=True)),
    Fault("reset-before-request", lambda f, s: None, resets_on_accept=1),
]


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory, fake_server: FakeProvider) -> dict[tuple[str, str], bytes]:
    """The IR of each (connection, method) program, compiled once."""
    out = {}
    for conn in CONNS:
        for method, call in CALLS.items():
            folder = tmp_path_factory.mktemp(f"{conn}-{method}")
            main = model_project(folder, PROGRAM % (conn, call), model_connections(fake_server, SETTINGS, timeout=1))
            result = compile_file(main)
            assert result.ok, [d.header() for d in result.diagnostics]
            out[conn, method] = ir.encode(result.program)
    return out


def run(data: bytes) -> tuple[list[tuple[str, Any]], RunError | None, dict[str, Any]]:
    rt = Runtime(RuntimeConfig(environ=dict(MODEL_KEYS), allowed_hosts=["127.0.0.1"], execution_timeout=20))
    rt.load_ir(data)
    emits: list[tuple[str, Any]] = []
    rt.on("*", lambda channel, payload: emits.append((channel, payload)))
    try:
        rt.run()
    except RunError as e:
        return emits, e, rt.metrics()
    return emits, None, rt.metrics()


def check_clean(emits: list[tuple[str, Any]], error: RunError | None) -> tuple[str, Any]:
    assert error is None, f"the run failed: {error}"
    [(channel, payload)] = emits
    assert channel in ("ok", "err")
    if channel == "err":
        assert payload["kind"] in KINDS, payload
        assert isinstance(payload["message"], str) and payload["message"]
        assert "Traceback" not in payload["message"] and "internal error" not in payload["message"].lower()
        assert isinstance(payload["attempts"], int) and payload["attempts"] >= 1
    return channel, payload


@pytest.mark.parametrize("method", list(CALLS))
@pytest.mark.parametrize("conn", list(CONNS))
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_every_fault_ends_in_ok_or_a_clean_error(fake: FakeProvider, programs: dict, fault: Fault, conn: str,
                                                 method: str) -> None:
    reply = fault.reply(CONNS[conn], method == "stream")
    fake.script(Default(), *([reply] if reply is not None else []))
    fake.reset_on_accept = fault.resets_on_accept
    emits, error, metrics = run(programs[conn, method])
    check_clean(emits, error)
    sent = metrics["total"]["requests"]
    # Each metered attempt reached the server once, except those the server reset unread.
    assert fake.request_count == sent - fault.resets_on_accept, (fake.request_count, sent)
    assert 2 <= sent <= 1 + 2 * 3  # the warm-up, then max_attempts x schema attempts


HEAD_PREFIXES = [b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n",
                 b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", b"HTTP/1.1 500 Oops\r\n\r\n"]


@pytest.mark.parametrize("conn", list(CONNS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from(HEAD_PREFIXES), tail=st.binary(max_size=200), stream=st.booleans())
def test_random_bytes_as_a_reply_are_handled(fake_server: FakeProvider, programs: dict, conn: str, prefix: bytes,
                                            tail: bytes, stream: bool) -> None:
    fake_server.reset()
    fake_server.script(Default(), Raw(prefix + tail), Default())
    emits, error, metrics = run(programs[conn, "stream" if stream else "execute"])
    check_clean(emits, error)
    assert fake_server.request_count == metrics["total"]["requests"]
    json.dumps(emits)  # host data, nothing exotic

