"""Operator tools on a real broker: `router tail` (and, below, what it must not hang on)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.harness import REPO, produce

pytestmark = pytest.mark.integration

TAIL_DEADLINE_S = 60  # the bug this guards against is a tail that never returns


def create_topic(bootstrap: str, name: str, partitions: int = 3) -> None:
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            await admin.close()

    asyncio.run(run())


def tail(bootstrap: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ROUTER_TOPIC_PREFIX": prefix,
           "PYTHONPATH": str(REPO)}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "router", "tail", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=TAIL_DEADLINE_S,
    )  # fmt: skip


def records(n: int) -> list[tuple[bytes | None, bytes]]:
    return [(f"k{i}".encode(), orjson.dumps({"n": i})) for i in range(n)]


def test_tail_until_end_returns_with_fewer_records_than_the_limit(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    create_topic(kafka_bootstrap, f"{topic_prefix}channel.dlq")
    produce(kafka_bootstrap, f"{topic_prefix}channel.dlq", records(4))

    done = tail(kafka_bootstrap, topic_prefix, "channel.dlq", "--from-beginning", "--limit",
                "10", "--until-end")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(orjson.loads(line)["n"] for line in done.stdout.splitlines()) == [0, 1, 2, 3]

    # no limit: everything up to the end offsets of the start, then exit
    done = tail(kafka_bootstrap, topic_prefix, "channel.dlq", "--from-beginning", "--until-end")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 4

    # the limit still applies when there are more records than it
    done = tail(kafka_bootstrap, topic_prefix, "channel.dlq", "--from-beginning", "--limit",
                "3", "--until-end")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3

    # starting at the end, there is nothing before the end offsets: return at once, empty
    done = tail(kafka_bootstrap, topic_prefix, "channel.dlq", "--limit", "10", "--until-end")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_tail_until_end_of_an_empty_or_missing_topic(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    create_topic(kafka_bootstrap, f"{topic_prefix}channel.dlq")
    done = tail(kafka_bootstrap, topic_prefix, "channel.dlq", "--from-beginning", "--until-end")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""

    done = tail(kafka_bootstrap, topic_prefix, "no.such.topic", "--from-beginning", "--until-end")
    assert done.returncode == 1
    assert "does not exist" in done.stderr


def test_tail_without_until_end_still_follows_up_to_the_limit(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    create_topic(kafka_bootstrap, f"{topic_prefix}channel.dlq")
    produce(kafka_bootstrap, f"{topic_prefix}channel.dlq", records(5))
    done = tail(kafka_bootstrap, topic_prefix, "channel.dlq", "--from-beginning", "--limit", "5")
    assert done.returncode == 0, done.stderr
    assert sorted(orjson.loads(line)["n"] for line in done.stdout.splitlines()) == list(range(5))
