"""Firing due SLA markers in time order, and the escalation ladder's actions."""

from __future__ import annotations

from datetime import datetime

from router.sla import clocks
from router.sla.events import Firing, SlaContext, sla_event_id, sla_event_out
from router.sla.transitions import Transition
from schemas.sla import SlaMetric
from schemas.ticket import Priority

# Ladders are finite, so this only bounds a pathological policy (reroute loops).
MAX_FIRINGS_PER_CALL = 64

_METRIC_ORDER = {metric: rank for rank, metric in enumerate(SlaMetric)}
_BY_RANK = sorted(Priority, key=lambda p: p.rank)


def raised(priority: Priority) -> Priority:
    return _BY_RANK[min(priority.rank + 1, len(_BY_RANK) - 1)]


def advance(run: Transition, until: datetime) -> None:
    """Fire, in time order, everything due at or before `until`."""
    for _ in range(MAX_FIRINGS_PER_CALL):
        due = [c for c in run.state.clocks.values() if c.next_at is not None and c.next_at <= until]
        if not due:
            return
        earliest = min(due, key=lambda c: (c.next_at, _METRIC_ORDER[c.metric]))
        _fire(run, earliest.metric, until)
        run.reschedule()


def _fire(run: Transition, metric: SlaMetric, until: datetime) -> None:
    state = run.state
    clock = run.writable(metric)
    assert clock is not None  # advance() picked it from the clocks
    marker, scheduled_at, deadline = clock.next_marker, clock.next_at, clock.deadline
    terms = run.terms(clock.metric)
    if marker is None or scheduled_at is None or deadline is None or terms is None:
        return
    # Nothing takes effect before the last change applied: when a priority raise makes a
    # deadline fall in the past, the breach happens at the raise, not retroactively.
    due_at = max(scheduled_at, state.clock_at)
    state.clock_at = due_at
    if due_at == scheduled_at:  # on time: elapsed is the threshold it was scheduled for
        spent = max(clocks.threshold(clock, marker, terms), clock.banked)
    else:
        spent = clocks.elapsed(clock, due_at, run.calendar())
    event_id = sla_event_id(state.ticket_id, clock, marker)
    clocks.record_firing(clock, marker, spent)
    clocks.schedule_next(clock, terms, run.calendar())  # the deadline itself did not move
    if marker == clocks.WARNING and deadline <= until:
        return  # the breach is due too: it supersedes a warning nobody could act on
    before = SlaContext.of(state)
    grace = run.config.late_grace_seconds
    if marker == clocks.WARNING:
        firing = Firing(deadline, due_at, run.now, spent, "notified", grace)
        run.outputs.append(sla_event_out(event_id, state.ticket_id, clock, marker, before, firing))
        return
    level = clocks.marker_level(marker)
    step = terms.ladder[level - 1]
    position = len(run.outputs)  # the breach is published before what it caused
    cause = event_id
    taken: list[str] = []
    new_priority = step.set_priority or (raised(before.priority) if step.raise_priority else None)
    if new_priority is not None and new_priority.rank > before.priority.rank:
        run.change_priority(due_at, new_priority, cause=cause)
        taken.append("priority_raised")
    if step.reroute is not None and step.reroute != before.queue:
        policy = step.reroute_policy or run.config.policy_for_queue(step.reroute) or state.policy
        rule_id = f"sla:{before.policy}:{clock.metric.value}:L{level}"
        reason = f"{clock.metric.value} breached, escalation level {level}"
        run.move(due_at, step.reroute, policy, rule_id=rule_id, reason=reason, cause=cause)
        taken.append("rerouted")
    firing = Firing(
        deadline=scheduled_at if level > 1 else deadline,
        due_at=due_at,
        fired_at=run.now,
        elapsed=spent,
        action_taken=",".join(taken) or "notified",
        late_after_seconds=grace,
        new_priority=state.priority if "priority_raised" in taken else None,
        new_queue=state.queue if "rerouted" in taken else None,
    )
    record = sla_event_out(event_id, state.ticket_id, clock, marker, before, firing)
    run.outputs.insert(position, record)
