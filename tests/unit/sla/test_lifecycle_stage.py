"""The lifecycle stage's logic with fakes for the table, the producer and the local data."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from router.records import OutRecord
from router.sla.outbox import split_stored
from router.sla.policy import SlaConfig
from router.sla.render import due_command, render_output
from router.sla.state import TicketEventOut, decode_state, encode_state
from schemas.ticket import TicketEvent, TicketEventKind
from schemas.topics import SLA_EVENTS, TICKETS_ACTIONS, TICKETS_COMMANDS, TICKETS_EVENTS
from streams.settings import RouterSettings
from streams.stages.sla import LifecycleStage
from tests.unit.sla.sla_support import routed_snapshot

HOURS_AGO = datetime.now(UTC) - timedelta(hours=5)  # `basic`: first response due after 4 h


class Sent(list[tuple[str, OutRecord, int | None]]):
    def on(self, topic: str) -> list[OutRecord]:
        return [r for t, r, _ in self if t == topic]


class Local:
    def __init__(self, table: dict[bytes, bytes], partition_of: dict[bytes, int]) -> None:
        self.table, self.partition_of = table, partition_of

    def get(self, key: bytes) -> bytes | None:
        return self.table.get(key)

    def keys_by_partition(self, partitions: set[int]) -> Mapping[int, Sequence[bytes]]:
        out: dict[int, list[bytes]] = {}
        for key in self.table:
            if self.partition_of[key] in partitions:
                out.setdefault(self.partition_of[key], []).append(key)
        return out



class Harness:
    def __init__(self, config: SlaConfig) -> None:
        self.table: dict[bytes, bytes] = {}
        self.partition_of: dict[bytes, int] = {b"T-1": 1}
        self.sent = Sent()
        self.committed: dict[tuple[str, int], int] = {}
        self.offsets = iter(range(100, 10_000))

        async def emit(records: Iterable[OutRecord], partition: int | None) -> None:
            self.sent.extend((r.topic, r, partition) for r in records)

        self.stage = LifecycleStage(
            RouterSettings(topic_prefix=""), config, self.table,
            Local(self.table, self.partition_of), emit,
            committed=lambda topic, partition: self.committed.get((topic, partition)),
        )

    def run(self, coro: Any) -> Any:
        async def step() -> Any:
            try:
                return await coro
            finally:
                # An overdue wake-up (on_recovered sets one ~1 ms out) belongs to this step's
                # loop: asyncio.run's teardown would fire it when slow, popping the index.
                wakeup = self.stage.deadlines._wakeup
                if wakeup is not None:
                    wakeup.cancel()
                    self.stage.deadlines._wakeup = None

        return asyncio.run(step())

    def routed(self, event_id: str = "ev-routed") -> int:
        data = TicketEvent(
            ticket_id="T-1", kind=TicketEventKind.ROUTED, at=HOURS_AGO, queue="dept:general",
            sla_policy="basic",
            ticket=routed_snapshot("dept:general", "basic").model_copy(
                update={"opened_at": HOURS_AGO}),
        )
        doc = {"specversion": "1.0", "id": event_id, "source": "test",
               "type": "support.ticket.routed", "data": data.model_dump(mode="json")}
        offset = next(self.offsets)
        self.run(self.stage.handle(TICKETS_EVENTS.name, 1, offset, b"T-1", orjson.dumps(doc), []))
        return offset

    def due(self, offset: int | None = None) -> int:
        record = due_command("T-1", 0.0)
        offset = next(self.offsets) if offset is None else offset
        self.run(self.stage.handle(TICKETS_COMMANDS.name, 1, offset, record.key, record.value,
                                   list(record.headers)))
        return offset

    def sla_ids(self) -> list[str]:
        return [orjson.loads(r.value)["id"] for r in self.sent.on(SLA_EVENTS.name)]


@pytest.fixture
def harness(config: SlaConfig) -> Harness:
    return Harness(config)


def test_due_command_fires_stores_and_reindexes(harness: Harness) -> None:
    harness.routed()
    assert harness.stage.deadlines.index.partitions == frozenset()  # not assigned: not indexed
    harness.run(harness.stage.deadlines.on_recovered({1}))
    assert len(harness.stage.deadlines.index) == 1
    harness.due()
    (breach,) = [orjson.loads(r.value) for r in harness.sent.on(SLA_EVENTS.name)]
    assert breach["type"] == "support.sla.breached"
    assert breach["data"]["metric"] == "first_response"
    state, pending = split_stored(harness.table[b"T-1"])
    assert "breached:1" in decode_state(state).clocks["first_response"].fired
    assert [p.source for p in pending] == ["tickets.commands:1:101"]
    # a duplicate due command changes nothing
    harness.due()
    assert len(harness.sent.on(SLA_EVENTS.name)) == 1


def test_replayed_input_resends_its_outputs_with_the_same_ids(harness: Harness) -> None:
    harness.routed()
    offset = harness.due()
    stored = harness.table[b"T-1"]
    harness.due(offset)  # read again after a crash: the state already holds its effects
    assert harness.table[b"T-1"] == stored
    assert len(harness.sla_ids()) == 2
    assert len(set(harness.sla_ids())) == 1


def test_the_next_input_reads_the_table_not_the_state_last_written_here(
    harness: Harness,
) -> None:
    # The stage keeps the state it last stored decoded, for the ticket's next input; once the
    # table holds other bytes (another worker's changelog record, a forgotten batch), it reads
    # those instead.
    harness.routed("ev-1")
    mine = harness.table[b"T-1"]
    theirs = decode_state(split_stored(mine)[0])
    # they applied ev-2 already, and moved the ticket since
    theirs.recent_inputs = [*theirs.recent_inputs, "ev-2"]
    theirs.queue = "dept:billing"
    harness.table[b"T-1"] = encode_state(theirs)
    harness.routed("ev-2")
    assert harness.table[b"T-1"] == encode_state(theirs)  # a duplicate to them: nothing stored
    # and while the table returns the bytes written here, the next input builds on them
    harness.routed("ev-3")
    assert harness.table[b"T-1"] != encode_state(theirs)
    harness.routed("ev-4")
    assert decode_state(split_stored(harness.table[b"T-1"])[0]).recent_inputs[-3:] == [
        "ev-2", "ev-3", "ev-4"]


def test_committed_inputs_leave_the_pending_list(harness: Harness) -> None:
    harness.routed()
    offset = harness.due()
    harness.committed[("tickets.commands", 1)] = offset + 1
    reply = {"specversion": "1.0", "id": "act-1", "source": "desk", "type": "support.ticket.action",
             "data": {"action": "resolve", "ticket_id": "T-1", "at": datetime.now(UTC).isoformat(),
                      "actor": {"id": "agent-1", "role": "agent"}}}
    harness.run(
        harness.stage.handle(TICKETS_ACTIONS.name, 0, 7, b"T-1", orjson.dumps(reply))
    )
    (command,) = harness.sent.on(TICKETS_COMMANDS.name)
    harness.run(harness.stage.handle(TICKETS_COMMANDS.name, 1, 500, command.key, command.value,
                                     list(command.headers)))
    _, pending = split_stored(harness.table[b"T-1"])
    assert [p.source for p in pending] == ["tickets.commands:1:500"]
    assert [orjson.loads(r.value)["type"] for r in pending[0].records] == [
        "support.sla.met", "support.ticket.resolved"]  # resolution met, then the event


def test_own_events_are_skipped_unread(harness: Harness) -> None:
    event = TicketEvent(ticket_id="T-1", kind=TicketEventKind.REPLIED, at=HOURS_AGO)
    (record,) = render_output(TicketEventOut("id-1", event))
    harness.run(harness.stage.handle(TICKETS_EVENTS.name, 1, 5, record.key, b"not even json",
                                     list(record.headers)))
    assert harness.stage.counts["own_event"] == 1
    assert harness.sent == []


def test_rebuild_revoke_and_refresh_after_recovery(harness: Harness) -> None:
    harness.routed()
    harness.table[b"T-2"] = harness.table[b"T-1"].replace(b'"T-1"', b'"T-2"')
    harness.partition_of[b"T-2"] = 2
    harness.run(harness.stage.deadlines.on_recovered({1, 2}))
    assert harness.stage.deadlines.index.partitions == frozenset({1, 2})
    assert len(harness.stage.deadlines.index) == 2
    assert harness.stage.deadlines.last_rebuild["states_read"] == 2
    # partition 2 moves away; another worker resolved T-1 meanwhile (recovered changelog)
    harness.stage.deadlines.suspend()
    resolved = decode_state(split_stored(harness.table[b"T-1"])[0])
    resolved.next_due_ts = None
    harness.table[b"T-1"] = encode_state(resolved)
    harness.stage.deadlines.changelog_applied([(1, b"T-1"), (2, b"T-2")])
    harness.run(harness.stage.deadlines.on_recovered({1}))
    assert harness.stage.deadlines.index.partitions == frozenset({1})
    assert len(harness.stage.deadlines.index) == 0
    assert harness.stage.deadlines.last_rebuild["refreshed"] == 1


def test_timer_fires_only_while_owning(harness: Harness) -> None:
    harness.routed()
    assert harness.run(harness.stage.deadlines.fire_due()) == 0  # before any recovery
    harness.run(harness.stage.deadlines.on_recovered({1}))
    harness.stage.deadlines.suspend()
    assert harness.run(harness.stage.deadlines.fire_due()) == 0

    async def resume_and_fire() -> int:
        await harness.stage.deadlines.on_recovered({1})
        return await harness.stage.deadlines.fire_due()

    assert harness.run(resume_and_fire()) == 1
    ((topic, record, partition),) = harness.sent
    assert (topic, record.key, partition) == (TICKETS_COMMANDS.name, b"T-1", 1)
    assert dict(record.headers)["router.cmd"] == b"due"


def test_actions_are_validated_forwarded_or_dead_lettered(harness: Harness) -> None:
    good = {"specversion": "1.0", "id": "a-1", "source": "desk", "type": "support.ticket.action",
            "data": {"action": "resolve", "ticket_id": "T-1", "at": "2025-03-03T10:00:00Z",
                     "actor": {"id": "acme", "role": "vendor"}}}
    bad = {**good, "id": "a-2", "data": {**good["data"], "action": "explode"}}
    for offset, doc in enumerate((good, bad)):
        action = orjson.dumps(doc)
        harness.run(harness.stage.handle(TICKETS_ACTIONS.name, 3, offset, b"k", action))
    (command,) = harness.sent.on(TICKETS_COMMANDS.name)
    assert command.key == b"T-1"
    (rejected,) = harness.sent.on("channel.dlq")
    assert orjson.loads(rejected.value)["data"]["reason"] == "schema_violation"
    # the vendor's resolve reaches the lifecycle, which refuses it: not the vendor's queue
    harness.routed()
    stored = harness.table[b"T-1"]
    harness.run(harness.stage.handle(TICKETS_COMMANDS.name, 1, 9, command.key, command.value,
                                     list(command.headers)))
    refused = orjson.loads(harness.sent.on("channel.dlq")[-1].value)["data"]
    assert refused["reason"] == "action_refused"
    assert refused["source"] == {"topic": TICKETS_ACTIONS.name, "partition": 3, "offset": 0,
                                 "timestamp_ms": None}
    assert refused["original"]["key"] == "k"
    assert harness.table[b"T-1"] == stored


def test_due_entries_that_could_not_be_sent_stay_indexed(harness: Harness) -> None:
    harness.routed()
    harness.run(harness.stage.deadlines.on_recovered({1}))

    async def broken(partition: int, ticket_id: str, now: float) -> None:
        raise RuntimeError("no metadata")

    harness.stage.deadlines._send_due = broken
    assert harness.run(harness.stage.deadlines.fire_due()) == 0
    assert len(harness.stage.deadlines.index) == 1  # retried on the next tick


def test_dispute_actions_are_left_to_the_disputes_stage(harness: Harness) -> None:
    dispute = {"specversion": "1.0", "id": "d-1", "source": "app", "type": "support.dispute.action",
               "data": {"action": "accept_offer", "order_id": "o-1", "at": "2025-03-03T10:00:00Z",
                        "actor": {"id": "b-1", "role": "buyer"}}}  # fmt: skip
    harness.run(harness.stage.handle(TICKETS_ACTIONS.name, 3, 0, b"o-1", orjson.dumps(dispute)))
    assert harness.sent == []  # neither forwarded nor dead-lettered
