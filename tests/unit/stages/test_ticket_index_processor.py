"""The ticket index's processor on a dict table: buyer changes and re-route notices."""

from __future__ import annotations

import orjson

from router.buyers import BuyerTickets
from router.clock import FakeClock
from router.records import OutRecord
from router.reroutes import RerouteNotice, TicketIndexEntry
from router.stages.contract import Combined, InRecord, Note
from router.stages.ticket_index import BuyerHistoryProcessor, TicketIndexProcessor
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


def test_combined_gives_each_processor_its_topics_and_collects_their_notes() -> None:
    index = TicketIndexProcessor({})
    seen: list[str] = []

    class Everything:
        notes: list[Note] = []

        def process(self, record: InRecord, now: object) -> list[OutRecord]:
            seen.append(record.topic)
            self.notes.append(Note("info", "seen", {}))
            return []

    both = Combined((Everything(), None), (index, frozenset({TICKETS_EVENTS.name})))
    opened = event("opened", 0, channel="email", thread_ref="th-1", queue="vendor:acme",
                   actor="b-1", sender_role="buyer")  # fmt: skip
    assert [r.topic for r in both.process(opened, NOW)] == [BUYERS_CHANGES.name]
    other = InRecord("tickets.commands", 0, 0, b"T-1", b"{}")
    assert both.process(other, NOW) == []
    assert seen == [TICKETS_EVENTS.name, "tickets.commands"]
    assert [n.event for n in both.notes] == ["seen", "seen"]


def test_buyer_history_folds_changes_and_forgets_a_buyer_with_nothing_left() -> None:
    table: dict[bytes, bytes] = {}
    index = TicketIndexProcessor({})
    history = BuyerHistoryProcessor(table)
    (change,) = index.process(event("opened", 0, channel="email", thread_ref="th-1",
                                    queue="vendor:acme", actor="b-1", sender_role="buyer"), NOW)
    as_record = InRecord(BUYERS_CHANGES.name, 0, 0, change.key, change.value)
    assert history.process(as_record, NOW) == []
    assert BuyerTickets.from_bytes(table[b"b-1"]).open
    history.process(as_record, NOW)  # a replay changes nothing
    assert len(table) == 1
    junk = InRecord(BUYERS_CHANGES.name, 0, 1, b"b-2", b"[not a change")
    assert history.process(junk, NOW) == []
    assert [n.event for n in history.notes] == ["buyer_change_invalid"]


def test_thread_of_reads_the_channel_and_thread_the_ticket_opened_on() -> None:
    from router.stages.ticket_index import thread_of

    table = {b"T-1": TicketIndexEntry("chat", "whatsapp:1:2", "dept:general", None, None)
             .to_bytes()}  # fmt: skip
    entry = thread_of(table, "T-1")
    assert entry is not None
    assert (entry.channel, entry.thread_ref, entry.reply_to) == ("chat", "whatsapp:1:2", None)
    assert thread_of(table, "T-2") is None


def test_the_index_follows_the_customer_s_latest_comment_on_a_social_ticket() -> None:
    table: dict[bytes, bytes] = {}
    index = TicketIndexProcessor(table)
    now = FakeClock().now()
    thread = "facebook:p1:post:1_2:user:7"
    index.process(event("opened", 1, channel="social", queue="dept:social", thread_ref=thread,
                        actor="u-7", sender_role="guest"), now)  # fmt: skip
    for offset, (message_id, role) in enumerate(
        (("1_3", "guest"), ("1_4", "agent"), ("1_5", "buyer")), start=2
    ):
        index.process(event("message_added", offset, channel="social", message_id=message_id,
                            sender_role=role), now)  # fmt: skip
    entry = TicketIndexEntry.from_bytes(table[b"T-1"])
    assert (entry.thread_ref, entry.reply_to) == (thread, "1_5")  # the desk's own skipped
    # an index entry written before the field existed still reads
    old = orjson.dumps(["chat", "whatsapp:1:2", "dept:general", None, None])
    assert TicketIndexEntry.from_bytes(old).reply_to is None


def test_on_email_the_index_keeps_who_opened_and_the_customer_s_latest_mail() -> None:
    table: dict[bytes, bytes] = {}
    index = TicketIndexProcessor(table)
    now = FakeClock().now()
    index.process(event("opened", 1, channel="email", queue="dept:general", thread_ref="email:t1",
                        actor="email:ana@buyer.example", sender_role="guest"), now)  # fmt: skip
    entry = TicketIndexEntry.from_bytes(table[b"T-1"])
    assert (entry.customer, entry.reply_to, entry.buyer) == ("email:ana@buyer.example", None, None)
    assert TicketIndexEntry.from_bytes(entry.to_bytes()) == entry
    for offset, (message_id, role) in enumerate(
        (("a1@buyer.example", "guest"), ("desk-1@shop.example", "agent"),
         ("a2@buyer.example", "guest")), start=2,
    ):  # fmt: skip
        index.process(event("message_added", offset, channel="email", message_id=message_id,
                            sender_role=role), now)  # fmt: skip
    entry = TicketIndexEntry.from_bytes(table[b"T-1"])
    assert (entry.customer, entry.reply_to) == ("email:ana@buyer.example", "a2@buyer.example")
