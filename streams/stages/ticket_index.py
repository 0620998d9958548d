"""The ticket index on Kafka: `tickets.events` into the `ticket-index` table, a batch at a
time (logic: `router.stages.ticket_index`)."""

from __future__ import annotations

from typing import Any

from router.clock import Clock
from router.stages.ticket_index import TicketIndexProcessor
from schemas.topics import TICKET_INDEX_TABLE, TICKETS_EVENTS
from streams.kafka.emit import Emitter
from streams.kafka.topics import raw_table, raw_topic
from streams.settings import RouterSettings
from streams.stages.runner import BatchTable, StageRunner, install_stage


def install_ticket_index(
    app: Any, settings: RouterSettings, emitter: Emitter, clock: Clock
) -> StageRunner:
    table = raw_table(app, settings, TICKET_INDEX_TABLE, "thread, queue and buyer of each ticket")
    index = BatchTable.over(table)
    runner = StageRunner(TicketIndexProcessor(index), [index], emitter, clock, settings.logical)
    events = raw_topic(app, settings, TICKETS_EVENTS.name)
    install_stage(app, events, "ticket-index", runner, settings.batch_max_records,
                  settings.batch_max_wait_ms / 1000)  # fmt: skip
    return runner
