"""Streamed replies are bounded, and their errors keep the shape of execute's
(issue 11, point 4): a whole-reply deadline (the connection's timeout), an
idle-gap limit that SSE keep-alive comments do not reset, a total size cap,
and AgentError values with kind/status/model/provider/attempts both when the
stream fails before its first chunk (an Err) and during it (a thrown
AgentError the program catches). Both wire formats, from Concerto programs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import model_connections, model_project, run_project
from tests.fake_provider import ErrorStatus, FakeProvider, KeepAliveOnly, ServerError, StreamCut, Text

CONNS = ["openai", "claude"]
# Events of the fake's reply to "alpha beta gamma" before the first and second text delta.
TEXT_AFTER = {"openai": 3, "claude": 5}

STREAM = '''
model Writer { provider: %s }

fn fields(e: AgentError) -> Map<String, String> {
    return {"kind": e.kind, "status": "${e.status}", "model": e.model, "provider": e.provider,
            "attempts": "${e.attempts}", "message": e.message};
}

fn main() {
    match Writer.stream("alpha beta gamma") {
        Ok(chunks) => {
            try {
                let mut n = 0;
                for chunk in chunks {
                    n += 1;
                    emit("chunk", chunk.text);
                }
                emit("done", n);
            } catch AgentError(e) {
                let what = match e.kind {
                    "timeout" => "deadline",
                    "stream_cut" => "cut",
                    "response_too_large" => "too large",
                    _ => "other",
                };
                emit("thrown", what);
                emit("fields", fields(e));
            }
        },
        Err(e) => {
            emit("err", e.kind);
            emit("fields", fields(e));
        },
    }
}
'''

EXECUTE = '''
model Writer { provider: %s }
fn main() {
    match Writer.execute("alpha beta gamma") {
        Ok(r) => emit("ok", r.text),
        Err(e) => emit("fields", {"kind": e.kind, "status": "${e.status}", "model": e.model,
                                  "provider": e.provider, "attempts": "${e.attempts}", "message": e.message}),
    }
}
'''


def run_stream(tmp_path: Path, fake: FakeProvider, conn: str, extra: str = "", timeout: float = 10,
               source: str = STREAM) -> tuple[dict[str, list[Any]], float]:
    main = model_project(tmp_path, source % conn, model_connections(fake, extra, timeout))
    started = time.monotonic()
    emits, error, _ = run_project(main)
    elapsed = time.monotonic() - started
    assert error is None, error
    by: dict[str, list[Any]] = {}
    for channel, payload in emits:
        by.setdefault(channel, []).append(payload)
    return by, elapsed


@pytest.mark.parametrize("conn", CONNS)
def test_keepalive_comments_alone_end_at_the_whole_reply_deadline(tmp_path: Path, fake: FakeProvider,
                                                                  conn: str) -> None:
    fake.script(KeepAliveOnly(events=0, interval=0.05))
    by, elapsed = run_stream(tmp_path, fake, conn, timeout=1)
    # No text before the failure: an Err, like execute.
    assert by["err"] == ["timeout"] and "chunk" not in by
    [fields] = by["fields"]
    assert "Writer" in fields["message"] and "1 s" in fields["message"]
    assert fake.request_count == 1
    assert elapsed < 8  # 1 s deadline; the server would go on for 30 s


@pytest.mark.parametrize("conn", CONNS)
def test_the_idle_gap_ends_a_stream_that_only_sends_comments_after_text(tmp_path: Path, fake: FakeProvider,
                                                                       conn: str) -> None:
    fake.script(KeepAliveOnly(events=TEXT_AFTER[conn] + 1, interval=0.05))
    by, elapsed = run_stream(tmp_path, fake, conn, extra="stream_idle_timeout = 0.4", timeout=20)
    assert len(by["chunk"]) >= 1 and "done" not in by
    assert by["thrown"] == ["deadline"]
    [fields] = by["fields"]
    assert fields["kind"] == "timeout" and "no event for 0.4 s" in fields["message"]
    assert elapsed < 10  # the idle gap, not the 20 s timeout nor the server's 30 s


@pytest.mark.parametrize("conn", CONNS)
def test_steady_events_within_the_idle_gap_finish_normally(tmp_path: Path, fake: FakeProvider, conn: str) -> None:
    fake.script(Text("one two three four five six", chunk_delay=0.1))
    by, _ = run_stream(tmp_path, fake, conn, extra="stream_idle_timeout = 1.5")
    assert "".join(by["chunk"]) == "one two three four five six"
    assert by["done"] == [len(by["chunk"])]


@pytest.mark.parametrize("conn", CONNS)
def test_a_steady_stream_still_ends_at_the_whole_reply_deadline(tmp_path: Path, fake: FakeProvider,
                                                               conn: str) -> None:
    fake.script(Text(" ".join(f"w{i}" for i in range(40)), chunk_delay=0.1))  # about 4 s of events
    by, elapsed = run_stream(tmp_path, fake, conn, timeout=1)
    assert 1 <= len(by["chunk"]) < 40
    assert by["thrown"] == ["deadline"]
    assert "did not finish within 1 s" in by["fields"][0]["message"]
    assert elapsed < 8


@pytest.mark.parametrize("conn", CONNS)
def test_a_cut_stream_throws_an_agent_error_with_every_field(tmp_path: Path, fake: FakeProvider, conn: str) -> None:
    fake.script(StreamCut(after=TEXT_AFTER[conn] + 1))
    by, _ = run_stream(tmp_path, fake, conn)
    assert by["chunk"] and by["thrown"] == ["cut"]
    [fields] = by["fields"]
    model = "gpt-4o-mini" if conn == "openai" else "claude-sonnet-4-20250514"
    assert fields == {"kind": "stream_cut", "status": "nil", "model": model, "provider": conn,
                      "attempts": "1", "message": fields["message"]}
    assert "Writer" in fields["message"]


@pytest.mark.parametrize("conn", CONNS)
@pytest.mark.parametrize("fault", [ErrorStatus(401), ServerError(), ErrorStatus(400, message="bad temperature")],
                         ids=["401", "500", "400"])
def test_a_failure_before_the_first_chunk_is_the_err_execute_returns(tmp_path: Path, fake: FakeProvider,
                                                                     conn: str, fault: Any) -> None:
    fake.script(fault)
    streamed, _ = run_stream(tmp_path, fake, conn)
    fake.reset()
    fake.script(fault)
    executed, _ = run_stream(tmp_path, fake, conn, source=EXECUTE)
    assert "chunk" not in streamed and streamed["err"] == [executed["fields"][0]["kind"]]
    stream_fields, execute_fields = streamed["fields"][0], executed["fields"][0]
    assert stream_fields["status"] == str(fault.status)
    assert {k: v for k, v in stream_fields.items() if k != "message"} == \
        {k: v for k, v in execute_fields.items() if k != "message"}


@pytest.mark.parametrize("conn", CONNS)
def test_a_streamed_reply_is_capped_in_total(tmp_path: Path, fake: FakeProvider, conn: str) -> None:
    fake.script(Text("word " * 3000))
    by, _ = run_stream(tmp_path, fake, conn, extra="max_response_bytes = 4000")
    assert by["thrown"] == ["too large"]
    assert "larger than 4000 bytes" in by["fields"][0]["message"]
    assert len("".join(by["chunk"])) < 4000
