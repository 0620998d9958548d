"""A local multi-node Apache Kafka (KRaft) cluster from the same jars, for fault tests.

Every node is a combined broker+controller (`LocalKafka` with a `NodeSpec`): a static quorum
of all of them, fixed ports, replication factor = the node count, `min.insync.replicas` 2 and
no unclean leader election, as production runs. Each node can be killed, shut down, paused
(SIGSTOP) and restarted on its own; the whole cluster can be stopped and started again with
its data.

    with LocalKafkaCluster(3) as cluster:
        cluster.bootstrap          # "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"
        cluster.nodes[1].kill(); cluster.nodes[1].restart()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from streams.local.broker import LocalKafka, NodeSpec, State, broker_answers
from streams.local.install import (
    DEFAULT_VERSION,
    KafkaLauncherError,
    free_port,
    new_kafka_uuid,
)

MIN_INSYNC_REPLICAS = 2
# What a production cluster sets; `broker_config` already refuses unclean elections.
CLUSTER_OVERRIDES = {
    "min.insync.replicas": str(MIN_INSYNC_REPLICAS),
    "transaction.state.log.min.isr": str(MIN_INSYNC_REPLICAS),
    "share.coordinator.state.topic.min.isr": str(MIN_INSYNC_REPLICAS),
    # a restarted node rejoins the ISR quickly; a dead one leaves it within seconds
    "replica.lag.time.max.ms": "10000",
}


class LocalKafkaCluster:
    """`brokers` KRaft nodes on 127.0.0.1; a context manager, stopped (data removed) on exit."""

    def __init__(
        self,
        brokers: int = 3,
        *,
        version: str = DEFAULT_VERSION,
        heap: Sequence[str] | None = None,
        cache_dir: Path | str | None = None,
        overrides: Mapping[str, str] | None = None,
        start_timeout: float = 120.0,
        detached: bool = False,
        on_spawn: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if brokers < 3:
            raise ValueError("a cluster has at least 3 nodes (a quorum that survives one loss)")
        cluster_id = new_kafka_uuid()
        ports = [(free_port(), free_port()) for _ in range(brokers)]
        voters = {n + 1: f"127.0.0.1:{ctrl}" for n, (_, ctrl) in enumerate(ports)}
        self.specs = [
            NodeSpec(n + 1, client, ctrl, voters, cluster_id, replication=brokers)
            for n, (client, ctrl) in enumerate(ports)
        ]
        self.nodes = [
            LocalKafka(
                version=version, heap=heap, cache_dir=cache_dir,
                overrides={**CLUSTER_OVERRIDES, **(overrides or {})},
                start_timeout=start_timeout, detached=detached, on_spawn=on_spawn,
                node=spec,
            )
            for spec in self.specs
        ]  # fmt: skip
        self.start_timeout = start_timeout

    def __enter__(self) -> LocalKafkaCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def bootstrap(self) -> str:
        """Every node's client address (clients find the live ones)."""
        return ",".join(f"127.0.0.1:{spec.client_port}" for spec in self.specs)

    def start(self) -> str:
        """Launch every node, then wait until each answers and the cluster lists them all."""
        try:
            for node in self.nodes:
                node.spawn()
            for node in self.nodes:
                node.wait_ready()
            self.wait_complete()
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def wait_complete(self, timeout: float | None = None) -> None:
        """Until the metadata names every node as a broker (after a start or a restart)."""
        deadline = time.monotonic() + (timeout or self.start_timeout)
        while time.monotonic() < deadline:
            if broker_answers(self.bootstrap, timeout=2.0, brokers=len(self.nodes)):
                return
            time.sleep(0.2)  # polling a condition with a deadline
        raise KafkaLauncherError(f"the cluster did not list {len(self.nodes)} brokers in time")

    def stop_all(self) -> None:
        """Controlled shutdown of every node, data kept (`start_all` brings them back)."""
        for node in self.nodes:
            if node.state is State.PAUSED:
                node.resume()
            if node.state is State.RUNNING:
                node.shutdown()

    def start_all(self) -> None:
        """Relaunch every node that is down, then wait for the whole cluster."""
        down = [node for node in self.nodes if node.state is State.DOWN]
        for node in down:
            node.respawn()
        for node in down:
            node.wait_ready()
        self.wait_complete()

    def heal(self) -> None:
        """Every node running again (after a test's faults), the cluster complete."""
        for node in self.nodes:
            if node.state is State.PAUSED:
                node.resume()
        self.start_all()  # waits for the whole cluster

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def detach(self) -> None:
        """Leave every (detached=True) node running after this process exits."""
        for node in self.nodes:
            node.detach()
