"""The lifecycle stage's logic between faust and the pure core (faust plumbing: lifecycle.py).

Written against small interfaces (a mapping for the table, a send function, the local data
reader) so it runs in unit tests without Kafka.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from router.inbound import Rejected, dead_letter
from router.outputs import EVENTS_TOPIC
from router.records import OutRecord
from router.sla.index import PartitionedDeadlineIndex
from router.sla.lifecycle import on_action, on_tick, on_ticket_event
from router.sla.outbox import (
    Pending,
    find_pending,
    join_stored,
    prune,
    source_key,
    split_stored,
    state_part,
)
from router.sla.policy import SlaConfig
from router.sla.render import (
    CMD_ACTION,
    CMD_DUE,
    CMD_HEADER,
    COMMANDS_TOPIC,
    STAGE_HEADER,
    STAGE_LIFECYCLE,
    TicketEventEnvelope,
    action_command,
    due_command,
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
from schemas.action import TicketActionEvent
from schemas.dead_letter import RejectReason, SourcePosition
from streams.settings import RouterSettings
from streams.topics import TopicManager

log = structlog.get_logger("router.lifecycle")

TICK_SECONDS = 1.0
DUE_PER_BATCH = 5_000  # due commands per pop; the rest follow at once, after a loop yield
_REBUILD_YIELD_EVERY = 10_000

# (physical topic, key, value, partition or None, headers) -> delivery future
SendFn = Callable[[str, bytes | None, bytes, int | None, list[tuple[str, bytes]]], Awaitable[Any]]
Runner = Callable[[LifecycleState | None], Step]


class LocalData(Protocol):
    """The table's local data, read without an event context (recovery, rebuild)."""

    def get(self, key: bytes) -> bytes | None: ...

    def keys_by_partition(self, partitions: set[int]) -> Mapping[int, Sequence[bytes]]: ...


