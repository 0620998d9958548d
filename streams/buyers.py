"""Buyer history on Kafka: the `buyers` agent and table, and a copy on every worker.

- The ticket index (`streams.ticket_index`, on `tickets.events`) sends each change of a
  buyer's ticket (`opened`, `resolved`, `reopened`) to the internal `buyers.changes` topic,
  keyed by buyer id.
- `buyers` (on `buyers.changes`; table `buyers`): folds the changes into the buyer's open
  and recent tickets (`router.buyers`). An empty record is deleted (a tombstone).
- `BuyerDirectory`: every worker reads the `buyers` table's changelog whole with a groupless
  follower (`streams.compacted`, like the vendor directory), caught up before faust starts,
  then followed; the routing stage looks buyers up in memory, no I/O per message.

Crash safety is faust's at-least-once plus idempotent folding: a replayed change only
re-adds or re-removes the same ticket id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import faust
import orjson
import structlog
from aiokafka import ConsumerRecord

from router.buyers import BuyerChange, BuyerTickets, apply_change
from router.routing import BuyerHistory
from schemas.topics import BUYERS_CHANGELOG, BUYERS_CHANGES, BUYERS_TABLE
from streams.compacted import CompactedReader, install_follower
from streams.settings import RouterSettings
from streams.topics import raw_table, raw_topic

log = structlog.get_logger("router.buyers")


Record = ConsumerRecord[bytes, bytes]


class BuyerDirectory:
    """buyer id -> open and recent tickets, from the `buyers` changelog (every worker)."""

    def __init__(self, settings: RouterSettings) -> None:
        self.reader = CompactedReader(settings, BUYERS_CHANGELOG.of(settings.app_id), "buyers")
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


def install_buyers(app: Any, settings: RouterSettings) -> BuyerDirectory:
    """Add the `buyers` agent and table to `app`; return this worker's buyer directory."""
    buyers = raw_table(app, settings, BUYERS_TABLE, "open and recent tickets per buyer")
    changes = raw_topic(app, settings, BUYERS_CHANGES.name)

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
