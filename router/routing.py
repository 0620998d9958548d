"""The routing interface: what a policy sees (RoutingContext) and what it returns (Decision).

The rule engine in `rules/` implements `RoutingPolicy`; `DefaultPolicy` is the small built-in
policy used when no ruleset is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from rules.result import DisputeRequest
from schemas.message import InboundMessage
from schemas.ticket import Priority, RuleTrace
from schemas.vendor import VendorProfile


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """What is known about the ticket before this message is added to it."""

    ticket_id: str
    is_new: bool
    message_count: int  # including the message being routed
    channels: frozenset[str]
    opened_at: datetime
    age_seconds: float
    queue: str | None = None
    priority: Priority | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BuyerHistory:
    open_tickets: int = 0
    recent_tickets: int = 0  # opened in the last 30 days
    lifetime_orders: int = 0
    vip: bool = False


@dataclass(frozen=True, slots=True)
class VendorStanding:
    """A vendor's latest responsiveness score and tier (`vendors.scores`, router.scores)."""

    score: float | None
    tier: str


@dataclass(frozen=True, slots=True)
class RoutingContext:
    message: InboundMessage
    ticket: TicketFacts
    now: datetime
    vendor: VendorProfile | None = None
    buyer: BuyerHistory | None = None
    order: Mapping[str, Any] = field(default_factory=dict)
    standing: VendorStanding | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    queue: str  # "dept:<name>" or "vendor:<id>"
    priority: Priority
    sla_policy: str
    rule_id: str
    ruleset: str
    ruleset_version: str
    tags: tuple[str, ...] = ()
    explanation: str = ""
    trace: tuple[RuleTrace, ...] = ()
    dispute: DisputeRequest | None = None  # a matching rule's `open_dispute`, as read


@runtime_checkable
class RoutingPolicy(Protocol):
    """Anything that turns a context into a decision. Must be pure and deterministic."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def decide(self, ctx: RoutingContext) -> Decision: ...
