"""Builders for dispute tests: the example policy, actions by each party, disputes in a state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from router.disputes.machine import (
    BUYER_RESPONSE,
    SELLER_RESPONSE,
    Act,
    Decision,
    Dispute,
    apply,
)
from router.disputes.policy import DisputePolicy, parse_dispute_policy
from router.sla.policy import load_sla_config
from schemas.action import ActorRole
from schemas.dispute import DISPUTE_ACTION_ADAPTER, DisputeAction, DisputeState, Offer
from schemas.vendor import VendorProfile, VendorTier

EXAMPLE_POLICY = Path(__file__).parents[3] / "rules" / "examples" / "disputes" / "policy.yaml"
# Monday 5 January 2026, 09:00 UTC (10:00 in Berlin)
MONDAY = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ORDER, BUYER, VENDOR = "o-1001", "buyer-7", "acme"
EXTERNAL_ACTS = (Act.OPEN, Act.RESPOND, Act.ACCEPT, Act.REJECT, Act.DECIDE, Act.WITHDRAW,
                 Act.NOTE, Act.CHARGEBACK)  # fmt: skip
ROLE_IDS = {
    ActorRole.BUYER: BUYER,
    ActorRole.VENDOR: VENDOR,
    ActorRole.AGENT: "agent-3",
    ActorRole.SYSTEM: "payments",
}
VENDORS = {
    VENDOR: VendorProfile(vendor_id=VENDOR, tier=VendorTier.STANDARD),
    "gold-us": VendorProfile(vendor_id="gold-us", tier=VendorTier.GOLD, calendar="platform_us"),
}


@cache
def calendars() -> Any:
    return load_sla_config().calendars


def policy(text: str | None = None, **replace: str) -> DisputePolicy:
    """The example policy, or `text`; `replace` swaps `key: value` lines of the example."""
    source = text if text is not None else EXAMPLE_POLICY.read_text()
    for key, value in replace.items():
        lines = [f"{key}: {value}" if line.startswith(f"{key}:") else line
                 for line in source.splitlines()]  # fmt: skip
        source = "\n".join(lines)
    return parse_dispute_policy(source, calendars(), "disputes.yaml")


def action(
    act: Act,
    role: ActorRole = ActorRole.BUYER,
    *,
    at: datetime = MONDAY,
    actor: str | None = None,
    order: str = ORDER,
    **fields: Any,
) -> DisputeAction:
    """A valid-looking action of `act` by an actor of `role` (fields override the defaults)."""
    data: dict[str, Any] = {
        "action": act.value, "order_id": order, "at": at,
        "actor": {"id": actor or ROLE_IDS[role], "role": role.value},
    }  # fmt: skip
    if act in (Act.OPEN, Act.CHARGEBACK):
        data |= {"buyer_id": BUYER, "vendor_id": VENDOR, "reason_code": "item_not_received",
                 "amount": "80.00", "currency": "EUR"}  # fmt: skip
    if act is Act.CHARGEBACK:
        data["chargeback_id"] = "cb-1"
    elif act is Act.RESPOND:
        data["offer"] = {"kind": "full_refund"}
    elif act is Act.DECIDE:
        data |= {"verdict": "deny", "reason": "tracking shows delivery"}
    elif act is Act.NOTE:
        data["body"] = "called the carrier"
    data |= fields
    return DISPUTE_ACTION_ADAPTER.validate_python(data)


class Run:
    """Applies actions in order with fresh ids, keeping the last decision."""

    def __init__(self, pol: DisputePolicy | None = None, now: datetime = MONDAY) -> None:
        self.policy = pol or policy()
        self.now = now
        self.dispute: Dispute | None = None
        self.decisions: list[Decision] = []

    def do(self, act: Act, role: ActorRole = ActorRole.BUYER, **fields: Any) -> Decision:
        n = len(self.decisions)
        decision = apply(self.dispute, action(act, role, at=self.now, **fields), self.now,
                         self.policy, action_id=f"act-{n}", vendors=VENDORS)  # fmt: skip
        return self._keep(decision)

    def _keep(self, decision: Decision) -> Decision:
        self.decisions.append(decision)
        self.dispute = decision.dispute
        return decision

    def at(self, when: datetime) -> Run:
        self.now = when
        return self

    @property
    def state(self) -> DisputeState | None:
        return self.dispute.state if self.dispute is not None else None


def in_state(state: DisputeState | None, pol: DisputePolicy | None = None) -> Dispute | None:
    """A dispute resting in `state` (transient states forced), with an offer and both deadlines
    set and already due at MONDAY, so that any action or timeout can be tried on it."""
    if state is None:
        return None
    run = Run(pol)
    run.do(Act.OPEN)
    assert run.dispute is not None
    due = MONDAY - timedelta(hours=1)
    return run.dispute.model_copy(update={
        "state": state, "offer": Offer(kind="partial_refund", amount=Decimal("20.00")),
        "deadlines": {SELLER_RESPONSE: due, BUYER_RESPONSE: due},
    })  # fmt: skip
