"""The dispute state machine: one transition table, and `apply` (pure: no I/O, the clock given).

`TRANSITIONS` is the only definition of what may happen: from which state, on which action,
by which party, to which state, under which guard. Rows for the same state and action are
alternatives, tried in order (the seller's silence goes to buyer protection when it covers the
claim, else to platform review). Rows taken by the timer with `automatic=True` follow at once
(an opened dispute starts the seller's window; a resolved or decided one closes).

Parties: the order's `buyer`, the selling vendor (`seller`), a platform agent (`platform`), an
integration acting for the platform (`system`: a routing rule, a chargeback) and the engine's
own deadlines (`timer`). Anything else is refused with a reason, as data: the caller sends the
action to the dead-letter topic as `action_refused`.

A chargeback (the system's `chargeback`) opens the order's dispute when it has none. On an
open one the payment provider has already pulled the money, so the platform must judge now:
waiting for the seller or on an offer, the dispute moves to platform review (its deadlines
cancelled); in platform review the chargeback is recorded (history, a `chargeback_recorded`
event) without a state change; on a closed dispute (resolved and decided close at once) it is
recorded and flagged for the disputes desk.

    decision = apply(dispute, action, now, policy, action_id=ce.id, vendors=vendors)
    decision = fire_due(dispute, now, policy)      # when the deadline index pops the order

The state is `Dispute` (stored as JSON); deadlines live in it, so a timer firing after a
crash re-checks them (a dispute settled before its deadline never fires it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field

from router.disputes.policy import DisputePolicy
from router.ids import derive_id
from schemas.action import ActorRole
from schemas.claim import ReasonCode
from schemas.dispute import (
    DISPUTE_CHARGEBACK_RECORDED,
    DISPUTE_NOTE_ADDED,
    AcceptOffer,
    ActedBy,
    DecideDispute,
    DisputeAction,
    DisputeEventData,
    DisputeNote,
    DisputeState,
    Offer,
    OfferKind,
    OpenDispute,
    Outcome,
    RefundInstruction,
    RejectOffer,
    ReportChargeback,
    RespondToDispute,
    Verdict,
    WithdrawDispute,
)
from schemas.vendor import VendorProfile, VendorTier

S = DisputeState
MAX_APPLIED_IDS = 64  # action ids remembered for deduplication (a dispute sees few actions)
MAX_HISTORY = 100
SELLER_RESPONSE = "seller_response"
BUYER_RESPONSE = "buyer_response"
PROTECTION_REASON = "buyer protection: the seller did not answer within the response window"


class Party(StrEnum):
    BUYER = "buyer"
    SELLER = "seller"
    PLATFORM = "platform"
    SYSTEM = "system"
    TIMER = "timer"


class Act(StrEnum):
    OPEN = "open_dispute"
    START = "start_seller_window"
    RESPOND = "respond"
    ACCEPT = "accept_offer"
    REJECT = "reject_offer"
    SELLER_TIMEOUT = "seller_timeout"
    BUYER_TIMEOUT = "buyer_timeout"
    DECIDE = "decide"
    WITHDRAW = "withdraw"
    CLOSE = "close"
    NOTE = "note"
    CHARGEBACK = "chargeback"


class Guard(StrEnum):
    ALWAYS = "always"
    VALID_CLAIM = "valid_claim"
    VALID_OFFER = "valid_offer"
    VALID_VERDICT = "valid_verdict"
    PROTECTED = "buyer_protected"
    NOT_PROTECTED = "not_buyer_protected"
    SILENCE_ACCEPTS = "silence_accepts"
    SILENCE_WITHDRAWS = "silence_withdraws"
    SAME_ORDER = "same_order"  # a chargeback names the dispute's buyer and seller


@dataclass(frozen=True, slots=True)
class Transition:
    source: DisputeState | None  # None: no dispute on the order yet
    act: Act
    parties: frozenset[Party]
    target: DisputeState | None  # None: stays (a note)
    guard: Guard = Guard.ALWAYS
    automatic: bool = False  # taken by the timer as soon as `source` is entered


def _t(
    source: DisputeState | None, act: Act, parties: set[Party], target: DisputeState | None,
    guard: Guard = Guard.ALWAYS, *, automatic: bool = False,
) -> Transition:  # fmt: skip
    return Transition(source, act, frozenset(parties), target, guard, automatic)


_B, _SL, _P, _SY, _TM = Party.BUYER, Party.SELLER, Party.PLATFORM, Party.SYSTEM, Party.TIMER
_OPEN_STATES = (S.AWAITING_SELLER, S.SELLER_RESPONDED, S.PLATFORM_REVIEW)

TRANSITIONS: tuple[Transition, ...] = (
    _t(None, Act.OPEN, {_B, _P, _SY}, S.OPENED, Guard.VALID_CLAIM),
    _t(S.OPENED, Act.START, {_TM}, S.AWAITING_SELLER, automatic=True),
    _t(S.AWAITING_SELLER, Act.RESPOND, {_SL}, S.SELLER_RESPONDED, Guard.VALID_OFFER),
    _t(S.AWAITING_SELLER, Act.SELLER_TIMEOUT, {_TM}, S.DECIDED, Guard.PROTECTED),
    _t(S.AWAITING_SELLER, Act.SELLER_TIMEOUT, {_TM}, S.PLATFORM_REVIEW, Guard.NOT_PROTECTED),
    _t(S.SELLER_RESPONDED, Act.ACCEPT, {_B}, S.RESOLVED),
    _t(S.SELLER_RESPONDED, Act.REJECT, {_B}, S.PLATFORM_REVIEW),
    _t(S.SELLER_RESPONDED, Act.BUYER_TIMEOUT, {_TM}, S.RESOLVED, Guard.SILENCE_ACCEPTS),
    _t(S.SELLER_RESPONDED, Act.BUYER_TIMEOUT, {_TM}, S.CLOSED, Guard.SILENCE_WITHDRAWS),
    _t(S.PLATFORM_REVIEW, Act.DECIDE, {_P}, S.DECIDED, Guard.VALID_VERDICT),
    *(_t(s, Act.WITHDRAW, {_B}, S.CLOSED) for s in _OPEN_STATES),
    _t(S.RESOLVED, Act.CLOSE, {_TM}, S.CLOSED, automatic=True),
    _t(S.DECIDED, Act.CLOSE, {_TM}, S.CLOSED, automatic=True),
    *(_t(s, Act.NOTE, {_P}, None) for s in _OPEN_STATES),
    _t(None, Act.CHARGEBACK, {_SY}, S.OPENED, Guard.VALID_CLAIM),
    _t(S.AWAITING_SELLER, Act.CHARGEBACK, {_SY}, S.PLATFORM_REVIEW, Guard.SAME_ORDER),
    _t(S.SELLER_RESPONDED, Act.CHARGEBACK, {_SY}, S.PLATFORM_REVIEW, Guard.SAME_ORDER),
    _t(S.PLATFORM_REVIEW, Act.CHARGEBACK, {_SY}, None, Guard.SAME_ORDER),
    _t(S.CLOSED, Act.CHARGEBACK, {_SY}, None, Guard.SAME_ORDER),
)
TERMINAL: frozenset[DisputeState] = frozenset({S.CLOSED})
TIMEOUTS: Mapping[str, Act] = {
    SELLER_RESPONSE: Act.SELLER_TIMEOUT,
    BUYER_RESPONSE: Act.BUYER_TIMEOUT,
}
_ROLE_PARTY: Mapping[ActorRole, Party] = {
    ActorRole.BUYER: Party.BUYER,
    ActorRole.VENDOR: Party.SELLER,
    ActorRole.AGENT: Party.PLATFORM,
    ActorRole.SYSTEM: Party.SYSTEM,
}


def longest_path(table: tuple[Transition, ...] = TRANSITIONS) -> int:
    """Transitions on the longest path from no dispute to a terminal state (the table is a DAG:
    a cycle would let a dispute run forever, so it is an error)."""
    edges: dict[DisputeState | None, set[DisputeState]] = {}
    for row in table:
        if row.target is not None:
            edges.setdefault(row.source, set()).add(row.target)

    def depth(state: DisputeState | None, seen: frozenset[DisputeState | None]) -> int:
        if state in seen:
            raise ValueError(f"the transition table has a cycle through {state}")
        return max((1 + depth(t, seen | {state}) for t in edges.get(state, ())), default=0)

    return depth(None, frozenset())


# --- state ----------------------------------------------------------------------------------


class HistoryEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    at: datetime
    act: Act
    party: Party
    actor_id: str
    source: DisputeState | None
    target: DisputeState


class Dispute(BaseModel):
    """What the disputes table stores per order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: str
    state: DisputeState
    buyer_id: str
    vendor_id: str
    reason_code: ReasonCode
    amount: Decimal
    currency: str
    category: str | None = None
    tier: VendorTier = VendorTier.STANDARD
    seller_calendar: str
    opened_at: datetime
    offer: Offer | None = None
    verdict: Verdict | None = None
    verdict_reason: str | None = None
    outcome: Outcome | None = None
    refund: RefundInstruction | None = None
    deadlines: dict[str, datetime] = {}
    applied: Annotated[list[str], Field(max_length=MAX_APPLIED_IDS)] = []
    history: list[HistoryEntry] = []

    def next_due(self) -> datetime | None:
        return min(self.deadlines.values(), default=None)


