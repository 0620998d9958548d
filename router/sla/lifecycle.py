"""The ticket lifecycle + SLA state machine: (state, input, now) -> (new state, outputs).

Three entry points, one per input stream of the stage keyed by ticket id:

- `on_ticket_event` for `tickets.events` (opened, message_added, routed; it skips the kinds it
  emits itself: replied, resolved, reopened, and `routed` with actor LIFECYCLE_ACTOR);
- `on_action` for `tickets.actions`;
- `on_tick` for the timer, called for each ticket id the deadline index pops.

Each returns `Step(state, outputs)`. The input state is never mutated: when nothing changed,
`Step.state` is the input object itself (skip the table write). Store the new state and publish
the outputs together; re-index the ticket with `index_entry(state)`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from router.sla import clocks
from router.sla.escalation import advance
from router.sla.events import LIFECYCLE_ACTOR
from router.sla.instants import US_PER_SECOND, to_us
from router.sla.state import (
    RECENT_INPUTS_KEPT,
    ActionRejectedOut,
    LifecycleState,
    Step,
    TicketStatus,
)
from router.sla.terms import SlaConfig
from router.sla.transitions import Transition, VendorDirectory, vendor_of
from schemas.action import (
    ActorRole,
    ChangePriorityAction,
    InternalNoteAction,
    PendAction,
    ReassignAction,
    ReopenAction,
    ReplyAction,
    ResolveAction,
    TicketAction,
)
from schemas.sla import SlaMetric
from schemas.ticket import TicketEvent, TicketEventKind

# Enum members read per call, as Final constants: compiled, `SlaMetric.RESOLUTION` is an
# attribute lookup on the enum class each time (~140 ns); a Final constant is a C static.
_AGENT: Final = ActorRole.AGENT
_BUYER: Final = ActorRole.BUYER
_EV_RESOLVED: Final = TicketEventKind.RESOLVED
_FIRST_RESPONSE: Final = SlaMetric.FIRST_RESPONSE
_MESSAGE_ADDED: Final = TicketEventKind.MESSAGE_ADDED
_REOPENED: Final = TicketEventKind.REOPENED
_REPLIED: Final = TicketEventKind.REPLIED
_RESOLUTION: Final = SlaMetric.RESOLUTION
_ROUTED: Final = TicketEventKind.ROUTED
_VENDOR: Final = ActorRole.VENDOR

_OWN_KINDS: Final = frozenset(
    {_REPLIED, _EV_RESOLVED, _REOPENED}
)
_CUSTOMER_ROLES: Final = frozenset({"buyer", "guest"})
_BUYER_ACTIONS: Final = (ReplyAction, ReopenAction)
_VENDOR_ACTIONS: Final = (ReplyAction, InternalNoteAction, PendAction, ResolveAction)

__all__ = ["LIFECYCLE_ACTOR", "VendorDirectory", "on_action", "on_tick", "on_ticket_event"]


def on_ticket_event(
    state: LifecycleState | None,
    event: TicketEvent,
    *,
    event_id: str,
    now: datetime,
    config: SlaConfig,
    vendors: VendorDirectory | None = None,
) -> Step:
    """Apply one `tickets.events` record (`event_id`: its CloudEvents id)."""
    if event.kind in _OWN_KINDS or (
        event.kind is _ROUTED and event.actor == LIFECYCLE_ACTOR
    ):
        return Step(state, [])
    if state is not None and event_id in state.recent_inputs:
        return Step(state, [])
    snapshot = event.ticket
    run, at = _begin(
        state,
        event.ticket_id,
        event.at,
        event_id,
        now,
        config,
        vendors,
        opened_at=snapshot.opened_at if snapshot is not None else event.at,
    )
    if event.kind is _MESSAGE_ADDED:
        _on_message(run, event, at, event_id)
    else:  # opened may already name queue, priority and policy; routed always does
        _on_routed(run, event, at)
    return run.finish()


def on_action(
    state: LifecycleState | None,
    action: TicketAction,
    *,
    action_id: str,
    now: datetime,
    config: SlaConfig,
    vendors: VendorDirectory | None = None,
) -> Step:
    """Apply one `tickets.actions` command (`action_id`: its CloudEvents id)."""
    if state is not None and action_id in state.recent_inputs:
        return Step(state, [])
    refusal = _refusal(state, action)
    if refusal is not None:
        return Step(state, [ActionRejectedOut(action_id, action.ticket_id, refusal)])
    run, at = _begin(
        state,
        action.ticket_id,
        action.at,
        action_id,
        now,
        config,
        vendors,
        opened_at=action.at,
    )
    actor, role = action.actor.id, action.actor.role
    match action:
        case ReplyAction():
            if role is _BUYER:
                run.customer_message(at, actor, action_id)
            elif role in (_AGENT, _VENDOR):
                run.response(at, by_vendor=role is _VENDOR)
            run.publish(_REPLIED, at, actor, action_id, sender_role=role.value)
        case PendAction():
            run.pend(at)
        case ResolveAction():
            run.resolve(at, actor, action_id)
        case ReopenAction():
            run.reopen(at, actor, action_id)
        case ReassignAction() if action.queue != run.state.queue:
            policy = config.policy_for_queue(action.queue) or run.state.policy
            run.move(
                at,
                action.queue,
                policy,
                rule_id="action:reassign",
                reason=action.reason or f"reassigned by {actor}",
                cause=action_id,
            )
        case ChangePriorityAction() if action.priority is not run.state.priority:
            run.change_priority(at, action.priority, cause=action_id)
        case _:
            pass  # internal notes, and reassign / priority changes that change nothing
    return run.finish()


def on_tick(
    state: LifecycleState,
    now: datetime,
    *,
    config: SlaConfig,
    vendors: VendorDirectory | None = None,
    until: datetime | None = None,
) -> Step:
    """Fire what is due by `until` (default `now`); `fired_at` is `now`.

    Pass as `until` the event time the partition has been consumed up to while it still has
    lag (e.g. after recovery), so a reply waiting in the backlog is applied before the breach
    it prevents. A stale index entry (nothing due yet) changes nothing.
    """
    horizon = now if until is None else min(until, now)
    due = state.next_due_ts
    horizon_us = to_us(horizon)
    if due is None or due > horizon_us / US_PER_SECOND:  # == horizon.timestamp()
        return Step(state, [])
    now_us = horizon_us if horizon is now else None
    run = Transition(state.shell_copy(), config, now, vendors, now_us)
    if state.schedule_of != config.fingerprint:  # scheduled under another policy file:
        run.reschedule()  # its markers first (a shorter ladder has fewer rungs to fire)
    advance(run, horizon_us)
    return run.finish()


def new_state(ticket_id: str, opened_at: datetime, config: SlaConfig) -> LifecycleState:
    """A ticket just opened: first response and resolution run from `opened_at`."""
    policy = config.policy(None)
    state = LifecycleState(
        ticket_id=ticket_id,
        policy=policy.name,
        calendar=policy.calendar,
        opened_at=opened_at,
        clock_at_us=0,
    )
    state.clock_at = opened_at
    opened_us = to_us(opened_at)
    for metric in (_FIRST_RESPONSE, _RESOLUTION):
        state.clocks[metric] = clocks.start_clock(metric, opened_us)
    return state


def _begin(
    state: LifecycleState | None,
    ticket_id: str,
    at: datetime,
    input_id: str,
    now: datetime,
    config: SlaConfig,
    vendors: VendorDirectory | None,
    *,
    opened_at: datetime,
) -> tuple[Transition, datetime]:
    """Own a copy (or a new state), remember the input, fire what was due before it."""
    if state is None:
        state = new_state(ticket_id, min(opened_at, at), config)
    else:
        state = state.shell_copy()
    state.recent_inputs = [*state.recent_inputs, input_id][-RECENT_INPUTS_KEPT:]
    run = Transition(state, config, now, vendors)
    run.reschedule()  # no-op unless new, or scheduled under another policy file
    at = max(at, state.clock_at)  # out-of-order input: never move business time backwards
    advance(run, to_us(at))
    state.clock_at = max(at, state.clock_at)
    return run, state.clock_at


def _on_message(run: Transition, event: TicketEvent, at: datetime, event_id: str) -> None:
    role = event.sender_role
    if run.state.requester_role is None:  # the first sender opened the ticket
        run.state.requester_role = role
    if event.message_seq == 1 and run.state.status is TicketStatus.RESOLVED:
        # the message that opened the ticket, read after a resolve that waited for the ticket
        # (parked): it was written before the resolution, so it reopens nothing
        return
    if role in _CUSTOMER_ROLES or role == run.state.requester_role:
        run.customer_message(at, event.actor, event_id)
    elif role == "seller":  # the vendor answering by email in the buyer's thread
        run.response(at, by_vendor=True)


def _on_routed(run: Transition, event: TicketEvent, at: datetime) -> None:
    state, snapshot = run.state, event.ticket
    if snapshot is not None:
        state.ticket = snapshot
    queue = event.queue or (snapshot.queue if snapshot is not None else state.queue)
    priority = event.priority or (snapshot.priority if snapshot is not None else state.priority)
    policy = event.sla_policy or (snapshot.sla.policy if snapshot is not None else state.policy)
    if state.queue_pinned:  # an agent or an escalation moved it; routing does not move it back
        queue, policy = state.queue, state.policy
    if state.priority_pinned:
        priority = state.priority
    policy = run.config.policy(policy).name
    if (queue, policy, priority) != (state.queue, state.policy, state.priority):
        run.retarget(at, queue=queue, policy=policy, priority=priority)


def _refusal(state: LifecycleState | None, action: TicketAction) -> str | None:
    role = action.actor.role
    if role is _BUYER and not isinstance(action, _BUYER_ACTIONS):
        return f"a buyer may not {action.action}"
    if role is _VENDOR:
        if not isinstance(action, _VENDOR_ACTIONS):
            return f"a vendor may not {action.action}"
        queue = state.queue if state is not None else None
        if vendor_of(queue) != action.actor.id:
            return f"ticket is not in the queue of vendor {action.actor.id!r}"
    return None
