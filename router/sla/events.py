"""Builders of the records the lifecycle publishes, and their replay-stable ids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import NamedTuple

from router.ids import derive_id
from router.sla import clocks
from router.sla.clocks import MetricClock
from router.sla.state import (
    LifecycleState,
    SlaEventOut,
    SlaRecord,
    TicketEventFields,
    TicketEventOut,
)
from schemas.sla import SlaEventKind
from schemas.ticket import Priority, TicketEventKind

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


class Firing(NamedTuple):
    """What an SLA event reports beyond the clock and the ticket context.

    `late` is `fired_at - due_at` beyond the policy file's grace (both given in epoch us).
    """

    deadline_us: int
    due_us: int
    due_tz: tzinfo | None  # None: UTC
    fired_at: datetime
    elapsed: float
    action_taken: str
    late: bool
    new_priority: Priority | None = None
    new_queue: str | None = None


def is_late(fired_us: int, due_us: int, grace_seconds: float) -> bool:
    # Same float as (fired_at - due_at).total_seconds(): microseconds over 10**6.
    return (fired_us - due_us) / 1_000_000 > grace_seconds


def sla_event_id(ticket_id: str, clock: MetricClock, marker: str) -> str:
    """The same (ticket, metric, cycle, kind, level) always yields the same record id."""
    kind = "breached" if marker.startswith("breached:") else marker
    level = clocks.marker_level(marker)
    # The metric is a StrEnum: joined as its value, without the slow `.value` lookup.
    return derive_id(ticket_id, "sla", clock.metric, str(clock.cycle), kind, str(level))


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
    record = SlaRecord(
        ticket_id,
        _KIND_OF_MARKER.get(marker, SlaEventKind.BREACHED),
        context.policy,
        clock.metric,
        clocks.marker_level(marker),
        clock.cycle,
        firing.deadline_us,
        firing.due_us,
        firing.due_tz,
        firing.fired_at,
        firing.late,
        context.queue,
        context.priority,
        firing.action_taken,
        firing.new_priority,
        firing.new_queue,
        clock.target,
        max(firing.elapsed, 0.0),
    )
    return SlaEventOut(event_id, record)


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
    fields = TicketEventFields(
        ticket_id=state.ticket_id,
        kind=kind,
        at=at,
        queue=state.queue,
        actor=LIFECYCLE_ACTOR if routed else actor,
        sender_role=sender_role,
        priority=state.priority,
        sla_policy=state.policy,
        ticket=state.snapshot if routed else None,
    )
    return TicketEventOut(event_id, fields=fields)
