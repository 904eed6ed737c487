"""Secrets (issue 11, point 5).

* Concerto.toml refuses literal credentials in `[connections.X.headers]`
  (whatever the header's name) and in `base_url`, pointing to the `_env`
  forms; `[connections.X.headers_env]` names the variable of a secret header.
* The VM loader refuses IR whose connections carry literal credentials.
* A key goes only to its provider's default host, a host the local
  Concerto.toml names, a base_url the host application passed, or one allowed
  with --allow-host / RuntimeConfig.allowed_hosts: otherwise the run stops
  before any request, naming the host.
* The exact secret values a run knows are redacted from emits, AgentError
  messages, RunErrors, logs, stderr and metrics.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from concerto import Runtime, RuntimeConfig, ir
from concerto.compiler.manifest import load_manifest
from concerto.host import RunError
from concerto.vm.loader import IRLoadError, load_bytes
from concerto.ir.credentials import credential_header, ir_credential_problems, url_credentials
from concerto.vm.secrets import Redactor
from concerto.compiler import compile_source
from tests.conftest import MODEL_KEYS, cli, model_connections, model_project, run_project
from tests.fake_provider import ErrorStatus, FakeProvider, Text

PROJECT = '[project]\nname = "t"\nversion = "0.1.0"\nentry = "src/main.conc"\n\n'
AZURE_KEY = "0123456789abcdef0123456789abcdef"  # no sk- prefix: the old pattern-based redaction missed it


def manifest_errors(tmp_path: Path, tables: str) -> list[tuple[int, str, str | None]]:
    path = tmp_path / "Concerto.toml"
    path.write_text(PROJECT + tables)
    manifest, diags = load_manifest(path)
    assert manifest is None and diags
    return [(d.line, d.message, d.hint) for d in diags]


# ---------------------------------------------------------------- literal credentials in Concerto.toml
@pytest.mark.parametrize("header, value", [
    ("Authorization", "Bearer abc"),
    ("api-key", AZURE_KEY),  # Azure OpenAI
    ("Ocp-Apim-Subscription-Key", "x1"),  # credential by its name, however short
    ("X-Custom", "sk-proj-abcdefgh"),  # by its prefix, whatever the name
    ("X-Trace", "Basic dXNlcjpwYXNz"),
    ("X-Whatever", "AbC9dEf8GhI7jKl6MnO5"),  # a long random-looking run
    ("Cookie", "session=1"),
])
def test_a_literal_credential_header_is_refused_with_its_path_and_line(tmp_path: Path, header: str,
                                                                       value: str) -> None:
    errors = manifest_errors(tmp_path, '[connections.azure]\nprovider = "custom"\n'
                                       'base_url = "https://example.openai.azure.com/v1"\n'
                                       f'[connections.azure.headers]\n"{header}" = "{value}"\n')
    [(line, message, hint)] = errors
    assert line == 10
    assert message.startswith(f"connections.azure.headers.{header}: a literal credential") \
        or message.startswith(f'connections.azure.headers."{header}": a literal credential')
    assert hint == f'put the value in an environment variable and name it instead: ' \
                   f'[connections.azure.headers_env] "{header}" = "MY_VARIABLE"'
    assert value not in message + (hint or "")


def test_ordinary_headers_and_headers_env_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "Concerto.toml"
    path.write_text(PROJECT + '[connections.a]\nprovider = "anthropic"\napi_key_env = "K"\n'
                    'base_url = "https://gateway.example.com/v1?api-version=2024-02-01"\n'
                    '[connections.a.headers]\n"anthropic-beta" = "prompt-caching-2024-07-31"\n'
                    '"X-Team" = "research"\n"User-Agent" = "concerto/0.1 (linux; x86_64)"\n'
                    '"X-Request-Source" = "123e4567-e89b-12d3-a456-426614174000"\n'
                    '[connections.a.headers_env]\n"api-key" = "AZURE_API_KEY"\n')
    manifest, diags = load_manifest(path)
    assert diags == [] and manifest is not None
    config = manifest.connections["a"]
    assert config.headers_env == {"api-key": "AZURE_API_KEY"}
    assert config.headers["anthropic-beta"] == "prompt-caching-2024-07-31"


@pytest.mark.parametrize("url, what", [
    ("https://user:hunter2@example.com/v1", "user info (user:password@)"),
    ("https://TOKEN123@example.com/v1", "user info (user:password@)"),
    ("https://example.com/v1?key=abc", "query parameter `key`"),
    ("https://example.com/v1?x=1&access_token=abc", "query parameter `access_token`"),
    ("https://example.com/v1?sig=abc", "query parameter `sig`"),
    ("https://example.com/v1?q=" + AZURE_KEY, "query parameter `q`"),
])
def test_a_credential_in_base_url_is_refused(tmp_path: Path, url: str, what: str) -> None:
    [(line, message, hint)] = manifest_errors(tmp_path, f'[connections.c]\nprovider = "custom"\nbase_url = "{url}"\n')
    assert line == 8
    assert message == f"connections.c.base_url: the URL carries a credential ({what}); keys come from the environment"
    assert hint is not None and "api_key_env" in hint and "[connections.c.headers_env]" in hint
    assert "hunter2" not in message and "abc" not in message


def test_headers_env_names_variables_and_does_not_repeat_a_literal_header(tmp_path: Path) -> None:
    errors = manifest_errors(tmp_path, '[connections.c]\nprovider = "custom"\nbase_url = "https://e.com"\n'
                                       '[connections.c.headers]\n"X-Team" = "a"\n'
                                       '[connections.c.headers_env]\n"X-Team" = "TEAM"\n"api-key" = "sk-pasted-key"\n')
    assert [(line, message) for line, message, _ in errors] == [
        (12, 'connections.c.headers_env.X-Team: header "X-Team" is also set in [connections.c.headers]'),
        (13, 'connections.c.headers_env.api-key: expected the name of an environment variable, such as '
             '"AZURE_API_KEY"'),
    ]


def test_check_renders_the_diagnostic_at_file_line_col(tmp_path: Path) -> None:
    main = model_project(tmp_path, "fn main() {}\n",
                         '[connections.c]\nprovider = "custom"\nbase_url = "https://e.com"\n'
                         '[connections.c.headers]\nAuthorization = "Bearer sk-live-0123456789"\n')
    code, _, err = cli("check", str(main))
    assert code == 1
    assert f"{tmp_path / 'Concerto.toml'}:10:1: error: connections.c.headers.Authorization: a literal credential" in err
    assert "sk-live-0123456789" not in err


HEADER_NAMES = st.from_regex(r"X-[A-Z][a-z]{2,8}(-[A-Z][a-z]{2,8})?", fullmatch=True).filter(
    lambda n: not any(w in n.lower() for w in ("auth", "key", "token", "secret", "pass", "pwd", "cookie",
                                                   "signature", "credential", "session")))
WORDY = st.lists(st.one_of(st.from_regex(r"[a-z]{1,12}", fullmatch=True), st.from_regex(r"[0-9]{1,8}", fullmatch=True),
                           st.from_regex(r"20[0-9]{2}-[01][0-9]-[0-3][0-9]", fullmatch=True)),
                 min_size=1, max_size=5).map("-".join)
RANDOM_KEY = st.text(alphabet="abcdefABCDEF0123456789", min_size=20, max_size=64).filter(
    lambda s: any(c.isdigit() for c in s) and any(c.isalpha() for c in s))


@settings(max_examples=150, deadline=None)
@given(HEADER_NAMES, WORDY, RANDOM_KEY, st.sampled_from(["", "sk-", "Bearer ", "Basic ", "key_"]))
def test_the_literal_credential_rule(name: str, wordy: str, key: str, prefix: str) -> None:
    # Words, numbers and dates under an ordinary name are configuration...
    assert not credential_header(name, wordy)
    # ...a long random-looking token is a credential, whatever the name and prefix.
    assert credential_header(name, prefix + key)
    assert credential_header("Authorization", wordy)
    assert url_credentials(f"https://h.example/v1?api-version={wordy}") == []
    assert url_credentials(f"https://h.example/v1?v={key}") == ["query parameter `v`"]


# ---------------------------------------------------------------- IR from elsewhere
def ir_with(config: ir.ConnectionConfig) -> bytes:
    result = compile_source('model M { provider: demo }\nfn main() {}\n', "main.conc", mock=True)
    program = result.program
    assert program is not None
    program.connections = [ir.ConnectionDef(name="evil", config=config)]
    program.models[0].connection = "evil"
    return ir.encode(program)


LITERAL_IR = [
    (ir.ConnectionConfig(provider="openai", base_url="https://api.example.com/v1",
                         headers={"Authorization": "Bearer sk-stolen-0123456789"}),
     "header `Authorization` holds a literal credential"),
    (ir.ConnectionConfig(provider="custom", base_url="https://u:p@api.example.com/v1"),
     "base_url carries a credential in its user info (user:password@)"),
    (ir.ConnectionConfig(provider="custom", base_url="https://api.example.com/v1?api_key=abc"),
     "base_url carries a credential in its query parameter `api_key`"),
]


@pytest.mark.parametrize("config, message", LITERAL_IR)
def test_ir_credential_problems_names_the_connection_and_part(config: ir.ConnectionConfig, message: str) -> None:
    program = ir.decode(ir_with(config))
    [(text, where)] = ir_credential_problems(program)
    assert where == "connection `evil`" and text.startswith(message)
    assert "sk-stolen" not in text and "u:p" not in text


@pytest.mark.parametrize("config, message", LITERAL_IR)
def test_the_loader_refuses_ir_with_a_literal_credential(config: ir.ConnectionConfig, message: str) -> None:
    with pytest.raises(IRLoadError) as info:
        load_bytes(ir_with(config))
    assert message in str(info.value) and "evil" in str(info.value)
    assert "sk-stolen" not in str(info.value)


def test_ir_naming_variables_loads() -> None:
    program = load_bytes(ir_with(ir.ConnectionConfig(provider="custom", base_url="https://api.example.com/v1",
                                                     headers={"X-Team": "a"}, headers_env={"api-key": "K"})))
    assert program.ir.connections[0].config.headers_env == {"api-key": "K"}


# ---------------------------------------------------------------- where a key may go
SAY = 'model M { provider: %s }\nfn main() { match M.execute("hi") { Ok(r) => emit("ok", r.text), Err(e) => emit("err", e.message) } }\n'


def compiled_ir(tmp_path: Path, fake: FakeProvider, conn: str = "openai", extra: str = "") -> bytes:
    main = model_project(tmp_path, SAY % conn, model_connections(fake, extra))
    code, _, err = cli("compile", str(main), "-o", str(tmp_path / "main.conc-ir"))
    assert code == 0, err
    return (tmp_path / "main.conc-ir").read_bytes()


def run_ir(data: bytes, environ: dict[str, str] | None = None,
           **config: Any) -> tuple[list[tuple[str, Any]], RunError | None]:
    rt = Runtime(RuntimeConfig(environ=dict(MODEL_KEYS) if environ is None else environ, **config))
    rt.load_ir(data)
    out: list[tuple[str, Any]] = []
    rt.on("*", lambda channel, payload: out.append((channel, payload)))
    try:
        rt.run()
    except RunError as e:
        return out, e
    return out, None


@pytest.mark.parametrize("conn", ["openai", "claude"])
def test_ir_from_elsewhere_cannot_send_a_key_to_an_unchosen_host(tmp_path: Path, fake: FakeProvider,
                                                                 conn: str) -> None:
    data = compiled_ir(tmp_path, fake, conn)
    emits, error = run_ir(data)
    assert error is not None and error.kind == "ConfigError"
    assert f"to 127.0.0.1:{fake.port}:" in error.message and "--allow-host" in error.message
    assert emits == [] and fake.request_count == 0
    # Allowed by host (any port) or host:port, the same IR runs.
    for allowed in ("127.0.0.1", f"127.0.0.1:{fake.port}"):
        emits, error = run_ir(data, allowed_hosts=[allowed])
        assert error is None and emits == [("ok", "echo: hi")]
    emits, error = run_ir(data, allowed_hosts=["127.0.0.1:1"])
    assert error is not None and fake.request_count == 2


def test_a_bad_allowed_host_is_a_config_error_before_any_request(tmp_path: Path, fake: FakeProvider) -> None:
    emits, error = run_ir(compiled_ir(tmp_path, fake), allowed_hosts=["127.0.0.1/v1"])
    assert error is not None and error.kind == "ConfigError"
    assert error.message == "RuntimeConfig.allowed_hosts: '127.0.0.1/v1' is not a host name (HOST or HOST:PORT)"
    assert emits == [] and fake.request_count == 0


def test_a_connection_without_a_key_goes_anywhere(tmp_path: Path, fake: FakeProvider) -> None:
    conns = f'[connections.local]\nprovider = "ollama"\nbase_url = "{fake.openai_base_url}"\ndefault_model = "m"\n'
    main = model_project(tmp_path, SAY % "local", conns)
    code, _, err = cli("compile", str(main), "-o", str(tmp_path / "m.conc-ir"))
    assert code == 0, err
    emits, error = run_ir((tmp_path / "m.conc-ir").read_bytes())
    assert error is None and emits == [("ok", "echo: hi")]


def test_a_source_program_may_use_the_hosts_of_its_own_manifest(tmp_path: Path, fake: FakeProvider) -> None:
    emits, error, _ = run_project(model_project(tmp_path, SAY % "openai", model_connections(fake)))
    assert error is None and emits == [("ok", "echo: hi")]


def test_cli_trusts_the_local_manifest_or_allow_host_for_ir(tmp_path: Path, fake: FakeProvider) -> None:
    project = tmp_path / "project"
    project.mkdir()
    compiled_ir(project, fake)
    ir_file = str(project / "main.conc-ir")
    elsewhere = tmp_path / "elsewhere"  # no Concerto.toml here or above
    elsewhere.mkdir()
    env = dict(MODEL_KEYS)
    code, out, err = cli("run", ir_file, cwd=elsewhere, env_extra=env)
    assert code == 1 and out == ""
    assert f"error: connection `openai`: will not send the key in TEST_OPENAI_KEY to 127.0.0.1:{fake.port}" in err
    assert fake.request_count == 0
    for args, cwd in ((["--allow-host", "127.0.0.1"], elsewhere),
                      (["--manifest", str(project / "Concerto.toml")], elsewhere),
                      ([], project / "src")):  # walking up from the current directory finds it
        code, out, err = cli("run", ir_file, "--emit-format", "jsonl", *args, cwd=cwd, env_extra=env)
        assert code == 0, err
        assert json.loads(out) == {"channel": "ok", "payload": "echo: hi"}
    code, _, err = cli("run", ir_file, "--allow-host", "http://", cwd=elsewhere, env_extra=env)
    assert code == 2 and "--allow-host" in err
    code, _, err = cli("run", ir_file, "--manifest", str(elsewhere / "Concerto.toml"), cwd=elsewhere, env_extra=env)
    assert code == 2 and "no such file" in err
    assert fake.request_count == 3


def test_headers_env_sends_the_variable_and_counts_as_a_key(tmp_path: Path, fake: FakeProvider) -> None:
    conns = (f'[connections.az]\nprovider = "custom"\nbase_url = "{fake.openai_base_url}"\ndefault_model = "m"\n'
             '[connections.az.headers_env]\n"api-key" = "AZ_KEY"\n')
    main = model_project(tmp_path, SAY % "az", conns)
    emits, error, _ = run_project(main, environ={"AZ_KEY": AZURE_KEY})
    assert error is None and emits == [("ok", "echo: hi")]
    assert fake.requests[-1].headers["api-key"] == AZURE_KEY
    emits, error, _ = run_project(main, environ={})
    assert error is not None and "environment variable AZ_KEY (for header `api-key`) is not set" in error.message
    code, _, err = cli("compile", str(main), "-o", str(tmp_path / "az.conc-ir"))
    assert code == 0 and AZURE_KEY not in (tmp_path / "az.conc-ir").read_text()
    emits, error = run_ir((tmp_path / "az.conc-ir").read_bytes(), environ={"AZ_KEY": AZURE_KEY})
    assert error is not None and "will not send the `api-key` header" in error.message
    assert fake.request_count == 1


# ---------------------------------------------------------------- redaction
ECHO = '''
model M { provider: openai }
fn main() {
    match M.execute("hi") {
        Ok(r) => {
            emit("text", r.text);
            emit("nested", {"list": [r.text], "pair": (1, r.text)});
            std::log::info("reply: ${r.text}");
        },
        Err(e) => emit("err", e.message),
    }
    match M.execute("again") {
        Ok(r) => emit("ok", r.text),
        Err(e) => emit("err", e.message),
    }
    panic("giving up: " + M.execute("last").unwrap().text);
}
'''


def test_exact_key_values_are_redacted_wherever_text_leaves_the_run(tmp_path: Path, fake: FakeProvider) -> None:
    key = AZURE_KEY
    echoed = f"key {key} url {quote(key)} b64 {base64.b64encode(key.encode()).decode()}"
    fake.script(Text(echoed), ErrorStatus(401, message=f"Incorrect API key provided: {key}."), Text(echoed))
    main = model_project(tmp_path, ECHO, model_connections(fake))
    logs: list[str] = []
    rt = Runtime(RuntimeConfig(environ={"TEST_OPENAI_KEY": key, "TEST_ANTHROPIC_KEY": "unused-but-secret-42"}))
    rt.load_source(main)
    rt.on_log = lambda level, message: logs.append(message)
    emits: list[Any] = []
    rt.on("*", lambda channel, payload: emits.append((channel, payload)))
    with pytest.raises(RunError) as info:
        rt.run()
    seen = json.dumps([emits, logs, info.value.message, str(info.value), rt.metrics()])
    assert key not in seen and quote(key) not in seen and base64.b64encode(key.encode()).decode()[:40] not in seen
    assert emits[0] == ("text", "key [redacted] url [redacted] b64 [redacted]")
    assert emits[1][1]["pair"] == [1, "key [redacted] url [redacted] b64 [redacted]"]
    assert emits[2][0] == "err" and "Incorrect API key provided: [redacted]." in emits[2][1]
    assert logs == ["reply: key [redacted] url [redacted] b64 [redacted]"]
    assert info.value.message.startswith("giving up: key [redacted]")


def test_cli_output_and_stderr_are_redacted(tmp_path: Path, fake: FakeProvider) -> None:
    key = AZURE_KEY
    fake.script(Text(f"the key is {key}"), ErrorStatus(401, message=f"bad key {key}"), Text(f"still {key}"))
    main = model_project(tmp_path, ECHO, model_connections(fake))
    env = {**MODEL_KEYS, "TEST_OPENAI_KEY": key}
    for fmt in ("jsonl", "pretty"):
        fake.reset()
        fake.script(Text(f"the key is {key}"), ErrorStatus(401, message=f"bad key {key}"), Text(f"still {key}"))
        code, out, err = cli("run", str(main), "--emit-format", fmt, "--metrics", env_extra=env)
        assert code == 1
        assert key not in out and key not in err
        assert "the key is [redacted]" in out and "bad key [redacted]" in out
        assert "giving up: still [redacted]" in err and "reply: the key is [redacted]" in err


def test_the_redactor_matches_exact_values_and_their_encodings() -> None:
    secret = "p@ss word/+=ÄÖ-0123"
    r = Redactor([secret, "short", "", None])  # type: ignore[list-item]
    encoded = [secret, quote(secret, safe=""), json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
               base64.b64encode(secret.encode()).decode().rstrip("="),
               base64.urlsafe_b64encode(secret.encode()).decode().rstrip("=")]
    for form in encoded:
        assert r.text(f"<{form}>") == "<[redacted]>", form
    assert r.text("a short text") == "a short text"  # too short to be a secret
    assert r.data({"k": [secret, 1, None]}) == {"k": ["[redacted]", 1, None]}
    assert not Redactor([]) and Redactor([]).text(secret) == secret


def test_an_internal_errors_python_traceback_is_redacted_too(tmp_path: Path, fake: FakeProvider, monkeypatch) -> None:
    # A defect whose Python exception carries the key: the host's RunError
    # (message and python_traceback alike) must not.
    from concerto.stdlib import load
    from concerto.stdlib.registry import Native

    key = AZURE_KEY

    def broken(ctx: Any, x: Any) -> Any:
        raise ValueError(f"leaked {key}")

    monkeypatch.setitem(load().functions, "std::math::abs", Native("std::math::abs", broken, 1, 1))
    main = model_project(tmp_path, 'model M { provider: openai }\nfn main() { emit("x", std::math::abs(-1)); }',
                         model_connections(fake))
    rt = Runtime(RuntimeConfig(environ={"TEST_OPENAI_KEY": key, "TEST_ANTHROPIC_KEY": "unused-but-secret-42"}))
    rt.load_source(main)
    with pytest.raises(RunError) as info:
        rt.run()
    assert info.value.kind == "InternalError"
    assert info.value.message == "ValueError: leaked [redacted]"
    assert info.value.python_traceback is not None and "leaked [redacted]" in info.value.python_traceback
    assert key not in info.value.python_traceback
