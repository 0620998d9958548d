"""Every worker's own copy of a compacted topic: a groupless reader, caught up before processing.

`routing.rules` and `directory.vendors` are state every worker needs whole. A faust agent
would not do: its topic's partitions are shared out across the consumer group, so with the
1-partition rules topic only one worker would ever see a new ruleset. A `Follower` uses a
plain aiokafka consumer *without a group* instead (`group_id=None`: manual assignment of
every partition, nothing committed, no rebalances), so each worker reads every record.

Two phases:

- `catch_up()`: read every partition from the beginning to its end offset as of the call.
  `run_worker` awaits `catch_up_followers(app)` before faust starts, so the inbound agent
  never processes a channel record with state older than what the topic held at start.
- `follow()`: an `app.task` (started on every worker once faust is up) reading on from the
  catch-up's end offsets for as long as the app runs; a broken connection is retried with
  backoff from the first record not yet applied.

If the worker was not started through `run_worker`, the task catches up first, then follows.

`CompactedFollower` is the one way to do this: what a record does is its owner's (the rules
reload's handlers, the dispute policy's, or a `router.views.KeyedView` fold for the vendor
directory and the buyers changelog, see `view_follower`). `publish` writes records to one of
these topics (creating it first, should no worker have yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.structs import RecordMetadata

from router.views import KeyedView
from streams.kafka.client import client_kwargs, producer_kwargs
from streams.kafka.faust_internals import cluster_metadata
from streams.kafka.topics import TopicManager, core_topics
from streams.settings import RouterSettings

log = structlog.get_logger("router.follower")

CATCH_UP_TIMEOUT_S = 60.0
_POLL_MS = 500
_BACKOFF_S = (0.5, 30.0)  # first retry delay, cap

BatchHandler = Callable[[Sequence[ConsumerRecord[bytes, bytes]]], Awaitable[None]]


async def topic_partitions(
    consumer: AIOKafkaConsumer, topic: str, timeout: float = 10.0
) -> list[TopicPartition]:
    """The partitions of `topic`, from fresh cluster metadata.

    `consumer.partitions_for_topic` only knows topics the client already tracks (a groupless
    consumer tracks none before `assign`), so ask the cluster; a topic created a moment ago
    may take a few metadata rounds to show up everywhere. LookupError if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        cluster = await cluster_metadata(consumer)
        partitions = cluster.partitions_for_topic(topic)
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        if loop.time() > deadline:
            raise LookupError(f"topic {topic!r} does not exist")
        await asyncio.sleep(0.2)  # polling the metadata with a deadline


