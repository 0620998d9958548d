"""Meta webhooks (WhatsApp Cloud API, Messenger, Instagram, Facebook pages) -> channel records.

Three pure steps, the HTTP edge (`streams/gateway/`) calls them in order:
- `handshake`: the subscription check Meta sends with `GET` (`hub.mode=subscribe`,
  `hub.verify_token`, `hub.challenge`);
- `verify_signature`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` with the
  app secret (several during a rotation; constant-time);
- `normalise`: one webhook body -> one inbound record per customer message, comment or
  mention, each validated by the engine's own check (`router.intake.request.read_document`).

Channels and threads (the thread ref also carries what a reply needs to reach the customer):

| what | channel | thread ref (`<account>`: phone number, page or IG account id) | message id |
|---|---|---|---|
| WhatsApp message | chat | `whatsapp:<account>:<wa_id>` | `wamid...` |
| Messenger message | chat | `messenger:<account>:<PSID>` | `mid` |
| Instagram direct message | chat | `instagram:<account>:<IGSID>` | `mid` |
| Instagram comment | social | `instagram:<account>:media:<media id>:user:<user id>` | comment id |
| Instagram mention | social | `instagram:<account>:media:<media id>` | comment (or media) id |
| Facebook page comment | social | `facebook:<account>:post:<post id>:user:<user id>` | comment id |

Event ids derive from Meta's message id (as for any plain message the gateway wraps), so a
webhook Meta delivers again adds nothing. Delivery and read receipts, echoes of the business's
own messages, reactions and edits/removals open no ticket. Receipts (WhatsApp `statuses`,
Messenger and Instagram `delivery` / `read`) become `support.message.receipt` records on
`delivery.receipts`, keyed by the thread ref, for the routing stage to put on the thread's ticket;
echoes, reactions and edits are counted and dropped. An item whose ids are missing or malformed
is skipped and reported with where it sat in the body.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from router.ids import derive_id
from router.intake.request import (
    Outcome,
    Problem,
    Record,
    Refused,
    gateway_source,
    read_document,
)
from router.intake.signature import SignatureProblem, Unverified
from schemas.dead_letter import RejectReason
from schemas.message import MAX_ATTACHMENTS, MAX_BODY_CHARS, Channel
from schemas.outbound import (
    MAX_RECEIPT_IDS,
    MESSAGE_RECEIPT,
    DeliveryReceipt,
    DeliveryReceiptEvent,
    Platform,
    ReceiptStatus,
)
from schemas.topics import DELIVERY_RECEIPTS

SIGNATURE_HEADER = "X-Hub-Signature-256"
SCHEME = "sha256="
# The gateway wraps every record as from this source: event ids are `derive_id("gateway",
# SOURCE, channel, message_id)`.
SOURCE = "meta"
MAX_CHALLENGE_CHARS = 128
_DIGEST = re.compile(r"[0-9a-f]{64}")
# Meta's ids: digits (page, media, comment: `<post>_<comment>`), `wamid.<base64>`, `m_<...>`
_ID = re.compile(r"[A-Za-z0-9_.:=+/-]{1,256}")
_CHALLENGE = re.compile(rf"[\x21-\x7e]{{1,{MAX_CHALLENGE_CHARS}}}")
_NAME_CHARS = 256
_MIME_CHARS = 255
# sent_at outside these years is a unit mistake, not a time
_EARLIEST, _LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
# WhatsApp message types that carry a media object with `id` and `mime_type`
_WHATSAPP_MEDIA = ("image", "video", "audio", "document", "sticker")


# --- the subscription handshake -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Handshake:
    status: int  # 200 with the challenge, 400 for a malformed one, else 403
    text: str


def handshake(params: Mapping[str, str], verify_token: bytes | None) -> Handshake:
    """Meta's `GET ?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...`: the challenge
    echoed when the token is ours (compared in constant time)."""
    token = params.get("hub.verify_token", "").encode("utf-8", "replace")
    good = verify_token is not None and hmac.compare_digest(token, verify_token)
    if params.get("hub.mode") != "subscribe" or not good:
        return Handshake(403, "verification refused")
    challenge = params.get("hub.challenge", "")
    if not _CHALLENGE.fullmatch(challenge):  # echoed back: printable ASCII, bounded
        return Handshake(400, "hub.challenge must be 1 to 128 printable ASCII characters")
    return Handshake(200, challenge)


# --- signatures -----------------------------------------------------------------------------


def sign(secret: bytes, body: bytes) -> str:
    """The header value Meta sends."""
    return SCHEME + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(
    header: str | None, body: bytes, secrets: Sequence[bytes]
) -> Unverified | None:
    """None when `body` was signed with one of `secrets`, else why not. Meta's signature has no
    timestamp: a retry repeats it, and the event ids make a repeat harmless."""
    if not header:
        return Unverified(SignatureProblem.MISSING, f"{SIGNATURE_HEADER} header is required")
    value = header.strip()
    if not value.startswith(SCHEME) or not _DIGEST.fullmatch(value[len(SCHEME) :]):
        return Unverified(SignatureProblem.MALFORMED, "expected sha256=<64 lowercase hex digits>")
    candidate = value[len(SCHEME) :]
    matched = False
    for secret in secrets:  # every comparison runs: the time does not say which matched
        wanted = hmac.new(secret, body, hashlib.sha256).hexdigest()
        matched |= hmac.compare_digest(candidate, wanted)
    if not matched:
        return Unverified(SignatureProblem.MISMATCH, "signature does not match the body")
    return None


# --- normalisation --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Skipped:
    where: str  # `entry[0].changes[1]`
    error: str


@dataclass
class Normalised:
    """What one webhook body holds."""

    records: list[Record] = field(default_factory=list)  # customer messages
    receipts: list[Record] = field(default_factory=list)  # delivery / read receipts
    ignored: int = 0  # echoes, reactions, edits, fields that are not messages
    skipped: list[Skipped] = field(default_factory=list)  # malformed items

    def summary(self) -> dict[str, Any]:
        return {
            "status": 200,
            "accepted": len(self.records),
            "ids": [r.event_id for r in self.records],
            "receipts": len(self.receipts),
            "ignored": self.ignored,
            "skipped": [{"where": s.where, "error": s.error} for s in self.skipped],
        }


class _Malformed(Exception):
    """An item without what a record needs; it is skipped, the rest of the body is kept."""


_IGNORED = object()


def normalise(body: bytes, now: datetime, max_record_bytes: int) -> Normalised | Refused:
    """A webhook body -> its records; a body that is not a Meta webhook object is refused."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Refused(Problem.INVALID, RejectReason.INVALID_JSON.value, f"invalid JSON: {exc}")
    if not isinstance(doc, dict) or not isinstance(doc.get("entry", []), list):
        return Refused(
            Problem.INVALID, RejectReason.SCHEMA_VIOLATION.value,
            "a Meta webhook is an object with an `entry` array",
        )  # fmt: skip
    out = Normalised()
    kind = doc.get("object")
    for where, item in _items(kind, doc.get("entry") or []):
        try:
            message = _message(kind, item)
        except _Malformed as exc:
            out.skipped.append(Skipped(where, str(exc)))
            continue
        if isinstance(message, DeliveryReceipt):
            out.receipts.append(_receipt_record(message, now))
        elif message is _IGNORED or not isinstance(message, dict):
            out.ignored += 1
        else:
            outcome = _record(message, now, max_record_bytes)
            if isinstance(outcome, Refused):
                out.skipped.append(Skipped(where, outcome.error[:300]))
            else:
                out.records.append(outcome)
    return out


