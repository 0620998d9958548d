"""Liveness and readiness of a worker, answered beside `/metrics` on the metrics port.

- `GET /healthz` (liveness): the event loop answers within `health_loop_timeout_s`, and the
  consumer is not "slowly dying": once ready, committed offsets must move within
  `health_commit_stall_s` whenever there is lag. 200 or 503 with the failing check.
- `GET /readyz` (readiness): the rules and vendor directory are loaded, the consumer has joined
  its group and has its partitions, table recovery is over, and the SLA deadline index is
  rebuilt. 503 names what is still awaited; a rebalance makes the worker unready until its
  recovery ends.

Both read the worker's state from the HTTP thread, as the metrics do: they copy what they read
and count a read that races a rebalance as not ready rather than fail.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from streams.kafka.faust_internals import started_consumer, table_recovery


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


def answer(checks: Iterable[Check]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body of a list of checks."""
    listed = list(checks)
    failing = [c for c in listed if not c.ok]
    named: dict[str, Any] = {}
    for check in listed:
        named[check.name] = {"ok": check.ok, "detail": check.detail} if check.detail else {
            "ok": check.ok
        }
    return (503 if failing else 200), {"ok": not failing, "checks": named}


def awaiting(name: str, done: bool, what: str) -> Check:
    """A readiness check: `what` is still awaited unless `done`."""
    return Check(name, done, "" if done else what)


class CommitProgress:
    """How long committed offsets have stood still while there was lag."""

    def __init__(self) -> None:
        self._committed: int | None = None
        self._moved_at: float | None = None

    def stalled_for(self, committed: int, lag: int, now: float) -> float:
        """Seconds since the last commit progress, 0 while caught up or moving."""
        if lag == 0 or committed != self._committed or self._moved_at is None:
            self._committed, self._moved_at = committed, now
            return 0.0
        return now - self._moved_at


class WorkerHealth:
    """The checks of one worker process."""

    def __init__(
        self,
        engine: Any,
        loop: asyncio.AbstractEventLoop,
        *,
        commit_stall_s: float,
        loop_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.loop = loop
        self.commit_stall_s = commit_stall_s
        self.loop_timeout_s = loop_timeout_s
        self.clock = clock
        self.followers_loaded = False  # set once every compacted topic followed is read
        self._progress = CommitProgress()
        self._lock = threading.Lock()  # probes may arrive together

    # -- readiness --------------------------------------------------------------------------

    def readiness(self) -> list[Check]:
        app = self.engine.app
        direct = getattr(self.engine, "direct", None)
        if direct is not None:  # its own consumer group and table load
            joined = recovered = direct.ready
        else:
            consumer = started_consumer(app)
            recovery = table_recovery(app.tables)
            joined = consumer is not None and app.rebalancing_count > 0 and not app.rebalancing
            recovered = (recovery is not None and recovery.completed.is_set()
                         and not app.in_recovery)  # fmt: skip
        checks = [
            awaiting("rules_loaded", self.followers_loaded,
                     "reading the compacted topics it follows (rules, vendor directory, dispute "
                     "policy)"),
            awaiting("partitions_assigned", joined, "joining the consumer group"),
            awaiting("tables_recovered", recovered, "reading the table changelogs"),
        ]
        lifecycle = self.engine.lifecycle
        if lifecycle is not None:
            rebuilt = bool(lifecycle.deadlines.firing)
            checks.append(awaiting("sla_index_rebuilt", rebuilt, "rebuilding the deadline index"))
        return checks

    # -- liveness ---------------------------------------------------------------------------

    def liveness(self) -> list[Check]:
        checks = [self._loop_answers()]
        if all(c.ok for c in self.readiness()):  # recovery may hold commits back: not a stall
            checks.append(self._commits_move())
        return checks

    def _loop_answers(self) -> Check:
        if self.loop.is_closed():
            return Check("event_loop", False, "the event loop is closed")
        answered = threading.Event()
        try:
            self.loop.call_soon_threadsafe(answered.set)
        except RuntimeError:
            return Check("event_loop", False, "the event loop is closed")
        if answered.wait(self.loop_timeout_s):
            return Check("event_loop", True)
        return Check("event_loop", False, f"no answer in {self.loop_timeout_s:g} s")

    def _commits_move(self) -> Check:
        # the same figures as router_consumer_committed_offset and router_consumer_lag
        from streams.metrics import committed_positions, consumer_lag

        app = self.engine.app
        committed = sum(offset for _, _, offset in committed_positions(app) if offset)
        lag = sum(behind for _, _, behind in consumer_lag(app))
        with self._lock:
            stalled = self._progress.stalled_for(committed, lag, self.clock())
        if stalled > self.commit_stall_s:
            return Check("commits", False, f"no commit for {stalled:.0f} s while {lag} wait")
        return Check("commits", True)
