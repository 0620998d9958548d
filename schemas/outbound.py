"""Replies going back out to customers: `outbound.<channel>`, `outbound.dlq`, and the delivery
outcomes `router deliver` writes to `tickets.events`.

`outbound.<channel>` (key: ticket id) carries one `support.reply.outbound` CloudEvent per public
reply (a `reply` action of an agent, vendor or the system; never an internal note, never the
buyer's own reply). Its CloudEvents `id` is `idempotency_key`, derived from the action id: a
replay of the action writes the same record, and the deliverer sends the key as the
`Idempotency-Key` header of every attempt.

Meta threads name their recipient in the thread ref (`router.intake.meta`):
`whatsapp:<phone number id>:<wa_id>`, `messenger:<page id>:<PSID>`, `instagram:<account>:<IGSID>`
give `platform`, `account_id` and `recipient_id`. Comment threads
(`instagram:<account>:media:<id>:user:<id>`, `facebook:<page>:post:<id>:user:<id>`) give
`platform`, `account_id` and `reply_to_id`, the customer's latest comment on the ticket (the
ticket index follows it). An Instagram mention thread (`instagram:<account>:media:<id>`) gives
`platform`, `account_id`, `media_id` and, for a mention in a comment, `reply_to_id`. Email
threads give `recipient_id`, the customer's address, and `reply_to_id`, the Message-ID of the
customer's latest mail (the ticket index keeps both). Other threads (a connector's own refs)
leave them unset and the channel's connector decides.

What happens to a message once the platform has it comes back as receipts: the gateway turns
Meta's status callbacks (WhatsApp `statuses`, Messenger and Instagram `delivery` / `read`) into
`support.message.receipt` records on `delivery.receipts`, keyed by thread ref like the channel
topics, and the routing stage, which knows each thread's ticket, writes them to `tickets.events`
as `support.message.status` (a receipt never opens a ticket).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.action import Actor, Body
from schemas.envelope import CloudEvent
from schemas.message import Channel, ShortText

OUTBOUND_REPLY = "support.reply.outbound"
MESSAGE_DELIVERED = "support.message.delivered"
MESSAGE_FAILED = "support.message.failed"
REPLY_UNDELIVERABLE = "support.reply.undeliverable"
MESSAGE_RECEIPT = "support.message.receipt"
MESSAGE_STATUS = "support.message.status"
# what `router deliver` and the receipts write to `tickets.events`: delivery state, not a
# ticket's lifecycle (the SLA stage passes them by)
DELIVERY_EVENT_TYPES = (MESSAGE_DELIVERED, MESSAGE_FAILED, MESSAGE_STATUS)
MAX_RECEIPT_IDS = 100


class Platform(StrEnum):
    """The Meta product a thread lives on."""

    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    FACEBOOK = "facebook"  # page comments


class OutboundReply(BaseModel):
    """`data` of `support.reply.outbound` on `outbound.<channel>`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ticket_id: str
    action_id: str
    idempotency_key: str
    channel: Channel
    thread_ref: str
    platform: Platform | None = None
    account_id: str | None = None  # WhatsApp phone number id, page id, Instagram account id
    recipient_id: str | None = None  # wa_id, PSID, IGSID
    reply_to_id: str | None = None  # on a comment thread: the customer's comment answered
    media_id: str | None = None  # on a mention thread: the media the account was mentioned on
    body: Body
    actor: Actor
    at: datetime


class OutboundReplyEvent(CloudEvent[OutboundReply]):
    """A whole record of `outbound.<channel>`."""


class DeliveryOutcome(BaseModel):
    """`data` of `support.message.delivered` / `support.message.failed` on `tickets.events`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ticket_id: str
    action_id: str
    idempotency_key: str
    channel: Channel
    platform: Platform | None = None
    attempts: Annotated[int, Field(ge=0)]  # 0: never sent (no recipient)
    status: int | None = None  # the last HTTP (email: SMTP) status; None: no answer
    provider_message_id: str | None = None  # on delivered: the id the platform gave it
    reason: str | None = None  # on failed
    at: datetime


class ReceiptStatus(StrEnum):
    """How far a message sent to the customer got, as the platform reports it."""

    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


ProviderId = Annotated[str, Field(min_length=1, max_length=256)]


class DeliveryReceipt(BaseModel):
    """`data` of `support.message.receipt` on `delivery.receipts`: what a platform reported of
    messages sent on a thread."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel
    thread_ref: ShortText
    platform: Platform
    status: ReceiptStatus
    # the platform's ids of the messages concerned (`provider_message_id` of
    # `support.message.delivered`); none for a watermark
    message_ids: Annotated[tuple[ProviderId, ...], Field(max_length=MAX_RECEIPT_IDS)] = ()
    watermark: datetime | None = None  # Messenger: every message sent up to this time
    error: Annotated[str, Field(max_length=1024)] | None = None  # on failed: code and title
    at: datetime


class DeliveryReceiptEvent(CloudEvent[DeliveryReceipt]):
    """A whole record of `delivery.receipts`."""


class MessageStatus(DeliveryReceipt):
    """`data` of `support.message.status` on `tickets.events`: a receipt, on its ticket (the
    thread's ticket when the receipt was read)."""

    ticket_id: str


class UndeliveredReply(BaseModel):
    """`data` of `support.reply.undeliverable` on `outbound.dlq`: the original record whole,
    why it failed, and where it was read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str
    attempts: int  # 0: never sent (not a valid record)
    status: int | None = None
    topic: str
    partition: int
    offset: int
    record: OutboundReplyEvent | None = None
    raw: str | None = None  # the value as read, when it is not a valid record
    failed_at: datetime


__all__ = [
    "DELIVERY_EVENT_TYPES",
    "MAX_RECEIPT_IDS",
    "MESSAGE_DELIVERED",
    "MESSAGE_FAILED",
    "MESSAGE_RECEIPT",
    "MESSAGE_STATUS",
    "OUTBOUND_REPLY",
    "REPLY_UNDELIVERABLE",
    "DeliveryOutcome",
    "DeliveryReceipt",
    "DeliveryReceiptEvent",
    "MessageStatus",
    "OutboundReply",
    "OutboundReplyEvent",
    "Platform",
    "ReceiptStatus",
    "UndeliveredReply",
]
