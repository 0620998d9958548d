"""The routing stage on Kafka: the channel topics, `tickets.reroutes` and `delivery.receipts`
into the `tickets` table (keyed by thread, co-partitioned with all), a batch at a time, on
the worker's host (`streams.stages.host`: faust, or the direct runtime)."""

from __future__ import annotations

from collections.abc import Callable

from router.clock import Clock
from router.stages.routing import PolicyHolder, RoutingProcessor
from router.tickets import BuyerLookup, StandingLookup, VendorLookup
from schemas.topics import (
    CHANNEL_TOPICS,
    DELIVERY_RECEIPTS,
    TICKETS_REROUTES,
    TICKETS_TABLE,
)
from streams.kafka.emit import Emitter
from streams.settings import RouterSettings
from streams.stages.host import StageHost
from streams.stages.runner import BatchTable, StageRunner

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


def install_routing(host: StageHost, runner_for: RunnerFor) -> StageRunner:
    """The `tickets` table and the routing runner on the worker's host."""
    table = host.table(TICKETS_TABLE, "per-thread ticket state (router.tickets)").batch
    runner = runner_for(table)
    host.stage("route-inbound", INPUTS, runner)
    return runner
