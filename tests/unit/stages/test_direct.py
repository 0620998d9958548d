"""The direct runtime's pieces without Kafka: co-partitioned assignment, the table's load and
revocation, deliveries awaited before a commit, the forward-only inputs held until the tabled
ones are replayed."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from schemas.topics import LIFECYCLE_TABLE, TICKETS_EVENTS
from streams.settings import ROUTING_FETCH, STAGE_FETCH, RouterSettings
from streams.stages.direct import (
    REPLAY_HOLD_SECONDS,
    CoPartitioningError,
    DirectStage,
    StallGuard,
    check_co_partitioned,
    unchanged_since,
)
from streams.stages.host import DirectHost
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


class Sent:
    """The part of the emitter a table's flush uses."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, int]] = []

    async def send_raw(self, topic: str, key: bytes | None, value: bytes | None,
                       partition: int) -> None:  # fmt: skip
        self.records.append((topic, key, value, partition))


def test_a_table_knows_where_its_changelog_ends_after_its_own_writes() -> None:
    table = BatchTable({}, {}, "changelog")
    table.load(0, [Record(b"a", b"1")])
    table.ends[0] = 1  # what the whole load read up to
    sent = Sent()
    table.partition = 0
    table[b"a"] = b"2"
    table[b"b"] = b"1"
    table.partition = 1  # not loaded here: no end known, none made up
    table[b"c"] = b"1"
    asyncio.run(table.flush(sent))  # type: ignore[arg-type]  # the part of Emitter it calls
    assert len(sent.records) == 3
    assert table.ends == {0: 3}
    table.partition = 0
    del table[b"b"]  # a tombstone takes an offset too
    asyncio.run(table.flush(sent))  # type: ignore[arg-type]
    assert table.ends == {0: 4}
    table.drop_partitions({0})
    assert table.ends == {}


def test_a_partition_handed_back_is_kept_only_where_no_other_worker_wrote_its_changelogs() -> None:
    tickets, index = BatchTable({}, {}, "tickets-cl"), BatchTable({}, {}, "index-cl")
    tickets.ends, index.ends = {0: 10, 1: 4, 2: 7}, {0: 3, 1: 2}
    now = {TopicPartition("tickets-cl", 0): 10, TopicPartition("index-cl", 0): 3,
           TopicPartition("tickets-cl", 1): 5, TopicPartition("index-cl", 1): 2,  # written
           TopicPartition("tickets-cl", 2): 7, TopicPartition("index-cl", 2): 0}  # fmt: skip
    # 0: both end where this worker left them; 1: another worker wrote; 2: never loaded here
    assert unchanged_since({0, 1, 2}, [tickets, index], now) == {0}
    assert unchanged_since({0}, [tickets, index], {}) == set()  # ends unknown: read again


