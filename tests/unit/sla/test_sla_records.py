"""Serialisation: stored state round-trips through bytes; action and SLA records validate."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest
from pydantic import ValidationError

from router.native import native_build_of
from router.records import OutRecord
from router.sla.clocks import CLOCK_FIELDS, ClockStatus, MetricClock
from router.sla.outbox import MAX_PENDING, Pending, join_stored, next_pending, split_stored
from router.sla.outputs import SlaRecord
from router.sla.snapshot import Snapshot
from router.sla.state import (
    STATE_FIELDS,
    LifecycleState,
    Output,
    RerouteOut,
    SlaEventOut,
    TicketStatus,
    decode_state,
    encode_state,
    index_entry,
    index_entry_from_json,
)
from schemas.action import (
    TICKET_ACTION_ADAPTER,
    ReassignAction,
    ReplyAction,
    TicketActionEvent,
)
from schemas.sla import SlaEvent, SlaEventKind, SlaMetric
from schemas.ticket import Priority, RoutedTicket
from tests.unit.sla.sla_support import Desk, march, sla_events


def test_state_round_trips_through_bytes(desk: Desk) -> None:
    desk.open(queue="vendor:acme")
    desk.act("reply", march(3, 10), body="a")
    desk.act("pend", march(3, 11))
    state = desk.state
    assert state is not None
    raw = encode_state(state)
    assert b"\n" not in raw  # the outbox splits stored values on newlines
    assert decode_state(raw) == state
    assert encode_state(decode_state(raw)) == raw
    assert index_entry_from_json(raw) == index_entry(state) == (state.next_due_ts, "T-1")


def test_corrupt_state_is_rejected(desk: Desk) -> None:
    desk.open()
    assert desk.state is not None
    head, tab, snapshot = encode_state(desk.state).partition(b"\t")
    document = orjson.loads(head)
    document[-1][0].append("surprise")  # a clock row with one field too many
    with pytest.raises(ValidationError, match=r"too_long|at most"):
        decode_state(orjson.dumps(document) + tab + snapshot)
    document = orjson.loads(head)
    document[3] = 7  # no such status
    with pytest.raises(ValidationError):
        decode_state(orjson.dumps(document) + tab + snapshot)


def test_idle_ticket_has_no_index_entry(desk: Desk) -> None:
    desk.open()
    desk.act("resolve", march(3, 10))
    assert desk.state is not None
    assert index_entry(desk.state) is None
    assert index_entry_from_json(encode_state(desk.state)) is None


def test_sla_event_round_trips(desk: Desk) -> None:
    desk.open()
    (event,) = sla_events(desk.tick(march(3, 11)))
    assert SlaEvent.model_validate_json(event.model_dump_json()) == event


def test_the_documented_action_example_parses() -> None:
    record = {
        "specversion": "1.0",
        "id": "desk-7f3a",
        "source": "desk/eu",
        "type": "support.ticket.action",
        "subject": "T-123",
        "data": {
            "action": "reply",
            "ticket_id": "T-123",
            "at": "2025-03-03T10:00:00Z",
            "actor": {"id": "agent-42", "role": "agent"},
            "body": "We are on it.",
        },
    }
    event = TicketActionEvent.model_validate(record)
    assert isinstance(event.data, ReplyAction)
    assert event.data.at == march(3, 10)


def test_action_is_chosen_by_its_action_field() -> None:
    data = {
        "action": "reassign",
        "ticket_id": "T-1",
        "at": "2025-03-03T10:00:00+01:00",
        "actor": {"id": "agent-1", "role": "agent"},
        "queue": "dept:disputes",
    }
    assert isinstance(TICKET_ACTION_ADAPTER.validate_python(data), ReassignAction)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"action": "delete"}, "does not match any of the expected tags"),
        ({"queue": "disputes"}, "String should match pattern"),
        ({"at": "2025-03-03T10:00:00"}, "timezone"),
        ({"actor": {"id": "x", "role": "admin"}}, "Input should be"),
        ({"extra": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_actions_are_rejected(change: dict[str, object], message: str) -> None:
    data = {
        "action": "reassign",
        "ticket_id": "T-1",
        "at": "2025-03-03T10:00:00Z",
        "actor": {"id": "agent-1", "role": "agent"},
        "queue": "dept:disputes",
        **change,
    }
    with pytest.raises(ValidationError, match=message):
        TICKET_ACTION_ADAPTER.validate_python(data)


@pytest.mark.parametrize(
    ("kind", "names"), [(LifecycleState, STATE_FIELDS), (MetricClock, CLOCK_FIELDS)]
)
def test_copies_carry_every_field(kind: type, names: tuple[str, ...]) -> None:
    # A distinct, non-default value per field: a field left out of the copy shows up here.
    samples: dict[str, object] = {}
    for number, name in enumerate(names):
        samples[name] = SAMPLE_VALUES.get((kind.__name__, name), SAMPLE_VALUES.get(name))
        if samples[name] is None:
            samples[name] = f"value-{number}"  # a str field
    original = kind(**samples)
    assert {name: getattr(original, name) for name in names} == samples
    twin = original.shell_copy() if kind is LifecycleState else original.copy_for_update()
    assert twin == original
    assert twin is not original
    # The field list is every attribute the class stores (slots in the pure-Python build).
    if not native_build_of(kind):
        assert kind.__slots__ == names


SAMPLE_VALUES: dict[str, object] = {
    "metric": SlaMetric.NEXT_RESPONSE,
    "cycle": 3,
    "status": ClockStatus.PAUSED,
    "banked": 12.5,
    "segment_start_us": 1_740_996_000_000_000,
    "target": 99.0,
    "deadline_us": 1_740_999_600_000_000,
    "breach_anchor": 50.0,
    "fired": ("warning",),
    "next_marker": "breached:1",
    "next_at_us": 1_741_003_200_000_000,
    "priority": Priority.HIGH,
    "opened_at": march(3, 9),
    ("LifecycleState", "status"): TicketStatus.PENDING,
    "clock_at_us": 1_740_999_000_000_001,
    "clock_at_tz": timezone(timedelta(hours=1)),
    "requester_role": "seller",
    "responded": True,
    "vendor_response_target": 7.0,
    "queue_pinned": True,
    "priority_pinned": True,
    "reroutes": 2,
    "clocks": {SlaMetric.RESOLUTION: MetricClock(metric=SlaMetric.RESOLUTION)},
    "snapshot": Snapshot(b'{"ticket_id": "T-1"}'),
    "recent_inputs": ["a"],
    "next_due_ts": 1.5,
}


def test_index_entry_from_json_is_not_fooled_by_text_in_the_snapshot(desk: Desk) -> None:
    desk.open()
    state = desk.state
    assert state is not None
    assert state.ticket is not None
    message = state.ticket.messages[0].model_copy(update={"body": ',"next_due_ts":1}'})
    state.ticket = state.ticket.model_copy(update={"messages": [message]})
    raw = encode_state(state)
    assert index_entry_from_json(raw) == index_entry(state)
    odd = state.shell_copy()
    odd.ticket_id = 'T-"quoted"\\1'  # escaped in JSON: takes the full-parse path
    assert index_entry_from_json(encode_state(odd)) == index_entry(odd)


def _sla_outs(outputs: list[Output]) -> list[SlaEventOut]:
    return [o for o in outputs if isinstance(o, SlaEventOut)]


def test_sla_records_render_as_the_pydantic_model_would(desk: Desk) -> None:
    # UTC and +01:00 instants, sub-second times, a priority raise and a re-route.
    desk.open(policy="escalating")
    outs = _sla_outs(desk.tick(march(3, 11, 0, 0) + timedelta(microseconds=250)))
    offset = timezone(timedelta(hours=1))
    raised_at = datetime(2025, 3, 3, 15, 30, 0, 5, tzinfo=offset)
    desk.act("change_priority", raised_at, priority="urgent")
    outs += _sla_outs(desk.tick(march(3, 14, 31)))  # breach due at the raise, in its zone
    outs += _sla_outs(desk.tick(march(5, 12)))
    assert any(o.record.due_tz is not None for o in outs)
    assert {o.data.kind for o in outs} >= {SlaEventKind.WARNING, SlaEventKind.BREACHED}
    for out in outs:
        expected = out.data.model_dump(mode="json")
        assert out.record.json_data() == expected
        assert orjson.loads(out.record.json_bytes()) == expected
        assert out.record.json_bytes() == orjson.dumps(expected)


def test_snapshot_updates_store_and_read_back_as_the_model_copy(desk: Desk) -> None:
    desk.open(policy="escalating")
    desk.tick(march(3, 13))  # breach: priority raised
    reroute = [o for o in desk.tick(march(3, 14)) if isinstance(o, RerouteOut)]
    state = desk.state
    assert state is not None
    assert state.snapshot is not None
    assert reroute
    ticket = state.ticket
    assert ticket is not None
    assert (ticket.queue, ticket.priority, ticket.rule_id) == (
        "dept:escalations", Priority.HIGH, "sla:escalating:first_response:L2"
    )
    # from the stored bytes (a JSON patch) and from the model (model_copy): the same ticket
    raw = encode_state(state)
    assert decode_state(raw).ticket == ticket == reroute[0].ticket
    assert decode_state(raw) == state
    assert RoutedTicket.model_validate_json(raw.partition(b"\t")[2]) == ticket


def test_input_offsets_survive_storage(desk: Desk) -> None:
    desk.open()
    offset = timezone(timedelta(hours=1))
    desk.act("pend", datetime(2025, 3, 3, 11, 0, tzinfo=offset))
    state = desk.state
    assert state is not None
    assert state.clock_at.utcoffset() == timedelta(hours=1)
    again = decode_state(encode_state(state))
    assert again == state
    assert again.clock_at.isoformat() == "2025-03-03T11:00:00+01:00"


def test_the_fast_sla_record_holds_every_schema_field_in_order(desk: Desk) -> None:
    # the record keeps `deadline` and `due_at` as epoch microseconds (and the zone to show)
    stored_as = {"deadline": ("deadline_us",), "due_at": ("due_us", "due_tz")}
    schema = list(SlaEvent.model_fields)
    assert list(SlaRecord.FIELDS) == [f for name in schema for f in stored_as.get(name, (name,))]
    desk.open(policy="escalating")
    outs = _sla_outs(desk.tick(march(3, 13)))
    assert outs
    for out in outs:
        assert list(out.record.wire_document()) == schema
        assert list(orjson.loads(out.record.json_bytes())) == schema


def test_the_pending_list_keeps_the_latest_inputs_and_reads_back_as_stored() -> None:
    pending: list[Pending] = []
    for offset in range(MAX_PENDING + 5):
        record = OutRecord("sla.events", b"T-1", b'{"n":%d}' % offset, (("h", b"\xff\n"),))
        pending = next_pending(pending, f"tickets.events:0:{offset}", [record],
                               lambda topic, partition: None)  # fmt: skip
    assert [p.source for p in pending] == [
        f"tickets.events:0:{offset}" for offset in range(5, MAX_PENDING + 5)]
    state, read_back = split_stored(join_stored(b"[1]", pending))
    assert (state, read_back) == (b"[1]", pending)
    # committed inputs leave it
    assert next_pending(pending, "tickets.events:0:99", [],
                        lambda topic, partition: MAX_PENDING) == pending[-5:]  # fmt: skip
