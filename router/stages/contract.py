"""What every stage processor takes and gives."""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from router.inbound import Rejected, dead_letter, source_position
from router.records import OutRecord
from schemas.dead_letter import RejectReason

NO_HEADERS: Mapping[str, bytes] = MappingProxyType({})
MAX_ERROR_CHARS = 1000


class InRecord(NamedTuple):
    """One consumed record. `topic` is the logical name (prefix removed); `timestamp` is the
    record's own, in seconds. (A tuple: built once per record on the hot path.)"""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None
    headers: Mapping[str, bytes] = NO_HEADERS


@dataclass(frozen=True, slots=True)
class Note:
    """A log line as data: the edge writes it (`level` is a structlog method name)."""

    level: str
    event: str
    fields: dict[str, Any] = field(default_factory=dict)


class Processor(Protocol):
    """A stage's logic. `notes` collects what the edge should log; it drains the list."""

    notes: list[Note]

    def process(self, record: InRecord, now: datetime) -> list[OutRecord]: ...


class LocalData(Protocol):
    """A table's local data, read outside any record (recovery, index rebuild, sweeps)."""

    def get(self, key: bytes) -> bytes | None: ...

    def keys_by_partition(self, partitions: set[int]) -> Mapping[int, Sequence[bytes]]: ...


class Combined:
    """Processors that share one input stream, each given the records of its own topics
    (None: every record), in order; their outputs are concatenated."""

    def __init__(self, *parts: tuple[Processor, frozenset[str] | None]) -> None:
        self.parts = parts
        self.notes: list[Note] = []

    def process(self, record: InRecord, now: datetime) -> list[OutRecord]:
        out: list[OutRecord] = []
        for processor, topics in self.parts:
            if topics is None or record.topic in topics:
                out.extend(processor.process(record, now))
                if processor.notes:
                    self.notes.extend(processor.notes)
                    processor.notes.clear()
        return out


def failure_note(event: str, record: InRecord, **fields: Any) -> Note:
    """The error note of a record a processor failed on, with where it was read and the
    traceback of the exception being handled (call it in the `except` block)."""
    return Note("error", event, {
        "topic": record.topic, "partition": record.partition, "offset": record.offset, **fields,
        "exception": traceback.format_exc(limit=20),
    })  # fmt: skip


def rejected_note(event: str, rejected: Rejected, record: InRecord) -> Note:
    """The warning note of a record refused as bad input (its dead letter goes out beside)."""
    return Note("warning", event, {
        "reason": rejected.reason.value, "error": rejected.error, "topic": record.topic,
        "partition": record.partition, "offset": record.offset,
    })  # fmt: skip


def processing_failed(exc: Exception, record: InRecord, now: datetime) -> OutRecord:
    """The dead-letter record of a record a processor failed on (a bug, not bad input): the
    stage parks it with the error and goes on."""
    source = source_position(record.topic, record.partition, record.offset, record.timestamp)
    error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
    return dead_letter(
        RejectReason.PROCESSING_ERROR, error, [], source, record.key, record.value or b"", now
    )
