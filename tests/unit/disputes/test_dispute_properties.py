"""Random action sequences by random parties: no sequence reaches a state the table does not
allow, refused actions change nothing, and every dispute closes within the longest path."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from router.disputes.machine import (
    TIMEOUTS,
    TRANSITIONS,
    Act,
    Decision,
    Dispute,
    Timeout,
    apply,
    fire_due,
    longest_path,
)
from schemas.action import ActorRole
from schemas.dispute import DisputeState
from tests.unit.disputes.dispute_support import (
    EXTERNAL_ACTS,
    MONDAY,
    ORDER,
    VENDORS,
    action,
    policy,
)

POLICIES = {silence: policy(buyer_silence=silence) for silence in ("accept", "withdraw")}
EDGES = {(row.source, row.target if row.target is not None else row.source)
         for row in TRANSITIONS}  # fmt: skip

NATURAL = {Act.OPEN: ActorRole.BUYER, Act.RESPOND: ActorRole.VENDOR, Act.ACCEPT: ActorRole.BUYER,
           Act.REJECT: ActorRole.BUYER, Act.DECIDE: ActorRole.AGENT,
           Act.WITHDRAW: ActorRole.BUYER, Act.NOTE: ActorRole.AGENT,
           Act.CHARGEBACK: ActorRole.SYSTEM}  # fmt: skip
OFFERS = st.sampled_from([
    {"kind": "full_refund"}, {"kind": "partial_refund", "amount": "10.00"},
    {"kind": "partial_refund", "amount": "500.00"}, {"kind": "replacement"},
    {"kind": "contest"}, {"kind": "contest", "evidence": [{"name": "photo.jpg"}]},
])  # fmt: skip
VERDICTS = st.sampled_from([
    {"verdict": "refund_full", "reason": "r"}, {"verdict": "deny", "reason": "r"},
    {"verdict": "refund_partial", "reason": "r", "amount": "5.00"},
    {"verdict": "refund_partial", "reason": "r"},
])  # fmt: skip
CLAIMS = st.sampled_from([
    {}, {"amount": "999.00"}, {"reason_code": "unauthorised_charge"}, {"currency": "USD"},
    {"reason_code": "not_as_described", "amount": "20.00", "category": "books"},
])  # fmt: skip


@st.composite
def steps(draw: st.DrawFn) -> tuple[str, object]:
    """("act", (act, role, actor id or None, fields)) or ("wait", hours) or ("timeout", name)."""
    kind = draw(st.sampled_from(["act", "act", "act", "wait", "timeout"]))
    if kind == "wait":
        return ("wait", draw(st.integers(min_value=1, max_value=48)))
    if kind == "timeout":
        return ("timeout", draw(st.sampled_from(sorted(TIMEOUTS))))
    act = draw(st.sampled_from([*EXTERNAL_ACTS, Act.RESPOND, Act.ACCEPT, Act.REJECT]))
    # half the time the party the action belongs to, else anyone: both paths get explored
    role = draw(st.one_of(st.just(NATURAL[act]), st.sampled_from(list(ActorRole))))
    stranger = draw(st.booleans()) and draw(st.booleans())
    fields: dict[str, object] = {}
    if act in (Act.OPEN, Act.CHARGEBACK):
        fields = dict(draw(CLAIMS))
    if act is Act.CHARGEBACK:  # a new chargeback, or a redelivery of an earlier one
        fields["chargeback_id"] = draw(st.sampled_from(["cb-1", "cb-2"]))
        if draw(st.booleans()) and draw(st.booleans()):
            fields["vendor_id"] = "gold-us"  # names another seller than the dispute's
    elif act is Act.RESPOND:
        fields = {"offer": draw(OFFERS)}
    elif act is Act.DECIDE:
        fields = dict(draw(VERDICTS))
    return ("act", (act, role, "someone-else" if stranger else None, fields))


def check(before: Dispute | None, decision: Decision) -> None:
    after = decision.dispute
    if decision.refused or decision.ignored:
        assert after is before
        assert not decision.events
        return
    assert after is not None
    assert decision.events
    state = before.state if before is not None else None
    for event in decision.events:
        assert (state, event.data.state) in EDGES, "a transition the table does not have"
        assert event.data.previous_state == state
        state = event.data.state
    assert after.state == state
    if after.state is DisputeState.CLOSED:
        assert after.deadlines == {}
        assert after.outcome is not None
    # a deadline exists exactly while someone is awaited
    waiting = {DisputeState.AWAITING_SELLER: {"seller_response"},
               DisputeState.SELLER_RESPONDED: {"buyer_response"}}  # fmt: skip
    assert set(after.deadlines) == waiting.get(after.state, set())


OPEN_FIRST = ("act", (Act.OPEN, ActorRole.BUYER, None, {}))


@settings(max_examples=400, deadline=None)
@given(st.lists(steps(), min_size=4, max_size=30), st.sampled_from(sorted(POLICIES)), st.booleans())
def test_random_sequences_stay_legal_and_every_dispute_closes(
    sequence: list[tuple[str, object]], silence: str, open_first: bool
) -> None:
    if open_first:  # else the dispute opens when (and if) the sequence opens it
        sequence = [OPEN_FIRST, *sequence]
    pol = POLICIES[silence]
    now = MONDAY
    dispute: Dispute | None = None
    transitions = 0
    for n, (kind, arg) in enumerate(sequence):
        if kind == "wait":
            now += timedelta(hours=int(arg))  # type: ignore[call-overload]
            continue
        if kind == "timeout":
            decision = apply(dispute, Timeout(ORDER, str(arg)), now, pol)
        else:
            act, role, actor, fields = arg  # type: ignore[misc]
            decision = apply(dispute, action(act, role, at=now, actor=actor, **fields), now, pol,
                             action_id=f"a{n}", vendors=VENDORS)  # fmt: skip
        check(dispute, decision)
        transitions += sum(e.data.state != e.data.previous_state for e in decision.events)
        dispute = decision.dispute
    assert transitions <= longest_path()
    if dispute is None:
        return
    # Let the clock run: deadlines fire; in platform review an agent decides. It closes, and
    # never takes more transitions in all than the longest path of the table.
    for _ in range(longest_path()):
        if dispute.state is DisputeState.CLOSED:
            break
        if dispute.state is DisputeState.PLATFORM_REVIEW:
            decision = apply(dispute, action(Act.DECIDE, ActorRole.AGENT, at=now), now, pol,
                             action_id="final")  # fmt: skip
        else:
            due = dispute.next_due()
            assert due is not None, f"{dispute.state} waits for nobody"
            now = max(now, due)
            decision = fire_due(dispute, now, pol)
        check(dispute, decision)
        transitions += sum(e.data.state != e.data.previous_state for e in decision.events)
        dispute = decision.dispute
        assert dispute is not None
    assert dispute.state is DisputeState.CLOSED
    assert transitions <= longest_path()
