"""Vendor profiles from the compacted `directory.vendors` topic, in memory on every worker.

Record: key = vendor id, value = CloudEvent `support.vendor.profile` whose `data` is a
`schemas.vendor.VendorProfile` (its `vendor_id` must equal the key); a tombstone (null
value) removes the vendor. An invalid record is logged (`vendor_profile_invalid`) and
skipped: the vendor keeps its previous profile.

Like the rules topic, the directory is read by every worker with a groupless consumer
(`streams.kafka.compacted`): caught up before faust starts, then followed by an app task; what a
record does is `router.views` (`vendor_profile` says which records are valid). The
inbound processor looks vendors up with `VendorDirectory.get` (a dict read, no I/O).

`publish_profiles` / `remove_profiles` / `read_directory` back `router vendors
publish|remove|list`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from router.views import KeyedView, vendor_profile
from schemas.envelope import envelope
from schemas.topics import DIRECTORY_VENDORS
from schemas.vendor import VENDOR_PROFILE, VendorProfile
from streams.kafka.compacted import install_follower, publish, view_follower
from streams.settings import RouterSettings


class VendorDirectory(KeyedView[VendorProfile]):
    """vendor id -> newest valid profile on `directory.vendors` (`router.views`)."""

    def __init__(self, settings: RouterSettings) -> None:
        super().__init__(vendor_profile)
        self.follower = view_follower(
            settings, DIRECTORY_VENDORS.name, self, name="vendors", what="vendor_directory",
            invalid="vendor_profile_invalid", key_field="vendor_id",
        )  # fmt: skip


def install_vendor_directory(app: Any, settings: RouterSettings) -> VendorDirectory:
    """Keep the vendor directory on this worker (caught up by `run_worker`, then followed)."""
    directory = VendorDirectory(settings)
    install_follower(app, directory.follower)
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
    return len(await publish(settings, DIRECTORY_VENDORS.name, records))


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
    directory.apply(await directory.follower.reader.read_to_end())
    return directory.snapshot()
