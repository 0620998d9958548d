"""Seller responsiveness scores and support metrics (written by the scores stage).

- `vendors.scores` (compacted, key vendor id): `support.vendor.scores`, a vendor's figures
  for the 7 and 30 days ending on `as_of` (the day of the latest event counted), its score
  and tier.
- `vendors.events` (key vendor id): `support.vendor.tier_changed` when a vendor moves tier.
- `metrics.support` (key queue): `support.metrics.day`, a queue's figures for one day.

Durations are in seconds: first response in the seller's business time (the SLA calendar of
the vendor's profile, else that of the ticket's policy), resolution likewise. Rates are shares
(0..1); a figure with nothing to measure is null. Days are UTC dates.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

VENDOR_SCORES = "support.vendor.scores"
TIER_CHANGED = "support.vendor.tier_changed"
SUPPORT_DAY = "support.metrics.day"

Share = Annotated[float, Field(ge=0, le=1)]
Seconds = Annotated[float, Field(ge=0)]


class ScoreTier(StrEnum):
    TOP = "top"
    STANDARD = "standard"
    AT_RISK = "at_risk"


class WindowFigures(BaseModel):
    """A vendor's figures over the tickets opened in a window of days (its cohort)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: int
    volume: int  # tickets opened
    answered: int  # of them, with a first response by an agent or the vendor
    frt_p50: Seconds | None = None
    frt_p90: Seconds | None = None
    answered_within: Share | None = None  # first response within the contractual target
    resolution_rate: Share | None = None  # resolved at least once
    reopen_rate: Share | None = None  # of the resolved, reopened at least once
    sla_breach_rate: Share | None = None  # with at least one SLA breach
    dispute_rate: Share | None = None  # with a dispute opened
    disputes_lost: int = 0  # disputes decided against the seller
    csat_avg: Annotated[float, Field(ge=1, le=5)] | None = None
    csat_responses: int = 0
    nps: Annotated[float, Field(ge=-100, le=100)] | None = None
    nps_responses: int = 0


class VendorScores(BaseModel):
    """`data` of `support.vendor.scores` on `vendors.scores`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vendor_id: str
    as_of: date
    score: Annotated[float, Field(ge=0, le=100)] | None
    tier: ScoreTier
    window_7d: WindowFigures
    window_30d: WindowFigures


class TierChanged(BaseModel):
    """`data` of `support.vendor.tier_changed` on `vendors.events`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vendor_id: str
    previous: ScoreTier
    tier: ScoreTier
    score: Annotated[float, Field(ge=0, le=100)] | None
    as_of: date


class SupportDay(BaseModel):
    """`data` of `support.metrics.day` on `metrics.support`: a queue's tickets opened on
    `day` (first response, resolution, SLA, surveys) and its backlog at the end of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queue: str
    day: date
    opened: int
    frt_p50: Seconds | None = None
    frt_p90: Seconds | None = None
    ttr_p50: Seconds | None = None
    ttr_p90: Seconds | None = None
    resolution_rate: Share | None = None
    backlog: int  # open tickets at the end of the day
    sla_attainment: Share | None = None  # SLA targets met / (met + breached)
    csat_avg: Annotated[float, Field(ge=1, le=5)] | None = None
    csat_responses: int = 0
    nps: Annotated[float, Field(ge=-100, le=100)] | None = None
    nps_responses: int = 0
