"""A direct worker stalled past its session (SIGSTOP, as a long GC pause or a frozen VM would)
while another takes its partitions over, writes their tables and leaves: on its return it
notices the stall and processes nothing until it has rejoined, then reads those tables back
rather than keeping what it held, and no ticket forks."""

from __future__ import annotations

import os
import signal

import pytest

from tests.harness import WorkerProcess, wait_for
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_direct_routing import (
    assigned_events,
    assignments,
    carried_on,
    more_queued,
    second_worker,
    start_under_load,
)
from tests.integration.test_shutdown import committed_offsets

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def committed_per_partition(engine: EngineUnderTest) -> dict[int, int]:
    """The group's committed offsets on the channel topics, summed per partition number."""
    out: dict[int, int] = {}
    for tp, offset in committed_offsets(engine.bootstrap, engine.prefix).items():
        out[tp.partition] = out.get(tp.partition, 0) + offset
    return out


def send(worker: WorkerProcess, sig: signal.Signals) -> None:
    assert worker.proc is not None
    assert worker.proc.poll() is None  # still running
    os.kill(worker.proc.pid, sig)


def test_a_stalled_worker_reads_back_what_another_wrote_while_it_was_away(
    engine: EngineUnderTest,
) -> None:
    first, load, collector = start_under_load(engine, 300)
    try:
        second = second_worker(engine, first)
        joins = len(assigned_events(first))
        send(first, signal.SIGSTOP)
        try:
            wait_for(lambda: assignments(second)[-1] == [0, 1, 2], 60,
                     "the second worker to take the stalled one's partitions")  # fmt: skip
            # the second worker routes (and writes the tables of) every partition it took
            start = committed_per_partition(engine)

            def routed_everywhere() -> bool:
                now = committed_per_partition(engine)
                return all(now.get(p, 0) >= start.get(p, 0) + 20 for p in (0, 1, 2))

            wait_for(routed_everywhere, 60, "the second worker to commit on every partition")
            assert second.stop() == 0  # the stalled one comes back to every partition
        finally:
            send(first, signal.SIGCONT)
        wait_for(lambda: len(assigned_events(first)) > joins
                 and assignments(first)[-1] == [0, 1, 2], 60,
                 "the first worker to rejoin and take every partition")  # fmt: skip
        log = first.log_text(10**7)
        assert '"direct_stage_stalled"' in log  # it noticed, and held its batches back
        # at most the batch in flight at the stall (sent before it) fails to commit: none
        # was processed after it, with partitions that were no longer its own
        assert log.count('"commit_failed_rebalanced"') <= 1
        back = assigned_events(first)[-1]
        # what it held before the stall was written meanwhile: none of it is kept
        assert back["tables_kept"] == []
        assert back["changelog_records"] > 0
        more_queued(collector, 300, "outputs after the rejoin")
    finally:
        produced = load.stop()
    carried_on(collector, produced)
