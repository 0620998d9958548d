"""The private faust / aiokafka attributes the engine touches: read here, or overridden in
`streams.kafka.transport` (listed in `private_names`).

Each accessor names what it reads and why no public API serves; `tests/unit/test_faust_internals.py`
checks each against the installed versions, so an upgrade that moves one fails loudly there
instead of quietly in production.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any


def aiokafka_producer(app: Any) -> Any:
    """The aiokafka producer inside faust's producer service: the one faust flushes before it
    commits input offsets, so records sent to it directly keep that guarantee."""
    return app.producer._ensure_producer()


def memory_store(table: Any) -> tuple[MutableMapping[bytes, bytes], MutableMapping[bytes, int]]:
    """(key -> value, key -> partition) of a table on faust's `memory://` store. Writing both
    is what `Table.__setitem__` does locally; the partition map is what a revocation drops."""
    store = table.data
    return store.data, store._key_partition


def committed_offsets(consumer: Any) -> MutableMapping[Any, int | None]:
    """faust's own record of the offsets it committed, per TP (no public accessor)."""
    offsets: MutableMapping[Any, int | None] = consumer._committed_offset
    return offsets


def started_consumer(app: Any) -> Any | None:
    """The app's consumer if faust has created it; `app.consumer` would create one (and a
    scrape or a timer must not)."""
    return getattr(app, "_consumer", None)


def private_names() -> dict[str, tuple[Any, str]]:
    """Every (class, attribute) the accessors above and `streams.kafka.transport` rely on, for the
    test that fails when an upgrade moves one."""
    from aiokafka.client import AIOKafkaClient
    from faust.tables.base import Collection
    from faust.transport.consumer import Consumer
    from faust.transport.drivers import aiokafka as faust_aiokafka
    from faust.transport.producer import ProducerBuffer

    return {
        "producer": (faust_aiokafka.Producer, "_ensure_producer"),
        "producer settings": (faust_aiokafka.Producer, "_settings_extra"),
        "changelog buffer": (ProducerBuffer, "_send_pending"),
        "changelog name": (Collection, "_changelog_topic_name"),
        "committed offsets": (Consumer, "_committed_offset"),
        "producer class": (faust_aiokafka.Producer, "_producer_type"),
        "client topic set": (AIOKafkaClient, "_topics"),
    }
