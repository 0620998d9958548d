"""Buyer history on Kafka: the `buyers` agent and table, and a copy on every worker.

- The ticket index (`streams.stages.ticket_index`, on `tickets.events`) sends each change of a
  buyer's ticket (`opened`, `resolved`, `reopened`) to the internal `buyers.changes` topic,
  keyed by buyer id.
- `buyers` (on `buyers.changes`; table `buyers`): folds the changes into the buyer's open
  and recent tickets (`router.buyers`). An empty record is deleted (a tombstone).
- `BuyerDirectory`: every worker reads the `buyers` table's changelog whole with a groupless
  follower (`streams.kafka.compacted`, folded by `router.views` like the vendor directory), caught
  up before faust starts, then followed; the routing stage looks buyers up in memory, no I/O
  per message.

Crash safety is faust's at-least-once plus idempotent folding: a replayed change only
re-adds or re-removes the same ticket id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import faust
import orjson
import structlog

from router.buyers import BuyerChange, BuyerTickets, apply_change
from router.routing import BuyerHistory
from router.views import KeyedView, buyer_tickets
from schemas.topics import BUYERS_CHANGELOG, BUYERS_CHANGES, BUYERS_TABLE
from streams.kafka.compacted import install_follower, view_follower
from streams.kafka.topics import raw_table, raw_topic
from streams.settings import RouterSettings

log = structlog.get_logger("router.buyers")


class BuyerDirectory(KeyedView[BuyerTickets]):
    """buyer id -> open and recent tickets, from the `buyers` changelog (every worker)."""

    def __init__(self, settings: RouterSettings) -> None:
        super().__init__(buyer_tickets)
        # no line per update: the changelog moves with every ticket a buyer opens or closes
        self.follower = view_follower(
            settings, BUYERS_CHANGELOG.of(settings.app_id), self, name="buyers",
            what="buyer_directory", invalid="buyer_record_invalid", log_updates=False,
        )  # fmt: skip

    def history(self, buyer_id: str, now: datetime) -> BuyerHistory | None:
        tickets = self.get(buyer_id)
        return tickets.history(now.timestamp()) if tickets is not None else None


def install_buyers(app: Any, settings: RouterSettings, with_agent: bool = True) -> BuyerDirectory:
    """Follow buyer history on this worker (and with `with_agent`, add the `buyers` agent and
    table that keep it); return this worker's buyer directory."""
    directory = BuyerDirectory(settings)
    install_follower(app, directory.follower)
    if not with_agent:
        return directory
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

    return directory
