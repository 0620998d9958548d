"""The firing horizon: how far the inputs that can stop an SLA clock have been read."""

from __future__ import annotations

import pytest

from streams.stages.horizon import InputWatermark

ACTIONS, EVENTS = "tickets.actions", "tickets.events"
NOW = 1_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Positions:
    """What the consumer reports: (topic, partition) -> (high watermark, committed offset)."""

    def __init__(self) -> None:
        self.parts: dict[tuple[str, int], tuple[int | None, int | None]] = {}

    def __call__(self) -> list[tuple[str, int, int | None, int | None]]:
        return [(t, p, high, done) for (t, p), (high, done) in self.parts.items()]


@pytest.fixture
def positions() -> Positions:
    return Positions()


def test_nothing_watched_or_everything_read_fires_up_to_now(positions: Positions) -> None:
    mark = InputWatermark(positions)
    assert mark.horizon(NOW) == NOW
    positions.parts = {(ACTIONS, 0): (0, None), (EVENTS, 0): (5, 5), (EVENTS, 1): (3, None)}
    mark.seen(EVENTS, 1, 2, NOW - 50)  # offset 2 read: partition 1 is at its end (3)
    assert mark.horizon(NOW) == NOW


def test_a_backlog_holds_the_horizon_at_the_last_record_read(positions: Positions) -> None:
    mark = InputWatermark(positions)
    positions.parts = {(ACTIONS, 0): (10, 4), (EVENTS, 0): (7, None)}
    mark.seen(EVENTS, 0, 6, NOW - 5)  # events read to the end
    assert mark.horizon(NOW) == float("-inf")  # the actions backlog: nothing read yet
    mark.seen(ACTIONS, 0, 4, NOW - 3600)
    assert mark.horizon(NOW) == NOW - 3600
    assert mark.behind_seconds == 3600  # for /metrics
    mark.seen(ACTIONS, 0, 5, NOW - 1800)
    assert mark.horizon(NOW) == NOW - 1800
    mark.seen(ACTIONS, 0, 9, NOW - 60)  # the last record: caught up
    assert mark.horizon(NOW) == NOW
    assert mark.behind_seconds == 0


def test_the_earliest_lagging_partition_wins(positions: Positions) -> None:
    mark = InputWatermark(positions)
    positions.parts = {(ACTIONS, 0): (10, None), (ACTIONS, 1): (10, None)}
    mark.seen(ACTIONS, 0, 1, NOW - 100)
    mark.seen(ACTIONS, 1, 1, NOW - 900)
    assert mark.horizon(NOW) == NOW - 900
    mark.revoked(ACTIONS, 1)
    positions.parts.pop((ACTIONS, 1))
    assert mark.horizon(NOW) == NOW - 100


def test_unknown_high_watermark_holds_until_known(positions: Positions) -> None:
    mark = InputWatermark(positions)
    positions.parts = {(ACTIONS, 0): (None, 3)}  # no fetch answered yet
    assert mark.horizon(NOW) == float("-inf")
    positions.parts = {(ACTIONS, 0): (3, 3)}  # restart: committed is the end
    assert mark.horizon(NOW) == NOW


def test_a_stalled_backlog_is_given_up_and_reading_again_holds_again(
    positions: Positions,
) -> None:
    clock = Clock()
    mark = InputWatermark(positions, stall_seconds=30, monotonic=clock)
    positions.parts = {(ACTIONS, 0): (10, None)}
    mark.seen(ACTIONS, 0, 1, NOW - 600)
    assert mark.horizon(NOW) == NOW - 600
    clock.t = 29
    assert mark.horizon(NOW + 29) == NOW - 600
    clock.t = 31  # nothing read for 31 s: stuck
    assert mark.horizon(NOW + 31) == NOW + 31
    assert mark.stalled
    mark.seen(ACTIONS, 0, 2, NOW - 500)  # reading again: wait for it
    assert mark.horizon(NOW + 32) == NOW - 500
    assert not mark.stalled
    clock.t = 50  # still reading within the window
    mark.seen(ACTIONS, 0, 3, NOW - 400)
    assert mark.horizon(NOW + 50) == NOW - 400
