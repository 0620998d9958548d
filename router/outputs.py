"""Render a threaded message as the records it produces. Ids derive from the inbound id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from router.disputes.opening import open_dispute_command
from router.ids import derive_id
from router.inbound import ENGINE_SOURCE
from router.records import OutRecord, queue_topic
from router.tickets import Threaded, TicketState
from schemas.dispute import DISPUTE_ACTION
from schemas.envelope import envelope
from schemas.ticket import (
    ROUTING_DECIDED,
    TICKET_ROUTED,
    RuleDispute,
    TicketEventKind,
    TicketMessage,
)
from schemas.topics import TICKETS_ACTIONS, TICKETS_DECISIONS, TICKETS_EVENTS

CE_HEADER = ("content-type", b"application/cloudevents+json")
_CE_HEADERS = (CE_HEADER,)


def routed_ticket_data(state: TicketState) -> dict[str, Any]:
    return {
        "ticket_id": state.ticket_id,
        "queue": state.queue,
        "priority": state.priority.value,
        "sla": {"policy": state.sla_policy, "deadlines": {}},
        "rule_id": state.rule_id,
        "ruleset_version": state.ruleset_version,
        "tags": list(state.tags),
        "channel": state.channel.value,
        "vendor_id": state.vendor_id,
        "order_id": state.order_id,
        "subject": state.subject,
        "opened_at": state.opened_at,
        "message_count": state.message_count,
        "messages_omitted": state.message_count - len(state.messages),
        "messages": [m.model_dump(mode="json", exclude_none=True) for m in state.messages],
    }


def engine_record(
    topic: str,
    subject: str,
    event_id: str,
    event_type: str,
    now: datetime,
    data: Any,
    headers: tuple[tuple[str, bytes], ...] = _CE_HEADERS,
) -> OutRecord:
    """One engine-written CloudEvent keyed by its subject, a ticket id or a ruleset name
    (every stage builds records here)."""
    doc = envelope(
        event_id=event_id,
        source=ENGINE_SOURCE,
        event_type=event_type,
        time=now,
        subject=subject,
        data=data,
    )
    return OutRecord(topic, subject.encode(), orjson.dumps(doc), headers)


def render(threaded: Threaded, inbound_id: str, now: datetime) -> list[OutRecord]:
    """Queue record first (what desks wait for), then the audit decision, then events.

    A replay after a crash re-emits the first attempt's records with their times (when the
    message was received), not `now`: the same id always carries the same event, so a
    consumer that sees both (e.g. the lifecycle after its dedup window) reads no time jump."""
    state, message = threaded.state, threaded.message
    if threaded.replayed:
        now = message.received_at
    tid = state.ticket_id
    routed = routed_ticket_data(state)
    out = [
        engine_record(
            queue_topic(state.queue),
            tid,
            derive_id(tid, inbound_id, "queued"),
            TICKET_ROUTED,
            now,
            routed,
        )
    ]
    decision = threaded.decision
    if decision is not None:
        out.append(
            engine_record(
                TICKETS_DECISIONS.name,
                tid,
                derive_id(tid, inbound_id, "decision"),
                ROUTING_DECIDED,
                now,
                {
                    "ticket_id": tid,
                    "inbound_id": inbound_id,
                    "queue": decision.queue,
                    "priority": decision.priority.value,
                    "tags": list(decision.tags),
                    "sla_policy": decision.sla_policy,
                    "rule_id": decision.rule_id,
                    "ruleset": decision.ruleset,
                    "ruleset_version": decision.ruleset_version,
                    "explanation": decision.explanation,
                    "trace": [t.model_dump() for t in decision.trace],
                    **(
                        {"dispute": state.dispute.model_dump(mode="json", exclude_none=True)}
                        if state.dispute is not None
                        else {}
                    ),
                    "decided_at": now,
                },
            )
        )

    def event(kind: TicketEventKind, **extra: Any) -> OutRecord:
        data = {"ticket_id": tid, "kind": kind.value, "at": now, "inbound_id": inbound_id, **extra}
        event_id = derive_id(tid, inbound_id, kind.value)
        return engine_record(TICKETS_EVENTS.name, tid, event_id, kind.event_type, now, data)

    if threaded.is_new:
        # opener and thread: the ticket index (router.stages.ticket_index) keeps both, for buyer
        # history and to tell the routing stage when the lifecycle moves the ticket
        opener = message.sender
        out.append(
            event(
                TicketEventKind.OPENED, channel=state.channel.value, queue=state.queue,
                thread_ref=state.thread_ref, actor=opener.id, sender_role=opener.role.value,
            )
        )  # fmt: skip
    out.append(
        event(
            TicketEventKind.MESSAGE_ADDED,
            message_id=message.message_id,
            message_seq=message.seq,
            channel=message.channel.value,
            sender_role=message.sender.role.value,
            queue=state.queue,
        )
    )
    if threaded.is_new:
        out.append(
            event(
                TicketEventKind.ROUTED,
                queue=state.queue,
                priority=state.priority.value,
                sla_policy=state.sla_policy,
                ticket=routed,
            )
        )
        dispute = state.dispute
        if dispute is not None and dispute.command_id is not None:
            out.append(_open_dispute(state, dispute, dispute.command_id, message, now))
    return out


def _open_dispute(
    state: TicketState,
    dispute: RuleDispute,
    command_id: str,
    first: TicketMessage,
    now: datetime,
) -> OutRecord:
    """The system's `open_dispute` on `tickets.actions` for a rule's claim (checked when the
    ticket opened: the state keeps it only with a command id when it is valid)."""
    assert state.order_id is not None
    assert state.buyer_id is not None
    assert state.vendor_id is not None
    command = open_dispute_command(
        dispute.model_dump(include={"rule_id", "reason_code", "amount", "currency", "category"}),
        order_id=state.order_id, buyer_id=state.buyer_id, vendor_id=state.vendor_id,
        first=first, ticket_id=state.ticket_id,
    )  # fmt: skip
    return engine_record(
        TICKETS_ACTIONS.name, state.order_id, command_id, DISPUTE_ACTION, now,
        command.model_dump(mode="json", exclude_none=True),
    )  # fmt: skip
