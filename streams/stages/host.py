"""Where a worker's stages run: on faust's agents and tables (`FaustHost`), or together on one
plain aiokafka consumer group (`DirectHost`, `streams.stages.direct`).

A stage's install function declares through a `StageHost` its tables, the topics each of its
runners reads, its timers and its rebalance hooks; it runs the same on either host. Both read
and write the same changelogs and commit in the same consumer group, so a worker can move
from one runtime to the other between two runs (not while a worker of the other runtime is in
the group: their group protocols differ).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol

import faust
from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2
from faust.types import TP

from router.clock import Clock
from router.records import OutRecord
from router.stages.contract import LocalData
from schemas.topics import TABLE_CHANGELOGS
from streams.kafka.changelog_recovery import gc_paused, install_fast_recovery
from streams.kafka.emit import Emitter
from streams.kafka.faust_internals import committed_offsets, started_consumer
from streams.kafka.topics import TopicManager, raw_topic
from streams.kafka.transport import RouterTable
from streams.metrics import report_positions
from streams.settings import RouterSettings
from streams.stages.deadlines import TICK_SECONDS, Deadlines
from streams.stages.direct import AssignedHook, DirectStage, OwnProducer, RevokedHook, Timer
from streams.stages.horizon import Positions
from streams.stages.progress import input_progress
from streams.stages.runner import BatchTable, StageRunner, install_stage

# records, partition or None (the key's): a write outside a batch (a timer's)
EmitFn = Callable[[Iterable[OutRecord], int | None], Awaitable[None]]
Revoked = Callable[[str, int], None]  # (logical topic, partition) no longer this worker's


class HostTable(Protocol):
    """One of a stage's tables: what its runner reads and writes, the local data outside a
    batch, and the deadline index it may keep up to date."""

    @property
    def batch(self) -> BatchTable: ...

    @property
    def local(self) -> LocalData: ...

    def follow(self, deadlines: Deadlines) -> None:
        """Keep `deadlines` on this table: told what each load or recovery read, rebuilt
        once the tables of an assignment are in, suspended from each revocation on."""


class StageHost(Protocol):
    settings: RouterSettings
    emitter: Emitter
    clock: Clock

    async def emit(self, records: Iterable[OutRecord], partition: int | None = None) -> None:
        """A timer's write, outside any batch."""

    def table(self, name: str, help: str) -> HostTable:
        """The table `name` (raw bytes, its changelog from `TABLE_CHANGELOGS`)."""

    def stage(self, name: str, topics: Sequence[str], runner: StageRunner) -> None:
        """`runner` reads the logical `topics`, a batch at a time."""

    def timer(self, name: str, fn: Timer) -> None:
        """`fn` every TICK_SECONDS."""

    def committed(self, physical: str, partition: int) -> int | None:
        """The input offset this worker last committed (None: unknown)."""

    def positions(self, *logical: str) -> Positions:
        """The assigned partitions of the logical topics: a firing horizon's view."""

    def on_revoked(self, fn: Revoked) -> None:
        """Call `fn` for each input partition revoked, before the revocation settles."""


# -- faust --------------------------------------------------------------------------------------


