"""Building `RuleInput`s for tools: golden cases, `explain` and backtests.

A case (or `explain` input) is a mapping: `message` (the inbound `data`; message_id,
thread_ref, channel and sender get defaults), and optionally `ticket`, `vendor` (a vendor
profile), `standing` (the vendor's score and tier), `buyer` (history), `order` (attributes)
and `now`. A bare inbound CloudEvent or
bare message `data` is accepted too. A context file gives backtests the engine's tables:

    vendors: [{vendor_id: acme, status: active, tier: gold, timezone: Europe/Berlin}]
    buyers:  {buyer-17: {vip: true, lifetime_orders: 40, open_tickets: 1}}
    orders:  {o-1001: {status: shipped, total: 129.0}}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rules.facts import BuyerInfo, RuleInput, TicketInfo
from schemas.message import Channel, InboundMessage
from schemas.scores import ScoreTier
from schemas.ticket import Priority
from schemas.vendor import VendorProfile

DEFAULT_NOW = datetime(2024, 6, 4, 10, 0, tzinfo=UTC)  # a Tuesday, 10:00 UTC


class TicketDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = None
    message_count: int = 1
    channels: list[Channel] | None = None
    age_hours: float = 0.0
    queue: str | None = None
    priority: Priority | None = None
    tags: list[str] = []


class BuyerDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    open_tickets: int = 0
    recent_tickets: int = 0
    lifetime_orders: int = 0
    vip: bool = False

    def info(self) -> BuyerInfo:
        return BuyerInfo(self.open_tickets, self.recent_tickets, self.lifetime_orders, self.vip)


class StandingDoc(BaseModel):
    """A vendor's responsiveness as `vendors.scores` gives it (`vendor.score*` facts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    score: Annotated[float, Field(ge=0, le=100)] | None = None
    tier: ScoreTier = ScoreTier.STANDARD


class InputDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message: dict[str, Any]
    ticket: TicketDoc | None = None
    vendor: VendorProfile | None = None
    standing: StandingDoc | None = None
    buyer: BuyerDoc | None = None
    order: dict[str, Any] = {}
    now: datetime | None = None


def _message(raw: Mapping[str, Any], name: str) -> InboundMessage:
    data = dict(raw)
    data.setdefault("message_id", f"{name}-msg")
    data.setdefault("thread_ref", f"{name}-thread")
    data.setdefault("channel", "email")
    data.setdefault("sender", {"id": "buyer-1", "role": "buyer"})
    data.setdefault("body", "")
    return InboundMessage.model_validate(data)


def vouched_buyer(msg: InboundMessage) -> BuyerInfo | None:
    """Buyer facts a connector vouches for in the message: a buyer's `attributes.vip`
    (boolean) and `attributes.lifetime_orders` (non-negative integer). The worker reads them
    through this function too (`router.tickets.buyer_from_attributes`)."""
    if msg.sender.role.value != "buyer":
        return None
    vip = msg.attributes.get("vip")
    orders = msg.attributes.get("lifetime_orders")
    flag = vip if isinstance(vip, bool) else None
    count = orders if isinstance(orders, int) and not isinstance(orders, bool) else None
    if count is not None and count < 0:
        count = None
    if flag is None and count is None:
        return None
    return BuyerInfo(vip=bool(flag), lifetime_orders=count or 0)


def _with_vouched(known: BuyerInfo | None, msg: InboundMessage) -> BuyerInfo | None:
    """A table snapshot's counts, with what the message vouches for on top (as the engine)."""
    vouched = vouched_buyer(msg)
    if known is None or vouched is None:
        return known or vouched
    return BuyerInfo(known.open_tickets, known.recent_tickets, vouched.lifetime_orders,
                     vouched.vip)  # fmt: skip


def message_order(msg: InboundMessage) -> dict[str, Any]:
    """`order.*` facts as the engine gives them: the message's attributes and its order id."""
    order: dict[str, Any] = dict(msg.attributes)
    if msg.order_id is not None:
        order["order_id"] = msg.order_id
    return order


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def input_from_doc(doc: InputDoc, name: str = "case", now: datetime | None = None) -> RuleInput:
    msg = _message(doc.message, name)
    clock = _aware(doc.now or now or msg.sent_at or DEFAULT_NOW)
    ticket = None
    if doc.ticket is not None:
        t = doc.ticket
        channels = frozenset(c.value for c in t.channels) if t.channels else None
        ticket = TicketInfo(
            ticket_id=t.id or msg.thread_ref,
            is_new=t.message_count <= 1,
            message_count=t.message_count,
            channels=channels or frozenset((msg.channel.value,)),
            opened_at=clock - timedelta(hours=t.age_hours),
            age_seconds=t.age_hours * 3600.0,
            queue=t.queue,
            priority=t.priority,
            tags=tuple(t.tags),
        )
    return RuleInput(
        message=msg,
        now=clock,
        ticket=ticket,
        vendor=doc.vendor,
        standing=doc.standing,
        # as the engine: without explicit facts, the message's own attributes count
        buyer=doc.buyer.info() if doc.buyer is not None else vouched_buyer(msg),
        order=doc.order or message_order(msg),
    )


def input_from_mapping(
    raw: Any, name: str = "input", now: datetime | None = None, context: Context | None = None
) -> RuleInput:
    """A case-style mapping, an inbound CloudEvent, or bare message data -> RuleInput.

    Raises ValueError with a readable message when the input does not fit."""
    if not isinstance(raw, Mapping):
        raise ValueError("expected a mapping (a case, an inbound CloudEvent or message data)")
    try:
        if "specversion" in raw and isinstance(raw.get("data"), Mapping):
            when = raw.get("time")
            msg = _message(raw["data"], name)
            clock = datetime.fromisoformat(when) if isinstance(when, str) else None
            return (context or Context()).input_for(msg, now or clock or msg.sent_at)
        if "message" in raw:
            return input_from_doc(InputDoc.model_validate(raw), name, now)
        msg = _message(raw, name)
        return (context or Context()).input_for(msg, now or msg.sent_at)
    except ValidationError as exc:
        raise ValueError(_errors(exc)) from None


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
    return "; ".join(parts)


@dataclass
class Context:
    """Snapshots of the engine's tables for offline runs."""

    vendors: dict[str, VendorProfile] = field(default_factory=dict)
    buyers: dict[str, BuyerInfo] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)

    def input_for(
        self, msg: InboundMessage, now: datetime | None, ticket: TicketInfo | None = None
    ) -> RuleInput:
        clock = _aware(now or DEFAULT_NOW)
        return RuleInput(
            message=msg,
            now=clock,
            ticket=ticket,
            vendor=self.vendors.get(msg.vendor_id) if msg.vendor_id else None,
            buyer=_with_vouched(self.buyers.get(msg.sender.id), msg),
            order=(self.orders.get(msg.order_id) if msg.order_id else None)
            or message_order(msg),
        )


class _ContextDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vendors: list[VendorProfile] = []
    buyers: dict[str, BuyerDoc] = {}
    orders: dict[str, dict[str, Any]] = {}


def context_from_data(raw: Any) -> Context:
    """Raises ValueError with a readable message when the document does not fit."""
    try:
        doc = _ContextDoc.model_validate(raw or {})
    except ValidationError as exc:
        raise ValueError(_errors(exc)) from None
    return Context(
        vendors={v.vendor_id: v for v in doc.vendors},
        buyers={k: b.info() for k, b in doc.buyers.items()},
        orders=dict(doc.orders),
    )
