"""Per-ticket lifecycle state (stored in a changelog-backed table keyed by ticket id), its stored
form, and (re-exported from `outputs`) the records the lifecycle functions return.

Stored form, `encode_state`: a compact JSON array (version 1) with the ticket id and the next
due time first, so `index_entry_from_json` reads them from the first bytes; enums as small
ints, UTC instants as epoch microseconds; then, when the state has a routed snapshot, a tab
and the snapshot's JSON, kept as bytes until needed (`snapshot.py`). Neither part holds a
newline, which `outbox` relies on.

    [1, ticket_id, next_due_ts, status, queue, priority, policy, calendar, opened_at,
     clock_at, requester_role, flags, vendor_response_target, reroutes, schedule_of,
     recent_inputs, [[metric, cycle, status, banked, segment_start_us, target, deadline_us,
                      breach_anchor, fired, next_marker, next_at_us], ...]]
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import AwareDatetime, Field, StrictInt, TypeAdapter

from router.native import slot_copier
from router.sla.clocks import ClockStatus, MetricClock, marker_level
from router.sla.instants import from_us, join_moment, split_moment, to_us
from router.sla.outputs import (
    ActionRejectedOut,
    Output,
    RerouteOut,
    SlaEventOut,
    SlaRecord,
    TicketEventFields,
    TicketEventOut,
)
from router.sla.snapshot import Snapshot
from router.sla.values import FieldValues
from schemas.sla import SlaMetric
from schemas.ticket import Priority, RoutedTicket

__all__ = [
    "RECENT_INPUTS_KEPT",
    "ActionRejectedOut",
    "LifecycleState",
    "Output",
    "RerouteOut",
    "SlaEventOut",
    "SlaRecord",
    "Step",
    "TicketEventFields",
    "TicketEventOut",
    "TicketStatus",
    "decode_state",
    "encode_state",
    "index_entry",
    "index_entry_from_json",
]

# Input ids remembered per ticket to drop redelivered records (at-least-once consumption).
RECENT_INPUTS_KEPT: Final = 32


class TicketStatus(StrEnum):
    OPEN = "open"
    PENDING = "pending"  # waiting on the buyer: resolution is paused
    RESOLVED = "resolved"


STATE_FIELDS: Final = (
    "ticket_id", "status", "queue", "priority", "policy", "calendar", "opened_at", "clock_at_us",
    "clock_at_tz", "requester_role", "responded", "vendor_response_target", "queue_pinned",
    "priority_pinned", "reroutes", "clocks", "snapshot", "recent_inputs", "next_due_ts",
    "schedule_of",
)


class LifecycleState(FieldValues):
    """Everything the lifecycle + SLA stage knows about one ticket.

    A plain class written out by hand (not a dataclass): under the native build it is a C
    struct with a compiled `__init__` (see `MetricClock`). `opened_at` and `clock_at` keep the
    input's UTC offset (outputs show times as the inputs gave them).
    """

    __slots__ = STATE_FIELDS
    FIELDS = STATE_FIELDS

    def __init__(
        self,
        *,
        ticket_id: str,
        status: TicketStatus = TicketStatus.OPEN,
        queue: str | None = None,
        priority: Priority = Priority.NORMAL,
        policy: str,
        calendar: str,
        opened_at: datetime,
        clock_at_us: int,
        clock_at_tz: tzinfo | None = None,
        requester_role: str | None = None,
        responded: bool = False,
        vendor_response_target: float | None = None,
        queue_pinned: bool = False,
        priority_pinned: bool = False,
        reroutes: int = 0,
        clocks: dict[SlaMetric, MetricClock] | None = None,
        snapshot: Snapshot | None = None,
        recent_inputs: list[str] | None = None,
        next_due_ts: float | None = None,
        schedule_of: str | None = None,
    ) -> None:
        self.ticket_id = ticket_id
        self.status = status
        self.queue = queue
        self.priority = priority
        self.policy = policy
        self.calendar = calendar
        self.opened_at = opened_at
        # Latest input time applied; earlier (out-of-order) input times are clamped to it. As
        # epoch us and the zone it was given in (None: UTC), so the tick path needs no datetime.
        self.clock_at_us = clock_at_us
        self.clock_at_tz = clock_at_tz
        # Sender role of the first message: a seller who opens a ticket is the customer in it.
        self.requester_role = requester_role
        self.responded = responded
        self.vendor_response_target = vendor_response_target  # from the vendor profile, s
        # Set once an agent or an escalation moved the ticket or changed its priority: later
        # `routed` events from the routing stage then no longer override them.
        self.queue_pinned = queue_pinned
        self.priority_pinned = priority_pinned
        self.reroutes = reroutes
        self.clocks: dict[SlaMetric, MetricClock] = {} if clocks is None else clocks
        self.snapshot = snapshot  # latest routed ticket, history for re-routes
        self.recent_inputs: list[str] = [] if recent_inputs is None else recent_inputs
        # Earliest pending firing (epoch seconds): the deadline index entry for this ticket.
        self.next_due_ts = next_due_ts
        # Fingerprint of the policy file the deadlines were computed with (recomputed on change).
        self.schedule_of = schedule_of


    @property
    def clock_at(self) -> datetime:
        return join_moment(self.clock_at_us, self.clock_at_tz)

    @clock_at.setter
    def clock_at(self, moment: datetime) -> None:
        self.clock_at_us, self.clock_at_tz = split_moment(moment)

    @property
    def ticket(self) -> RoutedTicket | None:
        return None if self.snapshot is None else self.snapshot.model

    @ticket.setter
    def ticket(self, ticket: RoutedTicket | None) -> None:
        self.snapshot = Snapshot.of(ticket)

    def replace(self, **changes: Any) -> LifecycleState:
        """A shallow copy with `changes` (tests and benchmarks; the hot path uses shell_copy)."""
        values = {name: getattr(self, name) for name in STATE_FIELDS}
        values.update(changes)
        return LifecycleState(**values)

    def shell_copy(self) -> LifecycleState:
        """A copy with its own clock map; the clocks themselves are shared until copied on
        first write (see Transition.writable); the snapshot is immutable, and so is the input
        list by convention (`recent_inputs` is replaced, never appended to). A unit test checks
        that every field is carried over.
        """
        return LifecycleState(
            ticket_id=self.ticket_id,
            status=self.status,
            queue=self.queue,
            priority=self.priority,
            policy=self.policy,
            calendar=self.calendar,
            opened_at=self.opened_at,
            clock_at_us=self.clock_at_us,
            clock_at_tz=self.clock_at_tz,
            requester_role=self.requester_role,
            responded=self.responded,
            vendor_response_target=self.vendor_response_target,
            queue_pinned=self.queue_pinned,
            priority_pinned=self.priority_pinned,
            reroutes=self.reroutes,
            clocks=self.clocks.copy(),
            snapshot=self.snapshot,
            recent_inputs=self.recent_inputs,
            next_due_ts=self.next_due_ts,
            schedule_of=self.schedule_of,
        )


if __file__.endswith(".py"):  # interpreted: see router.native.slot_copier
    LifecycleState.shell_copy = slot_copier(  # type: ignore[method-assign]  # same contract
        LifecycleState, STATE_FIELDS, copy=("clocks",)
    )


class Step:
    """Result of one lifecycle call. `state` is the very input object when nothing changed.

    A plain class rather than a NamedTuple: built once per call, natively under the native
    build (a NamedTuple's `__new__` is Python-level).
    """

    __slots__ = ("outputs", "state")

    def __init__(self, state: LifecycleState | None, outputs: list[Output]) -> None:
        self.state = state
        self.outputs = outputs

    def __repr__(self) -> str:
        return f"Step(state={self.state!r}, outputs={self.outputs!r})"


def index_entry(state: LifecycleState) -> tuple[float, str] | None:
    """(due epoch seconds, ticket id) for the deadline index, or None when nothing is pending."""
    if state.next_due_ts is None:
        return None
    return (state.next_due_ts, state.ticket_id)


# -- stored form -------------------------------------------------------------------------------

_VERSION: Final = 1
_SNAPSHOT_SEPARATOR: Final = b"\t"  # compact JSON escapes tabs inside strings: never raw
_PREFIX: Final = b'[1,"'
_STATUSES: Final = tuple(TicketStatus)
_STATUS_CODES: Final = {s: n for n, s in enumerate(_STATUSES)}
_PRIORITIES: Final = tuple(Priority)
_PRIORITY_CODES: Final = {p: n for n, p in enumerate(_PRIORITIES)}
_METRICS: Final = tuple(SlaMetric)
_METRIC_CODES: Final = {m: n for n, m in enumerate(_METRICS)}
_CLOCK_STATUSES: Final = tuple(ClockStatus)
_CLOCK_STATUS_CODES: Final = {s: n for n, s in enumerate(_CLOCK_STATUSES)}
_RESPONDED, _QUEUE_PINNED, _PRIORITY_PINNED = 1, 2, 4


def _code_of(marker: str) -> int:
    """Markers as ints: met -1, warning 0, breached:n n."""
    return -1 if marker == "met" else marker_level(marker)


_MARKER_CODES: Final = {
    m: _code_of(m) for m in ("met", "warning", *(f"breached:{n}" for n in range(17)))
}


def _marker_of(code: int) -> str:
    return "met" if code == -1 else "warning" if code == 0 else f"breached:{code}"


def _instant(us: int, zone: tzinfo | None) -> int | str:
    """UTC instants as epoch us; another offset is kept as ISO text (outputs show it)."""
    return us if zone is None else join_moment(us, zone).isoformat()


def _clock_row(c: MetricClock) -> list[Any]:
    codes = _MARKER_CODES
    return [
        _METRIC_CODES[c.metric], c.cycle, _CLOCK_STATUS_CODES[c.status], c.banked,
        c.segment_start_us, c.target, c.deadline_us, c.breach_anchor,
        [codes[m] if m in codes else _code_of(m) for m in c.fired],
        None if c.next_marker is None else _code_of(c.next_marker), c.next_at_us,
    ]


def encode_state(state: LifecycleState) -> bytes:
    flags = (
        (_RESPONDED if state.responded else 0)
        | (_QUEUE_PINNED if state.queue_pinned else 0)
        | (_PRIORITY_PINNED if state.priority_pinned else 0)
    )
    head = orjson.dumps(
        [
            _VERSION, state.ticket_id, state.next_due_ts, _STATUS_CODES[state.status],
            state.queue, _PRIORITY_CODES[state.priority], state.policy, state.calendar,
            _instant(*split_moment(state.opened_at)),
            _instant(state.clock_at_us, state.clock_at_tz), state.requester_role, flags,
            state.vendor_response_target, state.reroutes, state.schedule_of,
            state.recent_inputs, [_clock_row(c) for c in state.clocks.values()],
        ]
    )
    snapshot = state.snapshot
    return head if snapshot is None else head + _SNAPSHOT_SEPARATOR + snapshot.raw


_Count = Annotated[int, Field(ge=0)]
_Instant = StrictInt | AwareDatetime
_Marker = Annotated[int, Field(ge=-1)]
_StatusCode = Annotated[int, Field(ge=0, lt=len(_STATUSES))]
_PriorityCode = Annotated[int, Field(ge=0, lt=len(_PRIORITIES))]
_MetricCode = Annotated[int, Field(ge=0, lt=len(_METRICS))]
_ClockStatusCode = Annotated[int, Field(ge=0, lt=len(_CLOCK_STATUSES))]
_Flags = Annotated[int, Field(ge=0, lt=8)]
_ClockRow = tuple[
    _MetricCode, _Count, _ClockStatusCode, float, int | None, float, int | None, float | None,
    list[_Marker], _Marker | None, int | None,
]
_Row = tuple[
    Literal[1], str, float | None, _StatusCode, str | None, _PriorityCode, str, str, _Instant,
    _Instant, str | None, _Flags, float | None, _Count, str | None, list[str], list[_ClockRow],
]
_ROW: Final[TypeAdapter[Any]] = TypeAdapter(_Row)


def _moment(value: int | datetime) -> datetime:
    return from_us(value) if isinstance(value, int) else value


def decode_state(raw: bytes) -> LifecycleState:
    """Validate stored bytes (raises pydantic.ValidationError on a corrupt record).

    The snapshot is validated when first used (a re-route or priority change), not here.
    """
    head, _, snapshot = raw.partition(_SNAPSHOT_SEPARATOR)
    row = _ROW.validate_json(head)
    (_, ticket_id, due, status, queue, priority, policy, calendar, opened_at, clock_at,
     requester_role, flags, target, reroutes, schedule_of, recent, rows) = row
    clocks = {}
    for metric, cycle, c_status, banked, start, c_target, deadline, anchor, fired, nxt, at in rows:
        clocks[_METRICS[metric]] = MetricClock(
            metric=_METRICS[metric], cycle=cycle, status=_CLOCK_STATUSES[c_status], banked=banked,
            segment_start_us=start, target=c_target, deadline_us=deadline, breach_anchor=anchor,
            fired=tuple([_marker_of(m) for m in fired]),
            next_marker=None if nxt is None else _marker_of(nxt), next_at_us=at,
        )
    return LifecycleState(
        ticket_id=ticket_id, status=_STATUSES[status], queue=queue, priority=_PRIORITIES[priority],
        policy=policy, calendar=calendar, opened_at=_moment(opened_at),
        clock_at_us=clock_at if isinstance(clock_at, int) else to_us(clock_at),
        clock_at_tz=None if isinstance(clock_at, int) else clock_at.tzinfo,
        requester_role=requester_role,
        responded=bool(flags & _RESPONDED), vendor_response_target=target,
        queue_pinned=bool(flags & _QUEUE_PINNED), priority_pinned=bool(flags & _PRIORITY_PINNED),
        reroutes=reroutes, clocks=clocks, snapshot=Snapshot(snapshot) if snapshot else None,
        recent_inputs=recent, next_due_ts=due, schedule_of=schedule_of,
    )


def index_entry_from_json(raw: bytes) -> tuple[float, str] | None:
    """Like `index_entry` straight from stored bytes: no validation, for fast recovery.

    Reads the two leading fields in place: `[1,"<ticket id>",<due or null>,`. An id holding
    an escape takes the JSON parse of the state part.
    """
    id_end = raw.find(b'"', 4)
    if (
        raw.startswith(_PREFIX)
        and raw[id_end + 1 : id_end + 2] == b","
        and raw.find(b"\\", 4, id_end) < 0
    ):
        due_end = raw.find(b",", id_end + 2)
        text = raw[id_end + 2 : due_end]
        if text == b"null":
            return None
        return (float(text), raw[4:id_end].decode())
    document = orjson.loads(raw.partition(_SNAPSHOT_SEPARATOR)[0])
    due = document[2]
    return None if due is None else (float(due), str(document[1]))
