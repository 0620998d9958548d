"""The stage runner without Kafka: batches, coalesced table writes, outputs before state."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from router.clock import FakeClock
from router.default_policy import DefaultPolicy
from router.stages.routing import PolicyHolder, RoutingProcessor
from streams.kafka.emit import Emitter, KeyedSender
from streams.settings import RouterSettings
from streams.stages.runner import BatchTable, StageRunner
from tests.factories import inbound_bytes


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float = 1.7e9
    headers: tuple[()] = ()


@dataclass
class Event:
    message: Message


class Producer:
    """aiokafka's producer as the emitter sees it; records every send in order."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.sent: list[tuple[str, bytes | None, int | None]] = []
        self.fail_on = fail_on

    class client:
        class cluster:
            @staticmethod
            def partitions_for_topic(topic: str) -> set[int]:
                return {0, 1, 2}

    async def send(self, topic: str, value: bytes | None = None, **kwargs: Any) -> Any:
        self.sent.append((topic, kwargs.get("key"), kwargs.get("partition")))
        return self.delivery(topic)

    def delivery(self, topic: str) -> asyncio.Future[None]:
        """Delivered at once, or failed for a topic ending in `fail_on`."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_on is not None and topic.endswith(self.fail_on):
            done.set_exception(RuntimeError("not delivered"))
        else:
            done.set_result(None)
        return done


class Topics:
    def __init__(self) -> None:
        self.ensured: list[str] = []

    async def ensure(self, logical: Any) -> None:
        self.ensured.extend(logical)


def build(producer: Producer, failures: list[BaseException] | None = None) -> Any:
    settings = RouterSettings(KAFKA_BOOTSTRAP_SERVERS="unused:9092", topic_prefix="p.")
    topics = Topics()
    emitter = Emitter(settings, KeyedSender(lambda: producer), topics,  # type: ignore[arg-type,return-value]
                      (failures.append if failures is not None else None))  # fmt: skip
    data: dict[bytes, bytes] = {}
    owner: dict[bytes, int] = {}
    table = BatchTable(data, owner, "p.ticket-router-tickets-changelog")
    processor = RoutingProcessor(table, PolicyHolder(DefaultPolicy()), max_record_bytes=65536)
    runner = StageRunner(processor, [table], emitter, FakeClock(), settings.logical)
    return runner, data, owner, topics, emitter


def events(*values: tuple[int, int, bytes]) -> list[Event]:
    return [Event(Message("p.channel.email", part, off, b"thread-1", v)) for part, off, v in values]


def test_one_changelog_write_per_key_per_batch_after_the_outputs() -> None:
    producer = Producer()
    runner, data, owner, topics, emitter = build(producer)
    batch = events((2, 0, inbound_bytes("e-1")), (2, 1, inbound_bytes("e-2")),
                   (2, 2, inbound_bytes("e-3")))  # fmt: skip
    asyncio.run(runner.run(batch))
    changelog = [s for s in producer.sent if s[0].endswith("-changelog")]
    assert changelog == [("p.ticket-router-tickets-changelog", b"email\x1fthread-1", 2)]
    assert producer.sent[-1][0].endswith("-changelog")  # state after every output
    assert owner == {b"email\x1fthread-1": 2}
    assert len(data) == 1
    assert topics.ensured == ["queue.vendor.acme"]  # a queue topic is ensured once
    assert emitter.sent["queue.vendor"] == 3
    assert runner.processor.counts == {"opened": 1, "followup": 2}


def test_reads_within_a_batch_see_the_batch_s_own_writes() -> None:
    producer = Producer()
    runner, *_ = build(producer)
    asyncio.run(runner.run(events((0, 0, inbound_bytes("e-1")), (0, 1, inbound_bytes("e-1")))))
    assert runner.processor.counts == {"opened": 1, "duplicate": 1}


def test_a_failed_delivery_is_reported_for_the_worker_to_crash() -> None:
    failures: list[BaseException] = []
    runner, *_ = build(Producer(fail_on="tickets.decisions"), failures)
    asyncio.run(runner.run(events((0, 0, inbound_bytes("e-1")))))
    assert [str(f) for f in failures] == ["not delivered"]


def test_batch_table_deletes_and_iterates_over_pending_writes() -> None:
    table = BatchTable({b"a": b"1", b"b": b"2"}, {b"a": 0, b"b": 0}, "changelog")
    table.partition = 1
    table[b"c"] = b"3"
    del table[b"a"]
    assert sorted(table) == [b"b", b"c"]
    assert len(table) == 2
    assert b"a" not in table
    with pytest.raises(KeyError):
        del table[b"zz"]
