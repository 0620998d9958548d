"""Inbound messages written by channel connectors (`support.message.received`)."""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from schemas.envelope import CloudEvent

MESSAGE_RECEIVED = "support.message.received"

# Vendor ids become topic names (queue.vendor.<id>) and ACL patterns: no dots, bounded.
VENDOR_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
VendorId = Annotated[str, Field(pattern=VENDOR_ID_PATTERN)]

MAX_BODY_CHARS = 65_536
MAX_ATTACHMENTS = 50
MAX_ATTRIBUTES = 50

ShortText = Annotated[str, Field(min_length=1, max_length=998)]
MAX_INT = 2**63 - 1


def _json_number(value: object) -> object:
    """Numbers are finite and integers fit 64 bits: NaN, Infinity and larger integers would
    not survive being written out again as JSON (orjson writes NaN as null and refuses big
    integers), and a union would quietly turn a big integer into an inexact float."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    if isinstance(value, int) and not -MAX_INT - 1 <= value <= MAX_INT:
        raise ValueError("an integer out of the signed 64-bit range")
    return value


AttributeValue = Annotated[str | int | float | bool | None, BeforeValidator(_json_number)]


class Channel(StrEnum):
    EMAIL = "email"
    CHAT = "chat"
    SOCIAL = "social"


class SenderRole(StrEnum):
    BUYER = "buyer"
    SELLER = "seller"
    GUEST = "guest"


# The email intake names a sender `email:<address, lowercased>`; email replies go back to it.
EMAIL_SENDER_PREFIX = "email:"


class Sender(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=256)]
    role: SenderRole
    name: Annotated[str, Field(max_length=256)] | None = None
    address: Annotated[str, Field(max_length=320)] | None = None


class Attachment(BaseModel):
    """A file that came with a message, described, never inline: `id` is the channel's own
    id for it (a WhatsApp media id), with which a desk fetches it from the channel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=255)]
    content_type: Annotated[str, Field(max_length=255)] | None = None
    size: Annotated[int, Field(ge=0, le=MAX_INT)] | None = None
    id: Annotated[str, Field(min_length=1, max_length=256)] | None = None


class InboundMessage(BaseModel):
    """`data` of a `support.message.received` event. Unknown fields are rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel
    message_id: ShortText
    thread_ref: ShortText
    sender: Sender
    body: Annotated[str, Field(max_length=MAX_BODY_CHARS)]
    subject: Annotated[str, Field(max_length=998)] | None = None
    order_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    vendor_id: VendorId | None = None
    language: Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")] | None = None
    sent_at: datetime | None = None
    attachments: Annotated[list[Attachment], Field(max_length=MAX_ATTACHMENTS)] = []
    attributes: Annotated[dict[str, AttributeValue], Field(max_length=MAX_ATTRIBUTES)] = {}


class InboundEvent(CloudEvent[InboundMessage]):
    """A whole inbound record as it sits on a channel topic."""
