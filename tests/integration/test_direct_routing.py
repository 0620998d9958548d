"""The `direct` routing runtime (streams/stages/direct.py) on a real broker: it routes as the
faust runtime does, from the same table changelog, and loses nothing across a SIGKILL, a
rebalance between two workers, a SIGTERM under load, or a restart."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from router.traffic import MarketplaceTraffic, TrafficRecord
from schemas import CloudEvent, DeadLetter, RoutedTicket
from streams.kafka.compacted import topic_partitions
from tests.factories import inbound_bytes
from tests.harness import (
    STOP_DEADLINE_S,
    Collector,
    Output,
    WorkerProcess,
    accounted_inbound_ids,
    produce,
    scrape,
    wait_for,
)
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_shutdown import SteadyLoad, committed_inbound

pytestmark = pytest.mark.integration

DIRECT = {"ROUTER_STAGE": "routing", "ROUTER_RUNTIME": "direct"}
FAUST = {"ROUTER_STAGE": "routing", "ROUTER_RUNTIME": "faust"}
LOAD_PER_S = 300
CHANNELS = ("email", "chat", "social")
ROUTED = ("queue.*", "channel.dlq", "tickets.decisions", "tickets.events")


def on(topic: str, outputs: list[Output]) -> list[Output]:
    return [o for o in outputs if o.topic == topic]


def queued(outputs: list[Output]) -> list[Output]:
    return [o for o in outputs if o.topic.startswith("queue.")]


def newest_inbound(output: Output) -> str:
    return str(output.value["data"]["messages"][-1]["inbound_id"])


def identity(output: Output) -> tuple[Any, ...]:
    """What a record is, without the times it was made at: replays and the other runtime
    must write the same."""
    data = output.value.get("data", {})
    return (output.topic, output.partition, output.key, output.value.get("id"),
            output.value.get("type"), data.get("ticket_id"), data.get("queue"),
            data.get("message_count"), data.get("reason"))  # fmt: skip


def check_replays_identical(outputs: list[Output]) -> int:
    """Every inbound id written more than once was written the same each time; how many."""
    by_inbound: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    copies: dict[str, int] = defaultdict(int)
    for out in queued(outputs):
        by_inbound[newest_inbound(out)].add(identity(out))
        copies[newest_inbound(out)] += 1
    assert {i: ids for i, ids in by_inbound.items() if len(ids) != 1} == {}
    return sum(1 for n in copies.values() if n > 1)


def check_tickets_continue(outputs: list[Output]) -> None:
    """Each ticket's messages were counted 1, 2, 3... across restarts and rebalances: every
    follow-up found its ticket's state (one lost would start again at 1, or skip)."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for out in queued(outputs):
        data = out.value["data"]
        counts[data["ticket_id"]][newest_inbound(out)] = data["message_count"]
    broken = {t: sorted(c.values()) for t, c in counts.items()
              if sorted(c.values()) != list(range(1, len(c) + 1))}  # fmt: skip
    assert broken == {}


def assigned_events(worker: WorkerProcess) -> list[dict[str, Any]]:
    """Each assignment a direct worker logged, oldest first."""
    return [orjson.loads(line[line.find("{"):]) for line in worker.log_text(10**7).splitlines()
            if '"direct_partitions_assigned"' in line]  # fmt: skip


def assignments(worker: WorkerProcess) -> list[list[int]]:
    """The partitions of each assignment a direct worker logged, oldest first."""
    return [event["partitions"] for event in assigned_events(worker)]


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def start_under_load(
    engine: EngineUnderTest, flowing: int, backlog: Sequence[TrafficRecord] = ()
) -> tuple[WorkerProcess, SteadyLoad, Collector]:
    """A direct worker under the steady load (after `backlog`), once `flowing` queue records
    are out."""
    worker = engine.start_worker(**DIRECT)
    for channel in CHANNELS:
        produce(engine.bootstrap, f"{engine.prefix}channel.{channel}",
                [(r.key, r.value) for r in backlog if r.channel == channel])  # fmt: skip
    load = SteadyLoad(engine.bootstrap, engine.prefix, LOAD_PER_S).start()
    collector = engine.collector("queue.*", "channel.dlq")
    try:
        collector.poll_until(lambda outs: len(queued(outs)) >= flowing, 120, "outputs to flow")
    except BaseException:
        load.stop()
        raise
    return worker, load, collector


def second_worker(engine: EngineUnderTest, first: WorkerProcess) -> WorkerProcess:
    """A second direct worker, once it and `first` have split the partitions between them."""
    second = engine.start_worker(**DIRECT)

    def shared() -> bool:
        mine, theirs = assignments(first), assignments(second)
        return bool(mine and theirs and mine[-1] and theirs[-1]
                    and sorted(mine[-1] + theirs[-1]) == [0, 1, 2])  # fmt: skip

    wait_for(shared, 60, "the two workers to split the partitions")
    return second


def carried_on(collector: Collector, produced: set[str]) -> int:
    """Every input came out, replays were identical, every ticket carried on; how many
    inputs were written more than once."""
    outputs = all_accounted(collector, produced)
    replayed = check_replays_identical(outputs)
    check_tickets_continue(outputs)
    return replayed