class LifecycleStage:
    """Everything between the faust plumbing and the pure core; testable with fakes."""

    def __init__(
        self,
        settings: RouterSettings,
        config: SlaConfig,
        table: Any,  # MutableMapping[bytes, bytes]: the faust table
        local: LocalData,
        send: SendFn,
        topics: TopicManager,
        committed: Callable[[str, int], int | None] = lambda topic, partition: None,
        on_delivery_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.table = table
        self.local = local
        self._send = send
        self.topics = topics
        self._committed_physical = committed
        self._on_delivery_failure = on_delivery_failure
        self.index = PartitionedDeadlineIndex()
        self.firing = False  # only between the end of a recovery and the next revocation
        self.counts: Counter[str] = Counter()
        self.last_rebuild: dict[str, Any] = {}
        self._changed: dict[int, set[bytes]] = defaultdict(set)
        self._wakeup: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[int]] = set()

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
        config = self.config
        due = False
        run: Runner
        if logical == EVENTS_TOPIC:
            if headers.get(STAGE_HEADER) == STAGE_LIFECYCLE:
                self.counts["own_event"] += 1  # written by this stage: nothing to apply
                return
            record = TicketEventEnvelope.model_validate_json(value)
            event, event_id = record.data, record.id
            ticket_id = event.ticket_id

            def run(state: LifecycleState | None) -> Step:
                return on_ticket_event(state, event, event_id=event_id, now=now, config=config)

        elif logical == COMMANDS_TOPIC and headers.get(CMD_HEADER) == CMD_DUE:
            due = True
            ticket_id = (key or b"").decode()

            def run(state: LifecycleState | None) -> Step:
                return Step(state, []) if state is None else on_tick(state, now, config=config)

        elif logical == COMMANDS_TOPIC and headers.get(CMD_HEADER) == CMD_ACTION:
            action = TicketActionEvent.model_validate_json(value)
            ticket_id = action.data.ticket_id

            def run(state: LifecycleState | None) -> Step:
                return on_action(state, action.data, action_id=action.id, now=now, config=config)

        else:
            command = headers.get(CMD_HEADER)
            raise ValueError(f"not a lifecycle input: {logical}, command {command!r}")
        position = source_key(logical, partition, offset)
        fallback = SourcePosition(topic=logical, partition=partition, offset=offset)

        def render(outputs: list[Output]) -> list[OutRecord]:
            records: list[OutRecord] = []
            for out in outputs:
                if isinstance(out, ActionRejectedOut):
                    self.counts["action_refused"] += 1
                    records.append(refused_action(out.reason, headers, fallback, value, now))
                else:
                    records.extend(render_output(out))
            return records

        await self._apply(ticket_id, partition, position, run, render, reindex=due)

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
                self._index_entry(partition, ticket_id, index_entry_from_json(stored))
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
            self._index_entry(partition, ticket_id, index_entry(new_state))
        self.counts["sla_events"] += sum(r.topic == "sla.events" for r in records)

    def _index_entry(self, partition: int, ticket_id: str, entry: tuple[float, str] | None) -> None:
        if entry is None:
            self.index.discard(partition, ticket_id)
        else:
            self.index.add(partition, *entry)

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
        source = SourcePosition(
            topic=logical, partition=partition, offset=offset, timestamp_ms=_millis(timestamp)
        )
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

    # -- timer -----------------------------------------------------------------------------------

    async def fire_due(self) -> int:
        """Send a `due` command for every indexed ticket whose next firing is due now."""
        if not self.firing:
            return 0
        now = time.time()
        due = self.index.pop_due(now, DUE_PER_BATCH)
        for partition, ticket_id in due:
            await self._emit([due_command(ticket_id, now)], partition)
        self.counts["due"] += len(due)
        self._schedule_wakeup(now)
        return len(due)

    def _schedule_wakeup(self, now: float) -> None:
        """Fire on time when the next due instant falls before the next tick."""
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        upcoming = self.index.next_due() if self.firing else None
        if upcoming is None or upcoming >= now + TICK_SECONDS:
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

    # -- rebalance -------------------------------------------------------------------------------

    def suspend(self) -> None:
        """Partitions are being revoked: fire nothing until recovery completes."""
        self.firing = False
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None

    def changelog_applied(self, records: Iterable[tuple[int, bytes]]) -> None:
        """Changelog records recovered into partitions the index kept: re-read them later."""
        indexed = self.index.partitions
        for partition, key in records:
            if partition in indexed:
                self._changed[partition].add(key)

    async def on_recovered(self, active: set[int]) -> None:
        """Table recovery is complete and `active` are the table partitions owned here."""
        started = time.perf_counter()
        for partition in self.index.partitions - active:
            self.index.revoke(partition)
        refreshed = 0
        for partition in self.index.partitions:
            for key in self._changed.pop(partition, ()):
                raw = self.local.get(key)
                entry = index_entry_from_json(state_part(raw)) if raw else None
                self._index_entry(partition, key.decode(), entry)
                refreshed += 1
        self._changed.clear()
        new = active - self.index.partitions
        loaded = 0
        if new:
            by_partition = self.local.keys_by_partition(new)
            for partition in sorted(new):
                entries: list[tuple[float, str] | None] = []
                for n, key in enumerate(by_partition.get(partition, ())):
                    raw = self.local.get(key)
                    if raw:
                        entries.append(index_entry_from_json(state_part(raw)))
                    if n % _REBUILD_YIELD_EVERY == _REBUILD_YIELD_EVERY - 1:
                        await asyncio.sleep(0)  # heartbeats; nothing else reads the index yet
                self.index.assign(partition, entries)
                loaded += len(entries)
        self.firing = True
        self.last_rebuild = {
            "partitions": sorted(active),
            "rebuilt": sorted(new),
            "states_read": loaded,
            "refreshed": refreshed,
            "pending_deadlines": len(self.index),
            "seconds": round(time.perf_counter() - started, 3),
        }
        log.info("lifecycle_index_rebuilt", **self.last_rebuild)
        self._schedule_wakeup(time.time())  # overdue deadlines fire right away

    # -- output ----------------------------------------------------------------------------------

    async def _emit(self, records: Iterable[OutRecord], partition: int | None = None) -> None:
        for record in records:
            if record.topic.startswith("queue."):
                await self.topics.ensure([record.topic])
            future = await self._send(
                self.settings.topic(record.topic), record.key, record.value, partition,
                list(record.headers),
            )
            if isinstance(future, asyncio.Future):
                future.add_done_callback(self._check_delivery)

    def _check_delivery(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error("delivery_failed", error=repr(exc))
            if self._on_delivery_failure is not None:
                self._on_delivery_failure(exc)

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
        source = SourcePosition(
            topic=logical, partition=partition, offset=offset, timestamp_ms=_millis(timestamp)
        )
        error = f"{type(exc).__name__}: {exc}"[:1000]
        return dead_letter(
            RejectReason.PROCESSING_ERROR, error, [], source, key, value or b"", now
        )


def _millis(timestamp: float | None) -> int | None:
    return int(timestamp * 1000) if timestamp else None


def _headers(headers: Any) -> dict[str, bytes]:
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {str(name): bytes(value) for name, value in items if value is not None}


