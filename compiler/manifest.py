"""`Concerto.toml`, the project manifest (spec 22), and `.env` files.

    find_manifest(start)           -> Path | None
    load_manifest(path)            -> (Manifest | None, [Diagnostic])
    load_dotenv(path, environ)     -> [Diagnostic]
    parse_dotenv(text, file)       -> ({name: value}, [Diagnostic])

Like the compiler these never raise for bad input: every problem becomes a
Diagnostic, and all of them are reported at once. A diagnostic about a field
names it by its TOML path (`connections.openai.retry.backoff: ...`) and points
at the line of its key. tomllib keeps no positions for values, so
`_key_positions` finds them with a small scan of the (already valid) text.

Secrets: the manifest only holds the *names* of environment variables; a
`.env` file holds the values, and no diagnostic ever repeats one (a malformed
`.env` line is reported by its key name at most).
"""

from __future__ import annotations

import bisect
import datetime
import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from concerto.compiler.diagnostics import Diagnostic
from concerto.ir import ConnectionConfig, ConnectionDef, Pricing, RateLimitConfig, RetryConfig
from concerto.ir.credentials import credential_header, url_credentials

MANIFEST_NAME = "Concerto.toml"

PROVIDERS = ("openai", "anthropic", "google", "ollama", "custom", "mock")
SUPPORTED_PROVIDERS = ("openai", "anthropic", "ollama", "custom", "mock")
# Providers whose connection must name the environment variable holding the key.
KEY_REQUIRED_PROVIDERS = ("openai", "anthropic", "google")
BACKOFFS = ("none", "linear", "exponential")
MCP_TRANSPORTS = ("stdio", "sse")

TOP_FIELDS = ("project", "connections", "pricing", "mcp", "permissions")
PERMISSION_FIELDS = ("env",)
PROJECT_FIELDS = ("name", "version", "entry")
CONNECTION_FIELDS = (
    "provider", "api_key_env", "base_url", "default_model", "timeout", "organization", "project",
    "headers", "retry", "rate_limit", "models", "pricing", "replies",
    "headers_env", "max_response_bytes", "stream_idle_timeout",
)
RETRY_FIELDS = ("max_attempts", "backoff", "initial_delay_ms", "max_delay_ms", "max_retry_after_ms")
# Retry-After is never honoured beyond this, whatever the manifest says (5 minutes).
MAX_RETRY_AFTER_MS = 300_000
RATE_LIMIT_FIELDS = ("requests_per_minute", "tokens_per_minute", "concurrent_requests")
PRICING_FIELDS = ("input_per_mtok", "output_per_mtok")
# `args` and `env` go with `command` (stdio); the MCP tables are kept raw for now.
MCP_FIELDS = ("transport", "command", "args", "env", "url", "timeout")

Path_ = tuple[str, ...]


@dataclass
class Permissions:
    """[permissions]: what the project lets its program do beyond the defaults."""

    #: Environment variables std::env may read: names or glob patterns.
    env: list[str] = field(default_factory=list)


@dataclass
class Manifest:
    path: Path  # the Concerto.toml file (absolute)
    name: str
    version: str
    entry: Path  # absolute: resolved against the manifest's folder
    connections: dict[str, ConnectionConfig] = field(default_factory=dict)  # in file order
    pricing: dict[str, Pricing] = field(default_factory=dict)  # project-wide overrides
    mcp: dict[str, dict[str, Any]] = field(default_factory=dict)  # [mcp.NAME] tables, checked
    permissions: Permissions = field(default_factory=Permissions)

    def credential_variables(self) -> dict[str, str]:
        """Environment variables holding credentials, with what each is: every
        connection's api_key_env and headers_env, and what MCP servers get.
        Program code may never read them (vm/environment.py)."""
        out: dict[str, str] = {}
        for cname, config in self.connections.items():
            if config.api_key_env:
                out.setdefault(config.api_key_env, f"the API key of connection `{cname}`")
            for header, var in (getattr(config, "headers_env", None) or {}).items():
                out.setdefault(var, f"the {header} header of connection `{cname}`")
        for sname, server in self.mcp.items():
            for server_var, var in (server.get("env") or {}).items():
                out.setdefault(var, f"passed to MCP server `{sname}` as {server_var}")
        return out

    @property
    def root(self) -> Path:
        """The project folder: the one holding Concerto.toml."""
        return self.path.parent

    def connection_defs(self) -> list[ConnectionDef]:
        return [ConnectionDef(name=name, config=config) for name, config in self.connections.items()]


