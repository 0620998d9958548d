"""The routing stage's processor on a dict table: no broker, a fixed clock."""

from __future__ import annotations

import orjson

from router.clock import FakeClock
from router.default_policy import DefaultPolicy
from router.reroutes import RerouteNotice
from router.stages.contract import InRecord
from router.stages.routing import PolicyHolder, RoutingProcessor
from router.tickets import TicketState, state_key
from schemas.message import Channel
from schemas.topics import TICKETS_REROUTES
from tests.factories import inbound_bytes

CLOCK = FakeClock()


def processor(table: dict[bytes, bytes] | None = None) -> RoutingProcessor:
    return RoutingProcessor(
        {} if table is None else table, PolicyHolder(DefaultPolicy()), max_record_bytes=4096
    )


def record(offset: int, value: bytes, key: bytes | None = b"thread-1") -> InRecord:
    return InRecord("channel.email", 0, offset, key, value, 1.7e9)


def kinds(out: list) -> list[str]:  # type: ignore[type-arg]
    return [orjson.loads(r.value)["type"] if r.value.startswith(b"{") else r.topic for r in out]


def test_a_new_ticket_writes_queue_decision_and_events_then_stores_its_state() -> None:
    table: dict[bytes, bytes] = {}
    out = processor(table).process(record(0, inbound_bytes("e-1")), CLOCK.now())
    assert [r.topic for r in out][:2] == ["queue.vendor.acme", "tickets.decisions"]
    assert kinds(out)[2:] == [
        "support.ticket.opened", "support.ticket.message_added", "support.ticket.routed"
    ]
    state = TicketState.from_bytes(table[state_key(Channel.EMAIL, "thread-1")])
    assert state.message_count == 1
    assert state.opened_at == CLOCK.now()  # the stage reads the clock it is given


def test_a_follow_up_joins_the_ticket_and_a_replay_re_emits_the_same_ids() -> None:
    table: dict[bytes, bytes] = {}
    stage = processor(table)
    first = stage.process(record(0, inbound_bytes("e-1")), CLOCK.now())
    second = stage.process(record(1, inbound_bytes("e-2")), CLOCK.now())
    assert [r.topic for r in second] == ["queue.vendor.acme", "tickets.events"]
    replayed = stage.process(record(0, inbound_bytes("e-1")), CLOCK.now())  # same position
    assert [orjson.loads(r.value)["id"] for r in replayed] == [
        orjson.loads(r.value)["id"] for r in first
    ]
    assert stage.counts == {"opened": 1, "followup": 1, "replayed": 1}


def test_a_retried_id_from_another_record_adds_nothing() -> None:
    stage = processor()
    stage.process(record(0, inbound_bytes("e-1")), CLOCK.now())
    assert stage.process(record(5, inbound_bytes("e-1")), CLOCK.now()) == []
    assert stage.counts["duplicate"] == 1
    assert [n.event for n in stage.notes] == ["duplicate_inbound"]


def test_bad_input_becomes_a_dead_letter_with_its_reason_and_a_note() -> None:
    stage = processor()
    out = stage.process(record(3, b"{not json"), CLOCK.now())
    (dlq,) = out
    assert dlq.topic == "channel.dlq"
    assert orjson.loads(dlq.value)["data"]["reason"] == "invalid_json"
    oversize = stage.process(record(4, inbound_bytes("e-9", body="x" * 5000)), CLOCK.now())
    assert orjson.loads(oversize[0].value)["data"]["reason"] == "oversize"
    assert stage.dead_letters == {"invalid_json": 1, "oversize": 1}
    assert [n.event for n in stage.notes] == ["record_rejected", "record_rejected"]


def test_a_record_keyed_by_something_else_is_republished_keyed_by_its_thread() -> None:
    (out,) = processor().process(record(0, inbound_bytes("e-1"), key=b"wrong"), CLOCK.now())
    assert (out.topic, out.key) == ("channel.email", b"thread-1")


def test_an_unexpected_error_is_dead_lettered_and_the_stage_goes_on() -> None:
    class Broken(DefaultPolicy):
        def decide(self, context):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    stage = RoutingProcessor({}, PolicyHolder(Broken()), max_record_bytes=4096)
    (dlq,) = stage.process(record(0, inbound_bytes("e-1")), CLOCK.now())
    data = orjson.loads(dlq.value)["data"]
    assert (dlq.topic, data["reason"]) == ("channel.dlq", "processing_error")
    assert "RuntimeError: boom" in data["error"]
    (note,) = stage.notes
    assert note.event == "processing_failed"
    assert "RuntimeError" in note.fields["exception"]


def test_a_reroute_notice_moves_the_ticket_for_its_follow_ups() -> None:
    table: dict[bytes, bytes] = {}
    stage = processor(table)
    stage.process(record(0, inbound_bytes("e-1")), CLOCK.now())
    ticket_id = TicketState.from_bytes(table[state_key(Channel.EMAIL, "thread-1")]).ticket_id
    notice = RerouteNotice(ticket_id, "email", "thread-1", "dept:disputes", "high")
    moved = InRecord(TICKETS_REROUTES.name, 0, 0, b"thread-1", notice.to_bytes())
    assert stage.process(moved, CLOCK.now()) == []
    follow_up = stage.process(record(1, inbound_bytes("e-2")), CLOCK.now())
    assert follow_up[0].topic == "queue.dept.disputes"
    assert stage.counts["moved"] == 1
