"""Vendor profiles on the compacted `directory.vendors` topic (key: vendor id)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.message import VendorId

VENDOR_PROFILE = "support.vendor.profile"


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
    response_hours: Annotated[float, Field(gt=0)] | None = None
