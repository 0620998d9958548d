"""The MIME tree of a parsed message, within limits: body text and the attachments it lists.

Attachments are described (name, type, size, and the part's IMAP section number as `id`, with
which a desk finds it in the original), never inlined.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from router.email.text import decode_bytes, header_text, html_to_text
from schemas.dead_letter import RejectReason

_NAME_CHARS = 255
_TYPE_CHARS = 255


@dataclass(frozen=True, slots=True)
class Exceeded:
    reason: RejectReason
    error: str


def check_limits(msg: Message, max_depth: int, max_parts: int) -> Exceeded | None:
    """Every part counts, those of attached messages too (iterative: no recursion to blow)."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    count = 0
    while stack:
        part, depth = stack.pop()
        count += 1
        if count > max_parts:
            return Exceeded(
                RejectReason.TOO_MANY_PARTS,
                f"the message has more than {max_parts} MIME parts (the limit)",
            )
        if depth > max_depth:
            return Exceeded(
                RejectReason.MIME_TOO_DEEP,
                f"MIME parts nest more than {max_depth} levels deep (the limit)",
            )
        stack.extend((child, depth + 1) for child in children(part))
    return None


def children(part: Message) -> list[Message]:
    if not part.is_multipart():
        return []
    inner = part.get_payload()
    return [c for c in inner if isinstance(c, Message)] if isinstance(inner, list) else []


@dataclass
class Content:
    texts: list[str] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    hint: str | None = None  # the charset the message declares at its top
    html: bool = False  # some body text came from HTML
    repaired: bool = False  # a body charset was missing, unknown or wrong


def read_content(msg: Message) -> Content:
    out = Content(hint=safe(lambda: msg.get_param("charset"), None))
    if not isinstance(out.hint, str):  # RFC 2231 tuples: not worth a guess
        out.hint = None
    _collect(msg, "", out)
    return out


def _collect(part: Message, path: str, out: Content) -> None:
    ctype = safe(part.get_content_type, "application/octet-stream")
    parts = children(part)
    if ctype == "message/rfc822":  # a forwarded message: listed, its text is not ours
        out.attachments.append(_attachment(part, ctype, path or "1", out.hint))
        return
    if part.is_multipart():
        if ctype == "multipart/alternative" and parts:
            chosen = _preferred(parts)
            _collect(parts[chosen], _section(path, chosen), out)
            return
        for i, child in enumerate(parts):
            _collect(child, _section(path, i), out)
        return
    here = path or "1"
    if _is_body_text(part, ctype):
        data = payload(part)
        decoded = decode_bytes(data, safe(part.get_content_charset, None), out.hint)
        out.repaired |= decoded.repaired
        if ctype == "text/html":
            out.html = True
            text = html_to_text(decoded.text)
        else:
            text = decoded.text
        if text.strip():
            out.texts.append(text.strip())
        return
    out.attachments.append(_attachment(part, ctype, here, out.hint))


def _section(path: str, index: int) -> str:
    return f"{path}.{index + 1}" if path else str(index + 1)


def _preferred(children: list[Message]) -> int:
    """`text/plain` first (what the sender wrote, no markup), else the last (richest) one."""
    for i, child in enumerate(children):
        if safe(child.get_content_type, "") == "text/plain" and payload(child).strip():
            return i
    return len(children) - 1


def _is_body_text(part: Message, ctype: str) -> bool:
    if ctype not in ("text/plain", "text/html"):
        return False
    if safe(part.get_content_disposition, None) == "attachment":
        return False
    return not safe(part.get_filename, None)


def payload(part: Message) -> bytes:
    """The decoded bytes (quoted-printable, base64, uuencode); a broken encoding gives what
    could be decoded, never an error."""
    try:
        data = part.get_payload(decode=True)
    except Exception:  # the stdlib raises on some malformed uuencode / base64
        data = None
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def _attachment(part: Message, ctype: str, section: str, hint: str | None) -> dict[str, Any]:
    name = _filename(part, hint)[:_NAME_CHARS]
    if ctype == "message/rfc822":
        attached = children(part)
        subject = header(attached[0], "subject") if attached else ""
        name = name or f"{subject[: _NAME_CHARS - 4] or 'message'}.eml"
        size = _message_size(part)
    else:
        size = len(payload(part))
    if not name:
        name = f"part-{section}{mimetypes.guess_extension(ctype) or '.bin'}"
    return {"name": name, "content_type": ctype[:_TYPE_CHARS], "size": size, "id": section}


_RAW_NAME = re.compile(r'(?:file)?name\s*=\s*"([^"]*)"', re.IGNORECASE)


def _filename(part: Message, hint: str | None) -> str:
    """The attachment's name; raw 8-bit names (sent without encoding) decoded by detection."""
    for name in ("content-disposition", "content-type"):
        raw = raw_header(part, name) or ""
        if not raw.isascii():
            found = _RAW_NAME.search(header_text(raw, hint))
            if found and found.group(1).strip():
                return found.group(1).strip()
    return header_text(str(safe(part.get_filename, None) or ""))


def _message_size(part: Message) -> int | None:
    try:
        return len(part.as_bytes())
    except Exception:  # a broken attached message: listed without a size
        return None


def header(msg: Message, name: str) -> str:
    """A header's text, read raw (no parsing that could raise) and decoded by us."""
    return header_text(raw_header(msg, name) or "")


def raw_header(msg: Message, name: str) -> str | None:
    lower = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == lower:
            return str(value)
    return None


def raw_headers(msg: Message, name: str) -> list[str]:
    lower = name.lower()
    return [str(v) for k, v in msg.raw_items() if k.lower() == lower]


def safe(call: Any, default: Any) -> Any:
    """Header accessors of `email.message` parse on access and may raise on broken input."""
    try:
        return call()
    except Exception:
        return default
