"""Worker liveness and readiness (streams/health.py) and the time lag (streams/metrics.py)
against fakes of the faust state they read; the real worker: tests/integration/test_health.py."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka import TopicPartition

from streams.health import CommitProgress, WorkerHealth, answer
from streams.metrics import time_lag, worker_http_app
from streams.stages.progress import input_progress

TP = TopicPartition("channel.email", 0)


class FakeConsumer:
    def __init__(self, high: int, committed: int | None) -> None:
        self.high = high
        self._committed_offset = {TP: committed}

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def highwater(self, tp: TopicPartition) -> int:
        return self.high


def fake_engine(*, joined: bool = True, recovered: bool = True, firing: bool = True,
                consumer: FakeConsumer | None = None) -> Any:  # fmt: skip
    completed = threading.Event()
    if recovered:
        completed.set()
    app = SimpleNamespace(
        _consumer=consumer or FakeConsumer(10, 10), rebalancing=not joined,
        rebalancing_count=1, in_recovery=not recovered,
        tables=SimpleNamespace(_recovery=SimpleNamespace(completed=completed)),
    )  # fmt: skip
    lifecycle = SimpleNamespace(deadlines=SimpleNamespace(firing=firing))
    return SimpleNamespace(app=app, lifecycle=lifecycle)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    yield running
    running.call_soon_threadsafe(running.stop)
    thread.join(5)
    running.close()


def health(engine: Any, loop: asyncio.AbstractEventLoop, now: list[float]) -> WorkerHealth:
    checks = WorkerHealth(engine, loop, commit_stall_s=60, loop_timeout_s=1,
                          clock=lambda: now[0])  # fmt: skip
    checks.followers_loaded = True
    return checks


def failing(checks: list[Any]) -> set[str]:
    return {c.name for c in checks if not c.ok}


def test_ready_only_when_every_part_is(loop: asyncio.AbstractEventLoop) -> None:
    now = [0.0]
    assert failing(health(fake_engine(), loop, now).readiness()) == set()
    assert failing(health(fake_engine(joined=False), loop, now).readiness()) == {
        "partitions_assigned"
    }
    assert failing(health(fake_engine(recovered=False, firing=False), loop, now).readiness()) == {
        "tables_recovered", "sla_index_rebuilt",
    }  # fmt: skip
    starting = health(fake_engine(), loop, now)
    starting.followers_loaded = False
    status, body = answer(starting.readiness())
    assert status == 503
    assert body["checks"]["rules_loaded"] == {
        "ok": False,
        "detail": "reading the compacted topics it follows "
        "(rules, vendor directory, dispute policy)",
    }
    assert body["checks"]["tables_recovered"] == {"ok": True}


def test_alive_until_commits_stand_still_with_lag(loop: asyncio.AbstractEventLoop) -> None:
    now = [0.0]
    consumer = FakeConsumer(high=100, committed=40)
    checks = health(fake_engine(consumer=consumer), loop, now)
    assert failing(checks.liveness()) == set()
    now[0] = 59.0
    assert failing(checks.liveness()) == set()
    now[0] = 61.0
    (stalled,) = [c for c in checks.liveness() if not c.ok]
    assert (stalled.name, stalled.detail) == ("commits", "no commit for 61 s while 60 wait")
    consumer._committed_offset[TP] = 41  # it moved: alive again, and the clock restarts
    assert failing(checks.liveness()) == set()
    now[0] = 100.0
    assert failing(checks.liveness()) == set()


def test_no_stall_while_caught_up_or_recovering(loop: asyncio.AbstractEventLoop) -> None:
    now = [0.0]
    idle = health(fake_engine(consumer=FakeConsumer(high=40, committed=40)), loop, now)
    recovering = health(fake_engine(recovered=False, consumer=FakeConsumer(100, 40)), loop, now)
    for checks in (idle, recovering):
        checks.liveness()
        now[0] += 10_000
        assert failing(checks.liveness()) == set()


def test_a_blocked_or_closed_event_loop_is_not_alive(loop: asyncio.AbstractEventLoop) -> None:
    now = [0.0]
    checks = health(fake_engine(), loop, now)
    release = threading.Event()
    loop.call_soon_threadsafe(lambda: release.wait(10))  # the loop is busy for up to 10 s
    try:
        (blocked,) = [c for c in checks.liveness() if not c.ok]
        assert (blocked.name, blocked.detail) == ("event_loop", "no answer in 1 s")
    finally:
        release.set()
    closed = asyncio.new_event_loop()
    closed.close()
    assert failing(health(fake_engine(), closed, now).liveness()) == {"event_loop"}


def test_commit_progress_restarts_its_clock_on_any_move() -> None:
    progress = CommitProgress()
    assert progress.stalled_for(5, 3, 0.0) == 0.0
    assert progress.stalled_for(5, 3, 7.0) == 7.0
    assert progress.stalled_for(5, 0, 8.0) == 0.0  # caught up
    assert progress.stalled_for(5, 2, 9.0) == 1.0
    assert progress.stalled_for(6, 2, 20.0) == 0.0


class FakeApp:  # weakly referable, as a faust app is
    def __init__(self, consumer: FakeConsumer) -> None:
        self._consumer = consumer


def test_time_lag_is_the_wait_of_the_oldest_unprocessed_record() -> None:
    app = FakeApp(FakeConsumer(high=10, committed=4))
    assert time_lag(app, 1000.0) == []  # a backlog, but nothing processed here yet: unknown
    progress = input_progress(app)

    def processed(offset: int, timestamp: float) -> None:
        message = SimpleNamespace(topic=TP.topic, partition=TP.partition, offset=offset,
                                  timestamp=timestamp)  # fmt: skip
        progress.saw([SimpleNamespace(message=message)])

    processed(6, 960.0)
    assert time_lag(app, 1000.0) == [(TP.topic, 0, 40.0)]  # offsets 7..9 wait
    processed(9, 990.0)
    assert time_lag(app, 1000.0) == [(TP.topic, 0, 0.0)]  # caught up
    caught_up = FakeApp(FakeConsumer(high=4, committed=4))
    assert time_lag(caught_up, 1000.0) == [(TP.topic, 0, 0.0)]


def test_the_http_app_answers_probes_and_metrics(loop: asyncio.AbstractEventLoop) -> None:
    from prometheus_client import CollectorRegistry

    now = [0.0]
    unready = health(fake_engine(joined=False), loop, now)
    app = worker_http_app(CollectorRegistry(), unready)
    statuses: list[str] = []

    def call(path: str) -> bytes:
        body = app({"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": ""},
                   lambda status, headers: statuses.append(status))  # fmt: skip
        return b"".join(body)

    assert b'"partitions_assigned":{"ok":false' in call("/readyz")
    assert b'"event_loop":{"ok":true}' in call("/healthz")
    call("/metrics")
    assert statuses == ["503 Service Unavailable", "200 OK", "200 OK"]


def test_faust_exposes_the_state_readiness_reads() -> None:
    app = faust.App("health-probe", broker="kafka://127.0.0.1:1")
    for name in ("rebalancing", "rebalancing_count", "in_recovery"):
        assert hasattr(app, name), name
    from faust.tables.recovery import Recovery

    assert "completed" in Recovery.__init__.__code__.co_names
