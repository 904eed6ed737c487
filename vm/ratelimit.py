"""Client-side rate limits for one connection (spec 11/22 `rate_limit`).

Three limits, all optional, shared by every model on the connection:

* concurrent_requests: requests in flight at once;
* requests_per_minute: requests *started* in any 60 s window;
* tokens_per_minute: tokens used in any 60 s window. A request is counted at
  an estimate when it starts and corrected to the provider's reported usage
  when it ends (Permit.settle).

The windows are sliding logs rather than token buckets: providers (and our
fake server) count requests over the last minute, and a bucket that refills
continuously can exceed such a window right after a burst. A small margin is
added to the window because the server stamps a request when it arrives,
slightly after we stamp it when we send it.

The clock and sleep are injectable so tests can drive time by hand.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Permit:
    """One admitted request: release() frees its concurrency slot, settle()
    replaces its token estimate with what the provider reported."""

    __slots__ = ("_limiter", "_entry", "_released")

    def __init__(self, limiter: "RateLimiter", entry: list[float] | None) -> None:
        self._limiter = limiter
        self._entry = entry
        self._released = False

    def settle(self, tokens: int | None) -> None:
        if self._entry is not None and tokens is not None:
            self._entry[1] = float(tokens)

    def release(self) -> None:
        if not self._released:
            self._released = True
            if self._limiter._slots is not None:
                self._limiter._slots.release()


class RateLimiter:
    def __init__(
        self,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        concurrent_requests: int | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
        window: float = 60.0,
        margin: float = 0.25,
    ) -> None:
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self.concurrent = concurrent_requests
        self.clock = clock
        self.sleep = sleep
        self.window = window + margin
        self._requests: deque[float] = deque()
        self._tokens: deque[list[float]] = deque()  # [start time, tokens]
        self._slots = anyio.Semaphore(concurrent_requests) if concurrent_requests else None
        # Waiters queue on this lock so requests are admitted in arrival order.
        self._gate = anyio.Lock()
        self.waited = 0.0  # total seconds spent waiting for the windows (metrics)

    @property
    def unlimited(self) -> bool:
        return not (self.rpm or self.tpm or self.concurrent)

    async def acquire(self, estimated_tokens: int = 0) -> Permit:
        """Wait until a request may start; the caller must release() the permit."""
        if self._slots is not None:
            await self._slots.acquire()
        try:
            entry = await self._admit(estimated_tokens) if (self.rpm or self.tpm) else None
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise
        return Permit(self, entry)

    async def _admit(self, estimated: int) -> list[float] | None:
        async with self._gate:
            while True:
                now = self.clock()
                wait = self._wait_needed(now, estimated)
                if wait <= 0:
                    if self.rpm:
                        self._requests.append(now)
                    if self.tpm:
                        entry = [now, float(estimated)]
                        self._tokens.append(entry)
                        return entry
                    return None
                self.waited += wait
                await self.sleep(wait)

    def _wait_needed(self, now: float, estimated: int) -> float:
        horizon = now - self.window
        while self._requests and self._requests[0] <= horizon:
            self._requests.popleft()
        while self._tokens and self._tokens[0][0] <= horizon:
            self._tokens.popleft()
        wait = 0.0
        if self.rpm and len(self._requests) >= self.rpm:
            wait = self._requests[len(self._requests) - self.rpm] + self.window - now
        if self.tpm and self._tokens:
            used = sum(t for _, t in self._tokens)
            # A request larger than the whole budget still runs once the window is empty.
            need = min(float(estimated), float(self.tpm))
            if used + need > self.tpm:
                freed = 0.0
                for start, tokens in self._tokens:
                    freed += tokens
                    if used - freed + need <= self.tpm:
                        wait = max(wait, start + self.window - now)
                        break
        return wait if wait <= 0 else max(wait, 1e-3)


def estimate_tokens(texts: list[str], max_tokens: int | None) -> int:
    """A request's token cost before the provider tells us: about four
    characters a token for the prompt, plus the reply budget when one is set."""
    chars = sum(len(t) for t in texts)
    return math.ceil(chars / 4) + (max_tokens or 0)
