"""Buyer history kept by the engine: per-ticket forwarding, per-buyer folding, merging into
the facts the rules see (the Kafka side has an integration test in test_buyers_stage.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from router.buyers import (
    MAX_TRACKED,
    RECENT_SECONDS,
    BuyerChange,
    BuyerTickets,
    Change,
    apply_change,
    merge_history,
    ticket_change,
)
from router.inbound import parse_inbound
from router.outputs import render
from router.routing import BuyerHistory, Decision, RoutingContext
from router.tickets import Threaded, thread_message
from schemas import InboundEvent, SourcePosition
from schemas.ticket import Priority
from tests.factories import inbound_bytes

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
T0 = NOW.timestamp()


def change(ticket: str, kind: Change, at: float = T0, buyer: str = "b-1") -> BuyerChange:
    return BuyerChange(buyer, ticket, kind, at)


def fold(*changes: BuyerChange) -> BuyerTickets:
    state = None
    for c in changes:
        state = apply_change(state, c)
    assert state is not None
    return state


def test_ticket_events_become_changes_of_the_tickets_buyer() -> None:
    buyer, opened = ticket_change(None, "T-1", "opened", T0, sender_role="buyer", actor="b-1")
    assert (buyer, opened) == ("b-1", change("T-1", Change.OPENED))
    # later events name the agent who acted, not the buyer: the remembered buyer counts
    assert ticket_change("b-1", "T-1", "resolved", T0 + 5, sender_role=None, actor="agent-7") == (
        "b-1", change("T-1", Change.RESOLVED, T0 + 5))  # fmt: skip
    assert ticket_change("b-1", "T-1", "message_added", T0, sender_role="buyer", actor="b-1") == (
        "b-1", None)  # fmt: skip
    # sellers and guests opening tickets are not buyer history; unknown tickets are skipped
    by_seller = ticket_change(None, "T-2", "opened", T0, sender_role="seller", actor="s-1")
    assert by_seller == (None, None)
    assert ticket_change(None, "T-3", "resolved", T0, sender_role=None, actor="a") == (None, None)


def test_open_and_recent_counts_with_resolve_and_reopen() -> None:
    state = fold(
        change("T-1", Change.OPENED),
        change("T-2", Change.OPENED, T0 + 60),
        change("T-1", Change.RESOLVED, T0 + 120),
    )
    assert state.history(T0 + 200) == BuyerHistory(open_tickets=1, recent_tickets=2)
    reopened = apply_change(state, change("T-1", Change.REOPENED, T0 + 300))
    assert reopened.history(T0 + 300).open_tickets == 2
    assert reopened.history(T0 + 300).recent_tickets == 2  # reopening is not a new ticket
    # 30 days after the first opened, only the second is recent; both stay open
    later = T0 + RECENT_SECONDS + 30
    assert reopened.history(later) == BuyerHistory(open_tickets=2, recent_tickets=1)


def test_replayed_changes_do_not_double_count() -> None:
    once = fold(change("T-1", Change.OPENED), change("T-2", Change.OPENED, T0 + 1))
    twice = fold(
        change("T-1", Change.OPENED), change("T-1", Change.OPENED),
        change("T-2", Change.OPENED, T0 + 1), change("T-2", Change.OPENED, T0 + 1),
    )  # fmt: skip
    assert once == twice
    assert BuyerTickets.from_bytes(once.to_bytes()) == once
    reopened = change("T-9", Change.REOPENED)
    assert BuyerChange.from_bytes(reopened.to_bytes()) == reopened


def test_counts_saturate_at_the_cap_and_old_entries_leave_the_window() -> None:
    state = fold(*(change(f"T-{n}", Change.OPENED, T0 + n) for n in range(MAX_TRACKED + 25)))
    assert state.history(T0 + 1000) == BuyerHistory(
        open_tickets=MAX_TRACKED, recent_tickets=MAX_TRACKED
    )
    assert "T-0" not in state.open  # the newest are kept
    assert f"T-{MAX_TRACKED + 24}" in state.open
    resolved = fold(change("T-1", Change.OPENED), change("T-1", Change.RESOLVED, T0 + 1))
    assert not resolved.empty  # still recent
    aged = apply_change(resolved, change("T-5", Change.RESOLVED, T0 + RECENT_SECONDS + 2))
    assert aged.empty  # nothing open, nothing recent: the stage deletes the record


def test_merge_keeps_vouched_facts_and_engine_counts() -> None:
    vouched = BuyerHistory(vip=True, lifetime_orders=12)
    kept = BuyerHistory(open_tickets=3, recent_tickets=5)
    assert merge_history(vouched, kept) == BuyerHistory(3, 5, 12, True)
    assert merge_history(None, kept) == kept
    assert merge_history(vouched, None) == vouched
    assert merge_history(None, None) is None


class Recording:
    name, version, departments = "recording", "1", ()

    def __init__(self) -> None:
        self.seen: list[RoutingContext] = []

    def decide(self, ctx: RoutingContext) -> Decision:
        self.seen.append(ctx)
        return Decision(queue="dept:general", priority=Priority.NORMAL, sla_policy="standard",
                        rule_id="r", ruleset="recording", ruleset_version="1")  # fmt: skip


@pytest.mark.parametrize(
    ("role", "attributes", "expected"),
    [
        ("buyer", {"vip": True}, BuyerHistory(open_tickets=2, recent_tickets=4, vip=True)),
        ("buyer", {}, BuyerHistory(open_tickets=2, recent_tickets=4)),
        ("seller", {}, None),  # no buyer history for sellers writing in
    ],
)
def test_routing_sees_the_buyers_kept_history(
    role: str, attributes: dict[str, Any], expected: BuyerHistory | None
) -> None:
    asked: list[tuple[str, datetime]] = []

    def lookup(buyer_id: str, now: datetime) -> BuyerHistory:
        asked.append((buyer_id, now))
        return BuyerHistory(open_tickets=2, recent_tickets=4)

    source = SourcePosition(topic="channel.email", partition=0, offset=1)
    raw = inbound_bytes("e-1", role=role, sender_id="b-77", attributes=attributes)
    parsed = parse_inbound(raw, b"thread-1", source, NOW)
    assert isinstance(parsed, InboundEvent)
    policy = Recording()
    result = thread_message(parsed, b"thread-1", source, None, policy, NOW, None, lookup)
    assert isinstance(result, Threaded)
    assert policy.seen[0].buyer == expected
    assert asked == ([("b-77", NOW)] if role == "buyer" else [])
    # the opened event names the opener, which is what the buyer stage counts from
    [opened] = [r for r in render(result, "e-1", NOW) if b'"support.ticket.opened"' in r.value]
    data = orjson.loads(opened.value)["data"]
    assert (data["actor"], data["sender_role"]) == ("b-77", role)


@pytest.mark.parametrize(
    "attributes",
    [{}, {"vip": True}, {"vip": "yes"}, {"lifetime_orders": 7}, {"lifetime_orders": -1},
     {"lifetime_orders": True}, {"vip": False, "lifetime_orders": 0}, {"total": 12.5}],
)
@pytest.mark.parametrize("role", ["buyer", "seller"])
def test_tools_read_message_facts_exactly_as_the_engine(
    attributes: dict[str, Any], role: str
) -> None:
    """`router rules explain|test` and `router simulate` must decide as the worker does."""
    from router.tickets import _order, buyer_from_attributes
    from rules.inputs import message_order, vouched_buyer
    from schemas.message import InboundMessage

    raw = orjson.loads(inbound_bytes("e-1", role=role, attributes=attributes, order_id="o-1"))
    msg = InboundMessage.model_validate(raw["data"])
    engine, tools = buyer_from_attributes(msg), vouched_buyer(msg)
    assert (engine is None) == (tools is None)
    if engine is not None and tools is not None:
        assert (engine.vip, engine.lifetime_orders) == (tools.vip, tools.lifetime_orders)
    assert _order(msg) == message_order(msg)
