"""faust's Kafka transport with the producer we want.

- acks=all and idempotence always on: faust enables idempotence only inside transactions, yet
  at-least-once processing needs it too, or a retried produce can write a record twice.
- A changelog buffer whose flush really drains: faust's `ProducerBuffer.flush` gives up after
  100 ms without progress and ignores the write being handed to the client at that moment. The
  consumer flushes before it commits input offsets, so under load a commit could pass a record
  whose table write was still buffered; a crash then lost that write while its outputs and its
  offset were durable (seen as a ticket missing a message after SIGKILL).
- Metadata that never narrows: aiokafka's client tracks no topics at first, which means metadata
  for every topic; the first send to a topic it has no metadata for (a queue created on demand)
  makes it track that one topic alone, and the next refresh drops every other topic. A batch
  already waiting for one of those has no leader any more and is not sent until something
  else is sent to its topic: flush, hence every commit and a graceful shutdown, waited for it
  (up to producer_request_timeout, 20 min). Seen as a worker stuck at "Wait for streams..."
  after an SLA escalation opened `queue.dept.escalations`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer

FLUSH_DEADLINE_S = 120.0


class DrainingBuffer(ProducerBuffer):
    """Flush returns only when nothing is queued and nothing is being handed over."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handing_over = 0

    async def _send_pending(self, fut: Any) -> None:
        self._handing_over += 1
        try:
            await super()._send_pending(fut)
        finally:
            self._handing_over -= 1
            self.message_sent.set()

    async def flush(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FLUSH_DEADLINE_S
        while self.size or self._handing_over:
            if loop.time() > deadline:  # fail the commit rather than commit past a lost write
                raise RuntimeError("changelog buffer did not drain within the flush deadline")
            self.message_sent.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)


class _AllTopicsClient(AIOKafkaClient):  # type: ignore[misc]  # aiokafka ships no types
    def add_topic(self, topic: str) -> Any:
        # tracking nothing = every topic: keep what is known, add one
        if not self._topics:  # type: ignore[has-type]  # unannotated in aiokafka
            self._topics = set(self.cluster.topics())
        return super().add_topic(topic)


class AllTopicsProducer(AIOKafkaProducer):  # type: ignore[misc]  # aiokafka ships no types
    """aiokafka's producer, with metadata that never narrows to the topic first sent to."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client.__class__ = _AllTopicsClient  # aiokafka builds its own client


class IdempotentProducer(faust_aiokafka.Producer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        replacement = DrainingBuffer(loop=self.loop, beacon=self.beacon)
        previous: Any = self.buffer  # faust types it as ProducerBufferT, without these two
        replacement.app = previous.app
        if getattr(previous, "threaded_producer", None) is not None:
            replacement.threaded_producer = previous.threaded_producer
        self.buffer = replacement

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    @property
    def _producer_type(self) -> type[AIOKafkaProducer]:
        return AllTopicsProducer


class RouterTransport(faust_aiokafka.Transport):
    Producer = IdempotentProducer


class RouterTable(faust.Table[bytes, bytes]):
    """A table whose changelog is named after the engine's base app id, not the hosting app's:
    a lifecycle-only worker (its own group) keeps the changelogs a single-group worker wrote."""

    def _changelog_topic_name(self) -> str:
        base = getattr(self.app, "changelog_base_id", None) or self.app.conf.id
        return f"{base}-{self.name}-changelog"


class RouterApp(faust.App):
    def __init__(self, id: str, *, changelog_base_id: str | None = None, **kwargs: Any) -> None:
        self.changelog_base_id = changelog_base_id or id
        kwargs.setdefault("Table", RouterTable)
        super().__init__(id, **kwargs)

    def _new_transport(self) -> RouterTransport:
        return RouterTransport(self.conf.broker_consumer, self)
