"""Concerto.toml (spec 22) and .env loading: compiler/manifest.py.

A bad field is reported with its TOML path and the line of its key; every
problem of a file comes back at once. Rendered diagnostic lists are pinned by
syrupy snapshots (`pytest --snapshot-update` rewrites them).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from concerto.compiler.diagnostics import Diagnostic
from concerto.compiler.manifest import (
    MANIFEST_NAME,
    Manifest,
    find_manifest,
    load_dotenv,
    load_manifest,
    parse_dotenv,
)
from concerto.ir import ConnectionConfig, ConnectionDef, Pricing, RateLimitConfig, RetryConfig

PROJECT = '[project]\nname = "demo"\nversion = "0.1.0"\nentry = "src/main.conc"\n'


def write(folder: Path, text: str, name: str = MANIFEST_NAME) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def render(diags: list[Diagnostic]) -> str:
    return "\n".join(f"{Path(d.file).name}:{d.line}:{d.col}: {d.message}" for d in diags)


def load_errors(tmp_path: Path, text: str) -> list[Diagnostic]:
    path = write(tmp_path, text)
    manifest, diags = load_manifest(path)
    assert manifest is None, "the manifest was accepted"
    assert diags, "no diagnostics"
    assert all(d.file == str(path) for d in diags)
    assert all(d.severity == "error" for d in diags)
    return diags


# ---------------------------------------------------------------------------
# A valid manifest

FULL = """\
# A project with every field.
[project]
name = "demo"
version = "0.1.0"
entry = "src/main.conc"

[connections.openai]
provider = "openai"
api_key_env = "OPENAI_API_KEY"
base_url = "https://api.openai.com/v1"
default_model = "gpt-4o"
timeout = 60
organization = "org-1"
project = "proj-1"
headers = { "X-Team" = "a", "X-Empty" = "" }

[connections.openai.retry]
max_attempts = 3
backoff = "exponential"
initial_delay_ms = 200
max_delay_ms = 5000

[connections.openai.rate_limit]
requests_per_minute = 60
tokens_per_minute = 90000
concurrent_requests = 4

[connections.openai.models]
fast = "gpt-4o-mini"
smart = "gpt-4o"

[connections.openai.pricing."gpt-4o"]
input_per_mtok = 2.5
output_per_mtok = 10.0

[connections.openai.pricing."gpt-4o-mini"]
input_per_mtok = 0.1
output_per_mtok = 0.4

[connections.claude]
provider = "anthropic"
api_key_env = "ANTHROPIC_API_KEY"
timeout = 12.5

[connections.local]
provider = "ollama"
base_url = "http://localhost:11434"

[connections.gateway]
provider = "custom"
base_url = "https://llm.internal.example/v1"
api_key_env = "GATEWAY_KEY"

[connections.fake]
provider = "mock"
api_key_env = "IGNORED_FOR_MOCK"
replies = "fixtures/replies.json"

[pricing."gpt-4o-mini"]
input_per_mtok = 0.15
output_per_mtok = 0.6

[pricing."claude-sonnet-4.5"]
input_per_mtok = 3
output_per_mtok = 15

[mcp.files]
transport = "stdio"
command = "mcp-files"
args = ["--root", "."]
timeout = 10

