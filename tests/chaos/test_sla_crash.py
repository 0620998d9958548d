"""SIGKILL the worker around SLA deadlines, restart it: every firing once, by id, none missing."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from tests.harness import Output, wait_for
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_sla import (
    SLA_TOPICS,
    firing_key,
    ids_per_firing,
    open_tickets,
    routed_ticket_ids,
    sla,
    sla_env,
    write_policy,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def report(outputs: list[Output]) -> tuple[int, int]:
    ids = ids_per_firing(outputs)
    raw = Counter(firing_key(e) for _, e in sla(outputs))
    print(f"{len(ids)} firings, {sum(raw.values())} SLA records "
          f"({sum(raw.values()) - len(ids)} re-sent with the same id)")
    return len(ids), sum(raw.values())


def test_sigkill_before_deadline_then_restart_fires_breach_once_marked_late(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    tickets = 20
    policy = write_policy(tmp_path, first_response="8s", late_grace="1", escalation="[{}]")
    first = engine.start_worker(**sla_env(policy))
    open_tickets(engine, tickets, "down")
    collector = engine.collector(*SLA_TOPICS)
    # Warnings (at half the target) prove the states are stored and fired markers written.
    outputs = collector.poll_until(
        lambda outs: len(sla(outs, "warning")) >= tickets and not sla(outs, "breached"),
        60, "a warning per ticket, before any breach")
    first.kill()
    deadline = max(e.deadline.timestamp() for _, e in sla(outputs, "warning"))
    assert time.time() < deadline, "killed too late: a deadline passed before the kill"
    wait_for(lambda: time.time() > deadline + 2, 30, "every deadline to pass while down")
    restarted_at = time.time()
    engine.start_worker(**sla_env(policy))

    outputs = collector.poll_until(
        lambda outs: len({e.ticket_id for _, e in sla(outs, "breached")}) >= tickets,
        60, "a breach per ticket after the restart")
    tids = routed_ticket_ids(outputs)
    assert len(tids) == tickets
    ids = ids_per_firing(outputs)
    expected = {(t, "first_response", kind, level) for t in tids
                for kind, level in (("warning", 0), ("breached", 1))}
    assert set(ids) == expected
    assert {k: v for k, v in ids.items() if len(v) != 1} == {}
    breaches = sla(outputs, "breached")
    assert all(e.late for _, e in breaches)  # fired after the engine was down
    assert all(e.fired_at.timestamp() > restarted_at for _, e in breaches)
    assert all(e.due_at == e.deadline for _, e in breaches)
    firings, records = report(outputs)
    assert records >= firings


def test_sigkill_while_breaches_fire_then_restart_loses_none(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    tickets = 200
    # Waves: warnings at 4 s, breaches at 8 s, rung 2 at 10 s, rung 3 at 12 s after opening.
    policy = write_policy(tmp_path, first_response="8s",
                          escalation="[{}, {after: 2s}, {after: 2s}]")
    # A long commit interval widens the window of processed but uncommitted commands.
    first = engine.start_worker(ROUTER_COMMIT_INTERVAL_S="5", **sla_env(policy))
    open_tickets(engine, tickets, "storm")
    collector = engine.collector(*SLA_TOPICS)
    collector.poll_until(lambda outs: len(sla(outs, "breached")) >= 20, 60,
                         "breaches to be firing")
    first.kill()
    engine.start_worker(**sla_env(policy))

    def complete(outs: list[Output]) -> bool:
        return len({e.ticket_id for _, e in sla(outs, "breached") if e.level == 3}) >= tickets

    outputs = collector.poll_until(
        complete, 90, "the third rung for every ticket",
        describe=lambda outs: f"{len(ids_per_firing(outs))} distinct firings")
    tids = routed_ticket_ids(outputs)
    assert len(tids) == tickets
    ids = ids_per_firing(outputs)
    expected = {(t, "first_response", kind, level) for t in tids
                for kind, level in (("warning", 0), ("breached", 1), ("breached", 2),
                                    ("breached", 3))}
    assert set(ids) == expected, sorted(expected ^ set(ids))[:10]
    assert {k: v for k, v in ids.items() if len(v) != 1} == {}
    report(outputs)
