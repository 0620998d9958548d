"""Operator tools over Kafka: tail a topic, read one whole, read the engine's consumer lag."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from router.lag import Offsets, PartitionLag, partition_lags
from streams.kafka.client import client_kwargs
from streams.kafka.compacted import topic_partitions
from streams.kafka.rules_topic import bounded_records
from streams.settings import RouterSettings


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer. aiokafka 0.14 raises CancelledError from stop() when it is stopped
    before its no-group coordinator task first ran; swallow that, but not a real cancel."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def tail_topic(
    settings: RouterSettings,
    logical: str,
    *,
    from_beginning: bool,
    limit: int,
    until_end: bool = False,
) -> int:
    """Write a topic's record values to stdout, one per line; returns how many.

    Stops after `limit` records (0: no limit). With `until_end`, also stops at the end offsets
    the partitions had when the tail started (at once when they are empty, or when starting
    at the end); without it, it follows the topic until interrupted.
    LookupError when `until_end` is given and the topic does not exist."""
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    try:
        if until_end:
            tps = await topic_partitions(consumer, settings.topic(logical), timeout=5.0)
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            if from_beginning:
                await consumer.seek_to_beginning(*tps)
            else:
                await consumer.seek_to_end(*tps)
            records: AsyncIterator[Any] = bounded_records(consumer, ends)
        else:
            consumer.subscribe([settings.topic(logical)])
            records = aiter(consumer)
        async for record in records:
            value = record.value.decode("utf-8", "replace") if record.value else ""
            sys.stdout.write(value + "\n")
            sys.stdout.flush()
            seen += 1
            if limit and seen >= limit:
                break
    finally:
        await stop_consumer(consumer)
    return seen


async def topic_values(settings: RouterSettings, logical: str) -> list[bytes]:
    """Every record value of a topic, from the beginning to the end offsets it had when read
    (empty when the topic does not exist). `earliest`: with aiokafka's default (`latest`)
    this read nothing after the seek to the beginning."""
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        try:
            tps = await topic_partitions(consumer, settings.topic(logical), timeout=5.0)
        except LookupError:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        return [record.value async for record in bounded_records(consumer, ends) if record.value]
    finally:
        await stop_consumer(consumer)


async def group_offsets(settings: RouterSettings, groups: list[str]) -> list[Offsets]:
    """Committed and end offsets of every partition each group has committed, read together
    (one admin client, one consumer)."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        committed = {group: await admin.list_consumer_group_offsets(group) for group in groups}
    finally:
        await admin.close()
    tps = sorted({TopicPartition(tp.topic, tp.partition) for c in committed.values() for tp in c})
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps) if tps else {}
    finally:
        await stop_consumer(consumer)
    at = time.time()
    out = []
    for group, offsets in committed.items():
        for tp, meta in offsets.items():
            done = meta.offset if meta.offset >= 0 else None
            end = ends[TopicPartition(tp.topic, tp.partition)]
            out.append(Offsets(group, tp.topic, tp.partition, done, end, at))
    return out


async def oldest_timestamps(
    settings: RouterSettings, offsets: list[Offsets], timeout_s: float = 5.0
) -> dict[tuple[str, str, int], float]:
    """The timestamp (unix seconds) of the first unprocessed record of each lagging partition:
    the record at the committed offset (or the earliest kept, when retention removed it)."""
    behind = [o for o in offsets if o.lag]
    if not behind:
        return {}
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings), enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=64 * 1024,
    )  # fmt: skip
    await consumer.start()
    found: dict[TopicPartition, float] = {}
    try:
        wanted = {TopicPartition(o.topic, o.partition): o.committed or 0 for o in behind}
        consumer.assign(list(wanted))
        for tp, offset in wanted.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        while len(found) < len(wanted) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=len(wanted) * 4)
            for tp, records in batch.items():
                if records and tp not in found:
                    found[tp] = records[0].timestamp / 1000
                    consumer.pause(tp)
    finally:
        await stop_consumer(consumer)
    return {
        (o.group, o.topic, o.partition): found[TopicPartition(o.topic, o.partition)]
        for o in behind
        if TopicPartition(o.topic, o.partition) in found
    }


async def engine_lag(
    settings: RouterSettings, before: list[Offsets] | None = None
) -> tuple[list[Offsets], list[PartitionLag]]:
    """The engine's groups (routing, and lifecycle and scores when they run on their own; a
    group that committed nothing lists nothing): this read, and its figures with rates against
    `before`."""
    stages = ("routing", "lifecycle", "scores")
    groups = list(dict.fromkeys(settings.group_id(stage) for stage in stages))
    now = await group_offsets(settings, groups)
    return now, partition_lags(now, await oldest_timestamps(settings, now), before)
