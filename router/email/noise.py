"""Mail that must not open a ticket: auto-replies and bounces. Classified, never dropped
silently: the parse result says what it is and why.

- auto-reply: RFC 3834 `Auto-Submitted` other than `no`; `Precedence: bulk|junk|list`;
  `X-Autoreply`, `X-Autorespond`, `X-Auto-Response-Suppress` (Exchange, on its own automatic
  mail);
- bounce: an RFC 3464 delivery status notification (`multipart/report;
  report-type=delivery-status`), with the bounced message's Message-ID from the returned
  message or headers, and the DSN's action (`failed`, `delayed`, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from enum import StrEnum

from router.email.mime import children, header, payload, raw_header, safe
from router.email.threads import message_ids


class Noise(StrEnum):
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"


@dataclass(frozen=True, slots=True)
class Classification:
    kind: Noise
    why: str  # the header or structure that told
    original_message_id: str | None = None  # a bounce: the message that bounced
    action: str | None = None  # a bounce: failed, delayed, delivered, relayed, expanded


_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-response-suppress")
_ACTION = re.compile(r"^action:\s*([a-z]+)", re.IGNORECASE | re.MULTILINE)


def classify(msg: Message) -> Classification | None:
    bounce = _bounce(msg)
    if bounce is not None:
        return bounce
    submitted = header(msg, "auto-submitted").lower()
    if submitted and submitted.split(";")[0].strip() != "no":
        return Classification(Noise.AUTO_REPLY, f"Auto-Submitted: {submitted[:100]}")
    precedence = header(msg, "precedence").lower().strip()
    if precedence in ("bulk", "junk", "list"):
        return Classification(Noise.AUTO_REPLY, f"Precedence: {precedence}")
    for name in _AUTO_HEADERS:
        if raw_header(msg, name) is not None:
            return Classification(Noise.AUTO_REPLY, f"{name} header")
    return None


def _bounce(msg: Message) -> Classification | None:
    """The first delivery-status report in the message (a report may come inside a
    multipart/mixed from some servers)."""
    stack = [msg]
    while stack:
        part = stack.pop(0)
        ctype = safe(part.get_content_type, "")
        report = str(safe(lambda p=part: p.get_param("report-type"), "") or "").lower()
        if ctype == "multipart/report" and report == "delivery-status":
            return _dsn(part)
        if ctype.startswith("multipart/"):
            stack.extend(children(part))
    return None


def _dsn(report: Message) -> Classification:
    original: str | None = None
    action: str | None = None
    for part in children(report):
        ctype = safe(part.get_content_type, "")
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            status = _status_text(part)
            found = _ACTION.search(status)
            action = found.group(1).lower() if found else action
        elif ctype in ("message/rfc822", "message/global") and original is None:
            inner = children(part)
            if inner:
                ids = message_ids(header(inner[0], "message-id"))
                original = ids[0] if ids else None
        elif ctype == "text/rfc822-headers" and original is None:
            original = _id_in_headers(payload(part))
    why = "multipart/report; report-type=delivery-status" + (f" ({action})" if action else "")
    return Classification(Noise.BOUNCE, why, original, action)


def _status_text(part: Message) -> str:
    # the stdlib parses message/delivery-status bodies into header blocks
    blocks = children(part)
    if blocks:
        return "\n".join(f"{k}: {v}" for b in blocks for k, v in b.raw_items())
    return payload(part).decode("ascii", "replace")


def _id_in_headers(data: bytes) -> str | None:
    try:
        headers = message_from_bytes(data, policy=policy.default)
    except Exception:  # broken returned headers: the bounce is still a bounce
        return None
    ids = message_ids(header(headers, "message-id"))
    return ids[0] if ids else None
