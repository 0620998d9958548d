"""Builders of the records the lifecycle publishes, and their replay-stable ids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from router.ids import derive_id
from router.sla import clocks
from router.sla.clocks import MetricClock
from router.sla.state import LifecycleState, SlaEventOut, TicketEventOut
from schemas.sla import SlaEvent, SlaEventKind
from schemas.ticket import Priority, TicketEvent, TicketEventKind

# `actor` of the `routed` events this stage emits; it skips them when they come back.
LIFECYCLE_ACTOR = "lifecycle"

_KIND_OF_MARKER = {clocks.WARNING: SlaEventKind.WARNING, clocks.MET: SlaEventKind.MET}


@dataclass(frozen=True, slots=True)
class SlaContext:
    """The ticket as it was when an SLA event fired, before any escalation action."""

    policy: str
    queue: str | None
    priority: Priority

    @classmethod
    def of(cls, state: LifecycleState) -> SlaContext:
        return cls(state.policy, state.queue, state.priority)


@dataclass(frozen=True, slots=True)
class Firing:
    """What an SLA event reports beyond the clock and the ticket context."""

    deadline: datetime
    due_at: datetime
    fired_at: datetime
    elapsed: float
    action_taken: str
    late_after_seconds: float
    new_priority: Priority | None = None
    new_queue: str | None = None


def sla_event_id(ticket_id: str, clock: MetricClock, marker: str) -> str:
    """The same (ticket, metric, cycle, kind, level) always yields the same record id."""
    kind = "breached" if marker.startswith("breached:") else marker
    level = clocks.marker_level(marker)
    return derive_id(ticket_id, "sla", clock.metric.value, str(clock.cycle), kind, str(level))


def output_id(ticket_id: str, cause: str, what: str) -> str:
    """Id of a record caused by an input or a firing (`cause`): stable across replays."""
    return derive_id(ticket_id, cause, what)


def sla_event_out(
    event_id: str,
    ticket_id: str,
    clock: MetricClock,
    marker: str,
    context: SlaContext,
    firing: Firing,
) -> SlaEventOut:
    late = (firing.fired_at - firing.due_at).total_seconds() > firing.late_after_seconds
    event = SlaEvent(
        ticket_id=ticket_id,
        kind=_KIND_OF_MARKER.get(marker, SlaEventKind.BREACHED),
        policy=context.policy,
        metric=clock.metric,
        level=clocks.marker_level(marker),
        cycle=clock.cycle,
        deadline=firing.deadline,
        due_at=firing.due_at,
        fired_at=firing.fired_at,
        late=late,
        queue=context.queue,
        priority=context.priority,
        action_taken=firing.action_taken,
        new_priority=firing.new_priority,
        new_queue=firing.new_queue,
        target_seconds=clock.target,
        elapsed_business_seconds=max(firing.elapsed, 0.0),
    )
    return SlaEventOut(id=event_id, data=event)


def ticket_event_out(
    state: LifecycleState,
    kind: TicketEventKind,
    at: datetime,
    *,
    event_id: str,
    actor: str | None,
    sender_role: str | None = None,
) -> TicketEventOut:
    """replied / resolved / reopened; `routed` (queue or priority change) carries the ticket."""
    routed = kind is TicketEventKind.ROUTED
    event = TicketEvent(
        ticket_id=state.ticket_id,
        kind=kind,
        at=at,
        queue=state.queue,
        actor=LIFECYCLE_ACTOR if routed else actor,
        sender_role=sender_role,
        priority=state.priority,
        sla_policy=state.policy,
        ticket=state.ticket if routed else None,
    )
    return TicketEventOut(id=event_id, data=event)
