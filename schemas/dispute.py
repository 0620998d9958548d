"""Disputes between a buyer and a seller over an order, judged by the platform.

Commands: CloudEvents of type `support.dispute.action` on `tickets.actions`, keyed by the
order id (the lifecycle stage leaves them to the disputes stage). `data` is one of the objects
below, chosen by its `action` field:

- `open_dispute` (`buyer_id`, `vendor_id`, `reason_code`, `amount`, `currency`, `category`,
  `evidence`, `description`): the order's buyer, a platform agent, or the system (a rule, a
  chargeback);
- `respond` (`offer` {`kind`, `amount`, `evidence`, `message`}): the selling vendor;
- `accept_offer`, `reject_offer` (`reason`), `withdraw` (`reason`): the order's buyer;
- `decide` (`verdict`, `amount`, `reason`, `internal_note`): a platform agent;
- `note` (`body`, platform only: never on a vendor-readable topic): a platform agent;
- `chargeback` (`chargeback_id` and the claim's fields of `open_dispute`): the system, made of
  a `payments.events` chargeback: opens the order's dispute, or escalates the open one.

Common fields: `order_id`, `actor` {`id`, `role`: agent|vendor|buyer|system}, `at`.

Events: every transition is a CloudEvent of type `support.dispute.<state>` on
`disputes.events` (key: order id), with a `DisputeEventData`; the seller's copy (without
platform-only fields) also goes to `queue.vendor.<vendor id>`. `support.dispute.decided` and
`support.dispute.resolved` carry a refund instruction for the payments system: the engine
itself never moves money.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from schemas.action import Actor
from schemas.claim import Amount, Category, Currency, ReasonCode
from schemas.envelope import CloudEvent
from schemas.message import VendorId

DISPUTE_ACTION = "support.dispute.action"
DISPUTE_EVENT_PREFIX = "support.dispute."

MAX_EVIDENCE_ITEMS = 20
MAX_DISPUTE_TEXT_CHARS = 8_192

OrderId = Annotated[str, Field(min_length=1, max_length=128)]
PartyId = Annotated[str, Field(min_length=1, max_length=256)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_DISPUTE_TEXT_CHARS)]
ChargebackId = Annotated[str, Field(min_length=1, max_length=256)]


class DisputeState(StrEnum):
    OPENED = "opened"
    AWAITING_SELLER = "awaiting_seller"
    SELLER_RESPONDED = "seller_responded"
    RESOLVED = "resolved"
    PLATFORM_REVIEW = "platform_review"
    DECIDED = "decided"
    CLOSED = "closed"

    @property
    def event_type(self) -> str:
        return DISPUTE_EVENT_PREFIX + self.value


class OfferKind(StrEnum):
    FULL_REFUND = "full_refund"
    PARTIAL_REFUND = "partial_refund"
    REPLACEMENT = "replacement"
    CONTEST = "contest"


class Verdict(StrEnum):
    REFUND_FULL = "refund_full"
    REFUND_PARTIAL = "refund_partial"
    DENY = "deny"


class Outcome(StrEnum):
    """How a closed dispute ended."""

    ACCEPTED = "accepted"  # the buyer took the seller's offer (or stayed silent, per policy)
    DECIDED = "decided"  # the platform (or buyer protection) ruled
    WITHDRAWN = "withdrawn"  # the buyer gave up (or stayed silent, per policy)


class Evidence(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=255)]
    url: Annotated[str, Field(max_length=2048)] | None = None
    content_type: Annotated[str, Field(max_length=255)] | None = None


EvidenceList = Annotated[list[Evidence], Field(max_length=MAX_EVIDENCE_ITEMS)]


class Offer(BaseModel):
    """The seller's answer. `amount` only for a partial refund; `evidence` needed to contest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: OfferKind
    amount: Amount | None = None
    evidence: EvidenceList = []
    message: Text | None = None


class _DisputeActionBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: OrderId
    actor: Actor
    at: AwareDatetime


class _Claim(_DisputeActionBase):
    """What opens a dispute: the order's parties and what is claimed."""

    buyer_id: PartyId  # the order's buyer
    vendor_id: VendorId  # the selling vendor
    reason_code: ReasonCode
    amount: Amount
    currency: Currency
    category: Category | None = None  # the item's category (buyer-protection scope)


class OpenDispute(_Claim):
    action: Literal["open_dispute"] = "open_dispute"
    evidence: EvidenceList = []
    description: Text | None = None


class ReportChargeback(_Claim):
    """The payments system reports a chargeback on the order (the system's action, made of a
    `payments.events` record): it opens the order's dispute, or escalates the open one."""

    action: Literal["chargeback"] = "chargeback"
    chargeback_id: ChargebackId


class RespondToDispute(_DisputeActionBase):
    action: Literal["respond"] = "respond"
    offer: Offer


