"""Reading the environment is a permission (issue 11, point 6).

std::env sees only what the host allows: `--allow-env NAME` (repeatable,
glob patterns), `[permissions] env` in the local Concerto.toml, or
RuntimeConfig.allow_env. The variables that hold credentials (a connection's
api_key_env and headers_env, what an MCP server is given) are never
readable. A variable that is not allowed reads as unset; `require` names the
permission; the first denied read of a name logs one warning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from concerto import Runtime, RuntimeConfig
from concerto.host import RunError
from concerto.vm.environment import EnvironmentGate, EnvPermissionError
from conftest import cli, compile_ok, emitted

READER = """
use std::env;
fn main() {
    emit("get", [env::get("APP_MODE"), env::get("APP_PORT"), env::get("HOME_DIR"), env::get("MISSING_ONE")]);
    emit("has", [env::has("APP_MODE"), env::has("HOME_DIR")]);
    emit("require", [env::require("APP_MODE"), env::require("HOME_DIR"), env::require("APP_UNSET")]);
    emit("all", env::all());
}
"""
ENVIRON = {"APP_MODE": "dev", "APP_PORT": "8080", "HOME_DIR": "/home/x", "OTHER": "o", "app_lower": "l"}


def host_run(source: str | Path, environ: dict[str, str] | None = None, **config: Any) -> tuple[dict, list]:
    rt = Runtime(RuntimeConfig(environ=ENVIRON if environ is None else environ, mock=True, **config))
    if isinstance(source, Path):
        rt.load_source(source)
    else:
        from concerto import ir

        rt.load_ir(ir.encode(compile_ok(source).program))
    out: dict[str, Any] = {}
    logs: list[tuple[str, str]] = []
    rt.on("*", lambda channel, payload: out.__setitem__(channel, payload))
    rt.on_log = lambda level, message: logs.append((level, message))
    rt.run()
    return out, logs


def test_nothing_is_readable_unless_the_host_allows_it() -> None:
    out, logs = host_run(READER)
    assert out["get"] == [None, None, None, None]
    assert out["has"] == [False, False]
    assert out["all"] == {}
    denied = out["require"][0]["err"]["message"]
    assert denied == ("environment variable APP_MODE is not allowed: allow it with --allow-env APP_MODE, "
                      "`env = [...]` under [permissions] in Concerto.toml, or RuntimeConfig.allow_env")
    # One warning per name, however often it is read; none for require (its Err says it).
    assert [message for _, message in logs] == [
        "env::get: " + denied.replace("APP_MODE", name) for name in ("APP_MODE", "APP_PORT", "HOME_DIR", "MISSING_ONE")
    ]
    assert {level for level, _ in logs} == {"warn"}


def test_names_and_glob_patterns_grant_reads() -> None:
    out, logs = host_run(READER, allow_env=["APP_*", "HOME_DI?"])
    assert out["get"] == ["dev", "8080", "/home/x", None]
    assert out["has"] == [True, True]
    assert out["require"][:2] == [{"ok": "dev"}, {"ok": "/home/x"}]
    assert out["require"][2] == {"err": {"message": "environment variable APP_UNSET is not set"}}
    # Case-sensitive: app_lower does not match APP_*; MISSING_ONE was never allowed.
    assert out["all"] == {"APP_MODE": "dev", "APP_PORT": "8080", "HOME_DIR": "/home/x"}
    assert logs == [("warn", "env::get: environment variable MISSING_ONE is not allowed: allow it with "
                              "--allow-env MISSING_ONE, `env = [...]` under [permissions] in Concerto.toml, "
                              "or RuntimeConfig.allow_env")]


def test_deny_patterns_win_over_grants() -> None:
    out, _ = host_run(READER, allow_env=["*"], deny_env=["APP_P*"])
    assert out["get"] == ["dev", None, "/home/x", None]
    assert list(out["all"]) == ["APP_MODE", "HOME_DIR", "OTHER", "app_lower"]  # sorted by name


def test_a_bare_machine_reads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_MODE", "dev")
    src = 'use std::env;\nfn main() { emit("get", env::get("APP_MODE")); emit("all", env::all().len()); }'
    assert emitted(src) == [None, 0]


def test_gate_patterns_are_checked() -> None:
    with pytest.raises(EnvPermissionError, match="'A=B' is not a variable name or pattern"):
        EnvironmentGate.build({}, allow=["A=B"])
    with pytest.raises(EnvPermissionError, match="expected a variable name or pattern, got ''"):
        EnvironmentGate.build({}, allow=[""])
    gate = EnvironmentGate.build({"A1": "x", "B2": "y", "C3": "z"}, allow=["[AB]?", "[!ABC]*"])
    assert gate.visible() == {"A1": "x", "B2": "y"}


# --- credentials are never readable --------------------------------------------

SECRET_PROGRAM = """
use std::env;
model M { provider: llm }
mcp Fake {
    @describe("Echo")
    @param("text", "What")
    fn echo(text: String) -> Result<String, ToolError>;
}
fn main() {
    emit("get", [env::get("LLM_KEY"), env::get("ORG_HEADER"), env::get("TOKEN_FOR_MCP"), env::get("APP_MODE")]);
    emit("all", env::all());
}
"""
SECRETS = {"LLM_KEY": "sk-secret-123456789", "ORG_HEADER": "org-secret-123456", "TOKEN_FOR_MCP": "tok-12345678",
           "APP_MODE": "dev", "PATH": "/usr/bin:/bin"}


def secret_project(tmp_path: Path, permissions: str = "") -> Path:
    (tmp_path / "Concerto.toml").write_text(
        '[project]\nname = "s"\nversion = "0.1.0"\nentry = "main.conc"\n\n'
        '[connections.llm]\nprovider = "openai"\napi_key_env = "LLM_KEY"\n'
        '[connections.llm.headers_env]\n"OpenAI-Organization" = "ORG_HEADER"\n\n'
        '[mcp.Fake]\ntransport = "stdio"\ncommand = "true"\n[mcp.Fake.env]\nTOKEN = "TOKEN_FOR_MCP"\n\n'
        + permissions)
    main = tmp_path / "main.conc"
    main.write_text(SECRET_PROGRAM)
    return main


def test_credentials_are_hidden_even_from_a_wildcard(tmp_path: Path) -> None:
    out, logs = host_run(secret_project(tmp_path), environ=SECRETS, allow_env=["*"])
    assert out["get"] == [None, None, None, "dev"]
    assert out["all"] == {"APP_MODE": "dev", "PATH": "/usr/bin:/bin"}
    assert [m for _, m in logs] == [
        "env::get: environment variable LLM_KEY is not readable: it is the API key of connection `llm`",
        "env::get: environment variable ORG_HEADER is not readable: it is the OpenAI-Organization header of "
        "connection `llm`",
        "env::get: environment variable TOKEN_FOR_MCP is not readable: it is passed to MCP server `Fake` as TOKEN",
    ]


def test_granting_a_credential_by_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RunError) as info:
        host_run(secret_project(tmp_path), environ=SECRETS, allow_env=["APP_MODE", "LLM_KEY"])
    assert info.value.kind == "ConfigError"
    assert info.value.message == ("RuntimeConfig.allow_env: LLM_KEY cannot be allowed: it is the API key of "
                                  "connection `llm`, and program code never reads credentials")


# --- the command line and Concerto.toml ------------------------------------------

def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[int, dict, str]:
    code, out, err = cli("run", *args, "--emit-format", "jsonl", cwd=cwd, env_extra=env or ENVIRON)
    return code, {e["channel"]: e["payload"] for e in map(json.loads, out.splitlines())}, err


def test_allow_env_on_the_command_line(tmp_path: Path) -> None:
    main = tmp_path / "main.conc"
    main.write_text(READER)
    code, out, err = run_cli(str(main), "--allow-env", "APP_MODE", "--allow-env", "HOME_*")
    assert code == 0, err
    assert out["get"] == ["dev", None, "/home/x", None]
    assert "warn env::get: environment variable APP_PORT is not allowed" in err
    code, out, err = run_cli(str(main))
    assert out["all"] == {}
    code, _, err = run_cli(str(main), "--allow-env", "A=B")
    assert code == 2 and "--allow-env: 'A=B' is not a variable name or pattern" in err


def test_the_manifest_adds_grants_and_refuses_credentials(tmp_path: Path) -> None:
    main = secret_project(tmp_path, '[permissions]\nenv = ["APP_*"]\n')
    code, out, err = run_cli(str(main), "--allow-env", "PATH", "--mock", env=SECRETS)
    assert code == 0, err
    assert out["get"] == [None, None, None, "dev"]
    assert out["all"] == {"APP_MODE": "dev", "PATH": "/usr/bin:/bin"}

    secret_project(tmp_path, '[permissions]\nenv = ["APP_*", "LLM_KEY"]\n')
    code, _, err = run_cli(str(main), "--mock", env=SECRETS)
    assert code == 1
    assert "Concerto.toml:19:1: error: permissions.env: item 1: LLM_KEY is the API key of connection `llm`; " \
           "program code never reads credentials" in err
    secret_project(tmp_path)
    code, _, err = run_cli(str(main), "--mock", "--allow-env", "LLM_KEY", env=SECRETS)
    assert code == 1 and "LLM_KEY cannot be allowed: it is the API key of connection `llm`" in err


def test_permissions_table_is_checked(tmp_path: Path) -> None:
    main = tmp_path / "main.conc"
    main.write_text(READER)
    project = '[project]\nname = "p"\nversion = "0.1.0"\nentry = "main.conc"\n\n'
    (tmp_path / "Concerto.toml").write_text(project + '[permissions]\nenv = "APP_*"\nfs = true\n')
    code, _, err = run_cli(str(main))
    assert code == 1
    assert 'Concerto.toml:7:1: error: permissions.env: expected an array of variable names or patterns, got string' \
        in err
    assert "Concerto.toml:8:1: error: permissions.fs: unknown field" in err
    (tmp_path / "Concerto.toml").write_text(project + '[permissions]\nenv = ["APP_*", 3, "A=B"]\n')
    code, _, err = run_cli(str(main))
    assert "permissions.env: item 1: expected a variable name or pattern, got integer" in err
    assert 'permissions.env: item 2: "A=B" is not a variable name or pattern' in err


def test_compiled_ir_uses_the_manifest_where_it_runs_not_one_beside_it(tmp_path: Path) -> None:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "main.conc").write_text(READER)
    code, _, err = cli("compile", str(shipped / "main.conc"))
    assert code == 0, err
    # A Concerto.toml that travelled with the IR cannot grant itself anything.
    (shipped / "Concerto.toml").write_text('[project]\nname = "p"\nversion = "0.1.0"\nentry = "main.conc"\n\n'
                                           '[permissions]\nenv = ["*"]\n')
    here = tmp_path / "here"
    here.mkdir()
    code, out, err = run_cli(str(shipped / "main.conc-ir"), cwd=here)
    assert code == 0, err
    assert out["all"] == {}
    # The local one (walking up from the current directory) does, and so does --manifest.
    (here / "Concerto.toml").write_text('[project]\nname = "p"\nversion = "0.1.0"\nentry = "main.conc"\n\n'
                                        '[permissions]\nenv = ["APP_MODE"]\n')
    code, out, err = run_cli(str(shipped / "main.conc-ir"), cwd=here)
    assert out["all"] == {"APP_MODE": "dev"}
    code, out, err = run_cli(str(shipped / "main.conc-ir"), "--manifest", str(shipped / "Concerto.toml"), cwd=here)
    assert {k: out["all"][k] for k in ENVIRON} == ENVIRON  # "*": everything, in name order
    assert list(out["all"]) == sorted(out["all"]) and len(out["all"]) > len(ENVIRON)
