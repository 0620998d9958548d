"""Ticket state per thread and the pure threading step: inbound message -> ticket + records.

State lives in a changelog-backed table keyed by thread (see streams/). Each inbound `id` is
remembered with the exact source position it was first read from, which separates two cases
the table alone cannot: a *replay* of the same record after a crash (same position: re-emit
the same outputs with the same ids, since the first attempt may not have been delivered) and
a *duplicate* sent twice by a connector (new position: add nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from router.buyers import merge_history
from router.disputes.opening import rule_dispute
from router.ids import ticket_id_for
from router.routing import (
    BuyerHistory,
    Decision,
    RoutingContext,
    RoutingPolicy,
    TicketFacts,
    VendorStanding,
)
from rules.inputs import message_order, vouched_buyer
from schemas.dead_letter import SourcePosition
from schemas.message import Channel, InboundEvent, InboundMessage, SenderRole
from schemas.ticket import Priority, RuleDispute, TicketMessage
from schemas.vendor import VendorProfile

# Bounded state: the routed ticket carries the most recent messages, the dedup window the most
# recent inbound ids. Both caps are far above a normal support thread.
MAX_MESSAGES_KEPT = 20
MAX_SEEN_IDS = 500
# Keeps a table value and a routed record well under Kafka's 1 MB default message size.
MAX_KEPT_BODY_CHARS = 100_000


class SeenInbound(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    topic: str
    partition: int
    offset: int


class TicketState(BaseModel):
    """Everything the routing stage remembers about one ticket."""

    model_config = ConfigDict(frozen=True)

    ticket_id: str
    channel: Channel
    thread_ref: str
    opened_at: datetime
    subject: str | None = None
    order_id: str | None = None
    vendor_id: str | None = None
    buyer_id: str | None = None
    queue: str
    priority: Priority
    tags: tuple[str, ...] = ()
    sla_policy: str
    rule_id: str
    ruleset: str
    ruleset_version: str
    message_count: int
    messages: Annotated[list[TicketMessage], Field(max_length=MAX_MESSAGES_KEPT)]
    seen: dict[str, SeenInbound]
    dispute: RuleDispute | None = None  # a routing rule's `open_dispute` when it opened

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> TicketState:
        return cls.model_validate_json(raw)


def state_key(channel: Channel, thread_ref: str) -> bytes:
    """Table key. Kept on the partition of the thread's records, so co-partitioned by design."""
    return f"{channel.value}\x1f{thread_ref}".encode()


@dataclass(frozen=True, slots=True)
class Threaded:
    """The message joined (or opened) a ticket; `decision` is set when routing was decided."""

    state: TicketState
    message: TicketMessage
    decision: Decision | None
    is_new: bool
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The same inbound id was already added to this ticket from another record: add nothing."""

    ticket_id: str
    inbound_id: str
    first_seen: SeenInbound


@dataclass(frozen=True, slots=True)
class Rekey:
    """The record's Kafka key is not its thread key: republish it keyed correctly."""

    key: bytes


VendorLookup = Callable[[str], VendorProfile | None]
BuyerLookup = Callable[[str, datetime], BuyerHistory | None]  # buyer id, now -> kept history
StandingLookup = Callable[[str], VendorStanding | None]  # vendor id -> score and tier


def thread_message(
    event: InboundEvent,
    record_key: bytes | None,
    source: SourcePosition,
    state: TicketState | None,
    policy: RoutingPolicy,
    now: datetime,
    vendor_lookup: VendorLookup | None = None,
    buyer_lookup: BuyerLookup | None = None,
    standing_lookup: StandingLookup | None = None,
) -> Threaded | Duplicate | Rekey:
    """Join the message to its ticket. Routing is decided once, when the ticket opens."""
    msg = event.data
    thread_key = msg.thread_ref.encode()
    if record_key != thread_key:
        return Rekey(key=thread_key)
    if state is not None:
        seen = state.seen.get(event.id)
        if seen is not None:
            if (seen.topic, seen.partition, seen.offset) == (
                source.topic,
                source.partition,
                source.offset,
            ):
                return _replayed(state, seen, event, now)
            return Duplicate(state.ticket_id, event.id, seen)

    seq = 1 if state is None else state.message_count + 1
    ticket_message = _ticket_message(event, seq, now)
    seen_entry = SeenInbound(
        seq=seq, topic=source.topic, partition=source.partition, offset=source.offset
    )
    if state is None:
        ticket_id = ticket_id_for(msg.channel.value, msg.thread_ref)
        vendor = vendor_lookup(msg.vendor_id) if vendor_lookup and msg.vendor_id else None
        facts = TicketFacts(
            ticket_id=ticket_id,
            is_new=True,
            message_count=1,
            channels=frozenset({msg.channel.value}),
            opened_at=now,
            age_seconds=0.0,
        )
        decision = policy.decide(
            RoutingContext(
                message=msg,
                ticket=facts,
                now=now,
                vendor=vendor,
                buyer=_buyer(msg, now, buyer_lookup),
                order=_order(msg),
                standing=(
                    standing_lookup(msg.vendor_id) if standing_lookup and msg.vendor_id else None
                ),
            )
        )
        new_state = _open(ticket_id, msg, now, decision, ticket_message, event.id, seen_entry)
        return Threaded(new_state, ticket_message, decision, is_new=True)

    window = dict(state.seen)
    window[event.id] = seen_entry
    if len(window) > MAX_SEEN_IDS:
        for old in sorted(window, key=lambda k: window[k].seq)[: len(window) - MAX_SEEN_IDS]:
            del window[old]
    new_state = state.model_copy(
        update={
            "message_count": seq,
            "messages": _kept([*state.messages, ticket_message]),
            "seen": window,
            "order_id": state.order_id or msg.order_id,
        }
    )
    return Threaded(new_state, ticket_message, None, is_new=False)