# ---------------------------------------------------------------------------
# Finding and loading the manifest


def find_manifest(start: str | os.PathLike[str]) -> Path | None:
    """The nearest Concerto.toml in `start` (a file's folder, or a folder) or
    any folder above it, up to the filesystem root; None when there is none."""
    here = Path(os.path.abspath(start))
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        candidate = folder / MANIFEST_NAME
        if candidate.is_file():
            return candidate
    return None


def load_manifest(path: str | os.PathLike[str]) -> tuple[Manifest | None, list[Diagnostic]]:
    """Read and check a Concerto.toml. (None, diagnostics) when anything is wrong."""
    path = Path(path)
    file = str(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, [Diagnostic(file, 0, 0, f"cannot read manifest: {e.strerror or e}")]
    text, bad = _decode(file, data, "manifest")
    if bad is not None:
        return None, [bad]
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return None, [_toml_error(file, text, e)]
    checker = _Checker(file, _key_positions(text))
    manifest = _check_manifest(checker, doc, Path(os.path.abspath(path)))
    diags = sorted(checker.diags, key=lambda d: (d.line, d.col))
    if any(d.severity == "error" for d in diags):
        return None, diags
    return manifest, diags


def _decode(file: str, data: bytes, what: str) -> tuple[str, Diagnostic | None]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        return "", Diagnostic(file, line, col, f"{what} is not valid UTF-8")
    return text.removeprefix("\ufeff"), None


_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_AT_END = re.compile(r"\s*\(at end of document\)\s*$")


def _toml_error(file: str, text: str, err: tomllib.TOMLDecodeError) -> Diagnostic:
    """tomllib messages end with "(at line L, column C)" or "(at end of document)"."""
    message = str(err)
    line, col = 1, 1
    if m := _TOML_AT.search(message):
        line, col = int(m.group(1)), int(m.group(2))
        message = message[: m.start()]
    elif m := _TOML_AT_END.search(message):
        lines = text.split("\n")
        line, col = len(lines), len(lines[-1]) + 1
        message = message[: m.start()] + " at the end of the file"
    message = message.strip() or "syntax error"
    return Diagnostic(file, line, col, f"invalid TOML: {message[0].lower()}{message[1:]}")


# ---------------------------------------------------------------------------
# Where keys are: (path) -> (line, col, length)

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t":
        i += 1
    return i


def _scan_key(s: str, i: int) -> tuple[list[str], int] | None:
    """A dotted TOML key starting at s[i]: (its parts, the index after it)."""
    parts: list[str] = []
    while True:
        i = _skip_ws(s, i)
        if i >= len(s):
            return None
        if s[i] == '"':
            j = i + 1
            while j < len(s) and s[j] != '"':
                j += 2 if s[j] == "\\" else 1
            if j >= len(s):
                return None
            try:  # let tomllib decode the escapes of a quoted key
                parts.append(tomllib.loads(f"k = {s[i:j + 1]}")["k"])
            except tomllib.TOMLDecodeError:
                return None
            i = j + 1
        elif s[i] == "'":
            j = s.find("'", i + 1)
            if j < 0:
                return None
            parts.append(s[i + 1: j])
            i = j + 1
        else:
            m = _BARE_KEY.match(s, i)
            if not m:
                return None
            parts.append(m.group())
            i = m.end()
        i = _skip_ws(s, i)
        if i < len(s) and s[i] == ".":
            i += 1
            continue
        return parts, i


class _ValueScanner:
    """Follows a TOML value over line ends (multi-line strings, arrays), so
    that lines inside a value are not taken for keys or table headers."""

    def __init__(self) -> None:
        self.depth = 0  # open [ and {
        self.multiline: str | None = None  # '"""' or "'''" while inside one

    @property
    def busy(self) -> bool:
        return self.depth > 0 or self.multiline is not None

    def feed(self, line: str, i: int) -> None:
        n = len(line)
        while i < n:
            if self.multiline is not None:
                delim = self.multiline
                if delim == '"""' and line[i] == "\\":
                    i += 2
                    continue
                if line.startswith(delim, i):
                    run = i
                    while run < n and line[run] == delim[0]:
                        run += 1
                    self.multiline = None
                    i = run
                    continue
                i += 1
                continue
            c = line[i]
            if c == "#":
                return
            if c in "[{":
                self.depth += 1
            elif c in "]}":
                self.depth -= 1
            elif c in "\"'":
                if line.startswith(c * 3, i):
                    self.multiline = c * 3
                    i += 3
                    continue
                j = i + 1
                while j < n and line[j] != c:
                    j += 2 if (c == '"' and line[j] == "\\") else 1
                i = j
            i += 1


def _key_positions(text: str) -> dict[Path_, tuple[int, int, int]]:
    """For each table header and `key =` line of a valid TOML document, the
    full path it defines and its (line, col, length); the first one wins."""
    positions: dict[Path_, tuple[int, int, int]] = {}
    current: Path_ = ()
    scanner = _ValueScanner()
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if scanner.busy:
            scanner.feed(line, 0)
            continue
        i = _skip_ws(line, 0)
        if i >= len(line) or line[i] == "#":
            continue
        if line[i] == "[":
            double = line.startswith("[[", i)
            found = _scan_key(line, i + (2 if double else 1))
            if found is not None:
                current = tuple(found[0])
                end = line.find("]", found[1])
                length = (end + (2 if double else 1) - i) if end >= 0 else len(line) - i
                for k in range(1, len(current) + 1):  # and the tables it implies
                    positions.setdefault(current[:k], (lineno, i + 1, max(1, length)))
            continue
        found = _scan_key(line, i)
        if found is None:
            continue
        parts, j = found
        eq = _skip_ws(line, j)
        if eq >= len(line) or line[eq] != "=":
            continue
        full = current + tuple(parts)
        for k in range(len(current) + 1, len(full) + 1):
            positions.setdefault(full[:k], (lineno, i + 1, max(1, len(line[i:j].rstrip()))))
        scanner.feed(line, eq + 1)
    return positions


# ---------------------------------------------------------------------------
# Checking the document


def _fmt_path(path: Path_) -> str:
    return ".".join(p if _BARE_KEY.fullmatch(p) else json.dumps(p, ensure_ascii=False) for p in path)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, datetime.datetime):
        return "datetime"
    if isinstance(value, datetime.date):
        return "date"
    if isinstance(value, datetime.time):
        return "time"
    return type(value).__name__


