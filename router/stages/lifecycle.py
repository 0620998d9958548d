"""The lifecycle (SLA) stage: ticket events, desk actions and timer commands in, SLA events,
re-routes and ticket events out.

Inputs, by logical topic:
- `tickets.actions` (external, any partitioner): validated and forwarded to the internal
  `tickets.commands` keyed by ticket id, or dead-lettered;
- `tickets.events` and `tickets.commands` (both written by the engine's own producer, so a
  ticket's records share a partition number with its `lifecycle` table entry): applied to the
  ticket's state through the SLA core (`router.sla.lifecycle`).

Crash replay: a record read again after a crash whose state change is already stored re-emits
the outputs it produced, with the same ids (`router.sla.outbox`). An action read before its
ticket's `routed` event waits in the parked table (`router.stages.parking`), and later ones of
that ticket behind it.

A public reply also goes out to the customer: its `outbound.<channel>` record
(`router.outbound`) is rendered with the `replied` event, so a replay re-sends it too. The
ticket's thread comes from the ticket index (`threads`), which sees each event first.

The deadline index and the firing horizon live at the edge (they are in-memory views the
timer reads); the processor tells them what changed through two callables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, MutableMapping
from datetime import datetime

from router.disputes.render import is_dispute_action
from router.inbound import Rejected, source_position
from router.outbound import outbound_reply
from router.records import OutRecord
from router.reroutes import TicketIndexEntry
from router.sla.lifecycle import on_action, on_tick, on_ticket_event
from router.sla.outbox import (
    Pending,
    join_stored,
    next_pending,
    open_stored,
    replay_of,
    source_key,
    state_part,
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
    TicketEventOut,
    decode_state,
    encode_state,
    index_entry,
    index_entry_from_json,
)
from router.sla.transitions import VendorDirectory
from router.stages.contract import InRecord, Note, failure_note, processing_failed, rejected_note
from router.stages.parking import ParkedAction, ParkingLot
from schemas.action import ReplyAction, SurveyResponseAction, TicketActionEvent
from schemas.dead_letter import SourcePosition
from schemas.outbound import DELIVERY_EVENT_TYPES
from schemas.sla import SLA_BREACHED, SLA_MET, SLA_WARNING
from schemas.ticket import TicketEventKind
from schemas.topics import SLA_EVENTS, TICKETS_ACTIONS, TICKETS_COMMANDS, TICKETS_EVENTS

# (partition, ticket id, index entry or None): the deadline index of the partitions owned here
IndexUpdate = Callable[[int, str, tuple[float, str] | None], None]
# (logical topic, partition, offset, record timestamp): an input that can stop a clock was read
InputSeen = Callable[[str, int, int, float | None], None]
# (logical topic, partition) -> the offset committed there, if known
Committed = Callable[[str, int], int | None]
# How the delivery state records on `tickets.events` start (orjson writes no spaces; a quote
# inside a message body is escaped, so no body matches).
_DELIVERY_TYPES = tuple(f'"type":"{t}"'.encode() for t in DELIVERY_EVENT_TYPES)
# A new ticket's events come as opened, message_added, routed: an action parked for it waits
# for `routed`, which brings the ticket's snapshot (a move needs it to publish the ticket).
_BEFORE_ROUTED = frozenset({TicketEventKind.OPENED, TicketEventKind.MESSAGE_ADDED})
# `sla_<kind>` counters: warning, breached, met (orjson writes no spaces)
_SLA_KINDS = tuple(
    (f"sla_{t.rsplit('.', 1)[1]}", f'"type":"{t}"'.encode())
    for t in (SLA_WARNING, SLA_BREACHED, SLA_MET)
)


def sla_kind(value: bytes) -> str:
    """The counter of an SLA event record: `sla_warning`, `sla_breached` or `sla_met`."""
    return next((name for name, marker in _SLA_KINDS if marker in value), "sla_other")


# ticket id -> what the ticket index knows of it (channel, thread ref, comment to answer)
ThreadLookup = Callable[[str], TicketIndexEntry | None]
Runner = Callable[[LifecycleState | None], Step]
Render = Callable[[list[Output]], list[OutRecord]]
# What `_apply` last stored: the ticket's key, the stored bytes, their state part and pending
# entries, and the state itself (the core never changes a state it is given: it copies first).
Written = tuple[bytes, bytes, bytes, list[Pending], LifecycleState]


class LifecycleProcessor:
    """The SLA stage's logic over its two tables; `counts` by outcome."""

    def __init__(
        self,
        config: SlaConfig,
        table: MutableMapping[bytes, bytes],
        parking: ParkingLot,
        *,
        max_record_bytes: int,
        vendors: VendorDirectory | None = None,
        index: IndexUpdate = lambda partition, ticket_id, entry: None,
        seen: InputSeen = lambda topic, partition, offset, timestamp: None,
        committed: Committed = lambda topic, partition: None,
        threads: ThreadLookup = lambda ticket_id: None,
    ) -> None:
        self.config = config
        self.table = table
        self.parking = parking
        self.max_record_bytes = max_record_bytes
        self.vendors = vendors
        self._index = index
        self._seen = seen
        self._committed = committed
        self._threads = threads
        self.counts: Counter[str] = Counter()
        self.notes: list[Note] = []
        # The next input of the ticket last stored (a new ticket's three events come one after
        # another) reads its state back without decoding it, while the table returns those
        # very bytes. One ticket only: states kept longer outlive young GC generations, and
        # full collections then cost more than decoding saves.
        self._written: Written | None = None

    def process(self, record: InRecord, now: datetime) -> list[OutRecord]:
        """One record of `tickets.actions`, `tickets.events` or `tickets.commands`."""
        out: list[OutRecord] = []
        try:
            if record.topic == TICKETS_ACTIONS.name:
                self._forward_action(record, now, out)
            else:
                self._handle(record, now, out)
        except Exception as exc:  # a bug must not stop the stage: park the record, go on
            event = "action_failed" if record.topic == TICKETS_ACTIONS.name else "lifecycle_failed"
            self.notes.append(failure_note(event, record))
            self.counts["failed"] += 1
            out.append(processing_failed(exc, record, now))
        if record.topic in (TICKETS_EVENTS.name, TICKETS_ACTIONS.name):
            self._seen(record.topic, record.partition, record.offset, record.timestamp)
        return out

    # -- tickets.actions -------------------------------------------------------------------------

    def _forward_action(self, record: InRecord, now: datetime, out: list[OutRecord]) -> None:
        """Validate an action; forward it keyed by ticket id, or dead-letter it. Dispute
        commands share the topic and are the disputes stage's."""
        if is_dispute_action(record.value):
            self.counts["dispute_action"] += 1
            return
        source = source_position(record.topic, record.partition, record.offset, record.timestamp)
        parsed = parse_action(
            record.value, record.key, source, now, max_record_bytes=self.max_record_bytes
        )
        if isinstance(parsed, Rejected):
            self.counts["action_rejected"] += 1
            self.notes.append(rejected_note("action_rejected", parsed, record))
            out.append(parsed.record)
            return
        assert record.value is not None  # parse_action rejects empty values
        out.append(action_command(parsed, record.value, record.key, source))
        self.counts["action_forwarded"] += 1

    # -- tickets.events and tickets.commands ------------------------------------------------------

    def _handle(self, record: InRecord, now: datetime, out: list[OutRecord]) -> None:
        logical, partition, offset = record.topic, record.partition, record.offset
        value, headers = record.value or b"", record.headers
        command = headers.get(CMD_HEADER)
        if logical == TICKETS_COMMANDS.name and command == CMD_ACTION:
            self._action(ParkedAction(logical, partition, offset, value, dict(headers)), now, out)
            return
        config, vendors = self.config, self.vendors
        position = source_key(logical, partition, offset)
        render = self._renderer(
            headers, SourcePosition(topic=logical, partition=partition, offset=offset), value, now
        )
        if logical == TICKETS_EVENTS.name:
            if headers.get(STAGE_HEADER) == STAGE_LIFECYCLE:
                self.counts["own_event"] += 1  # written by this stage: nothing to apply
                return
            if any(t in value for t in _DELIVERY_TYPES):  # `router deliver`'s: not a ticket event
                self.counts["delivery_event"] += 1
                return
            envelope = TicketEventEnvelope.model_validate_json(value)
            event, event_id = envelope.data, envelope.id

            def apply_event(state: LifecycleState | None) -> Step:
                return on_ticket_event(
                    state, event, event_id=event_id, now=now, config=config, vendors=vendors
                )

            self._apply(event.ticket_id, partition, position, apply_event, render, out,
                        reindex=False)  # fmt: skip
            if event.kind not in _BEFORE_ROUTED and event.ticket_id.encode() in self.parking:
                self._unpark(event.ticket_id, now, out)  # actions read before the ticket
        elif logical == TICKETS_COMMANDS.name and command == CMD_DUE:
            ticket_id = (record.key or b"").decode()
            until = due_until(value)
            if ticket_id.encode() in self.parking:
                self._settle_parked(ticket_id, now, out)

            def tick(state: LifecycleState | None) -> Step:
                if state is None:
                    return Step(state, [])
                return on_tick(state, now, config=config, vendors=vendors, until=until)

            self._apply(ticket_id, partition, position, tick, render, out, reindex=True)
        else:
            raise ValueError(f"not a lifecycle input: {logical}, command {command!r}")

    def _renderer(
        self, headers: Mapping[str, bytes], source: SourcePosition, value: bytes, now: datetime
    ) -> Render:
        def render(outputs: list[Output]) -> list[OutRecord]:
            records: list[OutRecord] = []
            for output in outputs:
                if isinstance(output, ActionRejectedOut):
                    self.counts["action_refused"] += 1
                    records.append(refused_action(output.reason, dict(headers), source, value,
                                                  now))  # fmt: skip
                else:
                    records.extend(render_output(output))
            return records

        return render

    def _action(
        self, read: ParkedAction, now: datetime, out: list[OutRecord], *, unparking: bool = False
    ) -> None:
        """A forwarded action: applied to its ticket, or parked while the ticket is unknown."""
        action = TicketActionEvent.model_validate_json(read.value)
        if isinstance(action.data, SurveyResponseAction):
            self.counts["survey_response"] += 1  # no clock: the scores stage counts it
            return
        ticket_id = action.data.ticket_id
        key = ticket_id.encode()
        source = read.source
        stored = self.table.get(key)
        # Parked actions of a ticket go first; while its routed event is still to come, a
        # later one waits behind them (they are applied at that event, in order).
        if stored is None or (not unparking and key in self.parking
                              and decode_state(state_part(stored)).ticket is None):  # fmt: skip
            if self.parking.park(key, read, now.timestamp()):
                self.counts["action_parked"] += 1
                return
            self.counts["action_refused"] += 1
            reason = (f"ticket {ticket_id!r} is unknown and {self.parking.max_per_ticket} "
                      "actions already wait for it")  # fmt: skip
            out.append(refused_action(reason, read.headers, source, read.value, now))
            return
        if not unparking and key in self.parking:  # a crash left some: the older ones first
            self._unpark(ticket_id, now, out)
        config, vendors = self.config, self.vendors

        def apply_action(state: LifecycleState | None) -> Step:
            return on_action(state, action.data, action_id=action.id, now=now, config=config,
                             vendors=vendors)  # fmt: skip

        render = self._renderer(read.headers, source, read.value, now)
        if isinstance(action.data, ReplyAction):
            render = self._with_outbound(render, action.data, action.id, now)
        self._apply(
            ticket_id, read.partition, source_key(read.topic, read.partition, read.offset),
            apply_action, render, out, reindex=False,
        )  # fmt: skip

    def _with_outbound(
        self, render: Render, reply: ReplyAction, action_id: str, now: datetime
    ) -> Render:
        """`render`, plus the reply's outbound record once the reply applied (a `replied`
        event is among the outputs: not a duplicate, not refused)."""

        def rendered(outputs: list[Output]) -> list[OutRecord]:
            records = render(outputs)
            if not any(isinstance(o, TicketEventOut) and o.kind is TicketEventKind.REPLIED
                       for o in outputs):  # fmt: skip
                return records
            thread = self._threads(reply.ticket_id)
            if thread is None:
                self.counts["reply_without_thread"] += 1
                self.notes.append(Note("warning", "reply_without_thread",
                                       {"ticket_id": reply.ticket_id, "action_id": action_id}))
                return records
            outbound = outbound_reply(
                reply, action_id, thread.channel, thread.thread_ref, now,
                reply_to=thread.reply_to, customer=thread.customer,
            )  # fmt: skip
            if outbound is not None:
                records.append(outbound)
                self.counts["outbound"] += 1
            return records

        return rendered

    def _unpark(self, ticket_id: str, now: datetime, out: list[OutRecord]) -> None:
        """Apply the actions that waited for this ticket, in arrival order, then drop them
        (a crash in between applies them again: each is deduplicated by its id)."""
        key = ticket_id.encode()
        for read in self.parking.peek(key):
            self.counts["action_unparked"] += 1
            self._action(read, now, out, unparking=True)
        self.parking.drop(key)

    def _settle_parked(self, ticket_id: str, now: datetime, out: list[OutRecord]) -> None:
        """A sweep's `due`: apply parked actions whose ticket exists, refuse expired ones."""
        key = ticket_id.encode()
        if self.table.get(key) is not None:
            self._unpark(ticket_id, now, out)
            return
        if not self.parking.expired(key, now.timestamp()):
            return
        reason = (f"unknown ticket {ticket_id!r}: no event of it within "
                  f"{self.parking.ttl_seconds:g} s of the action")  # fmt: skip
        refused = [refused_action(reason, read.headers, read.source, read.value, now)
                   for read in self.parking.peek(key)]  # fmt: skip
        self.counts["action_expired"] += len(refused)
        self.notes.append(Note("warning", "actions_expired",
                               {"ticket_id": ticket_id, "actions": len(refused)}))  # fmt: skip
        out.extend(refused)
        self.parking.drop(key)

    def _apply(
        self,
        ticket_id: str,
        partition: int,
        position: str,
        run: Runner,
        render: Render,
        out: list[OutRecord],
        *,
        reindex: bool,
    ) -> None:
        key = ticket_id.encode()
        raw = self.table.get(key)
        written = self._written
        stored: bytes | None
        state: LifecycleState | None = None
        if written is not None and written[1] is raw and written[0] == key:
            _, _, stored, pending, state = written
            replay = replay_of(stored, pending, position)
        else:
            stored, pending, replay = open_stored(raw, position)
        if replay is not None and stored is not None:
            # Read again after a crash, already applied: re-send what it produced, same ids.
            self.counts["replayed"] += 1
            out.extend(replay.records)
            if reindex:
                self._index(partition, ticket_id, index_entry_from_json(stored))
            return
        if state is None and stored is not None:
            state = decode_state(stored)
        step = run(state)
        records = render(step.outputs)
        out.extend(records)  # sent before the state is stored: a replay finds them pending
        new_state = step.state
        if new_state is None:
            return
        if new_state is not state:
            encoded = encode_state(new_state)
            kept = next_pending(pending, position, records, self._committed)
            value = self.table[key] = join_stored(encoded, kept)
            self._written = (key, value, encoded, kept, new_state)
            self.counts["stored"] += 1
        if new_state is not state or reindex:
            self._index(partition, ticket_id, index_entry(new_state))
        for record in records:
            if record.topic == SLA_EVENTS.name:
                self.counts["sla_events"] += 1
                self.counts[sla_kind(record.value)] += 1

