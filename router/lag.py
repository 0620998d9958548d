"""Consumer lag as an SRE reads it (pure; the Kafka reads are `streams.tools.group_offsets`):
per partition the offset lag, how long the oldest unprocessed record has waited, the rates
between two snapshots, and the time to catch up at those rates.

Offset figures follow Kafka's own `kafka-consumer-groups.sh --describe`: `CURRENT-OFFSET` is
the committed offset, `LOG-END-OFFSET` the end, `LAG` their difference (a partition with no
commit yet counts from offset 0, where that tool prints `-`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Offsets:
    """One read of a group's partition."""

    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group has not committed here
    end: int
    at: float  # unix seconds of the read

    @property
    def lag(self) -> int:
        return max(0, self.end - (self.committed or 0))


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int
    oldest_wait_s: float | None  # None: caught up, or the record is gone (retention)
    consumed_per_s: float | None  # None: a single read, no rate yet
    produced_per_s: float | None
    catch_up_s: float | None  # 0 caught up; None: not catching up at these rates, or no rate

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def catch_up_seconds(lag: int, consumed_per_s: float | None, produced_per_s: float | None) -> (
    float | None
):  # fmt: skip
    """How long until the lag is gone if both rates hold; None when it never is."""
    if lag == 0:
        return 0.0
    if consumed_per_s is None or produced_per_s is None:
        return None
    net = consumed_per_s - produced_per_s
    return lag / net if net > 0 else None


def partition_lags(
    now: list[Offsets],
    oldest_timestamps: dict[tuple[str, str, int], float],
    before: list[Offsets] | None = None,
) -> list[PartitionLag]:
    """The figures of `now`; `oldest_timestamps[(group, topic, partition)]` is the timestamp
    (unix seconds) of the record at the committed offset; `before`, an earlier read, gives the
    rates."""
    earlier = {(o.group, o.topic, o.partition): o for o in before or ()}
    out = []
    for o in now:
        key = (o.group, o.topic, o.partition)
        then = earlier.get(key)
        consumed = produced = None
        if then is not None and o.at > then.at:
            span = o.at - then.at
            consumed = max(0, (o.committed or 0) - (then.committed or 0)) / span
            produced = max(0, o.end - then.end) / span
        waited = oldest_timestamps.get(key)
        out.append(PartitionLag(
            o.group, o.topic, o.partition, o.committed, o.end, o.lag,
            max(0.0, o.at - waited) if o.lag and waited is not None else None,
            consumed, produced, catch_up_seconds(o.lag, consumed, produced),
        ))  # fmt: skip
    return sorted(out, key=lambda p: (p.group, p.topic, p.partition))


def totals(lags: list[PartitionLag]) -> dict[str, Any]:
    """The whole: records behind, the longest wait, and when the slowest partition catches up
    (None when one never does at its rates)."""
    waits = [p.oldest_wait_s for p in lags if p.oldest_wait_s is not None]
    catch = [p.catch_up_s for p in lags if p.catch_up_s is not None]
    never = len(catch) < len(lags)
    return {
        "lag": sum(p.lag for p in lags),
        "oldest_wait_s": max(waits, default=0.0),
        "catch_up_s": None if never else max(catch, default=0.0),
    }


def describe_seconds(seconds: float | None, never: str = "-") -> str:
    """`12s`, `4m05s`, `2h13m`; `never` for None."""
    if seconds is None:
        return never
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def render_table(lags: list[PartitionLag], logical: Any = lambda name: name) -> str:
    """Aligned columns for a terminal; topics by their logical names."""
    head = ("GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "OLDEST-WAIT", "RATE/s",
            "CATCH-UP")  # fmt: skip
    rows = [head]
    for p in lags:
        rate = "-" if p.consumed_per_s is None else f"{p.consumed_per_s:.1f}"
        catch = describe_seconds(p.catch_up_s, "never" if p.consumed_per_s is not None else "-")
        rows.append((
            p.group, logical(p.topic), str(p.partition),
            "-" if p.committed is None else str(p.committed), str(p.end), str(p.lag),
            describe_seconds(p.oldest_wait_s) if p.lag else "0s", rate, catch,
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]  # fmt: skip
    whole = totals(lags)
    measured = any(p.consumed_per_s is not None for p in lags)
    catch_up = describe_seconds(whole["catch_up_s"], "never at these rates")
    lines.append(
        f"total lag {whole['lag']}, oldest record waiting "
        f"{describe_seconds(whole['oldest_wait_s'])}"
        + (f", caught up in {catch_up}" if measured or whole["lag"] == 0 else "")
    )
    return "\n".join(lines)
