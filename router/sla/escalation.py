"""Firing due SLA markers in time order, and the escalation ladder's actions."""

from __future__ import annotations

from router.sla import clocks
from router.sla.calendar import join_moment
from router.sla.events import Firing, SlaContext, is_late, sla_event_id, sla_event_out
from router.sla.transitions import Transition
from schemas.sla import SlaMetric
from schemas.ticket import Priority

# Ladders are finite, so this only bounds a pathological policy (reroute loops).
MAX_FIRINGS_PER_CALL = 64

_METRIC_ORDER = {metric: rank for rank, metric in enumerate(SlaMetric)}
_BY_RANK = sorted(Priority, key=lambda p: p.rank)


def raised(priority: Priority) -> Priority:
    return _BY_RANK[min(priority.rank + 1, len(_BY_RANK) - 1)]


def advance(run: Transition, until_us: int) -> None:
    """Fire, in time order, everything due at or before `until_us` (epoch microseconds)."""
    order = _METRIC_ORDER
    for _ in range(MAX_FIRINGS_PER_CALL):
        earliest: tuple[int, int] | None = None
        metric = None
        for clock in run.state.clocks.values():
            at = clock.next_at_us
            if at is not None and at <= until_us:
                key = (at, order[clock.metric])
                if earliest is None or key < earliest:
                    earliest, metric = key, clock.metric
        if metric is None:
            return
        _fire(run, metric, until_us)
        run.reschedule()


def _fire(run: Transition, metric: SlaMetric, until_us: int) -> None:
    state = run.state
    clock = run.writable(metric)
    assert clock is not None  # advance() picked it from the clocks
    marker, scheduled_us, deadline_us = clock.next_marker, clock.next_at_us, clock.deadline_us
    terms = run.terms(clock.metric)
    if marker is None or scheduled_us is None or deadline_us is None or terms is None:
        return
    # Nothing takes effect before the last change applied: when a priority raise makes a
    # deadline fall in the past, the breach happens at the raise, not retroactively.
    if state.clock_at_us > scheduled_us:
        due_us, due_tz = state.clock_at_us, state.clock_at_tz  # in the input's zone
    else:
        due_us, due_tz = scheduled_us, None
    state.clock_at_us, state.clock_at_tz = due_us, due_tz
    if due_us == scheduled_us:  # on time: elapsed is the threshold it was scheduled for
        spent = max(clocks.threshold(clock, marker, terms), clock.banked)
    else:
        spent = clocks.elapsed(clock, due_us, run.calendar())
    event_id = sla_event_id(state.ticket_id, clock, marker)
    clocks.record_firing(clock, marker, spent)
    if marker == clocks.WARNING:
        clocks.schedule_next(clock, terms, run.calendar())  # the deadline itself did not move
        if deadline_us <= until_us:
            return  # the breach is due too: it supersedes a warning nobody could act on
    before = SlaContext.of(state)
    late = is_late(run.now_us, due_us, run.config.late_grace_seconds)
    if marker == clocks.WARNING:
        firing = Firing(deadline_us, due_us, due_tz, run.now, spent, "notified", late)
        run.outputs.append(sla_event_out(event_id, state.ticket_id, clock, marker, before, firing))
        return
    level = clocks.marker_level(marker)
    step = terms.ladder[level - 1]
    position = len(run.outputs)  # the breach is published before what it caused
    cause = event_id
    taken: list[str] = []
    new_priority = step.set_priority or (raised(before.priority) if step.raise_priority else None)
    due_at = join_moment(due_us, due_tz)
    if new_priority is not None and new_priority.rank > before.priority.rank:
        run.change_priority(due_at, new_priority, cause=cause)
        taken.append("priority_raised")
    if step.reroute is not None and step.reroute != before.queue:
        policy = step.reroute_policy or run.config.policy_for_queue(step.reroute) or state.policy
        rule_id = f"sla:{before.policy}:{clock.metric.value}:L{level}"
        reason = f"{clock.metric.value} breached, escalation level {level}"
        run.move(due_at, step.reroute, policy, rule_id=rule_id, reason=reason, cause=cause)
        taken.append("rerouted")
    if not taken:  # a priority raise or a move has rescheduled every clock already
        clocks.schedule_next(clock, terms, run.calendar())
    firing = Firing(
        deadline_us=scheduled_us if level > 1 else deadline_us,
        due_us=due_us,
        due_tz=due_tz,
        fired_at=run.now,
        elapsed=spent,
        action_taken=",".join(taken) or "notified",
        late=late,
        new_priority=state.priority if "priority_raised" in taken else None,
        new_queue=state.queue if "rerouted" in taken else None,
    )
    record = sla_event_out(event_id, state.ticket_id, clock, marker, before, firing)
    run.outputs.insert(position, record)
