"""Vendor profiles on the compacted `directory.vendors` topic (key: vendor id)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.message import VendorId

VENDOR_PROFILE = "support.vendor.profile"
MAX_RESPONSE_HOURS = 366 * 24


class VendorStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    OFFBOARDED = "offboarded"


class VendorTier(StrEnum):
    STANDARD = "standard"
    SILVER = "silver"
    GOLD = "gold"
    PLATINUM = "platinum"


class VendorProfile(BaseModel):
    """`data` of `support.vendor.profile`. `calendar` names an SLA calendar (business hours)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vendor_id: VendorId
    name: Annotated[str, Field(max_length=256)] | None = None
    status: VendorStatus = VendorStatus.ACTIVE
    tier: VendorTier = VendorTier.STANDARD
    timezone: Annotated[str, Field(max_length=64)] = "UTC"
    calendar: Annotated[str, Field(max_length=128)] | None = None
    # Finite and at most a year: the vendor-response SLA target in business hours.
    response_hours: (
        Annotated[float, Field(gt=0, le=MAX_RESPONSE_HOURS, allow_inf_nan=False)] | None
    ) = None
