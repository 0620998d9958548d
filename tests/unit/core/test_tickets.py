from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from router.default_policy import DefaultPolicy
from router.inbound import parse_inbound
from router.outputs import render
from router.tickets import (
    MAX_MESSAGES_KEPT,
    Duplicate,
    Rekey,
    Threaded,
    TicketState,
    thread_message,
)
from schemas import CloudEvent, InboundEvent, RoutedTicket, RoutingDecision, SourcePosition
from schemas.ticket import TicketEvent
from tests.factories import inbound_bytes

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
POLICY = DefaultPolicy()


def src(offset: int, partition: int = 0) -> SourcePosition:
    return SourcePosition(topic="channel.email", partition=partition, offset=offset)


def event(event_id: str, **kw: object) -> InboundEvent:
    parsed = parse_inbound(inbound_bytes(event_id, **kw), None, src(0), NOW)  # type: ignore[arg-type]
    assert isinstance(parsed, InboundEvent)
    return parsed


def thread(
    ev: InboundEvent, state: TicketState | None, offset: int
) -> Threaded | Duplicate | Rekey:
    return thread_message(ev, ev.data.thread_ref.encode(), src(offset), state, POLICY, NOW)


def opened(event_id: str = "e1", **kw: object) -> Threaded:
    result = thread(event(event_id, **kw), None, 1)
    assert isinstance(result, Threaded)
    return result


def test_first_message_opens_a_ticket_on_the_vendor_queue() -> None:
    result = opened()
    assert result.is_new
    assert result.state.queue == "vendor:acme"
    assert result.decision is not None
    assert result.decision.rule_id == "vendor-queue"
    assert result.state.message_count == 1


def test_follow_up_joins_the_same_ticket_and_keeps_its_queue() -> None:
    first = opened()
    follow = thread(event("e2", body="any update on the refund?"), first.state, 2)
    assert isinstance(follow, Threaded)
    assert not follow.is_new
    assert follow.decision is None
    assert follow.state.ticket_id == first.state.ticket_id
    assert follow.state.queue == "vendor:acme"  # sticky, although the body says "refund"
    assert [m.seq for m in follow.state.messages] == [1, 2]


def test_other_thread_is_another_ticket() -> None:
    assert opened(thread_ref="a").state.ticket_id != opened(thread_ref="b").state.ticket_id


def test_duplicate_id_from_another_record_adds_nothing() -> None:
    first = opened()
    again = thread(event("e1"), first.state, 7)
    assert isinstance(again, Duplicate)
    assert again.first_seen.offset == 1


def test_replay_of_the_same_record_re_emits_identical_ids() -> None:
    first = opened()
    second = thread(event("e2"), first.state, 2)
    assert isinstance(second, Threaded)
    original_ids = [orjson.loads(r.value)["id"] for r in render(second, "e2", NOW)]
    replay = thread(event("e2"), second.state, 2)
    assert isinstance(replay, Threaded)
    assert replay.replayed
    later = NOW.replace(hour=NOW.hour + 1)  # re-read after a restart, an hour on
    replay_ids = [orjson.loads(r.value)["id"] for r in render(replay, "e2", later)]
    assert replay_ids == original_ids
    # same id, same event: the replay carries the first attempt's times, byte for byte
    events = [r for r in render(second, "e2", NOW) if r.topic == "tickets.events"]
    assert events
    assert [r for r in render(replay, "e2", later) if r.topic == "tickets.events"] == events


def test_replay_of_the_opening_record_re_emits_the_decision() -> None:
    first = opened()
    replay = thread(event("e1"), first.state, 1)
    assert isinstance(replay, Threaded)
    assert replay.replayed
    assert replay.is_new
    assert [r.topic for r in render(replay, "e1", NOW)] == [
        r.topic for r in render(first, "e1", NOW)
    ]


def test_replay_past_the_kept_window_re_sends_the_replayed_message() -> None:
    state = opened().state
    first_render: list[bytes] = []
    for i in range(2, MAX_MESSAGES_KEPT + 6):
        result = thread(event(f"e{i}", body=f"message {i}"), state, i)
        assert isinstance(result, Threaded)
        state = result.state
        if i == 3:
            first_render = [r.value for r in render(result, "e3", NOW) if r.value is not None]
    assert 3 not in [m.seq for m in state.messages]  # trimmed since
    replay = thread(event("e3", body="message 3"), state, 3)
    assert isinstance(replay, Threaded)
    assert replay.replayed
    later = NOW.replace(hour=NOW.hour + 1)
    again = [orjson.loads(r.value) for r in render(replay, "e3", later) if r.value is not None]
    assert [d["id"] for d in again] == [orjson.loads(v)["id"] for v in first_render]
    queued = CloudEvent[RoutedTicket].model_validate(again[0])
    assert [(m.seq, m.inbound_id, m.body) for m in queued.data.messages] == [(3, "e3", "message 3")]
    assert queued.data.message_count == 3
    assert queued.data.messages_omitted == 2


def test_wrong_record_key_asks_for_a_rekey() -> None:
    ev = event("e1", thread_ref="T-77")
    result = thread_message(ev, None, src(1), None, POLICY, NOW)
    assert result == Rekey(key=b"T-77")


def test_state_round_trips_through_bytes() -> None:
    state = opened().state
    assert TicketState.from_bytes(state.to_bytes()) == state


def test_kept_messages_are_capped_by_count_and_size() -> None:
    state = opened().state
    for i in range(2, MAX_MESSAGES_KEPT + 10):
        result = thread(event(f"e{i}", body="b" * 30_000), state, i)
        assert isinstance(result, Threaded)
        state = result.state
    assert state.message_count == MAX_MESSAGES_KEPT + 9
    assert sum(len(m.body) for m in state.messages) <= 100_000
    assert state.messages[-1].seq == state.message_count
    routed = CloudEvent[RoutedTicket].model_validate_json(render(result, "x", NOW)[0].value)
    assert routed.data.messages_omitted == state.message_count - len(state.messages)


def test_render_produces_valid_cloudevents_for_a_new_ticket() -> None:
    records = render(opened(), "e1", NOW)
    assert [r.topic for r in records] == [
        "queue.vendor.acme",
        "tickets.decisions",
        "tickets.events",
        "tickets.events",
        "tickets.events",
    ]
    routed = CloudEvent[RoutedTicket].model_validate_json(records[0].value)
    assert routed.type == "support.ticket.routed"
    assert routed.data.queue == "vendor:acme"
    assert routed.data.rule_id == "vendor-queue"
    assert routed.data.messages[0].body == "Hello, where is my order?"
    decision = CloudEvent[RoutingDecision].model_validate_json(records[1].value)
    assert decision.data.ruleset == "builtin-default"
    assert decision.data.trace
    kinds = [CloudEvent[TicketEvent].model_validate_json(r.value).data.kind for r in records[2:]]
    assert kinds == ["opened", "message_added", "routed"]
    assert all(r.key == routed.data.ticket_id.encode() for r in records)
    assert len({orjson.loads(r.value)["id"] for r in records}) == len(records)


@pytest.mark.parametrize("event_id", ["a", "b"])
def test_output_ids_differ_per_inbound_id(event_id: str) -> None:
    other = "b" if event_id == "a" else "a"
    ids = {orjson.loads(r.value)["id"] for r in render(opened(event_id), event_id, NOW)}
    other_ids = {orjson.loads(r.value)["id"] for r in render(opened(other), other, NOW)}
    assert not ids & other_ids