class DeadlineTable(RouterTable):
    """faust's Table, telling a stage's deadline index what recovery applied and when it
    completed (the lifecycle table, the disputes table)."""

    deadlines: Deadlines | None = None

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        events = list(batch)
        super().apply_changelog_batch(events)
        if self.deadlines is not None:
            self.deadlines.changelog_applied((e.message.partition, e.message.key) for e in events)

    def changelog_loaded(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        """(key, value) records `streams.kafka.changelog_recovery` read straight into the store."""
        if self.deadlines is not None:
            self.deadlines.changelog_loaded(partition, records)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        if self.deadlines is not None:
            with gc_paused():  # up to a million index entries built at once
                await self.deadlines.on_recovered({tp.partition for tp in active_tps})


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


def input_positions(app: faust.App, settings: RouterSettings, *logical: str) -> Positions:
    """(logical topic, partition, high watermark, committed offset) of the partitions of
    `logical` assigned to this worker's faust consumer."""

    def positions() -> Iterable[tuple[str, int, int | None, int | None]]:
        consumer = started_consumer(app)
        if consumer is None:
            return []
        committed = committed_offsets(consumer)
        out = []
        for tp in consumer.assignment():
            name = settings.logical(tp.topic)
            if name in logical:
                try:
                    high = consumer.highwater(tp)
                except Exception:  # being revoked: unknown, i.e. not read to the end
                    high = None
                out.append((name, tp.partition, high, committed.get(tp)))
        return out

    return positions


class _FaustTable:
    def __init__(self, host: FaustHost, table: DeadlineTable) -> None:
        self._host, self._table = host, table
        self.batch = BatchTable.over(table)
        self.local: LocalData = FaustLocalData(table, host.settings.partitions)

    def follow(self, deadlines: Deadlines) -> None:
        self._table.deadlines = deadlines

        @self._host.app.on_partitions_revoked.connect  # type: ignore[arg-type]  # typed as sync
        async def suspend(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
            deadlines.suspend()


class FaustHost:
    """Each stage a faust agent (a batch of events at a time) over faust's tables; timers are
    faust timers; table recovery is `streams.kafka.changelog_recovery`'s."""

    def __init__(
        self, app: faust.App, settings: RouterSettings, emitter: Emitter, clock: Clock
    ) -> None:
        self.app, self.settings, self.emitter, self.clock = app, settings, emitter, clock
        install_fast_recovery(app, settings)  # every table declared here is loadable

    async def emit(self, records: Iterable[OutRecord], partition: int | None = None) -> None:
        await self.emitter.emit(records, partition)

    def table(self, name: str, help: str) -> _FaustTable:
        table = DeadlineTable(
            self.app, name=name, default=None, beacon=self.app.tables.beacon,
            # bytes in, bytes out: the raw codec, on the live table and on recovery
            key_type=bytes, value_type=bytes, partitions=self.settings.partitions,
            help=help, extra_topic_configs=dict(TABLE_CHANGELOGS[name].configs),
        )  # fmt: skip
        self.app.tables.add(table)
        return _FaustTable(self, table)

    def stage(self, name: str, topics: Sequence[str], runner: StageRunner) -> None:
        s = self.settings
        install_stage(self.app, raw_topic(self.app, s, *topics), name, runner,
                      s.batch_max_records, s.batch_max_wait_ms / 1000)  # fmt: skip

    def timer(self, name: str, fn: Timer) -> None:
        async def tick() -> None:
            await fn()

        self.app.timer(TICK_SECONDS, name=name)(tick)

    def committed(self, physical: str, partition: int) -> int | None:
        return committed_offsets(self.app.consumer).get(TP(physical, partition))

    def positions(self, *logical: str) -> Positions:
        return input_positions(self.app, self.settings, *logical)

    def on_revoked(self, fn: Revoked) -> None:
        logical = self.settings.logical

        @self.app.on_partitions_revoked.connect  # type: ignore[arg-type]  # typed as sync
        async def revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
            for tp in revoked:
                fn(logical(tp.topic), tp.partition)


# -- direct -------------------------------------------------------------------------------------


class DictLocalData:
    """A direct table's dicts (key -> value, key -> partition) read outside a batch."""

    def __init__(self, data: Mapping[bytes, bytes], owner: Mapping[bytes, int]) -> None:
        self._data, self._owner = data, owner

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def keys_by_partition(self, partitions: set[int]) -> Mapping[int, Sequence[bytes]]:
        out: dict[int, list[bytes]] = defaultdict(list)
        for key, partition in list(self._owner.items()):
            if partition in partitions:
                out[partition].append(key)
        return out


class DirectTable(BatchTable):
    """A table in plain dicts, loaded from its changelog by the direct stage."""

    def __init__(self, host: DirectHost, changelog: str) -> None:
        data: MutableMapping[bytes, bytes] = {}
        owner: MutableMapping[bytes, int] = {}
        super().__init__(data, owner, changelog)
        self._host = host
        self.local: LocalData = DictLocalData(data, owner)
        self._deadlines: Deadlines | None = None

    @property
    def batch(self) -> BatchTable:
        return self

    def load(self, partition: int, records: Sequence[Any]) -> None:
        super().load(partition, records)
        if self._deadlines is not None:
            self._deadlines.changelog_loaded(partition, [(r.key, r.value) for r in records])

    def follow(self, deadlines: Deadlines) -> None:
        self._deadlines = deadlines

        async def rebuild(numbers: set[int]) -> None:
            with gc_paused():  # up to a million index entries built at once
                await deadlines.on_recovered(numbers)

        self._host.assigned_hooks.append(rebuild)
        self._host.revoked_hooks.append(lambda revoked: deadlines.suspend())


class DirectHost:
    """Every stage of the worker on one consumer group (`DirectStage`), built by `start_in`
    once the stages are declared."""

    def __init__(
        self,
        settings: RouterSettings,
        emitter: Emitter,
        clock: Clock,
        producer: OwnProducer,
        topics: TopicManager,
        crash: Callable[[BaseException], None],
    ) -> None:
        self.settings, self.emitter, self.clock = settings, emitter, clock
        self._producer, self._topics, self._crash = producer, topics, crash
        self.routes: dict[str, list[StageRunner]] = {}  # physical topic -> its runners
        self.tables: dict[str, DirectTable] = {}
        self.timers: list[Timer] = []
        self.assigned_hooks: list[AssignedHook] = []
        self.revoked_hooks: list[RevokedHook] = []
        self.service: DirectStage | None = None

    def _running(self) -> DirectStage:
        if self.service is None:
            raise RuntimeError("the direct stage is not built yet")
        return self.service

    async def emit(self, records: Iterable[OutRecord], partition: int | None = None) -> None:
        await self._running().emit(records, partition)

    def table(self, name: str, help: str) -> DirectTable:
        changelog = self.settings.topic(TABLE_CHANGELOGS[name].of(self.settings.app_id))
        table = self.tables[name] = DirectTable(self, changelog)
        return table

    def stage(self, name: str, topics: Sequence[str], runner: StageRunner) -> None:
        for topic in topics:
            self.routes.setdefault(self.settings.topic(topic), []).append(runner)

    def timer(self, name: str, fn: Timer) -> None:
        self.timers.append(fn)

    def committed(self, physical: str, partition: int) -> int | None:
        if self.service is None:
            return None
        return self.service.committed.get(TopicPartition(physical, partition))

    def positions(self, *logical: str) -> Positions:
        name_of = self.settings.logical

        def positions() -> Iterable[tuple[str, int, int | None, int | None]]:
            if self.service is None:
                return []
            return [(name_of(topic), partition, high, committed)
                    for topic, partition, committed, high in self.service.positions()
                    if name_of(topic) in logical]  # fmt: skip

        return positions

    def on_revoked(self, fn: Revoked) -> None:
        name_of = self.settings.logical

        def revoked(partitions: list[TopicPartition]) -> None:
            for tp in partitions:
                fn(name_of(tp.topic), tp.partition)

        self.revoked_hooks.append(revoked)

    def start_in(self, app: Any) -> DirectStage:
        """The stage service, started and stopped with `app` (which still runs the
        followers); its positions are the worker's consumer figures."""
        settings, topics = self.settings, self._topics
        changelogs = {TABLE_CHANGELOGS[name].of(settings.app_id): TABLE_CHANGELOGS[name]
                      for name in self.tables}  # fmt: skip

        async def prepare() -> None:  # faust creates a changelog when it declares the table
            await topics.ensure(sorted(changelogs),
                                {n: t.topic_configs() for n, t in changelogs.items()})

        stage = self.service = DirectStage(
            settings, self.routes, list(self.tables.values()), self.emitter,
            settings.group_id(), input_progress(app), self._producer, self._crash, prepare,
            on_assigned=self.assigned_hooks, on_revoked=self.revoked_hooks, timers=self.timers,
            loop=app.loop,
        )  # fmt: skip
        app.add_dependency(stage)
        report_positions(app, stage.positions)  # consumer lag metrics and the liveness check
        return stage
