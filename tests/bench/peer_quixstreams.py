"""The engine's routing stage written as an idiomatic quixstreams application: the bench's peer.

    PYTHONPATH=. .cache/peer-venv/bin/python tests/bench/peer_quixstreams.py \\
        BOOTSTRAP TOPIC_PREFIX CONSUMER_GROUP STATE_DIR

Runs in its own venv (`tests/bench/peer_venv.py`; quixstreams cannot share the engine's).
The same job as the engine's route-inbound agent, on the same pure core (the per-record step
is `peer_routing.py`): each channel topic (raw bytes, one dataframe per topic) is decoded and
validated by `router.inbound`, threaded into a ticket table keyed by thread (quixstreams
State: RocksDB with a changelog topic, at-least-once) by `router.tickets`, routed by the
policy the engine worker runs without `--rules` (`DefaultPolicy`), and rendered by
`router.outputs` into the queue, decision and event records the engine writes; bad records go
to the dead-letter topic. Not here: the SLA stage, lifecycle re-routes, the vendor directory
and buyer history (the built-in policy decides the bench's mix the same without the last two).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make `router`, `rules`, `schemas` importable
    sys.path.insert(0, str(REPO))

from confluent_kafka.admin import AdminClient  # noqa: E402
from quixstreams import Application, State, message_context  # noqa: E402
from quixstreams.models import Topic, TopicConfig  # noqa: E402
from quixstreams.models.serializers import SerializationContext, Serializer  # noqa: E402
from quixstreams.state.rocksdb import RocksDBOptions  # noqa: E402

from router import native  # noqa: E402
from router.records import OutRecord  # noqa: E402
from schemas.topics import (  # noqa: E402
    CHANNEL_DLQ,
    CHANNEL_TOPICS,
    TICKETS_DECISIONS,
    TICKETS_EVENTS,
)
from tests.bench.peer_routing import route_record, state_dumps, state_loads  # noqa: E402

# What the engine's producer and consumer use (streams/settings.py defaults, the bench's
# PRODUCER_SETTINGS): acks=all and idempotence (quixstreams' default), linger 5 ms, and the
# engine's compression (`--compression`).
PRODUCER_CONFIG = {
    "acks": "all",
    "linger.ms": 5,
    "batch.size": 256 * 1024,
    "message.max.bytes": 8 * 1024 * 1024,
}
CONSUMER_CONFIG = {"max.partition.fetch.bytes": 8 * 1024 * 1024}
COMMIT_INTERVAL_S = 1.0  # the engine's checkpoint period in the bench (ROUTER_COMMIT_INTERVAL_S)


class RecordValue(Serializer):
    """Writes an `OutRecord`'s value bytes (its topic, key and headers are set by the sdf)."""

    def __call__(self, value: OutRecord, ctx: SerializationContext) -> bytes:
        return value.value


def route(prefix: str) -> Callable[[bytes | None, bytes | None, int, Any, State], list[OutRecord]]:
    """The stateful step (`peer_routing.route_record`) with the record's position."""

    def records_of(
        value: bytes | None, key: bytes | None, timestamp: int, headers: Any, state: State
    ) -> list[OutRecord]:
        context = message_context()
        logical = context.topic.removeprefix(prefix)
        return route_record(
            logical, context.partition, context.offset, key, value, timestamp, state
        )

    return records_of


def existing_queues(bootstrap: str, prefix: str) -> list[str]:
    """The queue topics already there (vendor queues are provisioned before their first
    ticket), declared at startup: declaring one on first use costs a broker round trip."""
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30).topics
    return sorted(t.removeprefix(prefix) for t in topics if t.startswith(f"{prefix}queue."))


def build(app: Application, bootstrap: str, prefix: str, partitions: int) -> None:
    def declare(logical: str) -> Topic:
        return app.topic(
            prefix + logical,
            key_deserializer="bytes",
            value_deserializer="bytes",  # raw: decoding is parse_inbound's job, never skipped
            key_serializer="bytes",
            value_serializer=RecordValue(),
            config=TopicConfig(num_partitions=partitions, replication_factor=1),
        )

    outputs = {
        name: declare(name)
        for name in (
            *CHANNEL_TOPICS,  # a record keyed by something else is republished keyed by thread
            CHANNEL_DLQ.name,
            TICKETS_EVENTS.name,
            TICKETS_DECISIONS.name,
            *existing_queues(bootstrap, prefix),
        )
    }

    def topic_of(record: OutRecord, *_: Any) -> Topic:
        topic = outputs.get(record.topic)
        if topic is None:  # a queue provisioned after startup
            topic = outputs[record.topic] = declare(record.topic)
        return topic

    for name in CHANNEL_TOPICS:  # one dataframe per topic (`concat` costs 3-4x)
        sdf = app.dataframe(outputs[name])
        sdf = sdf.apply(route(prefix), stateful=True, metadata=True, expand=True)
        # output CreateTime = when the peer produced it (quixstreams keeps the input's otherwise)
        sdf = sdf.set_timestamp(lambda record, key, ts, headers: int(time.time() * 1000))
        sdf = sdf.set_headers(lambda record, key, ts, headers: list(record.headers))
        sdf.to_topic(topic_of, key=lambda record: record.key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bootstrap")
    parser.add_argument("prefix", help="topic prefix of the run (`bench1234.peer.`)")
    parser.add_argument("group", help="consumer group; also names the changelog topics")
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--compression", default="zstd", help="the engine's (bench_pipeline)")
    args = parser.parse_args(argv)
    compiled = native.compiled_modules()
    # bench_pipeline.py reads this line from the log: which build of the core ran here
    print(
        "peer-core: "
        + (f"compiled ({', '.join(compiled)})" if compiled else "pure Python sources"),
        flush=True,
    )
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        commit_interval=COMMIT_INTERVAL_S,
        use_changelog_topics=True,
        state_dir=args.state_dir,
        rocksdb_options=RocksDBOptions(dumps=state_dumps, loads=state_loads),
        producer_extra_config={**PRODUCER_CONFIG, "compression.type": args.compression},
        consumer_extra_config=CONSUMER_CONFIG,
        loglevel="WARNING",
    )
    build(app, args.bootstrap, args.prefix, args.partitions)
    app.run()  # until SIGTERM: the last checkpoint is committed on the way out
    return 0


if __name__ == "__main__":
    sys.exit(main())
