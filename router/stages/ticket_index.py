"""The ticket index: `tickets.events` (key ticket id) in, buyer history changes and re-route
notices out.

Its table keeps, per ticket, what the routing stage announced when it opened (channel,
thread reference, queue, priority, opener if a buyer; `router.reroutes.TicketIndexEntry`).
From the events of that ticket it derives:

- buyer history changes (`opened` by a buyer, `resolved`, `reopened`) for `buyers.changes`,
  keyed by buyer id (`router.buyers`);
- re-route notices when the lifecycle stage moves the ticket (a `routed` event with actor
  `lifecycle` that changes queue or priority) for `tickets.reroutes`, keyed by the thread
  reference, which the routing stage applies to its ticket state (`router.reroutes`).

Only `opened`, `routed`, `resolved` and `reopened` events, and a customer's `message_added` on
the social channel (its latest comment is what a reply answers), are parsed; the others (most
of the topic) are skipped on a byte test. Both consumers of its outputs are
idempotent, so a replay after a crash changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, MutableMapping
from datetime import datetime
from typing import Any

import orjson

from router.buyers import BuyerChange, BuyerTickets, apply_change, ticket_change
from router.records import OutRecord
from router.reroutes import TicketIndexEntry, lifecycle_reroute
from router.stages.contract import InRecord, Note
from schemas.topics import BUYERS_CHANGES, TICKETS_REROUTES

_WANTED = tuple(
    f'"support.ticket.{kind}"'.encode() for kind in ("opened", "routed", "resolved", "reopened")
)
# a customer's comment on the social channel: a reply answers the latest one
_SOCIAL_MESSAGE = (b'"support.ticket.message_added"', b'"channel":"social"')
_CUSTOMER_ROLES = frozenset({"buyer", "guest"})


def _fields(value: bytes) -> dict[str, Any] | None:
    try:
        event = orjson.loads(value)
        data = event["data"]
        data["_at"] = datetime.fromisoformat(str(data["at"])).timestamp()
        return data if isinstance(data.get("ticket_id"), str) else None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # not ours to judge: the engine itself writes this topic


def thread_of(table: Mapping[bytes, bytes], ticket_id: str) -> TicketIndexEntry | None:
    """What the index knows of a ticket: channel, thread ref and, on the social channel, the
    customer's latest message (where its replies go)."""
    stored = table.get(ticket_id.encode())
    return TicketIndexEntry.from_bytes(stored) if stored is not None else None


class TicketIndexProcessor:
    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table
        self.counts: Counter[str] = Counter()
        self.notes: list[Note] = []

    def process(self, record: InRecord, now: datetime) -> list[OutRecord]:
        value = record.value
        if not value:
            return []
        if all(t in value for t in _SOCIAL_MESSAGE):
            data = _fields(value)
            if data is not None:
                self._on_social_message(data)
            return []
        if not any(t in value for t in _WANTED):
            return []
        data = _fields(value)
        return self._on_event(data) if data is not None else []

    def _on_social_message(self, data: dict[str, Any]) -> None:
        if data.get("sender_role") not in _CUSTOMER_ROLES or not data.get("message_id"):
            return
        key = str(data["ticket_id"]).encode()
        stored = self.table.get(key)
        if stored is None:
            return
        entry = TicketIndexEntry.from_bytes(stored)
        if entry.reply_to != data["message_id"]:
            moved_on = dataclasses.replace(entry, reply_to=str(data["message_id"]))
            self.table[key] = moved_on.to_bytes()

    def _on_event(self, data: dict[str, Any]) -> list[OutRecord]:
        ticket_id: str = data["ticket_id"]
        key = ticket_id.encode()
        stored = self.table.get(key)
        entry = TicketIndexEntry.from_bytes(stored) if stored is not None else None
        kind = data.get("kind")
        if kind == "opened":
            if entry is not None or not data.get("thread_ref") or not data.get("channel"):
                return []  # a replay, or an event without the thread (older engine versions)
            role = data.get("sender_role")
            entry = TicketIndexEntry(
                str(data["channel"]), str(data["thread_ref"]), data.get("queue"), None,
                data.get("actor") if role == "buyer" else None,
            )  # fmt: skip
        if entry is None:
            return []
        out: list[OutRecord] = []
        buyer, change = ticket_change(
            entry.buyer, ticket_id, str(kind), data["_at"],
            sender_role=data.get("sender_role"), actor=data.get("actor"),
        )  # fmt: skip
        if change is not None and buyer is not None:
            out.append(OutRecord(BUYERS_CHANGES.name, buyer.encode(), change.to_bytes()))
        updated: TicketIndexEntry | None = entry
        if kind == "routed":
            if data.get("actor") is None:  # the routing stage's own: the priority it chose
                updated = dataclasses.replace(entry, priority=data.get("priority"))
            else:
                updated, notice = lifecycle_reroute(
                    entry, ticket_id, actor=data.get("actor"), queue=data.get("queue"),
                    priority=data.get("priority"),
                )  # fmt: skip
                if notice is not None:
                    out.append(OutRecord(TICKETS_REROUTES.name, notice.thread_ref.encode(),
                                         notice.to_bytes()))  # fmt: skip
                    self.counts["moved"] += 1
                    self.notes.append(Note("info", "ticket_moved",
                                           {"ticket_id": ticket_id, "queue": notice.queue}))
        if updated is not None and (stored is None or updated != entry):
            self.table[key] = updated.to_bytes()
        return out


class BuyerHistoryProcessor:
    """`buyers.changes` (key buyer id) into the `buyers` table: open and recent tickets per
    buyer, folded idempotently (`router.buyers.apply_change`). Writes no records."""

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table
        self.counts: Counter[str] = Counter()
        self.notes: list[Note] = []

    def process(self, record: InRecord, now: datetime) -> list[OutRecord]:
        key, value = record.key, record.value
        if key is None or not value:
            return []
        try:
            change = BuyerChange.from_bytes(value)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self.notes.append(Note("warning", "buyer_change_invalid", {"error": repr(exc)}))
            return []
        stored = self.table.get(key)
        current = BuyerTickets.from_bytes(stored) if stored is not None else None
        updated = apply_change(current, change)
        if updated.empty:
            if stored is not None:
                del self.table[key]
        elif updated != current:
            self.table[key] = updated.to_bytes()
        return []
