"""The disputes stage on Kafka: the `disputes` table, two runners and the deadline timer,
declared on the worker's host (`streams.stages.host`).

- Runner `dispute-actions` reads `tickets.actions` and `payments.events` (any partitioner) and
  forwards each valid dispute command (a chargeback: the system's `chargeback` action) to the
  internal `disputes.commands`, keyed by order id; bad ones are dead-lettered on
  `channel.dlq`; ticket commands are left to the lifecycle stage.
- Runner `disputes` reads `disputes.commands` (the engine's own partitioner: an order's
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

import structlog
from aiokafka import ConsumerRecord

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
    DISPUTES_COMMANDS,
    DISPUTES_POLICY,
    DISPUTES_TABLE,
    PAYMENTS_EVENTS,
    TICKETS_ACTIONS,
)
from schemas.vendor import VendorProfile
from streams.kafka.compacted import CompactedFollower, install_follower
from streams.settings import RouterSettings
from streams.stages.deadlines import Deadlines
from streams.stages.horizon import InputWatermark, Positions
from streams.stages.host import EmitFn, StageHost
from streams.stages.runner import StageRunner, headers_of, write_notes

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
    app: Any,
    host: StageHost,
    vendors: Callable[[str], VendorProfile | None] | None = None,
) -> DisputesStage:
    """Declare the stage's table, runners, timer and rebalance hooks on `host`; the policy
    follower to `app` (see `DisputePolicyReload`)."""
    settings, emitter = host.settings, host.emitter
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
    table = host.table(DISPUTES_TABLE, "per-order dispute state (router.disputes.machine)")
    stage = DisputesStage(
        settings, policy, table.batch, table.local, host.emit, committed=host.committed,
        vendors=_Vendors(vendors) if vendors is not None else None,
        clock=host.clock, positions=host.positions(TICKETS_ACTIONS.name),
    )  # fmt: skip
    stage.policy_reload = DisputePolicyReload(settings, stage, calendars)
    install_follower(app, stage.policy_reload.follower)  # caught up before the stages start
    table.follow(stage.deadlines)
    apply = StageRunner(stage.processor, [table.batch], emitter, stage.clock, settings.logical,
                        with_headers=True)  # fmt: skip
    forward = StageRunner(stage.processor, [], emitter, stage.clock, settings.logical)
    host.stage("disputes", [DISPUTES_COMMANDS.name], apply)
    host.stage("dispute-actions", [TICKETS_ACTIONS.name, PAYMENTS_EVENTS.name], forward)
    host.timer("dispute-deadlines", stage.tick)
    host.on_revoked(stage.watermark.revoked)
    return stage
