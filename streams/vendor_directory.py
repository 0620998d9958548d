"""Vendor profiles from the compacted `directory.vendors` topic, in memory on every worker.

Record: key = vendor id, value = CloudEvent `support.vendor.profile` whose `data` is a
`schemas.vendor.VendorProfile` (its `vendor_id` must equal the key); a tombstone (null
value) removes the vendor. An invalid record is logged (`vendor_profile_invalid`) and
skipped: the vendor keeps its previous profile.

Like the rules topic, the directory is read by every worker with a groupless consumer
(`streams.compacted`): caught up before faust starts, then followed by an app task. The
inbound processor looks vendors up with `VendorDirectory.get` (a dict read, no I/O).

`publish_profiles` / `remove_profiles` / `read_directory` back `router vendors
publish|remove|list`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord
from pydantic import ValidationError

from schemas.envelope import CloudEvent, envelope
from schemas.topics import DIRECTORY_VENDORS
from schemas.vendor import VENDOR_PROFILE, VendorProfile
from streams.compacted import CompactedReader, install_follower
from streams.kafka_client import producer_kwargs
from streams.settings import RouterSettings
from streams.topics import TopicManager, core_topics

log = structlog.get_logger("router.vendors")

Record = ConsumerRecord[bytes, bytes]


class VendorDirectory:
    """vendor id -> newest valid profile on `directory.vendors`."""

    def __init__(self, settings: RouterSettings) -> None:
        self.reader = CompactedReader(settings, DIRECTORY_VENDORS.name, "vendors")
        self._profiles: dict[str, VendorProfile] = {}
        self._caught_up = False

    def get(self, vendor_id: str) -> VendorProfile | None:
        return self._profiles.get(vendor_id)

    def __len__(self) -> int:
        return len(self._profiles)

    def snapshot(self) -> dict[str, VendorProfile]:
        return dict(self._profiles)

    @property
    def caught_up(self) -> bool:
        return self._caught_up

    async def catch_up(self) -> None:
        records = await self.reader.read_to_end()
        self.apply(records)
        self._caught_up = True
        log.info("vendor_directory_loaded", vendors=len(self._profiles), records=len(records))

    async def follow(self) -> None:
        await self.reader.follow(self._on_records)

    async def _on_records(self, records: Sequence[Record]) -> None:
        changed = self.apply(records)
        if changed:
            log.info("vendor_directory_updated", vendors=len(self._profiles), changed=changed[:50])

    def apply(self, records: Iterable[Record]) -> list[str]:
        """Apply records in order; the vendor ids whose profile changed."""
        changed: list[str] = []
        for record in records:
            key = record.key.decode("utf-8", "replace") if record.key is not None else None
            if key is None:
                log.warning("vendor_profile_invalid", offset=record.offset, error="no key")
                continue
            if record.value is None:
                if self._profiles.pop(key, None) is not None:
                    changed.append(key)
                continue
            profile = _profile(record.value, key, record.partition, record.offset)
            if profile is not None and self._profiles.get(key) != profile:
                self._profiles[key] = profile
                changed.append(key)
        return changed


def _profile(value: bytes, key: str, partition: int, offset: int) -> VendorProfile | None:
    error: str | None = None
    try:
        event = CloudEvent[VendorProfile].model_validate_json(value)
    except ValidationError as exc:
        error = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10]
        )
    else:
        if event.type != VENDOR_PROFILE:
            error = f"type {event.type!r} is not {VENDOR_PROFILE!r}"
        elif event.data.vendor_id != key:
            error = f"data.vendor_id {event.data.vendor_id!r} is not the record key {key!r}"
        else:
            return event.data
    log.warning(
        "vendor_profile_invalid", vendor_id=key, partition=partition, offset=offset, error=error
    )
    return None


def install_vendor_directory(app: Any, settings: RouterSettings) -> VendorDirectory:
    """Keep the vendor directory on this worker (caught up by `run_worker`, then followed)."""
    directory = VendorDirectory(settings)
    install_follower(app, directory)
    return directory


# --- tools: `router vendors publish|remove|list` --------------------------------------------


def profile_value(profile: VendorProfile, at: datetime, source: str = "router-cli") -> bytes:
    """The CloudEvent value of one profile (id derived from its content)."""
    data = profile.model_dump(mode="json", exclude_none=True)
    digest = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return orjson.dumps(
        envelope(
            event_id=f"vendor-profile:{profile.vendor_id}:{digest}",
            source=source,
            event_type=VENDOR_PROFILE,
            time=at,
            subject=profile.vendor_id,
            data=data,
        )
    )


async def _produce(settings: RouterSettings, records: list[tuple[bytes, bytes | None]]) -> int:
    await TopicManager(settings).ensure([DIRECTORY_VENDORS.name], core_topics(settings))
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    try:
        topic = settings.topic(DIRECTORY_VENDORS.name)
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        for future in futures:
            await future
    finally:
        await producer.stop()
    return len(records)


async def publish_profiles(
    settings: RouterSettings, profiles: Sequence[VendorProfile], source: str = "router-cli"
) -> int:
    now = datetime.now(UTC)
    return await _produce(
        settings, [(p.vendor_id.encode(), profile_value(p, now, source)) for p in profiles]
    )


async def remove_profiles(settings: RouterSettings, vendor_ids: Sequence[str]) -> int:
    """Tombstones: workers forget these vendors (compaction later drops their records)."""
    return await _produce(settings, [(v.encode(), None) for v in vendor_ids])


async def read_directory(settings: RouterSettings) -> dict[str, VendorProfile]:
    directory = VendorDirectory(settings)
    directory.apply(await directory.reader.read_to_end())
    return directory.snapshot()
