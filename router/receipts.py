"""Receipts on `delivery.receipts` -> `support.message.status` on the thread's ticket.

The routing stage keeps each thread's ticket, so it reads the receipts (keyed by thread ref, like
the channel topics) and puts each on the ticket the thread has when the receipt is read. A
receipt for a thread without a ticket is dropped: receipts never open tickets.
"""

from __future__ import annotations

from datetime import datetime

from router.ids import derive_id
from router.inbound import Rejected, decode_event
from router.outputs import engine_record
from router.records import OutRecord
from schemas.dead_letter import SourcePosition
from schemas.outbound import MESSAGE_RECEIPT, MESSAGE_STATUS, DeliveryReceiptEvent, MessageStatus
from schemas.topics import TICKETS_EVENTS


def parse_receipt(
    value: bytes | None,
    key: bytes | None,
    source: SourcePosition,
    now: datetime,
    max_record_bytes: int,
) -> DeliveryReceiptEvent | Rejected:
    return decode_event(
        DeliveryReceiptEvent, MESSAGE_RECEIPT, "receipt topics carry", value, key, source, now,
        max_record_bytes,
    )  # fmt: skip


def status_record(receipt: DeliveryReceiptEvent, ticket_id: str, now: datetime) -> OutRecord:
    """The receipt on `tickets.events`; its id derives from the receipt's, so a receipt read
    again writes the same record."""
    status = MessageStatus(ticket_id=ticket_id, **dict(receipt.data))
    return engine_record(
        TICKETS_EVENTS.name, ticket_id, derive_id(receipt.id, "status"), MESSAGE_STATUS, now,
        status.model_dump(mode="json", exclude_none=True),
    )  # fmt: skip
