"""SLA events on `sla.events` (key: ticket id): warning, breached and met.

The CloudEvents `id` of an SLA event is derived from (ticket, metric, cycle, kind, level), so a
record fired twice after a crash carries the same id and consumers can drop the duplicate.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.ticket import Priority

SLA_WARNING = "support.sla.warning"
SLA_BREACHED = "support.sla.breached"
SLA_MET = "support.sla.met"


class SlaMetric(StrEnum):
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"
    VENDOR_RESPONSE = "vendor_response"


class SlaEventKind(StrEnum):
    WARNING = "warning"
    BREACHED = "breached"
    MET = "met"

    @property
    def event_type(self) -> str:
        return f"support.sla.{self.value}"


class SlaEvent(BaseModel):
    """`data` of `support.sla.<kind>`.

    `level` is 0 for warnings and met, 1.. for the rungs of the escalation ladder.
    `deadline` is the moment the target lapses (for a breach at level n: when level n was due);
    `due_at` is when this event was scheduled to fire (a warning fires before the deadline).
    `late` is true when it fired well after `due_at`, e.g. after the engine was down.
    `cycle` counts restarts of a metric (next_response restarts on every new buyer message).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ticket_id: str
    kind: SlaEventKind
    policy: str
    metric: SlaMetric
    level: Annotated[int, Field(ge=0)]
    cycle: Annotated[int, Field(ge=0)] = 0
    deadline: datetime
    due_at: datetime
    fired_at: datetime
    late: bool = False
    queue: str | None
    priority: Priority
    # "notified" | "none" | "priority_raised" | "rerouted" | "priority_raised,rerouted"
    action_taken: str
    new_priority: Priority | None = None
    new_queue: str | None = None
    target_seconds: Annotated[float, Field(ge=0)]
    elapsed_business_seconds: Annotated[float, Field(ge=0)]
