"""Decode and validate inbound channel records; everything bad becomes a `Rejected`."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from router.ids import derive_id
from router.json_keys import repeated_key
from router.records import OutRecord
from rules.source import printable
from schemas.dead_letter import (
    MESSAGE_REJECTED,
    DeadLetter,
    FieldError,
    OriginalRecord,
    RejectReason,
    SourcePosition,
)
from schemas.envelope import CloudEvent, envelope
from schemas.message import MESSAGE_RECEIVED, Channel, InboundEvent
from schemas.topics import CHANNEL_DLQ

DEFAULT_MAX_RECORD_BYTES = 256 * 1024
EventT = TypeVar("EventT", bound=CloudEvent[Any])
ENGINE_SOURCE = "urn:ticket-router:engine"


def source_position(
    logical_topic: str, partition: int, offset: int, timestamp: float | None
) -> SourcePosition:
    """Where a consumed record came from; `timestamp` is the record's, in seconds."""
    return SourcePosition(
        topic=logical_topic,
        partition=partition,
        offset=offset,
        timestamp_ms=int(timestamp * 1000) if timestamp else None,
    )


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that cannot be processed, with the dead-letter record that preserves it."""

    reason: RejectReason
    error: str
    record: OutRecord
    errors: tuple[FieldError, ...] = ()  # the failing fields (the gateway names them in a 400)


def parse_inbound(
    value: bytes | None,
    key: bytes | None,
    source: SourcePosition,
    now: datetime,
    *,
    expected_channel: Channel | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> InboundEvent | Rejected:
    """Decode once (pydantic straight from bytes) and map every failure to a reason."""
    event = decode_event(
        InboundEvent, MESSAGE_RECEIVED, "channel topics carry", value, key, source, now,
        max_record_bytes,
    )  # fmt: skip
    if isinstance(event, Rejected):
        return event
    if expected_channel is not None and event.data.channel is not expected_channel:
        return rejected(
            RejectReason.CHANNEL_MISMATCH,
            f"data.channel is {event.data.channel.value!r} but the record arrived on "
            f"{source.topic!r}",
            [FieldError(field="data.channel", error=f"expected {expected_channel.value!r}")],
            source, key, value, now,
        )  # fmt: skip
    return event


def decode_event(
    model: type[EventT],
    event_type: str,
    carried_by: str,
    value: bytes | None,
    key: bytes | None,
    source: SourcePosition,
    now: datetime,
    max_record_bytes: int,
) -> EventT | Rejected:
    """A record of a topic whose values are `model` CloudEvents of `event_type`, or why not
    with its dead-letter record; `carried_by` ends the wrong-type error (`channel topics
    carry`, `tickets.actions carries`)."""
    if value is None or not value:
        return rejected(
            RejectReason.SCHEMA_VIOLATION, "record value is empty (tombstone?)", [],
            source, key, value, now,
        )  # fmt: skip
    if len(value) > max_record_bytes:
        return rejected(
            RejectReason.OVERSIZE, f"record is {len(value)} bytes; the limit is {max_record_bytes}",
            [], source, key, value, now,
        )  # fmt: skip
    repeated = repeated_key(value)
    if repeated is not None:
        return rejected(*repeated_key_violation(repeated), source, key, value, now)
    try:
        event = model.model_validate_json(value)
    except ValidationError as exc:
        return rejected(*_classify(exc), source, key, value, now)
    if event.type != event_type:
        return rejected(
            RejectReason.UNSUPPORTED_TYPE,
            f"type is {event.type!r}; {carried_by} {event_type!r}",
            [FieldError(field="type", error=f"expected {event_type!r}")],
            source, key, value, now,
        )  # fmt: skip
    return event


def rejected(
    reason: RejectReason,
    error: str,
    errors: list[FieldError],
    source: SourcePosition,
    key: bytes | None,
    value: bytes | None,
    now: datetime,
) -> Rejected:
    record = dead_letter(reason, error, errors, source, key, value or b"", now)
    return Rejected(reason, error, record, tuple(errors))


def repeated_key_violation(key: str) -> tuple[RejectReason, str, list[FieldError]]:
    """A record giving a key twice: refused, not read as whichever copy came last."""
    name = printable(key)
    error = f"key {name!r} given twice in one object (only one copy may be given)"
    return RejectReason.SCHEMA_VIOLATION, f"schema violation: {error}", [
        FieldError(field=name, error="given twice in one object")
    ]


def _classify(exc: ValidationError) -> tuple[RejectReason, str, list[FieldError]]:
    """Which field failed and why, as data: the first 20 errors with dotted paths."""
    errors = exc.errors(include_url=False, include_input=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return RejectReason.INVALID_JSON, f"invalid JSON: {errors[0]['msg']}", []
    fields = field_errors(errors)
    if any(tuple(e["loc"][:2]) == ("data", "channel") for e in errors):
        allowed = ", ".join(c.value for c in Channel)
        return RejectReason.UNKNOWN_CHANNEL, f"data.channel must be one of: {allowed}", fields
    summary = "; ".join(f"{f.field}: {f.error}" for f in fields[:5])
    return RejectReason.SCHEMA_VIOLATION, f"schema violation: {summary}", fields


def field_errors(errors: list[ErrorDetails]) -> list[FieldError]:
    """The first 20 pydantic errors as dotted paths and messages, each one line (a key or a
    value of the record may hold a newline)."""
    return [
        FieldError(field=printable(".".join(str(p) for p in e["loc"])) or "<root>",
                   error=printable(e["msg"]))
        for e in errors[:20]
    ]  # fmt: skip


def _text_or_base64(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def dead_letter(
    reason: RejectReason,
    error: str,
    errors: list[FieldError],
    source: SourcePosition,
    key: bytes | None,
    value: bytes,
    now: datetime,
) -> OutRecord:
    """The DLQ record: original key and bytes kept exactly, reason in data and headers."""
    text_key, key_encoding = _text_or_base64(key) if key is not None else (None, "utf-8")
    text_value, value_encoding = _text_or_base64(value)
    letter = DeadLetter(
        reason=reason,
        error=error,
        errors=errors,
        source=source,
        original=OriginalRecord(
            key=text_key,
            key_encoding=key_encoding,
            value=text_value,
            value_encoding=value_encoding,
            size=len(value),
        ),
    )
    event_id = derive_id("dlq", source.topic, str(source.partition), str(source.offset))
    doc = envelope(
        event_id=event_id,
        source=ENGINE_SOURCE,
        event_type=MESSAGE_REJECTED,
        time=now,
        subject=f"{source.topic}/{source.partition}/{source.offset}",
        data=letter.model_dump(mode="json"),
    )
    headers = (
        ("dlq.reason", reason.value.encode()),
        ("dlq.error", error[:1000].encode()),
        ("dlq.source.topic", source.topic.encode()),
        ("dlq.source.partition", str(source.partition).encode()),
        ("dlq.source.offset", str(source.offset).encode()),
        ("content-type", b"application/cloudevents+json"),
    )
    return OutRecord(topic=CHANNEL_DLQ.name, key=key, value=orjson.dumps(doc), headers=headers)
