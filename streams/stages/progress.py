"""What a worker's stages have processed, per input partition: the basis of the time lag
(`router_consumer_time_lag_seconds`, streams/metrics.py)."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any


class InputProgress:
    """Per (physical topic, partition): the offset and timestamp (seconds) of the last record a
    stage of this worker processed; what the time lag is measured from."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, int], tuple[int, float | None]] = {}

    def saw(self, events: Sequence[Any]) -> None:
        last = self.last
        for event in events:
            m = event.message
            last[(m.topic, m.partition)] = (m.offset, m.timestamp)

    def saw_last(self, topic: str, partition: int, offset: int, timestamp: float | None) -> None:
        """The last record processed of one partition (timestamp in seconds)."""
        self.last[(topic, partition)] = (offset, timestamp)


_PROGRESS: weakref.WeakKeyDictionary[Any, InputProgress] = weakref.WeakKeyDictionary()


def input_progress(app: Any) -> InputProgress:
    """The one tracker of `app`'s stages."""
    return _PROGRESS.setdefault(app, InputProgress())
