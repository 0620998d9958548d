"""Per-ticket lifecycle state (stored in a changelog-backed table keyed by ticket id) and the
records the lifecycle functions return for the stream layer to publish.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

import orjson
from pydantic import ConfigDict, TypeAdapter

from router.sla.clocks import MetricClock
from schemas.sla import SlaEvent, SlaMetric
from schemas.ticket import Priority, RoutedTicket, TicketEvent

# Input ids remembered per ticket to drop redelivered records (at-least-once consumption).
RECENT_INPUTS_KEPT = 32


class TicketStatus(StrEnum):
    OPEN = "open"
    PENDING = "pending"  # waiting on the buyer: resolution is paused
    RESOLVED = "resolved"


@dataclass(slots=True, kw_only=True)
class LifecycleState:
    """Everything the lifecycle + SLA stage knows about one ticket.

    A slotted dataclass (cheap to copy and update on the tick path); `encode_state` and
    `decode_state` validate and serialise it with pydantic.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    ticket_id: str
    status: TicketStatus = TicketStatus.OPEN
    queue: str | None = None
    priority: Priority = Priority.NORMAL
    policy: str
    calendar: str
    opened_at: datetime
    # Latest input time applied; earlier (out-of-order) input times are clamped to it.
    clock_at: datetime
    # Sender role of the first message: a seller who opens a ticket is the customer in it.
    requester_role: str | None = None
    responded: bool = False
    vendor_response_target: float | None = None  # from the vendor profile, seconds
    # Set once an agent or an escalation moved the ticket or changed its priority: later
    # `routed` events from the routing stage then no longer override them.
    queue_pinned: bool = False
    priority_pinned: bool = False
    reroutes: int = 0
    clocks: dict[SlaMetric, MetricClock] = field(default_factory=dict)
    ticket: RoutedTicket | None = None  # latest routed snapshot, history for re-routes
    recent_inputs: list[str] = field(default_factory=list)
    # Earliest pending firing (epoch seconds): the deadline index entry for this ticket.
    next_due_ts: float | None = None
    # Fingerprint of the policy file the deadlines were computed with (recomputed on change).
    schedule_of: str | None = None

    def shell_copy(self) -> LifecycleState:
        """A copy with its own clock map and input list; the clocks themselves are shared
        until copied on first write (see Transition.writable); the snapshot is frozen.

        Spelled out: 2.5x cheaper than dataclasses.replace; a unit test checks every field.
        """
        return LifecycleState(
            ticket_id=self.ticket_id,
            status=self.status,
            queue=self.queue,
            priority=self.priority,
            policy=self.policy,
            calendar=self.calendar,
            opened_at=self.opened_at,
            clock_at=self.clock_at,
            requester_role=self.requester_role,
            responded=self.responded,
            vendor_response_target=self.vendor_response_target,
            queue_pinned=self.queue_pinned,
            priority_pinned=self.priority_pinned,
            reroutes=self.reroutes,
            clocks=dict(self.clocks),
            ticket=self.ticket,
            recent_inputs=list(self.recent_inputs),
            next_due_ts=self.next_due_ts,
            schedule_of=self.schedule_of,
        )


STATE_ADAPTER: TypeAdapter[LifecycleState] = TypeAdapter(LifecycleState)


def encode_state(state: LifecycleState) -> bytes:
    return STATE_ADAPTER.dump_json(state)


def decode_state(raw: bytes) -> LifecycleState:
    """Validate stored bytes (raises pydantic.ValidationError on a corrupt record)."""
    return STATE_ADAPTER.validate_json(raw)


def index_entry(state: LifecycleState) -> tuple[float, str] | None:
    """(due epoch seconds, ticket id) for the deadline index, or None when nothing is pending."""
    if state.next_due_ts is None:
        return None
    return (state.next_due_ts, state.ticket_id)


_ID_PREFIX = b'{"ticket_id":"'
_DUE_FIELD = b',"next_due_ts":'


def index_entry_from_json(raw: bytes) -> tuple[float, str] | None:
    """Like `index_entry` straight from stored bytes: no model validation, for fast recovery.

    Reads the two fields in place (`encode_state` writes `ticket_id` first and `next_due_ts`
    after the ticket snapshot; inside a JSON string a quote is always escaped, so the last
    `,"next_due_ts":` is the field). Anything unexpected takes the full JSON parse.
    """
    due_at = raw.rfind(_DUE_FIELD)
    id_end = raw.find(b'"', len(_ID_PREFIX))
    if due_at > 0 and raw.startswith(_ID_PREFIX) and raw.find(b"\\", 0, id_end) < 0:
        start = due_at + len(_DUE_FIELD)
        comma, brace = raw.find(b",", start), raw.find(b"}", start)
        text = raw[start : comma if 0 <= comma < brace or brace < 0 else brace]
        if text == b"null":
            return None
        try:
            return (float(text), raw[len(_ID_PREFIX) : id_end].decode())
        except ValueError:
            pass
    document = orjson.loads(raw)
    due = document.get("next_due_ts")
    if due is None:
        return None
    return (float(due), str(document["ticket_id"]))


@dataclass(frozen=True, slots=True)
class SlaEventOut:
    """Publish on `sla.events` with CloudEvents id `id` and type `type`."""

    id: str
    data: SlaEvent

    @property
    def type(self) -> str:
        return self.data.kind.event_type


@dataclass(frozen=True, slots=True)
class TicketEventOut:
    """Publish on `tickets.events` (replied, resolved, reopened; `routed` for a queue or
    priority change, with `actor` = LIFECYCLE_ACTOR so this stage skips it on the way back)."""

    id: str
    data: TicketEvent

    @property
    def type(self) -> str:
        return self.data.kind.event_type


@dataclass(frozen=True, slots=True)
class RerouteOut:
    """Publish `ticket` (type support.ticket.routed) on the topic of `ticket.queue`.

    `ticket` is None only when no routed snapshot was ever seen for this ticket.
    """

    id: str
    ticket_id: str
    queue: str
    previous_queue: str | None
    rule_id: str
    reason: str
    at: datetime
    ticket: RoutedTicket | None


@dataclass(frozen=True, slots=True)
class ActionRejectedOut:
    """An action that was not applied (e.g. a vendor acting outside its queue): dead-letter it."""

    id: str
    ticket_id: str
    reason: str


Output = SlaEventOut | TicketEventOut | RerouteOut | ActionRejectedOut


class Step(NamedTuple):
    """Result of one lifecycle call. `state` is the very input object when nothing changed."""

    state: LifecycleState | None
    outputs: list[Output]
