"""Mergeable quantile sketches for durations: DDSketch's logarithmic mapping (`ddsketch`).

A value is counted in the bucket `mapping.key(value)`; a bucket stands for every value within
`RELATIVE_ACCURACY` of its representative. Buckets add up, so two sketches merge by adding
their counts, in any order, and the result is the same as one sketch fed every value: a
window is the merge of its days. Zero (a reply before business hours opened counts zero
business seconds) has its own count. Quantiles are DDSketch's own (`get_quantile_value`): the
value of rank `q * (count - 1)`, within `RELATIVE_ACCURACY` of the exact order statistic.

Stored as plain JSON (`{"z": zeros, "b": [[key, count], ...]}`), never as samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ddsketch import DDSketch, LogarithmicMapping

RELATIVE_ACCURACY = 0.01
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
# below this a duration counts as zero (a microsecond: the calendars' resolution)
ZERO_BELOW = 1e-6


@dataclass(slots=True)
class Sketch:
    """Bucket counts of non-negative values (seconds)."""

    zeros: int = 0
    bins: dict[int, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return self.zeros + sum(self.bins.values())

    def add(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"a duration cannot be negative ({value})")
        if value < ZERO_BELOW:
            self.zeros += 1
            return
        key = int(_MAPPING.key(value))
        self.bins[key] = self.bins.get(key, 0) + 1

    def merge(self, other: Sketch) -> None:
        self.zeros += other.zeros
        bins = self.bins
        for key, count in other.bins.items():
            bins[key] = bins.get(key, 0) + count

    def quantile(self, q: float) -> float | None:
        """The `q` quantile (0..1), None when empty."""
        return self.quantiles(q)[0]

    def quantiles(self, *qs: float) -> list[float | None]:
        """Several quantiles from one DDSketch built from the buckets (None each when empty)."""
        if self.count == 0:
            return [None for _ in qs]
        sketch = DDSketch(RELATIVE_ACCURACY)
        if self.zeros:
            sketch.add(0.0, self.zeros)
        for key, count in self.bins.items():
            sketch.add(_MAPPING.value(key), count)
        values = (sketch.get_quantile_value(q) for q in qs)
        return [None if v is None else max(0.0, float(v)) for v in values]

    def to_json(self) -> dict[str, Any]:
        return {"z": self.zeros, "b": sorted([k, c] for k, c in self.bins.items())}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Sketch:
        return cls(int(doc.get("z", 0)), {int(k): int(c) for k, c in doc.get("b", ())})