def _quote(value: str, limit: int = 60) -> str:
    if len(value) > limit:
        value = value[:limit] + "..."
    return json.dumps(value, ensure_ascii=False)


def _one_of(choices: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in choices)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class _Checker:
    """Collects diagnostics; each helper reports and returns None on a bad value."""

    def __init__(self, file: str, positions: dict[Path_, tuple[int, int, int]]) -> None:
        self.file = file
        self.positions = positions
        self.diags: list[Diagnostic] = []

    def locate(self, path: Path_) -> tuple[int, int, int]:
        for n in range(len(path), 0, -1):
            if path[:n] in self.positions:
                return self.positions[path[:n]]
        return 1, 1, 1

    def error(self, path: Path_, message: str, hint: str | None = None, secret: bool = False) -> None:
        """`secret`: the line may hold a credential, so it is not quoted under the message."""
        line, col, length = self.locate(path)
        text = f"{_fmt_path(path)}: {message}" if path else message
        self.diags.append(Diagnostic(self.file, line, col, text, hint=hint, length=length, show_source=not secret))

    def mark(self) -> int:
        return len(self.diags)

    def clean_since(self, mark: int) -> bool:
        return len(self.diags) == mark

    # -- shapes

    def table(self, value: Any, path: Path_) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.error(path, f"expected a table, got {_type_name(value)}")
        return None

    def unknown_fields(self, table: Mapping[str, Any], known: tuple[str, ...], path: Path_) -> None:
        for key in table:
            if key in known:
                continue
            close = difflib.get_close_matches(key, known, n=1)
            if close:
                self.error(path + (key,), f"unknown field (did you mean '{close[0]}'?)")
            else:
                self.error(path + (key,), "unknown field", hint="known fields: " + ", ".join(known))

    def missing(self, table: Mapping[str, Any], key: str, path: Path_, hint: str | None = None) -> bool:
        if key in table:
            return False
        self.error(path, f"missing required field '{key}'", hint=hint)
        return True

    # -- scalars (the key is known to be in the table)

    def string(self, value: Any, path: Path_, allow_empty: bool = False) -> str | None:
        if not isinstance(value, str):
            self.error(path, f"expected a string, got {_type_name(value)}")
            return None
        if not allow_empty and not value.strip():
            self.error(path, "expected a non-empty string")
            return None
        return value

    def choice(self, value: Any, path: Path_, choices: tuple[str, ...]) -> str | None:
        text = self.string(value, path, allow_empty=True)
        if text is None:
            return None
        if text not in choices:
            close = difflib.get_close_matches(text, choices, n=1)
            self.error(
                path, f"expected one of {_one_of(choices)}, got {_quote(text)}",
                hint=f'did you mean "{close[0]}"?' if close else None,
            )
            return None
        return text

    def integer(self, value: Any, path: Path_, minimum: int) -> int | None:
        if not isinstance(value, int) or isinstance(value, bool):
            self.error(path, f"expected an integer, got {_type_name(value)}")
            return None
        if value < minimum:
            self.error(path, f"expected an integer >= {minimum}, got {value}")
            return None
        return value

    def number(self, value: Any, path: Path_, *, positive: bool) -> float | None:
        """A finite int or float, > 0 when `positive`, else >= 0."""
        if not _is_number(value):
            self.error(path, f"expected a number, got {_type_name(value)}")
            return None
        bound = "> 0" if positive else ">= 0"
        if not math.isfinite(value):
            self.error(path, f"expected a finite number {bound}, got {value!r}")
            return None
        if value < 0 or (positive and value == 0):
            self.error(path, f"expected a number {bound}, got {value!r}")
            return None
        return float(value)

    def url(self, value: Any, path: Path_) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        if not _is_http_url(text):
            # Not echoed: a URL may carry credentials (https://user:pass@host).
            self.error(path, "expected an http:// or https:// URL", hint='for example "https://api.example.com/v1"')
            return None
        return text

    def string_table(self, value: Any, path: Path_, allow_empty_values: bool = False) -> dict[str, str] | None:
        table = self.table(value, path)
        if table is None:
            return None
        out: dict[str, str] = {}
        ok = True
        for key, item in table.items():
            text = self.string(item, path + (key,), allow_empty=allow_empty_values)
            if text is None:
                ok = False
            else:
                out[key] = text
        return out if ok else None