def more_queued(collector: Collector, n: int, what: str) -> None:
    """Wait until `n` more queue records than now have come out."""
    seen = len(queued(collector.outputs))
    collector.poll_until(lambda outs: len(queued(outs)) >= seen + n, 120, what)


def all_accounted(collector: Collector, produced: set[str]) -> list[Output]:
    return collector.poll_until(
        lambda outs: produced <= accounted_inbound_ids(outs), 120, "every input on a queue",
        describe=lambda outs: f"{len(produced - accounted_inbound_ids(outs))} missing")


def test_routes_follow_ups_and_dead_letters_and_reports_readiness_and_lag(
    engine: EngineUnderTest,
) -> None:
    worker = engine.start_worker(**DIRECT)
    engine.send("chat", [
        (b"sess-9", inbound_bytes("c-1", channel="chat", thread_ref="sess-9", vendor_id="bolt")),
        (b"sess-9", b'{"specversion": "1.0", "id": "broken"'),
        (b"sess-9", inbound_bytes("c-2", channel="chat", thread_ref="sess-9", vendor_id="bolt",
                                  body="Any news?")),
    ])  # fmt: skip
    outputs = engine.collector().poll_until(
        lambda outs: len(on("queue.vendor.bolt", outs)) >= 2 and bool(on("channel.dlq", outs)),
        90, "two routed records and one dead letter",
    )  # fmt: skip
    first, second = (CloudEvent[RoutedTicket].model_validate(o.value).data
                     for o in on("queue.vendor.bolt", outputs))  # fmt: skip
    assert first.ticket_id == second.ticket_id
    assert [m.inbound_id for m in second.messages] == ["c-1", "c-2"]
    letter = CloudEvent[DeadLetter].model_validate(on("channel.dlq", outputs)[0].value).data
    assert letter.reason == "invalid_json"

    url = worker.metrics_url()
    assert url is not None
    base = url.removesuffix("/metrics")
    status, body = get(f"{base}/readyz")
    assert (status, body["checks"]["partitions_assigned"]["ok"]) == (200, True), body
    assert get(f"{base}/healthz")[0] == 200

    def chat(name: str) -> dict[Any, float]:
        return {labels: v for (metric, labels), v in scrape(url).items()
                if metric == name and ("topic", "channel.chat") in labels}  # fmt: skip

    def lag_reported() -> bool:  # the chat partition that got the 3 records: committed, no lag
        lags = chat("router_consumer_lag")
        return sum(chat("router_consumer_committed_offset").values()) == 3 and bool(lags) and (
            not any(lags.values()))

    wait_for(lag_reported, 30, "the chat partition's committed offset and lag")
    assert scrape(url)[("router_worker_ready", ())] == 1
    counts = scrape(url)
    assert counts[("router_inbound_records_total", (("outcome", "followup"),))] == 1


def test_writes_what_the_faust_runtime_writes_for_the_same_input(
    engine: EngineUnderTest, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    faust = EngineUnderTest(kafka_bootstrap, f"{topic_prefix}faust.", tmp_path / "faust")
    (tmp_path / "faust").mkdir()
    traffic = MarketplaceTraffic(seed="direct-vs-faust", malformed_ratio=0.02)
    records = traffic.take(400)
    try:
        engine.start_worker(**DIRECT)
        faust.start_worker(**FAUST)
        for under_test in (engine, faust):
            for channel in CHANNELS:
                produce(kafka_bootstrap, f"{under_test.prefix}channel.{channel}",
                        [(r.key, r.value) for r in records if r.channel == channel])  # fmt: skip
        expected = {r.inbound_id for r in records if r.inbound_id}
        malformed = sum(1 for r in records if r.inbound_id is None)

        def complete(outs: list[Output]) -> bool:
            return (expected <= {newest_inbound(o) for o in queued(outs)}
                    and len(on("channel.dlq", outs)) >= malformed)  # fmt: skip

        direct_out = engine.collector(*ROUTED).poll_until(complete, 120, "the direct outputs")
        faust_out = faust.collector(*ROUTED).poll_until(complete, 120, "the faust outputs")
    finally:
        faust.stop_all()
        print(faust.logs())
    for topic in ("channel.dlq", "tickets.decisions", "tickets.events"):
        assert on(topic, direct_out), topic
    assert sorted(map(identity, direct_out)) == sorted(map(identity, faust_out))


def test_sigkill_under_load_then_restart_loses_nothing_and_replays_the_same_records(
    engine: EngineUnderTest,
) -> None:
    # a backlog, so the kill lands while batches are in flight
    backlog = MarketplaceTraffic(seed="direct-backlog", malformed_ratio=0.0).take(6000)
    first, load, collector = start_under_load(engine, 1500, backlog)
    try:
        first.kill()  # mid-load: no flush, no final commit
        second = engine.start_worker(**DIRECT)
        more_queued(collector, 300, "the second worker's outputs")
    finally:
        produced = load.stop() | {r.inbound_id for r in backlog if r.inbound_id}
    outputs = all_accounted(collector, produced)
    assert not on("channel.dlq", outputs)
    replayed = check_replays_identical(outputs)
    check_tickets_continue(outputs)
    print(f"{len(produced)} produced, {replayed} inbound ids written again after the SIGKILL")

    # The worst crash: nothing committed at all. Every record is read again over the state
    # its first pass left in the changelog, and writes what it wrote the first time.
    assert second.stop() == 0
    rewind(engine.bootstrap, f"{engine.prefix}ticket-router",
           [f"{engine.prefix}channel.{c}" for c in CHANNELS])  # fmt: skip
    engine.start_worker(**DIRECT)

    def twice(outs: list[Output]) -> int:
        return sum(1 for n in Counter(newest_inbound(o) for o in queued(outs)).values() if n >= 2)

    outputs = collector.poll_until(lambda outs: twice(outs) >= len(produced), 180,
                                   "every input written again",
                                   describe=lambda outs: f"{twice(outs)} of {len(produced)}")
    assert check_replays_identical(outputs) == len(produced)
    check_tickets_continue(outputs)


def rewind(bootstrap: str, group: str, topics: list[str]) -> None:
    """Commit offset 0 for every partition of `topics` in `group` (no member running)."""

    async def run() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                    enable_auto_commit=False)  # fmt: skip
        await consumer.start()
        try:
            partitions = [tp for t in topics for tp in await topic_partitions(consumer, t)]
            consumer.assign(partitions)
            await consumer.commit(dict.fromkeys(partitions, 0))
        finally:
            await consumer.stop()

    asyncio.run(run())


