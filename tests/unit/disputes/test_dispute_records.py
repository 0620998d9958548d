"""Dispute records: CloudEvents on disputes.events with deterministic ids, the seller's copy
on its queue without platform-only fields, refund instructions, commands parsed or
dead-lettered with the reason."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from router.disputes.machine import SELLER_RESPONSE, Act, fire_due
from router.disputes.render import (
    is_dispute_action,
    parse_dispute_action,
    refused_dispute_action,
    render_decision,
)
from router.inbound import Rejected
from router.records import OutRecord
from schemas.action import ActorRole
from schemas.dead_letter import SourcePosition
from schemas.dispute import DisputeActionEvent, DisputeEventData, OpenDispute
from schemas.envelope import CloudEvent
from tests.unit.disputes.dispute_support import MONDAY, ORDER, VENDOR, Run

SOURCE = SourcePosition(topic="tickets.actions", partition=2, offset=41)


class DisputeEventRecord(CloudEvent[DisputeEventData]):
    pass


def docs(records: list[OutRecord], topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records if r.topic == topic]


def contested_and_decided() -> list[OutRecord]:
    run = Run()
    out: list[OutRecord] = []
    out += render_decision(run.do(Act.OPEN), run.policy)
    out += render_decision(run.do(Act.NOTE, ActorRole.AGENT, body="third claim this week"),
                           run.policy)  # fmt: skip
    out += render_decision(
        run.do(Act.RESPOND, ActorRole.VENDOR,
               offer={"kind": "contest", "evidence": [{"name": "tracking.pdf"}]}),
        run.policy,
    )  # fmt: skip
    out += render_decision(run.do(Act.REJECT), run.policy)
    out += render_decision(
        run.do(Act.DECIDE, ActorRole.AGENT, verdict="refund_partial", amount="30.00",
               reason="half the set arrived", internal_note="seller on watch list"),
        run.policy,
    )  # fmt: skip
    return out


def test_every_transition_is_a_cloudevent_on_disputes_events() -> None:
    out = contested_and_decided()
    events = docs(out, "disputes.events")
    assert [e["type"] for e in events] == [
        "support.dispute.opened", "support.dispute.awaiting_seller",
        "support.dispute.note_added", "support.dispute.seller_responded",
        "support.dispute.platform_review", "support.dispute.decided", "support.dispute.closed",
    ]  # fmt: skip
    for record in out:
        if record.topic == "disputes.events":
            assert record.key == ORDER.encode()
            parsed = DisputeEventRecord.model_validate_json(record.value)
            assert parsed.subject == ORDER
    assert len({e["id"] for e in events}) == len(events)
    # the same script gives the same ids
    assert [e["id"] for e in docs(contested_and_decided(), "disputes.events")] == [
        e["id"] for e in events
    ]


def test_the_decided_event_carries_a_refund_instruction() -> None:
    decided = next(e for e in docs(contested_and_decided(), "disputes.events")
                   if e["type"] == "support.dispute.decided")  # fmt: skip
    refund = decided["data"]["refund"]
    assert refund["amount"] == "30.00"
    assert refund["currency"] == "EUR"
    assert (refund["order_id"], refund["vendor_id"]) == (ORDER, VENDOR)
    assert refund["instruction_id"]
    assert decided["data"]["verdict"] == "refund_partial"
    assert decided["data"]["internal_note"] == "seller on watch list"


def test_platform_only_content_never_reaches_the_vendor_topic() -> None:
    out = contested_and_decided()
    vendor = docs(out, f"queue.vendor.{VENDOR}")
    assert "support.dispute.note_added" not in [e["type"] for e in vendor]
    assert len(vendor) == len(docs(out, "disputes.events")) - 1
    for record in out:
        if record.topic == f"queue.vendor.{VENDOR}":
            assert b"third claim this week" not in record.value
            assert b"seller on watch list" not in record.value
            assert b"internal_note" not in record.value
    decided = next(e for e in vendor if e["type"] == "support.dispute.decided")
    assert decided["data"]["verdict_reason"] == "half the set arrived"
    # no other vendor hears of it
    assert {r.topic for r in out} == {"disputes.events", f"queue.vendor.{VENDOR}",
                                      "queue.dept.disputes"}  # fmt: skip


def test_platform_review_goes_to_the_disputes_desk() -> None:
    (review,) = docs(contested_and_decided(), "queue.dept.disputes")
    assert review["type"] == "support.dispute.platform_review"
    run = Run()
    due = run.do(Act.OPEN, amount="900.00").set_deadlines[SELLER_RESPONSE]
    fired = fire_due(run.dispute, due + timedelta(seconds=1), run.policy)  # type: ignore[arg-type]
    (desk,) = docs(render_decision(fired, run.policy), "queue.dept.disputes")
    assert desk["data"]["acted_by"] == {"id": "timer", "party": "timer"}


def command(**data: Any) -> dict[str, Any]:
    base = {"action": "open_dispute", "order_id": ORDER, "at": MONDAY.isoformat(),
            "actor": {"id": "buyer-7", "role": "buyer"}, "buyer_id": "buyer-7",
            "vendor_id": VENDOR, "reason_code": "damaged", "amount": "12.50",
            "currency": "EUR"}  # fmt: skip
    return {"specversion": "1.0", "id": "cmd-1", "source": "app/buyers",
            "type": "support.dispute.action", "data": {**base, **data}}  # fmt: skip


def parse(doc: Any, key: bytes | None = ORDER.encode()) -> DisputeActionEvent | Rejected:
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return parse_dispute_action(raw, key, SOURCE, MONDAY, max_record_bytes=10_000)


def test_a_valid_command_parses() -> None:
    parsed = parse(command())
    assert isinstance(parsed, DisputeActionEvent)
    assert isinstance(parsed.data, OpenDispute)
    assert is_dispute_action(orjson.dumps(command()))


@pytest.mark.parametrize(
    ("doc", "key", "reason", "error"),
    [
        (b"{not json", ORDER.encode(), "invalid_json", "invalid JSON"),
        (command(amount="-3"), ORDER.encode(), "schema_violation", "data.open_dispute.amount"),
        (command(reason_code="bored"), ORDER.encode(), "schema_violation", "reason_code"),
        (command(action="refund_now"), ORDER.encode(), "schema_violation", "data"),
        (command(), b"o-other", "schema_violation", "the record key must be the order id"),
        ({**command(), "type": "support.ticket.action"}, ORDER.encode(), "unsupported_type",
         "tickets.actions carries 'support.dispute.action'"),
        (orjson.dumps(command(description="x" * 20_000)), ORDER.encode(), "oversize",
         "the limit is 10000"),
    ],
)  # fmt: skip
def test_bad_commands_are_dead_lettered_with_the_reason(
    doc: Any, key: bytes, reason: str, error: str
) -> None:
    rejected = parse(doc, key)
    assert isinstance(rejected, Rejected)
    letter = orjson.loads(rejected.record.value)
    assert rejected.record.topic == "channel.dlq"
    assert letter["data"]["reason"] == reason
    assert error in letter["data"]["error"]
    assert letter["data"]["original"]["key"] == key.decode()


def test_ticket_actions_are_not_dispute_commands() -> None:
    ticket = {"specversion": "1.0", "id": "a-1", "source": "desk",
              "type": "support.ticket.action",
              "data": {"action": "reply", "ticket_id": "T-1", "body": "support.dispute.action",
                       "at": "2025-03-03T10:00:00Z", "actor": {"id": "x", "role": "agent"}}}
    assert not is_dispute_action(orjson.dumps(ticket))
    assert not is_dispute_action(b"support.dispute.action{")
    assert not is_dispute_action(None)


def test_a_refused_action_is_an_action_refused_dead_letter() -> None:
    value = orjson.dumps(command())
    record = refused_dispute_action("a seller may not decide (only: platform)", SOURCE,
                                    ORDER.encode(), value, MONDAY)  # fmt: skip
    letter = orjson.loads(record.value)["data"]
    assert letter["reason"] == "action_refused"
    assert letter["error"] == "a seller may not decide (only: platform)"
    assert letter["source"]["offset"] == 41
    assert orjson.loads(letter["original"]["value"]) == orjson.loads(value)
