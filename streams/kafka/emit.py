"""The one way the engine writes records: `Emitter.emit`.

Every stage hands its `OutRecord`s here. The emitter applies the topic prefix, creates a queue
topic on first use, sends straight to the aiokafka producer that faust flushes before it
commits input offsets (so an offset is committed only once its outputs are durable; a runtime
that commits itself batches its records, sends them with `send_batched()` and awaits
`confirm()` first), never awaits a delivery one by one, and turns a delivery that failed for
good into a crash of the worker before anything commits past it.

Partitions are chosen as aiokafka's default partitioner does (murmur2 of the key, like the
Java client), computed once per key and topic layout: a routed message writes four or five
records with one key, and faust's `Producer.send` wrapper plus aiokafka's per-record murmur2
cost ~40 us per record.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import structlog
from aiokafka.partitioner import murmur2

from router.records import OutRecord
from schemas.topics import ON_DEMAND_PREFIXES
from streams.metrics import topic_family
from streams.settings import RouterSettings

log = structlog.get_logger("router.emit")

Headers = list[tuple[str, bytes]]


class Producer(Protocol):
    """What the emitter needs of aiokafka's producer (`AIOKafkaProducer`)."""

    @property
    def client(self) -> Any: ...  # aiokafka's client: cluster metadata and add_topic

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers | None = None,
    ) -> asyncio.Future[Any]: ...

    def create_batch(self) -> Any: ...  # a BatchBuilder: `append` returns None when full

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        ...


class TopicCreator(Protocol):
    async def ensure(self, logical: Iterable[str]) -> None: ...


async def track_topics(producer: Producer, topics: Iterable[str]) -> None:
    """Before the first send to topics the producer has no metadata for (queues created on
    demand): make its client track every topic it knows plus these, in one refresh. aiokafka
    otherwise narrows its metadata to the new topic alone, and a record already batched for
    another topic can wait for a leader indefinitely, stalling flush, hence commits and
    shutdown."""
    client = producer.client
    wanted = set(client.cluster.topics()) | set(topics)
    try:
        await asyncio.wait_for(asyncio.gather(*(client.add_topic(t) for t in wanted)), 30)
    except Exception as exc:  # the send itself still fetches the metadata it needs
        log.warning("producer_metadata_warmup_failed", topics=sorted(topics), error=repr(exc))


class KeyedSender:
    """Sends one record with the partition chosen once per (key, topic layout)."""

    def __init__(self, producer: Callable[[], Producer]) -> None:
        self._producer = producer
        self._partitions: dict[str, tuple[int, ...]] = {}
        self._tracked: set[str] = set()  # topics the producer has metadata for
        self._last_key: bytes | None = None
        self._last_hash = 0

    def _partition(self, producer: Producer, topic: str, key: bytes) -> int | None:
        parts = self._partitions.get(topic)
        if parts is None:
            known = producer.client.cluster.partitions_for_topic(topic)
            if not known:
                return None  # metadata not loaded yet: let aiokafka wait for it and choose
            parts = self._partitions[topic] = tuple(sorted(known))
        if key is not self._last_key and key != self._last_key:
            self._last_key, self._last_hash = key, murmur2(key) & 0x7FFFFFFF
        return parts[self._last_hash % len(parts)]

    async def prepare(self, topics: Iterable[str]) -> None:
        """Metadata for every topic about to be sent to, fetched once for all the new ones."""
        producer = self._producer()
        cluster = producer.client.cluster
        new = {t for t in topics if t not in self._tracked and not cluster.partitions_for_topic(t)}
        if new:
            await track_topics(producer, new)
        self._tracked.update(t for t in topics if cluster.partitions_for_topic(t))

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        producer = self._producer()
        if topic not in self._tracked:
            await self.prepare((topic,))
        if partition is None and key is not None:
            partition = self._partition(producer, topic, key)
        return await producer.send(topic, value, key=key, partition=partition, headers=headers)

    def forget(self, topic: str) -> None:
        """After a partition count change (rare): recompute from fresh metadata."""
        self._partitions.pop(topic, None)
        self._tracked.discard(topic)


