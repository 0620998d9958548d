"""State transitions of one ticket: clock moves, SLA firings and escalation actions.

A `Transition` owns a private copy of a ticket's state for the length of one lifecycle call
and collects the records to publish. Business-time effects use event time (`at`); only
`fired_at` and `late` depend on the processing clock (`now`).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple, Protocol

from router.sla import clocks
from router.sla.calendar import Calendar
from router.sla.clocks import ClockStatus, MetricClock
from router.sla.policy import MetricTerms, SlaConfig, SlaPolicy
from router.sla.state import Output, RerouteOut, SlaEventOut, Step, TicketEventOut, TicketState
from router.sla.state import TicketStatus as Status
from schemas.sla import SlaEvent, SlaEventKind, SlaMetric
from schemas.ticket import Priority, SlaTerms, TicketEvent, TicketEventKind
from schemas.vendor import VendorProfile

# `actor` of the `routed` events this stage emits; it skips them when they come back.
LIFECYCLE_ACTOR = "lifecycle"
# Ladders are finite, so this only bounds a pathological policy (reroute loops).
MAX_FIRINGS_PER_CALL = 64

_METRIC_ORDER = {metric: rank for rank, metric in enumerate(SlaMetric)}
_BY_RANK = sorted(Priority, key=lambda p: p.rank)


class VendorDirectory(Protocol):
    """The vendor profiles (a dict, or the stream layer's global table)."""

    def get(self, vendor_id: str, /) -> VendorProfile | None: ...


_KIND_OF_MARKER = {clocks.WARNING: SlaEventKind.WARNING, clocks.MET: SlaEventKind.MET}


class _SlaContext(NamedTuple):
    policy: str
    queue: str | None
    priority: Priority


def vendor_of(queue: str | None) -> str | None:
    if queue is not None and queue.startswith("vendor:"):
        return queue.removeprefix("vendor:")
    return None


def raised(priority: Priority) -> Priority:
    return _BY_RANK[min(priority.rank + 1, len(_BY_RANK) - 1)]


def sla_event_id(ticket_id: str, clock: MetricClock, marker: str) -> str:
    kind = "breached" if marker.startswith("breached:") else marker
    level = clocks.marker_level(marker)
    return f"{ticket_id}/{clock.metric.value}/{clock.cycle}/{kind}/{level}"


class Transition:
    def __init__(
        self,
        state: TicketState,
        config: SlaConfig,
        now: datetime,
        vendors: VendorDirectory | None,
    ) -> None:
        self.state = state
        self.config = config
        self.now = now
        self.vendors = vendors
        self.outputs: list[Output] = []

    # -- terms -------------------------------------------------------------------------------

    @property
    def policy(self) -> SlaPolicy:
        return self.config.policy(self.state.policy)

    def calendar(self) -> Calendar:
        return self.config.calendar(self.state.calendar, fallback=self.policy.calendar)

    def terms(self, metric: SlaMetric) -> MetricTerms | None:
        terms = self.policy.terms(metric, self.state.priority)
        override = self.state.vendor_response_target
        if terms is not None and metric is SlaMetric.VENDOR_RESPONSE and override is not None:
            return MetricTerms(override, terms.warning_fraction, terms.ladder)
        return terms

    def reschedule_all(self) -> None:
        calendar = self.calendar()
        due: list[float] = []
        for metric, clock in self.state.clocks.items():
            clocks.reschedule(clock, self.terms(metric), calendar)
            if clock.next_at is not None:
                due.append(clock.next_at.timestamp())
        self.state.next_due_ts = min(due) if due else None

    def finish(self) -> Step:
        self.reschedule_all()
        return Step(self.state, self.outputs)

    # -- clock moves -------------------------------------------------------------------------

    def start_cycle(self, metric: SlaMetric, at: datetime) -> None:
        """Start `metric` unless it is already running; a restart opens a new cycle."""
        existing = self.state.clocks.get(metric)
        if existing is not None and existing.status is ClockStatus.RUNNING:
            return
        cycle = existing.cycle + 1 if existing is not None else 0
        self.state.clocks[metric] = clocks.start_clock(metric, at, cycle)

    def stop(self, metric: SlaMetric, at: datetime) -> None:
        clock = self.state.clocks.get(metric)
        if clock is not None and clock.status is not ClockStatus.STOPPED:
            clocks.stop(clock, at, self.calendar())

    def resume(self, metric: SlaMetric, at: datetime) -> None:
        clock = self.state.clocks.get(metric)
        if clock is not None:
            clocks.resume(clock, at)

    def satisfy(self, metric: SlaMetric, at: datetime) -> None:
        """Stop `metric` because its obligation was fulfilled; publish `met` if in time."""
        clock = self.state.clocks.get(metric)
        if clock is None or clock.status is ClockStatus.STOPPED:
            return
        calendar = self.calendar()
        spent = clocks.elapsed(clock, at, calendar)
        clocks.stop(clock, at, calendar)
        terms = self.terms(metric)
        if terms is None or clocks.is_breached(clock) or clocks.MET in clock.fired:
            return
        if spent > terms.target_seconds:
            return  # late, and its breach is due now: advance() already fired it
        clock.fired.append(clocks.MET)
        deadline = calendar.add_business_seconds(at, terms.target_seconds - spent)
        self._publish_sla(
            clock,
            clocks.MET,
            deadline=deadline,
            due_at=at,
            spent=spent,
            action_taken="none",
            context=self._context(),
        )

    def customer_message(self, at: datetime, actor: str | None, cause: str) -> None:
        state = self.state
        if state.status is Status.RESOLVED:
            self.reopen(at, actor, cause)
        elif state.status is Status.PENDING:
            state.status = Status.OPEN
            self.resume(SlaMetric.RESOLUTION, at)
        if state.responded:
            self.start_cycle(SlaMetric.NEXT_RESPONSE, at)
        if vendor_of(state.queue) is not None:
            self.start_cycle(SlaMetric.VENDOR_RESPONSE, at)

    def response(self, at: datetime, *, by_vendor: bool) -> None:
        self.state.responded = True
        self.satisfy(SlaMetric.FIRST_RESPONSE, at)
        self.satisfy(SlaMetric.NEXT_RESPONSE, at)
        if by_vendor:
            self.satisfy(SlaMetric.VENDOR_RESPONSE, at)

    def pend(self, at: datetime) -> None:
        if self.state.status is Status.OPEN:
            self.state.status = Status.PENDING
            clock = self.state.clocks.get(SlaMetric.RESOLUTION)
            if clock is not None:
                clocks.pause(clock, at, self.calendar())

    def resolve(self, at: datetime, actor: str | None, cause: str) -> None:
        if self.state.status is Status.RESOLVED:
            return
        self.satisfy(SlaMetric.RESOLUTION, at)
        for metric in self.state.clocks:
            self.stop(metric, at)
        self.state.status = Status.RESOLVED
        self._publish_ticket_event(TicketEventKind.RESOLVED, at, actor, f"{cause}:resolved")

    def reopen(self, at: datetime, actor: str | None, cause: str) -> None:
        state = self.state
        was_resolved = state.status is Status.RESOLVED
        if state.status is Status.OPEN:
            return
        state.status = Status.OPEN
        self.resume(SlaMetric.RESOLUTION, at)
        if was_resolved and not state.responded:
            self.resume(SlaMetric.FIRST_RESPONSE, at)
        if was_resolved:
            self._publish_ticket_event(TicketEventKind.REOPENED, at, actor, f"{cause}:reopened")

    # -- routing changes ---------------------------------------------------------------------

    def retarget(self, at: datetime, *, queue: str | None, policy: str, priority: Priority) -> None:
        """Switch queue, policy and priority; time so far stays banked in the old calendar."""
        state = self.state
        old_calendar = self.calendar()
        for clock in state.clocks.values():
            clocks.bank(clock, at, old_calendar)
        old_vendor, new_vendor = vendor_of(state.queue), vendor_of(queue)
        state.queue, state.priority = queue, priority
        state.policy = self.config.policy(policy).name
        state.calendar, state.vendor_response_target = self._calendar_for(new_vendor)
        if old_vendor != new_vendor:
            if old_vendor is not None:
                self.stop(SlaMetric.VENDOR_RESPONSE, at)
            if new_vendor is not None and state.status is Status.OPEN:
                self.start_cycle(SlaMetric.VENDOR_RESPONSE, at)

    def _calendar_for(self, vendor_id: str | None) -> tuple[str, float | None]:
        policy_calendar = self.policy.calendar
        profile = self.vendors.get(vendor_id) if vendor_id and self.vendors is not None else None
        if profile is None:
            return policy_calendar, None
        calendar = profile.calendar
        known = calendar is not None and calendar in self.config.calendars
        target = profile.response_hours * 3600 if profile.response_hours else None
        return (calendar if known and calendar else policy_calendar), target

    def change_priority(self, at: datetime, priority: Priority, cause: str) -> None:
        state = self.state
        state.priority = priority
        state.priority_pinned = True
        if state.ticket is not None:
            state.ticket = state.ticket.model_copy(update={"priority": priority})
        self.reschedule_all()
        self._publish_routed(at, f"{cause}:priority")

    def move(
        self, at: datetime, queue: str, policy: str, *, rule_id: str, reason: str, cause: str
    ) -> None:
        """Put the ticket on another queue and publish it there with its history."""
        state = self.state
        previous = state.queue
        self.retarget(at, queue=queue, policy=policy, priority=state.priority)
        state.queue_pinned = True
        state.reroutes += 1
        self.reschedule_all()
        if state.ticket is not None:
            state.ticket = state.ticket.model_copy(
                update={
                    "queue": queue,
                    "priority": state.priority,
                    "sla": self.sla_terms(),
                    "rule_id": rule_id,
                }
            )
        self._publish_routed(at, f"{cause}:routed")
        self.outputs.append(
            RerouteOut(
                id=f"{cause}:reroute",
                ticket_id=state.ticket_id,
                queue=queue,
                previous_queue=previous,
                rule_id=rule_id,
                reason=reason,
                at=at,
                ticket=state.ticket,
            )
        )

    def sla_terms(self) -> SlaTerms:
        deadlines = {
            metric.value: clock.deadline
            for metric, clock in self.state.clocks.items()
            if clock.deadline is not None
        }
        return SlaTerms(policy=self.state.policy, deadlines=deadlines)

    # -- firing ------------------------------------------------------------------------------

    def advance(self, until: datetime) -> None:
        """Fire, in time order, everything due at or before `until`."""
        for _ in range(MAX_FIRINGS_PER_CALL):
            due = [
                c
                for c in self.state.clocks.values()
                if c.next_at is not None and c.next_at <= until
            ]
            if not due:
                return
            clock = min(due, key=lambda c: (c.next_at, _METRIC_ORDER[c.metric]))
            self._fire(clock, until)
            self.reschedule_all()

    def _fire(self, clock: MetricClock, until: datetime) -> None:
        marker, scheduled_at, deadline = clock.next_marker, clock.next_at, clock.deadline
        terms = self.terms(clock.metric)
        if marker is None or scheduled_at is None or deadline is None or terms is None:
            return
        # Nothing takes effect before the last change applied: when a priority raise makes a
        # deadline fall in the past, the breach happens at the raise, not retroactively.
        due_at = max(scheduled_at, self.state.clock_at)
        self.state.clock_at = due_at
        spent = clocks.elapsed(clock, due_at, self.calendar())
        clocks.record_firing(clock, marker, spent)
        if marker == clocks.WARNING and deadline <= until:
            return  # the breach is due too: it supersedes a warning nobody could act on
        before = self._context()
        if marker == clocks.WARNING:
            self._publish_sla(
                clock,
                marker,
                deadline=deadline,
                due_at=due_at,
                spent=spent,
                action_taken="notified",
                context=before,
            )
            return
        level = clocks.marker_level(marker)
        step = terms.ladder[level - 1]
        position = len(self.outputs)
        event_id = sla_event_id(self.state.ticket_id, clock, marker)
        taken: list[str] = []
        raise_to = raised(before.priority) if step.raise_priority else None
        new_priority = step.set_priority or raise_to
        if new_priority is not None and new_priority.rank > before.priority.rank:
            self.change_priority(due_at, new_priority, cause=event_id)
            taken.append("priority_raised")
        if step.reroute is not None and step.reroute != before.queue:
            policy = (
                step.reroute_policy
                or self.config.policy_for_queue(step.reroute)
                or self.state.policy
            )
            rule_id = f"sla:{before.policy}:{clock.metric.value}:L{level}"
            reason = f"{clock.metric.value} breached, escalation level {level}"
            self.move(due_at, step.reroute, policy, rule_id=rule_id, reason=reason, cause=event_id)
            taken.append("rerouted")
        self._publish_sla(
            clock,
            marker,
            deadline=scheduled_at if level > 1 else deadline,
            due_at=due_at,
            spent=spent,
            action_taken=",".join(taken) or "notified",
            context=before,
            new_priority=self.state.priority if "priority_raised" in taken else None,
            new_queue=self.state.queue if "rerouted" in taken else None,
            position=position,
        )

    # -- publishing --------------------------------------------------------------------------

    def _context(self) -> _SlaContext:
        state = self.state
        return _SlaContext(state.policy, state.queue, state.priority)

    def _publish_sla(
        self,
        clock: MetricClock,
        marker: str,
        *,
        deadline: datetime,
        due_at: datetime,
        spent: float,
        action_taken: str,
        context: _SlaContext,
        new_priority: Priority | None = None,
        new_queue: str | None = None,
        position: int | None = None,
    ) -> None:
        """Publish an SLA event; `context` is the ticket as it was before any action taken."""
        ticket_id = self.state.ticket_id
        event = SlaEvent(
            ticket_id=ticket_id,
            kind=_KIND_OF_MARKER.get(marker, SlaEventKind.BREACHED),
            policy=context.policy,
            metric=clock.metric,
            level=clocks.marker_level(marker),
            cycle=clock.cycle,
            deadline=deadline,
            due_at=due_at,
            fired_at=self.now,
            late=(self.now - due_at).total_seconds() > self.config.late_grace_seconds,
            queue=context.queue,
            priority=context.priority,
            action_taken=action_taken,
            new_priority=new_priority,
            new_queue=new_queue,
            target_seconds=clock.target,
            elapsed_business_seconds=max(spent, 0.0),
        )
        record = SlaEventOut(id=sla_event_id(ticket_id, clock, marker), data=event)
        self.outputs.insert(len(self.outputs) if position is None else position, record)

    def _publish_ticket_event(
        self,
        kind: TicketEventKind,
        at: datetime,
        actor: str | None,
        event_id: str,
        sender_role: str | None = None,
    ) -> None:
        state = self.state
        event = TicketEvent(
            ticket_id=state.ticket_id,
            kind=kind,
            at=at,
            queue=state.queue,
            actor=actor,
            sender_role=sender_role,
            priority=state.priority,
            sla_policy=state.policy,
        )
        self.outputs.append(TicketEventOut(id=event_id, data=event))

    def publish_replied(self, at: datetime, actor: str, role: str, event_id: str) -> None:
        self._publish_ticket_event(TicketEventKind.REPLIED, at, actor, event_id, role)

    def _publish_routed(self, at: datetime, event_id: str) -> None:
        state = self.state
        event = TicketEvent(
            ticket_id=state.ticket_id,
            kind=TicketEventKind.ROUTED,
            at=at,
            queue=state.queue,
            actor=LIFECYCLE_ACTOR,
            priority=state.priority,
            sla_policy=state.policy,
            ticket=state.ticket,
        )
        self.outputs.append(TicketEventOut(id=event_id, data=event))
