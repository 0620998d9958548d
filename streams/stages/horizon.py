"""How far this worker has read the inputs that can stop an SLA clock: the firing horizon.

A reply on `tickets.actions`, or a vendor's email on `tickets.events`, stops a clock. After an
outage those inputs have a backlog, and the timer must not fire a breach that a reply waiting
in it prevents. So the timer fires only what is due by the horizon:

- `now`, when every watched partition assigned here is read up to its high watermark;
- else the timestamp of the last record read from the lagging partitions (the earliest of
  them): everything before it has been applied, the backlog only holds later records.

A lagging partition with nothing read yet holds everything until its first record is read.
A horizon that stays behind `now` while no watched record is read for `stall_seconds` (a stuck
consumer) is given up: deadlines fire up to `now` again and `sla_horizon_stalled` is logged.
The view is this worker's: a backlog on partitions another worker reads is not seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import structlog

log = structlog.get_logger("router.lifecycle")

STALL_SECONDS = 30.0

# (logical topic, partition, high watermark or None, committed offset or None) per watched
# partition assigned to this worker's consumer
Positions = Callable[[], Iterable[tuple[str, int, int | None, int | None]]]


class InputWatermark:
    """Fed by the agents as they finish each watched record; read by the timer."""

    def __init__(
        self,
        positions: Positions,
        stall_seconds: float = STALL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._positions = positions
        self._stall_seconds = stall_seconds
        self._monotonic = monotonic
        self._read: dict[tuple[str, int], tuple[int, float]] = {}  # -> (offset, timestamp)
        self._records = 0  # records read, all watched partitions: progress for stall detection
        self._held: tuple[int, float] | None = None  # (records, since) while holding back
        self.stalled = False
        self.behind_seconds = 0.0  # of the last horizon: for /metrics
        self._holding_since: float | None = None  # for the held / caught-up log lines

    def seen(self, topic: str, partition: int, offset: int, timestamp: float | None) -> None:
        """A watched record has been applied (`timestamp`: its Kafka timestamp, seconds)."""
        self._records += 1
        previous = self._read.get((topic, partition))
        ts = timestamp if timestamp is not None else (previous[1] if previous else 0.0)
        self._read[(topic, partition)] = (offset, ts)

    def revoked(self, topic: str, partition: int) -> None:
        self._read.pop((topic, partition), None)

    def horizon(self, now: float) -> float:
        """Fire what is due by this instant (epoch seconds, at most `now`)."""
        horizon = now
        lagging = []
        for topic, partition, high, committed in self._positions():
            read = self._read.get((topic, partition))
            next_offset = read[0] + 1 if read is not None else committed
            if high is not None and (next_offset or 0) >= high:
                continue  # read to the end (or empty)
            lagging.append(f"{topic}:{partition}")
            horizon = min(horizon, read[1] if read is not None else float("-inf"))
        # a partition not read at all yet: behind by as long as this hold has lasted
        since = self._holding_since if self._holding_since is not None else self._monotonic()
        self.behind_seconds = (
            0.0 if horizon >= now
            else now - horizon if horizon > 0 else self._monotonic() - since
        )
        if horizon >= now:
            if self._holding_since is not None:
                log.info("sla_firing_caught_up",
                         held_seconds=round(self._monotonic() - self._holding_since, 1))
            self._held, self.stalled, self._holding_since = None, False, None
            return now
        if self._holding_since is None:
            self._holding_since = self._monotonic()
            log.info("sla_firing_held", behind_seconds=round(now - horizon, 1)
                     if horizon > 0 else None, backlog=lagging)
        held = self._held
        if held is None or held[0] != self._records:  # holding, and reading: keep waiting
            self._held, self.stalled = (self._records, self._monotonic()), False
            return horizon
        if self._monotonic() - held[1] < self._stall_seconds:
            return horizon
        if not self.stalled:
            self.stalled = True
            log.warning("sla_horizon_stalled", held_seconds=round(self._monotonic() - held[1]),
                        horizon=horizon if horizon > 0 else None)
        return now
