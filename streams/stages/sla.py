"""The lifecycle stage's edge: the pure processor (`router.stages.lifecycle`) with the
in-memory views only a running worker has, the deadline index and the firing horizon, and
the 1 s timer that turns due deadlines into `due` commands (declared on a host: lifecycle.py).

Written against small interfaces (mappings for the tables, an emit function, the local data
reader) so it runs in unit tests without Kafka.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from router.clock import Clock, SystemClock
from router.records import OutRecord
from router.sla.policy import SlaConfig
from router.sla.render import due_command
from router.sla.transitions import VendorDirectory
from router.stages.contract import InRecord, LocalData
from router.stages.lifecycle import LifecycleProcessor, ThreadLookup
from router.stages.parking import SWEEP_EVERY_SECONDS, ParkingLot
from streams.settings import RouterSettings
from streams.stages.deadlines import Deadlines
from streams.stages.horizon import InputWatermark, Positions
from streams.stages.host import EmitFn
from streams.stages.runner import headers_of, write_notes

log = structlog.get_logger("router.lifecycle")

STATS_EVERY_S = 30.0


class LifecycleStage:
    """The processor, the deadline index, the firing horizon and the timer."""

    def __init__(
        self,
        settings: RouterSettings,
        config: SlaConfig,
        table: Any,  # MutableMapping[bytes, bytes]: the lifecycle table (a BatchTable on Kafka)
        local: LocalData,
        emit: EmitFn,
        committed: Callable[[str, int], int | None] = lambda topic, partition: None,
        vendors: VendorDirectory | None = None,
        positions: Positions = lambda: (),
        parked: Any = None,  # MutableMapping[bytes, bytes]: the parked-actions table
        parked_local: LocalData | None = None,
        clock: Clock | None = None,
        threads: ThreadLookup = lambda ticket_id: None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self._emit_records = emit
        self._stats_at = time.monotonic()
        self._stats_logged: Counter[str] = Counter()
        # `positions`: the assigned tickets.actions / tickets.events partitions (none: no
        # backlog is ever seen, deadlines fire up to now)
        self.watermark = InputWatermark(positions)
        self.deadlines = Deadlines(local, self._send_due, self.watermark.horizon, self.clock)
        self.parking = ParkingLot(parked if parked is not None else {}, parked_local,
                                  ttl_seconds=settings.action_park_s)  # fmt: skip
        physical = settings.topic
        self.processor = LifecycleProcessor(
            config, table, self.parking, max_record_bytes=settings.max_record_bytes,
            vendors=vendors, index=self.deadlines.update, seen=self.watermark.seen,
            committed=lambda logical, partition: committed(physical(logical), partition),
            threads=threads,
        )  # fmt: skip
        self._swept_at = time.monotonic()

    @property
    def table(self) -> Any:
        return self.processor.table

    @property
    def counts(self) -> Counter[str]:
        return self.processor.counts

    # -- one record outside a batch (tests, tools) -----------------------------------------------

    async def handle(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Any = None,
        timestamp: float | None = None,
    ) -> None:
        """One record of any lifecycle input (physical topic name): processed and emitted."""
        record = InRecord(self.settings.logical(topic), partition, offset, key, value, timestamp,
                          headers_of(headers))  # fmt: skip
        records = self.processor.process(record, self.clock.now())
        await self._emit(records)
        write_notes(self.processor.notes)

    # -- timer -----------------------------------------------------------------------------------

    async def tick(self) -> int:
        """The 1 s timer: fire what is due, now and then settle parked actions and log a line
        of counters."""
        fired = await self.deadlines.fire_due()
        if time.monotonic() - self._swept_at >= min(SWEEP_EVERY_SECONDS,
                                                     self.parking.ttl_seconds / 4):
            await self.sweep_parked()
        self._log_stats()
        return fired

    async def sweep_parked(self) -> int:
        """A `due` for each parked entry of the active partitions that is ready to settle."""
        self._swept_at = time.monotonic()
        if not self.deadlines.firing:
            return 0
        now = self.clock.now().timestamp()
        active = set(self.deadlines.index.partitions)
        ready = list(self.parking.to_settle(active, now, self.deadlines.local))
        for partition, ticket_id in ready:
            await self._send_due(partition, ticket_id, now, None)
        return len(ready)

    async def _send_due(
        self, partition: int, ticket_id: str, now: float, until: float | None
    ) -> None:
        await self._emit([due_command(ticket_id, now, until)], partition)

    def _log_stats(self) -> None:
        """Every STATS_EVERY_S, what happened since the last line (when anything did)."""
        if time.monotonic() - self._stats_at < STATS_EVERY_S:
            return
        self._stats_at = time.monotonic()
        delta = self.counts - self._stats_logged
        self._stats_logged = Counter(self.counts)
        if delta:
            log.info("lifecycle_stats", pending_deadlines=len(self.deadlines.index),
                     due_sent=self.deadlines.sent, **dict(delta))  # fmt: skip

    async def _emit(self, records: Iterable[OutRecord], partition: int | None = None) -> None:
        await self._emit_records(records, partition)
