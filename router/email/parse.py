"""One raw message -> `Parsed` (the inbound record to publish), `Classified` (an auto-reply
or a bounce: no ticket) or `Rejected` (the dead-letter record and its reason).

The original is kept with the record: its SHA-256 and size always (`email_sha256`,
`email_size`), the bytes themselves base64 in `email_raw` when the message is at most
`keep_raw_bytes` and the record still fits the engine's limit (`email_raw_omitted` says when
not). A refused message keeps its bytes in the dead letter, up to `max_bytes`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from router.email.config import EmailConfig
from router.email.fallback import is_reply
from router.email.mime import check_limits, header, read_content
from router.email.noise import Classification, classify
from router.email.text import latest_reply, subject_key
from router.email.threads import (
    addresses,
    mapped_vendor,
    message_ids,
    order_id,
    plus_tags,
    thread_ref_for,
    thread_root,
    thread_token,
)
from router.ids import derive_id
from router.inbound import Rejected, dead_letter, parse_inbound
from schemas.dead_letter import RejectReason, SourcePosition
from schemas.envelope import envelope
from schemas.message import (
    EMAIL_SENDER_PREFIX,
    MAX_ATTACHMENTS,
    MAX_BODY_CHARS,
    MESSAGE_RECEIVED,
    Channel,
    InboundEvent,
)
from schemas.topics import CHANNELS

SOURCE = "urn:ticket-router:email"
_EARLIEST, _LATEST = datetime(1990, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
_CLIP = "\n[...]"
_SHORT = 998


@dataclass(frozen=True, slots=True)
class Parsed:
    event: InboundEvent
    key: bytes  # thread_ref
    value: bytes  # the record, as it goes on `channel.email`


@dataclass(frozen=True, slots=True)
class Classified:
    """Not a ticket message: what it is, and which message it answers."""

    classification: Classification
    message_id: str
    sender: str | None


Outcome = Parsed | Classified | Rejected


# (sender address, subject) -> the thread ref that sender last wrote to under that subject
Recall = Callable[[str, str], str | None]


def parse_email(
    raw: bytes,
    config: EmailConfig,
    now: datetime,
    source: SourcePosition,
    recall: Recall | None = None,
) -> Outcome:
    """`source` names where the message came from (an IMAP mailbox and UID, a file) for the
    dead letter of a refused one. Never raises on any input."""

    def reject(reason: RejectReason, error: str) -> Rejected:
        kept = raw[: config.max_bytes]
        return Rejected(reason, error, dead_letter(reason, error, [], source, None, kept, now))

    if len(raw) > config.max_bytes:
        return reject(
            RejectReason.OVERSIZE,
            f"the message is {len(raw)} bytes; the limit is {config.max_bytes} (the dead "
            f"letter keeps the first {config.max_bytes})",
        )
    if not raw.strip():
        return reject(RejectReason.NOT_AN_EMAIL, "the message is empty")
    try:
        msg = message_from_bytes(raw, policy=policy.default)
    except RecursionError:
        return reject(RejectReason.MIME_TOO_DEEP, "MIME parts nest too deep to parse")
    except Exception as exc:  # the stdlib parser is lenient; this is a last resort
        return reject(RejectReason.NOT_AN_EMAIL, f"cannot parse the message: {exc!r}"[:300])
    exceeded = check_limits(msg, config.max_depth, config.max_parts)
    if exceeded is not None:
        return reject(exceeded.reason, exceeded.error)
    try:
        return _outcome(raw, msg, config, now, source, reject, recall)
    except RecursionError:
        return reject(RejectReason.MIME_TOO_DEEP, "MIME parts nest too deep to read")
    except Exception as exc:  # a bug must cost one message its ticket, not the intake
        return reject(RejectReason.PROCESSING_ERROR, f"cannot read the message: {exc!r}"[:300])


def _outcome(
    raw: bytes, msg: Message, config: EmailConfig, now: datetime, source: SourcePosition,
    reject: Callable[[RejectReason, str], Rejected], recall: Recall | None,
) -> Outcome:  # fmt: skip
    digest = hashlib.sha256(raw).hexdigest()
    own_ids = message_ids(header(msg, "message-id"))
    # no Message-ID: one derived from the bytes, so a re-read of the same mail is the same id
    message_id = own_ids[0][:_SHORT] if own_ids else f"{digest[:32]}@sha256.invalid"
    sender_header, senders = _sender(msg)
    sender_address = senders[0][1] if senders else None
    noise = classify(msg)
    if noise is not None:
        return Classified(noise, message_id, sender_address)
    if not senders:
        return reject(
            RejectReason.NO_SENDER,
            "no usable sender address in From, Sender, Reply-To or Return-Path",
        )
    name, address = senders[0]
    recipients = [a for _, a in addresses(
        [header(msg, h) for h in ("to", "cc", "delivered-to", "x-original-to")]
        + [header(msg, "envelope-to")]
    )]  # fmt: skip
    tags = plus_tags(recipients, config)
    references, in_reply_to = header(msg, "references"), header(msg, "in-reply-to")
    root = thread_root(references, in_reply_to, message_id)
    token = tags.thread_token or thread_token(root)
    subject = header(msg, "subject")[:_SHORT]
    thread = thread_ref_for(token)
    # a reply whose client dropped every threading header: the sender's thread under the subject
    headerless = not (tags.thread_token or message_ids(references) or message_ids(in_reply_to))
    remembered = (
        recall(address, subject) if recall is not None and headerless and is_reply(subject)
        else None
    )  # fmt: skip
    if remembered is not None:
        thread = remembered
    content = read_content(msg)
    whole = "\n\n".join(content.texts)
    reply = latest_reply(whole, config.reply_languages)
    body = (
        reply.text
        if len(reply.text) <= MAX_BODY_CHARS
        else reply.text[: MAX_BODY_CHARS - len(_CLIP)] + _CLIP
    )
    vendor = tags.vendor_id or mapped_vendor(recipients, config)
    attributes: dict[str, Any] = {
        "email_from": address,
        "email_to": ", ".join(recipients)[:_SHORT],
        "email_thread_root": root[:_SHORT],
        "email_subject_key": subject_key(subject),
        "email_sha256": digest,
        "email_size": len(raw),
        "email_body_html": content.html,
        "email_charset_repaired": content.repaired,
        "email_quoted_removed": reply.trimmed,
    }
    if sender_header != "from":  # a broken or empty From: say where the address came from
        attributes["email_sender_header"] = sender_header
    if tags.thread_token:
        attributes["email_reply_token"] = tags.thread_token
    if remembered is not None:
        attributes["email_thread_fallback"] = "subject_and_sender"
    if len(content.attachments) > MAX_ATTACHMENTS:
        attributes["email_attachments_total"] = len(content.attachments)
    doc: dict[str, Any] = {
        "channel": Channel.EMAIL.value,
        "message_id": message_id,
        "thread_ref": thread,
        "sender": {"id": EMAIL_SENDER_PREFIX + address.lower(), "role": "guest",
                   "address": address},
        "body": body,
        "attachments": content.attachments[:MAX_ATTACHMENTS],
        "attributes": attributes,
    }
    if name.strip():
        doc["sender"]["name"] = name.strip()[:256]
    if subject:
        doc["subject"] = subject
    if vendor:
        doc["vendor_id"] = vendor
    found = order_id(config, subject, body)
    if found:
        doc["order_id"] = found
    sent = _date(header(msg, "date"))
    if sent is not None:
        doc["sent_at"] = sent
    value = _record(doc, message_id, now)
    if len(raw) <= config.keep_raw_bytes:
        attributes["email_raw"] = base64.b64encode(raw).decode("ascii")
        with_raw = _record(doc, message_id, now)
        if len(with_raw) <= config.max_record_bytes:
            value = with_raw
        else:
            del attributes["email_raw"]
            attributes["email_raw_omitted"] = True
            value = _record(doc, message_id, now)
    else:
        attributes["email_raw_omitted"] = True
        value = _record(doc, message_id, now)
    checked = parse_inbound(
        value, None, source, now, expected_channel=Channel.EMAIL,
        max_record_bytes=config.max_record_bytes,
    )  # fmt: skip
    if isinstance(checked, Rejected):
        return reject(checked.reason, checked.error)
    return Parsed(checked, checked.data.thread_ref.encode(), value)


def _sender(msg: Message) -> tuple[str, list[tuple[str, str]]]:
    for name in ("from", "sender", "reply-to", "return-path"):
        found = addresses([header(msg, name)])
        if found:
            return name, found
    return "from", []


def _record(doc: dict[str, Any], message_id: str, now: datetime) -> bytes:
    return orjson.dumps(
        envelope(
            # the same message read twice (IMAP re-read, SMTP retry) is the same event
            event_id=derive_id("email", CHANNELS[Channel.EMAIL].name, message_id),
            source=SOURCE,
            event_type=MESSAGE_RECEIVED,
            time=now,
            subject=doc["thread_ref"],
            data=doc,
        )
    )


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when if _EARLIEST <= when < _LATEST else None
