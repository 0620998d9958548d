"""Buyer history the engine keeps itself: open tickets and tickets opened recently, per buyer.

Two keyed steps, both pure here (the Kafka side is `streams/stages/buyers.py`):

1. Per ticket (`tickets.events`, key ticket id): `ticket_change` turns an `opened` event of a
   buyer's ticket, and later `resolved` / `reopened` events of that ticket, into a
   `BuyerChange` for the buyer, remembering the ticket's buyer in between.
2. Per buyer (`buyers.changes`, key buyer id): `apply_change` folds changes into
   `BuyerTickets`: the ids of the buyer's open tickets and when each of its recent tickets
   was opened. Applying a change twice is harmless (sets, keyed by ticket id), so a replay
   after a crash does not double-count.

Every worker reads the per-buyer table whole (a compacted changelog, like the vendor
directory) and the routing stage gives the rules `buyer.open_tickets` and
`buyer.recent_tickets` (opened in the last `RECENT_DAYS`), merged with the facts a connector
vouches for in the message (`vip`, `lifetime_orders`: see `router.tickets.buyer_from_attributes`).
The counts are history *before* the ticket being routed, and eventually consistent: a
ticket opened a moment ago on another partition may not be counted yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import orjson

from router.routing import BuyerHistory

RECENT_DAYS = 30
RECENT_SECONDS = RECENT_DAYS * 86_400
MAX_TRACKED = 200  # tickets kept per buyer in each set; counts saturate there


class Change(StrEnum):
    OPENED = "opened"
    RESOLVED = "resolved"
    REOPENED = "reopened"


@dataclass(frozen=True, slots=True)
class BuyerChange:
    """One buyer's ticket changed state (value of `buyers.changes`, key = buyer id)."""

    buyer_id: str
    ticket_id: str
    change: Change
    at: float  # epoch seconds of the ticket event

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {"buyer_id": self.buyer_id, "ticket_id": self.ticket_id,
             "change": self.change.value, "at": self.at}
        )  # fmt: skip

    @classmethod
    def from_bytes(cls, raw: bytes) -> BuyerChange:
        doc = orjson.loads(raw)
        return cls(str(doc["buyer_id"]), str(doc["ticket_id"]), Change(doc["change"]),
                   float(doc["at"]))  # fmt: skip


def ticket_change(
    known_buyer: str | None,
    ticket_id: str,
    kind: str,
    at: float,
    *,
    sender_role: str | None,
    actor: str | None,
) -> tuple[str | None, BuyerChange | None]:
    """(the ticket's buyer to remember, the change to send) for one ticket event.

    An `opened` event names its opener (`actor`, `sender_role`): a buyer's ticket is tracked
    from then on; tickets opened by sellers or guests are not buyer history."""
    if kind == Change.OPENED:
        if sender_role != "buyer" or not actor:
            return known_buyer, None
        return actor, BuyerChange(actor, ticket_id, Change.OPENED, at)
    if kind in (Change.RESOLVED, Change.REOPENED) and known_buyer is not None:
        return known_buyer, BuyerChange(known_buyer, ticket_id, Change(kind), at)
    return known_buyer, None


@dataclass(frozen=True, slots=True)
class BuyerTickets:
    """Per buyer: open ticket ids, and opening time (epoch s) of each recent ticket."""

    open: frozenset[str] = frozenset()
    opened: tuple[tuple[str, float], ...] = ()  # (ticket id, opened at), oldest first

    def to_bytes(self) -> bytes:
        return orjson.dumps({"open": sorted(self.open), "opened": self.opened})

    @classmethod
    def from_bytes(cls, raw: bytes) -> BuyerTickets:
        doc = orjson.loads(raw)
        return cls(frozenset(doc.get("open", ())),
                   tuple((str(t), float(at)) for t, at in doc.get("opened", ())))  # fmt: skip

    def history(self, now: float) -> BuyerHistory:
        since = now - RECENT_SECONDS
        recent = sum(1 for _, at in self.opened if at >= since)
        return BuyerHistory(open_tickets=len(self.open), recent_tickets=recent)

    @property
    def empty(self) -> bool:
        return not self.open and not self.opened


def apply_change(current: BuyerTickets | None, change: BuyerChange) -> BuyerTickets:
    """Fold one change in (idempotent); entries older than the recent window are dropped."""
    state = current or BuyerTickets()
    open_ids = set(state.open)
    opened = dict(state.opened)
    if change.change is Change.RESOLVED:
        open_ids.discard(change.ticket_id)
    else:
        open_ids.add(change.ticket_id)
        if change.change is Change.OPENED:
            opened.setdefault(change.ticket_id, change.at)
    if len(open_ids) > MAX_TRACKED:  # the count saturates: keep the most recently opened
        by_age = sorted(open_ids, key=lambda t: (opened.get(t, float("-inf")), t))
        open_ids = set(by_age[-MAX_TRACKED:])
    horizon = change.at - RECENT_SECONDS
    kept = sorted(((t, at) for t, at in opened.items() if at >= horizon), key=lambda e: e[1])
    return BuyerTickets(frozenset(open_ids), tuple(kept[-MAX_TRACKED:]))


def merge_history(vouched: BuyerHistory | None, kept: BuyerHistory | None) -> BuyerHistory | None:
    """Connector-vouched facts (vip, lifetime orders) with the engine's ticket counts."""
    if kept is None:
        return vouched
    if vouched is None:
        return kept
    return BuyerHistory(
        open_tickets=kept.open_tickets,
        recent_tickets=kept.recent_tickets,
        lifetime_orders=vouched.lifetime_orders,
        vip=vouched.vip,
    )
