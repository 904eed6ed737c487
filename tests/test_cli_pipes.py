"""`concerto run` when the reader of its output goes away early."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("fmt, first_line", [("jsonl", b'{"channel":"x","payload":0}\n'), ("pretty", b"x 0\n")])
def test_run_into_a_closed_pipe_stops_quietly(tmp_path, fmt, first_line):
    src = tmp_path / "many.conc"
    src.write_text('fn main() { for i in 0..1000000 { emit("x", i); } }\n')
    proc = subprocess.Popen([sys.executable, "-m", "concerto", "run", "--emit-format", fmt, str(src)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    assert first == first_line
    assert code == 141  # 128 + SIGPIPE, what shell tools report
    assert "Traceback" not in err and err == ""
