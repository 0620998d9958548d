"""A connector's request body -> the channel record the engine accepts, or why not.

Three forms of one message (CloudEvents HTTP binding 1.0):
- structured: `application/cloudevents+json`, the whole CloudEvent as the body (also a plain
  `application/json` body that carries `specversion`);
- binary: `ce-*` headers hold the attributes, the body is `data` (`application/json`);
- plain: `application/json` holding the inbound message itself, wrapped here in a CloudEvent
  whose id derives from the source, channel and `message_id` (a retry keeps its id).

Batches are a JSON array of structured events or plain messages
(`application/cloudevents-batch+json` or `application/json`). Every record is validated by
`router.inbound.parse_inbound`, the engine's own check, so the gateway refuses exactly what the
engine would dead-letter, for the same reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from urllib.parse import unquote

import orjson

from router.ids import derive_id
from router.inbound import Rejected, parse_inbound
from schemas.dead_letter import FieldError, RejectReason, SourcePosition
from schemas.envelope import SCHEMA_VERSION
from schemas.message import MESSAGE_RECEIVED, Channel
from schemas.topics import CHANNELS

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON = "application/json"
CE_PREFIX = "ce-"
# CloudEvents attribute names: lowercase letters and digits, at most 20 (spec's advice)
_MAX_ATTRIBUTE_CHARS = 20


class Problem(Enum):
    """What kind of refusal; the edge maps each to its HTTP status."""

    INVALID = 400
    NOT_FOUND = 404
    TOO_LARGE = 413
    UNSUPPORTED_MEDIA = 415


@dataclass(frozen=True, slots=True)
class Refused:
    problem: Problem
    reason: str  # a `RejectReason` value where the engine has one, else the gateway's own
    error: str
    errors: tuple[FieldError, ...] = ()

    def body(self) -> dict[str, Any]:
        return {
            "status": self.problem.value,
            "reason": self.reason,
            "error": self.error,
            "errors": [{"field": e.field, "error": e.error} for e in self.errors],
        }


@dataclass(frozen=True, slots=True)
class Record:
    """A validated record, ready for its topic."""

    event_id: str
    topic: str  # logical: a channel topic, or `delivery.receipts`
    key: bytes  # data.thread_ref
    value: bytes


Outcome = Record | Refused


def channel_of(name: str) -> Channel | Refused:
    try:
        return Channel(name)
    except ValueError:
        allowed = ", ".join(c.value for c in Channel)
        return Refused(
            Problem.NOT_FOUND, RejectReason.UNKNOWN_CHANNEL.value,
            f"no channel {name[:64]!r}; channels: {allowed}",
        )  # fmt: skip


def channel_in(doc: Any) -> Channel | Refused:
    """The channel a decoded message or event names: a connector writing to Kafka directly
    picks its topic by it."""
    structured = isinstance(doc, dict) and "specversion" in doc
    data = doc.get("data") if structured else doc
    value = data.get("channel") if isinstance(data, dict) else None
    try:
        return Channel(str(value))
    except ValueError:
        allowed = ", ".join(c.value for c in Channel)
        field = "data.channel" if structured else "channel"
        return Refused(
            Problem.INVALID, RejectReason.UNKNOWN_CHANNEL.value,
            f"{field} must be one of: {allowed}",
            (FieldError(field=field, error=f"expected one of: {allowed}"),),
        )  # fmt: skip


def media_type(content_type: str | None) -> str | Refused:
    """The media type, lowercased; a charset other than UTF-8 is refused."""
    if not content_type:
        return Refused(
            Problem.UNSUPPORTED_MEDIA, "unsupported_media_type",
            f"Content-Type is required: {STRUCTURED}, or {JSON} (binary or plain)",
        )  # fmt: skip
    kind, *params = (p.strip() for p in content_type.split(";"))
    for param in params:
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            return Refused(
                Problem.UNSUPPORTED_MEDIA, "unsupported_media_type", "charset must be utf-8"
            )
    return kind.lower()


def read_message(
    channel: Channel,
    content_type: str | None,
    headers: Mapping[str, str],
    body: bytes,
    *,
    source_id: str,
    now: datetime,
    max_record_bytes: int,
) -> Outcome:
    """One message in any of the three forms."""
    kind = media_type(content_type)
    if isinstance(kind, Refused):
        return kind
    if len(body) > max_record_bytes:
        return _too_large(len(body), max_record_bytes)
    if kind == STRUCTURED:
        return _validate(channel, body, now, max_record_bytes)
    if kind != JSON:
        return Refused(
            Problem.UNSUPPORTED_MEDIA, "unsupported_media_type",
            f"{kind[:100]!r} is not accepted: use {STRUCTURED} or {JSON}",
        )  # fmt: skip
    if any(name.lower().startswith(CE_PREFIX) for name in headers):
        return _binary(channel, headers, body, now, max_record_bytes)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Refused(Problem.INVALID, RejectReason.INVALID_JSON.value, f"invalid JSON: {exc}")
    return read_document(channel, doc, source_id, now, max_record_bytes)


def read_batch(
    channel: Channel,
    content_type: str | None,
    body: bytes,
    *,
    source_id: str,
    now: datetime,
    max_record_bytes: int,
    max_items: int,
) -> list[Outcome] | Refused:
    """A JSON array of structured events or plain messages: one outcome per item, in order."""
    kind = media_type(content_type)
    if isinstance(kind, Refused):
        return kind
    if kind not in (BATCH, JSON):
        return Refused(
            Problem.UNSUPPORTED_MEDIA, "unsupported_media_type",
            f"{kind[:100]!r} is not accepted for a batch: use {BATCH} or {JSON}",
        )  # fmt: skip
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Refused(Problem.INVALID, RejectReason.INVALID_JSON.value, f"invalid JSON: {exc}")
    if not isinstance(items, list):
        return Refused(
            Problem.INVALID, RejectReason.SCHEMA_VIOLATION.value, "a batch is a JSON array",
            (FieldError(field="<root>", error="expected an array"),),
        )  # fmt: skip
    if len(items) > max_items:
        return Refused(
            Problem.TOO_LARGE, "too_many_items",
            f"the batch holds {len(items)} items; the limit is {max_items}",
        )  # fmt: skip
    return [read_document(channel, doc, source_id, now, max_record_bytes) for doc in items]


def gateway_source(source_id: str) -> str:
    """The CloudEvents `source` of what the gateway writes for a source."""
    return f"urn:ticket-router:gateway:{source_id}"


def read_document(
    channel: Channel, doc: Any, source_id: str, now: datetime, max_record_bytes: int
) -> Outcome:
    """A decoded JSON value: a structured event when it says `specversion`, else a plain
    message (the gateway's batch items; `streams.connectors.publisher` for Python
    connectors)."""
    if isinstance(doc, dict) and "specversion" in doc:
        return _validate(channel, orjson.dumps(doc), now, max_record_bytes)
    if not isinstance(doc, dict):
        return Refused(
            Problem.INVALID, RejectReason.SCHEMA_VIOLATION.value,
            "a message is a JSON object",
            (FieldError(field="<root>", error="expected an object"),),
        )  # fmt: skip
    message_id = doc.get("message_id")
    event_id = derive_id("gateway", source_id, channel.value, str(message_id))
    wrapped = {
        "specversion": "1.0",
        "id": event_id,
        "source": gateway_source(source_id),
        "type": MESSAGE_RECEIVED,
        "time": now,
        "datacontenttype": JSON,
        "schemaversion": SCHEMA_VERSION,
        "data": doc,
    }
    outcome = _validate(channel, orjson.dumps(wrapped), now, max_record_bytes)
    return _rename(outcome, lambda f: f.removeprefix("data.") if f != "data" else "<root>")


def _binary(
    channel: Channel, headers: Mapping[str, str], body: bytes, now: datetime, max_record_bytes: int
) -> Outcome:
    doc: dict[str, Any] = {}
    for name, value in headers.items():
        lower = name.lower()
        if not lower.startswith(CE_PREFIX):
            continue
        attribute = lower[len(CE_PREFIX) :]
        valid = attribute.isascii() and attribute.isalnum()
        if not valid or len(attribute) > _MAX_ATTRIBUTE_CHARS:
            return Refused(
                Problem.INVALID, RejectReason.SCHEMA_VIOLATION.value,
                "CloudEvents attribute names are lowercase letters and digits",
                (FieldError(field=name[:64], error="not a CloudEvents attribute name"),),
            )  # fmt: skip
        if attribute == "data":
            return Refused(
                Problem.INVALID, RejectReason.SCHEMA_VIOLATION.value,
                "in binary mode the body is the data",
                (FieldError(field=name, error="not allowed"),),
            )  # fmt: skip
        doc[attribute] = unquote(value)  # the binding percent-encodes non-ASCII values
    try:
        doc["data"] = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Refused(Problem.INVALID, RejectReason.INVALID_JSON.value, f"invalid JSON: {exc}")
    doc["datacontenttype"] = JSON
    outcome = _validate(channel, orjson.dumps(doc), now, max_record_bytes)
    # attributes came from headers: name the header
    return _rename(outcome, lambda f: f if f.split(".")[0] == "data" else CE_PREFIX + f)


def _validate(channel: Channel, value: bytes, now: datetime, max_record_bytes: int) -> Outcome:
    topic = CHANNELS[channel].name
    # not consumed yet: no partition or offset
    parsed = parse_inbound(
        value, None, SourcePosition(topic=topic, partition=-1, offset=-1), now,
        expected_channel=channel, max_record_bytes=max_record_bytes,
    )  # fmt: skip
    if isinstance(parsed, Rejected):
        if parsed.reason is RejectReason.OVERSIZE:
            return _too_large(len(value), max_record_bytes)
        return Refused(Problem.INVALID, parsed.reason.value, parsed.error, parsed.errors)
    return Record(parsed.id, topic, parsed.data.thread_ref.encode(), value)


def _too_large(size: int, limit: int) -> Refused:
    return Refused(
        Problem.TOO_LARGE, RejectReason.OVERSIZE.value,
        f"the record is {size} bytes; the limit is {limit}",
    )  # fmt: skip


def _rename(outcome: Outcome, rename: Callable[[str], str]) -> Outcome:
    if isinstance(outcome, Record) or not outcome.errors:
        return outcome
    errors = tuple(FieldError(field=rename(e.field), error=e.error) for e in outcome.errors)
    return Refused(outcome.problem, outcome.reason, outcome.error, errors)
