"""The deadline index of the lifecycle partitions owned here, its rebuild, and the timer.

The index is a cache of the `lifecycle` table (router.sla.index): rebuilt from the local table
data when table recovery completes, for newly assigned active partitions; refreshed for keys
whose changelog records were recovered into partitions it kept (another worker wrote them
meanwhile); dropped for partitions no longer active. From a revocation until recovery
completes it fires nothing. The timer never touches the table: each due ticket becomes a `due`
command for the lifecycle agent, which re-checks the stored state.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog

from router.clock import Clock, SystemClock
from router.sla.index import PartitionedDeadlineIndex
from router.sla.outbox import state_part
from router.sla.state import index_entry_from_json
from router.stages.contract import LocalData

log = structlog.get_logger("router.lifecycle")

TICK_SECONDS = 1.0
DUE_PER_BATCH = 5_000  # due commands per pop; the rest follow at once, after a loop yield
_REBUILD_YIELD_EVERY = 10_000

# (partition, ticket id, now, horizon when short of now) -> a `due` command sent to that
# partition of tickets.commands
SendDue = Callable[[int, str, float, float | None], Awaitable[None]]
Horizon = Callable[[float], float]  # now -> fire what is due by then (streams.stages.horizon)


class Deadlines:
    """Owned by the lifecycle stage; the faust plumbing drives the rebalance hooks."""

    def __init__(
        self,
        local: LocalData,
        send_due: SendDue,
        horizon: Horizon = lambda now: now,
        clock: Clock | None = None,
    ) -> None:
        self.local = local
        self.clock = clock or SystemClock()
        self._send_due = send_due
        self._horizon = horizon
        self.index = PartitionedDeadlineIndex()
        self.firing = False  # only between the end of a recovery and the next revocation
        self.sent = 0
        self.last_rebuild: dict[str, Any] = {}
        self._changed: dict[int, set[bytes]] = defaultdict(set)
        # recovery only: key -> (stored value, its index entry), see changelog_loaded
        self._loaded: dict[int, dict[bytes, tuple[bytes, tuple[float, str] | None]]] = (
            defaultdict(dict)
        )
        self._wakeup: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[int]] = set()
        self._recovering_since: float | None = None  # first changelog batch of this recovery
        self._recovered_records = 0

    def update(self, partition: int, ticket_id: str, entry: tuple[float, str] | None) -> None:
        """The ticket's next due time after a write (ignored for partitions not owned here)."""
        if entry is None:
            self.index.discard(partition, ticket_id)
        else:
            self.index.add(partition, *entry)

    async def fire_due(self) -> int:
        """Send a `due` command for every indexed ticket due by the horizon: now, or earlier
        while the inputs that can stop a clock still have a backlog to apply first."""
        if not self.firing:
            return 0
        now = self.clock.now().timestamp()
        horizon = self._horizon(now)
        # -inf: a lagging input has not been read at all yet
        due = self.index.pop_due(horizon, DUE_PER_BATCH) if horizon > 0 else []
        until = horizon if horizon < now else None
        for n, (partition, ticket_id) in enumerate(due):
            try:
                await self._send_due(partition, ticket_id, now, until)
            except Exception as exc:  # e.g. no metadata yet: put the rest back, next tick retries
                log.error("due_send_failed", error=repr(exc), unsent=len(due) - n)
                for p, key in due[n:]:
                    self.index.add(p, horizon, key)
                self.sent += n
                return n
        self.sent += len(due)
        self._schedule_wakeup(now, horizon)
        return len(due)

    def _schedule_wakeup(self, now: float, horizon: float | None = None) -> None:
        """Fire on time when the next due instant falls before the next tick (not while
        holding back: the tick re-reads the horizon)."""
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        upcoming = self.index.next_due() if self.firing else None
        if upcoming is None or upcoming >= now + TICK_SECONDS:
            return
        if horizon is not None and horizon < now and upcoming <= now:
            return
        delay = max(upcoming - now, 0.0) + 0.001
        self._wakeup = asyncio.get_running_loop().call_later(delay, self._wake)

    def _wake(self) -> None:
        self._wakeup = None
        task = asyncio.ensure_future(self.fire_due())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[int]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("due_fire_failed", error=repr(task.exception()))

    def suspend(self) -> None:
        """Partitions are being revoked: fire nothing until recovery completes."""
        self.firing = False
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None

    def changelog_applied(self, records: Iterable[tuple[int, bytes]]) -> None:
        """Changelog records faust recovered into partitions the index kept: re-read them later."""
        if self._recovering_since is None:
            self._recovering_since = time.perf_counter()
        indexed = self.index.partitions
        for partition, key in records:
            self._recovered_records += 1
            if partition in indexed:
                self._changed[partition].add(key)

    def changelog_loaded(
        self, partition: int, records: Iterable[tuple[bytes, bytes | None]]
    ) -> None:
        """Records `streams.kafka.changelog_recovery` read straight into the store (key, value).

        Their index entries are taken now, while the bytes are at hand: re-reading ~2 KB per
        state from a store of a million at the end of recovery costs more than decoding them.
        Each entry is kept with the very value object it came from; `on_recovered` uses it only
        if the store still holds that object (anything written since is read again)."""
        if self._recovering_since is None:
            self._recovering_since = time.perf_counter()
        loaded = self._loaded[partition]
        changed = self._changed[partition] if partition in self.index.partitions else None
        count = 0
        for key, value in records:
            count += 1
            if changed is not None:
                changed.add(key)
            if value is None:
                loaded.pop(key, None)
                continue
            try:
                loaded[key] = (value, index_entry_from_json(state_part(value)))
            except ValueError:  # left to on_recovered's read, which reports it as before
                loaded.pop(key, None)
        self._recovered_records += count

    def _entry(self, partition: int, key: bytes) -> tuple[float, str] | None:
        raw = self.local.get(key)
        if not raw:
            return None
        hit = self._loaded[partition].get(key) if partition in self._loaded else None
        if hit is not None and hit[0] is raw:
            return hit[1]
        return index_entry_from_json(state_part(raw))

    async def on_recovered(self, active: set[int]) -> None:
        """Table recovery is complete and `active` are the table partitions owned here."""
        started = time.perf_counter()
        for partition in self.index.partitions - active:
            self.index.revoke(partition)
        refreshed = 0
        for partition in self.index.partitions:
            for key in self._changed.pop(partition, ()):
                self.update(partition, key.decode(), self._entry(partition, key))
                refreshed += 1
        self._changed.clear()
        new = active - self.index.partitions
        loaded = 0
        if new:
            by_partition = self.local.keys_by_partition(new)
            for partition in sorted(new):
                entries: list[tuple[float, str] | None] = []
                for n, key in enumerate(by_partition.get(partition, ())):
                    entries.append(self._entry(partition, key))
                    if n % _REBUILD_YIELD_EVERY == _REBUILD_YIELD_EVERY - 1:
                        await asyncio.sleep(0)  # heartbeats; nothing else reads the index yet
                self.index.assign(partition, entries)
                loaded += len(entries)
        self._loaded.clear()
        self.firing = True
        since = self._recovering_since
        self.last_rebuild = {
            "partitions": sorted(active),
            "rebuilt": sorted(new),
            "states_read": loaded,
            "refreshed": refreshed,
            "pending_deadlines": len(self.index),
            "seconds": round(time.perf_counter() - started, 3),
            # changelog records recovered (loaded or through faust), first batch -> the end
            "changelog_records": self._recovered_records,
            "changelog_seconds": round(started - since, 3) if since is not None else 0.0,
        }
        self._recovering_since, self._recovered_records = None, 0
        log.info("lifecycle_index_rebuilt", **self.last_rebuild)
        self._schedule_wakeup(self.clock.now().timestamp())  # overdue ones fire right away
