"""Literal credentials: the one rule for "this value is a key", shared by
the manifest checks (compiler/manifest.py) and the IR loader, so a key can
reach neither a `.conc-ir` file nor a connection's literal settings.

A header in `[connections.X.headers]` is taken for a literal credential when
  - its name contains auth, key, token, secret, passw, pwd, cookie,
    signature, credential or session (any case), and its value is not
    empty; or
  - its value starts with an auth scheme (`Bearer `, `Basic `, `Token `,
    `Digest `, ...), or with a well-known key prefix (`sk-`, `sk_`, `ghp_`,
    `github_pat_`, `xox?-`, `AKIA`, `AIza`, `glpat-`, `eyJ` + a dot, the
    start of a JWT); or
  - its value has a "random-looking" segment: split on - _ . : / + = , ; and
    spaces, some segment of 16 or more characters mixes letters and digits
    (an Azure key is 32 hex digits, an OpenAI key a long alphanumeric run;
    `2023-06-01` or `prompt-caching-2024-07-31` are not).
A base_url carries a credential when it has user info (`user:pass@` or
`token@`) or a query parameter whose name matches the list above or whose
value looks like a credential by the value rules (`?api-version=...` is fine).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from concerto.ir import format as ir

_CREDENTIAL_NAME = re.compile(r"auth|key|token|secret|passw|pwd|cookie|signature|credential|session|^sig$",
                              re.IGNORECASE)
_AUTH_SCHEME = re.compile(
    r"(?i)^\s*(bearer|basic|token|digest|negotiate|apikey|api-key|sharedaccesssignature|aws4-hmac-sha256)\s+\S")
_KEY_PREFIX = re.compile(
    r"^\s*(sk-|sk_|rk_|ghp_|gho_|ghs_|ghu_|github_pat_|xox[abposr]-|AKIA[0-9A-Z]{12}|AIza|glpat-|eyJ[\w-]+\.)")
_SEGMENT_SPLIT = re.compile(r"[-_.:/+=,;\s]+")
_LONG_SEGMENT = 16


def credential_name(name: str) -> bool:
    """A header or query parameter name that says it carries a credential."""
    return bool(_CREDENTIAL_NAME.search(name))


def credential_value(value: str) -> bool:
    """A value shaped like a credential, whatever it is called (module doc)."""
    if _AUTH_SCHEME.match(value) or _KEY_PREFIX.match(value):
        return True
    for segment in _SEGMENT_SPLIT.split(value):
        if len(segment) >= _LONG_SEGMENT and any(c.isdigit() for c in segment) \
                and any(c.isalpha() for c in segment):
            return True
    return False


def credential_header(name: str, value: str) -> bool:
    """Is `name: value` in a connection's literal headers a credential?"""
    return (credential_name(name) and bool(value.strip())) or credential_value(value)


def url_credentials(url: str) -> list[str]:
    """What in `url` is a credential, described without its value: "user
    info (user:password@)", "query parameter `key`". Empty when clean."""
    try:
        parts = urlsplit(url)
        has_userinfo = parts.username is not None or parts.password is not None
    except ValueError:
        return []
    found = []
    if has_userinfo or "@" in parts.netloc:
        found.append("user info (user:password@)")
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if (credential_name(name) and value) or credential_value(value):
            found.append(f"query parameter `{name}`")
    return found


def ir_credential_problems(program: ir.Program) -> list[tuple[str, str]]:
    """(message, where) for every literal credential in the IR's connections:
    a `.conc-ir` may name environment variables, never carry a key. Messages
    name the header or URL part, never the value."""
    problems = []
    for conn in program.connections:
        where = f"connection `{conn.name}`"
        for name, value in conn.config.headers.items():
            if not isinstance(value, str) or credential_header(name, value):
                problems.append((f"header `{name}` holds a literal credential; a connection names the "
                                 "environment variable that holds it (headers_env)", where))
        if conn.config.base_url:
            for what in url_credentials(conn.config.base_url):
                problems.append((f"base_url carries a credential in its {what}; keys come from the "
                                 "environment (api_key_env, headers_env)", where))
    return problems