@dataclass(frozen=True, slots=True)
class _Item:
    """One change or messaging event, with the entry it came in."""

    entry: dict[str, Any]
    field: str  # `changes[].field`, or "messaging"
    value: dict[str, Any]
    sub: Any = None  # a WhatsApp message or status within `value`


def _items(kind: Any, entries: list[Any]) -> Iterator[tuple[str, _Item | None]]:
    for e, entry in enumerate(entries):
        if not isinstance(entry, dict):
            yield f"entry[{e}]", None
            continue
        for m, event in enumerate(_list(entry.get("messaging"))):
            yield f"entry[{e}].messaging[{m}]", _Item(entry, "messaging", _dict(event))
        for c, change in enumerate(_list(entry.get("changes"))):
            change = _dict(change)
            name, value = _text(change.get("field")), _dict(change.get("value"))
            here = f"entry[{e}].changes[{c}]"
            if kind == "whatsapp_business_account" and name == "messages":
                for m, message in enumerate(_list(value.get("messages"))):
                    yield f"{here}.messages[{m}]", _Item(entry, name, value, _dict(message))
                for s, status in enumerate(_list(value.get("statuses"))):
                    yield f"{here}.statuses[{s}]", _Item(entry, "statuses", value, _dict(status))
            else:
                yield here, _Item(entry, name, value)


