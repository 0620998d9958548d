"""Routing follows the lifecycle: a ticket moved by escalation or reassignment keeps its new
queue (and priority) for the buyer's follow-ups.

The routing stage decides a ticket's queue once, when it opens, and publishes follow-ups to
the queue in its ticket state. The lifecycle stage may later move the ticket (a vendor gone
silent -> the platform's disputes desk; an agent's `reassign`; a breach raising priority)
and says so with a `routed` event (actor `lifecycle`) on `tickets.events`, keyed by ticket
id. The routing state is keyed by thread on the channel topics' partitions, so the news
travels in two pure steps (`router/stages/ticket_index.py`, run on the lifecycle stage's stream):

1. Per ticket: `TicketIndexEntry` remembers what the routing stage announced when the
   ticket opened (thread, channel, queue, buyer); `lifecycle_reroute` turns a lifecycle
   `routed` event that changes queue or priority into a `RerouteNotice`, sent keyed by the
   thread reference to `tickets.reroutes` (co-partitioned with the channel topics).
2. Per thread: the inbound agent applies the notice to its ticket state (`apply_reroute`),
   so the next follow-up goes to the new queue, with the ticket's whole history.

A follow-up processed before the notice arrives still goes to the old queue (the window is
the time between the lifecycle's event and the notice, typically milliseconds).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import orjson

from router.tickets import TicketState
from schemas.ticket import Priority

LIFECYCLE_ACTOR = "lifecycle"  # router.sla.events.LIFECYCLE_ACTOR, without importing the SLA core


@dataclass(frozen=True, slots=True)
class TicketIndexEntry:
    """What the routing stage said about a ticket when it opened, plus its latest queue and,
    on the social and email channels, the customer's latest message (the comment or mail a
    reply answers); on email, also the customer who opened it (`email:<address>`, where
    replies go)."""

    channel: str
    thread_ref: str
    queue: str | None
    priority: str | None
    buyer: str | None
    reply_to: str | None = None
    customer: str | None = None

    def to_bytes(self) -> bytes:
        fields = [self.channel, self.thread_ref, self.queue, self.priority, self.buyer]
        if self.customer is not None:
            return orjson.dumps([*fields, self.reply_to, self.customer])
        return orjson.dumps(fields if self.reply_to is None else [*fields, self.reply_to])

    @classmethod
    def from_bytes(cls, raw: bytes) -> TicketIndexEntry:
        channel, thread_ref, queue, priority, buyer, *rest = orjson.loads(raw)  # 5 before
        return cls(channel, thread_ref, queue, priority, buyer,
                   rest[0] if rest else None, rest[1] if len(rest) > 1 else None)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RerouteNotice:
    """Value of `tickets.reroutes` (key: the thread reference, as on the channel topics)."""

    ticket_id: str
    channel: str
    thread_ref: str
    queue: str
    priority: str | None

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {"ticket_id": self.ticket_id, "channel": self.channel,
             "thread_ref": self.thread_ref, "queue": self.queue, "priority": self.priority}
        )  # fmt: skip

    @classmethod
    def from_bytes(cls, raw: bytes) -> RerouteNotice:
        doc = orjson.loads(raw)
        return cls(str(doc["ticket_id"]), str(doc["channel"]), str(doc["thread_ref"]),
                   str(doc["queue"]), doc.get("priority"))  # fmt: skip


def lifecycle_reroute(
    entry: TicketIndexEntry | None,
    ticket_id: str,
    *,
    actor: str | None,
    queue: str | None,
    priority: str | None,
) -> tuple[TicketIndexEntry | None, RerouteNotice | None]:
    """(entry to keep, notice to send) for a `routed` event of `ticket_id`."""
    if entry is None or actor != LIFECYCLE_ACTOR or queue is None:
        return entry, None  # the routing stage's own `routed` event, or an unknown ticket
    if queue == entry.queue and priority == entry.priority:
        return entry, None
    moved = dataclasses.replace(entry, queue=queue, priority=priority)
    notice = RerouteNotice(ticket_id, entry.channel, entry.thread_ref, queue, priority)
    return moved, notice


def apply_reroute(state: TicketState | None, notice: RerouteNotice) -> TicketState | None:
    """The ticket state with the notice's queue and priority; None when nothing changes
    (no such ticket on this thread any more, or already there)."""
    if state is None or state.ticket_id != notice.ticket_id:
        return None
    priority = state.priority
    if notice.priority is not None:
        try:
            priority = Priority(notice.priority)
        except ValueError:
            priority = state.priority
    if state.queue == notice.queue and state.priority == priority:
        return None
    return state.model_copy(update={"queue": notice.queue, "priority": priority})