def _check_manifest(ck: _Checker, doc: dict[str, Any], path: Path) -> Manifest | None:
    base = path.parent
    ck.unknown_fields(doc, TOP_FIELDS, ())

    name = version = None
    entry: Path | None = None
    if "project" not in doc:
        ck.error((), "missing required table [project]",
                 hint='start the manifest with [project] and its name, version and entry')
    elif (project := ck.table(doc["project"], ("project",))) is not None:
        p: Path_ = ("project",)
        ck.unknown_fields(project, PROJECT_FIELDS, p)
        for key in PROJECT_FIELDS:
            ck.missing(project, key, p)
        if "name" in project:
            name = ck.string(project["name"], p + ("name",))
        if "version" in project:
            version = ck.string(project["version"], p + ("version",))
        if "entry" in project:
            text = ck.string(project["entry"], p + ("entry",))
            if text is not None:
                entry = Path(os.path.normpath(base / text))

    pricing: dict[str, Pricing] = {}
    if "pricing" in doc:
        pricing = _check_pricing(ck, doc["pricing"], ("pricing",)) or {}

    connections: dict[str, ConnectionConfig] = {}
    if "connections" in doc:
        table = ck.table(doc["connections"], ("connections",))
        for cname, value in (table or {}).items():
            config = _check_connection(ck, value, ("connections", cname), base)
            if config is not None:
                connections[cname] = config
    for config in connections.values():
        config.pricing = {**pricing, **config.pricing}  # the connection's own prices win

    mcp: dict[str, dict[str, Any]] = {}
    if "mcp" in doc:
        table = ck.table(doc["mcp"], ("mcp",))
        for sname, value in (table or {}).items():
            server = _check_mcp(ck, value, ("mcp", sname))
            if server is not None:
                mcp[sname] = server

    permissions = Permissions()
    if "permissions" in doc:
        credentials = Manifest(path=path, name="", version="", entry=path, connections=connections,
                               mcp=mcp).credential_variables()
        permissions = _check_permissions(ck, doc["permissions"], ("permissions",), credentials) or permissions

    if name is None or version is None or entry is None:
        return None
    return Manifest(path=path, name=name, version=version, entry=entry,
                    connections=connections, pricing=pricing, mcp=mcp, permissions=permissions)