def index_entry(dispute: Dispute | None) -> tuple[float, str] | None:
    """(due epoch seconds, order id) for the deadline index; None when nothing is pending."""
    due = dispute.next_due() if dispute is not None else None
    return None if due is None else (due.timestamp(), dispute.order_id)  # type: ignore[union-attr]


def encode_dispute(dispute: Dispute) -> bytes:
    return dispute.model_dump_json().encode()


def decode_dispute(raw: bytes) -> Dispute:
    return Dispute.model_validate_json(raw)


# --- actions and decisions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timeout:
    """A deadline of the dispute falling due (the timer's action)."""

    order_id: str
    deadline: str  # SELLER_RESPONSE or BUYER_RESPONSE


Action = DisputeAction | Timeout


@dataclass(frozen=True, slots=True)
class DisputeEvent:
    """One event to publish: on `disputes.events`, and (`vendor_visible`) the seller's copy
    on its queue without platform-only fields."""

    event_id: str
    event_type: str
    data: DisputeEventData
    vendor_visible: bool = True


@dataclass(frozen=True, slots=True)
class Decision:
    """What an action does. `dispute` is the new state (the same object when nothing changed);
    `refused` is why an illegal action was refused (dead-letter it); `ignored` is why a
    harmless one changed nothing (a duplicate, a stale timer)."""

    dispute: Dispute | None
    events: tuple[DisputeEvent, ...] = ()
    set_deadlines: Mapping[str, datetime] = field(default_factory=dict)
    cancelled_deadlines: tuple[str, ...] = ()
    refused: str | None = None
    ignored: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.events)