class AcceptOffer(_DisputeActionBase):
    action: Literal["accept_offer"] = "accept_offer"


class RejectOffer(_DisputeActionBase):
    action: Literal["reject_offer"] = "reject_offer"
    reason: Text | None = None


class DecideDispute(_DisputeActionBase):
    action: Literal["decide"] = "decide"
    verdict: Verdict
    amount: Amount | None = None  # only for refund_partial
    reason: Text  # shown to both parties
    internal_note: Text | None = None  # platform only


class WithdrawDispute(_DisputeActionBase):
    action: Literal["withdraw"] = "withdraw"
    reason: Text | None = None


class DisputeNote(_DisputeActionBase):
    """A platform agent's note: platform only, never on a vendor-readable topic."""

    action: Literal["note"] = "note"
    body: Text


DisputeAction = Annotated[
    OpenDispute
    | RespondToDispute
    | AcceptOffer
    | RejectOffer
    | DecideDispute
    | WithdrawDispute
    | DisputeNote
    | ReportChargeback,
    Field(discriminator="action"),
]
DISPUTE_ACTION_ADAPTER: TypeAdapter[DisputeAction] = TypeAdapter(DisputeAction)


class DisputeActionEvent(CloudEvent[DisputeAction]):
    """A whole `support.dispute.action` record as it sits on `tickets.actions`."""


class RefundInstruction(BaseModel):
    """What the payments system should do; `instruction_id` is its idempotency key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instruction_id: str
    order_id: OrderId
    buyer_id: PartyId
    vendor_id: VendorId
    amount: Decimal  # zero: nothing to refund (denied, replacement, contest accepted)
    currency: Currency
    replacement: bool = False


class ActedBy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    party: Literal["buyer", "seller", "platform", "system", "timer"]


class DisputeEventData(BaseModel):
    """`data` of every `support.dispute.<state>` event (and `support.dispute.note_added`,
    `support.dispute.chargeback_recorded`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: OrderId
    state: DisputeState
    previous_state: DisputeState | None = None  # none for `opened`
    action: str  # the action or timeout that caused it
    acted_by: ActedBy
    at: datetime
    buyer_id: PartyId
    vendor_id: VendorId
    reason_code: ReasonCode
    amount: Decimal
    currency: Currency
    category: Category | None = None
    offer: Offer | None = None
    verdict: Verdict | None = None
    verdict_reason: str | None = None
    outcome: Outcome | None = None
    refund: RefundInstruction | None = None
    deadlines: dict[str, datetime] = {}
    chargeback_id: str | None = None  # the chargeback that caused it
    # platform only: stripped from the seller's copy
    internal_note: str | None = None
    flag: str | None = None  # why the disputes desk must look (a chargeback after closing)


DISPUTE_NOTE_ADDED = DISPUTE_EVENT_PREFIX + "note_added"
# A chargeback on a dispute already with the platform (or closed): recorded, no state change.
DISPUTE_CHARGEBACK_RECORDED = DISPUTE_EVENT_PREFIX + "chargeback_recorded"
# also on the review desk's queue (the policy's `review_queue`)
DISPUTE_PLATFORM_REVIEW = DisputeState.PLATFORM_REVIEW.event_type
DISPUTE_EVENT_TYPES: tuple[str, ...] = (
    *(state.event_type for state in DisputeState),
    DISPUTE_NOTE_ADDED,
    DISPUTE_CHARGEBACK_RECORDED,
)
# What a vendor's queue carries of its disputes: every transition and recorded chargeback,
# never a platform note.
VENDOR_DISPUTE_EVENT_TYPES: tuple[str, ...] = (
    *(state.event_type for state in DisputeState),
    DISPUTE_CHARGEBACK_RECORDED,
)
# Fields a vendor never sees.
PLATFORM_ONLY_FIELDS: frozenset[str] = frozenset({"internal_note", "flag"})


# --- the published policy (`disputes.policy`) -----------------------------------------------

DISPUTE_POLICY_PUBLISHED = "support.disputes.policy_published"
DISPUTE_POLICY_KEY = "disputes"  # the one policy: compaction keeps its versions under one key
MAX_POLICY_TEXT_CHARS = 256 * 1024  # a policy is a few KiB


class PublishedDisputePolicy(BaseModel):
    """`data` of a `support.disputes.policy_published` record: the policy file's text as
    published (each worker validates it against its own SLA calendars)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: Annotated[str, Field(min_length=1, max_length=1024)]  # the name it was published from
    text: Annotated[str, Field(min_length=1, max_length=MAX_POLICY_TEXT_CHARS)]


class PublishedDisputePolicyEvent(CloudEvent[PublishedDisputePolicy]):
    """A whole record on `disputes.policy` (key: `disputes`)."""
