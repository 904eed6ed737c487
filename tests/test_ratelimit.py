"""The connection manager's rate limiter and retry plan, driven by a fake clock
(the limiter's clock and sleep are injectable, spec-17 connection manager)."""

from __future__ import annotations

import random

import anyio
import pytest

from concerto.vm.connections import RetryPlan
from concerto.vm.ratelimit import RateLimiter, estimate_tokens


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


def run(fn):
    return anyio.run(fn)


def test_requests_per_minute_admits_a_full_window_then_waits_for_the_oldest() -> None:
    t = FakeTime()
    limiter = RateLimiter(requests_per_minute=3, clock=t.clock, sleep=t.sleep, margin=0.0)
    starts: list[float] = []

    async def main() -> None:
        for _ in range(7):
            permit = await limiter.acquire()
            starts.append(t.now)
            permit.release()
            t.now += 1.0  # each request takes a second

    run(main)
    # 3 at once-ish, then each next one exactly when the one 3 back leaves the window.
    assert starts[:3] == [0.0, 1.0, 2.0]
    assert starts[3] == pytest.approx(60.0)
    assert starts[4] == pytest.approx(61.0)
    assert starts[6] == pytest.approx(120.0)
    # Never more than 3 starts in any 60 s window.
    for i, s in enumerate(starts):
        assert sum(1 for x in starts if s - 60.0 < x <= s) <= 3, (i, starts)


def test_window_margin_delays_the_next_request_past_the_server_window() -> None:
    t = FakeTime()
    limiter = RateLimiter(requests_per_minute=1, clock=t.clock, sleep=t.sleep, margin=0.25)

    async def main() -> list[float]:
        out = []
        for _ in range(2):
            (await limiter.acquire()).release()
            out.append(t.now)
        return out

    assert anyio.run(main) == [0.0, pytest.approx(60.25)]


def test_tokens_per_minute_uses_estimate_then_reported_usage() -> None:
    t = FakeTime()
    limiter = RateLimiter(tokens_per_minute=100, clock=t.clock, sleep=t.sleep, margin=0.0)

    async def main() -> list[float]:
        starts = []
        p1 = await limiter.acquire(80)  # estimate 80 of 100
        starts.append(t.now)
        p1.settle(30)  # the provider reported 30: 70 left
        p1.release()
        p2 = await limiter.acquire(60)  # fits only because of the correction
        starts.append(t.now)
        p2.release()
        p3 = await limiter.acquire(50)  # 90 used: must wait for the first to expire
        starts.append(t.now)
        p3.release()
        return starts

    assert anyio.run(main) == [0.0, 0.0, pytest.approx(60.0)]


def test_a_request_bigger_than_the_budget_runs_alone() -> None:
    t = FakeTime()
    limiter = RateLimiter(tokens_per_minute=10, clock=t.clock, sleep=t.sleep, margin=0.0)

    async def main() -> float:
        (await limiter.acquire(500)).release()
        (await limiter.acquire(500)).release()
        return t.now

    assert anyio.run(main) == pytest.approx(60.0)  # waited for the window to empty, no deadlock


def test_concurrent_requests_cap_in_flight_work() -> None:
    limiter = RateLimiter(concurrent_requests=2)
    in_flight = 0
    peak = 0

    async def one() -> None:
        nonlocal in_flight, peak
        permit = await limiter.acquire()
        try:
            in_flight += 1
            peak = max(peak, in_flight)
            await anyio.sleep(0.01)
            in_flight -= 1
        finally:
            permit.release()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(one)

    anyio.run(main)
    assert peak == 2


def test_release_is_idempotent_and_cancelled_waiters_give_their_slot_back() -> None:
    limiter = RateLimiter(concurrent_requests=1)

    async def main() -> None:
        permit = await limiter.acquire()
        with anyio.move_on_after(0.05):
            await limiter.acquire()  # blocks: cancelled
        permit.release()
        permit.release()
        again = await limiter.acquire()  # the slot is free exactly once
        again.release()

    anyio.run(main)


def test_retry_plan_backoff_shapes_with_jitter_bounds() -> None:
    rng = random.Random(7)
    expo = RetryPlan(5, "exponential", 1.0, 30.0)
    for attempt, planned in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 30.0)]:
        d = expo.delay(attempt, None, rng)
        assert planned / 2 <= d <= planned
    linear = RetryPlan(5, "linear", 0.5, 30.0)
    assert 0.75 <= linear.delay(3, None, rng) <= 1.5
    flat = RetryPlan(5, "none", 0.2, 30.0)
    assert 0.1 <= flat.delay(4, None, rng) <= 0.2


def test_retry_after_wins_over_a_shorter_backoff_and_is_capped() -> None:
    rng = random.Random(1)
    plan = RetryPlan(3, "exponential", 0.1, 1.0)
    assert plan.delay(1, 2.5, rng) == 2.5
    assert plan.delay(1, 10_000.0, rng) == 300.0
    assert plan.delay(1, 0.0, rng) <= 0.1


def test_estimate_tokens_counts_prompt_and_reply_budget() -> None:
    assert estimate_tokens(["abcd" * 10], None) == 10
    assert estimate_tokens(["abcd" * 10, "xy"], 100) == 111