def test_two_workers_share_the_partitions_and_hand_them_back_without_loss(
    engine: EngineUnderTest,
) -> None:
    first, load, collector = start_under_load(engine, 300)
    try:
        second = second_worker(engine, first)
        # The first worker had every partition and nobody else wrote their changelogs: the
        # ones handed back keep their tables instead of being read again.
        split = assigned_events(first)[-1]
        assert split["tables_kept"] == split["partitions"]
        more_queued(collector, 300, "outputs from both workers")
        assert first.stop() == 0  # its partitions move back to the second worker
        wait_for(lambda: assignments(second)[-1] == [0, 1, 2], 60,
                 "the second worker to take every partition")  # fmt: skip
        before, after = assigned_events(second)[-2:]
        assert after["tables_kept"] == before["partitions"]  # its own; the others read back
        assert after["changelog_records"] > 0
        more_queued(collector, 300, "the second worker's outputs")
    finally:
        produced = load.stop()
    carried_on(collector, produced)


def test_sigterm_under_load_commits_what_it_wrote_and_exits_in_time(
    engine: EngineUnderTest,
) -> None:
    first, load, collector = start_under_load(engine, 600)
    try:
        started = time.monotonic()
        rc = first.stop()
        exit_s = time.monotonic() - started
    finally:
        produced = load.stop()
    assert rc == 0
    assert exit_s < STOP_DEADLINE_S
    committed = committed_inbound(engine.bootstrap, engine.prefix)
    before = collector.poll_until(lambda outs: len(queued(outs)) >= committed, 60,
                                  "the first worker's outputs")  # fmt: skip
    per_inbound: dict[str, int] = defaultdict(int)
    for out in queued(before):
        per_inbound[newest_inbound(out)] += 1
    # what it committed is exactly what it wrote, once each
    assert len(per_inbound) == committed
    assert {i: n for i, n in per_inbound.items() if n != 1} == {}

    engine.start_worker(**DIRECT)
    outputs = all_accounted(collector, produced)
    assert check_replays_identical(outputs) == 0  # nothing re-read after a clean stop
    check_tickets_continue(outputs)
    print(f"exit {rc} after {exit_s:.2f} s; {committed} committed of {len(produced)}")


def test_a_ticket_carries_on_across_restarts_and_both_runtimes(engine: EngineUnderTest) -> None:
    collector = engine.collector("queue.vendor.acme")

    def follow_up(n: int, runtime: dict[str, str]) -> RoutedTicket:
        worker = engine.start_worker(**runtime)
        engine.send("email", [(b"tr-1", inbound_bytes(f"tr-in-{n}", thread_ref="tr-1",
                                                      vendor_id="acme", body=f"message {n}"))])
        outs = collector.poll_until(lambda outs: any(newest_inbound(o) == f"tr-in-{n}"
                                                     for o in outs), 90, f"message {n}")
        assert worker.stop() == 0  # the next worker starts from the changelog alone
        routed = [o for o in outs if newest_inbound(o) == f"tr-in-{n}"]
        return CloudEvent[RoutedTicket].model_validate(routed[0].value).data

    # faust writes the ticket, direct loads it, a fresh direct worker loads it, faust again
    tickets = [follow_up(n, runtime) for n, runtime in
               enumerate([FAUST, DIRECT, DIRECT, FAUST], start=1)]  # fmt: skip
    assert [t.message_count for t in tickets] == [1, 2, 3, 4]
    assert len({t.ticket_id for t in tickets}) == 1
    assert [m.inbound_id for m in tickets[-1].messages] == [f"tr-in-{n}" for n in range(1, 5)]
