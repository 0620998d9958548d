"""The lifecycle stage's records: outputs rendered as CloudEvents, actions parsed, commands.

Pure: the stream layer (`streams/stages/lifecycle.py`) reads and writes what these functions build.

`tickets.commands` is the stage's internal topic (key: ticket id, written only by the engine,
so it is co-partitioned with `tickets.events`). Its records carry their kind in the
`router.cmd` header:

- `action`: a valid record from `tickets.actions`, value byte-for-byte as received; the
  `router.source` header says where it was read (`topic/partition/offset/timestamp_ms`) and
  `router.key` repeats its original key (a refused action is dead-lettered with both);
- `due`: the timer saw the ticket's next SLA firing come due (value: a small JSON document).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import orjson

from router.ids import derive_id
from router.inbound import EventT, Rejected, dead_letter, decode_event
from router.outputs import CE_HEADER
from router.outputs import engine_record as _record
from router.records import OutRecord, queue_topic
from router.sla.state import RerouteOut, SlaEventOut, TicketEventOut
from schemas.action import TICKET_ACTION, TicketActionEvent
from schemas.dead_letter import RejectReason, SourcePosition
from schemas.envelope import CloudEvent
from schemas.ticket import ROUTING_DECIDED, TICKET_ROUTED, TicketEvent
from schemas.topics import (
    SLA_EVENTS,
    TICKETS_COMMANDS,
    TICKETS_DECISIONS,
    TICKETS_EVENTS,
)

# On records this stage writes to `tickets.events`: it skips them unread on the way back.
STAGE_HEADER = "router.stage"
STAGE_LIFECYCLE = b"lifecycle"
CMD_HEADER = "router.cmd"
CMD_ACTION = b"action"
CMD_DUE = b"due"
SOURCE_HEADER = "router.source"
KEY_HEADER = "router.key"

# Reroutes published by this stage name this ruleset in their `tickets.decisions` record.
LIFECYCLE_RULESET = "sla-lifecycle"
LIFECYCLE_RULESET_VERSION = "1"

_OWN = (STAGE_HEADER, STAGE_LIFECYCLE)


class TicketEventEnvelope(CloudEvent[TicketEvent]):
    """A `support.ticket.*` record on `tickets.events`."""


def render_output(out: SlaEventOut | TicketEventOut | RerouteOut) -> list[OutRecord]:
    """The records of one lifecycle output (refused actions are dead-lettered by the caller)."""
    if isinstance(out, SlaEventOut):
        record = out.record  # rendered without building the pydantic model
        return [
            _record(
                SLA_EVENTS.name, record.ticket_id, out.id, out.type, record.fired_at,
                orjson.Fragment(record.json_bytes()),
            )
        ]
    if isinstance(out, TicketEventOut):
        event = out.data
        return [
            _record(
                TICKETS_EVENTS.name, event.ticket_id, out.id, out.type, event.at,
                event.model_dump(mode="json", exclude_none=True), (CE_HEADER, _OWN),
            )
        ]
    return _reroute(out)


def _reroute(out: RerouteOut) -> list[OutRecord]:
    """The ticket on its new queue (with its history), and the decision on the audit topic."""
    records: list[OutRecord] = []
    ticket = out.ticket
    if ticket is not None:  # None only when no routed snapshot was ever seen
        records.append(
            _record(
                queue_topic(out.queue), out.ticket_id, out.id, TICKET_ROUTED, out.at,
                ticket.model_dump(mode="json"),
            )
        )
    decision = {
        "ticket_id": out.ticket_id,
        "inbound_id": out.id,  # no inbound message caused it: the reroute's own id
        "queue": out.queue,
        "previous_queue": out.previous_queue,
        "priority": ticket.priority.value if ticket is not None else "normal",
        "tags": list(ticket.tags) if ticket is not None else [],
        "sla_policy": ticket.sla.policy if ticket is not None else "",
        "rule_id": out.rule_id,
        "ruleset": LIFECYCLE_RULESET,
        "ruleset_version": LIFECYCLE_RULESET_VERSION,
        "explanation": out.reason,
        "trace": [],
        "decided_at": out.at,
    }
    decision_id = derive_id(out.ticket_id, out.id, "decision")
    records.append(
        _record(
            TICKETS_DECISIONS.name, out.ticket_id, decision_id, ROUTING_DECIDED, out.at, decision
        )
    )
    return records


# -- actions -----------------------------------------------------------------------------------


def parse_action(
    value: bytes | None,
    key: bytes | None,
    source: SourcePosition,
    now: datetime,
    *,
    max_record_bytes: int,
) -> TicketActionEvent | Rejected:
    """Validate one `tickets.actions` ticket command; everything bad becomes a dead letter."""
    return parse_command(
        value, key, source, now, TicketActionEvent, TICKET_ACTION,
        max_record_bytes=max_record_bytes,
    )  # fmt: skip


def parse_command(
    value: bytes | None,
    key: bytes | None,
    source: SourcePosition,
    now: datetime,
    model: type[EventT],
    event_type: str,
    *,
    max_record_bytes: int,
) -> EventT | Rejected:
    """Validate one command record (of `tickets.actions`, `payments.events`) as `model`, of
    CloudEvents type `event_type`; everything bad becomes a dead letter (the channel records'
    checks and reasons, `router.inbound.decode_event`)."""
    return decode_event(
        model, event_type, f"{source.topic} carries", value, key, source, now, max_record_bytes
    )


def action_command(
    action: TicketActionEvent, value: bytes, key: bytes | None, source: SourcePosition
) -> OutRecord:
    """Forward a valid action to `tickets.commands`, keyed by its ticket id, bytes unchanged."""
    return forwarded_command(TICKETS_COMMANDS.name, action.data.ticket_id, value, key, source)


def forwarded_command(
    topic: str, subject: str, value: bytes, key: bytes | None, source: SourcePosition
) -> OutRecord:
    """A valid command forwarded to an internal command topic keyed by `subject`, bytes
    unchanged, with where it was read and its original key in headers."""
    headers: list[tuple[str, bytes]] = [
        (CMD_HEADER, CMD_ACTION),
        (SOURCE_HEADER, _source_text(source).encode()),
    ]
    if key is not None:
        headers.append((KEY_HEADER, key))
    return OutRecord(topic, subject.encode(), value, tuple(headers))


def due_command(
    ticket_id: str, requested_at: float, until: float | None = None,
    topic: str = TICKETS_COMMANDS.name,
) -> OutRecord:  # fmt: skip
    """`until`: fire only what was due by then (the timer's horizon while an input that can
    stop a clock still has a backlog); without it, what is due when the command is applied.
    `topic`: the command topic of the stage whose deadline it is."""
    doc: dict[str, object] = {"ticket_id": ticket_id, "requested_at": requested_at}
    if until is not None:
        doc["until"] = until
    return OutRecord(topic, ticket_id.encode(), orjson.dumps(doc), ((CMD_HEADER, CMD_DUE),))


def due_until(value: bytes) -> datetime | None:
    """The `until` of a `due` command's value, if it has one."""
    until = orjson.loads(value).get("until") if value else None
    return datetime.fromtimestamp(until, UTC) if isinstance(until, int | float) else None


def refused_action(
    error: str, headers: Mapping[str, bytes], fallback: SourcePosition, value: bytes, now: datetime
) -> OutRecord:
    """The dead letter of an action the lifecycle refused (e.g. a vendor outside its queue)."""
    source = read_source(headers) or fallback
    return dead_letter(
        RejectReason.ACTION_REFUSED, error, [], source, headers.get(KEY_HEADER), value, now
    )


def _source_text(source: SourcePosition) -> str:
    stamp = "" if source.timestamp_ms is None else str(source.timestamp_ms)
    return f"{source.topic}/{source.partition}/{source.offset}/{stamp}"


def read_source(headers: Mapping[str, bytes]) -> SourcePosition | None:
    raw = headers.get(SOURCE_HEADER)
    if raw is None:
        return None
    try:
        topic, partition, offset, stamp = raw.decode().rsplit("/", 3)
        return SourcePosition(
            topic=topic,
            partition=int(partition),
            offset=int(offset),
            timestamp_ms=int(stamp) if stamp else None,
        )
    except ValueError:
        return None
