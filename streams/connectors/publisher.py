"""`ChannelPublisher`: the Python connector SDK, straight to Kafka with the gateway's rules.

    async with ChannelPublisher(RouterSettings(), source="acme-chat") as publisher:
        event_id = await publisher.publish({"channel": "chat", "message_id": "c-1", ...})
        ...
    # leaving the block waits for every acknowledgement

- Same validation as the gateway and the engine (`router.intake.request.read_document` over
  `router.inbound.parse_inbound`): a message the engine would dead-letter raises
  `InvalidMessage` with the reason and the failing fields, and is not sent.
- Idempotent: a plain message's event id derives from the source, channel and `message_id`,
  exactly as the gateway derives it, so a resend (after a crash, or through the gateway under
  the same source name) carries the same id and the engine adds nothing; the producer is the
  engine's (acks=all, idempotence on).
- Batching: `publish` returns once the record is queued; the producer batches what is queued
  (linger, batch size and compression from the settings). `published` waits for Kafka.
- Backpressure: at most `max_in_flight` records are queued and not yet acknowledged; `publish`
  waits for room, so a connector reading faster than Kafka writes slows down instead of
  filling memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from router.intake.request import Record, Refused, channel_in, read_document
from schemas.dead_letter import FieldError
from streams.kafka.client import producer_kwargs
from streams.settings import RouterSettings


class InvalidMessage(ValueError):
    """The engine would dead-letter this message: `reason` is its dead-letter reason."""

    def __init__(self, refused: Refused) -> None:
        super().__init__(refused.error)
        self.reason = refused.reason
        self.errors: tuple[FieldError, ...] = refused.errors


class ChannelPublisher:
    def __init__(
        self, settings: RouterSettings, *, source: str, max_in_flight: int = 1000
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.settings = settings
        self.source = source
        self.max_in_flight = max_in_flight
        self._room = asyncio.Semaphore(max_in_flight)
        self._pending: set[asyncio.Future[Any]] = set()
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> ChannelPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        producer = AIOKafkaProducer(**producer_kwargs(self.settings), client_id=self.source)
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        """Wait for every acknowledgement, then close (a failed delivery is raised here)."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            await self.flush()
        finally:
            await producer.stop()

    @property
    def in_flight(self) -> int:
        """Records queued and not yet acknowledged."""
        return len(self._pending)

    def record(self, message: Mapping[str, Any] | BaseModel) -> Record:
        """The channel record for `message` (a plain message or a structured event, as a
        mapping or a model), or `InvalidMessage`."""
        doc = message.model_dump(mode="json", exclude_none=True) if isinstance(
            message, BaseModel) else dict(message)  # fmt: skip
        channel = channel_in(doc)
        if isinstance(channel, Refused):
            raise InvalidMessage(channel)
        outcome = read_document(
            channel, doc, self.source, datetime.now(UTC), self.settings.max_record_bytes
        )
        if isinstance(outcome, Refused):
            raise InvalidMessage(outcome)
        return outcome

    async def publish(self, message: Mapping[str, Any] | BaseModel) -> str:
        """Validate and queue one message (waiting for room under `max_in_flight`); its event
        id. `published` or `flush` waits for Kafka."""
        record = self.record(message)
        if self._producer is None:
            raise RuntimeError("the publisher is not started (use `async with`)")
        await self._room.acquire()
        try:
            delivery = await self._producer.send(
                self.settings.topic(record.topic), record.value, key=record.key
            )
        except BaseException:
            self._room.release()
            raise
        self._pending.add(delivery)
        delivery.add_done_callback(self._delivered)
        return record.event_id

    async def published(self, message: Mapping[str, Any] | BaseModel) -> str:
        """Publish and wait until Kafka acknowledged it (acks=all)."""
        event_id = await self.publish(message)
        await self.flush()
        return event_id

    async def flush(self) -> None:
        """Until everything queued so far is acknowledged; a failed delivery raises."""
        if self._pending:
            await asyncio.gather(*list(self._pending))

    def _delivered(self, delivery: asyncio.Future[Any]) -> None:
        self._pending.discard(delivery)
        self._room.release()