class Index:
    """What a deadline index is told by the table it follows."""

    def __init__(self) -> None:
        self.loaded: list[tuple[int, list[tuple[bytes, bytes | None]]]] = []
        self.recovered: list[set[int]] = []
        self.suspended = 0

    def changelog_loaded(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        self.loaded.append((partition, records))

    async def on_recovered(self, partitions: set[int]) -> None:
        self.recovered.append(partitions)

    def suspend(self) -> None:
        self.suspended += 1


def test_a_direct_host_table_feeds_the_index_it_follows_and_routes_by_physical_topic() -> None:
    settings = RouterSettings(topic_prefix="p.")
    unused: Any = None  # the emitter, clock, producer and topics: only used once started
    host = DirectHost(settings, unused, unused, unused, unused, crash=lambda exc: None)
    table = host.table(LIFECYCLE_TABLE, "per-ticket state")
    assert table.changelog == "p.ticket-router-lifecycle-changelog"
    index = Index()
    table.follow(index)  # type: ignore[arg-type]  # the part of Deadlines a table calls
    table.load(2, [Record(b"a", b"1"), Record(b"b", b"1"), Record(b"b", None)])
    assert index.loaded == [(2, [(b"a", b"1"), (b"b", b"1"), (b"b", None)])]
    assert table.local.get(b"a") == b"1"
    assert table.local.get(b"b") is None
    assert table.local.keys_by_partition({2}) == {2: [b"a"]}
    assert table.local.keys_by_partition({0, 1}) == {}
    (rebuild,) = host.assigned_hooks
    asyncio.run(rebuild({2}))
    assert index.recovered == [{2}]
    (suspend,) = host.revoked_hooks
    suspend([TopicPartition("p.tickets.events", 2)])
    assert index.suspended == 1
    runner: Any = object()
    host.stage("lifecycle", [TICKETS_EVENTS.name], runner)
    assert host.routes == {"p.tickets.events": [runner]}
    with pytest.raises(RuntimeError, match="not built"):
        asyncio.run(host.emit([]))


class Builder:
    """aiokafka's BatchBuilder: full after `room` records."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.records: list[tuple[bytes | None, bytes | None]] = []

    def append(self, *, timestamp: Any, key: bytes | None, value: bytes | None,
               headers: Any) -> Any:  # fmt: skip
        if len(self.records) >= self.room:
            return None
        self.records.append((key, value))
        return object()


class BatchingProducer(Producer):
    def __init__(self, fail_on: str | None = None, room: int = 3) -> None:
        super().__init__(fail_on)
        self.room = room
        self.batches: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []

    def create_batch(self) -> Builder:
        return Builder(self.room)

    async def send_batch(self, batch: Builder, topic: str, *, partition: int) -> Any:
        self.batches.append((topic, partition, batch.records))
        return self.delivery(topic)


def run_batch(producer: BatchingProducer, *values: bytes) -> list[BaseException]:
    failures: list[BaseException] = []

    async def run() -> None:
        runner, *_, emitter = build(producer, failures)
        emitter.await_deliveries()
        messages = [Message("p.channel.email", 0, n, b"thread-1", v, timestamp=1.7e12)
                    for n, v in enumerate(values)]  # fmt: skip
        await runner.run_messages(messages, 0.001)
        # only full batches go before `send_batched`
        assert all(len(records) == producer.room for *_, records in producer.batches)
        await emitter.confirm(await emitter.send_batched())

    asyncio.run(run())
    return failures


def test_records_go_in_one_batch_per_partition_when_deliveries_are_awaited() -> None:
    producer = BatchingProducer(room=3)
    run_batch(producer, *(inbound_bytes(f"e-{n}") for n in range(4)))
    assert producer.sent == []  # no record went through `send`
    by_topic: dict[str, list[int]] = {}
    for topic, _, records in producer.batches:
        by_topic.setdefault(topic.removeprefix("p."), []).append(len(records))
    assert by_topic["queue.vendor.acme"] == [3, 1]  # full at 3: a second batch
    assert by_topic["ticket-router-tickets-changelog"] == [1]  # one write per key per batch
    assert list(by_topic)[-1] == "ticket-router-tickets-changelog"  # state after the outputs


def test_awaited_deliveries_raise_a_failed_one_before_the_commit() -> None:
    assert run_batch(BatchingProducer(), inbound_bytes("e-1")) == []
    with pytest.raises(RuntimeError, match="not delivered"):
        run_batch(BatchingProducer(fail_on="tickets.decisions"), inbound_bytes("e-1"))


def test_aiokafka_timestamps_reach_the_processor_in_seconds() -> None:
    seen: list[Any] = []

    async def run() -> None:
        runner, *_ = build(Producer())
        processor = runner.processor

        class Recording:  # a wrapper: the processor's class may be compiled (mypyc)
            notes = processor.notes

            def process(self, record: Any, now: Any) -> Any:
                seen.append(record)
                return processor.process(record, now)

        runner.processor = Recording()
        message = Message("p.channel.email", 2, 7, b"thread-1", inbound_bytes("e-1"),
                          timestamp=1_700_000_000_000)  # fmt: skip
        await runner.run_messages([message], 0.001)

    asyncio.run(run())
    assert [(r.topic, r.partition, r.offset, r.timestamp) for r in seen] == [
        ("channel.email", 2, 7, 1_700_000_000.0)
    ]


class PausingConsumer:
    """The part of aiokafka's consumer the replay-first hold uses."""

    def __init__(self, assigned: list[TopicPartition]) -> None:
        self.assigned = set(assigned)
        self.paused: set[TopicPartition] = set()
        self.high: dict[TopicPartition, int] = {}

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused -= set(tps)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.high.get(tp)

    def assignment(self) -> set[TopicPartition]:
        return self.assigned


def replaying_stage() -> tuple[DirectStage, PausingConsumer, TopicPartition, TopicPartition]:
    runner, *_, emitter = build(Producer())
    forward: Any = type("Forward", (), {"tables": []})()  # a runner that writes no table
    routes = {"p.tickets.events": [runner], "p.tickets.actions": [forward]}
    unused: Any = None
    stage = DirectStage(RouterSettings(topic_prefix="p."), routes, [], emitter, "group", unused,
                        unused, lambda exc: None, unused)  # fmt: skip
    events, actions = TopicPartition("p.tickets.events", 0), TopicPartition("p.tickets.actions", 0)
    consumer = stage.consumer = PausingConsumer([events, actions])
    stage._hold_forward_only([events, actions])
    return stage, consumer, events, actions


def test_forward_only_inputs_wait_until_the_tabled_ones_are_read_to_their_first_end() -> None:
    stage, consumer, events, actions = replaying_stage()
    assert consumer.paused == {actions}
    stage._release_when_replayed()  # the end of tickets.events is not fetched yet
    assert consumer.paused == {actions}
    consumer.high[events] = 5
    stage._replayed[events] = 3
    stage._release_when_replayed()
    assert consumer.paused == {actions}
    consumer.high[events] = 9  # written meanwhile: the end to reach stays the first one seen
    stage._replayed[events] = 5
    stage._release_when_replayed()
    assert consumer.paused == set()
    assert stage._held == []


def test_the_hold_ends_after_its_longest_wait_even_if_the_replay_does_not() -> None:
    stage, consumer, events, actions = replaying_stage()
    consumer.high[events] = 5
    stage._release_when_replayed()
    assert consumer.paused == {actions}
    stage._held_since -= REPLAY_HOLD_SECONDS
    stage._release_when_replayed()
    assert consumer.paused == set()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_stall_longer_than_the_session_allows_holds_processing_for_two_heartbeats() -> None:
    clock = Clock()
    guard = StallGuard(session_s=10.0, heartbeat_s=3.0, clock=clock)
    for _ in range(20):  # ticking on time: never holds
        clock.now += StallGuard.TICK_SECONDS
        guard.tick()
        assert not guard.holding()
    clock.now += 6.9  # shorter than session - heartbeat: the member cannot have been evicted
    assert not guard.holding()
    guard.tick()
    clock.now += 7.5  # seen before the next tick
    assert guard.holding()
    assert guard.stalls == 1
    clock.now += 5.9
    guard.tick()
    assert guard.holding()  # two heartbeats (6 s) from when it was seen
    clock.now += 0.2
    assert not guard.holding()
    clock.now += 8.0
    guard.tick()  # seen by the tick this time
    assert guard.holding()
    assert guard.stalls == 2


def test_no_timer_fires_while_a_stall_is_held() -> None:
    fired: list[int] = []

    async def timer() -> None:
        fired.append(1)

    *_, emitter = build(Producer())
    unused: Any = None
    stage = DirectStage(RouterSettings(topic_prefix="p."), {}, [], emitter, "group", unused,
                        unused, lambda exc: None, unused, timers=[timer])  # fmt: skip
    clock = Clock()
    stage.stall = StallGuard(session_s=10.0, heartbeat_s=3.0, clock=clock)
    assert asyncio.run(stage.fire_timers()) == 1
    clock.now += 8.0
    assert asyncio.run(stage.fire_timers()) == 0
    clock.now += 6.1
    assert asyncio.run(stage.fire_timers()) == 1
    assert fired == [1, 1]


class SeekingConsumer:
    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.seeks: list[tuple[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


def test_a_batch_processed_across_a_stall_is_put_back_unsent_and_processed_after_the_hold(
) -> None:
    producer = BatchingProducer(room=100)
    runner, data, _, _, emitter = build(producer)
    unused: Any = None
    stage = DirectStage(RouterSettings(topic_prefix="p."), {"p.channel.email": [runner]},
                        runner.tables, emitter, "group", unused, unused, lambda exc: None,
                        unused)  # fmt: skip
    clock = Clock()
    stage.stall = StallGuard(session_s=10.0, heartbeat_s=3.0, clock=clock)
    tp = TopicPartition("p.channel.email", 0)
    consumer = stage.consumer = SeekingConsumer({tp})
    stage.owned = {0}
    batch = {tp: [Message("p.channel.email", 0, 7 + n, b"thread-1", inbound_bytes(f"e-{n}"),
                          timestamp=1.7e12) for n in range(3)]}  # fmt: skip

    clock.now += 8.0  # the process stood still (between the fetch and the send, say)
    asyncio.run(stage._process(batch, stale=False))
    assert producer.batches == []  # nothing sent
    assert data == {}  # the batch's table writes are forgotten
    assert consumer.seeks == [(tp, 7)]  # read again from its first record
    assert stage._in_flight is None  # nothing to commit

    clock.now += 6.1  # the hold is over and no revocation came: still this worker's
    asyncio.run(stage._process(batch, stale=False))
    assert {topic.removeprefix("p.") for topic, _, _ in producer.batches} >= {
        "queue.vendor.acme", "ticket-router-tickets-changelog"}
    assert len(data) == 1
    assert stage._in_flight is not None


@pytest.mark.parametrize(
    ("env", "fetch"),
    [
        ({"stage": "all"}, ROUTING_FETCH),
        ({"stage": "routing"}, ROUTING_FETCH),
        ({"stage": "lifecycle"}, STAGE_FETCH),
        ({"stage": "scores"}, STAGE_FETCH),
        ({"stage": "lifecycle", "consumer_fetch_max_wait_ms": 0}, (STAGE_FETCH[0], 0)),
        ({"stage": "routing", "consumer_fetch_min_bytes": 4096}, (4096, ROUTING_FETCH[1])),
    ],
)
def test_a_worker_that_routes_fetches_without_waiting_and_the_others_wait_for_fuller_fetches(
    env: dict[str, Any], fetch: tuple[int, int]
) -> None:
    assert RouterSettings(**env).fetch == fetch
