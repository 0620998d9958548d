"""Dead-letter records on `channel.dlq`: the rejected record, why, and where it came from."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

MESSAGE_REJECTED = "support.message.rejected"


class RejectReason(StrEnum):
    INVALID_JSON = "invalid_json"
    SCHEMA_VIOLATION = "schema_violation"
    OVERSIZE = "oversize"
    UNKNOWN_CHANNEL = "unknown_channel"
    CHANNEL_MISMATCH = "channel_mismatch"
    UNSUPPORTED_TYPE = "unsupported_type"
    PROCESSING_ERROR = "processing_error"
    # A valid `tickets.actions` command the ticket's state does not allow (e.g. a vendor
    # acting on a ticket outside its own queue).
    ACTION_REFUSED = "action_refused"
    # Email intake (router/email/): the raw message is kept in the dead letter.
    MIME_TOO_DEEP = "mime_too_deep"
    TOO_MANY_PARTS = "too_many_parts"
    NO_SENDER = "no_sender"
    NOT_AN_EMAIL = "not_an_email"
    SENDER_RATE_LIMITED = "sender_rate_limited"


class FieldError(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str
    error: str


class SourcePosition(BaseModel):
    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


class OriginalRecord(BaseModel):
    """The rejected record, byte-exact: text when it is UTF-8, else base64."""

    model_config = ConfigDict(frozen=True)

    key: str | None
    key_encoding: str = "utf-8"
    value: str
    value_encoding: str = "utf-8"
    size: int


class DeadLetter(BaseModel):
    """`data` of `support.message.rejected`. Headers repeat the reason for header-only tools."""

    model_config = ConfigDict(frozen=True)

    reason: RejectReason
    error: str
    errors: list[FieldError] = []
    retriable: bool = False
    source: SourcePosition
    original: OriginalRecord
