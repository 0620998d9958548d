"""`make demo`: a throwaway broker, the engine, realistic traffic, and a verified summary.

Everything the demo starts it also stops. It exits 0 only when every inbound record is
accounted for on a queue or on the dead-letter topic (`lost: 0`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from router.traffic import MarketplaceTraffic
from schemas.message import Channel
from schemas.topics import CHANNEL_DLQ, CHANNELS, QUEUE_PREFIX, QUEUE_VENDOR
from streams.kafka.client import client_kwargs
from streams.kafka.topics import ensure_core_topics
from streams.local.broker import LocalKafka
from streams.local.install import die_with_parent
from streams.settings import RouterSettings

REPO = Path(__file__).resolve().parent.parent
console = Console(stderr=False)


@dataclass
class Tally:
    sent_at: dict[str, float] = field(default_factory=dict)  # inbound id -> produce time (s)
    malformed_sent: int = 0
    first_seen: dict[str, float] = field(default_factory=dict)  # inbound id -> output ts (s)
    queues: Counter[str] = field(default_factory=Counter)
    dlq: Counter[str] = field(default_factory=Counter)
    dlq_ids: set[str] = field(default_factory=set)
    opened: set[str] = field(default_factory=set)
    metrics: str | None = None  # a few figures from the worker's /metrics, scraped at the end

    @property
    def lost(self) -> int:
        """Inbound records found neither on a queue nor on the dead-letter topic."""
        valid_missing = self.sent_at.keys() - self.first_seen.keys() - self.dlq_ids
        dlq_of_malformed = sum(self.dlq.values()) - len(self.dlq_ids & self.sent_at.keys())
        return len(valid_missing) + max(0, self.malformed_sent - dlq_of_malformed)


async def _collect(settings: RouterSettings, tally: Tally, stop: asyncio.Event) -> None:
    prefix = re.escape(settings.topic_prefix)
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    consumer.subscribe(pattern=rf"^{prefix}(queue\..*|channel\.dlq|tickets\.events)$")
    seen: set[tuple[str, int, int]] = set()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, records in batch.items():
                logical = settings.logical(tp.topic)
                for r in records:
                    if (tp.topic, tp.partition, r.offset) in seen:
                        continue
                    seen.add((tp.topic, tp.partition, r.offset))
                    _tally(tally, logical, orjson.loads(r.value), r.timestamp / 1000)
    finally:
        await consumer.stop()


def _tally(tally: Tally, logical: str, doc: dict[str, object], ts: float) -> None:
    data = doc["data"]
    assert isinstance(data, dict)
    if logical.startswith(QUEUE_PREFIX):
        inbound = data["messages"][-1]["inbound_id"]
        if inbound not in tally.first_seen:
            tally.first_seen[inbound] = ts
            tally.queues[data["queue"]] += 1
    elif logical == CHANNEL_DLQ.name:
        tally.dlq[data["reason"]] += 1
        original = data["original"]
        with contextlib.suppress(Exception):
            tally.dlq_ids.add(orjson.loads(original["value"])["id"])
    elif doc["type"] == "support.ticket.opened":
        tally.opened.add(str(data["ticket_id"]))


async def _produce(
    settings: RouterSettings,
    traffic: MarketplaceTraffic,
    tally: Tally,
    seconds: float,
    rate: int,
    progress: Progress,
) -> None:
    producer = AIOKafkaProducer(
        **client_kwargs(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    loop = asyncio.get_running_loop()
    # Warm up: time the traffic from when the engine is routing, not from when it boots.
    warmup = progress.add_task("waiting for the engine to join its consumer group", total=None)
    deadline = loop.time() + 120
    while not tally.first_seen and loop.time() < deadline:
        rec = traffic.next_record()
        if rec.inbound_id is not None:
            now = time.time()
            await producer.send_and_wait(
                settings.topic(CHANNELS[Channel(rec.channel)].name),
                rec.value,
                key=rec.key,
                timestamp_ms=int(now * 1000),
            )
            tally.sent_at.setdefault(rec.inbound_id, now)
        await asyncio.sleep(0.5)  # one probe per half second until the first is routed
    if not tally.first_seen:
        raise RuntimeError("the engine routed nothing within 120 s")
    progress.remove_task(warmup)
    task = progress.add_task("traffic", total=int(seconds * rate))
    start = loop.time()
    sent = 0
    try:
        while (elapsed := loop.time() - start) < seconds:
            due = int(elapsed * rate) + 1
            for _ in range(due - sent):
                rec = traffic.next_record()
                now = time.time()
                await producer.send(
                    settings.topic(CHANNELS[Channel(rec.channel)].name),
                    rec.value,
                    key=rec.key,
                    timestamp_ms=int(now * 1000),
                )
                if rec.inbound_id is None:
                    tally.malformed_sent += 1
                elif rec.inbound_id not in tally.sent_at:  # a re-sent id counts once
                    tally.sent_at[rec.inbound_id] = now
            sent = due
            progress.update(task, completed=sent, description=_status(tally, sent))
            await asyncio.sleep(0.05)  # pacing the generator, not synchronising on anything
        await producer.flush()
    finally:
        await producer.stop()


def _status(tally: Tally, sent: int) -> str:
    return (
        f"sent {sent:>6}  routed {len(tally.first_seen):>6}  "
        f"dlq {sum(tally.dlq.values()):>4}  tickets {len(tally.opened):>5}"
    )


def _start_worker(settings: RouterSettings, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "ROUTER_TOPIC_PREFIX": settings.topic_prefix,
        "ROUTER_PARTITIONS": str(settings.partitions),
        "ROUTER_DATA_DIR": str(settings.data_dir),
        "ROUTER_METRICS_PORT": "0",  # any free port: the URL is in the log (metrics_serving)
    }
    log = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "router", "worker"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent(os.getpid()),
    )


async def _run(settings: RouterSettings, seconds: float, rate: int, log_path: Path) -> Tally:
    traffic = MarketplaceTraffic(seed=int(time.time()))
    manager = await ensure_core_topics(settings)
    # Onboarding, as `router vendors provision` does it: each vendor's queue exists up front.
    await manager.ensure([QUEUE_VENDOR.of(v.id) for v in traffic.vendors])
    worker = _start_worker(settings, log_path)
    tally = Tally()
    stop = asyncio.Event()
    collector = asyncio.create_task(_collect(settings, tally, stop))
    try:
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            await _produce(settings, traffic, tally, seconds, rate, progress)
            drain = progress.add_task("draining", total=None)
            deadline = asyncio.get_running_loop().time() + 90
            while tally.lost and asyncio.get_running_loop().time() < deadline:
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited ({worker.returncode}); see {log_path}")
                progress.update(drain, description=_status(tally, len(tally.sent_at)))
                await asyncio.sleep(0.2)  # polling the tally with a deadline
    finally:
        stop.set()
        await collector
        tally.metrics = await asyncio.to_thread(_metrics_figures, log_path)
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
    return tally


def _metrics_figures(log_path: Path) -> str | None:
    """The worker's own account, from its Prometheus endpoint (what an SRE would scrape)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    url = None
    for line in log_path.read_text(errors="replace").splitlines():
        if '"metrics_serving"' in line:
            url = orjson.loads(line[line.find("{") :]).get("url")
    if not url:
        return None
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    inbound: Counter[str] = Counter()
    lag = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "router_inbound_records_total":
                inbound[sample.labels["outcome"]] += int(sample.value)
            elif sample.name == "router_consumer_lag":
                lag += sample.value
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(inbound.items()))
    return f"{url}: {outcomes}; consumer lag {lag:.0f}"


