"""A direct worker stalled past its session (SIGSTOP, as a long GC pause or a frozen VM would)
while another takes its partitions over, writes their tables and leaves: on its return it
rejoins and reads those tables back rather than keeping what it held, and no ticket forks."""

from __future__ import annotations

import os
import signal

import pytest

from tests.harness import WorkerProcess, wait_for
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_direct_routing import (
    DIRECT,
    all_accounted,
    assigned_events,
    assignments,
    check_replays_identical,
    check_tickets_continue,
    queued,
    start_under_load,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def send(worker: WorkerProcess, sig: signal.Signals) -> None:
    assert worker.proc is not None
    assert worker.proc.poll() is None  # still running
    os.kill(worker.proc.pid, sig)


def test_a_stalled_worker_reads_back_what_another_wrote_while_it_was_away(
    engine: EngineUnderTest,
) -> None:
    first, load, collector = start_under_load(engine, 300)
    try:
        second = engine.start_worker(**DIRECT)

        def shared() -> bool:
            mine, theirs = assignments(first), assignments(second)
            return bool(mine and theirs and mine[-1] and theirs[-1]
                        and sorted(mine[-1] + theirs[-1]) == [0, 1, 2])  # fmt: skip

        wait_for(shared, 60, "the two workers to split the partitions")
        joins = len(assigned_events(first))
        send(first, signal.SIGSTOP)
        try:
            wait_for(lambda: assignments(second)[-1] == [0, 1, 2], 60,
                     "the second worker to take the stalled one's partitions")  # fmt: skip
            seen = len(collector.outputs)
            # a few hundred records on every partition's tables, written by the second worker
            collector.poll_until(lambda outs: len(queued(outs)) >= seen + 600, 120,
                                 "the second worker's outputs")  # fmt: skip
            assert second.stop() == 0  # the stalled one comes back to every partition
        finally:
            send(first, signal.SIGCONT)
        wait_for(lambda: len(assigned_events(first)) > joins
                 and assignments(first)[-1] == [0, 1, 2], 60,
                 "the first worker to rejoin and take every partition")  # fmt: skip
        back = assigned_events(first)[-1]
        # what it held before the stall was written meanwhile: none of it is kept
        assert back["tables_kept"] == []
        assert back["changelog_records"] > 0
        seen = len(collector.outputs)
        collector.poll_until(lambda outs: len(queued(outs)) >= seen + 300, 120,
                             "outputs after the rejoin")  # fmt: skip
    finally:
        produced = load.stop()
    outputs = all_accounted(collector, produced)
    check_replays_identical(outputs)
    check_tickets_continue(outputs)
