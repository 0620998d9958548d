"""Buyer history on Kafka: the `buyers` runner and table, and a copy on every routing worker.

- The ticket index (`router.stages.ticket_index`, on `tickets.events`) sends each change of a
  buyer's ticket (`opened`, `resolved`, `reopened`) to the internal `buyers.changes` topic,
  keyed by buyer id.
- `buyers` (a runner on the worker's host, on `buyers.changes`; table `buyers`): folds the
  changes into the buyer's open and recent tickets (`router.buyers`). An empty record is
  deleted (a tombstone).
- `BuyerDirectory`: each worker that routes reads the `buyers` table's changelog whole with a
  groupless follower (`streams.kafka.compacted`, folded by `router.views` like the vendor
  directory), caught up before faust starts, then followed; the routing stage looks buyers up
  in memory, no I/O per message.

Crash safety is faust's at-least-once plus idempotent folding: a replayed change only
re-adds or re-removes the same ticket id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from router.buyers import BuyerTickets
from router.routing import BuyerHistory
from router.stages.ticket_index import BuyerHistoryProcessor
from router.views import KeyedView, buyer_tickets
from schemas.topics import BUYERS_CHANGELOG, BUYERS_CHANGES, BUYERS_TABLE
from streams.kafka.compacted import install_follower, view_follower
from streams.settings import RouterSettings
from streams.stages.host import StageHost
from streams.stages.runner import StageRunner


class BuyerDirectory(KeyedView[BuyerTickets]):
    """buyer id -> open and recent tickets, from the `buyers` changelog (routing workers)."""

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
    app: Any, settings: RouterSettings, host: StageHost | None = None, *, follow: bool = True
) -> BuyerDirectory | None:
    """With `follow`, buyer history followed on this worker (on `app`) for its routing stage;
    with a host, also the `buyers` stage and table that keep it. Returns the buyer directory
    (None without `follow`: a lifecycle-only worker looks no buyer up)."""
    directory = BuyerDirectory(settings) if follow else None
    if directory is not None:
        install_follower(app, directory.follower)
    if host is None:
        return directory
    table = host.table(BUYERS_TABLE, "open and recent tickets per buyer").batch
    clock = host.clock
    runner = StageRunner(BuyerHistoryProcessor(table), [table], host.emitter, clock,
                         settings.logical)  # fmt: skip
    host.stage("buyers", [BUYERS_CHANGES.name], runner)
    return directory