class VendorDirectory(Protocol):
    def get(self, vendor_id: str, /) -> VendorProfile | None: ...


def act_of(action: Action) -> Act:
    if isinstance(action, Timeout):
        return TIMEOUTS[action.deadline]
    return Act(action.action)


def party_of(dispute: Dispute | None, action: Action) -> Party | str:
    """The party acting, or why the actor is none of the order's parties."""
    if isinstance(action, Timeout):
        return Party.TIMER
    actor = action.actor
    party = _ROLE_PARTY[actor.role]
    if party is Party.BUYER:
        buyer = action.buyer_id if isinstance(action, OpenDispute) else (
            dispute.buyer_id if dispute is not None else None)  # fmt: skip
        if buyer is not None and actor.id != buyer:
            return f"buyer {actor.id!r} is not the buyer of order {action.order_id!r}"
    if party is Party.SELLER and dispute is not None and actor.id != dispute.vendor_id:
        return f"vendor {actor.id!r} did not sell order {action.order_id!r}"
    return party


# guard -> (dispute, action, policy) -> why it does not hold, or None when it holds
GuardCheck = Callable[[Dispute | None, Action, DisputePolicy], str | None]


def _valid_claim(_: Dispute | None, action: Action, policy: DisputePolicy) -> str | None:
    assert isinstance(action, OpenDispute | ReportChargeback)
    if action.currency != policy.currency:
        return f"amount is in {action.currency}; disputes are settled in {policy.currency}"
    return None


def _valid_offer(dispute: Dispute | None, action: Action, _: DisputePolicy) -> str | None:
    assert isinstance(action, RespondToDispute)
    assert dispute is not None
    offer = action.offer
    if offer.kind is OfferKind.PARTIAL_REFUND:
        if offer.amount is None or offer.amount >= dispute.amount:
            return f"a partial refund needs an amount below the claim ({dispute.amount})"
    elif offer.amount is not None:
        return f"only a partial refund names an amount, not {offer.kind.value}"
    if offer.kind is OfferKind.CONTEST and not offer.evidence:
        return "contesting a dispute needs evidence"
    return None