class CompactedReader:
    """Reads all partitions of one topic from the beginning, without a consumer group."""

    def __init__(self, settings: RouterSettings, logical: str, name: str) -> None:
        self.settings = settings
        self.logical = logical
        self.topic = settings.topic(logical)
        self.name = name
        self.positions: dict[int, int] = {}  # next offset to apply, per partition

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **client_kwargs(self.settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"{self.settings.topic_prefix}{self.settings.app_id}-{self.name}",
            key_deserializer=None,
            value_deserializer=None,
        )

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        tps = await topic_partitions(consumer, self.topic)
        consumer.assign(tps)
        fresh = [tp for tp in tps if tp.partition not in self.positions]
        if fresh:
            await consumer.seek_to_beginning(*fresh)
        for tp in tps:
            if tp.partition in self.positions:
                consumer.seek(tp, self.positions[tp.partition])
        return tps

    async def read_to_end(
        self, timeout: float = CATCH_UP_TIMEOUT_S
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Every record from the current positions up to the end offsets at call time, in
        partition then offset order; the positions move to those end offsets."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        consumer = self._consumer()
        await consumer.start()
        try:
            tps = await self._assign(consumer)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
            got: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {tp: [] for tp in tps}
            pending = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
            while pending:
                if loop.time() > deadline:
                    raise TimeoutError(
                        f"{self.topic}: not read to its end offsets within {timeout:.0f} s"
                    )
                batch = await consumer.getmany(*pending, timeout_ms=_POLL_MS)
                for tp, records in batch.items():
                    got[tp].extend(r for r in records if r.offset < ends[tp])
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
        finally:
            await consumer.stop()
        for tp in tps:
            self.positions[tp.partition] = ends[tp]
        return [r for tp in tps for r in got[tp]]

    async def follow(self, handle: BatchHandler) -> None:
        """Apply each new batch (records of one fetch, partition then offset order) for ever.

        Positions advance only after `handle` returns: if it raises, or the connection
        breaks, the same records are handed over again after a backoff."""
        delay = _BACKOFF_S[0]
        while True:
            consumer = self._consumer()
            try:
                await consumer.start()
                tps = await self._assign(consumer)
                delay = _BACKOFF_S[0]
                while True:
                    batch = await consumer.getmany(*tps, timeout_ms=1000)
                    records = [r for tp in sorted(batch) for r in batch[tp]]
                    if not records:
                        continue
                    await handle(records)
                    for r in records:
                        self.positions[r.partition] = r.offset + 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("follower_failed", topic=self.logical, error=repr(exc), retry_in_s=delay)
                await asyncio.sleep(delay)  # backoff before reconnecting, not a synchronisation
                delay = min(delay * 2, _BACKOFF_S[1])
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()


class CompactedFollower:
    """One compacted topic on every worker: `catch_up` hands `load` every record up to the
    end offsets as of the call; `follow` then hands `update` each new batch, for ever."""

    def __init__(
        self,
        settings: RouterSettings,
        logical: str,
        name: str,
        *,
        load: BatchHandler,
        update: BatchHandler | None = None,
    ) -> None:
        self.reader = CompactedReader(settings, logical, name)
        self._load = load
        self._update = update or load
        self.caught_up = False

    async def catch_up(self) -> None:
        await self._load(await self.reader.read_to_end())
        self.caught_up = True

    async def follow(self) -> None:
        await self.reader.follow(self._update)


def view_follower(
    settings: RouterSettings,
    logical: str,
    view: KeyedView[Any],
    *,
    name: str,
    what: str,
    invalid: str,
    key_field: str = "key",
    log_updates: bool = True,
) -> CompactedFollower:
    """A follower folding `logical` into `view` (`router.views`), logging as `<what>_loaded`,
    `<what>_updated` (keys changed; `log_updates`) and `invalid` (a record skipped)."""
    logger = structlog.get_logger(f"router.{name}")

    def fold(records: Sequence[ConsumerRecord[bytes, bytes]]) -> list[str]:
        folded = view.apply(records)
        for bad in folded.invalid:
            logger.warning(invalid, **{key_field: bad.key}, partition=bad.partition,
                           offset=bad.offset, error=bad.error)  # fmt: skip
        return folded.changed

    async def load(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        fold(records)
        logger.info(f"{what}_loaded", **{name: len(view)}, records=len(records))

    async def update(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        changed = fold(records)
        if changed and log_updates:
            logger.info(f"{what}_updated", **{name: len(view)}, changed=changed[:50])

    return CompactedFollower(settings, logical, name, load=load, update=update)


_FOLLOWERS: weakref.WeakKeyDictionary[Any, list[CompactedFollower]] = weakref.WeakKeyDictionary()


def install_follower(app: Any, follower: CompactedFollower) -> None:
    """Register `follower` for `catch_up_followers(app)` and follow it in an app task."""
    _FOLLOWERS.setdefault(app, []).append(follower)

    async def follow_task() -> None:
        if not follower.caught_up:
            await follower.catch_up()
        await follower.follow()

    follow_task.__name__ = f"follow_{follower.reader.name}"
    app.task(follow_task)


async def catch_up_followers(app: Any) -> None:
    """Catch every follower of `app` up (concurrently); call before faust starts."""
    await asyncio.gather(*(f.catch_up() for f in _FOLLOWERS.get(app, ())))


async def publish(
    settings: RouterSettings, logical: str, records: Sequence[tuple[bytes, bytes | None]]
) -> list[RecordMetadata]:
    """Write (key, value) records to the registry topic `logical` (created as the registry
    says if missing), in order; where each landed."""
    await TopicManager(settings).ensure([logical], core_topics(settings))
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    try:
        topic = settings.topic(logical)
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        return [await future for future in futures]
    finally:
        await producer.stop()
