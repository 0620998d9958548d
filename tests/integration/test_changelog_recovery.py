"""Table recovery through `streams.kafka.changelog_recovery` on a real broker, with real workers.

States are written straight to the `lifecycle` changelog (superseded versions, tombstones and
all), as a crashed worker would have left them; a fresh worker must load every one through the
plain-consumer path, index exactly the live deadlines, and fire each of them once. A SIGKILL
and restart, then a second worker (a rebalance), must re-index the same deadlines and fire
nothing twice.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from router.sla.lifecycle import on_action, on_ticket_event
from router.sla.policy import SlaConfig, load_sla_config
from router.sla.state import LifecycleState, encode_state, index_entry
from schemas.action import TicketActionEvent
from schemas.message import Channel
from schemas.ticket import Priority, RoutedTicket, SlaTerms, TicketEvent, TicketEventKind
from tests.harness import Output, WorkerProcess, produce, wait_for
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_sla import (
    SLA_TOPICS,
    action_bytes,
    ids_per_firing,
    sla,
    sla_env,
    write_policy,
)

pytestmark = pytest.mark.integration

LIVE = 1200  # routed, first response due in seconds: must fire
SUPERSEDED = 100  # resolved, then routed again (later record wins): must fire
RESOLVED = 100  # routed, then resolved: nothing pending
DELETED = 100  # routed, then a tombstone: gone
PARTITIONS = 3  # the harness's ROUTER_PARTITIONS


def routed(config: SlaConfig, ticket_id: str, now: datetime) -> LifecycleState:
    ticket = RoutedTicket(
        ticket_id=ticket_id, queue="dept:general", priority=Priority.NORMAL,
        sla=SlaTerms(policy="standard"), rule_id="test", ruleset_version="1",
        channel=Channel.EMAIL, opened_at=now, message_count=0, messages=[],
    )
    event = TicketEvent(ticket_id=ticket_id, kind=TicketEventKind.ROUTED, at=now,
                        queue="dept:general", priority=Priority.NORMAL, sla_policy="standard",
                        ticket=ticket)
    state = on_ticket_event(None, event, event_id=f"r-{ticket_id}", now=now, config=config).state
    assert state is not None
    assert index_entry(state) is not None
    return state


def resolved(config: SlaConfig, state: LifecycleState, now: datetime) -> LifecycleState:
    action = TicketActionEvent.model_validate_json(
        action_bytes(f"x-{state.ticket_id}", state.ticket_id, "resolve"))
    after = on_action(state, action.data, action_id=action.id, now=now, config=config).state
    assert after is not None
    assert index_entry(after) is None
    return after


Records = list[tuple[bytes, bytes | None]]


def changelog(config: SlaConfig, now: datetime) -> tuple[Records, set[str]]:
    """Changelog records in write order, and the tickets whose deadlines must fire."""
    records: Records = []
    firing: set[str] = set()

    def put(ticket_id: str, *states: LifecycleState | None) -> None:
        records.extend((ticket_id.encode(), None if s is None else encode_state(s))
                       for s in states)

    for n in range(LIVE):
        put(f"live-{n}", routed(config, f"live-{n}", now))
        firing.add(f"live-{n}")
    for n in range(SUPERSEDED):
        tid = f"again-{n}"
        put(tid, resolved(config, routed(config, tid, now), now), routed(config, tid, now))
        firing.add(tid)
    for n in range(RESOLVED):
        tid = f"done-{n}"
        first = routed(config, tid, now)
        put(tid, first, resolved(config, first, now))
    for n in range(DELETED):
        put(f"gone-{n}", routed(config, f"gone-{n}", now), None)
    return records, firing


def create_compacted(bootstrap: str, topic: str) -> None:
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, PARTITIONS, 1,
                                                topic_configs={"cleanup.policy": "compact"})])
        finally:
            await admin.close()

    asyncio.run(run())


def log_events(worker: WorkerProcess, name: str) -> list[dict[str, Any]]:
    out = []
    for line in worker.log_path.read_bytes().splitlines():
        if f'"event":"{name}"'.encode() in line:
            out.append(orjson.loads(line[line.index(b"{"):]))
    return out


def loaded_lifecycle_records(worker: WorkerProcess) -> int:
    return sum(n for event in log_events(worker, "changelog_loaded")
               for tp, n in event["partitions"].items() if "lifecycle-changelog:" in tp)


def latest_rebuild(worker: WorkerProcess) -> dict[str, Any] | None:
    found = log_events(worker, "lifecycle_index_rebuilt")
    return found[-1] if found else None


def wait_for_rebuild(worker: WorkerProcess) -> dict[str, Any]:
    wait_for(lambda: latest_rebuild(worker) is not None, 90, "the index rebuild")
    rebuilt = latest_rebuild(worker)
    assert rebuilt is not None
    return rebuilt


def check_fired_once(outputs: list[Output], firing: set[str]) -> set[tuple[str, str, str, int]]:
    """Every ticket of `firing` breached, nothing else fired, each firing under one id.

    A warning fires too when the worker was up before half the target passed; once past the
    deadline, only the breach fires."""
    ids = ids_per_firing(outputs)
    breaches = {(t, "first_response", "breached", 1) for t in firing}
    assert breaches <= set(ids), sorted(breaches - set(ids))[:10]
    allowed = breaches | {(t, "first_response", "warning", 0) for t in firing}
    assert set(ids) <= allowed, sorted(set(ids) - allowed)[:10]
    assert {k: v for k, v in ids.items() if len(v) != 1} == {}
    return set(ids)


def test_states_in_the_changelog_are_loaded_indexed_and_fired_once(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path, first_response="10s", escalation="[{}]")
    config = load_sla_config(policy)
    records, firing = changelog(config, datetime.now(UTC))
    # states with something pending at the end: every live ticket (first response, resolution)
    pending = len(firing)
    create_compacted(engine.bootstrap, f"{engine.prefix}ticket-router-lifecycle-changelog")
    produce(engine.bootstrap, f"{engine.prefix}ticket-router-lifecycle-changelog", records)

    first = engine.start_worker(**sla_env(policy))
    rebuilt = wait_for_rebuild(first)
    assert rebuilt["pending_deadlines"] == pending
    assert rebuilt["partitions"] == list(range(PARTITIONS))
    assert loaded_lifecycle_records(first) == len(records)  # all of it by the fast path

    collector = engine.collector(*SLA_TOPICS)

    def fired(outs: list[Output]) -> set[str]:
        return {e.ticket_id for _, e in sla(outs, "breached")}

    outputs = collector.poll_until(lambda outs: fired(outs) >= firing, 90,
                                   "a breach for every live ticket",
                                   describe=lambda outs: f"{len(fired(outs))} tickets breached")
    fired_before = check_fired_once(outputs, firing)

    # SIGKILL, restart: the same deadlines again (now the resolution ones), nothing re-fired.
    first.kill()
    second = engine.start_worker(**sla_env(policy))
    assert wait_for_rebuild(second)["pending_deadlines"] == pending
    assert loaded_lifecycle_records(second) >= len(records)

    # A second worker: the partitions split, each side re-indexes what it now owns.
    third = engine.start_worker(**sla_env(policy))

    def split() -> bool:
        second_now, third_now = latest_rebuild(second), latest_rebuild(third)
        return (second_now is not None and third_now is not None
                and len(second_now["partitions"]) + len(third_now["partitions"]) == PARTITIONS
                and second_now["pending_deadlines"] + third_now["pending_deadlines"] == pending)

    wait_for(split, 90, "both workers to own and index their partitions")
    quiet_until = time.time() + 3
    outputs = collector.poll_until(lambda outs: time.time() > quiet_until, 30, "a quiet spell")
    assert check_fired_once(outputs, firing) == fired_before
