"""What a program may read of the environment (std::env).

Reading the environment is a permission. The host grants names, or glob
patterns of names, and every read by program code goes through one
`EnvironmentGate` (the machine's `RunConfig.environment`), so the future
effect journal has exactly one place to record it.

    EnvironmentGate.build(source, allow=["HOME", "APP_*"], deny=[...], hidden={...})

* `allow`: patterns in fnmatch syntax, matched case-sensitively against the
  whole name: `*` any run of characters, `?` one character, `[abc]` / `[!abc]`
  one of / none of. Nothing is readable unless a pattern allows it.
* `hidden`: names that are never readable, with the reason (the API-key and
  secret-header variables of the program's connections, the variables passed
  to its MCP servers). A pattern that happens to match one does not reveal
  it; naming one exactly is refused when the gate is built.
* `deny`: more patterns that are never readable (RuntimeConfig.deny_env).

A read of a name that is not allowed behaves as if the variable were unset
(`env::get` -> None, `env::has` -> false); `env::require` says why, and the
first denied read of each name logs a warning naming the permission. Neither
reveals whether the variable is set.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any

from concerto import ir

GRANT_HINT = "allow it with --allow-env NAME, `env = [...]` under [permissions] in Concerto.toml, " \
             "or RuntimeConfig.allow_env"


class EnvPermissionError(Exception):
    """A grant that cannot be honoured (bad pattern, or an exact grant of a
    hidden variable). The message names the offending entry."""


def _check_pattern(pattern: Any, where: str) -> str:
    if not isinstance(pattern, str) or not pattern:
        raise EnvPermissionError(f"{where}: expected a variable name or pattern, got {pattern!r}")
    if "=" in pattern or "\0" in pattern:
        raise EnvPermissionError(f"{where}: {pattern!r} is not a variable name or pattern (`=` or NUL)")
    return pattern


def _matcher(patterns: Iterable[str]) -> Any:
    """One compiled regex for all patterns (None when there are none)."""
    parts = [fnmatch.translate(p) for p in patterns]
    if not parts:
        return None
    return re.compile("|".join(f"(?:{p})" for p in parts))


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


class EnvironmentGate:
    """The environment as program code sees it. Build it with `build`."""

    def __init__(self, source: Mapping[str, str], allow: tuple[str, ...], deny: tuple[str, ...],
                 hidden: Mapping[str, str]) -> None:
        self._source = source
        self.allow = allow
        self.deny = deny
        self.hidden = dict(hidden)
        self._allowed = _matcher(allow)
        self._denied = _matcher(deny)
        self._warned: set[str] = set()

    @classmethod
    def build(cls, source: Mapping[str, str], allow: Iterable[str] = (), deny: Iterable[str] = (),
              hidden: Mapping[str, str] | None = None, where: str = "allow_env") -> "EnvironmentGate":
        """Check the grants and build the gate; raises EnvPermissionError."""
        hidden = dict(hidden or {})
        allow_t = tuple(_check_pattern(p, where) for p in allow)
        deny_t = tuple(_check_pattern(p, "deny_env") for p in deny)
        for pattern in allow_t:
            if not is_glob(pattern) and pattern in hidden:
                raise EnvPermissionError(f"{where}: {pattern} cannot be allowed: it is {hidden[pattern]}, "
                                         "and program code never reads credentials")
        return cls(source, allow_t, deny_t, hidden)

    @classmethod
    def closed(cls) -> "EnvironmentGate":
        """Nothing readable (a machine run without a host that granted anything)."""
        return cls({}, (), (), {})

    # -- what program code may see ------------------------------------------
    def readable(self, name: str) -> bool:
        if name in self.hidden or self._allowed is None or not self._allowed.fullmatch(name):
            return False
        return self._denied is None or not self._denied.fullmatch(name)

    def get(self, name: str) -> str | None:
        """The value of `name`, or None when it is unset or not readable."""
        if not self.readable(name):
            return None
        return self._source.get(name)

    def visible(self) -> dict[str, str]:
        """Every readable variable that is set, sorted by name."""
        if self._allowed is None:
            return {}
        return {k: v for k, v in sorted(self._source.items()) if self.readable(k)}

    def denial(self, name: str) -> str:
        """Why `name` is not readable (for messages; never says whether it is set)."""
        if name in self.hidden:
            return f"environment variable {name} is not readable: it is {self.hidden[name]}"
        return f"environment variable {name} is not allowed: {GRANT_HINT.replace('NAME', name)}"

    def first_denial(self, name: str) -> bool:
        """True the first time a denied `name` is read in this run (to warn once)."""
        if name in self._warned:
            return False
        self._warned.add(name)
        return True


def secret_variables(program: ir.Program) -> dict[str, str]:
    """The environment variables of a program that hold credentials, with why:
    its connections' api_key_env and headers_env, and what its MCP servers get."""
    out: dict[str, str] = {}
    for conn in program.connections:
        config = conn.config
        if config.api_key_env:
            out.setdefault(config.api_key_env, f"the API key of connection `{conn.name}`")
        for header, var in (getattr(config, "headers_env", None) or {}).items():
            out.setdefault(var, f"the {header} header of connection `{conn.name}`")
    for server in program.mcp_connections:
        for server_var, var in (server.env or {}).items():
            out.setdefault(var, f"passed to MCP server `{server.name}` as {server_var}")
    return out
