"""Delivering `outbound.<channel>` replies over the Graph API (pure: the edge is
`streams/deliver.py`).

Request shapes (`request_for`), every attempt with the record's `Idempotency-Key`:

- WhatsApp: `POST {base}/{account_id}/messages` (account: the phone number id)
  `{"messaging_product": "whatsapp", "recipient_type": "individual", "to": <wa_id>,
    "type": "text", "text": {"body": <body>}}`
- Messenger and Instagram direct: `POST {base}/me/messages`
  `{"recipient": {"id": <PSID or IGSID>}, "messaging_type": "RESPONSE",
    "message": {"text": <body>}}`
- Instagram comment: `POST {base}/{comment id}/replies` `{"message": <body>}`
- Facebook page comment: `POST {base}/{comment id}/comments` `{"message": <body>}`
- Instagram mention: `POST {base}/{account id}/mentions`
  `{"media_id": <media>, "comment_id": <comment, when mentioned in one>, "message": <body>}`

A reply whose thread names no recipient (email, a comment not yet seen) fails at once. Answers:
2xx delivered; 429 (after `Retry-After` when given), 5xx and no answer retried with
exponential backoff and jitter up to the policy's attempts; any other status fails at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from router.ids import derive_id
from router.outputs import engine_record
from router.records import OutRecord
from schemas.outbound import (
    MESSAGE_DELIVERED,
    MESSAGE_FAILED,
    REPLY_UNDELIVERABLE,
    DeliveryOutcome,
    OutboundReply,
    OutboundReplyEvent,
    Platform,
    UndeliveredReply,
)
from schemas.topics import OUTBOUND_DLQ, TICKETS_EVENTS

IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: dict[str, Any]


def request_for(reply: OutboundReply, base_url: str) -> Request | None:
    """The Graph API call that sends `reply`; None when its thread names no recipient."""
    base = base_url.rstrip("/")
    if reply.media_id is not None and reply.platform is Platform.INSTAGRAM:
        mention = {"media_id": reply.media_id, "message": reply.body}
        if reply.reply_to_id is not None:
            mention["comment_id"] = reply.reply_to_id
        return Request(f"{base}/{reply.account_id}/mentions", mention)
    if reply.reply_to_id is not None and reply.platform is not None:
        edge = "comments" if reply.platform is Platform.FACEBOOK else "replies"
        return Request(f"{base}/{reply.reply_to_id}/{edge}", {"message": reply.body})
    if reply.recipient_id is None or reply.platform is None:
        return None
    if reply.platform is Platform.WHATSAPP:
        return Request(f"{base}/{reply.account_id}/messages", {
            "messaging_product": "whatsapp", "recipient_type": "individual",
            "to": reply.recipient_id, "type": "text", "text": {"body": reply.body},
        })  # fmt: skip
    return Request(f"{base}/me/messages", {
        "recipient": {"id": reply.recipient_id}, "messaging_type": "RESPONSE",
        "message": {"text": reply.body},
    })  # fmt: skip


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int  # in all, the first one included
    base_delay_s: float
    max_delay_s: float = 60.0

    def backoff(self, attempt: int, jitter: float) -> float:
        """Delay after failed attempt `attempt` (1-based): half the exponential step fixed,
        half random (`jitter` in [0, 1)), so retries of many records spread out."""
        step = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))
        return step / 2 + step / 2 * jitter


@dataclass(frozen=True, slots=True)
class Retry:
    delay_s: float


@dataclass(frozen=True, slots=True)
class Delivered:
    status: int


@dataclass(frozen=True, slots=True)
class Failed:
    reason: str
    status: int | None


Verdict = Retry | Delivered | Failed


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def judge(
    policy: RetryPolicy,
    attempt: int,
    status: int | None,
    *,
    retry_after: str | None = None,
    error: str | None = None,
    now: datetime,
    jitter: float,
) -> Verdict:
    """What to do after attempt `attempt` answered `status` (None: no answer, `error` says
    why). A 429's `Retry-After` is honoured up to `max_delay_s`."""
    if status is not None and 200 <= status < 300:
        return Delivered(status)
    retriable = status is None or status == 429 or status >= 500
    what = f"HTTP {status}" if status is not None else f"no answer: {error or 'connection failed'}"
    if not retriable:
        return Failed(f"{what}: not retriable", status)
    if attempt >= policy.attempts:
        return Failed(f"{what} on attempt {attempt} of {policy.attempts}", status)
    delay = policy.backoff(attempt, jitter)
    if status == 429:
        asked = retry_after_seconds(retry_after, now)
        if asked is not None:
            delay = min(policy.max_delay_s, max(asked, delay))
    return Retry(delay)


def provider_message_id(body: bytes) -> str | None:
    """The platform's id of the sent message: WhatsApp `messages[0].id`, Messenger
    `message_id`."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    messages = doc.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        found = messages[0].get("id")
        return found if isinstance(found, str) else None
    found = doc.get("message_id")
    return found if isinstance(found, str) else None


def delivered_record(
    reply: OutboundReply, attempts: int, status: int, provider_id: str | None, now: datetime
) -> OutRecord:
    outcome = DeliveryOutcome(
        ticket_id=reply.ticket_id, action_id=reply.action_id,
        idempotency_key=reply.idempotency_key, channel=reply.channel, platform=reply.platform,
        attempts=attempts, status=status, provider_message_id=provider_id, at=now,
    )  # fmt: skip
    return engine_record(
        TICKETS_EVENTS.name, reply.ticket_id, derive_id(reply.idempotency_key, "delivered"),
        MESSAGE_DELIVERED, now, outcome.model_dump(mode="json", exclude_none=True),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Source:
    """Where the outbound record was read."""

    topic: str
    partition: int
    offset: int


def failed_records(
    event: OutboundReplyEvent | None,
    raw: bytes,
    key: bytes | None,
    source: Source,
    attempts: int,
    failure: Failed,
    now: datetime,
) -> list[OutRecord]:
    """`outbound.dlq` (the record whole, the reason) and, for a valid record, the
    `support.message.failed` event. Ids derive from the idempotency key (or the position of
    a record that is not one)."""
    basis = event.id if event is not None else f"{source.topic}/{source.partition}/{source.offset}"
    subject = event.data.ticket_id if event is not None else (key or b"").decode("utf-8", "replace")
    letter = UndeliveredReply(
        reason=failure.reason, attempts=attempts, status=failure.status, topic=source.topic,
        partition=source.partition, offset=source.offset, record=event,
        raw=None if event is not None else raw.decode("utf-8", "replace"), failed_at=now,
    )  # fmt: skip
    out = [
        engine_record(
            OUTBOUND_DLQ.name, subject, derive_id(basis, "dlq"), REPLY_UNDELIVERABLE, now,
            letter.model_dump(mode="json", exclude_none=True),
        )
    ]  # fmt: skip
    if event is not None:
        reply = event.data
        outcome = DeliveryOutcome(
            ticket_id=reply.ticket_id, action_id=reply.action_id,
            idempotency_key=reply.idempotency_key, channel=reply.channel,
            platform=reply.platform, attempts=attempts, status=failure.status,
            reason=failure.reason, at=now,
        )  # fmt: skip
        out.append(
            engine_record(
                TICKETS_EVENTS.name, reply.ticket_id, derive_id(event.id, "failed"),
                MESSAGE_FAILED, now, outcome.model_dump(mode="json", exclude_none=True),
            )
        )  # fmt: skip
    return out
