"""JSON Schema export of every record on every topic (for connectors in any language)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.dead_letter import DeadLetter
from schemas.dispute import DisputeActionEvent, DisputeEventData
from schemas.envelope import CloudEvent
from schemas.message import InboundEvent
from schemas.outbound import (
    DeliveryOutcome,
    DeliveryReceiptEvent,
    MessageStatus,
    OutboundReplyEvent,
    UndeliveredReply,
)
from schemas.payment import ChargebackEvent
from schemas.scores import SupportDay, TierChanged, VendorScores
from schemas.ticket import RoutedTicket, RoutingDecision, TicketEvent
from schemas.vendor import VendorProfile


def exported_models() -> dict[str, type[BaseModel]]:
    """File stem -> model. Optional schemas join when their modules exist."""
    models: dict[str, type[BaseModel]] = {
        "inbound-message": InboundEvent,
        "routed-ticket": CloudEvent[RoutedTicket],
        "routing-decision": CloudEvent[RoutingDecision],
        "ticket-event": CloudEvent[TicketEvent],
        "dead-letter": CloudEvent[DeadLetter],
        "vendor-profile": CloudEvent[VendorProfile],
        "outbound-reply": OutboundReplyEvent,
        "delivery-outcome": CloudEvent[DeliveryOutcome],
        "reply-undeliverable": CloudEvent[UndeliveredReply],
        "delivery-receipt": DeliveryReceiptEvent,
        "message-status": CloudEvent[MessageStatus],
        "dispute-action": DisputeActionEvent,
        "dispute-event": CloudEvent[DisputeEventData],
        "payment-chargeback": ChargebackEvent,
    }
    try:
        from schemas.sla import SlaEvent

        models["sla-event"] = CloudEvent[SlaEvent]
    except ImportError:  # pragma: no cover - before the SLA schemas land
        pass
    from schemas.rules_event import RulesetRefused

    models["ruleset-refused"] = CloudEvent[RulesetRefused]
    try:
        from schemas.action import TicketActionEvent

        models["ticket-action"] = TicketActionEvent
    except ImportError:  # pragma: no cover
        pass
    models["vendor-scores"] = CloudEvent[VendorScores]
    models["vendor-tier-changed"] = CloudEvent[TierChanged]
    models["support-day"] = CloudEvent[SupportDay]
    return models


def export_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, model in exported_models().items():
        path = directory / f"{stem}.schema.json"
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema.setdefault("title", stem)
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
