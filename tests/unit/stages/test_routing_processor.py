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
from schemas.outbound import (
    MESSAGE_RECEIPT,
    MESSAGE_STATUS,
    DeliveryReceipt,
    DeliveryReceiptEvent,
    MessageStatus,
    Platform,
    ReceiptStatus,
)
from schemas.topics import DELIVERY_RECEIPTS, TICKETS_REROUTES
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
    class Broken:  # not a DefaultPolicy subclass: that class may be compiled (mypyc)
        name, version = DefaultPolicy().name, DefaultPolicy().version

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


def receipt_record(offset: int, thread: str = "thread-1", key: bytes | None = None) -> InRecord:
    event = DeliveryReceiptEvent(
        specversion="1.0", id=f"receipt-{offset}", source="urn:test", type=MESSAGE_RECEIPT,
        data=DeliveryReceipt(
            channel=Channel.EMAIL, thread_ref=thread, platform=Platform.WHATSAPP,
            status=ReceiptStatus.READ, message_ids=("wamid.1",), at=CLOCK.now(),
        ),
    )  # fmt: skip
    value = event.model_dump_json().encode()
    return InRecord(DELIVERY_RECEIPTS.name, 0, offset, thread.encode() if key is None else key,
                    value, 1.7e9)  # fmt: skip


def test_a_receipt_becomes_the_status_of_its_threads_ticket_and_never_opens_one() -> None:
    table: dict[bytes, bytes] = {}
    stage = processor(table)
    assert stage.process(receipt_record(0, "no-ticket-here"), CLOCK.now()) == []
    assert table == {}
    stage.process(record(0, inbound_bytes("e-1")), CLOCK.now())
    ticket = TicketState.from_bytes(table[state_key(Channel.EMAIL, "thread-1")]).ticket_id
    (status,) = stage.process(receipt_record(1), CLOCK.now())
    doc = orjson.loads(status.value)
    assert (status.topic, status.key, doc["type"]) == (
        "tickets.events", ticket.encode(), MESSAGE_STATUS,
    )  # fmt: skip
    assert MessageStatus.model_validate(doc["data"]).model_dump(exclude_none=True) == {
        "ticket_id": ticket, "channel": Channel.EMAIL, "thread_ref": "thread-1",
        "platform": Platform.WHATSAPP, "status": ReceiptStatus.READ,
        "message_ids": ("wamid.1",), "at": CLOCK.now(),
    }  # fmt: skip
    (again,) = stage.process(receipt_record(1), CLOCK.now())
    assert orjson.loads(again.value)["id"] == doc["id"]  # read again: the same record
    assert stage.counts == {"opened": 1, "receipt_without_ticket": 1, "receipt": 2}


def test_a_receipt_keyed_by_something_else_moves_and_a_bad_one_is_dead_lettered() -> None:
    stage = processor()
    (moved,) = stage.process(receipt_record(0, key=b"wrong"), CLOCK.now())
    assert (moved.topic, moved.key) == (DELIVERY_RECEIPTS.name, b"thread-1")
    wrong_type = orjson.loads(receipt_record(1).value) | {"type": "support.message.received"}
    (dlq,) = stage.process(
        InRecord(DELIVERY_RECEIPTS.name, 0, 2, b"thread-1", orjson.dumps(wrong_type), 1.7e9),
        CLOCK.now(),
    )
    data = orjson.loads(dlq.value)["data"]
    assert (dlq.topic, data["reason"]) == ("channel.dlq", "unsupported_type")
    assert data["source"]["topic"] == DELIVERY_RECEIPTS.name
    assert stage.dead_letters == {"unsupported_type": 1}