def _summary(tally: Tally) -> None:
    latencies = sorted(
        (tally.first_seen[i] - t) * 1000 for i, t in tally.sent_at.items() if i in tally.first_seen
    )
    table = Table(title="demo summary", show_header=False)
    table.add_row("messages in", str(len(tally.sent_at) + tally.malformed_sent))
    table.add_row("tickets opened", str(len(tally.opened)))
    for queue, count in tally.queues.most_common(12):
        table.add_row(f"  {queue}", str(count))
    if len(tally.queues) > 12:
        rest = sum(c for _, c in tally.queues.most_common()[12:])
        table.add_row(f"  ({len(tally.queues) - 12} more queues)", str(rest))
    table.add_row("dead-lettered", f"{sum(tally.dlq.values())} {dict(tally.dlq)}")
    if latencies:
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        table.add_row("end-to-end latency", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    if tally.metrics:
        table.add_row("worker metrics", tally.metrics)
    console.print(table)
    print(f"lost: {tally.lost}", flush=True)


def run_demo(seconds: float = 30, rate: int = 100) -> int:
    import logging

    logging.basicConfig(level=logging.CRITICAL)  # client retries are expected while topics settle
    workdir = REPO / ".cache" / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            console.print("starting a throwaway single-node Kafka (KRaft) ...")
            bootstrap = stack.enter_context(LocalKafka()).bootstrap
        settings = RouterSettings(
            kafka_bootstrap_servers=bootstrap,
            topic_prefix=f"demo{uuid.uuid4().hex[:6]}.",
            partitions=3,
            data_dir=workdir / "faust-data",
        )
        console.print(f"broker {bootstrap}, topics prefixed {settings.topic_prefix!r}")
        tally = asyncio.run(_run(settings, seconds, rate, workdir / "worker.log"))
        _summary(tally)
    return 0 if tally.lost == 0 else 1
