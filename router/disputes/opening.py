"""A routing rule's `open_dispute`: the claim read from a new ticket's first message, and the
`open_dispute` command the routing stage writes for it.

The rule acts as the system (actor `rule:<rule id>`, role `system`) for the message's sender,
who must be a buyer. The order and the selling vendor are the ones the connector put on the
message (`order_id`, `vendor_id`): the trust a `vendor:{message.vendor_id}` route already
places in them. The command goes on `tickets.actions` keyed by order id, like a buyer's, and
the disputes stage judges it like any other. Its id derives from the ticket and inbound ids,
so a replay writes the same command and the dispute opens once.

A claim the message cannot back (no order, a sender who is not a buyer, an amount that is
missing or not a valid amount) writes no command: the ticket is still routed, and the routing
decision says why no dispute was opened (`dispute.problem`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from router.ids import derive_id
from rules.result import DisputeRequest
from schemas.action import Actor, ActorRole
from schemas.dispute import MAX_DISPUTE_TEXT_CHARS, MAX_EVIDENCE_ITEMS, Evidence, OpenDispute
from schemas.message import InboundMessage, SenderRole
from schemas.ticket import RuleDispute, TicketMessage

RULE_ACTOR_PREFIX = "rule:"


def rule_dispute(
    request: DisputeRequest, msg: InboundMessage, first: TicketMessage, ticket_id: str,
    inbound_id: str,
) -> RuleDispute:  # fmt: skip
    """The claim of the rule that matched, checked as the command it becomes."""
    asked = {"rule_id": request.rule_id, "reason_code": request.reason}
    problem = None
    if msg.sender.role is not SenderRole.BUYER:
        problem = f"the sender is a {msg.sender.role.value}, not a buyer"
    elif msg.order_id is None:
        problem = "the message names no order (order_id)"
    elif msg.vendor_id is None:
        problem = "the message names no selling vendor (vendor_id)"
    else:
        try:
            command = open_dispute_command(
                {**asked, "amount": request.amount, "currency": request.currency,
                 "category": request.category},
                order_id=msg.order_id, buyer_id=msg.sender.id, vendor_id=msg.vendor_id,
                first=first, ticket_id=ticket_id,
            )  # fmt: skip
        except ValidationError as exc:
            problem = "; ".join(_describe(err) for err in exc.errors())
    if problem is not None:
        return RuleDispute(**asked, problem=problem)
    return RuleDispute(
        **asked, amount=command.amount, currency=command.currency, category=command.category,
        command_id=derive_id(ticket_id, inbound_id, "open_dispute"),
    )  # fmt: skip


def open_dispute_command(
    claim: dict[str, Any], *, order_id: str, buyer_id: str, vendor_id: str,
    first: TicketMessage, ticket_id: str,
) -> OpenDispute:  # fmt: skip
    """The system's `open_dispute` for a claim (`rule_id`, `reason_code`, `amount`,
    `currency`, `category`); raises `ValidationError` where the claim is not a valid one."""
    summary = first.subject or first.body
    return OpenDispute.model_validate({
        "order_id": order_id,
        "actor": Actor(id=RULE_ACTOR_PREFIX + claim["rule_id"], role=ActorRole.SYSTEM),
        "at": first.received_at,
        "buyer_id": buyer_id,
        "vendor_id": vendor_id,
        "reason_code": claim["reason_code"],
        "amount": claim["amount"],
        "currency": claim["currency"],
        "category": claim["category"],
        "evidence": [
            Evidence(name=a.name, content_type=a.content_type)
            for a in first.attachments[:MAX_EVIDENCE_ITEMS]
        ],
        "description": f"ticket {ticket_id}: {summary}"[:MAX_DISPUTE_TEXT_CHARS],
    })  # fmt: skip


def _describe(err: Any) -> str:
    field = ".".join(str(p) for p in err["loc"]) or "claim"
    if err.get("input", "") is None:
        return f"{field}: the message does not carry it"
    return f"{field}: {err['msg']}"
