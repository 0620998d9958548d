"""State transitions of one ticket: clock moves and routing changes.

A `Transition` owns a private copy of a ticket's state for the length of one lifecycle call
and collects the records to publish. Business-time effects use event time (`at`); only
`fired_at` and `late` depend on the processing clock (`now`). Methods take datetimes (outputs
carry them as given); clocks work on epoch microseconds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Protocol

from router.sla import clocks
from router.sla.calendar import Calendar
from router.sla.clocks import ClockStatus, MetricClock
from router.sla.events import (
    METRIC_NAMES,
    context_of,
    is_late,
    output_id,
    sla_event_id,
    sla_event_out,
    ticket_event_out,
)
from router.sla.instants import US_PER_SECOND, round_even, split_moment, to_us
from router.sla.snapshot import TermsUpdate
from router.sla.state import LifecycleState, Output, RerouteOut, Step
from router.sla.state import TicketStatus as Status
from router.sla.terms import MetricTerms, SlaConfig, SlaPolicy
from schemas.sla import SlaMetric
from schemas.ticket import Priority, TicketEventKind
from schemas.vendor import VendorProfile

# Enum members read per call, as Final constants: compiled, `SlaMetric.RESOLUTION` is an
# attribute lookup on the enum class each time (~140 ns); a Final constant is a C static.
_EV_RESOLVED: Final = TicketEventKind.RESOLVED
_FIRST_RESPONSE: Final = SlaMetric.FIRST_RESPONSE
_NEXT_RESPONSE: Final = SlaMetric.NEXT_RESPONSE
_OPEN: Final = Status.OPEN
_PENDING: Final = Status.PENDING
_REOPENED: Final = TicketEventKind.REOPENED
_RESOLUTION: Final = SlaMetric.RESOLUTION
_RESOLVED: Final = Status.RESOLVED
_ROUTED: Final = TicketEventKind.ROUTED
_RUNNING: Final = ClockStatus.RUNNING
_STOPPED: Final = ClockStatus.STOPPED
_VENDOR_RESPONSE: Final = SlaMetric.VENDOR_RESPONSE


class VendorDirectory(Protocol):
    """The vendor profiles (a dict, or the stream layer's global table)."""

    def get(self, vendor_id: str, /) -> VendorProfile | None: ...


_UNSET: Final[MetricTerms | None] = MetricTerms(0.0, 0.0, ())  # "not looked up yet" in Transition


# `Transition.due_us` when no clock has a next firing: after any datetime (year 9999 is
# ~2.5e17 us), and small enough to stay a native int when compiled.
NOTHING_DUE: Final = 1 << 61


def vendor_of(queue: str | None) -> str | None:
    if queue is not None and queue.startswith("vendor:"):
        return queue.removeprefix("vendor:")
    return None


class Transition:
    """Owns `state` (a shell copy, see LifecycleState.shell_copy) for one lifecycle call."""

    __slots__ = (
        "_calendar", "_dirty", "_owned", "_policy", "_terms", "_vendor_terms",
        "config", "due_us", "now", "now_us", "outputs", "state", "synced", "vendors",
    )

    def __init__(
        self,
        state: LifecycleState,
        config: SlaConfig,
        now: datetime,
        vendors: VendorDirectory | None,
        now_us: int | None = None,
    ) -> None:
        self.state = state
        self.config = config
        self.now = now
        self.now_us = to_us(now) if now_us is None else now_us
        self.vendors = vendors
        self.outputs: list[Output] = []
        # Clocks whose schedule must be recomputed; all of them under a different policy file.
        stale = state.schedule_of != config.fingerprint
        # None while nothing is: most firings reschedule no clock, so no set is built for them.
        self._dirty: set[SlaMetric] | None = set(state.clocks) if stale else None
        self._owned: set[SlaMetric] = set()  # clocks already copied for this call
        # Looked up once per call; dropped by `_forget_terms` when policy, priority or calendar
        # change (only `retarget` and `change_priority` change them).
        self._policy: SlaPolicy | None = None
        self._calendar: Calendar | None = None
        # The config's own cache for this (policy, priority): never cleared here, only let go.
        self._terms: dict[SlaMetric, MetricTerms | None] | None = None
        self._vendor_terms: MetricTerms | None = None  # with the vendor's response target
        # True while `due_us` (the earliest next firing) and every schedule are current: set
        # by `reschedule`, cleared whenever a clock is taken for writing.
        self.synced = False
        self.due_us = NOTHING_DUE  # a plain int: compiled, no boxing per reschedule

    # -- terms -------------------------------------------------------------------------------

    @property
    def policy(self) -> SlaPolicy:
        policy = self._policy
        if policy is None:
            policy = self._policy = self.config.policy(self.state.policy)
        return policy

    def calendar(self) -> Calendar:
        calendar = self._calendar
        if calendar is None:
            # config.calendar(name, fallback=policy's) without the policy lookup when it is known
            calendar = self.config.calendars.get(self.state.calendar)
            if calendar is None:
                calendar = self.config.calendars[self.policy.calendar]
            self._calendar = calendar
        return calendar

    def terms(self, metric: SlaMetric) -> MetricTerms | None:
        state = self.state
        by_metric = self._terms
        if by_metric is None:
            by_metric = self._terms = self.config.terms_of(state.policy, state.priority)
        terms = by_metric.get(metric, _UNSET)
        if terms is _UNSET:
            terms = self.config.terms(state.policy, metric, state.priority)
        override = state.vendor_response_target
        if terms is not None and metric is _VENDOR_RESPONSE and override is not None:
            vendor = self._vendor_terms
            if vendor is None:
                vendor = MetricTerms(override, terms.warning_fraction, terms.ladder)
                self._vendor_terms = vendor
            return vendor
        return terms

    def _forget_terms(self) -> None:
        self._policy = None
        self._calendar = None
        self._terms = None
        self._vendor_terms = None

    def writable(self, metric: SlaMetric) -> MetricClock | None:
        """The clock of `metric`, copied on first write so the caller's state stays intact."""
        self.synced = False
        clock = self.state.clocks.get(metric)
        if clock is not None and metric not in self._owned:
            clock = self.state.clocks[metric] = clock.copy_for_update()
            self._owned.add(metric)
        return clock

    def own(self, metric: SlaMetric) -> MetricClock:
        """A clock about to change: writable, and rescheduled at the next `reschedule`."""
        clock = self.writable(metric)
        if clock is None:
            raise KeyError(metric)
        self._mark(metric)
        return clock

    def _mark(self, metric: SlaMetric) -> None:
        dirty = self._dirty
        if dirty is None:
            self._dirty = {metric}
        else:
            dirty.add(metric)

    def terms_changed(self) -> None:
        """Terms changed for every clock (priority, policy or calendar)."""
        dirty = self._dirty
        if dirty is None:
            self._dirty = set(self.state.clocks)
        else:
            dirty.update(self.state.clocks)

    def reschedule(self) -> None:
        """Recompute changed clocks (calendar arithmetic is the costly part) and the next due."""
        state = self.state
        dirty = self._dirty
        if dirty:
            self._dirty = None
            calendar = self.calendar()
            for metric in dirty:
                clock = self.writable(metric)
                if clock is not None:
                    clocks.reschedule(clock, self.terms(metric), calendar)
        elif self.synced:
            return
        state.schedule_of = self.config.fingerprint
        due = NOTHING_DUE
        for clock in state.clocks.values():
            at = clock.next_at_us
            if at is not None and at < due:
                due = at
        # us / 10**6: the same float as datetime.timestamp() of that instant
        state.next_due_ts = None if due == NOTHING_DUE else due / US_PER_SECOND
        self.due_us = due
        self.synced = True

    def finish(self) -> Step:
        self.reschedule()
        return Step(self.state, self.outputs)

    # -- clock moves -------------------------------------------------------------------------

    def start_cycle(self, metric: SlaMetric, at: datetime) -> None:
        """Start `metric` unless it is already running; a restart opens a new cycle."""
        existing = self.state.clocks.get(metric)
        if existing is not None and existing.status is _RUNNING:
            return
        cycle = existing.cycle + 1 if existing is not None else 0
        self.state.clocks[metric] = clocks.start_clock(metric, to_us(at), cycle)
        self.synced = False
        self._owned.add(metric)
        self._mark(metric)

    def stop(self, metric: SlaMetric, at: datetime) -> None:
        clock = self.state.clocks.get(metric)
        if clock is not None and clock.status is not _STOPPED:
            clocks.stop(self.own(metric), to_us(at), self.calendar())

    def resume(self, metric: SlaMetric, at: datetime) -> None:
        clock = self.state.clocks.get(metric)
        if clock is not None and clock.status is not _RUNNING:
            clocks.resume(self.own(metric), to_us(at))

    def satisfy(self, metric: SlaMetric, at: datetime) -> None:
        """Stop `metric` because its obligation was fulfilled; publish `met` if in time."""
        existing = self.state.clocks.get(metric)
        if existing is None or existing.status is _STOPPED:
            return
        clock = self.own(metric)
        calendar = self.calendar()
        at_us = to_us(at)
        spent = clocks.elapsed(clock, at_us, calendar)
        clocks.stop(clock, at_us, calendar)
        terms = self.terms(metric)
        if terms is None or clocks.is_breached(clock) or clocks.MET in clock.fired:
            return
        if spent > terms.target_seconds:
            return  # late, and its breach is due now: advance() already fired it
        clock.fired += (clocks.MET,)
        left_us = round_even((terms.target_seconds - spent) * US_PER_SECOND)
        deadline_us = calendar.add_us(at_us, left_us)
        late = is_late(self.now_us, at_us, self.config.late_grace_seconds)
        due_us, due_tz = split_moment(at)
        ticket_id = self.state.ticket_id
        event_id = sla_event_id(ticket_id, clock, clocks.MET)
        self.outputs.append(
            sla_event_out(
                event_id, ticket_id, clock, clocks.MET, context_of(self.state), deadline_us,
                due_us, due_tz, self.now, spent, "none", late,
            )
        )

    def customer_message(self, at: datetime, actor: str | None, cause: str) -> None:
        state = self.state
        if state.status is _RESOLVED:
            self.reopen(at, actor, cause)
        elif state.status is _PENDING:
            state.status = _OPEN
            self.resume(_RESOLUTION, at)
        if state.responded:
            self.start_cycle(_NEXT_RESPONSE, at)
        if vendor_of(state.queue) is not None:
            self.start_cycle(_VENDOR_RESPONSE, at)

    def response(self, at: datetime, *, by_vendor: bool) -> None:
        self.state.responded = True
        self.satisfy(_FIRST_RESPONSE, at)
        self.satisfy(_NEXT_RESPONSE, at)
        if by_vendor:
            self.satisfy(_VENDOR_RESPONSE, at)

    def pend(self, at: datetime) -> None:
        if self.state.status is _OPEN:
            self.state.status = _PENDING
            if _RESOLUTION in self.state.clocks:
                clocks.pause(self.own(_RESOLUTION), to_us(at), self.calendar())

    def resolve(self, at: datetime, actor: str | None, cause: str) -> None:
        if self.state.status is _RESOLVED:
            return
        self.satisfy(_RESOLUTION, at)
        for metric in self.state.clocks:
            self.stop(metric, at)
        self.state.status = _RESOLVED
        self.publish(_EV_RESOLVED, at, actor, cause)

    def reopen(self, at: datetime, actor: str | None, cause: str) -> None:
        state = self.state
        was_resolved = state.status is _RESOLVED
        if state.status is _OPEN:
            return
        state.status = _OPEN
        self.resume(_RESOLUTION, at)
        if was_resolved and not state.responded:
            self.resume(_FIRST_RESPONSE, at)
        if was_resolved:
            self.publish(_REOPENED, at, actor, cause)

    # -- routing changes ---------------------------------------------------------------------

    def retarget(self, at: datetime, *, queue: str | None, policy: str, priority: Priority) -> None:
        """Switch queue, policy and priority; time so far stays banked in the old calendar."""
        state = self.state
        old_calendar = self.calendar()
        at_us = to_us(at)
        for metric in list(state.clocks):
            clocks.bank(self.own(metric), at_us, old_calendar)
        old_vendor, new_vendor = vendor_of(state.queue), vendor_of(queue)
        state.queue, state.priority = queue, priority
        state.policy = self.config.policy(policy).name
        self._forget_terms()
        state.calendar, state.vendor_response_target = self._calendar_for(new_vendor)
        self._forget_terms()
        if old_vendor != new_vendor:
            if old_vendor is not None:
                self.stop(_VENDOR_RESPONSE, at)
            if new_vendor is not None and state.status is _OPEN:
                self.start_cycle(_VENDOR_RESPONSE, at)

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
        self._terms = None  # policy and calendar do not depend on the priority
        self._vendor_terms = None
        self.terms_changed()
        self.reschedule()
        if state.snapshot is not None:
            state.snapshot = state.snapshot.updated(priority=priority, sla=self.sla_terms())
        self.publish(_ROUTED, at, None, cause, what="priority")

    def move(
        self, at: datetime, queue: str, policy: str, *, rule_id: str, reason: str, cause: str
    ) -> None:
        """Put the ticket on another queue and publish it there with its history."""
        state = self.state
        previous = state.queue
        self.retarget(at, queue=queue, policy=policy, priority=state.priority)
        state.queue_pinned = True
        state.reroutes += 1
        self.reschedule()
        if state.snapshot is not None:
            state.snapshot = state.snapshot.updated(
                priority=state.priority, sla=self.sla_terms(), queue=queue, rule_id=rule_id
            )
        self.publish(_ROUTED, at, None, cause)
        self.outputs.append(
            RerouteOut(
                id=output_id(state.ticket_id, cause, "reroute"),
                ticket_id=state.ticket_id,
                queue=queue,
                previous_queue=previous,
                rule_id=rule_id,
                reason=reason,
                at=at,
                snapshot=state.snapshot,
            )
        )

    def sla_terms(self) -> TermsUpdate:
        deadlines = tuple([
            (METRIC_NAMES[metric], clock.deadline_us)  # plain str: see TermsUpdate
            for metric, clock in self.state.clocks.items()
            if clock.deadline_us is not None
        ])
        return (self.state.policy, deadlines)

    def publish(
        self,
        kind: TicketEventKind,
        at: datetime,
        actor: str | None,
        cause: str,
        *,
        sender_role: str | None = None,
        what: str | None = None,
    ) -> None:
        """Publish a ticket event caused by input or firing `cause` (`what` names it in the id)."""
        # str(kind): the StrEnum's value, without the slow `.value` lookup
        event_id = output_id(self.state.ticket_id, cause, what or str(kind))
        out = ticket_event_out(
            self.state, kind, at, event_id=event_id, actor=actor, sender_role=sender_role
        )
        self.outputs.append(out)