class BatchedSends:
    """Records gathered per (topic, partition) into aiokafka batch builders, handed to the
    producer together by `submit`: no future, task or callback per record, one per batch
    (a routed message writes four or five records, ~15 us each through `send`). Records
    whose partition cannot be chosen here (no key, no metadata) go through `send`."""

    def __init__(self, sender: KeyedSender) -> None:
        self._sender = sender
        self._open: dict[tuple[str, int], Any] = {}  # (topic, partition) -> BatchBuilder
        self._submitted: list[asyncio.Future[Any]] = []

    async def add(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers,
        partition: int | None,
    ) -> None:  # fmt: skip
        sender = self._sender
        producer = sender._producer()
        if partition is None and key is not None and topic in sender._tracked:
            partition = sender._partition(producer, topic, key)
        if partition is None:
            self._submitted.append(await sender.send(topic, key, value, headers, partition))
            return
        builder = self._open.get((topic, partition))
        if builder is None:
            builder = self._open[(topic, partition)] = producer.create_batch()
        if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
            del self._open[(topic, partition)]  # full: it goes now, the record starts another
            self._submitted.append(await producer.send_batch(builder, topic, partition=partition))
            builder = self._open[(topic, partition)] = producer.create_batch()
            if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                del self._open[(topic, partition)]  # over the batch size alone: aiokafka says why
                self._submitted.append(await sender.send(topic, key, value, headers, partition))

    async def submit(self) -> list[asyncio.Future[Any]]:
        """Hand every open batch to the producer; the deliveries of all since the last call."""
        producer = self._sender._producer()
        batches, self._open = self._open, {}
        for (topic, partition), builder in batches.items():
            self._submitted.append(await producer.send_batch(builder, topic, partition=partition))
        submitted, self._submitted = self._submitted, []
        return submitted


class Emitter:
    """Writes records for every stage; `sent` counts them by topic family (for metrics)."""

    def __init__(
        self,
        settings: RouterSettings,
        sender: KeyedSender,
        topics: TopicCreator,
        on_delivery_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._physical = settings.topic
        self._sender = sender
        self._topics = topics
        self._ensured: set[str] = set()
        self._on_delivery_failure = on_delivery_failure
        self.sent: Counter[str] = Counter()
        self._batches: BatchedSends | None = None  # with `await_deliveries`
        self._families: dict[str, str] = {}  # logical topic -> its `sent` key

    def await_deliveries(self) -> None:
        """For a runtime that commits input offsets itself, rather than after faust's flush:
        records are batched until `send_batched()` sends them; `confirm()` awaits their
        delivery."""
        if self._batches is None:
            self._batches = BatchedSends(self._sender)

    async def send_batched(self) -> list[asyncio.Future[Any]]:
        """Send what is batched; the deliveries of every record since the last call."""
        return [] if self._batches is None else await self._batches.submit()

    async def confirm(self, deliveries: list[asyncio.Future[Any]]) -> None:
        """Wait for these deliveries; raises a failed one (after reporting it)."""
        if not deliveries:
            return
        try:
            await asyncio.gather(*deliveries)
        except Exception as exc:
            log.error("delivery_failed", error=repr(exc))
            if self._on_delivery_failure is not None:
                self._on_delivery_failure(exc)
            raise

    async def emit(self, records: Iterable[OutRecord], partition: int | None = None) -> None:
        """Hand records to the producer in order, without waiting for their delivery. Topics
        first seen in this call are created (queues) and looked up together, in one round
        trip each rather than one per topic."""
        records = records if isinstance(records, (list, tuple)) else list(records)
        new = {r.topic for r in records} - self._ensured
        if new:
            await self._prepare(new)
        sent, send, physical = self.sent, self._sender.send, self._physical
        batches, families = self._batches, self._families
        for record in records:
            topic = record.topic
            family = families.get(topic)
            if family is None:
                family = families[topic] = topic_family(topic)
            sent[family] += 1
            if batches is not None:
                await batches.add(
                    physical(topic), record.key, record.value, list(record.headers), partition
                )
                continue
            future = await send(
                physical(topic), record.key, record.value, list(record.headers), partition
            )
            future.add_done_callback(self._check_delivery)

    async def _prepare(self, topics: set[str]) -> None:
        queues = sorted(t for t in topics if t.startswith(ON_DEMAND_PREFIXES))  # appear on demand
        if queues:
            await self._topics.ensure(queues)
        await self._sender.prepare([self._physical(t) for t in sorted(topics)])
        self._ensured |= topics

    async def send_raw(
        self, physical_topic: str, key: bytes | None, value: bytes | None, partition: int
    ) -> None:
        """A record outside the logical topics (a table changelog), same delivery check."""
        if self._batches is not None:
            await self._batches.add(physical_topic, key, value, [], partition)
            return
        future = await self._sender.send(physical_topic, key, value, [], partition)
        future.add_done_callback(self._check_delivery)

    def _check_delivery(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error("delivery_failed", error=repr(exc))
            if self._on_delivery_failure is not None:
                self._on_delivery_failure(exc)