[mcp.search]
transport = "sse"
url = "https://mcp.example.com/sse"
"""


def test_full_manifest(tmp_path):
    path = write(tmp_path, FULL)
    manifest, diags = load_manifest(path)
    assert diags == []
    assert isinstance(manifest, Manifest)
    assert manifest.path == path
    assert manifest.root == tmp_path
    assert (manifest.name, manifest.version) == ("demo", "0.1.0")
    assert manifest.entry == tmp_path / "src" / "main.conc"
    assert manifest.entry.is_absolute()

    assert list(manifest.connections) == ["openai", "claude", "local", "gateway", "fake"]  # file order
    openai = manifest.connections["openai"]
    assert isinstance(openai, ConnectionConfig)
    assert openai.provider == "openai"
    assert openai.api_key_env == "OPENAI_API_KEY"
    assert openai.base_url == "https://api.openai.com/v1"
    assert openai.default_model == "gpt-4o"
    assert openai.timeout == 60.0 and isinstance(openai.timeout, float)
    assert (openai.organization, openai.project) == ("org-1", "proj-1")
    assert openai.headers == {"X-Team": "a", "X-Empty": ""}
    assert openai.retry == RetryConfig(max_attempts=3, backoff="exponential", initial_delay_ms=200, max_delay_ms=5000)
    assert openai.rate_limit == RateLimitConfig(requests_per_minute=60, tokens_per_minute=90000, concurrent_requests=4)
    assert openai.models == {"fast": "gpt-4o-mini", "smart": "gpt-4o"}
    assert openai.replies is None

    # Project-wide prices sit under each connection's own: the connection wins.
    assert manifest.pricing == {
        "gpt-4o-mini": Pricing(input_per_mtok=0.15, output_per_mtok=0.6),
        "claude-sonnet-4.5": Pricing(input_per_mtok=3.0, output_per_mtok=15.0),
    }
    assert openai.pricing == {
        "gpt-4o-mini": Pricing(input_per_mtok=0.1, output_per_mtok=0.4),
        "claude-sonnet-4.5": Pricing(input_per_mtok=3.0, output_per_mtok=15.0),
        "gpt-4o": Pricing(input_per_mtok=2.5, output_per_mtok=10.0),
    }
    assert manifest.connections["claude"].pricing == manifest.pricing
    assert isinstance(manifest.connections["claude"].pricing["claude-sonnet-4.5"].input_per_mtok, float)

    claude = manifest.connections["claude"]
    assert claude.timeout == 12.5
    assert claude.retry == RetryConfig() and claude.rate_limit == RateLimitConfig()  # defaults
    assert claude.headers == {} and claude.models == {}

    local = manifest.connections["local"]
    assert (local.provider, local.api_key_env, local.base_url) == ("ollama", None, "http://localhost:11434")
    assert manifest.connections["gateway"].api_key_env == "GATEWAY_KEY"

    fake = manifest.connections["fake"]
    assert fake.provider == "mock"
    assert fake.api_key_env is None  # allowed for mock, and ignored
    assert fake.replies == str(tmp_path / "fixtures" / "replies.json")
    assert Path(fake.replies).is_absolute()

    assert manifest.mcp == {
        "files": {"transport": "stdio", "command": "mcp-files", "args": ["--root", "."], "timeout": 10},
        "search": {"transport": "sse", "url": "https://mcp.example.com/sse"},
    }
    defs = manifest.connection_defs()
    assert [d.name for d in defs] == list(manifest.connections)
    assert all(isinstance(d, ConnectionDef) for d in defs)
    assert defs[0].config is openai


def test_minimal_manifest(tmp_path):
    manifest, diags = load_manifest(write(tmp_path, PROJECT))
    assert diags == []
    assert manifest is not None
    assert manifest.connections == {} and manifest.pricing == {} and manifest.mcp == {}


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path, monkeypatch):
    write(tmp_path / "proj", PROJECT + '[connections.m]\nprovider = "mock"\nreplies = "../shared/r.json"\n')
    monkeypatch.chdir(tmp_path)
    manifest, diags = load_manifest(Path("proj") / MANIFEST_NAME)
    assert diags == []
    assert manifest is not None
    assert manifest.path == tmp_path / "proj" / MANIFEST_NAME
    assert manifest.entry == tmp_path / "proj" / "src" / "main.conc"
    assert manifest.connections["m"].replies == str(tmp_path / "shared" / "r.json")


def test_byte_order_mark_and_crlf_are_accepted(tmp_path):
    path = tmp_path / MANIFEST_NAME
    path.write_bytes(b"\xef\xbb\xbf" + PROJECT.replace("\n", "\r\n").encode())
    manifest, diags = load_manifest(path)
    assert diags == [] and manifest is not None and manifest.name == "demo"


# ---------------------------------------------------------------------------
# find_manifest


def test_find_manifest_walks_up(tmp_path):
    manifest = write(tmp_path, PROJECT)
    deep = tmp_path / "src" / "agents" / "deep"
    deep.mkdir(parents=True)
    source = deep / "main.conc"
    source.write_text("fn main() {}\n")
    assert find_manifest(deep) == manifest
    assert find_manifest(source) == manifest  # from a file: its folder first
    assert find_manifest(tmp_path) == manifest


def test_find_manifest_prefers_the_nearest(tmp_path):
    write(tmp_path, PROJECT)
    inner = write(tmp_path / "sub", PROJECT)
    (tmp_path / "sub" / "src").mkdir()
    assert find_manifest(tmp_path / "sub" / "src") == inner


def test_find_manifest_from_a_relative_path(tmp_path, monkeypatch):
    manifest = write(tmp_path, PROJECT)
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert find_manifest(Path(".")) == manifest
    assert find_manifest(Path("..")) == manifest


def test_find_manifest_ignores_a_folder_named_like_it(tmp_path):
    (tmp_path / "x" / MANIFEST_NAME).mkdir(parents=True)
    found = find_manifest(tmp_path / "x")
    assert found is None or not found.is_relative_to(tmp_path)


def test_find_manifest_none(tmp_path):
    start = tmp_path / "empty"
    start.mkdir()
    if any((p / MANIFEST_NAME).is_file() for p in tmp_path.parents):
        pytest.skip("a Concerto.toml sits above the temporary folder")
    assert find_manifest(start) is None


# ---------------------------------------------------------------------------
# Bad fields: one problem each, its message and the line of its key.

# name -> (manifest text, expected message, expected line)
BAD: dict[str, tuple[str, str, int]] = {
    "bad_backoff": (
        PROJECT + '[connections.openai]\nprovider = "openai"\napi_key_env = "K"\n'
        '[connections.openai.retry]\nmax_attempts = 2\nbackoff = "fast"\n',
        'connections.openai.retry.backoff: expected one of "none", "linear", "exponential", got "fast"', 10),
    "missing_provider": (
        PROJECT + '\n[connections.openai]\napi_key_env = "K"\n',
        "connections.openai: missing required field 'provider'", 6),
    "missing_version": (
        '[project]\nname = "demo"\nentry = "main.conc"\n',
        "project: missing required field 'version'", 1),
    "missing_project": (
        '[connections.m]\nprovider = "mock"\n',
        "missing required table [project]", 1),
    "project_not_a_table": (
        'project = "demo"\n',
        "project: expected a table, got string", 1),
    "rate_limit_zero": (
        PROJECT + '[connections.x]\nprovider = "ollama"\n[connections.x.rate_limit]\n'
        'tokens_per_minute = 10\nrequests_per_minute = 0\n',
        "connections.x.rate_limit.requests_per_minute: expected an integer >= 1, got 0", 9),
    "rate_limit_float": (
        PROJECT + '[connections.x]\nprovider = "ollama"\nrate_limit = { concurrent_requests = 1.5 }\n',
        "connections.x.rate_limit.concurrent_requests: expected an integer, got float", 7),
    "name_not_string": (
        '[project]\nname = 1\nversion = "0.1.0"\nentry = "main.conc"\n',
        "project.name: expected a string, got integer", 2),
    "version_empty": (
        '[project]\nname = "d"\nversion = ""\nentry = "main.conc"\n',
        "project.version: expected a non-empty string", 3),
    "entry_is_array": (
        '[project]\nname = "d"\nversion = "1"\n\n\nentry = ["main.conc"]\n',
        "project.entry: expected a string, got array", 6),
    "unknown_with_suggestion": (
        PROJECT + '[connections.openai]\nprovider = "openai"\napi_key_env = "K"\n'
        '[connections.openai.retyr]\nmax_attempts = 2\n',
        "connections.openai.retyr: unknown field (did you mean 'retry'?)", 8),
    "unknown_top_level": (
        PROJECT + '[connection.openai]\nprovider = "openai"\n',
        "connection: unknown field (did you mean 'connections'?)", 5),
    "unknown_without_suggestion": (
        PROJECT + '[connections.openai]\nprovider = "openai"\napi_key_env = "K"\nzzz = 1\n',
        "connections.openai.zzz: unknown field", 8),
    "unknown_provider": (
        PROJECT + '[connections.a]\nprovider = "openia"\n',
        'connections.a.provider: expected one of "openai", "anthropic", "google", "ollama", "custom", "mock", '
        'got "openia"', 6),
    "google_unsupported": (
        PROJECT + '[connections.g]\nprovider = "google"\napi_key_env = "GOOGLE_API_KEY"\n',
        'connections.g.provider: provider "google" is not supported by this runtime yet '
        "(supported: openai, anthropic, ollama, custom, mock)", 6),
    "api_key_env_required": (
        PROJECT + '[connections.claude]\nprovider = "anthropic"\n',
        "connections.claude: missing required field 'api_key_env'", 5),
    "api_key_env_not_a_name": (
        PROJECT + '[connections.openai]\nprovider = "openai"\napi_key_env = "sk-proj-SECRET123"\n',
        'connections.openai.api_key_env: expected the name of an environment variable, such as "OPENAI_API_KEY"', 7),
    "base_url_not_http": (
        PROJECT + '[connections.l]\nprovider = "ollama"\nbase_url = "ftp://localhost:11434"\n',
        "connections.l.base_url: expected an http:// or https:// URL", 7),
    "timeout_negative": (
        PROJECT + '[connections.l]\nprovider = "ollama"\ntimeout = -1.5\n',
        "connections.l.timeout: expected a number > 0, got -1.5", 7),
    "timeout_infinite": (
        PROJECT + '[connections.l]\nprovider = "ollama"\ntimeout = inf\n',
        "connections.l.timeout: expected a finite number > 0, got inf", 7),
    "timeout_boolean": (
        PROJECT + '[connections.l]\nprovider = "ollama"\ntimeout = true\n',
        "connections.l.timeout: expected a number, got boolean", 7),
    "header_value_not_string": (
        PROJECT + '[connections.l]\nprovider = "ollama"\n[connections.l.headers]\n"X-Team" = 1\n',
        "connections.l.headers.X-Team: expected a string, got integer", 8),
    "header_name_invalid": (
        PROJECT + '[connections.l]\nprovider = "ollama"\nheaders = { "Bad Header" = "x" }\n',
        'connections.l.headers."Bad Header": not a valid HTTP header name', 7),
    "model_alias_not_string": (
        PROJECT + '[connections.l]\nprovider = "ollama"\n[connections.l.models]\nfast = "a"\nslow = false\n',
        "connections.l.models.slow: expected a string, got boolean", 9),
    "replies_not_mock": (
        PROJECT + '[connections.l]\nprovider = "ollama"\nreplies = "r.json"\n',
        'connections.l.replies: only allowed with provider "mock"', 7),
    "max_delay_below_initial": (
        PROJECT + '[connections.l]\nprovider = "ollama"\n[connections.l.retry]\n'
        'initial_delay_ms = 500\nmax_delay_ms = 100\n',
        "connections.l.retry.max_delay_ms: expected an integer >= initial_delay_ms (500), got 100", 9),
    "initial_delay_above_default_max": (
        PROJECT + '[connections.l]\nprovider = "ollama"\n[connections.l.retry]\ninitial_delay_ms = 40000\n',
        "connections.l.retry.initial_delay_ms: expected an integer <= max_delay_ms (30000, the default), got 40000", 8),
    "initial_delay_negative": (
        PROJECT + '[connections.l]\nprovider = "ollama"\nretry.initial_delay_ms = -1\n',
        "connections.l.retry.initial_delay_ms: expected an integer >= 0, got -1", 7),
    "retry_not_a_table": (
        PROJECT + '[connections.l]\nprovider = "ollama"\nretry = 3\n',
        "connections.l.retry: expected a table, got integer", 7),
    "connection_not_a_table": (
        PROJECT + '[connections]\nopenai = "gpt-4o"\n',
        "connections.openai: expected a table, got string", 6),
    "pricing_missing_output": (
        PROJECT + '\n[pricing."gpt-4.1"]\ninput_per_mtok = 2\n',
        "pricing.\"gpt-4.1\": missing required field 'output_per_mtok'", 6),
    "pricing_negative": (
        PROJECT + '[connections.l]\nprovider = "ollama"\n[connections.l.pricing.llama3]\n'
        'input_per_mtok = 0\noutput_per_mtok = -2\n',
        "connections.l.pricing.llama3.output_per_mtok: expected a number >= 0, got -2", 9),
    "pricing_string": (
        PROJECT + '[pricing.m]\ninput_per_mtok = "cheap"\noutput_per_mtok = 1\n',
        "pricing.m.input_per_mtok: expected a number, got string", 6),
    "mcp_missing_transport": (
        PROJECT + '[mcp.fs]\ncommand = "mcp-fs"\n',
        "mcp.fs: missing required field 'transport'", 5),
    "mcp_bad_transport": (
        PROJECT + '[mcp.fs]\ntransport = "http"\n',
        'mcp.fs.transport: expected one of "stdio", "sse", got "http"', 6),
    "mcp_sse_without_url": (
        PROJECT + '[mcp.remote]\ntransport = "sse"\n',
        "mcp.remote: missing required field 'url'", 5),
    "mcp_command_with_sse": (
        PROJECT + '[mcp.remote]\ntransport = "sse"\nurl = "https://x.example/sse"\ncommand = "x"\n',
        'mcp.remote.command: only used with transport "stdio"', 8),
    "mcp_timeout_zero": (
        PROJECT + '[mcp.fs]\ntransport = "stdio"\ncommand = "x"\ntimeout = 0\n',
        "mcp.fs.timeout: expected a number > 0, got 0", 8),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_field(tmp_path, name):
    text, message, line = BAD[name]
    diags = load_errors(tmp_path, text)
    assert [d.message for d in diags] == [message], render(diags)
    assert diags[0].line == line, render(diags)
    assert diags[0].col >= 1


def test_unknown_field_without_suggestion_lists_the_known_ones(tmp_path):
    (d,) = load_errors(tmp_path, BAD["unknown_without_suggestion"][0])
    assert d.hint is not None and "provider" in d.hint and "rate_limit" in d.hint


def test_key_column_and_length(tmp_path):
    text = PROJECT + '[connections.openai]\nprovider = "openai"\napi_key_env = "K"\n  [connections.openai.retry]\n    backoff = "fast"\n'
    (d,) = load_errors(tmp_path, text)
    assert (d.line, d.col, d.length) == (9, 5, len("backoff"))


def test_missing_field_points_at_the_table_header(tmp_path):
    (d,) = load_errors(tmp_path, PROJECT + '\n\n  [ connections . "my-conn" ]\ntimeout = 5\n')
    assert d.message == "connections.my-conn: missing required field 'provider'"
    assert (d.line, d.col) == (7, 3)


def test_dotted_keys_and_inline_tables_are_located(tmp_path):
    text = PROJECT + '[connections]\nx.provider = "ollama"\nx.retry = { backoff = "fast" }\n'
    (d,) = load_errors(tmp_path, text)
    assert d.message.startswith("connections.x.retry.backoff: expected one of")
    assert d.line == 7  # the line of the inline table


def test_lines_inside_multiline_values_are_not_taken_for_keys(tmp_path):
    text = PROJECT + textwrap.dedent('''\
        [connections.openai]
        provider = "openai"
        api_key_env = "K"
        organization = """
        [connections.openai.retry]
        backoff = 1
        """
        headers = { "X-A" = "}" }
        [mcp.fs]
        transport = "stdio"
        command = "x"
        args = [
          "a",
          [1, 2],
        ]
        [connections.openai.retry]
        backoff = "fast"
        ''')
    diags = load_errors(tmp_path, text)
    assert render(diags) == "\n".join([
        f"{MANIFEST_NAME}:16:1: mcp.fs.args: item 1: expected a string, got array",
        f'{MANIFEST_NAME}:21:1: connections.openai.retry.backoff: expected one of "none", "linear", '
        '"exponential", got "fast"',
    ])


# ---------------------------------------------------------------------------
# Several problems at once

MANY = """\
[project]
name = "demo"
entry = 3