def _valid_verdict(dispute: Dispute | None, action: Action, _: DisputePolicy) -> str | None:
    assert isinstance(action, DecideDispute)
    assert dispute is not None
    if action.verdict is Verdict.REFUND_PARTIAL:
        if action.amount is None or action.amount >= dispute.amount:
            return f"refund_partial needs an amount below the claim ({dispute.amount})"
    elif action.amount is not None:
        return f"only refund_partial names an amount, not {action.verdict.value}"
    return None


def _same_order(dispute: Dispute | None, action: Action, _: DisputePolicy) -> str | None:
    assert isinstance(action, ReportChargeback)
    assert dispute is not None
    if (action.buyer_id, action.vendor_id) != (dispute.buyer_id, dispute.vendor_id):
        return (f"chargeback {action.chargeback_id!r} names buyer {action.buyer_id!r} and "
                f"seller {action.vendor_id!r}; the dispute on order {dispute.order_id!r} is "
                f"between {dispute.buyer_id!r} and {dispute.vendor_id!r}")  # fmt: skip
    return None


def _protected(dispute: Dispute | None, _: Action, policy: DisputePolicy) -> str | None:
    assert dispute is not None
    if policy.protects(dispute.reason_code, dispute.category, dispute.amount):
        return None
    return "buyer protection does not cover this claim"


def _not_protected(dispute: Dispute | None, action: Action, policy: DisputePolicy) -> str | None:
    return (
        "buyer protection covers this claim"
        if _protected(dispute, action, policy) is None
        else None
    )


def _silence(outcome: Outcome) -> GuardCheck:
    def check(_: Dispute | None, __: Action, policy: DisputePolicy) -> str | None:
        return (
            None
            if policy.buyer_silence is outcome
            else f"buyer silence means {policy.buyer_silence}"
        )

    return check


GUARDS: Mapping[Guard, GuardCheck] = {
    Guard.ALWAYS: lambda dispute, action, policy: None,
    Guard.VALID_CLAIM: _valid_claim,
    Guard.VALID_OFFER: _valid_offer,
    Guard.VALID_VERDICT: _valid_verdict,
    Guard.PROTECTED: _protected,
    Guard.NOT_PROTECTED: _not_protected,
    Guard.SILENCE_ACCEPTS: _silence(Outcome.ACCEPTED),
    Guard.SILENCE_WITHDRAWS: _silence(Outcome.WITHDRAWN),
    Guard.SAME_ORDER: _same_order,
}


def rows_for(state: DisputeState | None, act: Act) -> list[Transition]:
    return [row for row in TRANSITIONS if row.source == state and row.act == act]


def apply(
    dispute: Dispute | None,
    action: Action,
    now: datetime,
    policy: DisputePolicy,
    *,
    action_id: str | None = None,
    vendors: VendorDirectory | None = None,
) -> Decision:
    """What `action` (with its CloudEvents id, the idempotency key) does to `dispute` at `now`."""
    act = act_of(action)
    if isinstance(action, Timeout):
        due = dispute.deadlines.get(action.deadline) if dispute is not None else None
        if due is None or due > now:
            return Decision(dispute, ignored=f"{action.deadline} is not due")
        action_id = f"timeout:{action.deadline}:{due.isoformat()}"
    elif action_id is None:
        raise ValueError("an action needs its id (the idempotency key)")
    if dispute is not None and action_id in dispute.applied:
        return Decision(dispute, ignored=f"action {action_id!r} was already applied")
    state = dispute.state if dispute is not None else None
    party = party_of(dispute, action)
    if not isinstance(party, Party):  # a StrEnum is a str too
        return Decision(dispute, refused=party)
    rows = rows_for(state, act)
    if not rows and act is Act.OPEN and party is Party.SYSTEM and state is not None:
        # a routing rule's claim on an order its buyer already disputes (another ticket of
        # the same order): the dispute is there, nothing to refuse or dead-letter
        return Decision(dispute, ignored=f"the order already has a dispute ({state.value})")
    if not rows:
        return Decision(dispute, refused=_illegal(action, act, state))
    allowed = [row for row in rows if party in row.parties]
    if not allowed:
        parties = sorted({p.value for row in rows for p in row.parties})
        return Decision(
            dispute, refused=f"a {party.value} may not {act.value} (only: {', '.join(parties)})"
        )
    why = ""
    for row in allowed:
        problem = GUARDS[row.guard](dispute, action, policy)
        if problem is None:
            return _Step(dispute, now, policy, action_id, vendors).run(row, action, party)
        why = problem
    return Decision(dispute, refused=why)