_ENV_PATTERN = re.compile(r"[^=\0]+")


def _check_permissions(ck: _Checker, value: Any, path: Path_, credentials: dict[str, str]) -> Permissions | None:
    t = ck.table(value, path)
    if t is None:
        return None
    mark = ck.mark()
    ck.unknown_fields(t, PERMISSION_FIELDS, path)
    env: list[str] = []
    if "env" in t:
        p = path + ("env",)
        items = t["env"]
        if not isinstance(items, list):
            ck.error(p, f"expected an array of variable names or patterns, got {_type_name(items)}",
                     hint='for example env = ["HOME", "APP_*"]')
        else:
            for i, item in enumerate(items):
                if not isinstance(item, str) or not item:
                    ck.error(p, f"item {i}: expected a variable name or pattern, got "
                                f"{_type_name(item) if not isinstance(item, str) else 'an empty string'}")
                elif not _ENV_PATTERN.fullmatch(item):
                    ck.error(p, f"item {i}: {_quote(item)} is not a variable name or pattern")
                elif item in credentials:
                    ck.error(p, f"item {i}: {item} is {credentials[item]}; program code never reads credentials",
                             hint="models read the key themselves; remove it from [permissions] env")
                else:
                    env.append(item)
    return Permissions(env=env) if ck.clean_since(mark) else None


def _check_pricing(ck: _Checker, value: Any, path: Path_) -> dict[str, Pricing] | None:
    table = ck.table(value, path)
    if table is None:
        return None
    out: dict[str, Pricing] = {}
    for model, entry in table.items():
        p = path + (model,)
        prices = ck.table(entry, p)
        if prices is None:
            continue
        ck.unknown_fields(prices, PRICING_FIELDS, p)
        got: dict[str, float] = {}
        for key in PRICING_FIELDS:
            if ck.missing(prices, key, p, hint="prices are US dollars per million tokens"):
                continue
            number = ck.number(prices[key], p + (key,), positive=False)
            if number is not None:
                got[key] = number
        if len(got) == len(PRICING_FIELDS):
            out[model] = Pricing(**got)
    return out


