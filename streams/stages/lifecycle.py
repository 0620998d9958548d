"""The lifecycle + SLA stage on Kafka: two agents, the `lifecycle` table, the deadline timer.

- Agent `actions` reads the external `tickets.actions` (any partitioner), validates each record
  and forwards it to the internal `tickets.commands` keyed by ticket id; bad ones are
  dead-lettered on `channel.dlq`.
- Agent `lifecycle` reads `tickets.events` and `tickets.commands`, both written only by this
  engine's producer (same partitioner, same partition count), so a ticket's records and its
  `lifecycle` table entry share one partition number. It runs the pure core
  (`router.sla.lifecycle`), publishes the outputs, stores the state, and keeps the in-memory
  deadline index of the partitions it owns.
- The 1 s timer (on every worker) never touches the table: it pops due ticket ids from the
  index of the partitions this worker actively owns and produces a `due` command for each to
  `tickets.commands` (same partition). While `tickets.actions` or `tickets.events` have a
  backlog here (after an outage), it fires only what was due before the last record applied
  (`streams/stages/horizon.py`): a reply waiting in the backlog stops its clock first. The
  agent re-checks the stored state (lazy cancellation); a duplicate `due` changes nothing.
  When the next due time falls before the next tick, a one-shot wake-up fires it on time.
- An action read before any event of its ticket (the two topics are read independently) waits
  in the `lifecycle-parked` table until that event, and is refused as for an unknown ticket
  after `action_park_s` (`router/stages/parking.py`): no clocks start for a ticket the
  stage has not seen.
- Table recovery reads the changelog with a plain consumer straight into the store
  (`streams/kafka/changelog_recovery.py`; faust's own path manages ~4k records/s), and the stage
  takes each loaded state's index entry as it arrives (`LifecycleTable.changelog_loaded`).
- After table recovery (`LifecycleTable.on_recovery_completed`) the index is rebuilt from the
  local table data of newly assigned active partitions, refreshed for changelog records
  recovered into partitions it kept, and dropped for partitions no longer active. Between a
  revocation and the end of recovery the timer fires nothing.
- Crash safety: outputs are sent before the table write, neither awaited; faust commits input
  offsets only after flushing both. What a replayed input needs is in `router/sla/outbox.py`.

The stage's logic lives in `streams/stages/sla.py` and the index and timer in
`streams/stages/deadlines.py` (both unit-tested with fakes); this module is the faust
plumbing.

Vendor profiles come from the engine's `directory.vendors` view when `create_engine` passes
one (`vendors=`): a vendor ticket then runs on the vendor's calendar and `response_hours`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.types import TP

from router.clock import Clock
from router.sla.policy import DEFAULT_POLICY_FILE, load_sla_config
from router.stages.contract import Combined
from router.stages.ticket_index import TicketIndexProcessor, thread_of
from schemas.topics import (
    LIFECYCLE_CHANGELOG,
    LIFECYCLE_TABLE,
    PARKED_TABLE,
    TICKET_INDEX_TABLE,
    TICKETS_ACTIONS,
    TICKETS_COMMANDS,
    TICKETS_EVENTS,
)
from schemas.vendor import VendorProfile
from streams.kafka.changelog_recovery import gc_paused, install_fast_recovery
from streams.kafka.emit import Emitter
from streams.kafka.faust_internals import committed_offsets, started_consumer
from streams.kafka.topics import raw_table, raw_topic
from streams.kafka.transport import RouterTable
from streams.settings import RouterSettings
from streams.stages.deadlines import TICK_SECONDS
from streams.stages.runner import BatchTable, StageRunner, install_stage
from streams.stages.sla import LifecycleStage

__all__ = [
    "LIFECYCLE_TABLE", "PARKED_TABLE", "LifecycleStage", "LifecycleTable", "install_lifecycle"
]


class LifecycleTable(RouterTable):
    """faust's Table, telling the stage what recovery applied and when it completed."""

    stage: LifecycleStage | None = None

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        events = list(batch)
        super().apply_changelog_batch(events)
        if self.stage is not None:
            self.stage.deadlines.changelog_applied(
                (e.message.partition, e.message.key) for e in events
            )

    def changelog_loaded(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        """(key, value) records `streams.kafka.changelog_recovery` read straight into the store."""
        if self.stage is not None:
            self.stage.deadlines.changelog_loaded(partition, records)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        if self.stage is not None:
            with gc_paused():  # up to a million index entries built at once
                await self.stage.deadlines.on_recovered({tp.partition for tp in active_tps})


class FaustLocalData:
    """Local data of faust's in-memory store (the engine's `memory://`), by partition.

    The store knows the partition of every key it recovered from the changelog; a key written
    here since then lives on the partition the producer's partitioner gives it (the stage only
    writes keys of the partition being processed, itself chosen by that partitioner).
    """

    def __init__(self, table: Any, partitions: int) -> None:  # any raw-bytes faust table
        self.table = table
        self.partitions = partitions

    def _dict(self) -> Any:
        return getattr(self.table.data, "data", self.table.data)

    def get(self, key: bytes) -> bytes | None:
        value = self._dict().get(key)
        return value if isinstance(value, bytes) else None

    def keys_by_partition(self, partitions: set[int]) -> Mapping[int, Sequence[bytes]]:
        known: Mapping[bytes, int] = getattr(self.table.data, "_key_partition", {})
        out: dict[int, list[bytes]] = defaultdict(list)
        for key in list(self._dict().keys()):
            partition = known.get(key)
            if partition is None:
                partition = (murmur2(key) & 0x7FFFFFFF) % self.partitions
            if partition in partitions:
                out[partition].append(key)
        return out


class _Vendors:
    def __init__(self, lookup: Callable[[str], VendorProfile | None]) -> None:
        self.get = lookup


def install_lifecycle(
    app: faust.App,
    settings: RouterSettings,
    emitter: Emitter,
    vendors: Callable[[str], VendorProfile | None] | None = None,
    clock: Clock | None = None,
) -> LifecycleStage:
    """Add the stage's table, agents, timer and rebalance hook to `app`.

    `vendors` looks up vendor profiles (the engine's `directory.vendors` view): a vendor's
    calendar and `response_hours` then apply to its tickets. A profile change applies to a
    ticket from its next routing change on, not retroactively.
    """
    config = load_sla_config(settings.sla_policies_file or DEFAULT_POLICY_FILE)
    install_fast_recovery(app, settings)  # every loadable table, this one included
    table = app.tables.add(
        LifecycleTable(
            app,
            name=LIFECYCLE_TABLE,
            default=None,
            beacon=app.tables.beacon,
            # bytes in, bytes out: the raw codec, on the live table and on changelog recovery
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
            help="per-ticket lifecycle and SLA state (router.sla.state)",
            extra_topic_configs=dict(LIFECYCLE_CHANGELOG.configs),
        )
    )

    def committed(topic: str, partition: int) -> int | None:
        return committed_offsets(app.consumer).get(TP(topic, partition))

    def positions() -> Iterable[tuple[str, int, int | None, int | None]]:
        # The inputs that can stop a clock, as far as this worker reads them (the horizon).
        consumer = started_consumer(app)
        if consumer is None:
            return []
        committed = committed_offsets(consumer)
        out = []
        for tp in consumer.assignment():
            logical = settings.logical(tp.topic)
            if logical in (TICKETS_ACTIONS.name, TICKETS_EVENTS.name):
                try:
                    high = consumer.highwater(tp)
                except Exception:  # being revoked: unknown, i.e. not read to the end
                    high = None
                out.append((logical, tp.partition, high, committed.get(tp)))
        return out

    parked = raw_table(app, settings, PARKED_TABLE,
                       "actions read before any event of their ticket (router.stages.parking)")
    states, parked_actions = BatchTable.over(table), BatchTable.over(parked)
    # The ticket index reads the same events, keyed and partitioned alike: it runs on this
    # stream rather than consuming the topic a second time.
    index = BatchTable.over(
        raw_table(app, settings, TICKET_INDEX_TABLE, "thread, queue and buyer of each ticket")
    )
    stage = LifecycleStage(
        settings, config, states, FaustLocalData(table, settings.partitions), emitter.emit,
        committed=committed,
        vendors=_Vendors(vendors) if vendors is not None else None, positions=positions,
        parked=parked_actions, parked_local=FaustLocalData(parked, settings.partitions),
        clock=clock, threads=lambda ticket_id: thread_of(index, ticket_id),
    )  # fmt: skip
    table.stage = stage  # type: ignore[attr-defined]  # app.tables.add returns the base type
    inputs = raw_topic(app, settings, TICKETS_EVENTS.name, TICKETS_COMMANDS.name)
    actions = raw_topic(app, settings, TICKETS_ACTIONS.name)
    # Both runners share the processor; only the first writes tables (forwarding an action
    # touches none), so one runner's flush never carries the other's writes.
    # The index first: an `opened` event may unpark a reply, which needs the ticket's thread.
    both = Combined((TicketIndexProcessor(index), frozenset({TICKETS_EVENTS.name})),
                    (stage.processor, None))  # fmt: skip
    apply = StageRunner(both, [states, parked_actions, index], emitter, stage.clock,
                        settings.logical, with_headers=True)  # fmt: skip
    forward = StageRunner(stage.processor, [], emitter, stage.clock, settings.logical)
    wait_s = settings.batch_max_wait_ms / 1000
    install_stage(app, inputs, "lifecycle", apply, settings.batch_max_records, wait_s)
    install_stage(app, actions, "actions", forward, settings.batch_max_records, wait_s)

    @app.timer(TICK_SECONDS, name="sla-deadlines")  # type: ignore[untyped-decorator]  # faust
    async def deadlines() -> None:
        await stage.tick()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust types the callback as sync
    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        stage.deadlines.suspend()
        for tp in revoked:
            stage.watermark.revoked(settings.logical(tp.topic), tp.partition)

    return stage
