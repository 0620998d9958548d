"""The routing stage on Kafka: the channel topics, `tickets.reroutes` and `delivery.receipts`
into the `tickets` table (keyed by thread, co-partitioned with all), a batch at a time."""

from __future__ import annotations

from typing import Any

from router.clock import Clock
from router.stages.routing import PolicyHolder, RoutingProcessor
from router.tickets import BuyerLookup, StandingLookup, VendorLookup
from schemas.topics import (
    CHANNEL_TOPICS,
    DELIVERY_RECEIPTS,
    TICKETS_CHANGELOG,
    TICKETS_REROUTES,
    TICKETS_TABLE,
)
from streams.kafka.emit import Emitter
from streams.kafka.topics import raw_topic
from streams.settings import RouterSettings
from streams.stages.runner import BatchTable, StageRunner, install_stage


def install_routing(
    app: Any,
    settings: RouterSettings,
    emitter: Emitter,
    policy: PolicyHolder,
    clock: Clock,
    vendors: VendorLookup | None = None,
    buyers: BuyerLookup | None = None,
    standings: StandingLookup | None = None,
) -> StageRunner:
    table = app.Table(
        TICKETS_TABLE,
        default=None,
        # bytes in, bytes out: faust picks the "raw" codec for both the live table and the
        # changelog recovery path (a faust Schema alone leaves recovery decoding JSON).
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        extra_topic_configs=dict(TICKETS_CHANGELOG.configs),
    )
    tickets = BatchTable.over(table)
    processor = RoutingProcessor(
        tickets, policy, max_record_bytes=settings.max_record_bytes, vendors=vendors,
        buyers=buyers, standings=standings,
    )  # fmt: skip
    runner = StageRunner(processor, [tickets], emitter, clock, settings.logical)
    # lifecycle re-routes and receipts arrive keyed by thread, co-partitioned with the channels
    inbound = raw_topic(
        app, settings, *CHANNEL_TOPICS, TICKETS_REROUTES.name, DELIVERY_RECEIPTS.name
    )
    install_stage(app, inbound, "route-inbound", runner, settings.batch_max_records,
                  settings.batch_max_wait_ms / 1000)  # fmt: skip
    return runner