def fire_due(
    dispute: Dispute, now: datetime, policy: DisputePolicy, *, until: datetime | None = None
) -> Decision:
    """Fire the earliest due deadline of `dispute` (the timer's entry point). `until`: fire
    only a deadline due by then (the timer's horizon while commands have a backlog)."""
    limit = now if until is None else min(now, until)
    for name, due in sorted(dispute.deadlines.items(), key=lambda item: item[1]):
        if due <= limit:
            return apply(dispute, Timeout(dispute.order_id, name), now, policy)
    return Decision(dispute, ignored="nothing is due")


def _illegal(action: Action, act: Act, state: DisputeState | None) -> str:
    if state is None:
        return f"order {action.order_id!r} has no dispute to {act.value}"
    if act is Act.OPEN:
        return f"order {action.order_id!r} already has a dispute ({state.value})"
    return f"cannot {act.value} a dispute in state {state.value}"


class _Step:
    """One accepted action and the automatic transitions it leads to."""

    def __init__(
        self, dispute: Dispute | None, now: datetime, policy: DisputePolicy, action_id: str,
        vendors: VendorDirectory | None,
    ) -> None:  # fmt: skip
        self.dispute = dispute
        self.now, self.policy, self.action_id, self.vendors = now, policy, action_id, vendors
        self.events: list[DisputeEvent] = []
        self.set: dict[str, datetime] = {}
        self.cancelled: list[str] = []

    def run(self, row: Transition, action: Action, party: Party) -> Decision:
        actor_id = "timer" if isinstance(action, Timeout) else action.actor.id
        self._enter(row, action, party, actor_id)
        while True:
            state = self._current.state
            auto = [r for r in TRANSITIONS if r.source == state and r.automatic]
            if not auto:
                break
            self._enter(auto[0], None, Party.TIMER, "timer")
        dispute = self._update(applied=[*self._current.applied, self.action_id][-MAX_APPLIED_IDS:])
        return Decision(
            dispute, tuple(self.events), dict(self.set), tuple(dict.fromkeys(self.cancelled))
        )

    @property
    def _current(self) -> Dispute:
        assert self.dispute is not None  # an open creates it before anything reads it
        return self.dispute

    def _update(self, **changes: object) -> Dispute:
        self.dispute = self._current.model_copy(update=changes)
        return self.dispute

    def _deadline(self, name: str, calendar: str, seconds: float) -> None:
        due = self.policy.calendar(calendar).add_business_seconds(self.now, seconds)
        self._update(deadlines={**self._current.deadlines, name: due})
        self.set[name] = due

    def _cancel(self, *names: str) -> None:
        deadlines = dict(self._current.deadlines)
        for name in names:
            if deadlines.pop(name, None) is not None:
                self.cancelled.append(name)
                self.set.pop(name, None)
        self._update(deadlines=deadlines)

    def _refund(self, amount: Decimal, *, replacement: bool = False) -> None:
        d = self._current
        self._update(refund=RefundInstruction(
            instruction_id=derive_id(d.order_id, "dispute-refund"), order_id=d.order_id,
            buyer_id=d.buyer_id, vendor_id=d.vendor_id, amount=amount, currency=d.currency,
            replacement=replacement,
        ))  # fmt: skip

    def _open(self, action: OpenDispute | ReportChargeback) -> None:
        profile = self.vendors.get(action.vendor_id) if self.vendors is not None else None
        self.dispute = Dispute(
            order_id=action.order_id, state=S.OPENED, buyer_id=action.buyer_id,
            vendor_id=action.vendor_id, reason_code=action.reason_code, amount=action.amount,
            currency=action.currency, category=action.category, opened_at=self.now,
            tier=profile.tier if profile is not None else VendorTier.STANDARD,
            seller_calendar=self.policy.calendar_for_seller(profile.calendar if profile else None),
        )  # fmt: skip

    def _accepted(self) -> None:
        """The buyer took the offer (or stayed silent and the policy says that accepts it)."""
        self._cancel(BUYER_RESPONSE)
        d = self._update(outcome=Outcome.ACCEPTED)
        offer = d.offer
        assert offer is not None  # only a responded dispute can be accepted
        refunds = {OfferKind.FULL_REFUND: d.amount, OfferKind.PARTIAL_REFUND: offer.amount}
        self._refund(refunds.get(offer.kind) or Decimal(0),
                     replacement=offer.kind is OfferKind.REPLACEMENT)  # fmt: skip

    def _enter(self, row: Transition, action: Action | None, party: Party, actor_id: str) -> None:
        policy = self.policy
        source = self.dispute.state if self.dispute is not None else None
        note: str | None = None
        chargeback: str | None = None
        if isinstance(action, OpenDispute):
            self._open(action)
        elif isinstance(action, ReportChargeback):
            chargeback = action.chargeback_id
            if self.dispute is None:
                self._open(action)
            elif row.target is S.PLATFORM_REVIEW:  # the platform judges now: nobody is awaited
                self._cancel(*self._current.deadlines)
        elif row.act is Act.START:
            d = self._current
            window = policy.seller_window(d.reason_code, d.tier)
            self._deadline(SELLER_RESPONSE, d.seller_calendar, window)
        elif isinstance(action, RespondToDispute):
            self._cancel(SELLER_RESPONSE)
            window = policy.buyer_window(self._update(offer=action.offer).reason_code)
            self._deadline(BUYER_RESPONSE, policy.buyer_calendar, window)
        elif isinstance(action, AcceptOffer):
            self._accepted()
        elif row.act is Act.BUYER_TIMEOUT:
            if row.target is S.RESOLVED:
                self._accepted()
            else:  # silence withdraws
                self._cancel(BUYER_RESPONSE)
                self._update(outcome=Outcome.WITHDRAWN)
        elif isinstance(action, RejectOffer):
            self._cancel(BUYER_RESPONSE)
        elif row.act is Act.SELLER_TIMEOUT:
            self._cancel(SELLER_RESPONSE)
            if row.target is S.DECIDED:
                d = self._update(verdict=Verdict.REFUND_FULL, verdict_reason=PROTECTION_REASON)
                self._refund(d.amount)
        elif isinstance(action, DecideDispute):
            d = self._update(verdict=action.verdict, verdict_reason=action.reason)
            note = action.internal_note
            amounts = {Verdict.REFUND_FULL: d.amount, Verdict.DENY: Decimal(0)}
            self._refund(amounts.get(action.verdict, action.amount or Decimal(0)))
        elif isinstance(action, WithdrawDispute):
            self._cancel(*self._current.deadlines)
            self._update(outcome=Outcome.WITHDRAWN)
        elif row.act is Act.CLOSE:
            self._update(outcome=Outcome.ACCEPTED if source is S.RESOLVED else Outcome.DECIDED)
        elif isinstance(action, DisputeNote):
            note = action.body
        d = self._current
        if row.act is not Act.NOTE:  # a note's record is its platform-only event
            target = row.target or d.state
            entry = HistoryEntry(at=self.now, act=row.act, party=party, actor_id=actor_id,
                                 source=source, target=target)  # fmt: skip
            d = self._update(state=target, history=[*d.history, entry][-MAX_HISTORY:])
        self._emit(row, party, actor_id, source, note, chargeback)

    def _emit(
        self, row: Transition, party: Party, actor_id: str, source: DisputeState | None,
        note: str | None, chargeback: str | None,
    ) -> None:  # fmt: skip
        d = self._current
        if row.target is not None:
            kind, event_type = row.target.value, row.target.event_type
        elif row.act is Act.CHARGEBACK:
            kind, event_type = "chargeback_recorded", DISPUTE_CHARGEBACK_RECORDED
        else:
            kind, event_type = "note_added", DISPUTE_NOTE_ADDED
        flag = None
        if row.act is Act.CHARGEBACK and d.state in TERMINAL:
            outcome = d.outcome.value if d.outcome is not None else "closed"
            flag = f"chargeback {chargeback} after the dispute closed ({outcome})"
        data = DisputeEventData(
            order_id=d.order_id, state=d.state, previous_state=source, action=row.act.value,
            acted_by=ActedBy(id=actor_id, party=party.value), at=self.now,
            buyer_id=d.buyer_id, vendor_id=d.vendor_id, reason_code=d.reason_code,
            amount=d.amount, currency=d.currency, category=d.category, offer=d.offer,
            verdict=d.verdict, verdict_reason=d.verdict_reason, outcome=d.outcome,
            refund=d.refund if d.state in (S.RESOLVED, S.DECIDED) else None,
            deadlines=dict(d.deadlines), chargeback_id=chargeback, internal_note=note, flag=flag,
        )  # fmt: skip
        self.events.append(DisputeEvent(
            derive_id(d.order_id, self.action_id, kind), event_type, data,
            vendor_visible=row.act is not Act.NOTE,
        ))  # fmt: skip
