"""Replies written while the worker is down stop their clocks before the breaches fire.

The worker is SIGKILLed right after routing; while it is down, desks write a backlog of
internal notes and then, before the deadline, a reply per ticket. The restarted worker finds
every deadline passed, and the replies behind thousands of notes: the timer must hold the
breaches until the backlog it would pre-empt is applied (streams/stages/horizon.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.harness import wait_for
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_sla import (
    SLA_TOPICS,
    action_bytes,
    open_tickets,
    routed_ticket_ids,
    send_actions,
    sla,
    sla_env,
    write_policy,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

NOTES_PER_TICKET = 800  # the forwarding agent needs seconds for these: long after recovery
TARGET_S = 16  # first response; the warning at half of it must not come before the kill


def test_replies_queued_during_an_outage_prevent_their_breaches(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    tickets = 5
    policy = write_policy(tmp_path, first_response=f"{TARGET_S}s", late_grace="1",
                          escalation="[{}]")
    first = engine.start_worker(**sla_env(policy))
    open_tickets(engine, tickets, "backlog")
    collector = engine.collector(*SLA_TOPICS)
    routed = collector.poll_until(
        lambda outs: len(routed_ticket_ids(outs)) >= tickets, 60, "every ticket routed")
    first.kill()
    tids = sorted(routed_ticket_ids(routed))
    assert sla(routed) == [], "too slow: SLA events fired before the kill"
    notes = [(tid.encode(), action_bytes(f"note-{tid}-{n}", tid, "internal_note", body="hm"))
             for n in range(NOTES_PER_TICKET) for tid in tids]
    replies = [(tid.encode(), action_bytes(f"reply-{tid}", tid, "reply", body="Refund sent."))
               for tid in tids]
    send_actions(engine, notes)
    send_actions(engine, replies)  # stamped now: before the deadlines
    deadline_passed = time.time() + TARGET_S + 2  # the targets run from routing, before this
    wait_for(lambda: time.time() > deadline_passed, 30, "every deadline to pass while down")
    restarted_at = time.time()
    engine.start_worker(**sla_env(policy))

    outputs = collector.poll_until(
        lambda outs: {e.ticket_id for _, e in sla(outs, "met")} >= set(tids), 120,
        "a met first response per ticket after the restart",
        describe=lambda outs: f"{len(sla(outs, 'met'))} met, "
                              f"{len(sla(outs, 'breached'))} breached")
    first_response = [e for _, e in sla(outputs) if e.metric.value == "first_response"]
    assert [e for e in first_response if e.kind.value == "breached"] == []
    met = [e for e in first_response if e.kind.value == "met"]
    assert sorted(e.ticket_id for e in met) == tids
    assert all(e.fired_at.timestamp() > restarted_at for e in met)
