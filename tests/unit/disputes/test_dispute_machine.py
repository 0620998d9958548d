"""The dispute state machine: every row of the table, every party, each main path."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from router.disputes.machine import (
    BUYER_RESPONSE,
    SELLER_RESPONSE,
    TIMEOUTS,
    TRANSITIONS,
    Act,
    Decision,
    Party,
    Timeout,
    apply,
    decode_dispute,
    encode_dispute,
    fire_due,
    index_entry,
    longest_path,
    rows_for,
)
from schemas.action import ActorRole
from schemas.dispute import DisputeState, Outcome, Verdict
from tests.unit.disputes.dispute_support import (
    BUYER,
    EXTERNAL_ACTS,
    MONDAY,
    ORDER,
    VENDOR,
    Run,
    action,
    in_state,
    policy,
)

S = DisputeState
ROLE_PARTY = {ActorRole.BUYER: Party.BUYER, ActorRole.VENDOR: Party.SELLER,
              ActorRole.AGENT: Party.PLATFORM, ActorRole.SYSTEM: Party.SYSTEM}  # fmt: skip
RESTING = [None, *(s for s in S if not any(r.source == s and r.automatic for r in TRANSITIONS))]


def test_table_is_acyclic_and_its_longest_path_is_the_contested_one() -> None:
    # open, start window, respond, reject, decide, close
    assert longest_path() == 6


def test_every_state_is_reachable_and_closed_is_the_only_end() -> None:
    targets = {row.target for row in TRANSITIONS if row.target is not None}
    assert targets == set(S)
    dead_ends = {s for s in S
                 if not any(row.source == s and row.target is not None for row in TRANSITIONS)}
    assert dead_ends == {S.CLOSED}
    # a closed dispute only records (a late chargeback): it never moves again
    assert {row.act for row in TRANSITIONS if row.source == S.CLOSED} == {Act.CHARGEBACK}


def test_transient_states_have_exactly_one_automatic_way_out() -> None:
    for state in (S.OPENED, S.RESOLVED, S.DECIDED):
        rows = [row for row in TRANSITIONS if row.source == state]
        assert len(rows) == 1
        assert rows[0].automatic
        assert rows[0].parties == {Party.TIMER}


@pytest.mark.parametrize(
    ("state", "act", "role"),
    list(itertools.product(RESTING, EXTERNAL_ACTS, list(ActorRole))),
    ids=lambda v: getattr(v, "value", str(v)),
)
def test_each_external_action_by_each_party_in_each_state(
    state: DisputeState | None, act: Act, role: ActorRole
) -> None:
    dispute = in_state(state)
    decision = apply(dispute, action(act, role), MONDAY, policy(), action_id="x")
    allowed = any(ROLE_PARTY[role] in row.parties for row in rows_for(state, act))
    if allowed:
        assert decision.refused is None
        assert decision.ignored is None
        assert decision.dispute is not None
        assert decision.events
        row_targets = {row.target for row in rows_for(state, act)}
        first = decision.events[0].data.state
        assert first in row_targets or (None in row_targets and first == state)
        assert decision.dispute.state in RESTING  # automatic steps were taken
    else:
        if state is not None and act is Act.OPEN and role is ActorRole.SYSTEM:
            # a routing rule's claim on an order already disputed: nothing to dead-letter
            assert decision.refused is None
            assert decision.ignored == f"the order already has a dispute ({state.value})"
        else:
            assert decision.refused, "an illegal action is refused with a reason"
        assert decision.dispute is dispute
        assert not decision.events
        assert not decision.set_deadlines
        assert not decision.cancelled_deadlines


@pytest.mark.parametrize("state", RESTING, ids=lambda v: getattr(v, "value", str(v)))
@pytest.mark.parametrize("deadline", sorted(TIMEOUTS))
def test_each_timeout_in_each_state(state: DisputeState | None, deadline: str) -> None:
    dispute = in_state(state)
    decision = apply(dispute, Timeout(ORDER, deadline), MONDAY, policy())
    if dispute is None:
        assert decision.ignored
        assert not decision.events
    elif rows_for(state, TIMEOUTS[deadline]):
        assert decision.refused is None
        assert decision.events
        assert deadline not in decision.dispute.deadlines  # type: ignore[union-attr]
    else:
        assert decision.refused
        assert not decision.events


def test_refusals_name_the_reason() -> None:
    run = Run()
    assert run.do(Act.ACCEPT).refused == f"order {ORDER!r} has no dispute to accept_offer"
    assert run.do(Act.OPEN, ActorRole.VENDOR).refused == (
        "a seller may not open_dispute (only: buyer, platform, system)"
    )
    refused = run.do(Act.OPEN, actor="buyer-8").refused
    assert refused == f"buyer 'buyer-8' is not the buyer of order {ORDER!r}"
    run.do(Act.OPEN)
    assert run.do(Act.OPEN).refused == f"order {ORDER!r} already has a dispute (awaiting_seller)"
    assert run.do(Act.RESPOND, ActorRole.VENDOR, actor="other-shop").refused == (
        f"vendor 'other-shop' did not sell order {ORDER!r}"
    )
    assert run.do(Act.ACCEPT, actor="buyer-8").refused == (
        f"buyer 'buyer-8' is not the buyer of order {ORDER!r}"
    )
    assert run.do(Act.DECIDE, ActorRole.VENDOR).refused == (
        "cannot decide a dispute in state awaiting_seller"
    )
    assert run.do(Act.ACCEPT).refused == "cannot accept_offer a dispute in state awaiting_seller"
    run.do(Act.RESPOND, ActorRole.VENDOR)
    run.do(Act.REJECT)
    assert (
        run.do(Act.DECIDE, ActorRole.VENDOR).refused == "a seller may not decide (only: platform)"
    )
    assert run.do(Act.DECIDE, ActorRole.BUYER).refused == "a buyer may not decide (only: platform)"
    assert run.state is S.PLATFORM_REVIEW


@pytest.mark.parametrize(
    ("offer", "error"),
    [
        ({"kind": "partial_refund"}, "a partial refund needs an amount below the claim (80.00)"),
        ({"kind": "partial_refund", "amount": "80.00"},
         "a partial refund needs an amount below the claim (80.00)"),
        ({"kind": "full_refund", "amount": "10.00"},
         "only a partial refund names an amount, not full_refund"),
        ({"kind": "contest"}, "contesting a dispute needs evidence"),
    ],
)  # fmt: skip
def test_invalid_offers_are_refused(offer: dict[str, object], error: str) -> None:
    run = Run()
    run.do(Act.OPEN)
    assert run.do(Act.RESPOND, ActorRole.VENDOR, offer=offer).refused == error
    assert run.state is S.AWAITING_SELLER


def test_a_claim_in_another_currency_is_refused() -> None:
    decision = Run().do(Act.OPEN, currency="USD")
    assert decision.refused == "amount is in USD; disputes are settled in EUR"
    assert decision.dispute is None


def test_full_refund_accepted() -> None:
    run = Run()
    opened = run.do(Act.OPEN)
    assert [e.data.state for e in opened.events] == [S.OPENED, S.AWAITING_SELLER]
    assert set(opened.set_deadlines) == {SELLER_RESPONSE}
    responded = run.at(MONDAY + timedelta(hours=2)).do(Act.RESPOND, ActorRole.VENDOR)
    assert responded.cancelled_deadlines == (SELLER_RESPONSE,)
    # the buyer's window runs in the `always` calendar: 72 h of wall time
    assert responded.set_deadlines == {BUYER_RESPONSE: MONDAY + timedelta(hours=74)}
    accepted = run.do(Act.ACCEPT)
    assert [e.data.state for e in accepted.events] == [S.RESOLVED, S.CLOSED]
    assert accepted.cancelled_deadlines == (BUYER_RESPONSE,)
    resolved = accepted.events[0].data
    assert resolved.refund is not None
    assert resolved.refund.amount == Decimal("80.00")
    assert run.dispute is not None
    assert run.dispute.outcome is Outcome.ACCEPTED
    assert run.dispute.deadlines == {}
    assert index_entry(run.dispute) is None


@pytest.mark.parametrize(
    ("offer", "refund", "replacement"),
    [
        ({"kind": "partial_refund", "amount": "30.00"}, Decimal("30.00"), False),
        ({"kind": "replacement"}, Decimal(0), True),
        ({"kind": "contest", "evidence": [{"name": "tracking.pdf"}]}, Decimal(0), False),
    ],
)
def test_other_offers_accepted(
    offer: dict[str, object], refund: Decimal, replacement: bool
) -> None:
    run = Run()
    run.do(Act.OPEN)
    run.do(Act.RESPOND, ActorRole.VENDOR, offer=offer)
    resolved = run.do(Act.ACCEPT).events[0].data
    assert resolved.refund is not None
    assert (resolved.refund.amount, resolved.refund.replacement) == (refund, replacement)


@pytest.mark.parametrize(
    ("verdict", "amount", "refund"),
    [("refund_full", None, "80.00"), ("refund_partial", "25.50", "25.50"), ("deny", None, "0")],
)
def test_rejected_offer_goes_to_review_and_the_platform_decides(
    verdict: str, amount: str | None, refund: str
) -> None:
    run = Run()
    run.do(Act.OPEN)
    run.do(Act.RESPOND, ActorRole.VENDOR, offer={"kind": "replacement"})
    rejected = run.do(Act.REJECT, reason="I want my money back")
    assert [e.data.state for e in rejected.events] == [S.PLATFORM_REVIEW]
    assert run.dispute is not None
    assert run.dispute.deadlines == {}
    fields = {"verdict": verdict, "reason": "seen the photos", "internal_note": "repeat seller"}
    decided = run.do(
        Act.DECIDE, ActorRole.AGENT, **fields, **({"amount": amount} if amount else {})
    )
    assert [e.data.state for e in decided.events] == [S.DECIDED, S.CLOSED]
    data = decided.events[0].data
    assert data.verdict is Verdict(verdict)
    assert data.verdict_reason == "seen the photos"
    assert data.refund is not None
    assert data.refund.amount == Decimal(refund)
    assert data.internal_note == "repeat seller"
    assert run.dispute.outcome is Outcome.DECIDED  # type: ignore[union-attr]


def test_a_partial_verdict_needs_an_amount_below_the_claim() -> None:
    run = Run()
    run.do(Act.OPEN)
    run.do(Act.RESPOND, ActorRole.VENDOR)
    run.do(Act.REJECT)
    assert run.do(Act.DECIDE, ActorRole.AGENT, verdict="refund_partial").refused == (
        "refund_partial needs an amount below the claim (80.00)"
    )
    assert run.do(Act.DECIDE, ActorRole.AGENT, amount="5.00").refused == (
        "only refund_partial names an amount, not deny"
    )


def test_seller_silent_under_the_threshold_is_decided_for_the_buyer() -> None:
    run = Run()
    opened = run.do(Act.OPEN)  # item not received, 80.00 EUR: protected up to 150.00
    due = opened.set_deadlines[SELLER_RESPONSE]
    assert apply(run.dispute, Timeout(ORDER, SELLER_RESPONSE), due - timedelta(seconds=1),
                 run.policy).ignored == "seller_response is not due"  # fmt: skip
    fired = fire_due(run.dispute, due, run.policy)  # type: ignore[arg-type]
    assert [e.data.state for e in fired.events] == [S.DECIDED, S.CLOSED]
    decided = fired.events[0].data
    assert decided.verdict is Verdict.REFUND_FULL
    assert decided.acted_by.party == "timer"
    assert decided.refund is not None
    assert decided.refund.amount == Decimal("80.00")
    assert fired.dispute is not None
    assert fired.dispute.deadlines == {}


@pytest.mark.parametrize(
    "fields",
    [
        {"amount": "150.01"},  # over the threshold
        {"reason_code": "unauthorised_charge"},  # a reason buyer protection does not cover
        {"reason_code": "not_as_described", "amount": "20.00", "category": "electronics"},
        {"reason_code": "not_as_described", "amount": "20.00"},  # no category given
    ],
)
def test_seller_silent_outside_protection_goes_to_platform_review(fields: dict[str, str]) -> None:
    run = Run()
    due = run.do(Act.OPEN, **fields).set_deadlines[SELLER_RESPONSE]
    fired = fire_due(run.dispute, due, run.policy)  # type: ignore[arg-type]
    assert [e.data.state for e in fired.events] == [S.PLATFORM_REVIEW]
    assert fired.dispute is not None
    assert fired.dispute.verdict is None


def test_protection_at_exactly_the_threshold_and_in_a_listed_category() -> None:
    for fields in (
        {"amount": "150.00"},
        {"reason_code": "not_as_described", "amount": "50.00", "category": "books"},
    ):
        run = Run()
        due = run.do(Act.OPEN, **fields).set_deadlines[SELLER_RESPONSE]
        fired = fire_due(run.dispute, due, run.policy)  # type: ignore[arg-type]
        assert fired.events[0].data.state is S.DECIDED, fields


@pytest.mark.parametrize(("silence", "states", "outcome", "refund"), [
    ("accept", [S.RESOLVED, S.CLOSED], Outcome.ACCEPTED, Decimal("80.00")),
    ("withdraw", [S.CLOSED], Outcome.WITHDRAWN, None),
])  # fmt: skip
def test_buyer_silent_after_an_offer(
    silence: str, states: list[DisputeState], outcome: Outcome, refund: Decimal | None
) -> None:
    run = Run(policy(buyer_silence=silence))
    run.do(Act.OPEN)
    due = run.do(Act.RESPOND, ActorRole.VENDOR).set_deadlines[BUYER_RESPONSE]
    fired = fire_due(run.dispute, due, run.policy)  # type: ignore[arg-type]
    assert [e.data.state for e in fired.events] == states
    assert fired.dispute is not None
    assert fired.dispute.outcome is outcome
    got = fired.events[0].data.refund
    assert (got.amount if got else None) == refund


@pytest.mark.parametrize("steps", [0, 1, 2])
def test_the_buyer_may_withdraw_while_the_dispute_is_open(steps: int) -> None:
    run = Run()
    run.do(Act.OPEN)
    if steps >= 1:
        run.do(Act.RESPOND, ActorRole.VENDOR)
    if steps >= 2:
        run.do(Act.REJECT)
    withdrawn = run.do(Act.WITHDRAW, reason="found it")
    assert [e.data.state for e in withdrawn.events] == [S.CLOSED]
    assert run.dispute is not None
    assert run.dispute.outcome is Outcome.WITHDRAWN
    assert run.dispute.deadlines == {}
    assert run.do(Act.WITHDRAW).refused == "cannot withdraw a dispute in state closed"


def test_seller_windows_in_the_sellers_business_time() -> None:
    # acme: standard tier, no calendar of its own -> vendor_default (Berlin, 08:00-12:30 and
    # 13:30-18:00): from Monday 10:00 Berlin, 16 business hours end Tuesday 18:00 Berlin.
    berlin = Run().do(Act.OPEN).set_deadlines[SELLER_RESPONSE]
    assert berlin == datetime(2026, 1, 6, 17, 0, tzinfo=UTC)
    # gold-us: gold tier (24 h), platform_us (New York 09:00-17:00): Monday 09:00 UTC is 04:00
    # in New York, so three whole business days, ending Wednesday 17:00 New York.
    new_york = Run().do(Act.OPEN, vendor_id="gold-us").set_deadlines[SELLER_RESPONSE]
    assert new_york == datetime(2026, 1, 7, 22, 0, tzinfo=UTC)


def test_a_timer_that_lost_the_race_fires_nothing() -> None:
    run = Run()
    due = run.do(Act.OPEN).set_deadlines[SELLER_RESPONSE]
    run.do(Act.RESPOND, ActorRole.VENDOR)
    late = apply(run.dispute, Timeout(ORDER, SELLER_RESPONSE), due, run.policy)
    assert late.ignored == "seller_response is not due"
    assert late.dispute is run.dispute


def test_duplicates_change_nothing_and_ids_are_deterministic() -> None:
    first, second = Run(), Run()
    a, b = first.do(Act.OPEN), second.do(Act.OPEN)
    assert [e.event_id for e in a.events] == [e.event_id for e in b.events]
    assert len({e.event_id for e in a.events}) == 2
    again = apply(first.dispute, action(Act.OPEN), MONDAY, first.policy, action_id="act-0")
    assert again.ignored == "action 'act-0' was already applied"
    assert not again.events
    fired = fire_due(first.dispute, MONDAY + timedelta(days=9), first.policy)  # type: ignore[arg-type]
    assert fire_due(fired.dispute, MONDAY + timedelta(days=9), first.policy).ignored  # type: ignore[arg-type]


def test_notes_are_platform_only_and_change_no_state() -> None:
    run = Run()
    run.do(Act.OPEN)
    noted = run.do(Act.NOTE, ActorRole.AGENT, body="buyer has 3 open disputes")
    (event,) = noted.events
    assert event.event_type == "support.dispute.note_added"
    assert not event.vendor_visible
    assert event.data.internal_note == "buyer has 3 open disputes"
    assert run.state is S.AWAITING_SELLER
    assert run.do(Act.NOTE, ActorRole.VENDOR).refused == "a seller may not note (only: platform)"


def test_stored_form_round_trips_and_keeps_the_history() -> None:
    run = Run()
    run.do(Act.OPEN)
    run.do(Act.RESPOND, ActorRole.VENDOR)
    assert run.dispute is not None
    assert decode_dispute(encode_dispute(run.dispute)) == run.dispute
    assert [(h.act, h.party, h.target) for h in run.dispute.history] == [
        (Act.OPEN, Party.BUYER, S.OPENED),
        (Act.START, Party.TIMER, S.AWAITING_SELLER),
        (Act.RESPOND, Party.SELLER, S.SELLER_RESPONDED),
    ]
    assert run.dispute.buyer_id == BUYER
    assert run.dispute.vendor_id == VENDOR
    assert index_entry(run.dispute) == (run.dispute.deadlines[BUYER_RESPONSE].timestamp(), ORDER)


def chargeback(run: Run, cid: str = "cb-1", **fields: object) -> Decision:
    return run.do(Act.CHARGEBACK, ActorRole.SYSTEM, chargeback_id=cid, **fields)


def test_a_chargeback_without_a_dispute_opens_one() -> None:
    run = Run()
    opened = chargeback(run)
    assert [e.data.state for e in opened.events] == [S.OPENED, S.AWAITING_SELLER]
    assert opened.events[0].data.chargeback_id == "cb-1"
    assert opened.events[0].data.acted_by.party == "system"
    assert opened.events[1].data.chargeback_id is None  # the window starting is the timer's
    assert set(opened.set_deadlines) == {SELLER_RESPONSE}


@pytest.mark.parametrize("responded", [False, True])
def test_a_chargeback_on_an_open_dispute_moves_it_to_platform_review(responded: bool) -> None:
    run = Run()
    run.do(Act.OPEN)
    if responded:
        run.do(Act.RESPOND, ActorRole.VENDOR)
    before = run.state
    escalated = chargeback(run, "cb-7")
    (event,) = escalated.events
    assert (event.data.previous_state, event.data.state) == (before, S.PLATFORM_REVIEW)
    assert event.event_type == "support.dispute.platform_review"
    assert event.data.chargeback_id == "cb-7"
    assert event.vendor_visible
    assert event.data.flag is None
    assert escalated.cancelled_deadlines == (BUYER_RESPONSE if responded else SELLER_RESPONSE,)
    assert run.dispute is not None
    assert run.dispute.deadlines == {}
    assert run.dispute.history[-1].act is Act.CHARGEBACK
    assert run.dispute.history[-1].party is Party.SYSTEM
    # the platform now decides, as after any escalation
    decided = run.do(Act.DECIDE, ActorRole.AGENT, verdict="refund_full", reason="chargeback")
    assert [e.data.state for e in decided.events] == [S.DECIDED, S.CLOSED]


def test_a_chargeback_in_platform_review_is_recorded_without_a_state_change() -> None:
    run = Run()
    run.do(Act.OPEN)
    run.do(Act.RESPOND, ActorRole.VENDOR)
    run.do(Act.REJECT)
    recorded = chargeback(run)
    (event,) = recorded.events
    assert event.event_type == "support.dispute.chargeback_recorded"
    assert (event.data.previous_state, event.data.state) == (S.PLATFORM_REVIEW, S.PLATFORM_REVIEW)
    assert event.data.flag is None
    assert not recorded.set_deadlines
    assert not recorded.cancelled_deadlines
    assert run.state is S.PLATFORM_REVIEW
    entry = run.dispute.history[-1]  # type: ignore[union-attr]
    assert (entry.act, entry.source, entry.target) == (Act.CHARGEBACK, S.PLATFORM_REVIEW,
                                                       S.PLATFORM_REVIEW)  # fmt: skip


@pytest.mark.parametrize(("close", "outcome"), [
    ((Act.WITHDRAW, ActorRole.BUYER, {}), "withdrawn"),
    ((Act.ACCEPT, ActorRole.BUYER, {}), "accepted"),
])  # fmt: skip
def test_a_chargeback_after_the_dispute_closed_is_recorded_and_flagged(
    close: tuple[Act, ActorRole, dict[str, object]], outcome: str
) -> None:
    run = Run()
    run.do(Act.OPEN)
    run.do(Act.RESPOND, ActorRole.VENDOR)
    act, role, fields = close
    run.do(act, role, **fields)
    assert run.state is S.CLOSED
    closed = run.dispute
    flagged = chargeback(run, "cb-late")
    (event,) = flagged.events
    assert event.event_type == "support.dispute.chargeback_recorded"
    assert event.data.state is S.CLOSED
    assert event.data.flag == f"chargeback cb-late after the dispute closed ({outcome})"
    assert run.dispute is not None
    assert closed is not None
    assert (run.dispute.outcome, run.dispute.refund) == (closed.outcome, closed.refund)


def test_a_redelivered_chargeback_acts_once_with_the_same_event_ids() -> None:
    first, second = Run(), Run()
    for run in (first, second):
        run.do(Act.OPEN)
    a = apply(first.dispute, action(Act.CHARGEBACK, ActorRole.SYSTEM, chargeback_id="cb-3"),
              MONDAY, first.policy, action_id="cb-3:chargeback")  # fmt: skip
    b = apply(second.dispute, action(Act.CHARGEBACK, ActorRole.SYSTEM, chargeback_id="cb-3"),
              MONDAY, second.policy, action_id="cb-3:chargeback")  # fmt: skip
    assert [e.event_id for e in a.events] == [e.event_id for e in b.events]
    again = apply(a.dispute, action(Act.CHARGEBACK, ActorRole.SYSTEM, chargeback_id="cb-3"),
                  MONDAY, first.policy, action_id="cb-3:chargeback")  # fmt: skip
    assert again.ignored == "action 'cb-3:chargeback' was already applied"
    assert again.dispute is a.dispute
    assert not again.events


def test_only_the_system_reports_chargebacks_and_only_for_the_disputes_parties() -> None:
    run = Run()
    run.do(Act.OPEN)
    for role in (ActorRole.BUYER, ActorRole.VENDOR, ActorRole.AGENT):
        party = ROLE_PARTY[role].value
        refused = run.do(Act.CHARGEBACK, role, chargeback_id="cb-1").refused
        assert refused == f"a {party} may not chargeback (only: system)", role
    refused = chargeback(run, "cb-2", buyer_id="buyer-8").refused
    assert refused == (
        f"chargeback 'cb-2' names buyer 'buyer-8' and seller {VENDOR!r}; the "
        f"dispute on order {ORDER!r} is between {BUYER!r} and {VENDOR!r}"
    )
    assert run.state is S.AWAITING_SELLER


def test_a_chargeback_path_is_no_longer_than_the_contested_one() -> None:
    # open, start window, respond, chargeback, decide, close
    run = Run()
    steps = [run.do(Act.OPEN), run.do(Act.RESPOND, ActorRole.VENDOR), chargeback(run),
             run.do(Act.DECIDE, ActorRole.AGENT)]  # fmt: skip
    moves = sum(e.data.state != e.data.previous_state for d in steps for e in d.events)
    assert moves == longest_path() == 6
