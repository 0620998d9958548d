"""The disputes stage: dispute commands and timer `due` commands in, dispute events out.

Inputs, by logical topic:
- `tickets.actions` (external, any partitioner): dispute commands (`support.dispute.action`)
  are validated and forwarded to the internal `disputes.commands` keyed by order id, or
  dead-lettered; ticket commands are the lifecycle stage's and are skipped;
- `payments.events`: a chargeback becomes the system's `chargeback` dispute action (it opens
  the order's dispute or escalates the open one), forwarded the same way (a redelivered
  chargeback carries the same id: it acts once);
- `disputes.commands` (written only by the engine's producer, so an order's records share a
  partition number with its `disputes` table entry): a forwarded command is applied to the
  order's dispute (`router.disputes.machine.apply`), a `due` command fires its deadline (only
  one due by its `until`, while `tickets.actions` has a backlog: a seller's answer waiting in
  it is applied first).

A refused command is dead-lettered as `action_refused` with the reason, the original key and
bytes, and where it was first read. The table stores the dispute and, until the input offset
is committed, the records the input produced (`router.sla.outbox`): a command read again after
a crash re-sends them with the same ids instead of applying twice. A `due` read after the
dispute moved on fires nothing (the machine re-checks the stored deadlines).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, MutableMapping
from datetime import datetime

from router.disputes.machine import (
    Decision,
    Dispute,
    VendorDirectory,
    apply,
    decode_dispute,
    encode_dispute,
    fire_due,
    index_entry,
)
from router.disputes.policy import DisputePolicy
from router.disputes.render import (
    chargeback_command,
    is_dispute_action,
    parse_chargeback,
    parse_dispute_action,
    refused_dispute_action,
    render_decision,
)
from router.inbound import Rejected, source_position
from router.records import OutRecord
from router.sla.outbox import next_stored, open_stored, source_key, split_stored
from router.sla.render import (
    CMD_ACTION,
    CMD_DUE,
    CMD_HEADER,
    KEY_HEADER,
    due_command,
    due_until,
    forwarded_command,
    read_source,
)
from router.stages.contract import InRecord, Note, failure_note, processing_failed, rejected_note
from schemas.dead_letter import SourcePosition
from schemas.dispute import DisputeActionEvent
from schemas.topics import DISPUTES_COMMANDS, PAYMENTS_EVENTS, TICKETS_ACTIONS

# (partition, order id, index entry or None): the deadline index of the partitions owned here
IndexUpdate = Callable[[int, str, tuple[float, str] | None], None]
Committed = Callable[[str, int], int | None]
# (logical topic, partition, offset, record timestamp): a `tickets.actions` record was read
InputSeen = Callable[[str, int, int, float | None], None]


def dispute_due(order_id: str, requested_at: float, until: float | None = None) -> OutRecord:
    """The timer's `due` command for an order's dispute."""
    return due_command(order_id, requested_at, until, topic=DISPUTES_COMMANDS.name)


def stored_entry(raw: bytes) -> tuple[float, str] | None:
    """The index entry of a stored table value (the deadline index's `entry_of`)."""
    return index_entry(decode_dispute(split_stored(raw)[0]))


class DisputesProcessor:
    """The disputes stage's logic over its table; `counts` by outcome."""

    def __init__(
        self,
        policy: DisputePolicy,
        table: MutableMapping[bytes, bytes],
        *,
        max_record_bytes: int,
        vendors: VendorDirectory | None = None,
        index: IndexUpdate = lambda partition, order_id, entry: None,
        committed: Committed = lambda topic, partition: None,
        seen: InputSeen = lambda topic, partition, offset, timestamp: None,
    ) -> None:
        self.policy = policy
        self._seen = seen
        self.table = table
        self.max_record_bytes = max_record_bytes
        self.vendors = vendors
        self._index = index
        self._committed = committed
        self.counts: Counter[str] = Counter()
        self.notes: list[Note] = []

    def process(self, record: InRecord, now: datetime) -> list[OutRecord]:
        out: list[OutRecord] = []
        try:
            if record.topic == TICKETS_ACTIONS.name:
                self._forward(record, now, out)
            elif record.topic == PAYMENTS_EVENTS.name:
                self._chargeback(record, now, out)
            elif record.topic == DISPUTES_COMMANDS.name:
                self._handle(record, now, out)
            else:
                raise ValueError(f"not a disputes input: {record.topic}")
        except Exception as exc:  # a bug must not stop the stage: park the record, go on
            self.notes.append(failure_note("dispute_failed", record))
            self.counts["failed"] += 1
            out.append(processing_failed(exc, record, now))
        if record.topic == TICKETS_ACTIONS.name:
            self._seen(record.topic, record.partition, record.offset, record.timestamp)
        return out

    def _forward(self, record: InRecord, now: datetime, out: list[OutRecord]) -> None:
        if not is_dispute_action(record.value):
            self.counts["ticket_action"] += 1  # the lifecycle stage's
            return
        source = source_position(record.topic, record.partition, record.offset, record.timestamp)
        parsed = parse_dispute_action(record.value, record.key, source, now,
                                      max_record_bytes=self.max_record_bytes)  # fmt: skip
        if isinstance(parsed, Rejected):
            self.counts["action_rejected"] += 1
            self.notes.append(rejected_note("dispute_action_rejected", parsed, record))
            out.append(parsed.record)
            return
        assert record.value is not None  # parse_dispute_action rejects empty values
        out.append(forwarded_command(DISPUTES_COMMANDS.name, parsed.data.order_id, record.value,
                                     record.key, source))  # fmt: skip
        self.counts["action_forwarded"] += 1

    def _chargeback(self, record: InRecord, now: datetime, out: list[OutRecord]) -> None:
        """A chargeback becomes the system's `chargeback` action on its order's dispute."""
        source = source_position(record.topic, record.partition, record.offset, record.timestamp)
        parsed = parse_chargeback(record.value, record.key, source, now,
                                  max_record_bytes=self.max_record_bytes)  # fmt: skip
        if isinstance(parsed, Rejected):
            self.counts["chargeback_rejected"] += 1
            self.notes.append(rejected_note("chargeback_rejected", parsed, record))
            out.append(parsed.record)
            return
        order_id, value = chargeback_command(parsed, now)
        out.append(forwarded_command(DISPUTES_COMMANDS.name, order_id, value, record.key, source))
        self.counts["chargeback_forwarded"] += 1

    def _handle(self, record: InRecord, now: datetime, out: list[OutRecord]) -> None:
        command = record.headers.get(CMD_HEADER)
        value = record.value or b""
        position = source_key(record.topic, record.partition, record.offset)
        policy, vendors = self.policy, self.vendors
        if command == CMD_ACTION:
            event = DisputeActionEvent.model_validate_json(value)
            source = read_source(record.headers) or SourcePosition(
                topic=record.topic, partition=record.partition, offset=record.offset
            )
            key = record.headers.get(KEY_HEADER)

            def run(dispute: Dispute | None) -> Decision:
                return apply(dispute, event.data, now, policy, action_id=event.id,
                             vendors=vendors)  # fmt: skip

            def refused(reason: str) -> OutRecord:
                return refused_dispute_action(reason, source, key, value, now)

            self._apply(event.data.order_id, record.partition, position, run, refused, out)
        elif command == CMD_DUE:
            order_id = (record.key or b"").decode()
            until = due_until(value)

            def tick(dispute: Dispute | None) -> Decision:
                if dispute is None:
                    return Decision(None, ignored="no dispute")
                return fire_due(dispute, now, policy, until=until)

            self._apply(order_id, record.partition, position, tick, None, out, reindex=True)
        else:
            raise ValueError(f"not a disputes command: {command!r}")

    def _apply(
        self,
        order_id: str,
        partition: int,
        position: str,
        run: Callable[[Dispute | None], Decision],
        refused: Callable[[str], OutRecord] | None,
        out: list[OutRecord],
        *,
        reindex: bool = False,
    ) -> None:
        key = order_id.encode()
        stored, pending, replay = open_stored(self.table.get(key), position)
        if replay is not None and stored is not None:
            # Read again after a crash, already applied: re-send what it produced, same ids.
            self.counts["replayed"] += 1
            out.extend(replay.records)
            if reindex:
                self._index(partition, order_id, index_entry(decode_dispute(stored)))
            return
        dispute = decode_dispute(stored) if stored is not None else None
        decision = run(dispute)
        if decision.refused is not None:
            self.counts["action_refused"] += 1
            self.notes.append(Note("warning", "dispute_action_refused",
                                   {"order_id": order_id, "reason": decision.refused}))
            if refused is not None:
                out.append(refused(decision.refused))
        elif decision.ignored is not None:
            self.counts["ignored"] += 1
        records = render_decision(decision, self.policy)
        out.extend(records)  # sent before the state is stored: a replay finds them pending
        new = decision.dispute
        if new is not None and new is not dispute:
            self.table[key] = next_stored(
                encode_dispute(new), pending, position, records, self._committed
            )
            self.counts["transitions"] += len(decision.events)
        if new is not None and (new is not dispute or reindex):
            self._index(partition, order_id, index_entry(new))
