"""The inbound agent's body: decode, thread, route, publish. Pure decisions come from router/.

Delivery: outputs are sent without awaiting each delivery; faust flushes the producer before
it commits input offsets, so an offset is committed only once its outputs are durable.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import structlog

from router.inbound import Rejected, dead_letter, parse_inbound, source_position
from router.outputs import render
from router.records import OutRecord
from router.reroutes import RerouteNotice, apply_reroute
from router.routing import RoutingPolicy
from router.tickets import (
    BuyerLookup,
    Duplicate,
    Rekey,
    Threaded,
    TicketState,
    state_key,
    thread_message,
)
from schemas.dead_letter import RejectReason, SourcePosition
from schemas.message import Channel
from schemas.topics import CHANNEL_TOPICS, QUEUE_PREFIX, TICKETS_REROUTES
from schemas.vendor import VendorProfile
from streams.metrics import topic_family
from streams.settings import RouterSettings
from streams.topics import TopicManager

log = structlog.get_logger("router.inbound")

SendFn = Callable[[str, bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[Any]]


class PolicyHolder:
    """The live routing policy; swapped atomically between records on hot reload."""

    def __init__(self, policy: RoutingPolicy) -> None:
        self.policy = policy

    def swap(self, policy: RoutingPolicy) -> None:
        self.policy = policy


class InboundProcessor:
    def __init__(
        self,
        settings: RouterSettings,
        table: MutableMapping[bytes, bytes],
        send: SendFn,
        topics: TopicManager,
        policy: PolicyHolder,
        vendors: Callable[[str], VendorProfile | None] | None = None,
        buyers: BuyerLookup | None = None,
        on_delivery_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.settings = settings
        self.table = table
        self._send = send
        self.topics = topics
        self.policy = policy
        self.vendors = vendors
        self.buyers = buyers
        self._on_delivery_failure = on_delivery_failure
        self.counts: Counter[str] = Counter()  # by outcome (metrics, demo, logs)
        self.dead_letters: Counter[str] = Counter()  # by reason
        self.sent: Counter[str] = Counter()  # by topic family (queue.vendor, not per vendor)

    async def handle(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp: float | None = None,
    ) -> None:
        now = datetime.now(UTC)
        logical = self.settings.logical(topic)
        if logical == TICKETS_REROUTES.name:  # the lifecycle moved a ticket: follow-ups follow it
            self._apply_reroute(value)
            return
        source = source_position(logical, partition, offset, timestamp)
        try:
            await self._handle(logical, source, key, value, now)
        except Exception as exc:  # a bug must not stop the agent: park the record, keep going
            log.exception("processing_failed", topic=logical, partition=partition, offset=offset)
            record = dead_letter(
                RejectReason.PROCESSING_ERROR,
                f"{type(exc).__name__}: {exc}"[:1000],
                [],
                source,
                key,
                value or b"",
                now,
            )
            self.counts["rejected"] += 1
            self.dead_letters[RejectReason.PROCESSING_ERROR.value] += 1
            await self._emit([record])

    async def _handle(
        self,
        logical: str,
        source: SourcePosition,
        key: bytes | None,
        value: bytes | None,
        now: datetime,
    ) -> None:
        parsed = parse_inbound(
            value,
            key,
            source,
            now,
            expected_channel=CHANNEL_TOPICS.get(logical),
            max_record_bytes=self.settings.max_record_bytes,
        )
        if isinstance(parsed, Rejected):
            self.counts["rejected"] += 1
            self.dead_letters[parsed.reason.value] += 1
            log.warning(
                "record_rejected",
                reason=parsed.reason.value,
                error=parsed.error,
                topic=logical,
                partition=source.partition,
                offset=source.offset,
            )
            await self._emit([parsed.record])
            return
        msg = parsed.data
        skey = state_key(msg.channel, msg.thread_ref)
        raw_state = self.table.get(skey)
        state = TicketState.from_bytes(raw_state) if raw_state is not None else None
        result = thread_message(
            parsed, key, source, state, self.policy.policy, now, self.vendors, self.buyers
        )
        if isinstance(result, Rekey):
            self.counts["rekeyed"] += 1
            assert value is not None  # parse_inbound rejected empty values
            await self._emit([OutRecord(logical, result.key, value)])
            return
        if isinstance(result, Duplicate):
            self.counts["duplicate"] += 1
            log.info("duplicate_inbound", inbound_id=result.inbound_id, ticket_id=result.ticket_id)
            return
        assert isinstance(result, Threaded)
        if result.replayed:
            self.counts["replayed"] += 1
        else:
            self.table[skey] = result.state.to_bytes()
            self.counts["opened" if result.is_new else "followup"] += 1
        await self._emit(render(result, parsed.id, now))

    def _apply_reroute(self, value: bytes | None) -> None:
        try:
            notice = RerouteNotice.from_bytes(value or b"")
            channel = Channel(notice.channel)
        except (ValueError, KeyError, TypeError) as exc:  # written by the engine itself
            log.error("reroute_notice_invalid", error=repr(exc))
            return
        skey = state_key(channel, notice.thread_ref)
        raw_state = self.table.get(skey)
        state = TicketState.from_bytes(raw_state) if raw_state is not None else None
        moved = apply_reroute(state, notice)
        if moved is not None:
            self.table[skey] = moved.to_bytes()
            self.counts["moved"] += 1

    async def _emit(self, records: list[OutRecord]) -> None:
        for record in records:
            if record.topic.startswith(QUEUE_PREFIX):
                await self.topics.ensure([record.topic])
            self.sent[topic_family(record.topic)] += 1
            future = await self._send(
                self.settings.topic(record.topic), record.key, record.value, list(record.headers)
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
