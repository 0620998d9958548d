"""Token buckets per source and the replay guard, driven by an explicit clock."""

from __future__ import annotations

import pytest

from router.intake.limits import RateLimiter, ReplayGuard


def test_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate=10, burst=5)
    assert [limiter.take("a", 1, 0.0) for _ in range(5)] == [0.0] * 5
    assert limiter.take("a", 1, 0.0) == pytest.approx(0.1)
    assert limiter.take("b", 5, 0.0) == 0.0  # sources do not share a bucket
    assert limiter.take("a", 1, 0.1) == 0.0  # refilled at 10/s
    assert limiter.take("a", 3, 0.1) == pytest.approx(0.3)  # nothing taken by a refusal
    assert limiter.take("a", 3, 0.4) == 0.0


def test_more_than_a_burst_names_a_full_refill() -> None:
    limiter = RateLimiter(rate=2, burst=4)
    assert limiter.take("a", 6, 0.0) == pytest.approx(3.0)
    assert limiter.take("a", 4, 0.0) == 0.0


def test_a_signature_is_used_once_until_it_leaves_the_window() -> None:
    guard = ReplayGuard(window_s=300)
    assert guard.reserve("d1", timestamp=1000, now=1000)
    assert not guard.reserve("d1", timestamp=1000, now=1200)
    assert guard.reserve("d2", timestamp=1100, now=1200)
    assert guard.reserve("d1", timestamp=1000, now=1301)  # expired: and stale anyway by then
    assert len(guard) == 2


def test_a_released_signature_may_come_again() -> None:
    guard = ReplayGuard(window_s=300)
    assert guard.reserve("d1", 1000, 1000)
    guard.release("d1")
    assert guard.reserve("d1", 1000, 1001)


def test_memory_is_bounded() -> None:
    guard = ReplayGuard(window_s=300, capacity=3)
    for n in range(10):
        assert guard.reserve(f"d{n}", 1000 + n, 1000 + n)
    assert len(guard) == 3
    assert not guard.reserve("d9", 1009, 1010)
