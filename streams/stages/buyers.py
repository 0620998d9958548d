"""Buyer history on Kafka: the `buyers` agent and table, and a copy on every worker.

- The ticket index (`router.stages.ticket_index`, on `tickets.events`) sends each change of a
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

from router.buyers import BuyerTickets
from router.clock import Clock
from router.routing import BuyerHistory
from router.stages.ticket_index import BuyerHistoryProcessor
from router.views import KeyedView, buyer_tickets
from schemas.topics import BUYERS_CHANGELOG, BUYERS_CHANGES, BUYERS_TABLE
from streams.kafka.compacted import install_follower, view_follower
from streams.kafka.emit import Emitter
from streams.kafka.topics import raw_table, raw_topic
from streams.settings import RouterSettings
from streams.stages.runner import BatchTable, StageRunner, install_stage


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


def install_buyers(
    app: Any,
    settings: RouterSettings,
    emitter: Emitter | None = None,
    clock: Clock | None = None,
) -> BuyerDirectory:
    """Follow buyer history on this worker; with an emitter and a clock, also run the
    `buyers` stage and table that keep it. Returns this worker's buyer directory."""
    directory = BuyerDirectory(settings)
    install_follower(app, directory.follower)
    if emitter is None or clock is None:
        return directory
    table = BatchTable.over(
        raw_table(app, settings, BUYERS_TABLE, "open and recent tickets per buyer")
    )
    runner = StageRunner(BuyerHistoryProcessor(table), [table], emitter, clock, settings.logical)
    changes = raw_topic(app, settings, BUYERS_CHANGES.name)
    install_stage(app, changes, "buyers", runner, settings.batch_max_records,
                  settings.batch_max_wait_ms / 1000)  # fmt: skip
    return directory
