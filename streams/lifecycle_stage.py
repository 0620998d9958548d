"""The lifecycle stage's logic between faust and the pure core (faust plumbing: lifecycle.py).

Written against small interfaces (a mapping for the table, a send function, the local data
reader) so it runs in unit tests without Kafka.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from router.inbound import Rejected, dead_letter, source_position
from router.records import OutRecord
from router.sla.lifecycle import on_action, on_tick, on_ticket_event
from router.sla.outbox import (
    Pending,
    find_pending,
    join_stored,
    prune,
    source_key,
    split_stored,
)
from router.sla.policy import SlaConfig
from router.sla.render import (
    CMD_ACTION,
    CMD_DUE,
    CMD_HEADER,
    STAGE_HEADER,
    STAGE_LIFECYCLE,
    TicketEventEnvelope,
    action_command,
    due_command,
    due_until,
    parse_action,
    refused_action,
    render_output,
)
from router.sla.state import (
    ActionRejectedOut,
    LifecycleState,
    Output,
    Step,
    decode_state,
    encode_state,
    index_entry,
    index_entry_from_json,
)
from router.sla.transitions import VendorDirectory
from schemas.action import TicketActionEvent
from schemas.dead_letter import RejectReason, SourcePosition
from schemas.topics import SLA_EVENTS, TICKETS_COMMANDS, TICKETS_EVENTS
from streams.input_watermark import InputWatermark, Positions
from streams.lifecycle_deadlines import Deadlines, LocalData
from streams.lifecycle_parking import SWEEP_EVERY_SECONDS, ParkedAction, ParkingLot
from streams.settings import RouterSettings

log = structlog.get_logger("router.lifecycle")

STATS_EVERY_S = 30.0

# records, partition or None (the key's): the engine's one emit path (streams.emit.Emitter)
EmitFn = Callable[[Iterable[OutRecord], int | None], Awaitable[None]]
Runner = Callable[[LifecycleState | None], Step]


class LifecycleStage:
    """Everything between the faust plumbing and the pure core; testable with fakes."""

    def __init__(
        self,
        settings: RouterSettings,
        config: SlaConfig,
        table: Any,  # MutableMapping[bytes, bytes]: the faust table
        local: LocalData,
        emit: EmitFn,
        committed: Callable[[str, int], int | None] = lambda topic, partition: None,
        vendors: VendorDirectory | None = None,
        positions: Positions = lambda: (),
        parked: Any = None,  # MutableMapping[bytes, bytes]: the parked-actions table
        parked_local: LocalData | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.table = table
        self._emit_records = emit
        self._committed_physical = committed
        self.vendors = vendors
        self._stats_at = time.monotonic()
        self._stats_logged: Counter[str] = Counter()
        # `positions`: the assigned tickets.actions / tickets.events partitions (none: no
        # backlog is ever seen, deadlines fire up to now)
        self.watermark = InputWatermark(positions)
        self.deadlines = Deadlines(local, self._send_due, self.watermark.horizon)
        self.parking = ParkingLot(parked if parked is not None else {}, parked_local,
                                  ttl_seconds=settings.action_park_s)
        self._swept_at = time.monotonic()
        self.counts: Counter[str] = Counter()

    # -- agent `lifecycle` -----------------------------------------------------------------------

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
        """One record of `tickets.events` or `tickets.commands`. Never raises."""
        now = datetime.now(UTC)
        logical = self.settings.logical(topic)
        try:
            await self._handle(
                logical, partition, offset, key, value or b"", _headers(headers), now
            )
        except Exception as exc:  # a bug must not stop the agent: park the record, keep going
            log.exception("lifecycle_failed", topic=logical, partition=partition, offset=offset)
            self.counts["failed"] += 1
            await self._emit([self._dead_letter(exc, logical, partition, offset, key, value, now,
                                                timestamp)])
        if logical == TICKETS_EVENTS.name:
            self.watermark.seen(logical, partition, offset, timestamp)

    async def _handle(
        self,
        logical: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes,
        headers: dict[str, bytes],
        now: datetime,
    ) -> None:
        if logical == TICKETS_COMMANDS.name and headers.get(CMD_HEADER) == CMD_ACTION:
            await self._action(ParkedAction(logical, partition, offset, value, headers), now)
            return
        config, vendors = self.config, self.vendors
        position = source_key(logical, partition, offset)
        render = self._renderer(headers, SourcePosition(topic=logical, partition=partition,
                                                        offset=offset), value, now)
        if logical == TICKETS_EVENTS.name:
            if headers.get(STAGE_HEADER) == STAGE_LIFECYCLE:
                self.counts["own_event"] += 1  # written by this stage: nothing to apply
                return
            record = TicketEventEnvelope.model_validate_json(value)
            event, event_id = record.data, record.id

            def apply_event(state: LifecycleState | None) -> Step:
                return on_ticket_event(
                    state, event, event_id=event_id, now=now, config=config, vendors=vendors
                )

            await self._apply(event.ticket_id, partition, position, apply_event, render,
                              reindex=False)
            if event.ticket_id.encode() in self.parking:  # actions read before this event
                await self._unpark(event.ticket_id, now)
        elif logical == TICKETS_COMMANDS.name and headers.get(CMD_HEADER) == CMD_DUE:
            ticket_id = (key or b"").decode()
            until = due_until(value)
            if ticket_id.encode() in self.parking:
                await self._settle_parked(ticket_id, now)

            def tick(state: LifecycleState | None) -> Step:
                if state is None:
                    return Step(state, [])
                return on_tick(state, now, config=config, vendors=vendors, until=until)

            await self._apply(ticket_id, partition, position, tick, render, reindex=True)
        else:
            command = headers.get(CMD_HEADER)
            raise ValueError(f"not a lifecycle input: {logical}, command {command!r}")

    def _renderer(
        self, headers: dict[str, bytes], source: SourcePosition, value: bytes, now: datetime
    ) -> Callable[[list[Output]], list[OutRecord]]:
        def render(outputs: list[Output]) -> list[OutRecord]:
            records: list[OutRecord] = []
            for out in outputs:
                if isinstance(out, ActionRejectedOut):
                    self.counts["action_refused"] += 1
                    records.append(refused_action(out.reason, headers, source, value, now))
                else:
                    records.extend(render_output(out))
            return records

        return render

    async def _action(self, read: ParkedAction, now: datetime, *, unparking: bool = False) -> None:
        """A forwarded action: applied to its ticket, or parked while the ticket is unknown."""
        action = TicketActionEvent.model_validate_json(read.value)
        ticket_id = action.data.ticket_id
        key = ticket_id.encode()
        source = read.source
        if self.table.get(key) is None:
            if self.parking.park(key, read, now.timestamp()):
                self.counts["action_parked"] += 1
                return
            self.counts["action_refused"] += 1
            reason = (f"ticket {ticket_id!r} is unknown and {self.parking.max_per_ticket} "
                      "actions already wait for it")
            await self._emit([refused_action(reason, read.headers, source, read.value, now)])
            return
        if not unparking and key in self.parking:  # a crash left some: the older ones first
            await self._unpark(ticket_id, now)
        config, vendors = self.config, self.vendors

        def apply_action(state: LifecycleState | None) -> Step:
            return on_action(state, action.data, action_id=action.id, now=now, config=config,
                             vendors=vendors)

        await self._apply(
            ticket_id, read.partition, source_key(read.topic, read.partition, read.offset),
            apply_action, self._renderer(read.headers, source, read.value, now), reindex=False,
        )

    async def _unpark(self, ticket_id: str, now: datetime) -> None:
        """Apply the actions that waited for this ticket, in arrival order, then drop them
        (a crash in between applies them again: each is deduplicated by its id)."""
        key = ticket_id.encode()
        for read in self.parking.peek(key):
            self.counts["action_unparked"] += 1
            await self._action(read, now, unparking=True)
        self.parking.drop(key)

    async def _settle_parked(self, ticket_id: str, now: datetime) -> None:
        """A sweep's `due`: apply parked actions whose ticket exists, refuse expired ones."""
        key = ticket_id.encode()
        if self.table.get(key) is not None:
            await self._unpark(ticket_id, now)
            return
        if not self.parking.expired(key, now.timestamp()):
            return
        reason = (f"unknown ticket {ticket_id!r}: no event of it within "
                  f"{self.parking.ttl_seconds:g} s of the action")
        records = []
        for read in self.parking.peek(key):
            records.append(refused_action(reason, read.headers, read.source, read.value, now))
        self.counts["action_expired"] += len(records)
        log.warning("actions_expired", ticket_id=ticket_id, actions=len(records))
        await self._emit(records)
        self.parking.drop(key)

    async def _apply(
        self,
        ticket_id: str,
        partition: int,
        position: str,
        run: Runner,
        render: Callable[[list[Output]], list[OutRecord]],
        *,
        reindex: bool,
    ) -> None:
        key = ticket_id.encode()
        raw = self.table.get(key)
        stored, pending = split_stored(raw) if raw is not None else (None, [])
        replay = find_pending(pending, position) if pending else None
        if replay is not None and stored is not None:
            # Read again after a crash, already applied: re-send what it produced, same ids.
            self.counts["replayed"] += 1
            await self._emit(list(replay.records))
            if reindex:
                self.deadlines.update(partition, ticket_id, index_entry_from_json(stored))
            return
        state = decode_state(stored) if stored is not None else None
        step = run(state)
        records = render(step.outputs)
        await self._emit(records)  # first: a replay finds them pending if the state is durable
        new_state = step.state
        if new_state is None:
            return
        if new_state is not state:
            kept = prune(pending, self._committed)
            if records:
                kept.append(Pending(position, tuple(records)))
            self.table[key] = join_stored(encode_state(new_state), kept)
            self.counts["stored"] += 1
        if new_state is not state or reindex:
            self.deadlines.update(partition, ticket_id, index_entry(new_state))
        self.counts["sla_events"] += sum(r.topic == SLA_EVENTS.name for r in records)

    def _committed(self, logical: str, partition: int) -> int | None:
        return self._committed_physical(self.settings.topic(logical), partition)

    # -- agent `actions` -------------------------------------------------------------------------

    async def forward_action(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp: float | None = None,
    ) -> None:
        """Validate a `tickets.actions` record; forward it by ticket id or dead-letter it."""
        now = datetime.now(UTC)
        logical = self.settings.logical(topic)
        source = source_position(logical, partition, offset, timestamp)
        try:
            parsed = parse_action(
                value, key, source, now, max_record_bytes=self.settings.max_record_bytes
            )
            if isinstance(parsed, Rejected):
                self.counts["action_rejected"] += 1
                log.warning("action_rejected", reason=parsed.reason.value, error=parsed.error,
                            partition=partition, offset=offset)
                await self._emit([parsed.record])
                return
            assert value is not None  # parse_action rejects empty values
            await self._emit([action_command(parsed, value, key, source)])
            self.counts["action_forwarded"] += 1
        except Exception as exc:
            log.exception("action_failed", partition=partition, offset=offset)
            await self._emit([self._dead_letter(exc, logical, partition, offset, key, value, now,
                                                timestamp)])
        self.watermark.seen(logical, partition, offset, timestamp)

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
        now = time.time()
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
                     due_sent=self.deadlines.sent, **dict(delta))

    # -- output ----------------------------------------------------------------------------------

    async def _emit(self, records: Iterable[OutRecord], partition: int | None = None) -> None:
        await self._emit_records(records, partition)

    @staticmethod
    def _dead_letter(
        exc: Exception,
        logical: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        now: datetime,
        timestamp: float | None,
    ) -> OutRecord:
        source = source_position(logical, partition, offset, timestamp)
        error = f"{type(exc).__name__}: {exc}"[:1000]
        return dead_letter(
            RejectReason.PROCESSING_ERROR, error, [], source, key, value or b"", now
        )


def _headers(headers: Any) -> dict[str, bytes]:
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {str(name): bytes(value) for name, value in items if value is not None}


