"""`router lag` on a real broker, held against Kafka's own `kafka-consumer-groups.sh
--describe` (its class, from the kafka-tools jar the local broker runs on) at the same moment:
the engine's group is stopped, so its offsets hold still between the two reads."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.local.install import DEFAULT_VERSION, check_prerequisites, java_command, resolve_jars
from tests.factories import inbound_bytes
from tests.harness import REPO, produce
from tests.integration.conftest import EngineUnderTest

pytestmark = pytest.mark.integration

CONSUMER_GROUP_COMMAND = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


def kafka_describe(bootstrap: str, group: str, logs: Path) -> dict[tuple[str, int], list[str]]:
    """(topic, partition) -> [CURRENT-OFFSET, LOG-END-OFFSET, LAG] as Kafka's tool prints them."""
    try:
        check_prerequisites()
        libs = resolve_jars(DEFAULT_VERSION)
    except Exception as exc:  # no Java or Maven here: the test cannot compare
        pytest.skip(f"Kafka's tools are not available: {exc}")
    out = subprocess.run(
        [*java_command(libs, logs), CONSUMER_GROUP_COMMAND, "--bootstrap-server", bootstrap,
         "--describe", "--group", group],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    rows: dict[tuple[str, int], list[str]] = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) >= 6 and cells[0] == group:
            rows[(cells[1], int(cells[2]))] = cells[3:6]
    return rows


def router_lag(engine: EngineUnderTest, *args: str) -> dict[str, Any]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": engine.bootstrap,
           "ROUTER_TOPIC_PREFIX": engine.prefix, "ROUTER_PARTITIONS": "3",
           "PYTHONPATH": str(REPO)}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "router", "lag", *args], capture_output=True, text=True,
        env=env, cwd=REPO, timeout=120, check=True,
    )  # fmt: skip
    doc: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return doc


def test_router_lag_matches_kafkas_own_tool_and_ages_the_backlog(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    worker = engine.start_worker()
    engine.send("email", [(f"lg-{n}".encode(), inbound_bytes(f"lg-in-{n}", thread_ref=f"lg-{n}"))
                          for n in range(6)])  # fmt: skip
    engine.collector("queue.*").poll_until(lambda outs: len(outs) >= 6, 90, "six routed")
    assert worker.stop() == 0  # its last commit is in: the offsets hold still from here
    written = time.time()
    produce(engine.bootstrap, f"{engine.prefix}channel.email",
            [(f"lg-late-{n}".encode(), inbound_bytes(f"lg-late-{n}", thread_ref=f"lg-late-{n}"))
             for n in range(9)])  # fmt: skip

    doc = router_lag(engine, "--json", "--interval", "0.5")
    group = f"{engine.prefix}ticket-router"
    theirs = kafka_describe(engine.bootstrap, group, tmp_path)
    ours = {(p["topic"], p["partition"]): p for p in doc["partitions"] if p["group"] == group}
    assert theirs, "Kafka's tool described no partition"
    for (topic, partition), (current, end, lag) in theirs.items():
        mine = ours[(topic.removeprefix(engine.prefix), partition)]
        assert [str(mine["committed"]) if mine["committed"] is not None else "-",
                str(mine["end"]), str(mine["lag"]) if current != "-" else "-"] == [
            current, end, lag], (topic, partition)  # fmt: skip
    email = [p for p in doc["partitions"] if p["topic"] == "channel.email"]
    assert sum(p["lag"] for p in email) == 9 == sum(
        int(theirs[(f"{engine.prefix}channel.email", p["partition"])][2]) for p in email
    )
    waited = time.time() - written
    for p in email:
        if p["lag"]:
            assert 0 <= p["oldest_wait_s"] <= waited + 1, p  # written after `written`
            assert (p["consumed_per_s"], p["catch_up_s"]) == (0, None)  # nobody consumes
    assert doc["totals"]["lag"] >= 9
    assert doc["totals"]["catch_up_s"] is None