def _check_connection(ck: _Checker, value: Any, path: Path_, base: Path) -> ConnectionConfig | None:
    t = ck.table(value, path)
    if t is None:
        return None
    mark = ck.mark()
    ck.unknown_fields(t, CONNECTION_FIELDS, path)

    provider = None
    if not ck.missing(t, "provider", path, hint=f"one of {_one_of(PROVIDERS)}"):
        provider = ck.choice(t["provider"], path + ("provider",), PROVIDERS)
        if provider is not None and provider not in SUPPORTED_PROVIDERS:
            ck.error(path + ("provider",),
                     f'provider "{provider}" is not supported by this runtime yet '
                     f"(supported: {', '.join(SUPPORTED_PROVIDERS)})")

    kw: dict[str, Any] = {}
    if "api_key_env" in t:
        text = ck.string(t["api_key_env"], path + ("api_key_env",))
        if text is not None and not _ENV_NAME.fullmatch(text):
            # Not echoed: this is where a pasted key would end up.
            ck.error(path + ("api_key_env",),
                     'expected the name of an environment variable, such as "OPENAI_API_KEY"',
                     hint="the manifest names the variable; put the key itself in the environment or in .env",
                     secret=True)
        elif text is not None and provider != "mock":  # allowed but ignored for mock
            kw["api_key_env"] = text
    elif provider in KEY_REQUIRED_PROVIDERS:
        ck.missing(t, "api_key_env", path,
                   hint=f'provider "{provider}" reads its API key from the environment variable named here')

    if "base_url" in t:
        kw["base_url"] = _check_base_url(ck, t["base_url"], path)
    for key in ("default_model", "organization", "project"):
        if key in t:
            kw[key] = ck.string(t[key], path + (key,))
    if "timeout" in t:
        kw["timeout"] = ck.number(t["timeout"], path + ("timeout",), positive=True)
    if "headers" in t:
        kw["headers"] = _check_headers(ck, t["headers"], path + ("headers",))
    if "headers_env" in t:
        kw["headers_env"] = _check_headers_env(ck, t["headers_env"], path, t.get("headers"))
    if "max_response_bytes" in t:
        kw["max_response_bytes"] = ck.integer(t["max_response_bytes"], path + ("max_response_bytes",), 1)
    if "stream_idle_timeout" in t:
        kw["stream_idle_timeout"] = ck.number(t["stream_idle_timeout"], path + ("stream_idle_timeout",), positive=True)
    if "retry" in t:
        kw["retry"] = _check_retry(ck, t["retry"], path + ("retry",))
    if "rate_limit" in t:
        kw["rate_limit"] = _check_rate_limit(ck, t["rate_limit"], path + ("rate_limit",))
    if "models" in t:
        kw["models"] = ck.string_table(t["models"], path + ("models",))
    if "pricing" in t:
        kw["pricing"] = _check_pricing(ck, t["pricing"], path + ("pricing",))
    if "replies" in t:
        text = ck.string(t["replies"], path + ("replies",))
        if provider is not None and provider != "mock":
            ck.error(path + ("replies",), 'only allowed with provider "mock"')
        elif text is not None:
            kw["replies"] = os.path.normpath(base / text)

    if provider is None or not ck.clean_since(mark):
        return None
    return ConnectionConfig(provider=provider, **{k: v for k, v in kw.items() if v is not None})


def _check_headers(ck: _Checker, value: Any, path: Path_) -> dict[str, str] | None:
    headers = ck.string_table(value, path, allow_empty_values=True)
    if headers is None:
        return None
    ok = True
    for key, text in headers.items():
        if not _HEADER_NAME.fullmatch(key):
            ck.error(path + (key,), "not a valid HTTP header name")
            ok = False
        if "\r" in text or "\n" in text:  # values are not echoed: they may be credentials
            ck.error(path + (key,), "a header value cannot contain a line break", secret=True)
            ok = False
        elif credential_header(key, text):
            # Rule in concerto/ir/credentials.py; the value is not echoed.
            conn = _fmt_path(path[:-1])
            ck.error(path + (key,), "a literal credential in Concerto.toml; keys come from the environment",
                     hint=f"put the value in an environment variable and name it instead: "
                          f"[{conn}.headers_env] {json.dumps(key)} = \"MY_VARIABLE\"", secret=True)
            ok = False
    return headers if ok else None


def _check_headers_env(ck: _Checker, value: Any, conn: Path_, literal: Any) -> dict[str, str] | None:
    """[connections.X.headers_env]: header name -> the environment variable holding its value."""
    path = conn + ("headers_env",)
    table = ck.string_table(value, path)
    if table is None:
        return None
    ok = True
    literal_names = {k.lower() for k in literal} if isinstance(literal, dict) else set()
    for key, var in table.items():
        if not _HEADER_NAME.fullmatch(key):
            ck.error(path + (key,), "not a valid HTTP header name")
            ok = False
        if not _ENV_NAME.fullmatch(var):
            # Not echoed: this is where a pasted secret would end up.
            ck.error(path + (key,), 'expected the name of an environment variable, such as "AZURE_API_KEY"',
                     hint="headers_env names the variable; put the value itself in the environment or in .env",
                     secret=True)
            ok = False
        if key.lower() in literal_names:
            ck.error(path + (key,), f"header {json.dumps(key)} is also set in [{_fmt_path(conn)}.headers]")
            ok = False
    return table if ok else None


def _check_base_url(ck: _Checker, value: Any, conn: Path_) -> str | None:
    path = conn + ("base_url",)
    url = ck.url(value, path)
    if url is None:
        return None
    found = url_credentials(url)
    if found:
        ck.error(path, f"the URL carries a credential ({', '.join(found)}); keys come from the environment",
                 hint=f"name the variable holding the key with api_key_env, or send it as a header with "
                      f"[{_fmt_path(conn)}.headers_env]", secret=True)
        return None
    return url


