"""Which ticket a message belongs to: thread root, reply tokens, vendor, order.

The thread root is the first Message-ID of `References`, else `In-Reply-To`, else the message's
own Message-ID: every message of a thread names the same root, whichever client wrote it.
`thread_ref` is `email:<token>`, the token a short digest of that root, because the same token
goes into the reply address of our outbound mail (`support+t.<token>@...`): a reply from a
client that dropped the threading headers still names its ticket. Vendors are named in a
plus-address as `support+v.<vendor id>@...` (vendor ids have no dots) or by a configured
address map.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from email.utils import getaddresses

from router.email.config import EmailConfig
from schemas.message import VENDOR_ID_PATTERN

THREAD_PREFIX = "email:"
_MSG_ID = re.compile(r"<([^<>\s]{1,500})>")
_TOKEN = re.compile(r"[a-z2-7]{16}")
_VENDOR = re.compile(VENDOR_ID_PATTERN)
_ORDER_CHARS = 128


def message_ids(value: str | None) -> list[str]:
    """Message-IDs in a header (`<a@b> <c@d>`); bare ids when a client left out brackets."""
    if not value:
        return []
    found = _MSG_ID.findall(value)
    if found:
        return found
    return [w.strip("<>,;") for w in value.split() if "@" in w][:100]


def thread_root(references: str | None, in_reply_to: str | None, own: str) -> str:
    refs = message_ids(references)
    if refs:
        return refs[0]
    replied = message_ids(in_reply_to)
    return replied[0] if replied else own


def thread_token(root: str) -> str:
    """16 base32 characters (80 bits) of the root's digest: fits a mailbox's local part."""
    digest = hashlib.blake2b(root.encode("utf-8", "replace"), digest_size=10).digest()
    return base64.b32encode(digest).decode("ascii").lower()


def thread_ref_for(token: str) -> str:
    return THREAD_PREFIX + token


def reply_address(support_address: str, token: str) -> str:
    """The address our mail to a ticket's customer replies to (for the outbound side)."""
    local, _, domain = support_address.partition("@")
    return f"{local}+t.{token}@{domain}"


@dataclass(frozen=True, slots=True)
class PlusTags:
    thread_token: str | None = None
    vendor_id: str | None = None


def plus_tags(recipients: list[str], config: EmailConfig) -> PlusTags:
    """`support+t.<token>@` and `support+v.<vendor>@` among the recipients."""
    ours = {a.lower() for a in config.support_addresses}
    token = vendor = None
    for address in recipients:
        local, at, domain = address.lower().rpartition("@")
        base, plus, tag = local.partition("+")
        if not (at and plus) or (ours and f"{base}@{domain}" not in ours):
            continue
        kind, _, value = tag.partition(".")
        if kind == "t" and token is None and _TOKEN.fullmatch(value):
            token = value
        elif kind == "v" and vendor is None and _VENDOR.fullmatch(value):
            vendor = value
    return PlusTags(token, vendor)


def mapped_vendor(recipients: list[str], config: EmailConfig) -> str | None:
    mapping = {k.lower(): v for k, v in config.vendor_addresses.items()}
    for address in recipients:
        vendor = mapping.get(address.lower())
        if vendor is not None:
            return vendor
    return None


def addresses(values: list[str]) -> list[tuple[str, str]]:
    """(name, address) pairs of decoded address headers; unparseable entries are dropped."""
    try:
        pairs = getaddresses(values)
    except Exception:  # getaddresses is lenient, but not on every malformed input
        return []
    return [(n, a) for n, a in pairs if "@" in a and len(a) <= 320]


def order_id(config: EmailConfig, *texts: str) -> str | None:
    regex = config.order_regex
    if regex is None:
        return None
    for text in texts:
        match = regex.search(text)
        if match:
            value = match.group(1) if match.groups() else match.group(0)
            if value:
                return str(value)[:_ORDER_CHARS]
    return None
