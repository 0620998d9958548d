"""The ticket index's processor on a dict table: buyer changes and re-route notices."""

from __future__ import annotations

import orjson

from router.clock import FakeClock
from router.reroutes import RerouteNotice
from router.stages.contract import InRecord
from router.stages.ticket_index import TicketIndexProcessor
from schemas.topics import BUYERS_CHANGES, TICKETS_EVENTS, TICKETS_REROUTES

NOW = FakeClock().now()


def event(kind: str, offset: int, **data: object) -> InRecord:
    doc = {"type": f"support.ticket.{kind}", "id": f"ev-{offset}",
           "data": {"ticket_id": "T-1", "kind": kind, "at": "2026-11-26T10:00:00+00:00", **data}}
    return InRecord(TICKETS_EVENTS.name, 0, offset, b"T-1", orjson.dumps(doc))


def test_opened_by_a_buyer_then_moved_by_the_lifecycle() -> None:
    stage = TicketIndexProcessor({})
    opened = stage.process(event("opened", 0, channel="email", thread_ref="th-1",
                                 queue="vendor:acme", actor="b-1", sender_role="buyer"), NOW)
    assert [(r.topic, r.key) for r in opened] == [(BUYERS_CHANGES.name, b"b-1")]
    assert stage.process(event("message_added", 1), NOW) == []  # skipped on a byte test
    assert stage.process(event("routed", 2, queue="vendor:acme", priority="normal"), NOW) == []
    (notice,) = stage.process(
        event("routed", 3, queue="dept:disputes", priority="high", actor="lifecycle"), NOW
    )
    assert (notice.topic, notice.key) == (TICKETS_REROUTES.name, b"th-1")
    assert RerouteNotice.from_bytes(notice.value).queue == "dept:disputes"
    # the same move read again (a replay) announces nothing new
    again = event("routed", 3, queue="dept:disputes", priority="high", actor="lifecycle")
    assert stage.process(again, NOW) == []
    assert [n.event for n in stage.notes] == ["ticket_moved"]


def test_events_of_unknown_tickets_and_foreign_bytes_change_nothing() -> None:
    table: dict[bytes, bytes] = {}
    stage = TicketIndexProcessor(table)
    assert stage.process(event("resolved", 0), NOW) == []
    junk = InRecord(TICKETS_EVENTS.name, 0, 1, b"T-1", b'"support.ticket.opened" but not json')
    assert stage.process(junk, NOW) == []
    assert table == {}