def _check_retry(ck: _Checker, value: Any, path: Path_) -> RetryConfig | None:
    t = ck.table(value, path)
    if t is None:
        return None
    mark = ck.mark()
    ck.unknown_fields(t, RETRY_FIELDS, path)
    retry = RetryConfig()
    if "max_attempts" in t and (n := ck.integer(t["max_attempts"], path + ("max_attempts",), 1)) is not None:
        retry.max_attempts = n
    if "backoff" in t and (b := ck.choice(t["backoff"], path + ("backoff",), BACKOFFS)) is not None:
        retry.backoff = b
    initial_ok = max_ok = True
    if "initial_delay_ms" in t:
        n = ck.integer(t["initial_delay_ms"], path + ("initial_delay_ms",), 0)
        initial_ok = n is not None
        if n is not None:
            retry.initial_delay_ms = n
    if "max_delay_ms" in t:
        n = ck.integer(t["max_delay_ms"], path + ("max_delay_ms",), 0)
        max_ok = n is not None
        if n is not None:
            retry.max_delay_ms = n
    if "max_retry_after_ms" in t:
        n = ck.integer(t["max_retry_after_ms"], path + ("max_retry_after_ms",), 0)
        if n is not None and n > MAX_RETRY_AFTER_MS:
            ck.error(path + ("max_retry_after_ms",), f"expected an integer <= {MAX_RETRY_AFTER_MS} (5 minutes), got {n}")
        elif n is not None:
            retry.max_retry_after_ms = n
    if initial_ok and max_ok and retry.max_delay_ms < retry.initial_delay_ms:
        if "max_delay_ms" in t:
            ck.error(path + ("max_delay_ms",),
                     f"expected an integer >= initial_delay_ms ({retry.initial_delay_ms}), got {retry.max_delay_ms}")
        else:
            ck.error(path + ("initial_delay_ms",),
                     f"expected an integer <= max_delay_ms ({retry.max_delay_ms}, the default), "
                     f"got {retry.initial_delay_ms}", hint="set max_delay_ms too")
    return retry if ck.clean_since(mark) else None


def _check_rate_limit(ck: _Checker, value: Any, path: Path_) -> RateLimitConfig | None:
    t = ck.table(value, path)
    if t is None:
        return None
    mark = ck.mark()
    ck.unknown_fields(t, RATE_LIMIT_FIELDS, path)
    limits = RateLimitConfig()
    for key in RATE_LIMIT_FIELDS:
        if key in t:
            setattr(limits, key, ck.integer(t[key], path + (key,), 1))
    return limits if ck.clean_since(mark) else None


def _check_mcp(ck: _Checker, value: Any, path: Path_) -> dict[str, Any] | None:
    t = ck.table(value, path)
    if t is None:
        return None
    mark = ck.mark()
    ck.unknown_fields(t, MCP_FIELDS, path)
    transport = None
    if not ck.missing(t, "transport", path, hint=f"one of {_one_of(MCP_TRANSPORTS)}"):
        transport = ck.choice(t["transport"], path + ("transport",), MCP_TRANSPORTS)
    wants = {"stdio": ("command",), "sse": ("url",)}
    only = {"command": "stdio", "args": "stdio", "env": "stdio", "url": "sse"}
    if transport is not None:
        for key in wants[transport]:
            ck.missing(t, key, path, hint=f'transport "{transport}" needs it')
        for key, needs in only.items():
            if key in t and needs != transport:
                ck.error(path + (key,), f'only used with transport "{needs}"')
    if "command" in t:
        ck.string(t["command"], path + ("command",))
    if "args" in t:
        args = t["args"]
        if not isinstance(args, list):
            ck.error(path + ("args",), f"expected an array of strings, got {_type_name(args)}")
        else:
            for i, item in enumerate(args):
                if not isinstance(item, str):
                    ck.error(path + ("args",), f"item {i}: expected a string, got {_type_name(item)}")
    if "env" in t:
        ck.string_table(t["env"], path + ("env",), allow_empty_values=True)
    if "url" in t:
        ck.url(t["url"], path + ("url",))
    if "timeout" in t:
        ck.number(t["timeout"], path + ("timeout",), positive=True)
    return dict(t) if ck.clean_since(mark) else None


