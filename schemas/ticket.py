"""Records the engine writes about tickets: lifecycle events, routed tickets, decisions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.claim import Amount, Category, Currency, ReasonCode
from schemas.message import Attachment, Channel, Sender

TICKET_ROUTED = "support.ticket.routed"
ROUTING_DECIDED = "support.routing.decided"

QUEUE_PATTERN = r"^(dept:[a-z0-9][a-z0-9_-]{0,63}|vendor:[a-z0-9][a-z0-9_-]{0,63})$"
Queue = Annotated[str, Field(pattern=QUEUE_PATTERN)]


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}


class TicketEventKind(StrEnum):
    OPENED = "opened"
    MESSAGE_ADDED = "message_added"
    ROUTED = "routed"
    REPLIED = "replied"
    RESOLVED = "resolved"
    REOPENED = "reopened"

    @property
    def event_type(self) -> str:
        return f"support.ticket.{self.value}"


class TicketMessage(BaseModel):
    """One message of a ticket as vendors and desks see it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    inbound_id: str
    message_id: str
    channel: Channel
    sender: Sender
    body: str
    subject: str | None = None
    sent_at: datetime | None = None
    received_at: datetime
    attachments: list[Attachment] = []


class SlaTerms(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: str
    deadlines: dict[str, datetime] = {}


class RoutedTicket(BaseModel):
    """`data` of `support.ticket.routed` on `queue.dept.*` / `queue.vendor.*`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ticket_id: str
    queue: Queue
    priority: Priority
    sla: SlaTerms
    rule_id: str
    ruleset_version: str
    tags: list[str] = []
    channel: Channel
    vendor_id: str | None = None
    order_id: str | None = None
    subject: str | None = None
    opened_at: datetime
    message_count: int
    # Older messages beyond the size caps; each was delivered in its own earlier record.
    messages_omitted: int = 0
    messages: list[TicketMessage]


class RuleTrace(BaseModel):
    """One rule tried while deciding: matched or not, and the first failing condition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule_id: str
    matched: bool
    reason: str = ""


class RuleDispute(BaseModel):
    """A routing rule's `open_dispute` for a new ticket's order: the claim it read from the
    message, and the `open_dispute` command written for it (`command_id`) or why none was
    (`problem`). Kept in the ticket's state too, so a replay writes the same command."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule_id: str
    reason_code: ReasonCode
    amount: Amount | None = None
    currency: Currency | None = None
    category: Category | None = None
    command_id: str | None = None
    problem: str | None = None


class RoutingDecision(BaseModel):
    """`data` of `support.routing.decided` on `tickets.decisions` (the audit trail)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ticket_id: str
    inbound_id: str
    queue: Queue
    previous_queue: str | None = None
    priority: Priority
    tags: list[str] = []
    sla_policy: str
    rule_id: str
    ruleset: str
    ruleset_version: str
    explanation: str
    trace: list[RuleTrace] = []
    dispute: RuleDispute | None = None
    decided_at: datetime


class TicketEvent(BaseModel):
    """`data` of `support.ticket.<kind>` on `tickets.events`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ticket_id: str
    kind: TicketEventKind
    at: datetime
    inbound_id: str | None = None
    message_id: str | None = None
    message_seq: int | None = None
    queue: str | None = None
    channel: Channel | None = None
    # On `opened` events: the thread reference the ticket was opened on (its channel key).
    thread_ref: str | None = None
    actor: str | None = None
    sender_role: str | None = None
    priority: Priority | None = None
    sla_policy: str | None = None
    # On `routed` events: the ticket as routed, so downstream stages keyed by ticket id
    # (lifecycle, SLA clocks, escalation re-routes) hold its history without re-reading queues.
    ticket: RoutedTicket | None = None
