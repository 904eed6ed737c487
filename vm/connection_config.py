"""Connection settings (what a host may pass in, retry plans), kept apart
from vm/connections.py so that importing the host API or linking a program
does not import httpx."""

from __future__ import annotations

import random
from dataclasses import dataclass

from concerto import ir

# However long a provider asks us to wait, we wait at most this long per retry
# (the manifest's max_retry_after_ms cannot exceed it; past a connection's own
# cap the call is not retried at all, see ConnectionManager).
RETRY_AFTER_CAP = 300.0
# A reply body (a streamed reply: in total) larger than this fails the call,
# unless the connection sets max_response_bytes.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# Of an error reply only this much is read, per attempt: enough for any
# provider's error JSON, and a proxy's 50 MB error page costs nothing more.
ERROR_BODY_CAP = 64 * 1024
# The longest gap between two events of a streamed reply, unless the
# connection sets stream_idle_timeout (never more than the call's timeout).
DEFAULT_STREAM_IDLE_TIMEOUT = 60.0


class ConfigError(Exception):
    """A connection cannot be used as configured (missing key, bad replies file)."""


@dataclass(frozen=True)
class ConnectionOverride:
    """Host-side replacement settings for one connection (spec 11 "Runtime Override")."""

    api_key: str | None = None
    base_url: str | None = None


@dataclass
class RetryPlan:
    max_attempts: int = 1
    backoff: str = "none"
    initial_delay: float = 1.0
    max_delay: float = 30.0

    @classmethod
    def of(cls, cfg: ir.RetryConfig) -> "RetryPlan":
        return cls(cfg.max_attempts, cfg.backoff, cfg.initial_delay_ms / 1000, cfg.max_delay_ms / 1000)

    def planned(self, failed_attempts: int) -> float:
        """Seconds the plan asks for before the next attempt: "none" keeps the
        initial delay, "linear" grows it by one step per attempt, "exponential"
        doubles it; never more than max_delay."""
        if self.backoff == "exponential":
            planned = self.initial_delay * 2 ** (failed_attempts - 1)
        elif self.backoff == "linear":
            planned = self.initial_delay * failed_attempts
        else:
            planned = self.initial_delay
        return min(planned, self.max_delay)

    def delay(self, failed_attempts: int, retry_after: float | None, rng: random.Random) -> float:
        """The wait before the next request: the plan with equal jitter (half
        fixed, half random), which spreads retries of many callers without ever
        shrinking the wait below half the plan; at least a provider's Retry-After."""
        planned = self.planned(failed_attempts)
        wait = planned / 2 + rng.uniform(0, planned / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, RETRY_AFTER_CAP))
        return wait
