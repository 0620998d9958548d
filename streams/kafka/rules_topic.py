"""Kafka side of the rule language: publish rulesets, read their history, replay messages.

- `publish_ruleset`: one CloudEvent (`support.ruleset.published`, key = ruleset name) on
  the compacted `routing.rules` topic; workers validate and switch on their side.
- `ruleset_history`: every ruleset record still on the topic, oldest first.
- `read_messages`: raw inbound records (with key and position) of a channel topic from a
  point in time up to the end offsets at call time (a bounded replay for `router simulate
  --topic`).

Plain async functions over aiokafka: no faust app, no consumer group, nothing committed.
`**client` passes extra aiokafka settings (security protocol, SASL: see
`streams.kafka.client.client_kwargs`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.envelope import envelope
from schemas.rules_event import RULESET_PUBLISHED
from schemas.topics import ROUTING_RULES
from streams.kafka.compacted import topic_partitions

_POLL_MS = 500
IDLE_TIMEOUT_S = 30


@dataclass(frozen=True, slots=True)
class Published:
    topic: str
    partition: int
    offset: int
    key: str


@dataclass(frozen=True, slots=True)
class RulesetRecord:
    name: str
    version: str
    partition: int
    offset: int
    timestamp: datetime
    published_at: str | None
    source: str | None
    rules: int | None  # number of rules in the document, when readable
    value: bytes


async def publish_ruleset(
    bootstrap: str,
    topic: str,
    ruleset_doc: Mapping[str, Any],
    *,
    source: str = "router-cli",
    **client: Any,
) -> Published:
    """Write a validated ruleset document (see `RulesetDoc.to_document`) to `topic`."""
    name = str(ruleset_doc["name"])
    version = str(ruleset_doc["version"])
    value = orjson.dumps(
        envelope(
            event_id=f"{name}@{version}",
            source=source,
            event_type=RULESET_PUBLISHED,
            time=datetime.now(UTC),
            subject=name,
            data=dict(ruleset_doc),
        )
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **client
    )
    await producer.start()
    try:
        md = await producer.send_and_wait(topic, value=value, key=name.encode("utf-8"))
    finally:
        await producer.stop()
    return Published(topic, md.partition, md.offset, name)


async def bounded_records(
    consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]
) -> AsyncIterator[Any]:
    """Records from the consumer's current positions up to `ends` (exclusive).

    Raises TimeoutError when no partition advances for IDLE_TIMEOUT_S (broker gone)."""
    pending = {tp for tp, end in ends.items() if await consumer.position(tp) < end}
    idle_polls = 0
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=_POLL_MS)
        idle_polls = 0 if batch else idle_polls + 1
        if idle_polls * _POLL_MS > IDLE_TIMEOUT_S * 1000:
            raise TimeoutError(f"no records for {IDLE_TIMEOUT_S}s with {len(pending)} "
                               "partitions still behind their end offsets")  # fmt: skip
        for tp, records in batch.items():
            for record in records:
                if record.offset < ends[tp]:
                    yield record
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """LookupError when the topic does not exist."""
    return await topic_partitions(consumer, topic, timeout=2.0)


async def ruleset_history(
    bootstrap: str, topic: str = ROUTING_RULES.name, **client: Any
) -> list[RulesetRecord]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
        **client,
    )  # fmt: skip
    await consumer.start()
    out: list[RulesetRecord] = []
    try:
        tps = await _partitions(consumer, topic)
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        async for record in bounded_records(consumer, ends):
            out.append(_ruleset_record(record))
    finally:
        await consumer.stop()
    out.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
    return out


def _ruleset_record(record: Any) -> RulesetRecord:
    value: bytes = record.value or b""
    key = record.key.decode("utf-8", "replace") if record.key else "?"
    doc: Any = {}
    event: Any = {}
    try:
        event = orjson.loads(value)
        doc = event.get("data", {}) if isinstance(event, dict) else {}
    except orjson.JSONDecodeError:
        pass
    rules = doc.get("rules") if isinstance(doc, dict) else None
    return RulesetRecord(
        name=str(doc.get("name", key)) if isinstance(doc, dict) else key,
        version=str(doc.get("version", "?")) if isinstance(doc, dict) else "?",
        partition=record.partition,
        offset=record.offset,
        timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        published_at=event.get("time") if isinstance(event, dict) else None,
        source=event.get("source") if isinstance(event, dict) else None,
        rules=len(rules) if isinstance(rules, list) else None,
        value=value,
    )


async def message_backlog(bootstrap: str, topic: str, from_time: datetime, **client: Any) -> int:
    """How many records `read_messages` would go through (for a progress bar)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        starts = await _start_offsets(consumer, tps, from_time)
        ends = await consumer.end_offsets(tps)
        return sum(max(0, ends[tp] - starts[tp]) for tp in tps)
    finally:
        await consumer.stop()


async def _start_offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], from_time: datetime
) -> dict[TopicPartition, int]:
    ts = int(from_time.timestamp() * 1000)
    found = await consumer.offsets_for_times(dict.fromkeys(tps, ts))
    ends = await consumer.end_offsets(tps)
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}


@dataclass(frozen=True, slots=True)
class TopicRecord:
    topic: str  # physical
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


async def read_messages(
    bootstrap: str, topic: str, from_time: datetime, **client: Any
) -> AsyncIterator[TopicRecord]:
    """Records of `topic` written at or after `from_time`, up to the end offsets at start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        consumer.assign(tps)
        starts = await _start_offsets(consumer, tps, from_time)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        async for record in bounded_records(consumer, ends):
            yield TopicRecord(topic, record.partition, record.offset, record.key, record.value,
                              record.timestamp)  # fmt: skip
    finally:
        await consumer.stop()
