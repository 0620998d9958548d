"""Operator tools over Kafka: tail a topic, read one whole, read the engine's consumer lag."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

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


async def read_values(settings: RouterSettings, logical: str) -> list[bytes]:
    """Every record value of a topic up to the end offsets it had when the read began, each
    partition in order (the latest record of a key comes last). LookupError: no such topic."""
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, settings.topic(logical), timeout=5.0)
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        return [r.value async for r in bounded_records(consumer, ends) if r.value]
    finally:
        await stop_consumer(consumer)


async def group_lag(
    settings: RouterSettings, group: str | None = None
) -> list[tuple[str, int, int, int]]:
    """(topic, partition, committed, end) for each partition `group` (default: the settings'
    worker's) has committed."""
    group = group or settings.group_id()
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(tp.topic, tp.partition) for tp in offsets]
        ends = await consumer.end_offsets(tps) if tps else {}
    finally:
        await stop_consumer(consumer)
    return sorted(
        (tp.topic, tp.partition, meta.offset, ends[TopicPartition(tp.topic, tp.partition)])
        for tp, meta in offsets.items()
    )
