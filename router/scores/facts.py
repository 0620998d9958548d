"""Facts: what one ticket event contributes to a vendor's or a queue's figures.

The per-ticket fold (`router.scores.tickets`) turns ticket, SLA, survey and dispute inputs into
facts, each for one subject (`vendor/<id>` or `queue/<queue>`) and one UTC day; the per-subject
fold (`router.scores.book`) adds them up. A fact's `id` derives from the input's CloudEvents
id, so an input read twice yields the same fact and the subject fold counts it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import orjson

DAY_SECONDS = 86_400
VENDOR_SUBJECT = "vendor/"
QUEUE_SUBJECT = "queue/"


class FactKind(StrEnum):
    OPENED = "opened"  # a ticket of the cohort (volume)
    RESPONDED = "responded"  # first response: `value` business seconds, `flag` within target
    RESOLVED = "resolved"  # first resolution: `value` business seconds since opening
    REOPENED = "reopened"  # first reopening
    BREACHED = "breached"  # first SLA breach of the ticket
    SLA = "sla"  # one SLA target settled: `flag` met (True) or breached
    SURVEY = "survey"  # `value` CSAT (0: none), `extra` NPS (-1: none)
    DISPUTED = "disputed"  # first dispute opened on the ticket
    DISPUTE_LOST = "dispute_lost"  # a dispute decided against the seller
    BACKLOG = "backlog"  # `value` +1 / -1 open tickets, on the day it happened


@dataclass(frozen=True, slots=True)
class Fact:
    """Value of the internal `scores.facts` topic (key: `subject`)."""

    id: str
    subject: str
    day: int  # days since the epoch (UTC)
    kind: FactKind
    value: float = 0.0
    flag: bool = False
    extra: float = 0.0

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "id": self.id, "subject": self.subject, "day": self.day, "kind": self.kind.value,
            "value": self.value, "flag": self.flag, "extra": self.extra,
        })  # fmt: skip

    @classmethod
    def from_bytes(cls, raw: bytes) -> Fact:
        doc = orjson.loads(raw)
        return cls(
            str(doc["id"]), str(doc["subject"]), int(doc["day"]), FactKind(doc["kind"]),
            float(doc.get("value", 0.0)), bool(doc.get("flag", False)),
            float(doc.get("extra", 0.0)),
        )  # fmt: skip


def day_of(epoch_seconds: float) -> int:
    return int(epoch_seconds // DAY_SECONDS)


def vendor_subject(vendor_id: str) -> str:
    return VENDOR_SUBJECT + vendor_id


def queue_subject(queue: str) -> str:
    return QUEUE_SUBJECT + queue
