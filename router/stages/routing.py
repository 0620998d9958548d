"""The routing stage: a channel record in, the ticket's records out.

Reads the channel topics, `tickets.reroutes` and `delivery.receipts` (all keyed by thread,
co-partitioned), keeps the ticket state per thread in its table, and returns the queue record,
the decision and the ticket events (`router.outputs.render`), a receipt as its ticket's
`support.message.status` (`router.receipts`), a re-keyed copy of a record whose key is not its
thread, or a dead-letter record. Crash replay: a record read again from the same position
re-emits its first outputs with the same ids (`router.tickets`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import MutableMapping
from datetime import datetime

from router.inbound import Rejected, parse_inbound, source_position
from router.outputs import render
from router.receipts import parse_receipt, status_record
from router.records import OutRecord
from router.reroutes import RerouteNotice, apply_reroute
from router.routing import RoutingPolicy
from router.stages.contract import InRecord, Note, failure_note, processing_failed, rejected_note
from router.tickets import (
    BuyerLookup,
    Duplicate,
    Rekey,
    StandingLookup,
    Threaded,
    TicketState,
    VendorLookup,
    state_key,
    thread_message,
)
from schemas.dead_letter import RejectReason
from schemas.message import Channel
from schemas.topics import CHANNEL_TOPICS, DELIVERY_RECEIPTS, TICKETS_REROUTES


class PolicyHolder:
    """The live routing policy; swapped between two records on hot reload."""

    def __init__(self, policy: RoutingPolicy) -> None:
        self.policy = policy

    def swap(self, policy: RoutingPolicy) -> None:
        self.policy = policy


class RoutingProcessor:
    """Threads and routes inbound messages; `counts` by outcome, `dead_letters` by reason."""

    def __init__(
        self,
        table: MutableMapping[bytes, bytes],
        policy: PolicyHolder,
        *,
        max_record_bytes: int,
        vendors: VendorLookup | None = None,
        buyers: BuyerLookup | None = None,
        standings: StandingLookup | None = None,
    ) -> None:
        self.table = table
        self.policy = policy
        self.max_record_bytes = max_record_bytes
        self.vendors = vendors
        self.buyers = buyers
        self.standings = standings
        self.counts: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self.notes: list[Note] = []

    def process(self, record: InRecord, now: datetime) -> list[OutRecord]:
        if record.topic == TICKETS_REROUTES.name:  # the lifecycle moved a ticket: follow it
            self._apply_reroute(record.value)
            return []
        try:
            if record.topic == DELIVERY_RECEIPTS.name:
                return self._receipt(record, now)
            return self._route(record, now)
        except Exception as exc:  # a bug must not stop the stage: park the record, go on
            self.notes.append(failure_note("processing_failed", record))
            self.counts["rejected"] += 1
            self.dead_letters[RejectReason.PROCESSING_ERROR.value] += 1
            return [processing_failed(exc, record, now)]

    def _route(self, record: InRecord, now: datetime) -> list[OutRecord]:
        source = source_position(record.topic, record.partition, record.offset, record.timestamp)
        parsed = parse_inbound(
            record.value, record.key, source, now,
            expected_channel=CHANNEL_TOPICS.get(record.topic),
            max_record_bytes=self.max_record_bytes,
        )  # fmt: skip
        if isinstance(parsed, Rejected):
            return self._reject(parsed, record)
        msg = parsed.data
        skey = state_key(msg.channel, msg.thread_ref)
        raw_state = self.table.get(skey)
        state = TicketState.from_bytes(raw_state) if raw_state is not None else None
        result = thread_message(
            parsed, record.key, source, state, self.policy.policy, now, self.vendors, self.buyers,
            self.standings,
        )  # fmt: skip
        if isinstance(result, Rekey):
            self.counts["rekeyed"] += 1
            assert record.value is not None  # parse_inbound rejected empty values
            return [OutRecord(record.topic, result.key, record.value)]
        if isinstance(result, Duplicate):
            self.counts["duplicate"] += 1
            self.notes.append(Note("info", "duplicate_inbound", {
                "inbound_id": result.inbound_id, "ticket_id": result.ticket_id}))  # fmt: skip
            return []
        assert isinstance(result, Threaded)
        if result.replayed:
            self.counts["replayed"] += 1
        else:
            self.table[skey] = result.state.to_bytes()
            self.counts["opened" if result.is_new else "followup"] += 1
        return render(result, parsed.id, now)

    def _receipt(self, record: InRecord, now: datetime) -> list[OutRecord]:
        source = source_position(record.topic, record.partition, record.offset, record.timestamp)
        receipt = parse_receipt(record.value, record.key, source, now, self.max_record_bytes)
        if isinstance(receipt, Rejected):
            return self._reject(receipt, record)
        thread = receipt.data.thread_ref.encode()
        if record.key != thread:  # read where its thread's ticket is
            self.counts["rekeyed"] += 1
            assert record.value is not None  # parse_receipt rejected empty values
            return [OutRecord(record.topic, thread, record.value)]
        raw_state = self.table.get(state_key(receipt.data.channel, receipt.data.thread_ref))
        if raw_state is None:
            self.counts["receipt_without_ticket"] += 1
            return []
        self.counts["receipt"] += 1
        return [status_record(receipt, TicketState.from_bytes(raw_state).ticket_id, now)]

    def _reject(self, rejected: Rejected, record: InRecord) -> list[OutRecord]:
        self.counts["rejected"] += 1
        self.dead_letters[rejected.reason.value] += 1
        self.notes.append(rejected_note("record_rejected", rejected, record))
        return [rejected.record]

    def _apply_reroute(self, value: bytes | None) -> None:
        try:
            notice = RerouteNotice.from_bytes(value or b"")
            channel = Channel(notice.channel)
        except (ValueError, KeyError, TypeError) as exc:  # written by the engine itself
            self.notes.append(Note("error", "reroute_notice_invalid", {"error": repr(exc)}))
            return
        skey = state_key(channel, notice.thread_ref)
        raw_state = self.table.get(skey)
        state = TicketState.from_bytes(raw_state) if raw_state is not None else None
        moved = apply_reroute(state, notice)
        if moved is not None:
            self.table[skey] = moved.to_bytes()
            self.counts["moved"] += 1
