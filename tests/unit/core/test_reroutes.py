"""Routing follows lifecycle moves: the pure steps (the Kafka side is tested in
tests/integration/test_reroutes.py)."""

from __future__ import annotations

from router.reroutes import (
    LIFECYCLE_ACTOR,
    RerouteNotice,
    TicketIndexEntry,
    apply_reroute,
    lifecycle_reroute,
)
from router.sla.events import LIFECYCLE_ACTOR as SLA_LIFECYCLE_ACTOR
from schemas.ticket import Priority
from tests.unit.core.test_tickets import opened

ENTRY = TicketIndexEntry("email", "thread-1", "vendor:acme", "normal", "buyer-1")


def test_only_lifecycle_moves_that_change_something_become_notices() -> None:
    assert LIFECYCLE_ACTOR == SLA_LIFECYCLE_ACTOR  # the SLA core's name for itself
    moved, notice = lifecycle_reroute(
        ENTRY, "T-1", actor="lifecycle", queue="dept:disputes", priority="high"
    )
    assert notice == RerouteNotice("T-1", "email", "thread-1", "dept:disputes", "high")
    assert moved == TicketIndexEntry("email", "thread-1", "dept:disputes", "high", "buyer-1")
    # the same move again (a replay), the routing stage's own event, an unknown ticket
    assert lifecycle_reroute(moved, "T-1", actor="lifecycle", queue="dept:disputes",
                             priority="high") == (moved, None)  # fmt: skip
    assert lifecycle_reroute(ENTRY, "T-1", actor=None, queue="dept:x", priority="low") == (
        ENTRY, None)  # fmt: skip
    assert lifecycle_reroute(None, "T-1", actor="lifecycle", queue="dept:x", priority=None) == (
        None, None)  # fmt: skip
    # a priority raise alone still travels (follow-ups carry the ticket's priority)
    _, raised = lifecycle_reroute(ENTRY, "T-1", actor="lifecycle", queue="vendor:acme",
                                  priority="urgent")  # fmt: skip
    assert raised is not None
    assert (raised.queue, raised.priority) == ("vendor:acme", "urgent")
    assert RerouteNotice.from_bytes(raised.to_bytes()) == raised
    assert TicketIndexEntry.from_bytes(ENTRY.to_bytes()) == ENTRY


def test_the_thread_state_takes_the_new_queue_and_priority() -> None:
    state = opened().state
    notice = RerouteNotice(state.ticket_id, "email", state.thread_ref, "dept:disputes", "urgent")
    moved = apply_reroute(state, notice)
    assert moved is not None
    assert (moved.queue, moved.priority) == ("dept:disputes", Priority.URGENT)
    assert moved.messages == state.messages  # the history goes along
    assert apply_reroute(moved, notice) is None  # already there
    other = RerouteNotice("T-other", "email", state.thread_ref, "dept:disputes", None)
    assert apply_reroute(state, other) is None  # another ticket on this thread: untouched
    assert apply_reroute(None, notice) is None
    odd = RerouteNotice(state.ticket_id, "email", state.thread_ref, "dept:x", "sky-high")
    kept = apply_reroute(state, odd)
    assert kept is not None
    assert kept.priority == state.priority  # an unknown priority does not break the move
