"""Operator tools over Kafka: tail a topic, read the engine's consumer lag."""

from __future__ import annotations

import asyncio
import sys

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.kafka.client import client_kwargs
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
    settings: RouterSettings, logical: str, *, from_beginning: bool, limit: int
) -> int:
    consumer = AIOKafkaConsumer(
        settings.topic(logical),
        **client_kwargs(settings),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    try:
        async for record in consumer:
            value = record.value.decode("utf-8", "replace") if record.value else ""
            sys.stdout.write(value + "\n")
            sys.stdout.flush()
            seen += 1
            if limit and seen >= limit:
                break
    finally:
        await consumer.stop()
    return seen


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