# ---------------------------------------------------------------------------
# .env files


def load_dotenv(
    path: str | os.PathLike[str],
    environ: MutableMapping[str, str] | None = None,
    override: bool = False,
) -> list[Diagnostic]:
    """Set the variables of a `.env` file in `environ` (os.environ by default).
    Variables already set are kept unless `override`. The well-formed lines
    are applied even when others are malformed; those come back as diagnostics."""
    env = os.environ if environ is None else environ
    path = Path(path)
    file = str(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        return [Diagnostic(file, 0, 0, f"cannot read .env file: {e.strerror or e}")]
    text, bad = _decode(file, data, ".env file")
    if bad is not None:
        return [bad]
    values, diags = parse_dotenv(text, file)
    for key, value in values.items():
        if override or key not in env:
            env[key] = value
    return diags


_DOTENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXPORT = re.compile(r"export[ \t]+(?=[A-Za-z_])")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def parse_dotenv(text: str, file: str = ".env") -> tuple[dict[str, str], list[Diagnostic]]:
    """`KEY=value` lines: `export KEY=value`, `#` comments (a trailing one
    needs a space before it on an unquoted value), blank lines, 'literal' and
    "escaped" values (\\n \\t \\r \\" \\\\; a quoted value may span lines).
    The last definition of a key wins. No `${VAR}` expansion. Diagnostics
    never quote a value, and name a key only once its `=` has been seen."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
    values: dict[str, str] = {}
    diags: list[Diagnostic] = []

    def where(offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(starts, offset)
        return line, offset - starts[line - 1] + 1

    def report(offset: int, message: str, hint: str | None = None) -> None:
        line, col = where(offset)
        diags.append(Diagnostic(file, line, col, message, hint=hint))

    def line_end(offset: int) -> int:
        end = text.find("\n", offset)
        return len(text) if end < 0 else end

    pos = 0
    while pos < len(text):
        eol = line_end(pos)
        i = pos
        while i < eol and text[i] in " \t":
            i += 1
        if i == eol or text[i] == "#":
            pos = eol + 1
            continue
        if m := _EXPORT.match(text, i, eol):
            i = m.end()
        km = _DOTENV_KEY.match(text, i, eol)
        j = km.end() if km else i
        while j < eol and text[j] in " \t":
            j += 1
        if km is None or j >= eol or text[j] != "=":
            # Not echoed: a line without `=` may be a pasted secret.
            report(j if km else i, "malformed line: expected NAME=value",
                   hint="names use letters, digits and '_' and do not start with a digit")
            pos = eol + 1
            continue
        key = km.group()
        j += 1
        v = j
        while v < eol and text[v] in " \t":
            v += 1
        if v == eol or (text[v] == "#" and v > j):  # empty, or only a comment
            values[key] = ""
            pos = eol + 1
            continue
        quote = text[v]
        if quote not in "'\"":
            raw = text[v:eol]
            if c := re.search(r"[ \t]#", raw):
                raw = raw[: c.start()]
            values[key] = raw.rstrip(" \t")
            pos = eol + 1
            continue
        # A quoted value: find its closing quote, possibly on a later line.
        k = v + 1
        buf: list[str] = []
        closed = False
        while k < len(text):
            ch = text[k]
            if ch == quote:
                closed = True
                break
            if quote == '"' and ch == "\\" and k + 1 < len(text):
                nxt = text[k + 1]
                buf.append(_ESCAPES.get(nxt, "\\" + nxt))
                k += 2
                continue
            buf.append(ch)
            k += 1
        if not closed:
            report(v, f"unterminated quoted value for {key}", hint=f"close it with {quote}")
            pos = eol + 1  # take only this line as broken and go on with the next
            continue
        end = line_end(k)
        tail = text[k + 1: end]
        stripped = tail.lstrip(" \t")
        if stripped and not stripped.startswith("#"):
            report(k + 1 + (len(tail) - len(stripped)), f"unexpected text after the quoted value of {key}",
                   hint="quote the whole value, or add a space before a # comment")
        else:
            values[key] = "".join(buf)
        pos = end + 1
    return values, diags
