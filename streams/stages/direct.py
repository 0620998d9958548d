"""The worker's stages on a plain aiokafka consumer group: the `direct` runtime.

Why: on faust, every record also passes faust's consumer thread, its conductor, the stream
and the acknowledgement bookkeeping, about two thirds of a routing worker's CPU and half of a
lifecycle worker's. Here the same `StageRunner`s (processor, batch tables, the one `Emitter`)
run on `getmany` batches instead; `streams.stages.host` declares them.

What faust did, this does itself:

- Group and assignment: one consumer in the worker's group (`settings.group_id()`, so committed
  offsets carry over between the runtimes), aiokafka's `RangePartitionAssignor`. With equal
  partition counts it gives each worker the same partition numbers of every input topic:
  partition N of every input that feeds a table, and the tables' partition N, live on one
  worker (co-partitioned). An assignment that breaks this stops the worker.
- Routes: each input topic's records go to the runners that read it (a topic two stages read,
  like `tickets.actions`, to both), each runner once per batch, records in partition order.
- Tables: plain dicts, filled on assignment from the tables' changelogs (the topics faust's
  tables use, same records: the runtimes read each other's state), read whole before any
  record of those partitions is processed; then the assignment hooks run (a deadline index
  is rebuilt). A revoked partition's data stays until the next assignment: handed back, it
  is kept if every table's changelog partition still ends where this worker's load and own
  writes left it (another worker's write would have moved that end), so a rebalance reads
  back only the partitions that changed hands; otherwise it is dropped and read again.
- Per batch: process, send outputs then changelog writes (one producer batch per partition),
  then settle the batch before it, whose deliveries went on while this one was processed:
  wait until every one is acknowledged (a failed delivery raises: the worker stops before
  committing), then commit its offsets. At most one batch is in flight; an idle poll, a
  revocation and the stop settle it too. A crash before the commit replays the batch; the
  ids are deterministic, so the replay writes the same records.
- Replay first: after an assignment, the inputs that feed no table (actions to forward,
  payment events) are paused until the ones that do are read up to where they ended when
  first fetched (at most `REPLAY_HOLD_SECONDS`): an action forwarded after a restart then finds
  the state its ticket's earlier events build, instead of waiting for it (parking) or being
  refused once too many wait.
- Timers (the deadline timers) run every second between batches; what they write (`emit`)
  is sent at once and confirmed with the next settle.
- Rebalance: the revocation runs the revocation hooks (timers stop firing), waits for the
  batch in progress (it commits first); a batch fetched before a rebalance is dropped
  uncommitted, for the partitions' owner to read again.
- Stalls: a process that stood still longer than the session allows (SIGSTOP, a long GC
  pause, a frozen VM) may have been evicted without knowing it; a batch processed across such
  a stall is put back unsent (its table writes forgotten), and no batch is processed nor timer
  fired until two heartbeats have had time to tell (`StallGuard`). What it sent before the
  stall is the usual uncommitted replay. A stall within the milliseconds of sending is not
  caught.
- Stop (SIGTERM through faust's worker: this is a dependency of the app, which still runs the
  followers): the batch in progress finishes and commits, then the consumer leaves the group.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError
from mode import Service

from router.records import OutRecord
from streams.kafka.changelog_recovery import ChangelogLoader, gc_paused
from streams.kafka.client import client_kwargs, producer_kwargs
from streams.kafka.emit import Emitter
from streams.kafka.transport import AllTopicsProducer
from streams.settings import RouterSettings
from streams.stages.deadlines import TICK_SECONDS
from streams.stages.progress import InputProgress
from streams.stages.runner import BatchTable, StageRunner

log = structlog.get_logger("router.direct")

_IDLE_POLL_MS = 200  # how long a fetch waits when nothing is there: bounds the stop's wait
_FETCH_PARTITION_BYTES = 8 * 1024 * 1024


# a batch sent and not yet committed: its deliveries, the offsets to commit, and per input
# partition (topic, partition, offset, timestamp in seconds) of its last record
InFlight = tuple[list["asyncio.Future[Any]"], dict[TopicPartition, int],
                 list[tuple[str, int, int, float]]]  # fmt: skip


class CoPartitioningError(RuntimeError):
    """An assignment that does not give every input topic the same partition numbers."""


def check_co_partitioned(assigned: Sequence[TopicPartition], inputs: Sequence[str]) -> set[int]:
    """The partition numbers assigned of `inputs` (the topics that feed tables);
    CoPartitioningError unless each of them has exactly these (then partition N of every
    such input, and of the tables, is this worker's)."""
    numbers = {tp.partition for tp in assigned if tp.topic in inputs}
    for topic in inputs:
        mine = {tp.partition for tp in assigned if tp.topic == topic}
        if mine != numbers:
            raise CoPartitioningError(
                f"{topic} partitions {sorted(mine)} assigned beside {sorted(numbers)}: the "
                "input topics must have the same partition count"
            )
    return numbers


def unchanged_since(
    numbers: Collection[int], tables: Sequence[BatchTable], ends: Mapping[TopicPartition, int]
) -> set[int]:
    """The partition numbers whose data in every table matches its changelog ending at
    `ends` (now): each table's partition ends where its last load and own writes left it.
    Any record another worker wrote since moved that end."""
    return {n for n in numbers
            if all(n in table.ends and ends.get(TopicPartition(table.changelog, n)) == table.ends[n]
                   for table in tables)}  # fmt: skip


class StallGuard:
    """Notices that the whole process stood still (SIGSTOP, a long GC pause, a frozen VM) long
    enough for the group to have evicted this member without it knowing: its partitions may
    be another worker's by now. A batch processed across such a stall is not sent, and none is
    processed until the heartbeats have had time to tell (if the member was evicted, the
    revocation that follows makes any batch fetched before it stale).

    `tick` runs every TICK_SECONDS on the event loop, which a stall stops too."""

    TICK_SECONDS = 0.5

    def __init__(
        self, session_s: float, heartbeat_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = session_s - heartbeat_s  # a stall this long may have outlived the session
        self.hold = 2 * heartbeat_s
        self._clock = clock
        self._ticked = clock()
        self._hold_until = 0.0
        self.stalls = 0

    def tick(self) -> None:
        self.holding()
        self._ticked = self._clock()

    def holding(self) -> bool:
        """A stall has just ended (seen now, or by the last tick): hold back."""
        now = self._clock()
        stood = now - self._ticked
        if stood > self.limit:
            self._ticked, self._hold_until = now, now + self.hold
            self.stalls += 1
            log.warning("direct_stage_stalled", seconds=round(stood, 1),
                        holding_s=round(self.hold, 1))  # fmt: skip
        return now < self._hold_until


class OwnProducer:
    """The direct runtime's producer (faust's is not flushed for it): made and started in the
    running loop by the stage; called, it is what the emitter sends to."""

    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.producer: Any = None

    def __call__(self) -> Any:
        if self.producer is None:
            raise RuntimeError("the direct stage's producer is not started")
        return self.producer

    async def start(self) -> None:
        self.producer = AllTopicsProducer(**producer_kwargs(self.settings))
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()  # sends what is still batched


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no types
    def __init__(self, stage: DirectStage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.stage.revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.stage.assigned(assigned)


REPLAY_HOLD_SECONDS = 30.0  # the longest the forward-only inputs wait for the replay


def _heartbeat_s(settings: RouterSettings) -> float:
    return min(3.0, settings.session_timeout_s / 3)


# hooks a stage registers: after each assignment's tables are loaded (the partition numbers
# now owned), and at the start of each revocation (the partitions going)
AssignedHook = Callable[[set[int]], Awaitable[None]]
RevokedHook = Callable[[list[TopicPartition]], None]
Timer = Callable[[], Awaitable[Any]]


class DirectStage(Service):
    """Runs each runner of `routes` (physical input topic -> the runners that read it) in the
    consumer group `group_id`; `tables` are filled from their changelogs on assignment."""

    def __init__(
        self,
        settings: RouterSettings,
        routes: Mapping[str, Sequence[StageRunner]],
        tables: Sequence[BatchTable],
        emitter: Emitter,
        group_id: str,
        progress: InputProgress,
        producer: OwnProducer,  # the emitter's, started and stopped here
        crash: Callable[[BaseException], None],
        prepare: Callable[[], Awaitable[None]],  # topics the stage needs, before it joins
        *,
        on_assigned: Sequence[AssignedHook] = (),
        on_revoked: Sequence[RevokedHook] = (),
        timers: Sequence[Timer] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.routes = {topic: list(runners) for topic, runners in routes.items()}
        self.runners = list(dict.fromkeys(r for rs in self.routes.values() for r in rs))
        self.emitter = emitter
        self.tables = tables
        self.inputs = list(self.routes)
        # the inputs that feed a table: these must be co-partitioned with the tables
        self.tabled = [t for t, rs in self.routes.items() if any(r.tables for r in rs)]
        self.group_id = group_id
        self.progress = progress
        self.producer = producer
        self._on_failure = crash
        self._prepare = prepare
        self._on_assigned = list(on_assigned)
        self._on_revoked = list(on_revoked)
        self._timers = list(timers)
        self.emitter.await_deliveries()
        self.consumer: Any = None  # made in the running loop, on start
        self.owned: set[int] = set()  # partition numbers whose tables are loaded
        self._kept: set[int] = set()  # revoked, their tables' data kept for the next assignment
        self.committed: dict[TopicPartition, int] = {}
        self.assignments = 0  # completed assignments (readiness: joined at least once)
        self.rebalancing = False
        self._generation = 0  # +1 per revocation: a batch fetched before it is stale
        self._lock = asyncio.Lock()  # one batch, timer write, or rebalance step at a time
        self._stopping = False
        self._failure: BaseException | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._timer_task: asyncio.Task[None] | None = None
        self.stall = StallGuard(settings.session_timeout_s, _heartbeat_s(settings))
        self._watch_task: asyncio.Task[None] | None = None
        # sent, not yet settled: (deliveries, offsets to commit, last record per partition)
        self._in_flight: InFlight | None = None
        self._loose: list[asyncio.Future[Any]] = []  # timers' deliveries, not yet confirmed
        # replay first: the paused forward-only partitions; the tabled partitions still to read
        # up to (None: their end is not fetched yet), and how far each has been read
        self._held: list[TopicPartition] = []
        self._replay: dict[TopicPartition, int | None] = {}
        self._replayed: dict[TopicPartition, int] = {}
        self._held_since = 0.0

    @property
    def runner(self) -> StageRunner:
        """The first runner (a routing worker's only one)."""
        return self.runners[0]

    def _new_consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        fetch_min_bytes, fetch_max_wait_ms = s.fetch
        return AIOKafkaConsumer(
            **client_kwargs(s),
            group_id=self.group_id,
            client_id=f"{self.group_id}-direct",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            group_instance_id=s.consumer_group_instance_id,
            max_poll_records=s.consumer_max_poll_records,
            max_partition_fetch_bytes=_FETCH_PARTITION_BYTES,
            fetch_min_bytes=fetch_min_bytes,
            fetch_max_wait_ms=fetch_max_wait_ms,
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(_heartbeat_s(s) * 1000),
            request_timeout_ms=int(s.consumer_request_timeout_s * 1000),
            key_deserializer=None,
            value_deserializer=None,
        )

    @property
    def ready(self) -> bool:
        """Joined, and the tables of every assigned partition loaded."""
        return self.assignments > 0 and not self.rebalancing

    # -- service ----------------------------------------------------------------------------

    async def on_start(self) -> None:
        await self._prepare()
        await self.producer.start()
        self.consumer = self._new_consumer()
        await self.consumer.start()
        self.consumer.subscribe(self.inputs, listener=_Rebalance(self))
        self._loop_task = asyncio.ensure_future(self._run())
        self._watch_task = asyncio.ensure_future(self._watch())
        if self._timers:
            self._timer_task = asyncio.ensure_future(self._tick())

    async def on_stop(self) -> None:
        self._stopping = True
        for task in (self._timer_task, self._watch_task):
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
        if self._loop_task is not None:  # it ends after the batch in progress is committed
            await asyncio.wait([self._loop_task])
        if self.consumer is not None:
            await self.consumer.stop()  # leaves the group: the partitions move at once
        await self.producer.stop()
        log.info("direct_stage_stopped", committed=len(self.committed))

    async def _run(self) -> None:
        try:
            await self._consume()
        except Exception as exc:  # a failed delivery, a commit error, a broken assignment
            log.error("direct_stage_failed", error=repr(exc))
            self._on_failure(exc)

    async def _tick(self) -> None:
        while not self._stopping:
            await asyncio.sleep(TICK_SECONDS)  # a periodic timer, not a synchronisation
            await self.fire_timers()

    async def fire_timers(self) -> int:
        """The timers (every TICK_SECONDS); none while a stall's hold lasts, as the partitions
        they fire for may be another's. One that fails is logged, the next tick retries. How
        many ran."""
        if self.stall.holding():
            return 0
        for timer in self._timers:
            try:
                await timer()
            except Exception as exc:
                log.error("direct_timer_failed", timer=getattr(timer, "__qualname__", "?"),
                          error=repr(exc))  # fmt: skip
        return len(self._timers)

    async def _watch(self) -> None:
        while not self._stopping:
            await asyncio.sleep(StallGuard.TICK_SECONDS)  # a periodic check, not a synchronisation
            self.stall.tick()

    async def emit(self, records: Iterable[OutRecord], partition: int | None = None) -> None:
        """Write outside a batch (a timer): sent now, between two batches, and confirmed with
        the next settle (a failure stops the worker there, as a batch's would)."""
        async with self._lock:
            await self.emitter.emit(records, partition)
            self._loose.extend(await self.emitter.send_batched())

    async def _consume(self) -> None:
        consumer, max_records = self.consumer, self.settings.batch_max_records
        while not self._stopping:
            if self.stall.holding():  # until a heartbeat has told whether the member is gone
                await asyncio.sleep(StallGuard.TICK_SECONDS)  # a periodic check of the hold
                continue
            generation = self._generation
            batch = await consumer.getmany(timeout_ms=_IDLE_POLL_MS, max_records=max_records)
            if self._failure is not None:
                raise self._failure
            async with self._lock:
                if batch:
                    await self._process(batch, stale=generation != self._generation)
                else:  # idle: nothing to overlap the last batch's deliveries with
                    await self._settle()
                if self._held:
                    self._release_when_replayed()
        async with self._lock:  # stopping: the last batch is delivered and committed
            await self._settle()

    async def _process(self, batch: dict[TopicPartition, list[Any]], stale: bool) -> None:
        """Process and send; then settle the batch before (its deliveries overlapped this
        one's processing). A batch fetched before a rebalance, or records of a partition
        whose tables are not loaded, are put back unread (position moved back); a batch
        processed across a stall, unsent."""
        owned, routes = self.owned, self.routes
        tabled = self.tabled
        per_runner: dict[StageRunner, list[Any]] = {}
        offsets: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            if stale or (tp.partition not in owned and tp.topic in tabled):
                self._put_back(tp, records)
                continue
            for runner in routes[tp.topic]:
                per_runner.setdefault(runner, []).extend(records)
            offsets[tp] = records[-1].offset + 1
        if not offsets:
            return
        # in declaration order; aiokafka's timestamps are in milliseconds
        processed = [(runner, runner.process_messages(per_runner[runner], 0.001))
                     for runner in self.runners if per_runner.get(runner)]  # fmt: skip
        if self.stall.holding():  # stalled meanwhile: these partitions may be another's now
            for runner, _ in processed:
                runner.discard()
            for tp in offsets:
                self._put_back(tp, batch[tp])
            log.warning("direct_batch_put_back", partitions=len(offsets))
            return
        if self._held:
            self._replayed.update(offsets)
        for runner, out in processed:
            await runner.send(out)
        deliveries = await self.emitter.send_batched()
        last = [(tp.topic, tp.partition, records[-1].offset, records[-1].timestamp / 1000)
                for tp, records in batch.items() if tp in offsets]  # fmt: skip
        await self._settle()
        self._in_flight = (deliveries, offsets, last)

    def _put_back(self, tp: TopicPartition, records: list[Any]) -> None:
        """Read these records again (if the partition is still assigned)."""
        if tp in self.consumer.assignment():
            self.consumer.seek(tp, records[0].offset)

    async def _settle(self) -> None:
        """The batch in flight and the timers' writes: wait for their deliveries (a failure
        raises: no commit past it), then commit the batch's offsets."""
        loose, self._loose = self._loose, []
        if self._in_flight is None:
            await self.emitter.confirm(loose)
            return
        (deliveries, offsets, last), self._in_flight = self._in_flight, None
        await self.emitter.confirm(deliveries + loose)
        try:
            await self.consumer.commit(offsets)
        except CommitFailedError as exc:  # rebalanced meanwhile: the next owner replays it
            log.warning("commit_failed_rebalanced", error=str(exc), partitions=len(offsets))
            return
        self.committed.update(offsets)
        saw = self.progress.saw_last
        for topic, partition, offset, timestamp in last:
            saw(topic, partition, offset, timestamp)

    # -- rebalance (called by aiokafka's coordinator) ----------------------------------------

    async def revoked(self, revoked: list[TopicPartition]) -> None:
        self.rebalancing = True
        self._generation += 1
        for hook in self._on_revoked:  # before the wait: a timer fires nothing from now on
            hook(revoked)
        async with self._lock:  # the batch in progress has committed
            try:
                await self._settle()
            except Exception as exc:  # aiokafka only logs a listener's error: stop the loop
                self._failure = exc
                raise
            numbers = {tp.partition for tp in revoked}
            self._held, self._replay = [], {}  # a new assignment pauses afresh
            self._kept |= numbers & self.owned  # the next assignment keeps or drops their data
            self.owned -= numbers
            for tp in revoked:
                self.committed.pop(tp, None)
        log.info("direct_partitions_revoked", partitions=sorted(numbers),
                 tables_kept=sorted(self._kept))  # fmt: skip

    async def assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            async with self._lock:
                await self._load(assigned)
        except Exception as exc:  # aiokafka only logs a listener's error: stop the loop
            self._failure = exc
            raise
        self.assignments += 1
        self.rebalancing = False

    async def _load(self, assigned: list[TopicPartition]) -> None:
        started = time.perf_counter()
        numbers = check_co_partitioned(assigned, self.tabled)
        held = self.owned | self._kept  # data here from before (owned: a revocation missed)
        loader = ChangelogLoader(self.settings)
        kept = await self._still_current(loader, numbers & held)
        self._kept = set()
        for table in self.tables:  # not handed back, or written by another worker since
            table.drop_partitions(held - kept)
        targets = {TopicPartition(table.changelog, n): table.load for table in self.tables
                   for n in sorted(numbers - kept)}  # fmt: skip
        with gc_paused():
            records, ends = await loader.load_whole(targets)
        for table in self.tables:
            table.ends.update((tp.partition, end) for tp, end in ends.items()
                              if tp.topic == table.changelog)  # fmt: skip
        self.owned = numbers
        for tp in assigned:
            done = await self.consumer.committed(tp)
            if done is not None:
                self.committed[tp] = done
        for hook in self._on_assigned:
            await hook(numbers)
        self._hold_forward_only(assigned)
        log.info(
            "direct_partitions_assigned", partitions=sorted(numbers), tables_kept=sorted(kept),
            changelog_records=records, seconds=round(time.perf_counter() - started, 3),
        )  # fmt: skip

    async def _still_current(self, loader: ChangelogLoader, numbers: set[int]) -> set[int]:
        """Of `numbers` (their tables' data is here from before), those whose data is what a
        reload would read: no other worker has written their changelogs since."""
        if not numbers or not self.tables:
            return set()
        wanted = [TopicPartition(table.changelog, n) for table in self.tables for n in numbers]
        try:
            _, ends = await loader.offsets(wanted)
        except Exception as exc:  # a reload is always right
            log.warning("changelog_ends_unread", error=repr(exc))
            return set()
        return unchanged_since(numbers, self.tables, ends)

    def _hold_forward_only(self, assigned: list[TopicPartition]) -> None:
        held = [tp for tp in assigned if tp.topic not in self.tabled]
        replay = [tp for tp in assigned if tp.topic in self.tabled]
        if not held or not replay:
            return
        self._held, self._replay, self._replayed = held, dict.fromkeys(replay), {}
        self._held_since = time.monotonic()
        self.consumer.pause(*held)

    def _release_when_replayed(self) -> None:
        """Resume the held partitions once every tabled partition is read up to the end it
        had when first fetched (or the hold has lasted REPLAY_HOLD_SECONDS)."""
        consumer = self.consumer
        for tp, end in list(self._replay.items()):
            if end is None:
                end = self._replay[tp] = consumer.highwater(tp)  # known once fetched
                if end is None:
                    continue
            if max(self._replayed.get(tp, 0), self.committed.get(tp) or 0) >= end:
                del self._replay[tp]
        waited = time.monotonic() - self._held_since
        if self._replay and waited < REPLAY_HOLD_SECONDS:
            return
        assigned = consumer.assignment()
        consumer.resume(*(tp for tp in self._held if tp in assigned))
        log.info("direct_replay_done", seconds=round(waited, 3),
                 still_behind=sorted(f"{tp.topic}:{tp.partition}" for tp in self._replay))
        self._held, self._replay, self._replayed = [], {}, {}

    # -- metrics ----------------------------------------------------------------------------

    def positions(self) -> list[tuple[str, int, int | None, int | None]]:
        """(topic, partition, committed, high watermark) per assigned partition; read from
        the metrics thread, so a copy (empty while a rebalance changes it)."""
        if self.consumer is None:
            return []
        try:
            assigned = sorted(self.consumer.assignment())
            committed = dict(self.committed)
        except Exception:
            return []
        out = []
        for tp in assigned:
            try:
                high = self.consumer.highwater(tp)
            except Exception:
                high = None
            out.append((tp.topic, tp.partition, committed.get(tp), high))
        return out
