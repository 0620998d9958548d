"""The field-path registry: every path a condition or template may name, its kind and getter.

A getter returns the field's value for one decision, or None when the value is absent
(no vendor profile, no subject, an order attribute that is not there...). Values of
`lower=True` fields are lower-cased on both sides, so `language: EN` equals `en`.

Discriminating fields (`indexable=True`) may back the compiled evaluator's hash index.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from rules.facts import Facts, aware
from schemas.message import Channel, SenderRole
from schemas.scores import ScoreTier
from schemas.ticket import Priority
from schemas.vendor import VendorStatus, VendorTier


class Kind(StrEnum):
    STR = "string"  # a short identifier-like string (channel, role, vendor id...)
    TEXT = "text"  # free text (subject, body): phrase and regex tests
    NUM = "number"
    BOOL = "boolean"
    TIME = "timestamp"
    SET = "set"  # a set of strings (intents, tags, channels)
    ANY = "any"  # open attributes (order.*, message.attributes.*): typed at run time


Getter = Callable[[Facts], Any]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    path: str
    kind: Kind
    getter: Getter
    doc: str
    values: frozenset[str] | None = None  # closed domain of a STR/SET field
    indexable: bool = False
    lower: bool = False


def _lower(s: str | None) -> str | None:
    return s.lower() if s else None


def _lang_base(f: Facts) -> str | None:
    lang = f.msg.language
    return lang.split("-", 1)[0].lower() if lang else None


def _domain(f: Facts) -> str | None:
    addr = f.msg.sender.address
    if not addr or "@" not in addr:
        return None
    return addr.rsplit("@", 1)[1].lower() or None


def _sent_at(f: Facts) -> Any:
    sent = f.msg.sent_at
    return aware(sent) if sent is not None else None


def _vendor_attr(name: str) -> Getter:
    def get(f: Facts) -> Any:
        v = f.vendor
        return None if v is None else getattr(v, name)

    return get


def _standing_attr(name: str) -> Getter:
    def get(f: Facts) -> Any:
        s = f.standing
        return None if s is None else getattr(s, name)

    return get


def _buyer_attr(name: str) -> Getter:
    def get(f: Facts) -> Any:
        b = f.buyer
        return None if b is None else getattr(b, name)

    return get


def _enum(e: type[StrEnum]) -> frozenset[str]:
    return frozenset(m.value for m in e)


_CHANNELS = _enum(Channel)

_STATIC: tuple[FieldSpec, ...] = (
    # message
    FieldSpec(
        "message.channel",
        Kind.STR,
        lambda f: f.msg.channel,
        "email|chat|social",
        _CHANNELS,
        indexable=True,
    ),
    FieldSpec("message.message_id", Kind.STR, lambda f: f.msg.message_id, "channel-native id"),
    FieldSpec("message.thread_ref", Kind.STR, lambda f: f.msg.thread_ref, "thread reference"),
    FieldSpec("message.subject", Kind.TEXT, lambda f: f.msg.subject, "subject line"),
    FieldSpec("message.body", Kind.TEXT, lambda f: f.msg.body, "message body"),
    FieldSpec("message.text", Kind.TEXT, lambda f: f.text(), "subject and body together"),
    FieldSpec("message.order_id", Kind.STR, lambda f: f.msg.order_id, "order id"),
    FieldSpec(
        "message.vendor_id",
        Kind.STR,
        lambda f: f.msg.vendor_id,
        "vendor named by the message",
        indexable=True,
    ),
    FieldSpec(
        "message.language",
        Kind.STR,
        lambda f: _lower(f.msg.language),
        "BCP 47 tag, lower-cased (de-at)",
        indexable=True,
        lower=True,
    ),
    FieldSpec(
        "message.language_base",
        Kind.STR,
        _lang_base,
        "primary language subtag (de)",
        indexable=True,
        lower=True,
    ),
    FieldSpec("message.sent_at", Kind.TIME, _sent_at, "when the sender sent it"),
    FieldSpec(
        "message.attachment_count",
        Kind.NUM,
        lambda f: len(f.msg.attachments),
        "number of attachments",
    ),
    FieldSpec(
        "message.has_attachments", Kind.BOOL, lambda f: bool(f.msg.attachments), "any attachment"
    ),
    FieldSpec("message.body_length", Kind.NUM, lambda f: len(f.msg.body), "body characters"),
    FieldSpec(
        "message.intent",
        Kind.SET,
        lambda f: f.intents(),
        "intents detected by the ruleset's keyword table",
        indexable=True,
    ),
    # sender
    FieldSpec("sender.id", Kind.STR, lambda f: f.msg.sender.id, "sender id"),
    FieldSpec(
        "sender.role",
        Kind.STR,
        lambda f: f.msg.sender.role,
        "buyer|seller|guest",
        _enum(SenderRole),
        indexable=True,
    ),
    FieldSpec("sender.name", Kind.TEXT, lambda f: f.msg.sender.name, "display name"),
    FieldSpec(
        "sender.address",
        Kind.STR,
        lambda f: _lower(f.msg.sender.address),
        "address, lower-cased",
        lower=True,
    ),
    FieldSpec("sender.domain", Kind.STR, _domain, "e-mail domain, lower-cased", lower=True),
    # ticket (before this message is added; message_count includes it)
    FieldSpec("ticket.id", Kind.STR, lambda f: f.ticket.ticket_id, "ticket id"),
    FieldSpec("ticket.is_new", Kind.BOOL, lambda f: f.ticket.is_new, "first message"),
    FieldSpec(
        "ticket.message_count",
        Kind.NUM,
        lambda f: f.ticket.message_count,
        "messages in the ticket, this one included",
    ),
    FieldSpec(
        "ticket.channels",
        Kind.SET,
        lambda f: f.ticket.channels,
        "channels the ticket has used",
        _CHANNELS,
    ),
    FieldSpec(
        "ticket.channel_count",
        Kind.NUM,
        lambda f: len(f.ticket.channels),
        "number of distinct channels",
    ),
    FieldSpec("ticket.opened_at", Kind.TIME, lambda f: aware(f.ticket.opened_at), "opened at"),
    FieldSpec("ticket.age_seconds", Kind.NUM, lambda f: f.ticket.age_seconds, "age in seconds"),
    FieldSpec(
        "ticket.age_hours", Kind.NUM, lambda f: f.ticket.age_seconds / 3600.0, "age in hours"
    ),
    FieldSpec("ticket.queue", Kind.STR, lambda f: f.ticket.queue, "current queue"),
    FieldSpec(
        "ticket.priority",
        Kind.STR,
        lambda f: f.ticket.priority,
        "current priority",
        _enum(Priority),
    ),
    FieldSpec(
        "ticket.tags", Kind.SET, lambda f: frozenset(f.ticket.tags), "current tags", indexable=True
    ),
    # vendor profile (directory.vendors)
    FieldSpec("vendor.known", Kind.BOOL, lambda f: f.vendor is not None, "a profile exists"),
    FieldSpec("vendor.id", Kind.STR, _vendor_attr("vendor_id"), "vendor id (profile)"),
    FieldSpec(
        "vendor.status",
        Kind.STR,
        _vendor_attr("status"),
        "active|suspended|offboarded",
        _enum(VendorStatus),
        indexable=True,
    ),
    FieldSpec(
        "vendor.tier",
        Kind.STR,
        _vendor_attr("tier"),
        "standard|silver|gold|platinum",
        _enum(VendorTier),
        indexable=True,
    ),
    FieldSpec("vendor.timezone", Kind.STR, _vendor_attr("timezone"), "IANA time zone"),
    FieldSpec("vendor.calendar", Kind.STR, _vendor_attr("calendar"), "SLA calendar name"),
    FieldSpec(
        "vendor.response_hours",
        Kind.NUM,
        _vendor_attr("response_hours"),
        "contracted response time",
    ),
    # seller responsiveness (vendors.scores, router.scores)
    FieldSpec("vendor.scored", Kind.BOOL, lambda f: f.standing is not None, "a score exists"),
    FieldSpec("vendor.score", Kind.NUM, _standing_attr("score"), "responsiveness score 0-100"),
    FieldSpec(
        "vendor.score_tier",
        Kind.STR,
        _standing_attr("tier"),
        "top|standard|at_risk",
        _enum(ScoreTier),
        indexable=True,
    ),
    # buyer history (engine tables)
    FieldSpec("buyer.known", Kind.BOOL, lambda f: f.buyer is not None, "history exists"),
    FieldSpec("buyer.open_tickets", Kind.NUM, _buyer_attr("open_tickets"), "open tickets"),
    FieldSpec(
        "buyer.recent_tickets",
        Kind.NUM,
        _buyer_attr("recent_tickets"),
        "tickets opened in the last 30 days",
    ),
    FieldSpec("buyer.lifetime_orders", Kind.NUM, _buyer_attr("lifetime_orders"), "orders ever"),
    FieldSpec("buyer.vip", Kind.BOOL, _buyer_attr("vip"), "VIP flag"),
    # clock
    FieldSpec("now", Kind.TIME, lambda f: f.now, "the decision clock"),
)

STATIC_FIELDS: dict[str, FieldSpec] = {s.path: s for s in _STATIC}

_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DYNAMIC_PREFIXES = ("order.", "message.attributes.")


def _order_attr(key: str) -> Getter:
    def get(f: Facts) -> Any:
        return f.order.get(key)

    return get


def _msg_attr(key: str) -> Getter:
    def get(f: Facts) -> Any:
        return f.msg.attributes.get(key)

    return get


@lru_cache(maxsize=4096)
def resolve(path: str) -> FieldSpec | None:
    """The spec of a field path, or None when the path names no field."""
    spec = STATIC_FIELDS.get(path)
    if spec is not None:
        return spec
    for prefix, make in (("order.", _order_attr), ("message.attributes.", _msg_attr)):
        if path.startswith(prefix):
            key = path[len(prefix) :]
            if _KEY.match(key):
                return FieldSpec(path, Kind.ANY, make(key), f"{prefix}<key> attribute")
    return None


def unknown_field_message(path: str) -> str:
    near = difflib.get_close_matches(path, STATIC_FIELDS, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    return (
        f"unknown field path '{path}'{hint} (fields: message.*, sender.*, ticket.*, vendor.*, "
        f"buyer.*, now, and open attributes order.<key>, message.attributes.<key>)"
    )
