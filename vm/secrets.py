"""Secrets at run time: deciding where a key may go, and redacting the exact
secret values a run knows. (Recognising a literal credential in a manifest
or IR file is concerto/ir/credentials.py.)

* Where a key may go (`HostPolicy`). A connection that sends a credential (an
  api_key_env key, a host-supplied key, or a `headers_env` header) may send it
  only to its provider's default host, to a host named by a `base_url` of the
  local Concerto.toml, to a host the host application itself supplied as a
  ConnectionOverride.base_url, or to one allowed with `--allow-host` /
  `RuntimeConfig.allowed_hosts`.

* Redaction (`Redactor`). The exact values of every `api_key_env` key,
  host-supplied key and `headers_env` header a run can read are replaced by
  `[redacted]` wherever text leaves the run. Besides the raw value the
  Redactor also matches its percent-encoded, JSON-escaped and base64
  (standard and URL-safe) forms. Values shorter than MIN_SECRET_LENGTH are
  not treated as secrets: redacting every "abc" would mangle output and no
  real credential is that short.

This module imports only the standard library and the IR Structs.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

from concerto import ir

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 8

# The default hosts of the providers that need a key (host:port).
DEFAULT_HOSTS = {
    "openai": "api.openai.com:443",
    "anthropic": "api.anthropic.com:443",
    "ollama": "localhost:11434",
}

# ---------------------------------------------------------------------------
# Where a key may go


def host_port(url: str) -> str | None:
    """"host:port" of an http(s) URL, lower-case, the scheme's port filled in."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.scheme not in ("http", "https"):
        return None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return f"{_bracketed(host)}:{port}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_allowed_host(text: str) -> str:
    """`--allow-host` value -> "host" or "host:port" (lower-case). A URL is
    reduced to its host and port. ValueError names what is wrong."""
    text = text.strip()
    if "://" in text:
        found = host_port(text)
        if found is None:
            raise ValueError(f"{text!r} is not an http(s) URL or a host name")
        return found
    probe = host_port(f"http://{text}/")
    if probe is None or "/" in text or "@" in text:
        raise ValueError(f"{text!r} is not a host name (HOST or HOST:PORT)")
    # An entry without a port stands for the host on every port.
    return probe if _has_port(text) else probe.rsplit(":", 1)[0]


def _has_port(text: str) -> bool:
    return bool(re.search(r":\d+$", text)) and not (text.count(":") > 1 and not text.startswith("["))


@dataclass(frozen=True)
class HostPolicy:
    """The hosts a credential may be sent to besides its provider's default
    host. Entries are "host:port" (that port only) or "host" (any port)."""

    allowed: frozenset[str] = frozenset()

    def permits(self, provider: str, url: str) -> bool:
        target = host_port(url)
        if target is None:
            return False
        if DEFAULT_HOSTS.get(provider) == target:
            return True
        return target in self.allowed or target.rsplit(":", 1)[0] in self.allowed


def connection_hosts(configs: Iterable[ir.ConnectionConfig]) -> set[str]:
    """host:port of every base_url among these connection settings."""
    return {hp for c in configs if c.base_url and (hp := host_port(c.base_url))}


# ---------------------------------------------------------------------------
# Redaction


def run_secrets(connections: Iterable[ir.ConnectionDef], environ: Mapping[str, str],
                override_keys: Iterable[str | None] = ()) -> list[str]:
    """Every secret value a run can read: the keys named by api_key_env, the
    values of headers_env variables, and keys the host passed in."""
    found: list[str] = []
    for conn in connections:
        names = ([conn.config.api_key_env] if conn.config.api_key_env else []) + list(conn.config.headers_env.values())
        found.extend(v for name in names if (v := environ.get(name)))
    found.extend(k for k in override_keys if k)
    return found


class Redactor:
    """Replaces the exact secret values it holds (and their encoded forms)
    with `[redacted]`. An empty Redactor is falsy and leaves text alone."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
                continue
            forms.update(_encoded_forms(secret))
        # Longest first, so a form that contains another is replaced whole.
        ordered = sorted((f for f in forms if len(f) >= MIN_SECRET_LENGTH), key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        if self._pattern is None or not isinstance(text, str):
            return text
        return self._pattern.sub(REDACTED, text)

    def data(self, obj: Any) -> Any:
        """JSON-shaped data (dicts, lists, strings, numbers) with every string redacted."""
        if self._pattern is None:
            return obj
        return self._walk_data(obj)

    def _walk_data(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self._pattern.sub(REDACTED, obj)  # type: ignore[union-attr]
        if isinstance(obj, list):
            return [self._walk_data(v) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self._walk_data(v) for v in obj)
        if isinstance(obj, dict):
            return {self._walk_data(k): self._walk_data(v) for k, v in obj.items()}
        return obj

    def value(self, value: Any) -> Any:
        """A Concerto value with every string in it redacted; the value itself
        when nothing changes (no copy on the common path)."""
        if self._pattern is None:
            return value
        from concerto.vm.values import EnumValue, Err, Ok, Some, StructValue

        def walk(v: Any) -> Any:
            t = type(v)
            if t is str:
                return self._pattern.sub(REDACTED, v)  # type: ignore[union-attr]
            if t is list:
                items = [walk(x) for x in v]
                return items if any(a is not b for a, b in zip(items, v)) else v
            if t is tuple:
                items = [walk(x) for x in v]
                return tuple(items) if any(a is not b for a, b in zip(items, v)) else v
            if t is dict:
                pairs = [(walk(k), walk(x)) for k, x in v.items()]
                changed = any(a is not k or b is not x for (a, b), (k, x) in zip(pairs, v.items()))
                return dict(pairs) if changed else v
            if t is StructValue:
                fields = walk(v.fields)
                return v if fields is v.fields else StructValue(v.type_name, fields)
            if t is EnumValue:
                data = walk(v.data)
                return v if data is v.data else EnumValue(v.enum_name, v.variant, data)
            if t in (Some, Ok, Err):
                inner = walk(v.value)
                return v if inner is v.value else t(inner)
            return v

        return walk(value)


def _encoded_forms(secret: str) -> set[str]:
    raw = secret.encode("utf-8")
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        json.dumps(secret, ensure_ascii=True)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    for encoded in (base64.b64encode(raw).decode("ascii"), base64.urlsafe_b64encode(raw).decode("ascii")):
        forms.update((encoded, encoded.rstrip("=")))  # with its padding when present, else without
    return forms
