"""The records a lifecycle call returns for the stream layer to publish.

Built on the tick path, so they hold plain values; the pydantic models (`SlaEvent`,
`TicketEvent`, `RoutedTicket`) are built on first access to `.data` / `.ticket`, and an SLA
event renders to its wire JSON without one (`SlaRecord.json_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Final

import orjson

from router.sla.instants import from_us, join_moment
from router.sla.snapshot import Snapshot
from router.sla.values import FieldValues
from schemas.sla import SlaEvent, SlaEventKind, SlaMetric
from schemas.ticket import Priority, RoutedTicket, TicketEvent, TicketEventKind

_SLA_RECORD_FIELDS: Final = (
    "ticket_id", "kind", "policy", "metric", "level", "cycle", "deadline_us", "due_us", "due_tz",
    "fired_at", "late", "queue", "priority", "action_taken", "new_priority", "new_queue",
    "target_seconds", "elapsed_business_seconds",
)


class SlaRecord(FieldValues):
    """The fields of an `SlaEvent`, in its order; `deadline` and `due_at` as epoch
    microseconds (`due_at` shown in zone `due_tz`, None for UTC). A plain class built on
    every firing (natively under the native build; a NamedTuple's `__new__` is Python-level).
    """

    __slots__ = _SLA_RECORD_FIELDS
    FIELDS = _SLA_RECORD_FIELDS

    def __init__(
        self,
        ticket_id: str,
        kind: SlaEventKind,
        policy: str,
        metric: SlaMetric,
        level: int,
        cycle: int,
        deadline_us: int,
        due_us: int,
        due_tz: tzinfo | None,
        fired_at: datetime,
        late: bool,
        queue: str | None,
        priority: Priority,
        action_taken: str,
        new_priority: Priority | None,
        new_queue: str | None,
        target_seconds: float,
        elapsed_business_seconds: float,
    ) -> None:
        self.ticket_id = ticket_id
        self.kind = kind
        self.policy = policy
        self.metric = metric
        self.level = level
        self.cycle = cycle
        self.deadline_us = deadline_us
        self.due_us = due_us
        self.due_tz = due_tz
        self.fired_at = fired_at
        self.late = late
        self.queue = queue
        self.priority = priority
        self.action_taken = action_taken
        self.new_priority = new_priority
        self.new_queue = new_queue
        self.target_seconds = target_seconds
        self.elapsed_business_seconds = elapsed_business_seconds


    def wire_document(self) -> dict[str, Any]:
        """The `SlaEvent` as a dict of its fields in the schema's order, enums and datetimes
        as themselves (the one place the record's values map onto the wire fields; a unit test
        holds it to `SlaEvent.model_fields`)."""
        return {
            "ticket_id": self.ticket_id,
            "kind": self.kind,
            "policy": self.policy,
            "metric": self.metric,
            "level": self.level,
            "cycle": self.cycle,
            "deadline": from_us(self.deadline_us),
            "due_at": join_moment(self.due_us, self.due_tz),
            "fired_at": self.fired_at,
            "late": self.late,
            "queue": self.queue,
            "priority": self.priority,
            "action_taken": self.action_taken,
            "new_priority": self.new_priority,
            "new_queue": self.new_queue,
            "target_seconds": float(self.target_seconds),
            "elapsed_business_seconds": float(self.elapsed_business_seconds),
        }

    def event(self) -> SlaEvent:
        return SlaEvent.model_validate(self.wire_document())

    def json_bytes(self) -> bytes:
        """The event's wire JSON without the model: orjson writes enums, datetimes and floats
        as pydantic does (a unit test holds them equal), several times faster."""
        return orjson.dumps(self.wire_document(), option=orjson.OPT_UTC_Z)

    def json_data(self) -> dict[str, Any]:
        """What `self.event().model_dump(mode="json")` gives."""
        data: dict[str, Any] = orjson.loads(self.json_bytes())
        return data


_EVENT_TYPES = {kind: kind.event_type for kind in SlaEventKind}


class SlaEventOut:
    """Publish on `sla.events` with CloudEvents id `id` and type `type`."""

    __slots__ = ("_data", "id", "record")

    def __init__(self, id: str, record: SlaRecord) -> None:
        self.id = id
        self.record = record
        self._data: SlaEvent | None = None

    @property
    def type(self) -> str:
        return _EVENT_TYPES[self.record.kind]

    @property
    def data(self) -> SlaEvent:
        if self._data is None:
            self._data = self.record.event()
        return self._data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SlaEventOut):
            return NotImplemented
        return (self.id, self.record) == (other.id, other.record)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SlaEventOut(id={self.id!r}, record={self.record!r})"


_TICKET_EVENT_FIELDS: Final = (
    "ticket_id", "kind", "at", "queue", "actor", "sender_role", "priority", "sla_policy", "ticket",
)


class TicketEventFields(FieldValues):
    """A `TicketEvent` not built yet; `ticket` is the snapshot as of the event."""

    __slots__ = _TICKET_EVENT_FIELDS
    FIELDS = _TICKET_EVENT_FIELDS

    def __init__(
        self,
        ticket_id: str,
        kind: TicketEventKind,
        at: datetime,
        queue: str | None,
        actor: str | None,
        sender_role: str | None,
        priority: Priority,
        sla_policy: str,
        ticket: Snapshot | None,
    ) -> None:
        self.ticket_id = ticket_id
        self.kind = kind
        self.at = at
        self.queue = queue
        self.actor = actor
        self.sender_role = sender_role
        self.priority = priority
        self.sla_policy = sla_policy
        self.ticket = ticket


    def event(self) -> TicketEvent:
        return TicketEvent(
            ticket_id=self.ticket_id,
            kind=self.kind,
            at=self.at,
            queue=self.queue,
            actor=self.actor,
            sender_role=self.sender_role,
            priority=self.priority,
            sla_policy=self.sla_policy,
            ticket=self.ticket.model if self.ticket is not None else None,
        )


class TicketEventOut:
    """Publish on `tickets.events` (replied, resolved, reopened; `routed` for a queue or
    priority change, with `actor` = LIFECYCLE_ACTOR so this stage skips it on the way back).

    Give `data`, or `fields` to build it from on first access.
    """

    __slots__ = ("_data", "_fields", "id")

    def __init__(
        self,
        id: str,
        data: TicketEvent | None = None,
        *,
        fields: TicketEventFields | None = None,
    ) -> None:
        if data is None and fields is None:
            raise ValueError("give data or fields")
        self.id = id
        self._data = data
        self._fields = fields

    @property
    def kind(self) -> TicketEventKind:
        return self._data.kind if self._data is not None else self._fields_().kind

    @property
    def type(self) -> str:
        return self.kind.event_type

    @property
    def data(self) -> TicketEvent:
        if self._data is None:
            self._data = self._fields_().event()
        return self._data

    def _fields_(self) -> TicketEventFields:
        assert self._fields is not None  # one of the two is always set
        return self._fields

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TicketEventOut):
            return NotImplemented
        return (self.id, self.data) == (other.id, other.data)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TicketEventOut(id={self.id!r}, data={self.data!r})"


_REROUTE_FIELDS: Final = (
    "id", "ticket_id", "queue", "previous_queue", "rule_id", "reason", "at", "snapshot",
)


class RerouteOut(FieldValues):
    """Publish `ticket` (type support.ticket.routed) on the topic of `ticket.queue`.

    `ticket` is None only when no routed snapshot was ever seen for this ticket. Read-only by
    convention (a frozen dataclass's `__init__` costs a quarter of a re-route).
    """

    __slots__ = _REROUTE_FIELDS
    FIELDS = _REROUTE_FIELDS

    def __init__(
        self,
        *,
        id: str,
        ticket_id: str,
        queue: str,
        previous_queue: str | None,
        rule_id: str,
        reason: str,
        at: datetime,
        snapshot: Snapshot | None,
    ) -> None:
        self.id = id
        self.ticket_id = ticket_id
        self.queue = queue
        self.previous_queue = previous_queue
        self.rule_id = rule_id
        self.reason = reason
        self.at = at
        self.snapshot = snapshot


    @property
    def ticket(self) -> RoutedTicket | None:
        return None if self.snapshot is None else self.snapshot.model


@dataclass(frozen=True, slots=True)
class ActionRejectedOut:
    """An action that was not applied (e.g. a vendor acting outside its queue): dead-letter it."""

    id: str
    ticket_id: str
    reason: str


Output = SlaEventOut | TicketEventOut | RerouteOut | ActionRejectedOut
