"""Backlogs after an outage: a reply waiting in `tickets.actions` stops its clock before the
timer fires the breach it prevents (streams.stages.horizon), and an action read before its
ticket's first event waits for it (router.stages.parking)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from router.records import OutRecord
from router.sla.policy import SlaConfig
from router.sla.render import due_command
from router.stages.parking import Parked, ParkedAction, decode_parked, encode_parked
from schemas.ticket import TicketEvent, TicketEventKind
from schemas.topics import SLA_EVENTS, TICKETS_ACTIONS, TICKETS_COMMANDS, TICKETS_EVENTS
from streams.settings import RouterSettings
from streams.stages.sla import LifecycleStage
from tests.unit.sla.sla_support import routed_snapshot
from tests.unit.sla.test_lifecycle_stage import Local, Sent

# `basic`, normal priority: first response warns after 2 h and is breached after 4 h.
OPENED = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)


class Stage:
    def __init__(self, config: SlaConfig, *, watched: bool = False) -> None:
        self.table: dict[bytes, bytes] = {}
        self.parked: dict[bytes, bytes] = {}
        self.partition_of = {b"T-1": 1, b"T-404": 1, b"T-9": 1}
        self.sent = Sent()
        # tickets.actions partition 0: 10 records written while the engine was down
        self.actions_high: int | None = 10

        async def emit(records: Iterable[OutRecord], partition: int | None) -> None:
            self.sent.extend((r.topic, r, partition) for r in records)

        def positions() -> list[tuple[str, int, int | None, int | None]]:
            return [(TICKETS_ACTIONS.name, 0, self.actions_high, None)] if watched else []

        self.stage = LifecycleStage(
            RouterSettings(topic_prefix=""), config, self.table,
            Local(self.table, self.partition_of), emit,
            positions=positions, parked=self.parked,
            parked_local=Local(self.parked, self.partition_of),
        )

    def run(self, coro: Any) -> Any:
        async def step() -> Any:
            try:
                return await coro
            finally:  # a wake-up belongs to this step's loop
                wakeup = self.stage.deadlines._wakeup
                if wakeup is not None:
                    wakeup.cancel()
                    self.stage.deadlines._wakeup = None

        return asyncio.run(step())

    def routed(self) -> None:
        self.event(TicketEvent(
            ticket_id="T-1", kind=TicketEventKind.ROUTED, at=OPENED, queue="dept:general",
            sla_policy="basic",
            ticket=routed_snapshot("dept:general", "basic").model_copy(
                update={"opened_at": OPENED}),
        ))  # fmt: skip

    def event(self, data: TicketEvent) -> None:
        offset = len(self.sent)
        doc = {"specversion": "1.0", "id": f"ev-{data.kind.value}", "source": "test",
               "type": data.kind.event_type, "data": data.model_dump(mode="json")}
        self.run(self.stage.handle(TICKETS_EVENTS.name, 1, offset, b"T-1", orjson.dumps(doc),
                                   [], OPENED.timestamp()))  # fmt: skip
        if not self.stage.deadlines.firing:
            self.run(self.stage.deadlines.on_recovered({1}))

    def action(
        self, offset: int, at: datetime, action: dict[str, Any], ticket_id: str = "T-1"
    ) -> None:
        """Read record `offset` of tickets.actions (written at `at`) and apply what it became."""
        doc = {"specversion": "1.0", "id": f"act-{offset}", "source": "desk",
               "type": "support.ticket.action",
               "data": {"ticket_id": ticket_id, "at": at.isoformat(), **action}}
        before = len(self.sent.on(TICKETS_COMMANDS.name))
        self.run(self.stage.handle(TICKETS_ACTIONS.name, 0, offset, b"T-1", orjson.dumps(doc),
                                   None, at.timestamp()))
        for command in self.sent.on(TICKETS_COMMANDS.name)[before:]:
            self.handle_command(command)

    def handle_command(self, command: OutRecord) -> None:
        self.run(self.stage.handle(TICKETS_COMMANDS.name, 1, 100 + len(self.sent), command.key,
                                   command.value, list(command.headers)))

    def tick(self, sweep: bool = False) -> None:
        """The timer, then the lifecycle agent applying the due commands it sent."""
        before = len(self.sent.on(TICKETS_COMMANDS.name))
        self.run(self.stage.deadlines.fire_due())
        if sweep:
            self.run(self.stage.sweep_parked())
        for command in self.sent.on(TICKETS_COMMANDS.name)[before:]:
            self.handle_command(command)

    def sla(self) -> list[tuple[str, str]]:
        docs = [orjson.loads(r.value) for r in self.sent.on(SLA_EVENTS.name)]
        return [(d["type"].rsplit(".", 1)[1], d["data"]["metric"]) for d in docs]


NOTE = {"action": "internal_note", "body": "looking", "actor": {"id": "a-1", "role": "agent"}}
REPLY = {"action": "reply", "body": "on its way", "actor": {"id": "a-1", "role": "agent"}}


def test_a_reply_in_the_backlog_is_applied_before_the_breach_it_prevents(
    config: SlaConfig,
) -> None:
    stage = Stage(config, watched=True)
    stage.routed()
    stage.tick()  # recovery done, actions not read yet: nothing fires
    assert stage.sla() == []
    stage.action(0, OPENED + timedelta(hours=1), NOTE)
    stage.tick()  # read up to +1 h: the +2 h warning is not due yet
    assert stage.sla() == []
    stage.action(1, OPENED + timedelta(hours=2, minutes=30), NOTE)
    stage.tick()  # read up to +2.5 h: the warning fires, the +4 h breach waits
    assert stage.sla() == [("warning", "first_response")]
    stage.action(2, OPENED + timedelta(hours=3), REPLY)  # answered in time
    stage.actions_high = 3  # the backlog is read
    stage.tick()
    assert stage.sla() == [("warning", "first_response"), ("met", "first_response")]


def test_without_the_horizon_the_same_reply_arrives_after_the_breach(config: SlaConfig) -> None:
    # The failure the horizon prevents: the timer fires as soon as recovery completes.
    stage = Stage(config, watched=False)
    stage.routed()
    stage.tick()
    stage.action(2, OPENED + timedelta(hours=3), REPLY)
    assert ("breached", "first_response") in stage.sla()
    assert ("met", "first_response") not in stage.sla()


def test_a_due_command_fires_only_what_was_due_by_its_horizon(config: SlaConfig) -> None:
    stage = Stage(config, watched=False)
    stage.routed()
    now = datetime.now(UTC).timestamp()
    record = due_command("T-1", now)
    held = due_command("T-1", now, until=(OPENED + timedelta(hours=3)).timestamp())
    stage.handle_command(held)
    assert stage.sla() == [("warning", "first_response")]
    assert len(stage.stage.deadlines.index) == 1  # the breach stays indexed
    stage.handle_command(record)  # no horizon: what is due now
    assert stage.sla() == [("warning", "first_response"), ("breached", "first_response")]


def refusals(stage: Stage) -> list[str]:
    return [orjson.loads(r.value)["data"]["error"] for r in stage.sent.on("channel.dlq")]


def test_a_reply_read_before_its_ticket_waits_for_the_ticket(config: SlaConfig) -> None:
    stage = Stage(config)
    stage.run(stage.stage.deadlines.on_recovered({1}))
    stage.action(0, OPENED + timedelta(hours=1), NOTE)
    stage.action(1, OPENED + timedelta(hours=3), REPLY)  # in time, read before the ticket
    assert b"T-1" not in stage.table  # no clocks for a ticket the stage has not seen
    assert len(decode_parked(stage.parked[b"T-1"]).actions) == 2
    stage.routed()  # its first event: the parked actions follow it, in order
    assert stage.parked == {}
    assert stage.sla() == [("warning", "first_response"), ("met", "first_response")]
    assert stage.stage.counts["action_unparked"] == 2
    stage.tick()
    assert ("breached", "first_response") not in stage.sla()


def test_a_parked_move_waits_for_the_routed_event_and_publishes_the_ticket(
    config: SlaConfig,
) -> None:
    # A new ticket's events come as opened, message_added, routed; only `routed` carries the
    # ticket, which the move publishes on its new queue.
    stage = Stage(config)
    stage.run(stage.stage.deadlines.on_recovered({1}))
    move = {"action": "reassign", "queue": "dept:disputes", "reason": "buyer dispute",
            "actor": {"id": "a-1", "role": "agent"}}
    stage.action(0, OPENED, move)
    for kind in (TicketEventKind.OPENED, TicketEventKind.MESSAGE_ADDED):
        stage.event(TicketEvent(ticket_id="T-1", kind=kind, at=OPENED, queue="dept:general"))
        assert b"T-1" in stage.parked, kind
    assert stage.sent.on("queue.dept.disputes") == []
    stage.routed()
    assert stage.parked == {}
    (moved,) = stage.sent.on("queue.dept.disputes")
    assert orjson.loads(moved.value)["data"]["ticket_id"] == "T-1"


def test_an_action_read_between_opened_and_routed_waits_behind_the_parked_ones(
    config: SlaConfig,
) -> None:
    stage = Stage(config)
    stage.run(stage.stage.deadlines.on_recovered({1}))
    stage.action(0, OPENED + timedelta(hours=1), NOTE)
    stage.event(TicketEvent(ticket_id="T-1", kind=TicketEventKind.OPENED, at=OPENED,
                            queue="dept:general"))  # fmt: skip
    assert b"T-1" in stage.table  # the ticket is known, its routed event still to come
    stage.action(1, OPENED + timedelta(hours=3), REPLY)
    assert len(decode_parked(stage.parked[b"T-1"]).actions) == 2
    stage.routed()
    assert stage.parked == {}
    assert stage.stage.counts["action_unparked"] == 2
    assert stage.sla() == [("warning", "first_response"), ("met", "first_response")]


def test_an_action_for_an_unknown_ticket_is_refused_once_its_wait_is_over(
    config: SlaConfig,
) -> None:
    stage = Stage(config)
    stage.run(stage.stage.deadlines.on_recovered({1}))
    stage.action(0, OPENED, REPLY, ticket_id="T-404")
    stage.tick(sweep=True)  # waiting, not expired: nothing to settle
    assert refusals(stage) == []
    assert b"T-404" in stage.parked
    parked = decode_parked(stage.parked[b"T-404"])
    waited = stage.stage.parking.ttl_seconds + 1
    stage.parked[b"T-404"] = encode_parked(Parked(parked.since - waited, parked.actions))
    stage.tick(sweep=True)
    (error,) = refusals(stage)
    assert "unknown ticket 'T-404'" in error
    assert stage.parked == {}
    assert b"T-404" not in stage.table
    (dead,) = stage.sent.on("channel.dlq")
    assert orjson.loads(orjson.loads(dead.value)["data"]["original"]["value"])["id"] == "act-0"


def test_parked_actions_left_by_a_crash_are_applied_by_the_sweep(config: SlaConfig) -> None:
    stage = Stage(config)
    stage.routed()
    # As if the worker died after storing the ticket, before applying what waited for it.
    stage.stage.parking.park(b"T-1", ParkedAction(TICKETS_COMMANDS.name, 1, 7, reply_command(), {
        "router.cmd": b"action"}), OPENED.timestamp())
    stage.tick(sweep=True)
    assert ("met", "first_response") in stage.sla()
    assert stage.parked == {}


def test_a_ticket_takes_a_bounded_number_of_parked_actions(config: SlaConfig) -> None:
    stage = Stage(config)
    stage.stage.parking.max_per_ticket = 2
    for offset in range(3):
        stage.action(offset, OPENED, NOTE, ticket_id="T-9")
    assert len(decode_parked(stage.parked[b"T-9"]).actions) == 2
    (error,) = refusals(stage)
    assert "2 actions already wait for it" in error


def test_parked_entries_keep_bytes_exactly() -> None:
    action = ParkedAction("tickets.commands", 4, 99, "{\"é\": 1}".encode(),
                          {"router.src": bytes(range(256))})
    parked = Parked(12.5, (action, action))
    assert decode_parked(encode_parked(parked)) == parked


def reply_command() -> bytes:
    doc = {"specversion": "1.0", "id": "act-late", "source": "desk",
           "type": "support.ticket.action",
           "data": {"ticket_id": "T-1", "at": (OPENED + timedelta(hours=3)).isoformat(), **REPLY}}
    return orjson.dumps(doc)
