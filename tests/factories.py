"""Builders for inbound records, shared by unit, integration and chaos tests."""

from __future__ import annotations

from typing import Any

import orjson


def inbound_event(
    event_id: str = "evt-1",
    *,
    channel: str = "email",
    thread_ref: str = "thread-1",
    body: str = "Hello, where is my order?",
    vendor_id: str | None = "acme",
    role: str = "buyer",
    sender_id: str = "buyer-1",
    **data: Any,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "channel": channel,
        "message_id": f"msg-{event_id}",
        "thread_ref": thread_ref,
        "sender": {"id": sender_id, "role": role, "name": "Bea Buyer"},
        "body": body,
        **data,
    }
    if vendor_id is not None:
        payload["vendor_id"] = vendor_id
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": f"urn:connector:{channel}",
        "type": "support.message.received",
        "time": "2026-11-26T10:00:00Z",
        "datacontenttype": "application/json",
        "data": payload,
    }


def inbound_bytes(event_id: str = "evt-1", **kwargs: Any) -> bytes:
    return orjson.dumps(inbound_event(event_id, **kwargs))
