"""`router lag`'s figures (router/lag.py): offset lag as Kafka's tool counts it, the oldest
record's wait, rates between two reads, and the time to catch up."""

from __future__ import annotations

import pytest

from router.lag import (
    Offsets,
    catch_up_seconds,
    describe_seconds,
    partition_lags,
    render_table,
    totals,
)


def read(partition: int, committed: int | None, end: int, at: float) -> Offsets:
    return Offsets("g", "p.channel.email", partition, committed, end, at)


def test_offset_lag_counts_from_zero_without_a_commit() -> None:
    assert read(0, 40, 100, 0).lag == 60
    assert read(0, None, 100, 0).lag == 100
    assert read(0, 120, 100, 0).lag == 0  # a commit past a truncated end is no lag


def test_rates_wait_and_catch_up_between_two_reads() -> None:
    before = [read(0, 100, 400, 1000.0), read(1, 50, 50, 1000.0)]
    now = [read(0, 300, 500, 1010.0), read(1, 50, 50, 1010.0)]
    first, idle = partition_lags(now, {("g", "p.channel.email", 0): 950.0}, before)
    assert (first.lag, first.consumed_per_s, first.produced_per_s) == (200, 20.0, 10.0)
    assert first.oldest_wait_s == 60.0  # read at 1010, the record was written at 950
    assert first.catch_up_s == 20.0  # 200 behind, gaining 10 a second
    assert (idle.lag, idle.oldest_wait_s, idle.catch_up_s) == (0, None, 0.0)
    assert totals([first, idle]) == {"lag": 200, "oldest_wait_s": 60.0, "catch_up_s": 20.0}


def test_falling_behind_or_a_single_read_never_promises_a_time() -> None:
    assert catch_up_seconds(10, 5.0, 5.0) is None
    assert catch_up_seconds(10, 5.0, 8.0) is None
    assert catch_up_seconds(0, 0.0, 8.0) == 0.0
    (single,) = partition_lags([read(0, 1, 11, 5.0)], {})
    assert (single.consumed_per_s, single.catch_up_s, single.oldest_wait_s) == (None, None, None)
    assert totals([single])["catch_up_s"] is None


DURATIONS = [(None, "-"), (0.25, "0.2s"), (9.96, "10.0s"), (42.4, "42s"), (245, "4m05s"),
             (3 * 3600 + 13 * 60 + 9, "3h13m")]  # fmt: skip


@pytest.mark.parametrize(("seconds", "text"), DURATIONS)
def test_durations_read_at_a_glance(seconds: float | None, text: str) -> None:
    assert describe_seconds(seconds) == text


def test_the_table_names_logical_topics_and_sums_up() -> None:
    before = [read(0, 100, 400, 1000.0)]
    now = [read(0, 300, 500, 1010.0)]
    table = render_table(
        partition_lags(now, {("g", "p.channel.email", 0): 950.0}, before),
        lambda name: name.removeprefix("p."),
    )
    head, row, summary = table.splitlines()
    assert head.split() == ["GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG",
                            "OLDEST-WAIT", "RATE/s", "CATCH-UP"]  # fmt: skip
    assert row.split() == ["g", "channel.email", "0", "300", "500", "200", "1m00s", "20.0", "20s"]
    assert summary == "total lag 200, oldest record waiting 1m00s, caught up in 20s"
    stuck = render_table(partition_lags([read(0, 300, 600, 1020.0)], {}, now))
    assert stuck.splitlines()[-1].endswith("caught up in never at these rates")
