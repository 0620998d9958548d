"""The routing stage on Kafka: the channel topics, `tickets.reroutes` and `delivery.receipts`
into the `tickets` table (keyed by thread, co-partitioned with all), a batch at a time, on
faust (`install_routing`) or on a plain consumer group (`install_direct_routing`)."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
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
from streams.kafka.topics import TopicManager, raw_topic
from streams.metrics import report_positions
from streams.settings import RouterSettings
from streams.stages.direct import DirectStage, OwnProducer
from streams.stages.progress import input_progress
from streams.stages.runner import BatchTable, StageRunner, install_stage

# lifecycle re-routes and receipts arrive keyed by thread, co-partitioned with the channels
INPUTS = (*CHANNEL_TOPICS, TICKETS_REROUTES.name, DELIVERY_RECEIPTS.name)


def routing_runner(
    tickets: BatchTable,
    *,
    settings: RouterSettings,
    emitter: Emitter,
    policy: PolicyHolder,
    clock: Clock,
    vendors: VendorLookup | None = None,
    buyers: BuyerLookup | None = None,
    standings: StandingLookup | None = None,
) -> StageRunner:
    """The routing processor over `tickets`, run a batch at a time by either runtime."""
    processor = RoutingProcessor(
        tickets, policy, max_record_bytes=settings.max_record_bytes, vendors=vendors,
        buyers=buyers, standings=standings,
    )  # fmt: skip
    return StageRunner(processor, [tickets], emitter, clock, settings.logical)


RunnerFor = Callable[[BatchTable], StageRunner]  # `routing_runner` over a given table


def install_routing(app: Any, settings: RouterSettings, runner_for: RunnerFor) -> StageRunner:
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
    runner = runner_for(BatchTable.over(table))
    inbound = raw_topic(app, settings, *INPUTS)
    install_stage(app, inbound, "route-inbound", runner, settings.batch_max_records,
                  settings.batch_max_wait_ms / 1000)  # fmt: skip
    return runner


def install_direct_routing(
    app: Any,
    settings: RouterSettings,
    runner_for: RunnerFor,
    producer: OwnProducer,
    topics: TopicManager,
    crash: Callable[[BaseException], None],
) -> DirectStage:
    """The routing stage on its own consumer group (the `direct` runtime), started and stopped
    with `app`; its table is the faust table's changelog topic, loaded into dicts."""
    changelog = TICKETS_CHANGELOG.of(settings.app_id)
    data: MutableMapping[bytes, bytes] = {}
    owner: MutableMapping[bytes, int] = {}
    tickets = BatchTable(data, owner, settings.topic(changelog))
    runner = runner_for(tickets)

    async def prepare() -> None:  # faust creates the changelog when it declares the table
        await topics.ensure([changelog], {changelog: TICKETS_CHANGELOG.topic_configs()})

    stage = DirectStage(
        settings, runner, [tickets], [settings.topic(t) for t in INPUTS], settings.group_id(),
        input_progress(app), producer, crash, prepare, loop=app.loop,
    )  # fmt: skip
    app.add_dependency(stage)
    report_positions(app, stage.positions)  # consumer lag metrics and the liveness check
    return stage
