"""Pydantic v2 models of every record on every topic, and their JSON Schema export."""

from schemas.dead_letter import DeadLetter, FieldError, OriginalRecord, RejectReason, SourcePosition
from schemas.envelope import SCHEMA_VERSION, CloudEvent, envelope
from schemas.message import (
    Attachment,
    Channel,
    InboundEvent,
    InboundMessage,
    Sender,
    SenderRole,
)
from schemas.ticket import (
    Priority,
    RoutedTicket,
    RoutingDecision,
    RuleTrace,
    SlaTerms,
    TicketEvent,
    TicketEventKind,
    TicketMessage,
)

__all__ = [
    "SCHEMA_VERSION",
    "Attachment",
    "Channel",
    "CloudEvent",
    "DeadLetter",
    "FieldError",
    "InboundEvent",
    "InboundMessage",
    "OriginalRecord",
    "Priority",
    "RejectReason",
    "RoutedTicket",
    "RoutingDecision",
    "RuleTrace",
    "Sender",
    "SenderRole",
    "SlaTerms",
    "SourcePosition",
    "TicketEvent",
    "TicketEventKind",
    "TicketMessage",
    "envelope",
]
