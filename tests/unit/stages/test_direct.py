"""The direct routing runtime's pieces without Kafka: co-partitioned assignment, the table's
load and revocation, deliveries awaited before a commit."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from streams.settings import RouterSettings
from streams.stages.direct import CoPartitioningError, check_co_partitioned
from streams.stages.routing import INPUTS
from streams.stages.runner import BatchTable
from tests.factories import inbound_bytes
from tests.unit.stages.test_runner import Message, Producer, build

Record = namedtuple("Record", "key value")


class Cluster:
    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.counts[topic]))


def assign(counts: dict[str, int], members: int) -> dict[str, list[TopicPartition]]:
    subscription = sorted(counts)
    meta = {f"member-{n}": ConsumerProtocolMemberMetadata(0, subscription, b"")
            for n in range(members)}  # fmt: skip
    out = RangePartitionAssignor.assign(Cluster(counts), meta)
    return {member: [TopicPartition(topic, p) for topic, parts in a.assignment for p in parts]
            for member, a in out.items()}  # fmt: skip


@pytest.mark.parametrize("members", [1, 2, 3, 4, 5, 7])
def test_range_assignment_gives_each_worker_the_same_partitions_of_every_input(
    members: int,
) -> None:
    inputs = [RouterSettings().topic(t) for t in INPUTS]
    assigned = assign(dict.fromkeys(inputs, 6), members)
    numbers = [check_co_partitioned(tps, inputs) for tps in assigned.values()]
    # every partition number on exactly one worker, with every input topic's partition of it
    assert sorted(n for ns in numbers for n in ns) == list(range(6))
    for tps in assigned.values():
        assert len(tps) == len(inputs) * len({tp.partition for tp in tps})


def test_unequal_partition_counts_are_refused() -> None:
    counts = {"channel.email": 6, "channel.chat": 4}
    first, _ = assign(counts, 2).values()  # email 0-2 beside chat 0-1
    with pytest.raises(CoPartitioningError, match="same partition count"):
        check_co_partitioned(first, sorted(counts))


def test_table_loads_its_changelog_and_drops_revoked_partitions() -> None:
    data: dict[bytes, bytes] = {}
    owner: dict[bytes, int] = {}
    table = BatchTable(data, owner, "changelog")
    table.load(0, [Record(b"a", b"1"), Record(b"b", b"1"), Record(b"a", b"2")])
    table.load(1, [Record(b"c", b"1"), Record(b"d", b"1"), Record(b"d", None)])
    assert data == {b"a": b"2", b"b": b"1", b"c": b"1"}  # last value wins, tombstone deletes
    assert table.drop_partitions({0}) == 2
    assert data == {b"c": b"1"}
    assert owner == {b"c": 1}


def test_awaited_deliveries_raise_a_failed_one_before_the_commit() -> None:
    async def run(producer: Producer) -> None:
        runner, *_, emitter = build(producer)
        emitter.await_deliveries()
        message = Message("p.channel.email", 0, 0, b"thread-1", inbound_bytes("e-1"),
                          timestamp=1.7e12)  # fmt: skip
        await runner.run_messages([message], 0.001)
        await emitter.delivered()

    asyncio.run(run(Producer()))
    with pytest.raises(RuntimeError, match="not delivered"):
        asyncio.run(run(Producer(fail_on="tickets.decisions")))


def test_aiokafka_timestamps_reach_the_processor_in_seconds() -> None:
    seen: list[Any] = []

    async def run() -> None:
        runner, *_ = build(Producer())
        process = runner.processor.process

        def recording(record: Any, now: Any) -> Any:
            seen.append(record)
            return process(record, now)

        runner.processor.process = recording
        message = Message("p.channel.email", 2, 7, b"thread-1", inbound_bytes("e-1"),
                          timestamp=1_700_000_000_000)  # fmt: skip
        await runner.run_messages([message], 0.001)

    asyncio.run(run())
    assert [(r.topic, r.partition, r.offset, r.timestamp) for r in seen] == [
        ("channel.email", 2, 7, 1_700_000_000.0)
    ]
