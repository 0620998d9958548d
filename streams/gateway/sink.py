"""The gateway's Kafka producer: the engine's conventions (acks=all, idempotent), and a bound on
how long a request waits for Kafka before it is told to retry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from router.intake.request import Record
from schemas.topics import CHANNELS, DELIVERY_RECEIPTS
from streams.gateway.metrics import GatewayMetrics
from streams.kafka.client import producer_kwargs
from streams.settings import RouterSettings

log = structlog.get_logger("router.gateway")

# A failed start is tried again on the next request, at most this often.
RESTART_INTERVAL_S = 1.0
READY_TIMEOUT_S = 2.0
# how long a stop waits for a start under way to finish before cancelling it
STOP_WAIT_S = 5.0


class ChannelSink:
    """Sends records and reports which ones Kafka acknowledged within the deadline.

    The producer starts in the background and starts again after a failure, so the gateway
    serves (with 503s) while the brokers are unreachable and recovers without a restart. A
    record whose acknowledgement did not arrive in time may still be written later: that is
    safe, since a retry carries the same event id and the engine keeps one message per id.
    """

    def __init__(
        self,
        settings: RouterSettings,
        ack_timeout_s: float | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.ack_timeout_s = ack_timeout_s or settings.gateway_ack_timeout_s
        self.metrics = metrics or GatewayMetrics()
        self._producer: AIOKafkaProducer | None = None
        self._starting: asyncio.Task[AIOKafkaProducer | None] | None = None
        self._last_attempt = float("-inf")

    async def send(self, records: Sequence[Record]) -> list[bool]:
        """Produce every record (keyed, to its topic); True where Kafka acknowledged."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.ack_timeout_s
        futures: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout_at(deadline):
                producer = await self._started()
                if producer is None:
                    return [False] * len(records)
                for record in records:  # queue them all, then wait once: no per-record round trip
                    futures.append(
                        await producer.send(
                            self.settings.topic(record.topic), record.value, key=record.key
                        )
                    )
        except (TimeoutError, KafkaError) as exc:
            log.warning("gateway_kafka_send_failed", error=repr(exc), queued=len(futures))
        if futures:
            await asyncio.wait(futures, timeout=max(0.0, deadline - loop.time()))
        acked = [f.done() and not f.cancelled() and f.exception() is None for f in futures]
        self.metrics.kafka_seconds.observe(loop.time() - started)
        for record, ok in zip(records, acked, strict=False):
            if ok:
                self.metrics.records.labels(record.topic).inc()
        if not all(acked):
            failed = [f.exception() for f in futures if f.done() and not f.cancelled()]
            log.warning(
                "gateway_kafka_not_acknowledged",
                records=len(records),
                acknowledged=sum(acked),
                errors=sorted({repr(e) for e in failed if e is not None})[:3],
            )
        return acked + [False] * (len(records) - len(futures))

    async def ready(self) -> dict[str, Any]:
        """Whether a broker answers a metadata request and the topics written exist."""
        producer = self._producer
        if producer is None:
            task = self._kick()
            if task is not None:  # a start under way: give it the probe's time
                with contextlib.suppress(TimeoutError):
                    producer = await asyncio.wait_for(asyncio.shield(task), READY_TIMEOUT_S)
        if producer is None:
            return {"ready": False, "error": "not connected to Kafka"}
        try:
            cluster = await asyncio.wait_for(
                producer.client.fetch_all_metadata(), READY_TIMEOUT_S
            )
        except (TimeoutError, KafkaError) as exc:
            return {"ready": False, "error": f"Kafka does not answer: {exc!r}"}
        wanted = [self.settings.topic(t.name) for t in (*CHANNELS.values(), DELIVERY_RECEIPTS)]
        missing = sorted(set(wanted) - set(cluster.topics()))
        if missing:
            return {"ready": False, "error": "topics missing", "missing": missing}
        return {"ready": True, "brokers": len(cluster.brokers())}

    async def start(self) -> None:
        """Begin connecting; requests wait for it within their deadline."""
        self._kick()

    async def stop(self) -> None:
        """Flush what was sent (requests still waiting get their answer) and close."""
        if self._starting is not None and not self._starting.done():
            # aiokafka cancelled mid-connect leaks its bootstrap connection: let it finish
            await asyncio.wait({self._starting}, timeout=STOP_WAIT_S)
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._starting
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError):
                await producer.stop()

    async def _started(self) -> AIOKafkaProducer | None:
        if self._producer is not None:
            return self._producer
        task = self._kick()
        if task is None:
            return None  # the last attempt failed a moment ago: answer 503 at once
        return await asyncio.shield(task)  # a request's deadline does not cancel the start

    def _kick(self) -> asyncio.Task[AIOKafkaProducer | None] | None:
        if self._starting is not None and not self._starting.done():
            return self._starting
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_attempt < RESTART_INTERVAL_S:
            return None
        self._last_attempt = loop.time()
        self._starting = loop.create_task(self._start())
        return self._starting

    async def _start(self) -> AIOKafkaProducer | None:
        producer = AIOKafkaProducer(**producer_kwargs(self.settings), client_id="router-gateway")
        try:
            await producer.start()
        except (KafkaError, OSError) as exc:
            log.warning("gateway_kafka_unavailable", error=repr(exc))
            with contextlib.suppress(Exception):
                await producer.stop()
            return None
        except asyncio.CancelledError:  # the gateway stopped while connecting: close it anyway
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        log.info("gateway_kafka_connected", bootstrap=self.settings.kafka_bootstrap_servers)
        self._producer = producer
        return producer
