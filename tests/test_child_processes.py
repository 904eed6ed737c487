"""Child processes end with the run (issue 11, point 8).

An MCP server runs in its own process group; whatever it starts (here a
grandchild, as `npx` starts `node`) lives in that group, and the whole group
is ended when the run ends: normally, on execution_timeout, on cancel(), and
when `concerto run` gets SIGINT or SIGTERM. tests/fake_mcp_server.py
--child-pid-file starts the grandchild and reports both pids.

Timing claims are loose on purpose (shared CI machine): a process must be
gone within GONE_WITHIN seconds of the run's end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from concerto import Runtime, RuntimeConfig
from concerto.host import RunError

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")

SERVER = Path(__file__).parent / "fake_mcp_server.py"
GONE_WITHIN = 15.0

SOURCE = """
use std::time;

mcp Fake {
    @describe("Echo the text back")
    @param("text", "What to echo")
    fn echo(text: String) -> Result<String, ToolError>;
}
model M { provider: llm, tools: [Fake] }

fn main() {
    let reply = M.execute("start the server");
    emit("started", reply.is_ok());
    AFTER
}
"""


def project(tmp_path: Path, after: str = "", stubborn: bool = False) -> tuple[Path, Path]:
    pid_file = tmp_path / "pids.json"
    command = f"{sys.executable} {SERVER} --child-pid-file {pid_file}" + (" --stubborn-child" if stubborn else "")
    (tmp_path / "Concerto.toml").write_text(
        '[project]\nname = "kids"\nversion = "0.1.0"\nentry = "main.conc"\n\n'
        '[connections.llm]\nprovider = "mock"\n\n'
        f'[mcp.Fake]\ntransport = "stdio"\ncommand = {json.dumps(command)}\n')
    main = tmp_path / "main.conc"
    main.write_text(SOURCE.replace("AFTER", after))
    return main, pid_file


def alive(pid: int) -> bool:
    """Running, as opposed to gone or exited-but-unreaped (a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat[stat.rfind(b")") + 2:].split()[0] != b"Z"


def pids(pid_file: Path) -> dict[str, int]:
    deadline = time.monotonic() + GONE_WITHIN
    while not pid_file.exists():
        assert time.monotonic() < deadline, "the MCP server never reported its grandchild"
        time.sleep(0.05)
    return json.loads(pid_file.read_text())


def assert_gone(found: dict[str, int]) -> None:
    deadline = time.monotonic() + GONE_WITHIN
    while any(alive(pid) for pid in found.values()):
        if time.monotonic() > deadline:
            survivors = {name: pid for name, pid in found.items() if alive(pid)}
            for pid in survivors.values():  # do not leak them into the rest of the suite
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"still running after the run ended: {survivors}")
        time.sleep(0.05)


def runtime(main: Path, **config) -> Runtime:
    rt = Runtime(RuntimeConfig(environ={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                               tool_permissions={"Fake": True}, **config))
    rt.load_source(main)
    rt.on_log = lambda level, message: None
    return rt


def watch_start(rt: Runtime, pid_file: Path, seen: dict[str, object]) -> None:
    """On "started", record the pids and that both processes were running then."""
    def started(payload: object) -> None:
        seen["started"] = payload
        seen["pids"] = found = pids(pid_file)
        seen["alive"] = {name: alive(pid) for name, pid in found.items()}

    rt.on("started", started)


def check_ran_then_stopped(seen: dict[str, object]) -> None:
    assert seen["started"] is True
    assert seen["alive"] == {"server": True, "child": True}
    assert_gone(seen["pids"])  # type: ignore[arg-type]


def test_the_server_and_its_grandchild_end_with_a_normal_run(tmp_path: Path) -> None:
    main, pid_file = project(tmp_path)
    rt = runtime(main)
    seen: dict[str, object] = {}
    watch_start(rt, pid_file, seen)
    rt.run()
    check_ran_then_stopped(seen)


def test_a_grandchild_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    main, pid_file = project(tmp_path, stubborn=True)
    rt = runtime(main)
    seen: dict[str, object] = {}
    watch_start(rt, pid_file, seen)
    rt.run()
    check_ran_then_stopped(seen)


def test_the_group_ends_when_the_run_times_out(tmp_path: Path) -> None:
    main, pid_file = project(tmp_path, after="time::sleep(60000);\n    emit(\"never\", 1);")
    rt = runtime(main, execution_timeout=2.0)
    seen: dict[str, object] = {}
    watch_start(rt, pid_file, seen)
    with pytest.raises(RunError) as info:
        rt.run()
    assert info.value.kind == "TimeoutError"
    check_ran_then_stopped(seen)


def test_the_group_ends_when_the_host_cancels(tmp_path: Path) -> None:
    main, pid_file = project(tmp_path, after="time::sleep(60000);\n    emit(\"never\", 1);")
    rt = runtime(main)
    seen: dict[str, object] = {}
    watch_start(rt, pid_file, seen)
    rt.on("started", lambda payload: rt.cancel())  # on the loop's thread, as cancel() requires
    with pytest.raises(RunError) as info:
        rt.run()
    assert info.value.kind == "CancelledError"
    check_ran_then_stopped(seen)


@pytest.mark.parametrize(("signum", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                       (signal.SIGTERM, 143, "terminated")])
def test_the_group_ends_when_concerto_run_gets_a_signal(tmp_path: Path, signum: int, code: int, word: str) -> None:
    main, pid_file = project(tmp_path, after="time::sleep(60000);\n    emit(\"never\", 1);")
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "concerto", "run", str(main), "--allow-tool", "Fake",
                             "--emit-format", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first == {"channel": "started", "payload": True}
        found = pids(pid_file)
        assert all(alive(pid) for pid in found.values())
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert word in err and "Traceback" not in err
    assert "never" not in out
    assert_gone(found)


def test_the_client_reports_the_installed_package_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    import anyio

    from concerto.vm.mcp import McpClient, client_version

    log = tmp_path / "log.jsonl"

    async def handshake() -> None:
        async with McpClient("Fake", [sys.executable, str(SERVER), "--log", str(log)]):
            pass

    anyio.run(handshake)
    first = json.loads(log.read_text().splitlines()[0])
    assert first["method"] == "initialize"
    assert first["params"]["clientInfo"] == {"name": "concerto", "version": version("concerto-lang")}
    assert client_version() == version("concerto-lang") != "0"
