"""Connection settings a host may pass in, kept apart from vm/connections.py
so that importing the host API does not import httpx."""

from __future__ import annotations

from dataclasses import dataclass


class ConfigError(Exception):
    """A connection cannot be used as configured (missing key, bad replies file)."""


@dataclass(frozen=True)
class ConnectionOverride:
    """Host-side replacement settings for one connection (spec 11 "Runtime Override")."""

    api_key: str | None = None
    base_url: str | None = None
