"""`router deliver --channel chat|social`: replies from `outbound.<channel>` to the customer.

One consumer in its own group (`<group>-deliver-<channel>`) reads the records in order and,
for each, POSTs the Graph API request (`router.delivery.request_for`) with the record's
`Idempotency-Key` until it is delivered, fails for good, or the attempts run out (the policy
and what is retried: `router.delivery.judge`). The outcome (`support.message.delivered`, or
`support.message.failed` plus the record on `outbound.dlq`) is written and acknowledged by
Kafka before the record's offset is committed: at least once, and a redelivered record carries
the same key, so the platform can drop the repeat.

Records are sent one at a time: a reply waiting out its backoff holds the ones behind it,
which keeps a thread's replies in order.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from router.delivery import (
    IDEMPOTENCY_HEADER,
    Delivered,
    Failed,
    Retry,
    RetryPolicy,
    Source,
    delivered_record,
    failed_records,
    judge,
    provider_message_id,
    request_for,
)
from router.records import OutRecord
from schemas.outbound import OutboundReplyEvent
from schemas.topics import OUTBOUND, OUTBOUND_DLQ, TICKETS_EVENTS
from streams.kafka.client import client_kwargs, producer_kwargs
from streams.kafka.topics import TopicManager, core_topics
from streams.logs import configure_logging
from streams.settings import RouterSettings
from streams.tools import stop_consumer

log = structlog.get_logger("router.deliver")

CHANNELS = ("chat", "social")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None  # None: no answer
    retry_after: str | None = None
    body: bytes = b""
    error: str | None = None


Post = Callable[[str, bytes, dict[str, str]], Awaitable[Answer]]


def http_post(session: aiohttp.ClientSession) -> Post:
    async def post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
        try:
            async with session.post(url, data=body, headers=headers) as response:
                return Answer(response.status, response.headers.get("Retry-After"),
                              await response.read())  # fmt: skip
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Answer(None, error=type(exc).__name__)

    return post


class Deliverer:
    """Delivers one record and says what to write about it (the HTTP call, sleep, clock and
    jitter are given, so tests run it without waiting)."""

    def __init__(
        self,
        settings: RouterSettings,
        post: Post,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.base_url = settings.deliver_base_url
        self.policy = RetryPolicy(settings.deliver_max_attempts, settings.deliver_base_delay_s,
                                  settings.deliver_max_delay_s)  # fmt: skip
        self._token = settings.deliver_token
        self._post, self._sleep, self._jitter, self._now = post, sleep, jitter, now

    async def deliver(self, value: bytes, key: bytes | None, source: Source) -> list[OutRecord]:
        try:
            event = OutboundReplyEvent.model_validate_json(value)
        except ValidationError as exc:
            reason = f"not an outbound record: {exc.error_count()} validation error(s)"
            log.error("outbound_record_invalid", topic=source.topic, offset=source.offset)
            return failed_records(None, value, key, source, 0, Failed(reason, None), self._now())
        reply = event.data
        request = request_for(reply, self.base_url)
        if request is None:
            failure = Failed(f"thread {reply.thread_ref!r} names no recipient to send to", None)
            log.warning("reply_undeliverable", ticket_id=reply.ticket_id, reason=failure.reason)
            return failed_records(event, value, key, source, 0, failure, self._now())
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: event.id}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        body = orjson.dumps(request.body)
        attempt = 0
        while True:
            attempt += 1
            answer = await self._post(request.url, body, headers)
            verdict = judge(self.policy, attempt, answer.status, retry_after=answer.retry_after,
                            error=answer.error, now=self._now(), jitter=self._jitter())  # fmt: skip
            if isinstance(verdict, Retry):
                log.info("reply_retry", ticket_id=reply.ticket_id, key=event.id, attempt=attempt,
                         status=answer.status, error=answer.error,
                         delay_s=round(verdict.delay_s, 3))  # fmt: skip
                await self._sleep(verdict.delay_s)
                continue
            if isinstance(verdict, Delivered):
                log.info("reply_delivered", ticket_id=reply.ticket_id, key=event.id,
                         attempts=attempt)  # fmt: skip
                return [delivered_record(reply, attempt, verdict.status,
                                         provider_message_id(answer.body), self._now())]
            log.warning("reply_failed", ticket_id=reply.ticket_id, key=event.id,
                        attempts=attempt, reason=verdict.reason)  # fmt: skip
            return failed_records(event, value, key, source, attempt, verdict, self._now())


async def deliver_loop(
    settings: RouterSettings,
    channel: str,
    stop: asyncio.Event,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Consume `outbound.<channel>` until `stop` is set (the record in hand finishes first)."""
    logical = OUTBOUND.of(channel)
    await TopicManager(settings).ensure([logical, OUTBOUND_DLQ.name, TICKETS_EVENTS.name],
                                        core_topics(settings))  # fmt: skip
    consumer = AIOKafkaConsumer(
        settings.topic(logical), **client_kwargs(settings),
        group_id=f"{settings.group_id('routing')}-deliver-{channel}",
        enable_auto_commit=False, auto_offset_reset="earliest",
        session_timeout_ms=int(settings.session_timeout_s * 1000),
    )  # fmt: skip
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    timeout = aiohttp.ClientTimeout(total=settings.deliver_timeout_s)
    await producer.start()
    await consumer.start()
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            deliverer = Deliverer(settings, http_post(session))
            log.info("deliver_started", topic=settings.topic(logical))
            if on_ready is not None:
                on_ready()
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=100)
                for tp, records in batch.items():
                    for record in records:
                        await _one(deliverer, producer, consumer, settings, logical, tp, record)
    finally:
        await stop_consumer(consumer)
        await producer.stop()
    log.info("deliver_stopped")


async def _one(
    deliverer: Deliverer,
    producer: AIOKafkaProducer,
    consumer: AIOKafkaConsumer,
    settings: RouterSettings,
    logical: str,
    tp: TopicPartition,
    record: ConsumerRecord[bytes, bytes],
) -> None:
    source = Source(logical, record.partition, record.offset)
    outs = await deliverer.deliver(record.value or b"", record.key, source)
    sent = [await producer.send(settings.topic(o.topic), o.value, o.key, headers=list(o.headers))
            for o in outs]  # fmt: skip
    await asyncio.gather(*sent)  # the outcome is durable before the offset moves past it
    await consumer.commit({tp: record.offset + 1})


def run_deliver(settings: RouterSettings, channel: str) -> None:
    configure_logging(settings.log_level)
    log.info("deliver_starting", channel=channel, settings=settings.masked())

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await deliver_loop(settings, channel, stop)

    asyncio.run(main())
