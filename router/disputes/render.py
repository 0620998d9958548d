"""A dispute decision's records, and dispute commands read from `tickets.actions` or made of
a chargeback on `payments.events` (pure).

Each event goes to `disputes.events` (key: order id) whole; the seller's copy goes to its
`queue.vendor.<id>` without the platform-only fields (and a platform note not at all); a
dispute entering platform review, and a flagged event (a chargeback after the dispute closed),
are also put on the review desk's queue. The copies keep the
event's id: a reader of several topics dedupes on it. A refused action becomes an
`action_refused` dead letter on `channel.dlq` with the reason, its key and bytes kept.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from router.disputes.machine import Decision
from router.disputes.policy import DisputePolicy
from router.ids import derive_id
from router.inbound import ENGINE_SOURCE, Rejected, dead_letter
from router.outputs import engine_record
from router.records import OutRecord, queue_topic
from router.sla.render import parse_command
from schemas.action import Actor, ActorRole
from schemas.dead_letter import RejectReason, SourcePosition
from schemas.dispute import (
    DISPUTE_ACTION,
    PLATFORM_ONLY_FIELDS,
    DisputeActionEvent,
    DisputeState,
    ReportChargeback,
)
from schemas.envelope import envelope
from schemas.payment import PAYMENT_CHARGEBACK, ChargebackEvent
from schemas.topics import DISPUTES_EVENTS, QUEUE_VENDOR

_DISPUTE_TYPE = DISPUTE_ACTION.encode()
PAYMENTS_ACTOR = "payments"  # the system actor of a dispute a chargeback opened


def is_dispute_action(value: bytes | None) -> bool:
    """Whether a `tickets.actions` record is a dispute command (the lifecycle stage leaves
    these to the disputes stage, and the other way round). A cheap byte test first: ticket
    actions are the bulk of the topic."""
    if not value or _DISPUTE_TYPE not in value:
        return False
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("type") == DISPUTE_ACTION


def parse_dispute_action(
    value: bytes | None, key: bytes | None, source: SourcePosition, now: datetime, *,
    max_record_bytes: int,
) -> DisputeActionEvent | Rejected:  # fmt: skip
    """Validate one dispute command; everything bad becomes a dead letter with its reason."""
    parsed = parse_command(value, key, source, now, DisputeActionEvent, DISPUTE_ACTION,
                           max_record_bytes=max_record_bytes)  # fmt: skip
    if isinstance(parsed, Rejected) or key is None or key.decode(errors="replace") == (
        parsed.data.order_id
    ):
        return parsed
    error = f"the record key must be the order id {parsed.data.order_id!r}"
    return Rejected(
        RejectReason.SCHEMA_VIOLATION, error,
        dead_letter(RejectReason.SCHEMA_VIOLATION, error, [], source, key, value or b"", now),
    )  # fmt: skip


def parse_chargeback(
    value: bytes | None, key: bytes | None, source: SourcePosition, now: datetime, *,
    max_record_bytes: int,
) -> ChargebackEvent | Rejected:  # fmt: skip
    """Validate one `payments.events` record; everything bad becomes a dead letter."""
    return parse_command(value, key, source, now, ChargebackEvent, PAYMENT_CHARGEBACK,
                         max_record_bytes=max_record_bytes)  # fmt: skip


def chargeback_command(event: ChargebackEvent, now: datetime) -> tuple[str, bytes]:
    """The system's `chargeback` dispute action a chargeback stands for, as a dispute command
    record (order id, value); its id derives from the chargeback's, so a redelivered
    chargeback acts once."""
    cb = event.data
    action = ReportChargeback(
        order_id=cb.order_id, actor=Actor(id=PAYMENTS_ACTOR, role=ActorRole.SYSTEM),
        at=cb.reported_at or now, buyer_id=cb.buyer_id, vendor_id=cb.vendor_id,
        reason_code=cb.reason_code, amount=cb.amount, currency=cb.currency,
        category=cb.category, chargeback_id=cb.chargeback_id,
    )  # fmt: skip
    doc = envelope(
        event_id=derive_id(event.id, "chargeback"), source=ENGINE_SOURCE,
        event_type=DISPUTE_ACTION, time=now, subject=cb.order_id,
        data=action.model_dump(mode="json", exclude_none=True),
    )  # fmt: skip
    return cb.order_id, orjson.dumps(doc)


def refused_dispute_action(
    reason: str, source: SourcePosition, key: bytes | None, value: bytes, now: datetime
) -> OutRecord:
    return dead_letter(RejectReason.ACTION_REFUSED, reason, [], source, key, value, now)


def render_decision(decision: Decision, policy: DisputePolicy) -> list[OutRecord]:
    records: list[OutRecord] = []
    for event in decision.events:
        data = event.data
        doc = data.model_dump(mode="json", exclude_none=True)
        order_id = data.order_id
        records.append(engine_record(
            DISPUTES_EVENTS.name, order_id, event.event_id, event.event_type, data.at, doc
        ))  # fmt: skip
        if event.vendor_visible:
            seller = {k: v for k, v in doc.items() if k not in PLATFORM_ONLY_FIELDS}
            records.append(engine_record(
                QUEUE_VENDOR.of(data.vendor_id), order_id, event.event_id, event.event_type,
                data.at, seller,
            ))  # fmt: skip
        entered_review = (
            data.state is DisputeState.PLATFORM_REVIEW and data.previous_state != data.state
        )
        if entered_review or data.flag is not None:
            records.append(engine_record(
                queue_topic(policy.review_queue), order_id, event.event_id, event.event_type,
                data.at, doc,
            ))  # fmt: skip
    return records
