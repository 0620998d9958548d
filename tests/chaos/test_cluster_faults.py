"""Broker and worker faults on a three-broker cluster (RF 3, min.insync.replicas 2) under a
steady load: nothing lost, no duplicate left after dedup by id, no ticket on two queues, each
poison record on the DLQ once. The outcomes make the README's fault table."""

from __future__ import annotations

import threading

import pytest

from streams.local.cluster import LocalKafkaCluster
from tests.chaos.faults import SESSION_TIMEOUT_S, Load, drive
from tests.integration.conftest import EngineUnderTest

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

ClusterEngine = tuple[EngineUnderTest, LocalKafkaCluster]


def _then(load: Load, more: int, timeout: float = 120.0) -> None:
    """Until `more` further records are acknowledged (the engine works through the fault)."""
    load.wait_sent(len(load.sent) + len(load.poison) + more, timeout)


def _lasting(seconds: float) -> None:
    """Keep a fault in place this long while the load runs on (its duration, not a wait for
    something to happen)."""
    threading.Event().wait(seconds)


def test_a_broker_killed_and_restarted(cluster_engine: ClusterEngine) -> None:
    engine, cluster = cluster_engine
    engine.start_worker()

    def fault(load: Load) -> None:
        _then(load, 300)
        victim = cluster.nodes[0]
        victim.kill()  # SIGKILL: its partitions' leadership moves to the other two
        _then(load, 800)
        victim.restart()
        cluster.wait_complete()
        _then(load, 300)

    outcome = drive(engine, "a broker killed (SIGKILL), then restarted", fault)
    assert outcome.clean, outcome


def test_a_broker_paused_past_the_session_timeout(cluster_engine: ClusterEngine) -> None:
    engine, cluster = cluster_engine
    engine.start_worker()

    def fault(load: Load) -> None:
        _then(load, 300)
        victim = cluster.nodes[1]
        victim.pause()  # SIGSTOP: connections stay open, nothing answers
        _lasting(2 * SESSION_TIMEOUT_S)
        victim.resume()
        cluster.wait_complete()
        _then(load, 300)

    scenario = f"a broker paused (SIGSTOP) {2 * SESSION_TIMEOUT_S:.0f} s, then resumed"
    outcome = drive(engine, scenario, fault)
    assert outcome.clean, outcome


def test_the_whole_cluster_restarted_under_a_running_engine(
    cluster_engine: ClusterEngine,
) -> None:
    engine, cluster = cluster_engine
    worker = engine.start_worker()

    def fault(load: Load) -> None:
        _then(load, 300)
        cluster.stop_all()  # controlled shutdown of every node; the worker keeps running
        cluster.start_all()
        _then(load, 500, timeout=180)

    outcome = drive(engine, "the whole cluster stopped and started again", fault)
    assert outcome.clean, outcome
    assert worker.proc is not None
    assert worker.proc.poll() is None, "the worker gave up"


def test_workers_scaled_up_and_down_then_a_rolling_restart(
    cluster_engine: ClusterEngine,
) -> None:
    engine, _ = cluster_engine
    first = engine.start_worker()

    def fault(load: Load) -> None:
        _then(load, 300)
        second, third = engine.start_worker(), engine.start_worker()  # 1 -> 3: rebalances
        _then(load, 600)
        assert second.stop() == 0
        assert third.stop() == 0
        _then(load, 300)
        replacement = engine.start_worker()  # rolling restart: a new worker, then the old one
        _then(load, 300)
        assert first.stop() == 0
        _then(load, 300)
        assert replacement.proc is not None
        assert replacement.proc.poll() is None

    outcome = drive(engine, "workers scaled 1 -> 3 -> 1, then a rolling restart", fault)
    assert outcome.clean, outcome