def _message(kind: Any, item: _Item | None) -> dict[str, Any] | DeliveryReceipt | object:
    if item is None:
        raise _Malformed("an entry is an object")
    if kind == "whatsapp_business_account" and item.field == "statuses":
        return _whatsapp_status(item)
    if kind == "whatsapp_business_account" and item.sub is not None:
        return _whatsapp(item)
    if kind in ("page", "instagram") and item.field == "messaging":
        return _direct("messenger" if kind == "page" else "instagram", item)
    if kind == "instagram" and item.field in ("comments", "live_comments"):
        return _instagram_comment(item)
    if kind == "instagram" and item.field == "mentions":
        return _instagram_mention(item)
    if kind == "page" and item.field == "feed":
        return _page_comment(item)
    return _IGNORED


def _whatsapp(item: _Item) -> dict[str, Any] | object:
    message = item.sub
    kind = _text(message.get("type"))
    if kind in ("reaction", "system", "request_welcome"):
        return _IGNORED
    account = _id(_dict(item.value.get("metadata")).get("phone_number_id"), "phone_number_id")
    user = _id(message.get("from"), "from")
    names = {
        _text(c.get("wa_id")): _text(_dict(c.get("profile")).get("name"))
        for c in map(_dict, _list(item.value.get("contacts")))
    }
    body, attachments = _whatsapp_content(kind, message)
    attributes: dict[str, Any] = {"meta_message_type": kind or "unknown"}
    context = _dict(message.get("context")).get("id")
    if isinstance(context, str) and _ID.fullmatch(context):
        attributes["meta_reply_to"] = context  # the business message the customer answers
    return _inbound(
        Channel.CHAT, "whatsapp", account, user, _id(message.get("id"), "id"),
        thread=f"whatsapp:{account}:{user}", name=names.get(user), address=f"+{user}",
        body=body, attachments=attachments, sent_at=_time(message.get("timestamp")),
        attributes=attributes,
    )  # fmt: skip


