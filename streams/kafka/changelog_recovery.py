"""Table recovery at raw-consumer speed: faust's `Recovery`, with the slow part replaced.

Why: faust 0.15 recovers a changelog one event at a time through its consumer thread, the
conductor, a flow-control queue and `Recovery._slurp_changelogs` (a task and a timer per
`wait_for`, a `need_recovery()` scan per record). Measured on the `lifecycle` changelog:
~3.7k records/s, ~270 us of CPU per record, where a plain aiokafka consumer reading the same
partitions does ~120k records/s. No setting fixes a per-event cost (poll size, buffer sizes,
fetch sizes only move batching around), so the bulk of the work is done here instead.

How: `FastRecovery._build_offsets` runs where faust's `_restart_recovery` has just fetched the
highwaters of the active changelog partitions and worked out where reading starts. For every
*loadable* table (faust's in-memory store, raw bytes keys and values, not global, not
windowed, and nothing else done with recovered records unless it has a `changelog_loaded`
hook), it reads those partitions with a groupless aiokafka consumer (large fetches, whole
batches via `getmany`) straight into the store, exactly as faust's `apply_changelog_batch`
would (tombstones delete, `_key_partition` kept), then moves faust's offset for each partition
to the last record applied. faust then seeks there, finds nothing left (`need_recovery()` is
false) and carries on as usual: `on_recovery_completed` hooks, standby partitions (still
faust's path), resuming the streams. The rest of faust's recovery contract is untouched: the
streams stay paused until it completes, a new rebalance cancels the step (`RebalanceAgain`),
and the progress made so far stays valid because the offset only moves after each batch is
applied.

Limits kept on purpose: faust abandons recovery for good when one step outlives
`broker_request_timeout` (its `_wait` reports the time-out as "stopped"), so the load stops at
`LOAD_BUDGET` of it and leaves any rest to faust's own path, from the offset reached. If the
plain consumer fails, the same happens. Reads stop at the highwaters faust took (what faust
itself would read); only active partitions are loaded (faust's memory store keeps only those).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, NamedTuple

import faust
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores.memory import Store as MemoryStore
from faust.tables.recovery import Recovery
from faust.types import TP

from streams.kafka.client import client_kwargs
from streams.kafka.faust_internals import (
    changelog_callback,
    mark_recovery_progress,
    memory_store,
    replace_table_recovery,
    table_recovery,
)
from streams.settings import RouterSettings

log = structlog.get_logger("router.recovery")

LOAD_BUDGET = 0.7  # share of faust's step time-out (broker_request_timeout) the load may use
_FETCH_PARTITION_BYTES = 8 * 1024 * 1024
_FETCH_BYTES = 64 * 1024 * 1024
_POLL_MS = 500

# applies changelog records (aiokafka ConsumerRecords, one partition, in order) to a table
Apply = Callable[[int, Sequence[Any]], None]


class WholeLoad(NamedTuple):
    """What `ChangelogLoader.load_whole` read: how many records, and each partition's end
    offset (the offset its next record will take)."""

    records: int
    ends: dict[TopicPartition, int]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection for the duration of a bulk load.

    A million fetched records and their index entries keep promoting objects into the older
    generations, and every full collection walks them all again: measured, ~20% of the worker's
    CPU time during a recovery. Reference counting still frees everything as usual; cycles wait
    until the load ends. Nesting keeps the outer state."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def loadable(table: Any) -> bool:
    """Tables whose store this module may fill: bytes in, bytes out, faust's memory store.

    A table that does more with recovered records than storing them (its own
    `apply_changelog_batch`, an `on_changelog_event` callback) qualifies only with a
    `changelog_loaded(partition, [(key, value), ...])` method for this path."""
    bypassed = (type(table).apply_changelog_batch is not faust.Table.apply_changelog_batch
                or changelog_callback(table) is not None)
    return (
        isinstance(table.data, MemoryStore)
        and table.key_type is bytes
        and table.value_type is bytes
        and not table.is_global
        and table.window is None
        and (not bypassed or callable(getattr(table, "changelog_loaded", None)))
    )


def apply_records(table: Any, partition: int, records: Sequence[Any]) -> None:
    """What faust's memory store does with a changelog batch, then the table's hook, if any.

    `records` are aiokafka ConsumerRecords of one partition, in offset order."""
    data, owner = memory_store(table)
    store_records(data, owner, partition, records)
    hook = getattr(table, "changelog_loaded", None)
    if hook is not None:
        hook(partition, [(r.key, r.value) for r in records if r.key is not None])


def store_records(
    data: MutableMapping[bytes, bytes],
    owner: MutableMapping[bytes, int],
    partition: int,
    records: Sequence[Any],
) -> None:
    """Changelog records of one partition into (key -> value, key -> partition): the last
    value wins, a tombstone deletes."""
    for record in records:
        key, value = record.key, record.value
        if key is None:
            continue
        if value is None:  # a tombstone
            data.pop(key, None)
            owner.pop(key, None)
        else:
            data[key] = value
            owner[key] = partition


class ChangelogLoader:
    """Reads changelog partitions from an offset up to an end offset into their tables."""

    def __init__(
        self,
        settings: RouterSettings,
        isolation_level: str = "read_uncommitted",
        progress: Callable[[TP], None] = lambda tp: None,
    ) -> None:
        self.settings = settings
        self.isolation_level = isolation_level
        self.progress = progress  # after each batch applied to a partition

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **client_kwargs(self.settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=self.isolation_level,
            client_id=f"{self.settings.topic_prefix}{self.settings.app_id}-recovery",
            max_partition_fetch_bytes=_FETCH_PARTITION_BYTES,
            fetch_max_bytes=_FETCH_BYTES,
            key_deserializer=None,
            value_deserializer=None,
        )

    async def load(
        self,
        tables: Mapping[TP, Apply],
        applied: MutableMapping[TP, int],
        ends: Mapping[TP, int],
        budget_s: float,
    ) -> int:
        """Apply records [applied[tp] + 1, ends[tp]) of each partition with tables[tp].

        `applied[tp]` (faust's "last offset applied", -1 for none) moves after each batch, so
        whatever stops the load (cancellation, the budget, an error) leaves it exact. Returns
        the number of records applied."""
        todo = {tp: table for tp, table in tables.items() if applied[tp] + 1 < ends[tp]}
        if not todo:
            return 0
        started = time.perf_counter()
        per_tp: dict[TP, int] = defaultdict(int)
        consumer = self._consumer()
        try:
            with gc_paused():
                await self._read(consumer, todo, applied, ends, per_tp, budget_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # faust's own path reads whatever is left
            log.error("changelog_load_failed", error=repr(exc), records=sum(per_tp.values()))
        finally:
            await consumer.stop()
        log.info(
            "changelog_loaded",
            records=sum(per_tp.values()),
            seconds=round(time.perf_counter() - started, 3),
            partitions={f"{tp.topic}:{tp.partition}": n for tp, n in sorted(per_tp.items())},
        )
        return sum(per_tp.values())

    async def offsets(
        self, partitions: Sequence[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """(first offset, end offset) of each partition, as of the call."""
        if not partitions:
            return {}, {}
        consumer = self._consumer()
        await consumer.start()
        try:
            return (await consumer.beginning_offsets(partitions),
                    await consumer.end_offsets(partitions))  # fmt: skip
        finally:
            await consumer.stop()

    async def load_whole(self, tables: Mapping[TP, Apply]) -> WholeLoad:
        """Apply each partition from its first record to its end offset as of the call (a
        plain consumer group's table, `streams.stages.direct`). Raises when it could not
        read them all: processing on part of a table would fork its tickets."""
        if not tables:
            return WholeLoad(0, {})
        keyed = {TopicPartition(tp.topic, tp.partition): apply for tp, apply in tables.items()}
        firsts, ends = await self.offsets(list(keyed))
        applied = {tp: firsts[tp] - 1 for tp in keyed}
        loaded = await self.load(keyed, applied, ends, budget_s=float("inf"))
        short = sorted(f"{tp.topic}:{tp.partition}" for tp in keyed if applied[tp] + 1 < ends[tp])
        if short:
            raise RuntimeError(f"changelog partitions not fully read: {short}")
        return WholeLoad(loaded, {tp: ends[tp] for tp in keyed})

    async def _read(
        self,
        consumer: AIOKafkaConsumer,
        todo: Mapping[TP, Apply],
        applied: MutableMapping[TP, int],
        ends: Mapping[TP, int],
        per_tp: dict[TP, int],
        budget_s: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + budget_s
        await consumer.start()
        by_tp = {TopicPartition(tp.topic, tp.partition): tp for tp in todo}
        consumer.assign(list(by_tp))
        for ktp, tp in by_tp.items():
            consumer.seek(ktp, applied[tp] + 1)
        # insertion-ordered (a set of TopicPartitions iterates in a per-process hash order)
        pending = dict.fromkeys(by_tp)
        while pending:
            if loop.time() > stop_at:
                log.warning("changelog_load_budget_spent", budget_s=round(budget_s, 1),
                            records=sum(per_tp.values()),
                            left_to_faust=sorted(str(by_tp[k]) for k in pending))
                return
            batch = await consumer.getmany(*pending, timeout_ms=_POLL_MS)
            for ktp in list(pending):
                tp = by_tp[ktp]
                end = ends[tp]
                records = [r for r in batch.get(ktp, ()) if r.offset < end]
                if records:
                    todo[tp](tp.partition, records)
                    per_tp[tp] += len(records)
                    self.progress(tp)
                # control records and compacted gaps: the position says how far we are
                position = min(await consumer.position(ktp), end)
                applied[tp] = max(applied[tp], position - 1)
                if position >= end:
                    del pending[ktp]


class FastRecovery(Recovery):
    """faust's Recovery; active changelog partitions of loadable tables are read by `loader`."""

    loader: ChangelogLoader

    async def _build_offsets(
        self, consumer: Any, tps: set[TP], destination: Any, title: str
    ) -> None:
        # faust 0.15.3 `_restart_recovery`: highwaters of the actives, then this call for them
        # ("active"), then the standbys' offsets, then the seek to `destination`.
        await super()._build_offsets(consumer, tps, destination, title)
        if title != "active":
            return
        tables = {tp: functools.partial(apply_records, self.tp_to_table[tp]) for tp in tps
                  if tp in self.tp_to_table and loadable(self.tp_to_table[tp])}
        ends = {tp: self.active_highwaters[tp] + 1 for tp in tables}  # faust's "-1" convention
        budget = LOAD_BUDGET * float(self.app.conf.broker_request_timeout)
        await self.loader.load(tables, destination, ends, budget)

    def loaded(self, tp: TP) -> None:
        """Progress as faust's stats task reads it (else: "No event received for active tp")."""
        mark_recovery_progress(self, tp, time.monotonic())


def install_fast_recovery(app: Any, settings: RouterSettings) -> FastRecovery:
    """Make `app`'s table manager recover with `FastRecovery` (call before the app starts).

    faust builds its Recovery lazily in `TableManager.recovery` (`_recovery` is None until the
    manager starts); setting it first is the only hook short of replacing the table manager,
    which `create_engine` has already built by the time tables are declared."""
    manager = app.tables
    existing = table_recovery(manager)
    if isinstance(existing, FastRecovery):
        return existing
    if existing is not None:
        raise RuntimeError("faust's table recovery already started: install before app start")
    recovery = FastRecovery(app, manager, beacon=manager.beacon, loop=manager.loop)
    guarantee = str(getattr(app.conf, "processing_guarantee", "")).lower()
    recovery.loader = ChangelogLoader(
        settings, "read_committed" if "exactly_once" in guarantee else "read_uncommitted",
        progress=recovery.loaded,
    )
    replace_table_recovery(manager, recovery)
    return recovery
