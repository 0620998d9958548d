"""The gateway under load: requests/s and p50/p99 per request, from a load-generator process,
next to producing the same messages straight to Kafka from one process, in the same run.

    python tests/bench/bench_gateway.py [--messages N] [--concurrency C] [--batch B]

Both sides write the same plain chat messages (already wrapped for the direct side, as the
gateway would write them) to the same broker with the engine's producer settings (acks=all,
idempotent); each keeps C messages awaiting Kafka's acknowledgement at a time, so a latency on
either side is "sent until acknowledged". The gateway runs as `router gateway`, the load
generator in a process of its own (aiohttp client, C connections, requests signed before the
clock starts). A third figure sends the same messages in batches of B through `:batch`.
A benchmark prints figures; it is never a test. On a 2-core machine the broker, the gateway
and the generator share the cores: the ratios say more than the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make `router`, `streams`, `tests` importable
    sys.path.insert(0, str(REPO))

from router.intake.request import Record, read_document  # noqa: E402
from router.intake.signature import SIGNATURE_HEADER, SOURCE_HEADER, sign  # noqa: E402
from schemas.message import Channel  # noqa: E402
from streams.local.broker import kafka_for_tests  # noqa: E402
from tests.gateway_support import (  # noqa: E402
    SECRET,
    SOURCE,
    GatewayProcess,
    create_channel_topics,
    gateway_settings,
)
from tests.harness import wait_for  # noqa: E402

PATH = "/v1/channels/chat/messages"


def messages(n: int, run: str) -> list[dict[str, Any]]:
    return [
        {
            "channel": "chat", "message_id": f"{run}-{i}", "thread_ref": f"{run}-t{i % 500}",
            "sender": {"id": f"buyer-{i % 97}", "role": "buyer"}, "vendor_id": "acme",
            "body": "Hello, my parcel has not arrived yet and the tracking page shows nothing "
            "since Tuesday. Could you check with the carrier? " * 3,
        }
        for i in range(n)
    ]  # fmt: skip


def percentiles(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000}


async def load(url: str, bodies: list[bytes], concurrency: int, path: str) -> dict[str, Any]:
    """The load generator: C connections, each sending its share back to back."""
    import aiohttp

    now = int(time.time())
    requests = [
        (body, {"Content-Type": "application/json", SOURCE_HEADER: SOURCE,
                SIGNATURE_HEADER: sign(SECRET.encode(), body, now)})
        for body in bodies
    ]  # fmt: skip
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector) as session:

        async def client() -> None:
            for body, headers in queue:
                started = time.perf_counter()
                async with session.post(path, data=body, headers=headers) as response:
                    await response.read()
                latencies.append(time.perf_counter() - started)
                statuses[response.status] = statuses.get(response.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"requests": len(requests), "seconds": elapsed, "statuses": statuses,
            **percentiles(latencies)}  # fmt: skip


async def direct(
    bootstrap: str, topic: str, records: list[Record], concurrency: int
) -> dict[str, Any]:
    """The baseline: the same records from one aiokafka producer, C awaiting acks at a time."""
    from aiokafka import AIOKafkaProducer

    from streams.kafka.client import producer_kwargs
    from streams.settings import RouterSettings

    settings = RouterSettings(kafka_bootstrap_servers=bootstrap)
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    latencies: list[float] = []
    queue = iter(records)
    try:

        async def client() -> None:
            for record in queue:
                started = time.perf_counter()
                await (await producer.send(topic, record.value, key=record.key))
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return {"requests": len(records), "seconds": elapsed, **percentiles(latencies)}


def child(mode: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Run one side in a process of its own; its figures come back as JSON on stdout."""
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(orjson.dumps(payload))
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", mode, f.name], check=True, capture_output=True,
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    finally:
        os.unlink(f.name)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def run_child(mode: str, file: str) -> None:
    p = orjson.loads(Path(file).read_bytes())
    if mode == "direct":
        records = [
            Record(r["id"], "channel.chat", r["key"].encode(), r["value"].encode())
            for r in p["records"]
        ]
        result = asyncio.run(direct(p["bootstrap"], p["topic"], records, p["concurrency"]))
    else:
        bodies = [b.encode() for b in p["bodies"]]
        result = asyncio.run(load(p["url"], bodies, p["concurrency"], p["path"]))
    sys.stdout.write(json.dumps(result))


def bench(bootstrap: str, args: argparse.Namespace) -> None:
    prefix = f"bench{int(time.time())}."
    settings = gateway_settings(bootstrap, prefix)
    create_channel_topics(settings)
    now = datetime.now(UTC)
    docs = {run: messages(args.messages, run) for run in ("direct", "gateway", "batch")}
    records = []
    for doc in docs["direct"]:  # wrapped as the gateway wraps them
        record = read_document(Channel.CHAT, doc, SOURCE, now, settings.max_record_bytes)
        assert isinstance(record, Record), record
        records.append(record)
    gateway = GatewayProcess(
        {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ROUTER_TOPIC_PREFIX": prefix,
         "ROUTER_GATEWAY_RATE_PER_S": "1000000", "ROUTER_GATEWAY_RATE_BURST": "1000000",
},
        Path(tempfile.mkdtemp()) / "gateway.log",
    ).start()  # fmt: skip
    try:
        wait_for(lambda: gateway.get("/readyz").status == 200, 60, "the gateway ready")
        base = child("direct", {
            "bootstrap": bootstrap, "topic": settings.topic("channel.chat"),
            "concurrency": args.concurrency,
            "records": [{"id": r.event_id, "key": r.key.decode(), "value": r.value.decode()}
                        for r in records],
        })  # fmt: skip
        single = child("load", {
            "url": gateway.url, "path": PATH, "concurrency": args.concurrency,
            "bodies": [orjson.dumps(d).decode() for d in docs["gateway"]],
        })  # fmt: skip
        batched = child("load", {
            "url": gateway.url, "path": PATH + ":batch",
            "concurrency": max(1, args.concurrency // 8),
            "bodies": [orjson.dumps(docs["batch"][i : i + args.batch]).decode()
                       for i in range(0, args.messages, args.batch)],
        })  # fmt: skip
    finally:
        gateway.stop()
    rate = lambda r, n=1: r["requests"] * n / r["seconds"]  # noqa: E731
    print(f"gateway bench: {args.messages} messages of ~{len(records[0].value)} B per side, "  # type: ignore[union-attr]
          f"{args.concurrency} awaiting acknowledgement at a time, one broker")
    print("| figure | straight to Kafka (1 process) | gateway | ratio |")
    print("|---|---|---|---|")
    print(f"| messages/s, one per request | {rate(base):,.0f} | {rate(single):,.0f} | "
          f"{rate(single) / rate(base):.2f}x |")
    print(f"| p50 / p99 per message, ms | {base['p50_ms']:.1f} / {base['p99_ms']:.1f} | "
          f"{single['p50_ms']:.1f} / {single['p99_ms']:.1f} | |")
    print(f"| messages/s, batches of {args.batch} ({max(1, args.concurrency // 8)} connections) | "
          f"| {rate(batched, args.batch):,.0f} | {rate(batched, args.batch) / rate(base):.2f}x |")
    print(f"| p50 / p99 per batch request, ms | | "
          f"{batched['p50_ms']:.1f} / {batched['p99_ms']:.1f} | |")
    print(f"statuses: single {single['statuses']}, batch {batched['statuses']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(*args.child)
        return 0
    with kafka_for_tests() as bootstrap:
        bench(bootstrap, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
