"""Serialisation: stored state round-trips through bytes; action and SLA records validate."""

from __future__ import annotations

from dataclasses import fields

import orjson
import pytest
from pydantic import ValidationError

from router.sla.clocks import ClockStatus, MetricClock
from router.sla.state import (
    STATE_ADAPTER,
    LifecycleState,
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
from schemas.sla import SlaEvent, SlaMetric
from schemas.ticket import Priority
from tests.unit.sla.sla_support import Desk, march, sla_events


def test_state_round_trips_through_bytes(desk: Desk) -> None:
    desk.open(queue="vendor:acme")
    desk.act("reply", march(3, 10), body="a")
    desk.act("pend", march(3, 11))
    state = desk.state
    assert state is not None
    raw = encode_state(state)
    assert decode_state(raw) == state
    assert STATE_ADAPTER.validate_python(orjson.loads(raw)) == state
    assert index_entry_from_json(raw) == index_entry(state) == (state.next_due_ts, "T-1")


def test_corrupt_state_is_rejected(desk: Desk) -> None:
    desk.open()
    assert desk.state is not None
    document = orjson.loads(encode_state(desk.state))
    document["clocks"]["first_response"]["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        decode_state(orjson.dumps(document))


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


@pytest.mark.parametrize("kind", [LifecycleState, MetricClock])
def test_copies_carry_every_field(kind: type) -> None:
    # A distinct, non-default value per field: a field left out of the copy shows up here.
    samples: dict[str, object] = {}
    for number, item in enumerate(fields(kind)):
        samples[item.name] = SAMPLE_VALUES.get(item.name, f"value-{number}")
    original = kind(**samples)
    twin = original.shell_copy() if kind is LifecycleState else original.copy_for_update()
    assert twin == original
    assert twin is not original


SAMPLE_VALUES: dict[str, object] = {
    "metric": SlaMetric.NEXT_RESPONSE,
    "cycle": 3,
    "status": ClockStatus.PAUSED,
    "banked": 12.5,
    "segment_start": march(3, 10),
    "target": 99.0,
    "deadline": march(3, 11),
    "breach_anchor": 50.0,
    "fired": ["warning"],
    "next_marker": "breached:1",
    "next_at": march(3, 12),
    "priority": Priority.HIGH,
    "opened_at": march(3, 9),
    "clock_at": march(3, 10),
    "responded": True,
    "vendor_response_target": 7.0,
    "queue_pinned": True,
    "priority_pinned": True,
    "reroutes": 2,
    "clocks": {SlaMetric.RESOLUTION: MetricClock(metric=SlaMetric.RESOLUTION)},
    "ticket": None,
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