def _kept(messages: list[TicketMessage]) -> list[TicketMessage]:
    """The newest messages within both caps; the newest one is always kept."""
    kept = messages[-MAX_MESSAGES_KEPT:]
    total = sum(len(m.body) for m in kept)
    while len(kept) > 1 and total > MAX_KEPT_BODY_CHARS:
        total -= len(kept[0].body)
        kept = kept[1:]
    return kept


def buyer_from_attributes(msg: InboundMessage) -> BuyerHistory | None:
    """Buyer facts the connector vouches for (the platform's order system knows them).

    A buyer's message whose `attributes` carry `vip` (a boolean) and/or `lifetime_orders`
    (a non-negative integer) gives the rules `buyer.known = true`, `buyer.vip` and
    `buyer.lifetime_orders` (an absent one counts as false / 0). Values of another type are
    ignored, never coerced. Open and recent ticket counts come from the engine's own buyer
    table (`router.buyers`), merged in by `thread_message`. One reading of the attributes
    serves the worker and the tools (`rules.inputs.vouched_buyer`).
    """
    vouched = vouched_buyer(msg)
    if vouched is None:
        return None
    return BuyerHistory(vip=vouched.vip, lifetime_orders=vouched.lifetime_orders)


def _buyer(msg: InboundMessage, now: datetime, lookup: BuyerLookup | None) -> BuyerHistory | None:
    """What the connector vouches for, with the ticket counts the engine keeps (buyers only)."""
    vouched = buyer_from_attributes(msg)
    if lookup is None or msg.sender.role is not SenderRole.BUYER:
        return vouched
    return merge_history(vouched, lookup(msg.sender.id, now))


def _order(msg: InboundMessage) -> dict[str, object]:
    return message_order(msg)  # `order.*` facts: the same for the worker and the tools


def _open(
    ticket_id: str,
    msg: InboundMessage,
    now: datetime,
    decision: Decision,
    first: TicketMessage,
    inbound_id: str,
    seen_entry: SeenInbound,
) -> TicketState:
    return TicketState(
        ticket_id=ticket_id,
        channel=msg.channel,
        thread_ref=msg.thread_ref,
        opened_at=now,
        subject=msg.subject,
        order_id=msg.order_id,
        vendor_id=msg.vendor_id,
        buyer_id=msg.sender.id if msg.sender.role == "buyer" else None,
        queue=decision.queue,
        priority=decision.priority,
        tags=decision.tags,
        sla_policy=decision.sla_policy,
        rule_id=decision.rule_id,
        ruleset=decision.ruleset,
        ruleset_version=decision.ruleset_version,
        message_count=1,
        messages=[first],
        seen={inbound_id: seen_entry},
        dispute=(
            rule_dispute(decision.dispute, msg, first, ticket_id, inbound_id)
            if decision.dispute is not None
            else None
        ),
    )


def _ticket_message(event: InboundEvent, seq: int, received_at: datetime) -> TicketMessage:
    msg = event.data
    return TicketMessage(
        seq=seq,
        inbound_id=event.id,
        message_id=msg.message_id,
        channel=msg.channel,
        sender=msg.sender,
        body=msg.body,
        subject=msg.subject,
        sent_at=msg.sent_at,
        received_at=received_at,
        attachments=msg.attachments,
    )


def _replayed(
    state: TicketState, seen: SeenInbound, event: InboundEvent, now: datetime
) -> Threaded:
    """Rebuild what this record produced the first time, so a crash cannot lose it.

    A message still in the kept window is re-sent as it was. One trimmed out of it since (more
    than the kept count joined its ticket after it) is rebuilt from the record being replayed:
    the same message under the same ids, received `now`, without the history before it."""
    kept = [m for m in state.messages if m.seq <= seen.seq]
    if not kept or kept[-1].seq != seen.seq:  # the window keeps the newest: all before it went too
        kept = [_ticket_message(event, seen.seq, now)]
    message = kept[-1]
    as_of = state.model_copy(update={"message_count": seen.seq, "messages": kept})
    decision = None
    if seen.seq == 1:
        decision = Decision(
            queue=state.queue,
            priority=state.priority,
            sla_policy=state.sla_policy,
            rule_id=state.rule_id,
            ruleset=state.ruleset,
            ruleset_version=state.ruleset_version,
            tags=state.tags,
            explanation="re-emitted after restart",
        )
    return Threaded(as_of, message, decision, is_new=seen.seq == 1, replayed=True)