[connections.openai]
provider = "openai"
timeout = 0
retyr = 1
headers = { "X-Team" = 1 }

[connections.openai.retry]
backoff = "fast"
max_attempts = 0

[connections.g]
provider = "google"
api_key_env = "GOOGLE_API_KEY"
[connections.g.rate_limit]
requests_per_minute = 0

[connections.m]
provider = "mock"
replies = 7

[pricing."gpt-4.1"]
input_per_mtok = -1

[mcp.fs]
transport = "stdio"
url = "http://localhost:9000"
"""


def test_all_problems_are_reported_together(tmp_path, snapshot):
    diags = load_errors(tmp_path, MANY)
    assert len(diags) >= 13
    assert [d.line for d in diags] == sorted(d.line for d in diags)
    assert render(diags) == snapshot


def test_a_bad_connection_does_not_hide_the_project_errors(tmp_path):
    text = '[project]\nname = "demo"\n[connections.a]\nprovider = 1\n'
    messages = [d.message for d in load_errors(tmp_path, text)]
    assert messages == [
        "project: missing required field 'version'",
        "project: missing required field 'entry'",
        "connections.a.provider: expected a string, got integer",
    ]


# ---------------------------------------------------------------------------
# Files that are not TOML, or not there


@pytest.mark.parametrize(
    "text, line, col, fragment",
    [
        ('[project]\nname = "demo"\nversion = 0.1.0\n', 3, 14, "invalid TOML: "),
        ('[project]\nname = "demo\n', 2, 13, "invalid TOML: "),
        ('[project]\nname = "a"\nname = "b"\n', 3, 11, "invalid TOML: "),
        ("[project\n", 1, 9, "invalid TOML: "),
    ],
)
def test_toml_syntax_error_has_line_and_column(tmp_path, text, line, col, fragment):
    path = write(tmp_path, text)
    manifest, diags = load_manifest(path)
    assert manifest is None
    (d,) = diags
    assert (d.file, d.line, d.col) == (str(path), line, col), d.header()
    assert d.message.startswith(fragment)
    assert "(at line" not in d.message


def test_toml_error_at_the_end_of_the_document(tmp_path):
    path = tmp_path / MANIFEST_NAME
    path.write_text('[project]\nname = "demo"\nversion =')
    _, (d,) = load_manifest(path)
    assert (d.line, d.col) == (3, 10)
    assert d.message.startswith("invalid TOML: ") and "(at end of document)" not in d.message


def test_toml_syntax_error_snapshot(tmp_path, snapshot):
    _, diags = load_manifest(write(tmp_path, '[project]\nname = "demo"\nversion = 0.1.0\n'))
    assert render(diags) == snapshot


def test_missing_manifest(tmp_path):
    manifest, (d,) = load_manifest(tmp_path / MANIFEST_NAME)
    assert manifest is None
    assert d.file == str(tmp_path / MANIFEST_NAME)
    assert d.message.startswith("cannot read manifest: ")


def test_manifest_is_a_folder(tmp_path):
    (tmp_path / MANIFEST_NAME).mkdir()
    manifest, (d,) = load_manifest(tmp_path / MANIFEST_NAME)
    assert manifest is None and d.message.startswith("cannot read manifest: ")


def test_manifest_not_utf8(tmp_path):
    path = tmp_path / MANIFEST_NAME
    path.write_bytes(b'[project]\nname = "d\xe9mo"\n')
    manifest, (d,) = load_manifest(path)
    assert manifest is None
    assert d.message == "manifest is not valid UTF-8"
    assert (d.line, d.col) == (2, 10)


# ---------------------------------------------------------------------------
# .env


def dotenv(tmp_path: Path, text: str, environ: dict[str, str] | None = None, **kw) -> tuple[dict, list]:
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    env = {} if environ is None else environ
    diags = load_dotenv(path, env, **kw)
    return env, diags


def test_dotenv_basic_forms(tmp_path):
    text = (
        "# a comment\n"
        "\n"
        "PLAIN=value\n"
        "  SPACED  =  spaced value  \n"
        "export EXPORTED=yes\n"
        "export\tTABBED=tab\n"
        "EMPTY=\n"
        "EMPTY_WITH_COMMENT= # nothing here\n"
        "TRAILING=abc # comment\n"
        "HASH_IN_VALUE=abc#def\n"
        "URL=https://example.com/a?b=c#frag\n"
        "EQUALS=a=b=c\n"
        "export=not a keyword here\n"
        "_UNDER9=x\n"
    )
    env, diags = dotenv(tmp_path, text)
    assert diags == []
    assert env == {
        "PLAIN": "value",
        "SPACED": "spaced value",
        "EXPORTED": "yes",
        "TABBED": "tab",
        "EMPTY": "",
        "EMPTY_WITH_COMMENT": "",
        "TRAILING": "abc",
        "HASH_IN_VALUE": "abc#def",
        "URL": "https://example.com/a?b=c#frag",
        "EQUALS": "a=b=c",
        "export": "not a keyword here",
        "_UNDER9": "x",
    }


def test_dotenv_quotes_and_escapes(tmp_path):
    text = (
        "SINGLE='literal \\n $HOME # not a comment'\n"
        'DOUBLE="line1\\nline2\\tTab \\"q\\" back\\\\slash"\n'
        'UNKNOWN_ESCAPE="C:\\Users\\x"\n'
        'QUOTED_COMMENT="a # b" # real comment\n'
        "SINGLE_COMMENT='x'   # c\n"
        'EMPTY_DOUBLE=""\n'
        "EMPTY_SINGLE=''\n"
        "  export  SPACED_QUOTED = ' padded '\n"
        'MULTI="first\nsecond"\n'
        "MULTI_SINGLE='a\nb'\n"
        "AFTER=ok\n"
    )
    env, diags = dotenv(tmp_path, text)
    assert diags == []
    assert env == {
        "SINGLE": "literal \\n $HOME # not a comment",
        "DOUBLE": 'line1\nline2\tTab "q" back\\slash',
        "UNKNOWN_ESCAPE": "C:\\Users\\x",
        "QUOTED_COMMENT": "a # b",
        "SINGLE_COMMENT": "x",
        "EMPTY_DOUBLE": "",
        "EMPTY_SINGLE": "",
        "SPACED_QUOTED": " padded ",
        "MULTI": "first\nsecond",
        "MULTI_SINGLE": "a\nb",
        "AFTER": "ok",
    }


def test_dotenv_crlf(tmp_path):
    path = tmp_path / ".env"
    path.write_bytes(b"A=1\r\nB='two'\r\n# c\r\nC=3 # x\r\n")
    env: dict[str, str] = {}
    assert load_dotenv(path, env) == []
    assert env == {"A": "1", "B": "two", "C": "3"}


def test_dotenv_does_not_override_by_default(tmp_path):
    env, diags = dotenv(tmp_path, "KEEP=new\nNEW=1\n", {"KEEP": "old"})
    assert diags == []
    assert env == {"KEEP": "old", "NEW": "1"}


def test_dotenv_override(tmp_path):
    env, diags = dotenv(tmp_path, "KEEP=new\nNEW=1\n", {"KEEP": "old"}, override=True)
    assert diags == []
    assert env == {"KEEP": "new", "NEW": "1"}


def test_dotenv_last_definition_in_the_file_wins(tmp_path):
    env, _ = dotenv(tmp_path, "A=1\nA=2\n")
    assert env == {"A": "2"}


def test_dotenv_defaults_to_os_environ(tmp_path, monkeypatch):
    monkeypatch.delenv("CONCERTO_TEST_DOTENV_VAR", raising=False)
    path = tmp_path / ".env"
    path.write_text("CONCERTO_TEST_DOTENV_VAR=from-file\n")
    import os

    try:
        assert load_dotenv(path) == []
        assert os.environ["CONCERTO_TEST_DOTENV_VAR"] == "from-file"
    finally:
        os.environ.pop("CONCERTO_TEST_DOTENV_VAR", None)


@pytest.mark.parametrize(
    "line, col, fragment",
    [
        ("NO_EQUALS value", 11, "malformed line: expected NAME=value"),
        ("JUST_A_NAME", 12, "malformed line: expected NAME=value"),
        ("=value", 1, "malformed line: expected NAME=value"),
        ("1ABC=x", 1, "malformed line: expected NAME=value"),
        ("MY-KEY=x", 3, "malformed line: expected NAME=value"),
        ('KEY="unterminated', 5, "unterminated quoted value for KEY"),
        ("KEY='a'b", 8, "unexpected text after the quoted value of KEY"),
    ],
)
def test_dotenv_malformed_line(tmp_path, line, col, fragment):
    env, diags = dotenv(tmp_path, f"GOOD=1\n{line}\nALSO_GOOD=2\n")
    (d,) = diags
    assert (d.file, d.line, d.col) == (str(tmp_path / ".env"), 2, col), d.header()
    assert d.message == fragment
    # The well-formed lines still apply.
    assert env["GOOD"] == "1" and env["ALSO_GOOD"] == "2"
    assert "KEY" not in env


def test_dotenv_missing_file(tmp_path):
    env: dict[str, str] = {}
    (d,) = load_dotenv(tmp_path / ".env", env)
    assert env == {}
    assert d.file == str(tmp_path / ".env")
    assert d.message.startswith("cannot read .env file: ")


def test_dotenv_not_utf8(tmp_path):
    path = tmp_path / ".env"
    path.write_bytes(b"A=1\nB=\xff\n")
    (d,) = load_dotenv(path, {})
    assert (d.line, d.message) == (2, ".env file is not valid UTF-8")


SECRETS = ("sk-live-0123456789abcdef", "hunter2pass", "tok_ABCDEF987654", "ghp_SECRETTOKEN42")

LEAKY = f"""\
OK=1
{SECRETS[0]}
OPENAI_API_KEY {SECRETS[0]}
API_KEY="{SECRETS[1]}"trailing
BROKEN-NAME={SECRETS[2]}
export {SECRETS[3]}
TOKEN='{SECRETS[3]}
"""


def test_dotenv_never_echoes_values(tmp_path, snapshot):
    env, diags = dotenv(tmp_path, LEAKY)
    assert len(diags) == 6
    for d in diags:
        for text in (d.message, d.hint or "", d.header()):
            for secret in SECRETS:
                assert secret not in text
                assert secret[:8] not in text
    assert render(diags) == snapshot


def test_parse_dotenv_directly():
    values, diags = parse_dotenv("A=1\nB='2'\n", "x.env")
    assert values == {"A": "1", "B": "2"} and diags == []
    values, (d,) = parse_dotenv("oops\n", "x.env")
    assert values == {} and d.file == "x.env" and (d.line, d.col) == (1, 5)
