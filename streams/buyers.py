"""Buyer history on Kafka: two keyed agents, two tables, and a copy on every worker.

- `buyer-tickets` (on `tickets.events`, key ticket id; table `ticket-buyers`): remembers the
  buyer of each ticket a buyer opened and forwards its `opened` / `resolved` / `reopened`
  events to the internal `buyers.changes` topic keyed by buyer id (`router.buyers`).
  Other event types are skipped on a byte test, without parsing.
- `buyers` (on `buyers.changes`; table `buyers`): folds the changes into the buyer's open
  and recent tickets. An empty record is deleted (a tombstone in its changelog).
- `BuyerDirectory`: every worker reads the `buyers` table's changelog whole with a groupless
  follower (`streams.compacted`, like the vendor directory), caught up before faust starts,
  then followed; the routing stage looks buyers up in memory, no I/O per message.

Crash safety is faust's at-least-once plus idempotent folding: the changes are sent before
the table writes, faust flushes both before committing the input offset, and a replayed
change only re-adds or re-removes the same ticket id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import faust
import orjson
import structlog
from aiokafka import ConsumerRecord

from router.buyers import BuyerChange, BuyerTickets, apply_change, ticket_change
from router.routing import BuyerHistory
from streams.compacted import CompactedReader, install_follower
from streams.settings import RouterSettings

log = structlog.get_logger("router.buyers")

CHANGES_TOPIC = "buyers.changes"
TICKET_BUYERS_TABLE = "ticket-buyers"
BUYERS_TABLE = "buyers"
# The event types this stage reads; everything else on tickets.events is skipped unparsed.
_WANTED = (b"support.ticket.opened", b"support.ticket.resolved", b"support.ticket.reopened")

Record = ConsumerRecord[bytes, bytes]


def buyers_changelog(settings: RouterSettings) -> str:
    """Logical name of the `buyers` table's changelog (faust: `<app id>-<table>-changelog`)."""
    return f"{settings.app_id}-{BUYERS_TABLE}-changelog"


class BuyerDirectory:
    """buyer id -> open and recent tickets, from the `buyers` changelog (every worker)."""

    def __init__(self, settings: RouterSettings) -> None:
        self.reader = CompactedReader(settings, buyers_changelog(settings), "buyers")
        self._buyers: dict[str, BuyerTickets] = {}
        self._caught_up = False

    def history(self, buyer_id: str, now: datetime) -> BuyerHistory | None:
        tickets = self._buyers.get(buyer_id)
        return tickets.history(now.timestamp()) if tickets is not None else None

    def __len__(self) -> int:
        return len(self._buyers)

    @property
    def caught_up(self) -> bool:
        return self._caught_up

    async def catch_up(self) -> None:
        records = await self.reader.read_to_end()
        self.apply(records)
        self._caught_up = True
        log.info("buyer_directory_loaded", buyers=len(self._buyers), records=len(records))

    async def follow(self) -> None:
        await self.reader.follow(self._on_records)

    async def _on_records(self, records: Sequence[Record]) -> None:
        self.apply(records)

    def apply(self, records: Iterable[Record]) -> None:
        for record in records:
            if record.key is None:
                continue
            key = record.key.decode("utf-8", "replace")
            if record.value is None:
                self._buyers.pop(key, None)
                continue
            try:
                self._buyers[key] = BuyerTickets.from_bytes(record.value)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("buyer_record_invalid", partition=record.partition,
                            offset=record.offset, error=repr(exc))  # fmt: skip


def _event_fields(value: bytes) -> tuple[str, str, float, str | None, str | None] | None:
    """(ticket id, kind, at, sender role, actor) of a wanted ticket event."""
    try:
        event = orjson.loads(value)
        data = event["data"]
        at = datetime.fromisoformat(str(data["at"])).timestamp()
        return (str(data["ticket_id"]), str(data["kind"]), at, data.get("sender_role"),
                data.get("actor"))  # fmt: skip
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # not ours to judge: the events topic is written by the engine itself


def install_buyers(app: Any, settings: RouterSettings) -> BuyerDirectory:
    """Add the two agents and tables to `app`; return this worker's buyer directory."""
    ticket_buyers = app.Table(
        TICKET_BUYERS_TABLE, default=None, key_type=bytes, value_type=bytes,
        partitions=settings.partitions, help="buyer id of each ticket a buyer opened",
    )  # fmt: skip
    buyers = app.Table(
        BUYERS_TABLE, default=None, key_type=bytes, value_type=bytes,
        partitions=settings.partitions, help="open and recent tickets per buyer",
    )  # fmt: skip
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw", "partitions": settings.partitions}  # fmt: skip
    events = app.topic(settings.topic("tickets.events"), **raw)
    changes = app.topic(settings.topic(CHANGES_TOPIC), **raw)

    @app.agent(events, name="buyer-tickets")
    async def buyer_tickets(stream: faust.StreamT) -> None:
        async for event in stream.events():
            value = event.message.value
            if not value or not any(t in value for t in _WANTED):
                continue
            fields = _event_fields(value)
            if fields is None:
                continue
            ticket_id, kind, at, role, actor = fields
            key = ticket_id.encode()
            known = ticket_buyers.get(key)
            buyer, change = ticket_change(
                known.decode() if known is not None else None, ticket_id, kind, at,
                sender_role=role, actor=actor,
            )  # fmt: skip
            if change is None:
                continue
            await changes.send(key=buyer.encode() if buyer else None, value=change.to_bytes())
            if known is None and buyer is not None:
                ticket_buyers[key] = buyer.encode()

    @app.agent(changes, name="buyers")
    async def buyer_history(stream: faust.StreamT) -> None:
        async for event in stream.events():
            key, value = event.message.key, event.message.value
            if key is None or not value:
                continue
            try:
                change = BuyerChange.from_bytes(value)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("buyer_change_invalid", error=repr(exc))
                continue
            stored = buyers.get(key)
            current = BuyerTickets.from_bytes(stored) if stored is not None else None
            updated = apply_change(current, change)
            if updated.empty:
                if stored is not None:
                    del buyers[key]
            elif updated != current:
                buyers[key] = updated.to_bytes()

    directory = BuyerDirectory(settings)
    install_follower(app, directory)
    return directory
