"""Firing due SLA markers in time order, and the escalation ladder's actions."""

from __future__ import annotations

from datetime import tzinfo
from typing import Final

from router.sla import clocks
from router.sla.events import METRIC_NAMES, context_of, is_late, sla_event_id, sla_event_out
from router.sla.instants import join_moment
from router.sla.terms import MetricTerms
from router.sla.transitions import Transition
from schemas.sla import SlaMetric
from schemas.ticket import Priority

# Ladders are finite, so this only bounds a pathological policy (reroute loops).
MAX_FIRINGS_PER_CALL: Final = 64

_METRIC_ORDER: Final = {metric: rank for rank, metric in enumerate(SlaMetric)}
_BY_RANK: Final = sorted(Priority, key=lambda p: p.rank)
_RANK: Final = {p: p.rank for p in Priority}  # `Priority.rank` is an enum property: slow per call


def raised(priority: Priority) -> Priority:
    return _BY_RANK[min(_RANK[priority] + 1, len(_BY_RANK) - 1)]


_RAISED: Final = {p: raised(p) for p in Priority}


def advance(run: Transition, until_us: int) -> None:
    """Fire, in time order, everything due at or before `until_us` (epoch microseconds)."""
    order = _METRIC_ORDER
    for _ in range(MAX_FIRINGS_PER_CALL):
        # The next due time is known (NOTHING_DUE if none): skip the scan when nothing is due
        if run.synced and run.due_us > until_us:
            return
        # The earliest (at, metric order) due by `until_us`, compared without building tuples
        metric = None
        first_at = 0
        for clock in run.state.clocks.values():
            at = clock.next_at_us
            if at is not None and at <= until_us:
                if metric is None or at < first_at:
                    first_at, metric = at, clock.metric
                elif at == first_at and order[clock.metric] < order[metric]:  # ranks: ties only
                    metric = clock.metric
        if metric is None:
            return
        _fire(run, metric, until_us)
        run.reschedule()


def _fire(run: Transition, metric: SlaMetric, until_us: int) -> None:
    state = run.state
    clock = run.writable(metric)
    assert clock is not None  # advance() picked it from the clocks
    marker, scheduled_us, deadline_us = clock.next_marker, clock.next_at_us, clock.deadline_us
    terms = run.terms(metric)
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
        spent, banked = clocks.threshold(clock, marker, terms), clock.banked
        if banked > spent:  # max(threshold, banked)
            spent = banked
    else:
        spent = clocks.elapsed(clock, due_us, run.calendar())
    clocks.record_firing(clock, marker, spent)
    if marker == clocks.WARNING:
        clocks.schedule_next(clock, terms, run.calendar())  # the deadline itself did not move
        if deadline_us <= until_us:
            return  # the breach is due too: it supersedes a warning nobody could act on
        late = is_late(run.now_us, due_us, run.config.late_grace_seconds)
        run.outputs.append(
            sla_event_out(
                sla_event_id(state.ticket_id, clock, marker), state.ticket_id, clock, marker,
                context_of(state), deadline_us, due_us, due_tz, run.now, spent, "notified", late,
            )
        )
        return
    _escalate(run, clock, marker, terms, scheduled_us, deadline_us, due_us, due_tz, spent)


def _escalate(
    run: Transition,
    clock: clocks.MetricClock,
    marker: str,
    terms: MetricTerms,
    scheduled_us: int,
    deadline_us: int,
    due_us: int,
    due_tz: tzinfo | None,
    spent: float,
) -> None:
    """Publish a breach (rung `marker`, recorded on `clock`) and take its rung's actions."""
    state = run.state
    late = is_late(run.now_us, due_us, run.config.late_grace_seconds)
    event_id = sla_event_id(state.ticket_id, clock, marker)
    before = context_of(state)
    level = clocks.marker_level(marker)
    step = terms.ladder[level - 1]
    position = len(run.outputs)  # the breach is published before what it caused
    raised_to = new_queue = None
    new_priority = step.set_priority or (_RAISED[before[2]] if step.raise_priority else None)
    reroute = step.reroute if step.reroute != before[1] else None
    if new_priority is not None and _RANK[new_priority] <= _RANK[before[2]]:
        new_priority = None  # never lowered, and not raised to what it already is
    if new_priority is not None or reroute is not None:  # the actions take a datetime: one
        due_at = join_moment(due_us, due_tz)
    if new_priority is not None:
        run.change_priority(due_at, new_priority, cause=event_id)
        raised_to = state.priority
    if reroute is not None:
        policy = step.reroute_policy or run.config.policy_for_queue(reroute) or state.policy
        name = METRIC_NAMES[clock.metric]
        rule_id = f"sla:{before[0]}:{name}:L{level}"
        reason = f"{name} breached, escalation level {level}"
        run.move(due_at, reroute, policy, rule_id=rule_id, reason=reason, cause=event_id)
        new_queue = state.queue
    if raised_to is None and new_queue is None:
        clocks.schedule_next(clock, terms, run.calendar())
        action = "notified"
    elif new_queue is None:  # a priority raise or a move has rescheduled every clock already
        action = "priority_raised"
    else:
        action = "rerouted" if raised_to is None else "priority_raised,rerouted"
    record = sla_event_out(
        event_id, state.ticket_id, clock, marker, before,
        scheduled_us if level > 1 else deadline_us, due_us, due_tz, run.now, spent, action, late,
        raised_to, new_queue,
    )
    run.outputs.insert(position, record)

