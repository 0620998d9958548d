"""Broker and worker faults on a three-broker cluster (RF 3, min.insync.replicas 2) under a
steady load: nothing lost, no duplicate left after dedup by id, no ticket on two queues, each
poison record on the DLQ once. The outcomes make the README's fault table."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.local.cluster import LocalKafkaCluster
from tests.chaos.faults import OUTCOMES, PAUSE_S, SCENARIOS, Load, Outcome, drive
from tests.harness import Output, wait_for
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_rules_reload import V1, V2, activated, publish
from tests.integration.test_sla import (
    SLA_TOPICS,
    ids_per_firing,
    open_tickets,
    routed_ticket_ids,
    sla,
    sla_env,
    write_policy,
)

# a whole-cluster restart alone takes ~40 s; each scenario drains what its load sent
pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(600)]

ClusterEngine = tuple[EngineUnderTest, LocalKafkaCluster]


def _then(load: Load, more: int, timeout: float = 120.0) -> None:
    """Until `more` further records are acknowledged (the engine works through the fault)."""
    load.wait_sent(len(load.sent) + len(load.poison) + more, timeout)


def _lasting(seconds: float) -> None:
    """Keep a fault in place this long while the load runs on (its duration, not a wait for
    something to happen)."""
    threading.Event().wait(seconds)


def _broker_killed(cluster: LocalKafkaCluster, node: int) -> Callable[[Load], None]:
    def fault(load: Load) -> None:
        _then(load, 300)
        victim = cluster.nodes[node]
        victim.kill()  # SIGKILL: its partitions' leadership moves to the other two
        _then(load, 800)
        victim.restart()
        cluster.wait_complete()
        _then(load, 300)

    return fault


def test_a_broker_killed_and_restarted(cluster_engine: ClusterEngine) -> None:
    engine, cluster = cluster_engine
    engine.start_worker()
    outcome = drive(engine, SCENARIOS["broker_killed"], _broker_killed(cluster, 0))
    assert outcome.clean, outcome


def test_a_broker_killed_under_the_split_layout(cluster_engine: ClusterEngine) -> None:
    """The routing worker on the direct runtime (its own consumer, table load and commits)
    beside a lifecycle worker, through the same fault."""
    engine, cluster = cluster_engine
    engine.start_worker(ROUTER_STAGE="routing")
    engine.start_worker(ROUTER_STAGE="lifecycle")
    outcome = drive(engine, SCENARIOS["broker_killed_split"], _broker_killed(cluster, 2))
    assert outcome.clean, outcome
    assert "direct_partitions_assigned" in engine.workers[0].log_text(10**7)


def test_a_broker_paused_past_the_session_timeout(cluster_engine: ClusterEngine) -> None:
    engine, cluster = cluster_engine
    engine.start_worker()

    def fault(load: Load) -> None:
        _then(load, 300)
        victim = cluster.nodes[1]
        victim.pause()  # SIGSTOP: connections stay open, nothing answers
        _lasting(PAUSE_S)
        victim.resume()
        cluster.wait_complete()
        _then(load, 300)

    outcome = drive(engine, SCENARIOS["broker_paused"], fault)
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

    outcome = drive(engine, SCENARIOS["cluster_restarted"], fault)
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

    outcome = drive(engine, SCENARIOS["workers_scaled"], fault)
    assert outcome.clean, outcome


def test_sla_deadlines_falling_due_during_a_broker_failover(
    cluster_engine: ClusterEngine, tmp_path: Path
) -> None:
    engine, cluster = cluster_engine
    tickets = 150
    # warnings at 4 s, breaches at 8 s, rungs 2 and 3 at 10 s and 12 s after opening
    policy = write_policy(tmp_path, first_response="8s",
                          escalation="[{}, {after: 2s}, {after: 2s}]")  # fmt: skip
    engine.start_worker(**sla_env(policy))
    open_tickets(engine, tickets, "failover")
    collector = engine.collector(*SLA_TOPICS)
    collector.poll_until(lambda outs: len(sla(outs, "warning")) >= 10, 90, "warnings firing")
    victim = cluster.nodes[2]
    victim.kill()  # the leaders it held move while warnings and breaches fall due

    def complete(outs: list[Output]) -> bool:
        return len({e.ticket_id for _, e in sla(outs, "breached") if e.level == 3}) >= tickets

    collector.poll_until(complete, 180, "the third rung for every ticket, one broker down",
                         describe=lambda outs: f"{len(ids_per_firing(outs))} distinct firings")
    victim.restart()
    cluster.wait_complete()
    outputs = collector.poll_until(complete, 60, "every firing, the broker back")
    tids = routed_ticket_ids(outputs)
    ids = ids_per_firing(outputs)
    breaches = {(t, "first_response", "breached", level) for t in tids for level in (1, 2, 3)}
    # A warning held back past its breach is dropped by design (the breach supersedes it)
    warnings = {(t, "first_response", "warning", 0) for t in tids}
    outcome = Outcome(
        scenario=SCENARIOS["sla_in_failover"],
        inbound=len(breaches), poison=0,
        lost=len(breaches - set(ids)),
        duplicates=sum(1 for v in ids.values() if len(v) > 1),
        split_tickets=0, poison_missing=0, poison_repeated=0,
    )  # fmt: skip
    OUTCOMES.append(outcome)
    assert len(tids) == tickets
    assert set(ids) - breaches <= warnings, sorted(set(ids) - breaches - warnings)[:10]
    assert outcome.clean, outcome
    print(f"{len(set(ids) & warnings)} of {tickets} warnings published before their breach")


def test_a_hot_rules_reload_during_a_rebalance(cluster_engine: ClusterEngine) -> None:
    engine, _ = cluster_engine
    first = engine.start_worker("--rules", str(V1))

    def fault(load: Load) -> None:
        _then(load, 300)
        second = engine.start_worker("--rules", str(V1))  # joins: partitions move
        publish(engine, V2)  # while they do
        wait_for(lambda: all(activated(w, "2.0.0") for w in (first, second)), 90,
                 "both workers to activate ruleset 2.0.0")  # fmt: skip
        _then(load, 300)

    outcome = drive(engine, SCENARIOS["reload_in_rebalance"], fault)
    assert outcome.clean, outcome
