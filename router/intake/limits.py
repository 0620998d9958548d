"""Per-source rate limits (token buckets) and the replay guard; both take the clock as input."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimiter:
    """A token bucket per source: `rate` messages per second, bursts up to `burst`."""

    rate: float
    burst: float
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, source: str, n: int, now: float) -> float:
        """Take `n` tokens: 0.0 when granted, else the seconds until they would be (nothing
        is taken then)."""
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.at) * self.rate)
        bucket.at = now
        if n > self.burst:  # could never be granted: say how long a full bucket takes
            return n / self.rate
        if bucket.tokens >= n:
            bucket.tokens -= n
            return 0.0
        return (n - bucket.tokens) / self.rate


@dataclass
class ReplayGuard:
    """Signatures used within the window, so the same signed request is accepted once.

    A request `reserve`s its signature before it is produced and `release`s it when Kafka did
    not take it (the caller may then retry the very same request); an accepted request keeps
    it until its timestamp leaves the window. Memory is bounded by `capacity` (the oldest
    entries go first); the per-source rate limit keeps it from filling in practice.
    """

    window_s: float
    capacity: int = 1_000_000
    _seen: dict[str, float] = field(default_factory=dict)  # digest -> expiry
    _expiries: list[tuple[float, str]] = field(default_factory=list)

    def reserve(self, digest: str, timestamp: int, now: float) -> bool:
        self._expire(now)
        if digest in self._seen:
            return False
        expiry = timestamp + self.window_s
        self._seen[digest] = expiry
        heapq.heappush(self._expiries, (expiry, digest))
        while len(self._seen) > self.capacity:
            _, oldest = heapq.heappop(self._expiries)
            self._seen.pop(oldest, None)
        return True

    def release(self, digest: str) -> None:
        self._seen.pop(digest, None)  # its heap entry goes when it expires

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] < now:
            expiry, digest = heapq.heappop(self._expiries)
            if self._seen.get(digest) == expiry:
                del self._seen[digest]
