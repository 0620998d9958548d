"""SLA core benchmark, no Kafka: the deadline index and lifecycle firings at 1,000,000 tickets.

Run from the repository root (not collected by pytest):

    .venv/bin/python -m tests.bench.bench_sla [--pending 1000000] [--tickets 60000]

Prints, beside each target from issue 4:
- bytes per pending deadline held by the index (tracemalloc), with and without its own key;
- the cost of a timer tick when nothing is due;
- firings per second: index pops alone, and the whole core path (pop, read state, `on_tick`,
  store, re-index), plus that path with the state and output records serialised;
- time to rebuild the index from 1,000,000 serialised state records (changelog recovery
  simulated from memory);
- with `--broker`: on a real broker, the time a fresh `router worker` takes to recover N stored
  states from the `lifecycle` changelog and rebuild its index (wall clock, process start to
  `lifecycle_index_rebuilt`; `--recover 1000000` takes ~2 min to set up), beside a plain
  aiokafka consumer reading the same changelog as a baseline; below 1,000,000 states, a linear
  extrapolation to 1,000,000, labelled as such. Uses KAFKA_BOOTSTRAP_SERVERS, else starts a
  local broker:

    .venv/bin/python -m tests.bench.bench_sla --broker [--recover 200000] [--partitions 6]
Timings are process CPU time (other load on a shared machine does not count), best of
`--repeat` runs: per-core figures; the stage scales out by partitions across processes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from router.ids import ticket_id_for
from router.native import MODULES, compiled_modules
from router.sla.index import DeadlineIndex
from router.sla.lifecycle import on_tick, on_ticket_event
from router.sla.policy import SlaConfig, load_sla_config
from router.sla.render import render_output
from router.sla.state import (
    LifecycleState,
    SlaEventOut,
    decode_state,
    encode_state,
    index_entry,
    index_entry_from_json,
)
from schemas.message import Channel, Sender, SenderRole
from schemas.ticket import (
    Priority,
    RoutedTicket,
    SlaTerms,
    TicketEvent,
    TicketEventKind,
    TicketMessage,
)

OPENED = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
NOW_TS = OPENED.timestamp()
MONTH_SECONDS = 30 * 86_400
# (policy, queue) mixes: follow-the-sun business hours, a vendor calendar, and 24/7.
ROUTES = (("standard", "dept:payments"), ("vendor_standard", "vendor:acme"), ("vip", "dept:vip"))

TARGET_BYTES = 300
TARGET_IDLE_TICK_MS = 1.0
TARGET_FIRINGS_PER_S = 50_000
TARGET_RECOVERY_S = 60.0


def best_of(repeat: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeat))


def ticket_ids(count: int) -> Iterator[str]:
    return (ticket_id_for("email", f"thread-{n}") for n in range(count))


def due_times(count: int, seed: int = 7, base_ts: float = NOW_TS) -> list[float]:
    rng = random.Random(seed)
    return [base_ts + rng.uniform(60, MONTH_SECONDS) for _ in range(count)]


def routed_ticket(ticket_id: str, queue: str, policy: str) -> RoutedTicket:
    message = TicketMessage(
        seq=1,
        inbound_id="in-1",
        message_id="<m1@mail.example>",
        channel=Channel.EMAIL,
        sender=Sender(id="buyer-1", role=SenderRole.BUYER, name="Bea Buyer"),
        body="Hello, my parcel has not arrived and tracking has not moved for a week. " * 3,
        subject="Where is my order?",
        received_at=OPENED,
    )
    return RoutedTicket(
        ticket_id=ticket_id,
        queue=queue,
        priority=Priority.NORMAL,
        sla=SlaTerms(policy=policy),
        rule_id="vendor-queue",
        ruleset_version="1",
        channel=Channel.EMAIL,
        vendor_id="acme",
        opened_at=OPENED,
        message_count=1,
        messages=[message],
    )


def opened_state(config: SlaConfig, ticket_id: str, policy: str, queue: str) -> LifecycleState:
    event = TicketEvent(
        ticket_id=ticket_id,
        kind=TicketEventKind.ROUTED,
        at=OPENED,
        queue=queue,
        priority=Priority.NORMAL,
        sla_policy=policy,
        ticket=routed_ticket(ticket_id, queue, policy),
    )
    step = on_ticket_event(None, event, event_id="bench", now=OPENED, config=config)
    assert step.state is not None
    return step.state


def index_memory(pending: int) -> tuple[float, float]:
    """Bytes per entry: with the index holding its own key string, and with keys shared."""
    dues = due_times(pending)
    gc.collect()
    tracemalloc.start()
    index = DeadlineIndex()
    for due, key in zip(dues, ticket_ids(pending), strict=True):
        index.add(due, key)
    with_keys = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    key_bytes = sum(len(k) + 49 for k in ticket_ids(pending))  # ASCII str: 49 B + 1 B/char
    # The dues list already held the floats; the index keeps references to them.
    float_bytes = 24 * pending
    return (with_keys + float_bytes) / pending, (with_keys + float_bytes - key_bytes) / pending


def filled_index(pending: int) -> DeadlineIndex:
    index = DeadlineIndex()
    index.rebuild(zip(due_times(pending), ticket_ids(pending), strict=True))
    return index


def idle_tick_ms(index: DeadlineIndex, ticks: int) -> tuple[float, float]:
    """Mean and worst cost of `pop_due` with nothing due."""
    now = NOW_TS
    worst = 0.0
    started = time.process_time()
    for _ in range(ticks):
        before = time.process_time()
        assert index.pop_due(now) == []
        worst = max(worst, time.process_time() - before)
    mean = (time.process_time() - started) / ticks
    return mean * 1e3, worst * 1e3


def index_pop_rate(pending: int, due_now: int) -> float:
    index = filled_index(pending)
    for n, key in enumerate(ticket_ids(due_now)):
        index.add(NOW_TS - 1 - n * 1e-6, key)  # these tickets come due at once
    started = time.process_time()
    popped = index.pop_due(NOW_TS)
    elapsed = time.process_time() - started
    assert len(popped) == due_now
    return due_now / elapsed


def core_firing_rate(
    config: SlaConfig, tickets: int, *, serialise: bool, collector: bool = False
) -> float:
    """SLA events per second through pop, read state, `on_tick`, store, re-index.

    Driven like the timer: jump to the next due instant, fire everything due. The first six
    instants are the groups' warnings, breaches (raising priority) and escalations.

    The cyclic GC is paused in the loop unless `collector`: the worker's table holds encoded
    bytes, which the collector never walks, and a firing leaves no cycles behind; held here as
    objects, the stored states would make every full collection walk all of them (~25% of
    this loop at 60,000 tickets), a cost this bench would add and the worker does not have.
    """
    table: dict[str, LifecycleState] = {}
    index = DeadlineIndex()
    templates = [opened_state(config, "T-template", p, q) for p, q in ROUTES]
    for n, key in enumerate(ticket_ids(tickets)):
        state = templates[n % len(templates)].replace(ticket_id=key)
        table[key] = state
        index.add(state.next_due_ts or 0.0, key)
    fired, busy = 0, 0.0
    gc.collect()
    paused = not collector and gc.isenabled()
    if paused:
        gc.disable()
    for _ in range(2 * len(ROUTES)):
        due_ts = index.next_due()
        assert due_ts is not None
        now = datetime.fromtimestamp(due_ts, UTC)
        started = time.process_time()
        for key in index.pop_due(due_ts):
            step = on_tick(table[key], now, config=config)
            new_state = step.state
            assert new_state is not None
            table[key] = new_state
            entry = index_entry(new_state)
            if entry is not None:
                index.add(*entry)
            for output in step.outputs:
                if isinstance(output, SlaEventOut):
                    fired += 1
                    if serialise:  # the CloudEvent record the worker publishes
                        render_output(output)
            if serialise:
                encode_state(new_state)
        busy += time.process_time() - started
    if paused:
        gc.enable()
    return fired / busy


def serialised_records(config: SlaConfig, count: int, base_ts: float = NOW_TS) -> list[bytes]:
    """Stored states as the changelog holds them, one per ticket, due times spread out."""
    placeholder_due = 987_654_321.5
    templates = []
    for policy, queue in ROUTES:
        state = opened_state(config, "@TICKET@", policy, queue)
        state.next_due_ts = placeholder_due
        templates.append(encode_state(state))
    dues = due_times(count, seed=11, base_ts=base_ts)
    records = []
    for n, key in enumerate(ticket_ids(count)):
        raw = templates[n % len(templates)].replace(b"@TICKET@", key.encode())
        records.append(raw.replace(b"987654321.5", repr(dues[n]).encode()))
    return records


def recovery_seconds(records: list[bytes]) -> float:
    index = DeadlineIndex()
    started = time.process_time()
    index.rebuild(index_entry_from_json(raw) for raw in records)
    elapsed = time.process_time() - started
    assert len(index) == len(records)
    return elapsed


def full_decode_seconds_per_million(records: list[bytes], sample: int) -> float:
    started = time.process_time()
    for raw in records[:sample]:
        decode_state(raw)
    return (time.process_time() - started) * 1_000_000 / sample


def pure_python_core_rate(tickets: int, repeat: int) -> float:
    """`core_firing_rate` in a subprocess that imports the sources, not the extensions."""
    command = [sys.executable, "-m", "tests.bench.bench_sla", "--core-only"]
    command += ["--tickets", str(tickets), "--repeat", str(repeat)]
    env = {**os.environ, "ROUTER_NATIVE": "off"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def broker_recovery(count: int, partitions: int) -> None:
    """A fresh worker recovers `count` stored states from the changelog and rebuilds its index.

    Beside it, as a baseline on the same broker and data: a plain aiokafka consumer reading the
    whole changelog into a dict (what the worker's loader, `streams.kafka.changelog_recovery`, does
    before it takes the index entries)."""
    import os
    import tempfile
    import uuid
    from pathlib import Path

    from streams.local.broker import kafka_for_tests
    from tests.harness import WorkerProcess

    config = load_sla_config()
    # Due times in the future: the worker must not start firing while being measured.
    records = serialised_records(config, count, base_ts=time.time())
    size = sum(map(len, records)) / count
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    changelog = f"{prefix}ticket-router-lifecycle-changelog"
    with kafka_for_tests() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        keys = [key.encode() for key in ticket_ids(count)]  # serialised_records' order
        produce_s = asyncio.run(_load_changelog(bootstrap, changelog, partitions, keys, records))
        del records, keys
        raw_n, raw_s, raw_cpu = asyncio.run(_raw_read(bootstrap, changelog))
        worker = WorkerProcess(
            bootstrap, prefix, Path(tmp) / "data", Path(tmp) / "worker.log",
            extra_env={"ROUTER_PARTITIONS": str(partitions), "ROUTER_LOG_LEVEL": "INFO"},
        )
        started = time.monotonic()
        worker.start()
        try:
            rebuilt = _wait_for_rebuild(worker, count, timeout=900)
            wall = time.monotonic() - started
            assert worker.proc is not None
            rss_mb = _rss_mb(worker.proc.pid)
            cpu_s = _cpu_seconds(worker.proc.pid)
            loaded = _log_events(worker, "changelog_loaded")
        finally:
            worker.stop()
            asyncio.run(_delete_topics(bootstrap, prefix))
    rebuild_s = float(rebuilt["seconds"])
    lifecycle_loads = [e for e in loaded
                       if any("lifecycle-changelog" in tp for tp in e["partitions"])]
    fast = bool(lifecycle_loads)
    # plain-consumer load (streams.kafka.changelog_recovery), else faust's own path (first batch on)
    changelog_s = (sum(float(e["seconds"]) for e in lifecycle_loads) if fast
                   else float(rebuilt["changelog_seconds"]))
    fixed_s = wall - rebuild_s - changelog_s  # does not grow with the number of states
    scale = 1_000_000 / count
    print(f"\nReal-broker recovery: {count:,} stored states ({size:,.0f} B each), "
          f"{partitions} partitions, one fresh worker (os.cpu_count()={os.cpu_count()})\n")
    path = "plain consumer -> store" if fast else "faust's recovery"
    rows = [
        ("changelog loaded (producer, lz4)", f"{produce_s:.1f} s"),
        ("baseline: plain aiokafka consumer, whole changelog",
         f"{raw_n / raw_s:,.0f} records/s"),
        ("  its wall / CPU time", f"{raw_s:.1f} s / {raw_cpu:.1f} s"),
        (f"worker start -> index rebuilt (measured, {'<' if wall < 60 else '>='} 60 s)",
         f"{wall:.1f} s"),
        ("  process start and group join (fixed)", f"{fixed_s:.1f} s"),
        (f"  changelog read ({path})", f"{changelog_s:.1f} s"),
        ("  index rebuild after recovery", f"{rebuild_s:.2f} s"),
        ("  changelog read rate", f"{count / max(changelog_s, 1e-9):,.0f} states/s"),
        ("  changelog records / pending deadlines indexed",
         f"{rebuilt['changelog_records']:,} / {rebuilt['pending_deadlines']:,}"),
        ("  worker CPU time, start -> rebuilt (user + system)", f"{cpu_s:.1f} s"),
        ("  worker RSS after recovery", f"{rss_mb:,.0f} MB"),
    ]
    if count < 1_000_000:
        rows += [
            ("EXTRAPOLATED to 1,000,000 states: start -> rebuilt",
             f"{fixed_s + (changelog_s + rebuild_s) * scale:.0f} s"),
            ("  EXTRAPOLATED changelog read", f"{changelog_s * scale:.0f} s"),
            ("  EXTRAPOLATED index rebuild", f"{rebuild_s * scale:.1f} s"),
            ("  EXTRAPOLATED worker RSS (the in-memory store holds every state)",
             f"{rss_mb * scale:,.0f} MB"),
        ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>18}")
    print(f"\nload average (other work on this machine skews wall times): {os.getloadavg()}")


async def _raw_read(bootstrap: str, topic: str) -> tuple[int, float, float]:
    """Every record of `topic` into a dict with a plain consumer: (records, wall s, CPU s)."""
    from aiokafka import AIOKafkaConsumer

    from streams.kafka.compacted import topic_partitions

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        started, cpu = time.monotonic(), time.process_time()
        store: dict[bytes, bytes] = {}
        pending = {tp for tp in tps if ends[tp] > 0}
        n = 0
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for found in batch.values():
                n += len(found)
                for record in found:
                    store[record.key] = record.value
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return n, time.monotonic() - started, time.process_time() - cpu
    finally:
        await consumer.stop()


async def _load_changelog(
    bootstrap: str, topic: str, partitions: int, keys: list[bytes], records: list[bytes]
) -> float:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(
            topic, partitions, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20,
        compression_type="lz4", max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    started = time.monotonic()
    try:
        pending = []
        for key, raw in zip(keys, records, strict=True):  # default partitioner, as faust's
            pending.append(await producer.send(topic, raw, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def _delete_topics(bootstrap: str, prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


def _log_events(worker: Any, name: str) -> list[dict[str, Any]]:
    marker = f'"event":"{name}"'.encode()
    return [dict(orjson.loads(line[line.index(b"{"):]))
            for line in worker.log_path.read_bytes().splitlines() if marker in line]


def _wait_for_rebuild(worker: Any, count: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in _log_events(worker, "lifecycle_index_rebuilt"):
            if event["pending_deadlines"] >= count:
                return event
        if worker.proc.poll() is not None:
            raise RuntimeError(f"worker exited: {worker.log_text()}")
        time.sleep(0.1)  # wait-ok: poll interval of a loop bounded by a deadline
    raise TimeoutError(f"no full index rebuild within {timeout:.0f} s: {worker.log_text()}")


def _cpu_seconds(pid: int) -> float:
    import os
    from pathlib import Path

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    from pathlib import Path

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=1_000_000)
    parser.add_argument("--tickets", type=int, default=60_000, help="for the firing runs")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--broker", action="store_true", help="real-broker recovery only")
    parser.add_argument("--recover", type=int, default=200_000, help="states, with --broker")
    parser.add_argument("--partitions", type=int, default=6, help="with --broker")
    parser.add_argument("--core-only", action="store_true", help="print core firings/s only")
    args = parser.parse_args()
    if args.core_only:  # the pure-Python comparison run (a subprocess, ROUTER_NATIVE=off)
        config = load_sla_config()
        rate = best_of(args.repeat, lambda: core_firing_rate(config, args.tickets, serialise=False))
        print(f"{rate:.0f}")
        return
    if args.broker:
        broker_recovery(args.recover, args.partitions)
        return
    pending, tickets, repeat = args.pending, args.tickets, args.repeat
    config = load_sla_config()
    rows: list[tuple[str, str, str, str]] = []

    with_key, shared_key = index_memory(pending)
    rows.append(
        (
            "index bytes per pending deadline",
            f"{with_key:.0f} B",
            f"<= {TARGET_BYTES} B",
            verdict(with_key <= TARGET_BYTES),
        )
    )
    rows.append(("  same, key string shared with the table", f"{shared_key:.0f} B", "", ""))

    index = filled_index(pending)
    mean_ms, worst_ms = idle_tick_ms(index, ticks=100_000)
    rows.append(
        (
            "tick with nothing due (mean)",
            f"{mean_ms * 1e3:.2f} us",
            f"< {TARGET_IDLE_TICK_MS:g} ms",
            verdict(mean_ms < TARGET_IDLE_TICK_MS),
        )
    )
    rows.append(("  worst of 100,000 ticks", f"{worst_ms * 1e3:.1f} us", "", ""))
    del index

    pops = best_of(repeat, lambda: index_pop_rate(pending, due_now=pending // 10))
    rows.append(
        (
            f"index pops/s ({pending // 10:,} due at once)",
            f"{pops:,.0f}",
            f">= {TARGET_FIRINGS_PER_S:,}",
            verdict(pops >= TARGET_FIRINGS_PER_S),
        )
    )
    core = best_of(repeat, lambda: core_firing_rate(config, tickets, serialise=False))
    rows.append(
        (
            "core firings/s (pop, on_tick, store, re-index)",
            f"{core:,.0f}",
            f">= {TARGET_FIRINGS_PER_S:,}",
            verdict(core >= TARGET_FIRINGS_PER_S),
        )
    )
    compiled = compiled_modules()
    if compiled:  # the same measurement on the pure-Python sources, for the ratio
        pure = pure_python_core_rate(tickets, repeat)
        rows.append(
            (f"  same, pure Python (ROUTER_NATIVE=off): native is {core / pure:.2f}x",
             f"{pure:,.0f}", "", "")
        )
    collected = best_of(
        repeat, lambda: core_firing_rate(config, tickets, serialise=False, collector=True)
    )
    rows.append(("  same, cyclic GC on (the states held as objects)", f"{collected:,.0f}", "", ""))
    serial = best_of(repeat, lambda: core_firing_rate(config, tickets, serialise=True))
    rows.append(("  same, with state and SLA record serialised", f"{serial:,.0f}", "", ""))

    records = serialised_records(config, pending)
    size = sum(map(len, records)) / len(records)
    recovery = best_of(repeat, lambda: recovery_seconds(records))
    rows.append(
        (
            f"rebuild index from {pending:,} stored states",
            f"{recovery:.1f} s",
            f"< {TARGET_RECOVERY_S:g} s",
            verdict(recovery < TARGET_RECOVERY_S),
        )
    )
    rows.append(("  mean stored state size", f"{size:,.0f} B", "", ""))
    full = full_decode_seconds_per_million(records, sample=min(50_000, pending))
    rows.append(("  for comparison: full validation, per 1,000,000", f"{full:.1f} s", "", ""))

    width = max(len(r[0]) for r in rows)
    build = (
        f"native build: {len(compiled)} of {len(MODULES)} modules compiled"
        if compiled
        else "pure Python (no native build: `make native`)"
    )
    print(
        f"\nSLA core benchmark: {pending:,} pending deadlines, {tickets:,} tickets firing, "
        f"best of {repeat}; {build}\n"
    )
    print(f"{'measure':<{width}}  {'measured':>14}  {'target':>12}  verdict")
    for name, measured, target, result in rows:
        print(f"{name:<{width}}  {measured:>14}  {target:>12}  {result}")


if __name__ == "__main__":
    main()