def _whatsapp_content(kind: str, message: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    if kind == "text":
        return _text(_dict(message.get("text")).get("body")), []
    if kind in _WHATSAPP_MEDIA:
        media = _dict(message.get(kind))
        attachment = {
            "name": _clip(_text(media.get("filename")), _NAME_CHARS) or kind,
            "content_type": _clip(_text(media.get("mime_type")), _MIME_CHARS) or None,
            "id": _id(media.get("id"), f"{kind}.id"),
        }
        return _text(media.get("caption")), [attachment]
    if kind == "location":
        place = _dict(message.get("location"))
        parts = [_text(place.get(k)) for k in ("name", "address")]
        lat, lon = place.get("latitude"), place.get("longitude")
        numbers = all(isinstance(n, int | float) and not isinstance(n, bool) for n in (lat, lon))
        where = f"{lat},{lon}" if numbers else ""
        return " ".join(["[location]", *filter(None, [*parts, where])]), []
    if kind == "button":
        return _text(_dict(message.get("button")).get("text")), []
    if kind == "interactive":
        chosen = _dict(message.get("interactive"))
        reply = _dict(chosen.get("button_reply") or chosen.get("list_reply"))
        return _text(reply.get("title")), []
    # contacts, order, unsupported, ...: a ticket still opens; the desk sees the type
    return f"[{kind or 'unknown'} message]", []


def _direct(platform: str, item: _Item) -> dict[str, Any] | DeliveryReceipt | object:
    event = item.value
    if "delivery" in event or "read" in event:
        return _direct_receipt(platform, item)
    message = event.get("message")
    postback = event.get("postback")
    if not isinstance(message, dict) and not isinstance(postback, dict):
        return _IGNORED  # reactions, referrals, opt-ins, ...
    if isinstance(message, dict) and (message.get("is_echo") or message.get("is_deleted")):
        return _IGNORED  # the business's own message, or one the customer took back
    account = _id(_dict(event.get("recipient")).get("id") or item.entry.get("id"), "recipient")
    user = _id(_dict(event.get("sender")).get("id"), "sender.id")
    attachments: list[dict[str, Any]] = []
    if isinstance(message, dict):
        message_id = _id(message.get("mid"), "message.mid")
        body = _text(message.get("text"))
        for attachment in map(_dict, _list(message.get("attachments"))):
            kind = _text(attachment.get("type")) or "file"
            # the webhook gives a (short-lived) CDN URL and no id or MIME type: named by type
            attachments.append({"name": _clip(kind, _NAME_CHARS)})
        kind = "attachment" if attachments and not body else "text"
    else:
        postback = _dict(postback)
        message_id = _id(postback.get("mid"), "postback.mid")
        body = _text(postback.get("title"))
        kind = "postback"
    return _inbound(
        Channel.CHAT, platform, account, user, message_id, thread=f"{platform}:{account}:{user}",
        body=body, attachments=attachments, sent_at=_time(event.get("timestamp")),
        attributes={"meta_message_type": kind},
    )  # fmt: skip


_WHATSAPP_STATUSES = {s.value: s for s in ReceiptStatus}
_ERROR_CHARS = 300


def _whatsapp_status(item: _Item) -> DeliveryReceipt:
    """A WhatsApp `statuses[]` item: one business message sent, delivered, read or failed."""
    status = item.sub
    account = _id(_dict(item.value.get("metadata")).get("phone_number_id"), "phone_number_id")
    user = _id(status.get("recipient_id"), "recipient_id")
    state = _WHATSAPP_STATUSES.get(_text(status.get("status")))
    if state is None:
        raise _Malformed("status: expected sent, delivered, read or failed")
    errors = [_dict(e) for e in _list(status.get("errors"))]
    error = "; ".join(
        f"{e.get('code')}: {_text(e.get('title')) or _text(e.get('message'))}" for e in errors
    )
    return _receipt(
        Channel.CHAT, Platform.WHATSAPP, f"whatsapp:{account}:{user}", state,
        [_id(status.get("id"), "id")], _time(status.get("timestamp")),
        error=_clip(error, _ERROR_CHARS) or None,
    )  # fmt: skip


def _direct_receipt(platform: str, item: _Item) -> DeliveryReceipt:
    """Messenger / Instagram `delivery` (mids and a watermark) or `read` (a watermark, or
    Instagram's `mid`): the customer is the sender of the receipt."""
    event = item.value
    account = _id(_dict(event.get("recipient")).get("id") or item.entry.get("id"), "recipient")
    user = _id(_dict(event.get("sender")).get("id"), "sender.id")
    delivered = "delivery" in event
    receipt = _dict(event.get("delivery" if delivered else "read"))
    ids = [_id(m, "mids[]") for m in _list(receipt.get("mids"))[:MAX_RECEIPT_IDS]]
    if receipt.get("mid") is not None:
        ids.append(_id(receipt.get("mid"), "read.mid"))
    watermark = _time(receipt.get("watermark"))
    if not ids and watermark is None:
        raise _Malformed("a receipt names message ids or a watermark")
    return _receipt(
        Channel.CHAT, Platform(platform), f"{platform}:{account}:{user}",
        ReceiptStatus.DELIVERED if delivered else ReceiptStatus.READ, ids,
        _time(event.get("timestamp")), watermark=watermark,
    )  # fmt: skip


def _receipt(
    channel: Channel, platform: Platform, thread: str, status: ReceiptStatus, ids: list[str],
    at: datetime | None, *, watermark: datetime | None = None, error: str | None = None,
) -> DeliveryReceipt:  # fmt: skip
    if at is None:
        raise _Malformed("timestamp: expected the time of the receipt")
    try:
        return DeliveryReceipt(
            channel=channel, thread_ref=thread, platform=platform, status=status,
            message_ids=tuple(ids), watermark=watermark, error=error, at=at,
        )  # fmt: skip
    except ValidationError as exc:  # ids and times are checked above: a thread too long
        raise _Malformed(f"receipt: {exc.errors()[0]['msg']}") from None


def _receipt_record(receipt: DeliveryReceipt, now: datetime) -> Record:
    """Its id derives from what it reports, so a redelivered webhook adds nothing."""
    basis = receipt.message_ids or (str(receipt.watermark),)
    event_id = derive_id(
        "gateway", SOURCE, "receipt", receipt.thread_ref, receipt.status.value, *basis
    )
    event = DeliveryReceiptEvent(
        specversion="1.0", id=event_id, source=gateway_source(SOURCE), type=MESSAGE_RECEIPT,
        time=now, subject=receipt.thread_ref, data=receipt,
    )  # fmt: skip
    value = event.model_dump_json(exclude_none=True).encode()
    return Record(event_id, DELIVERY_RECEIPTS.name, receipt.thread_ref.encode(), value)


def _instagram_comment(item: _Item) -> dict[str, Any] | object:
    value = item.value
    account = _id(item.entry.get("id"), "entry.id")
    author = _dict(value.get("from"))
    user = _id(author.get("id"), "from.id")
    if user == account:
        return _IGNORED  # the account's own comment (a reply of ours)
    media = _id(_dict(value.get("media")).get("id"), "media.id")
    comment = _id(value.get("id"), "id")
    attributes: dict[str, Any] = {"meta_media_id": media, "meta_comment_id": comment}
    parent = value.get("parent_id")
    if isinstance(parent, str) and _ID.fullmatch(parent):
        attributes["meta_parent_id"] = parent
    return _inbound(
        Channel.SOCIAL, "instagram", account, user, comment,
        thread=f"instagram:{account}:media:{media}:user:{user}",
        name=_text(author.get("username")) or None, body=_text(value.get("text")),
        sent_at=_time(item.entry.get("time")),
        attributes={"meta_message_type": "comment", **attributes},
    )  # fmt: skip


def _instagram_mention(item: _Item) -> dict[str, Any] | object:
    value = item.value
    account = _id(item.entry.get("id"), "entry.id")
    media = _id(value.get("media_id"), "media_id")
    comment = value.get("comment_id")
    attributes: dict[str, Any] = {"meta_message_type": "mention", "meta_media_id": media}
    if comment is not None:
        attributes["meta_comment_id"] = _id(comment, "comment_id")
    # the webhook names the media (and comment) only: the text is read from the Graph API
    return _inbound(
        Channel.SOCIAL, "instagram", account, None, attributes.get("meta_comment_id", media),
        thread=f"instagram:{account}:media:{media}", body="",
        sent_at=_time(item.entry.get("time")), attributes=attributes,
    )  # fmt: skip


def _page_comment(item: _Item) -> dict[str, Any] | object:
    value = item.value
    if value.get("item") != "comment" or value.get("verb") != "add":
        return _IGNORED  # posts, likes, edits, removals
    page = _id(item.entry.get("id"), "entry.id")
    author = _dict(value.get("from"))
    user = _id(author.get("id"), "from.id")
    if user == page:
        return _IGNORED  # the page's own comment (a reply of ours)
    post = _id(value.get("post_id"), "post_id")
    comment = _id(value.get("comment_id"), "comment_id")
    attributes: dict[str, Any] = {
        "meta_message_type": "comment", "meta_post_id": post, "meta_comment_id": comment
    }  # fmt: skip
    parent = value.get("parent_id")
    if isinstance(parent, str) and _ID.fullmatch(parent) and parent != post:
        attributes["meta_parent_id"] = parent
    return _inbound(
        Channel.SOCIAL, "facebook", page, user, comment,
        thread=f"facebook:{page}:post:{post}:user:{user}",
        name=_text(author.get("name")) or None, body=_text(value.get("message")),
        sent_at=_time(value.get("created_time")), attributes=attributes,
    )  # fmt: skip


def _inbound(
    channel: Channel, platform: str, account: str, user: str | None, message_id: str, *,
    thread: str, body: str, attributes: dict[str, Any], name: str | None = None,
    address: str | None = None, attachments: list[dict[str, Any]] | None = None,
    sent_at: datetime | None = None,
) -> dict[str, Any]:  # fmt: skip
    sender: dict[str, Any] = {"id": user or f"{platform}:unknown", "role": "guest"}
    if name:
        sender["name"] = _clip(name, _NAME_CHARS)
    if address:
        sender["address"] = address
    meta: dict[str, Any] = {"meta_platform": platform, "meta_account_id": account}
    if user:
        meta["meta_user_id"] = user
    if channel is Channel.SOCIAL:
        meta["public"] = True  # seen by everyone: a reply goes out in public too
    doc: dict[str, Any] = {
        "channel": channel.value,
        "message_id": message_id,
        "thread_ref": thread,
        "sender": sender,
        "body": _clip(body, MAX_BODY_CHARS),
        "attachments": (attachments or [])[:MAX_ATTACHMENTS],
        "attributes": {**meta, **attributes},
    }
    if sent_at is not None:
        doc["sent_at"] = sent_at
    return doc


def _record(message: dict[str, Any], now: datetime, max_record_bytes: int) -> Outcome:
    channel = Channel(message["channel"])
    return read_document(channel, message, SOURCE, now, max_record_bytes)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _clip(text: str, limit: int) -> str:
    return text[:limit]


def _id(value: Any, what: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)  # some ids arrive as JSON numbers
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise _Malformed(f"{what}: expected an id")
    return value


def _time(value: Any) -> datetime | None:
    """Meta's timestamps: seconds (as a number or a string) or, in messaging events, ms."""
    if isinstance(value, str) and value.isdigit() and len(value) <= 15:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = value / 1000 if value > 10**11 else value
    try:
        at = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return at if _EARLIEST <= at < _LATEST else None
