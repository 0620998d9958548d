"""A validated policy file in the form the firing path reads: plain classes, looked up once.

`policy.py` validates the YAML (pydantic) and builds these with `policy.build_config`. They
are separate so that the native build (`router.native`) compiles them with the firing path:
every firing reads terms and ladder rungs, and pydantic attribute access costs more than the
rest of a rung's work.
"""

from __future__ import annotations

import fnmatch
from itertools import accumulate
from typing import Final

from router.sla.calendar import Calendar
from schemas.sla import SlaMetric
from schemas.ticket import Priority

_CACHE_LIMIT: Final = 10_000  # queue and policy names are few; bound the caches anyway


class Rung:
    """One rung of an escalation ladder (`policy.EscalationStep`, validated)."""

    __slots__ = ("after", "raise_priority", "reroute", "reroute_policy", "set_priority")

    def __init__(
        self,
        after: float = 0.0,
        raise_priority: bool = False,
        set_priority: Priority | None = None,
        reroute: str | None = None,
        reroute_policy: str | None = None,
    ) -> None:
        self.after = after
        self.raise_priority = raise_priority
        self.set_priority = set_priority
        self.reroute = reroute
        self.reroute_policy = reroute_policy

    def __repr__(self) -> str:
        return (
            f"Rung(after={self.after!r}, raise_priority={self.raise_priority!r}, "
            f"set_priority={self.set_priority!r}, reroute={self.reroute!r}, "
            f"reroute_policy={self.reroute_policy!r})"
        )


class MetricTerms:
    """What a clock needs: its target, when to warn, and the ladder past the deadline."""

    __slots__ = ("ladder", "rung_offsets", "target_seconds", "warning_fraction")

    def __init__(
        self, target_seconds: float, warning_fraction: float, ladder: tuple[Rung, ...]
    ) -> None:
        self.target_seconds = target_seconds
        self.warning_fraction = warning_fraction
        self.ladder = ladder
        # Business seconds from rung 1 to rung n (index n - 1), summed once.
        self.rung_offsets: tuple[float, ...] = (
            0.0,
            *accumulate(step.after for step in ladder[1:]),
        )

    def with_target(self, target_seconds: float) -> MetricTerms:
        return MetricTerms(target_seconds, self.warning_fraction, self.ladder)

    def rung_threshold(self, level: int, anchor_seconds: float) -> float:
        """Business seconds elapsed at which rung `level` (1-based) fires."""
        return anchor_seconds + self.rung_offsets[level - 1]

    def __repr__(self) -> str:
        return (
            f"MetricTerms(target_seconds={self.target_seconds!r}, "
            f"warning_fraction={self.warning_fraction!r}, ladder={self.ladder!r})"
        )


class SlaPolicy:
    """One named policy, with the terms of every (metric, priority) worked out up front."""

    __slots__ = ("_terms", "calendar", "name")

    def __init__(
        self,
        name: str,
        calendar: str,
        terms: dict[tuple[SlaMetric, Priority], MetricTerms],
    ) -> None:
        self.name = name
        self.calendar = calendar
        self._terms = terms

    def terms(self, metric: SlaMetric, priority: Priority) -> MetricTerms | None:
        """None when this policy does not track `metric`."""
        return self._terms.get((metric, priority))


class SlaConfig:
    """A validated policy file with its calendars built (they cache computed days)."""

    def __init__(
        self,
        *,
        fingerprint: str,
        default_policy: str,
        late_grace_seconds: float,
        calendars: dict[str, Calendar],
        policies: dict[str, SlaPolicy],
        queue_policies: list[tuple[str, str]],
    ) -> None:
        # Tickets scheduled under another file get their deadlines recomputed when touched.
        self.fingerprint = fingerprint
        self.default_policy = default_policy
        # A firing later than this after its due time is marked late (the engine was down).
        self.late_grace_seconds = late_grace_seconds
        self.calendars = calendars
        self.policies = policies
        self._queue_globs = queue_policies  # (glob over queue names, policy), first match wins
        self._queue_policies: dict[str, str | None] = {}
        # policy name as stored -> priority -> metric -> terms: nested rather than keyed by a
        # (policy, metric, priority) tuple, which costs an allocation and a hash per firing
        self._terms: dict[str, dict[Priority, dict[SlaMetric, MetricTerms | None]]] = {}
        self._terms_cached = 0

    def policy(self, name: str | None) -> SlaPolicy:
        """The named policy; the default one for an unknown or missing name."""
        found = self.policies.get(name) if name is not None else None
        return found or self.policies[self.default_policy]

    def terms_of(self, policy: str, priority: Priority) -> dict[SlaMetric, MetricTerms | None]:
        """The cache of `terms` for (policy, priority), by metric (a caller may hold it)."""
        by_priority = self._terms.get(policy)
        if by_priority is None:
            by_priority = self._terms[policy] = {}
        by_metric = by_priority.get(priority)
        if by_metric is None:
            by_metric = by_priority[priority] = {}
        return by_metric

    def terms(self, policy: str, metric: SlaMetric, priority: Priority) -> MetricTerms | None:
        """`policy(policy).terms(metric, priority)`, cached (names unknown to the file included)."""
        by_metric = self.terms_of(policy, priority)
        if metric in by_metric:
            return by_metric[metric]
        terms = self.policy(policy).terms(metric, priority)
        if self._terms_cached >= _CACHE_LIMIT:
            self._terms.clear()  # a caller still holding a dropped dict just misses
            self._terms_cached = 0
            by_metric = self.terms_of(policy, priority)
        by_metric[metric] = terms
        self._terms_cached += 1
        return terms

    def calendar(self, name: str | None, fallback: str) -> Calendar:
        found = self.calendars.get(name) if name is not None else None
        return found or self.calendars[fallback]

    def policy_for_queue(self, queue: str) -> str | None:
        cache = self._queue_policies
        if queue in cache:  # glob matching is slow; the file never changes
            return cache[queue]
        found = None
        for glob, policy in self._queue_globs:
            if fnmatch.fnmatchcase(queue, glob):
                found = policy
                break
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[queue] = found
        return found
