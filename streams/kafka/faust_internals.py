"""The private faust / aiokafka attributes the engine touches: read here, or overridden in
`streams.kafka.transport`, `streams.kafka.changelog_recovery` and `streams.shutdown` (listed in
`private_names`).

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


async def admin_request(admin: Any, request: Any) -> Any:
    """Send a protocol request through aiokafka's admin client (it has no public ACL API)."""
    return await admin._send_request(request)


async def cluster_metadata(consumer: Any) -> Any:
    """Fresh metadata of every topic, from a consumer's client: aiokafka has no public call
    for another topic's partitions before assignment."""
    return await consumer._client.fetch_all_metadata()


def changelog_callback(table: Any) -> Any:
    """The `on_changelog_event` callback a faust table was built with (not exposed)."""
    return table._on_changelog_event


def table_recovery(manager: Any) -> Any | None:
    """faust's table recovery service, None until the table manager creates it."""
    return getattr(manager, "_recovery", None)


def replace_table_recovery(manager: Any, recovery: Any) -> None:
    """Set the table manager's recovery before it starts (it builds one lazily otherwise)."""
    manager._recovery = recovery


def mark_recovery_progress(recovery: Any, tp: Any, now: float) -> None:
    """Tell faust's recovery stats that `tp` made progress at `now` (monotonic), as its own
    changelog reader does; else it logs "No event received for active tp"."""
    recovery._active_events_received_at[tp] = now
    recovery._last_flush_at = now


def private_names() -> dict[str, tuple[Any, str]]:
    """Every (class, attribute) the accessors above and `streams.kafka.transport` rely on, for the
    test that fails when an upgrade moves one."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.client import AIOKafkaClient
    from faust.stores.memory import Store as MemoryStore
    from faust.tables.base import Collection
    from faust.tables.manager import TableManager
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer
    from faust.transport.drivers import aiokafka as faust_aiokafka
    from faust.transport.producer import ProducerBuffer
    from mode.worker import Worker

    return {
        "producer": (faust_aiokafka.Producer, "_ensure_producer"),
        "producer settings": (faust_aiokafka.Producer, "_settings_extra"),
        "changelog buffer": (ProducerBuffer, "_send_pending"),
        "changelog name": (Collection, "_changelog_topic_name"),
        "committed offsets": (Consumer, "_committed_offset"),
        "producer class": (faust_aiokafka.Producer, "_producer_type"),
        "client topic set": (AIOKafkaClient, "_topics"),
        "memory store partitions": (MemoryStore, "_key_partition"),
        "admin request": (AIOKafkaAdminClient, "_send_request"),
        "consumer client": (AIOKafkaConsumer, "_client"),
        "changelog callback": (Collection, "_on_changelog_event"),
        "table recovery": (TableManager, "_recovery"),
        "recovery offsets step": (Recovery, "_build_offsets"),
        "recovery event times": (Recovery, "_active_events_received_at"),
        "recovery flush time": (Recovery, "_last_flush_at"),
        "worker shutdown scheduling": (Worker, "_schedule_shutdown"),
        "worker SIGINT handler": (Worker, "_on_sigint"),
        "worker SIGTERM handler": (Worker, "_on_sigterm"),
    }
