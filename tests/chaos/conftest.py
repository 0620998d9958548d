from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.local.broker import local_kafka_available
from streams.local.cluster import MIN_INSYNC_REPLICAS, LocalKafkaCluster
from tests.chaos.faults import CLUSTER_NODES, REQUEST_TIMEOUT_S, SESSION_TIMEOUT_S, write_table
from tests.integration.conftest import (
    EngineUnderTest,
    engine,  # noqa: F401 - the same real-process fixture
)


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[LocalKafkaCluster]:
    """Three KRaft nodes from the same jars (RF 3, min.insync.replicas 2), started once."""
    if not local_kafka_available():
        pytest.skip("a local cluster needs Java 17+ and the Kafka jars (make kafka BROKERS=3)")
    with LocalKafkaCluster(CLUSTER_NODES) as cluster:
        yield cluster


@pytest.fixture
def cluster_engine(
    kafka_cluster: LocalKafkaCluster, topic_prefix: str, tmp_path: Path
) -> Iterator[tuple[EngineUnderTest, LocalKafkaCluster]]:
    """Workers on the cluster with production durability; every node up again afterwards."""
    env = {
        "ROUTER_REPLICATION_FACTOR": str(CLUSTER_NODES),
        "ROUTER_MIN_INSYNC_REPLICAS": str(MIN_INSYNC_REPLICAS),
        "ROUTER_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S),
        "ROUTER_CONSUMER_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S),
    }
    under_test = EngineUnderTest(kafka_cluster.bootstrap, topic_prefix, tmp_path, worker_env=env)
    try:
        yield under_test, kafka_cluster
    finally:
        try:
            under_test.stop_all()
        finally:
            print(under_test.logs())  # shown by pytest only when the test failed
            kafka_cluster.heal()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = write_table()
    if path is not None:
        print(f"\nfault scenarios: {path}\n{path.read_text()}")
