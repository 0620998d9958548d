"""The disputes stage on Kafka: the `disputes` table, two agents and the deadline timer.

- Agent `dispute-actions` reads `tickets.actions` and `payments.events` (any partitioner) and
  forwards each valid dispute command (a chargeback: the system's `chargeback` action) to the
  internal `disputes.commands`, keyed by order id; bad ones are dead-lettered on
  `channel.dlq`; ticket commands are left to the lifecycle stage.
- Agent `disputes` reads `disputes.commands` (the engine's own partitioner: an order's
  commands and its table entry share a partition number), runs the pure core
  (`router.stages.disputes`), publishes the events, stores the dispute.
- The deadline machinery is the SLA timers' (`streams.stages.deadlines.Deadlines`): an
  in-memory index of the owned partitions, rebuilt from the table on recovery; each second
  (or on time, by a one-shot wake-up) due orders become `due` commands on their partition of
  `disputes.commands`, and the agent re-checks the stored deadlines, so a deadline fires once
  across crashes, restarts and rebalances, and never after the dispute moved on. While
  `tickets.actions` has a backlog here, it fires only what was due before the last command
  read (`streams.stages.horizon`): a seller's answer waiting in the backlog is applied first.
- The policy: at start, the file setting (else the bundled default); then every worker
  follows the compacted `disputes.policy` (`DisputePolicyReload`, on the one compacted-topic
  follower `streams.kafka.compacted`): the newest published policy that validates against this
  worker's calendars is in force, caught up before the worker processes anything; a record
  that does not validate is logged (`dispute_policy_refused`) and the policy before it stays.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import faust
import structlog
from aiokafka import ConsumerRecord
from faust.types import TP

from router.clock import Clock, SystemClock
from router.disputes.machine import VendorDirectory
from router.disputes.policy import (
    DEFAULT_DISPUTE_POLICY,
    DisputePolicy,
    load_dispute_policy,
    newest_valid,
)
from router.records import OutRecord
from router.sla.calendar import AlwaysOpen, Calendar
from router.sla.policy import DEFAULT_POLICY_FILE, load_sla_config
from router.stages.contract import InRecord, LocalData
from router.stages.disputes import DisputesProcessor, dispute_due, stored_entry
from schemas.topics import (
    DISPUTES_CHANGELOG,
    DISPUTES_COMMANDS,
    DISPUTES_POLICY,
    DISPUTES_TABLE,
    PAYMENTS_EVENTS,
    TICKETS_ACTIONS,
)
from schemas.vendor import VendorProfile
from streams.kafka.compacted import CompactedFollower, install_follower
from streams.kafka.emit import Emitter
from streams.kafka.faust_internals import committed_offsets
from streams.kafka.topics import raw_topic
from streams.settings import RouterSettings
from streams.stages.deadlines import TICK_SECONDS, Deadlines
from streams.stages.horizon import InputWatermark, Positions
from streams.stages.lifecycle import DeadlineTable, FaustLocalData, input_positions
from streams.stages.runner import BatchTable, StageRunner, headers_of, install_stage, write_notes
from streams.stages.sla import EmitFn

log = structlog.get_logger("router.disputes")

Record: TypeAlias = ConsumerRecord[bytes, bytes]


class DisputePolicyReload:
    """Keeps `stage`'s policy on the newest valid record of `disputes.policy` (see the module
    doc). Deadlines already set keep their instants; a new policy's windows apply to the
    deadlines set from then on."""

    def __init__(
        self, settings: RouterSettings, stage: DisputesStage, calendars: Mapping[str, Calendar]
    ) -> None:
        self.stage = stage
        self._calendars = calendars
        self.follower = CompactedFollower(
            settings, DISPUTES_POLICY.name, "disputes-policy", load=self.on_catch_up,
            update=self.on_records,
        )  # fmt: skip
        self.active: str | None = None  # the topic position of the policy in force, if any

    def _where(self, record: Record) -> str:
        return f"{self.follower.reader.topic}[{record.partition}]@{record.offset}"

    async def on_catch_up(self, records: Sequence[Record]) -> None:
        self._take([(self._where(r), r.value) for r in records], startup=True)

    async def on_records(self, records: Sequence[Record]) -> None:
        for record in records:  # one by one: each valid one is in force until the next
            self._take([(self._where(record), record.value)], startup=False)

    def _take(self, records: list[tuple[str, bytes | None]], *, startup: bool) -> None:
        choice = newest_valid(records, self._calendars)
        kept = self.stage.processor.policy.fingerprint
        for where, problems in choice.refused:
            log.error("dispute_policy_refused", record=where, problems=problems, kept=kept)
        if choice.policy is not None and choice.policy.fingerprint != kept:
            self.stage.processor.policy = choice.policy  # between two records: the agent is sync
            log.info("dispute_policy_activated", record=choice.where,
                     fingerprint=choice.policy.fingerprint, previous=kept)  # fmt: skip
        self.active = choice.where or self.active
        if startup:
            log.info("dispute_policy_caught_up", records=len(records),
                     source="topic" if self.active else "startup",
                     fingerprint=self.stage.processor.policy.fingerprint)  # fmt: skip


class DisputesStage:
    """The processor, its deadline index and the timer (unit-testable without Kafka)."""

    def __init__(
        self,
        settings: RouterSettings,
        policy: DisputePolicy,
        table: Any,  # MutableMapping[bytes, bytes]: the disputes table (a BatchTable on Kafka)
        local: LocalData,
        emit: EmitFn,
        committed: Callable[[str, int], int | None] = lambda topic, partition: None,
        vendors: VendorDirectory | None = None,
        clock: Clock | None = None,
        positions: Positions = lambda: (),
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self._emit = emit
        self.policy_reload: DisputePolicyReload | None = None  # on Kafka: `disputes.policy`
        # `positions`: the assigned tickets.actions partitions (a seller's answer there stops
        # its window; none: deadlines fire up to now)
        self.watermark = InputWatermark(positions)
        self.deadlines = Deadlines(local, self._send_due, self.watermark.horizon, self.clock,
                                   entry_of=stored_entry, name="disputes")  # fmt: skip
        physical = settings.topic
        self.processor = DisputesProcessor(
            policy, table, max_record_bytes=settings.max_record_bytes, vendors=vendors,
            index=self.deadlines.update,
            committed=lambda logical, partition: committed(physical(logical), partition),
            seen=self.watermark.seen,
        )  # fmt: skip

    @property
    def counts(self) -> Counter[str]:
        return self.processor.counts

    async def handle(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        headers: Any = None, timestamp: float | None = None,
    ) -> None:  # fmt: skip
        """One record of a disputes input (physical topic name): processed and emitted."""
        record = InRecord(self.settings.logical(topic), partition, offset, key, value, timestamp,
                          headers_of(headers))  # fmt: skip
        await self._emit(self.processor.process(record, self.clock.now()), None)
        write_notes(self.processor.notes)

    async def tick(self) -> int:
        return await self.deadlines.fire_due()

    async def _send_due(
        self, partition: int, order_id: str, now: float, until: float | None
    ) -> None:
        records: Iterable[OutRecord] = [dispute_due(order_id, now, until)]
        await self._emit(records, partition)


class _Vendors:
    def __init__(self, lookup: Callable[[str], VendorProfile | None]) -> None:
        self.get = lookup


def install_disputes(
    app: faust.App,
    settings: RouterSettings,
    emitter: Emitter,
    vendors: Callable[[str], VendorProfile | None] | None = None,
    clock: Clock | None = None,
) -> DisputesStage:
    """Add the stage's table, agents, timer and rebalance hook to `app`."""
    calendars = load_sla_config(settings.sla_policies_file or DEFAULT_POLICY_FILE).calendars
    if settings.disputes_policy_file is not None:
        policy = load_dispute_policy(settings.disputes_policy_file, calendars)  # raises at start
    else:
        # the bundled policy names the bundled SLA file's calendars: under another SLA file
        # that lacks them, its windows run around the clock
        policy = load_dispute_policy(DEFAULT_DISPUTE_POLICY, calendars, fallback=AlwaysOpen())
        missing = sorted({policy.seller_calendar, policy.buyer_calendar} - set(calendars))
        if missing:
            log.warning("dispute_calendars_missing", calendars=missing, running_as="always")
    table = app.tables.add(
        DeadlineTable(
            app, name=DISPUTES_TABLE, default=None, beacon=app.tables.beacon,
            key_type=bytes, value_type=bytes, partitions=settings.partitions,
            help="per-order dispute state (router.disputes.machine)",
            extra_topic_configs=dict(DISPUTES_CHANGELOG.configs),
        )
    )  # fmt: skip

    def committed(topic: str, partition: int) -> int | None:
        return committed_offsets(app.consumer).get(TP(topic, partition))

    states = BatchTable.over(table)
    stage = DisputesStage(
        settings, policy, states, FaustLocalData(table, settings.partitions), emitter.emit,
        committed=committed, vendors=_Vendors(vendors) if vendors is not None else None,
        clock=clock, positions=input_positions(app, settings, TICKETS_ACTIONS.name),
    )  # fmt: skip
    stage.policy_reload = DisputePolicyReload(settings, stage, calendars)
    install_follower(app, stage.policy_reload.follower)  # caught up before faust starts
    table.deadlines = stage.deadlines  # type: ignore[attr-defined]  # tables.add: the base type
    commands = raw_topic(app, settings, DISPUTES_COMMANDS.name)
    actions = raw_topic(app, settings, TICKETS_ACTIONS.name, PAYMENTS_EVENTS.name)
    apply = StageRunner(stage.processor, [states], emitter, stage.clock, settings.logical,
                        with_headers=True)  # fmt: skip
    forward = StageRunner(stage.processor, [], emitter, stage.clock, settings.logical)
    wait_s = settings.batch_max_wait_ms / 1000
    install_stage(app, commands, "disputes", apply, settings.batch_max_records, wait_s)
    install_stage(app, actions, "dispute-actions", forward, settings.batch_max_records, wait_s)

    @app.timer(TICK_SECONDS, name="dispute-deadlines")  # type: ignore[untyped-decorator]  # faust
    async def deadlines() -> None:
        await stage.tick()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust types it as sync
    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        stage.deadlines.suspend()
        for tp in revoked:
            stage.watermark.revoked(settings.logical(tp.topic), tp.partition)

    return stage
