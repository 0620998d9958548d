"""Per subject (a vendor or a queue): daily tallies of facts, and the figures over windows.

A `Book` keeps one `Tally` per UTC day for the last `RETAIN_DAYS` days up to `as_of`, the
latest day it has a fact for (event time, never the wall clock: a replay computes the same
windows). A window of n days is the merge of the tallies of days `as_of - n + 1 .. as_of`:
counts add up and the duration sketches merge (`router.scores.sketch`).

Idempotent: each day remembers the ids of the facts it counted, and a fact seen again is
ignored; facts of days already dropped are ignored too. So the figures depend only on the
set of facts folded, not on their order or repetition (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import orjson

from router.scores.facts import Fact, FactKind
from router.scores.sketch import Sketch
from schemas.scores import SupportDay, WindowFigures

RETAIN_DAYS = 30
WINDOWS = (7, 30)
PROMOTER_AT, DETRACTOR_BELOW = 9, 7  # NPS: 9-10 promote, 0-6 detract
_ID_CHARS = 16  # of a fact id kept for deduplication (64 bits)
_EPOCH = date(1970, 1, 1)

_COUNTED = {
    FactKind.OPENED: "opened",
    FactKind.REOPENED: "reopened",
    FactKind.BREACHED: "breached",
    FactKind.DISPUTED: "disputed",
    FactKind.DISPUTE_LOST: "lost",
}


def as_date(day: int) -> date:
    return _EPOCH + timedelta(days=day)


@dataclass(slots=True)
class Tally:
    """What one day's facts add up to."""

    counts: dict[str, int] = field(default_factory=dict)
    frt: Sketch = field(default_factory=Sketch)
    ttr: Sketch = field(default_factory=Sketch)
    ids: set[str] = field(default_factory=set)

    def n(self, name: str) -> int:
        return self.counts.get(name, 0)

    def bump(self, name: str, by: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + by

    def add(self, fact: Fact) -> None:
        kind = fact.kind
        if kind in _COUNTED:
            self.bump(_COUNTED[kind])
        if kind is FactKind.OPENED:
            self.bump("backlog", 1)
        elif kind is FactKind.RESPONDED:
            self.bump("answered")
            self.bump("within", int(fact.flag))
            self.frt.add(fact.value)
        elif kind is FactKind.RESOLVED:
            self.bump("resolved")
            self.ttr.add(fact.value)
        elif kind is FactKind.SLA:
            self.bump("sla_met" if fact.flag else "sla_breached")
        elif kind is FactKind.SURVEY:
            if fact.value:
                self.bump("csat_n")
                self.bump("csat_sum", int(fact.value))
            if fact.extra >= 0:
                self.bump("nps_n")
                self.bump("promoters", int(fact.extra >= PROMOTER_AT))
                self.bump("detractors", int(fact.extra < DETRACTOR_BELOW))
        elif kind is FactKind.BACKLOG:
            self.bump("backlog", int(fact.value))

    def merge(self, other: Tally) -> None:
        for name, count in other.counts.items():
            self.bump(name, count)
        self.frt.merge(other.frt)
        self.ttr.merge(other.ttr)

    def to_json(self) -> dict[str, Any]:
        return {"c": self.counts, "f": self.frt.to_json(), "t": self.ttr.to_json(),
                "i": sorted(self.ids)}  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Tally:
        return cls({str(k): int(v) for k, v in doc.get("c", {}).items()},
                   Sketch.from_json(doc.get("f", {})), Sketch.from_json(doc.get("t", {})),
                   set(doc.get("i", ())))  # fmt: skip


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(slots=True)
class Book:
    days: dict[int, Tally] = field(default_factory=dict)
    as_of: int | None = None
    backlog_before: int = 0  # the backlog changes of days no longer kept
    tier: str | None = None  # vendors: the tier last published

    def apply(self, fact: Fact) -> bool:
        """Count `fact` once; False when it was counted already or is too old to keep."""
        as_of = self.as_of
        if as_of is not None and fact.day <= as_of - RETAIN_DAYS:
            return False
        key = fact.id[:_ID_CHARS]
        tally = self.days.get(fact.day)
        if tally is None:
            tally = self.days[fact.day] = Tally()
        elif key in tally.ids:
            return False
        tally.ids.add(key)
        tally.add(fact)
        if as_of is None or fact.day > as_of:
            self.as_of = fact.day
            self._expire()
        return True

    def _expire(self) -> None:
        assert self.as_of is not None
        oldest_kept = self.as_of - RETAIN_DAYS + 1
        for day in [d for d in self.days if d < oldest_kept]:
            self.backlog_before += self.days.pop(day).n("backlog")

    def merged(self, first: int, last: int) -> Tally:
        total = Tally()
        for day, tally in self.days.items():
            if first <= day <= last:
                total.merge(tally)
        return total

    def window(self, days: int) -> WindowFigures:
        """The figures of the cohort opened in the `days` days ending `as_of`."""
        if self.as_of is None:
            return WindowFigures(days=days, volume=0, answered=0)
        t = self.merged(self.as_of - days + 1, self.as_of)
        volume, resolved = t.n("opened"), t.n("resolved")
        frt_p50, frt_p90 = t.frt.quantiles(0.5, 0.9)
        return WindowFigures(
            days=days, volume=volume, answered=t.n("answered"), frt_p50=frt_p50, frt_p90=frt_p90,
            answered_within=_capped(t.n("within"), volume),
            resolution_rate=_capped(resolved, volume),
            reopen_rate=_capped(t.n("reopened"), resolved),
            sla_breach_rate=_capped(t.n("breached"), volume),
            dispute_rate=_capped(t.n("disputed"), volume),
            disputes_lost=t.n("lost"), **_surveys(t),
        )  # fmt: skip

    def support_day(self, queue: str, day: int) -> SupportDay:
        t = self.days.get(day) or Tally()
        opened = t.n("opened")
        met, breached = t.n("sla_met"), t.n("sla_breached")
        backlog = self.backlog_before + sum(
            tally.n("backlog") for d, tally in self.days.items() if d <= day
        )
        frt_p50, frt_p90 = t.frt.quantiles(0.5, 0.9)
        ttr_p50, ttr_p90 = t.ttr.quantiles(0.5, 0.9)
        return SupportDay(
            queue=queue, day=as_date(day), opened=opened, frt_p50=frt_p50, frt_p90=frt_p90,
            ttr_p50=ttr_p50, ttr_p90=ttr_p90,
            resolution_rate=_capped(t.n("resolved"), opened), backlog=backlog,
            sla_attainment=_share(met, met + breached), **_surveys(t),
        )  # fmt: skip

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "days": {str(d): t.to_json() for d, t in sorted(self.days.items())},
            "as_of": self.as_of, "backlog_before": self.backlog_before, "tier": self.tier,
        })  # fmt: skip

    @classmethod
    def from_bytes(cls, raw: bytes) -> Book:
        doc = orjson.loads(raw)
        days = {int(d): Tally.from_json(t) for d, t in doc.get("days", {}).items()}
        return cls(days, doc.get("as_of"), int(doc.get("backlog_before", 0)), doc.get("tier"))


def _capped(part: int, whole: int) -> float | None:
    """A share; a cohort's facts can arrive before its `opened` (another topic), so capped."""
    share = _share(part, whole)
    return None if share is None else min(1.0, share)


def _surveys(t: Tally) -> dict[str, Any]:
    csat_n, nps_n = t.n("csat_n"), t.n("nps_n")
    return {
        "csat_avg": t.n("csat_sum") / csat_n if csat_n else None,
        "csat_responses": csat_n,
        "nps": 100 * (t.n("promoters") - t.n("detractors")) / nps_n if nps_n else None,
        "nps_responses": nps_n,
    }
