"""A routing rule's `open_dispute`: validated in the ruleset, read from the message, written
as the system's `open_dispute` command, judged by the disputes stage like any other."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from router.inbound import parse_inbound
from router.outputs import render
from router.rules_policy import RulesetPolicy
from router.tickets import Threaded, TicketState, thread_message
from rules import compile_ruleset, parse_ruleset_text
from rules.ast import Ruleset
from rules.explain import explain, render_explanation
from rules.inputs import InputDoc, input_from_doc
from rules.validate import Problem
from schemas import CloudEvent, InboundEvent, RoutingDecision, SourcePosition
from schemas.dispute import DisputeActionEvent, OpenDispute
from schemas.topics import DISPUTES_EVENTS, TICKETS_ACTIONS
from tests.factories import inbound_bytes
from tests.unit.disputes.test_disputes_stage import Harness

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)

RULESET = """
name: disputes-by-rule
version: "1"
departments: [disputes, general]
sla_policies: [standard]
intents: {not_received: ["never arrived", "not received"]}
rules:
  - id: overdue-parcel
    priority: 10
    when:
      all:
        - {field: message.intent, contains: not_received}
        - {field: order.days_late, gte: 7}
    then:
      continue: true
      tags: [dispute-opened]
      open_dispute: {reason: item_not_received, amount: order.total, currency: order.currency,
                     category: message.attributes.category}
  - id: damaged
    priority: 5
    when: {field: message.text, contains: broken}
    then:
      route: dept:disputes
      open_dispute: {reason: damaged, amount: order.total, currency: EUR}
  - id: catch-all
    then: {route: dept:general}
"""


def ruleset(text: str = RULESET) -> Ruleset | list[Problem]:
    return parse_ruleset_text(text, "rules.yaml")


def policy() -> RulesetPolicy:
    parsed = ruleset()
    assert isinstance(parsed, Ruleset), parsed
    return RulesetPolicy(compile_ruleset(parsed))


ATTRS = {"days_late": 9, "total": "59.90", "currency": "EUR", "category": "audio"}


def inbound(
    event_id: str, body: str, *, offset: int, **kw: Any
) -> tuple[SourcePosition, InboundEvent]:
    kw.setdefault("order_id", "o-77")
    kw.setdefault("attributes", ATTRS)
    source = SourcePosition(topic="channel.email", partition=0, offset=offset)
    parsed = parse_inbound(inbound_bytes(event_id, body=body, **kw), None, source, NOW)
    assert isinstance(parsed, InboundEvent)
    return source, parsed


def opened(body: str = "My parcel never arrived", **kw: Any) -> Threaded:
    source, parsed = inbound("evt-1", body, offset=1, **kw)
    key = parsed.data.thread_ref.encode()
    result = thread_message(parsed, key, source, None, policy(), NOW)
    assert isinstance(result, Threaded)
    return result


def commands(threaded: Threaded) -> list[Any]:
    return [r for r in render(threaded, "evt-1", NOW) if r.topic == TICKETS_ACTIONS.name]


def decision_of(threaded: Threaded) -> RoutingDecision:
    (record,) = [r for r in render(threaded, "evt-1", NOW) if r.topic == "tickets.decisions"]
    return CloudEvent[RoutingDecision].model_validate_json(record.value).data


# --- the ruleset language -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        ("{reason: lost, amount: order.total, currency: EUR}",
         "then.open_dispute.reason: Input should be 'item_not_received'"),
        ("{reason: damaged, amount: order.totl., currency: EUR}",
         "open_dispute amount: unknown field path 'order.totl.'"),
        ("{reason: damaged, amount: message.subject, currency: EUR}",
         "open_dispute amount cannot be read from message.subject (a text field)"),
        ("{reason: damaged, amount: order.total, currency: euro}",
         "open_dispute currency: unknown field path 'euro'"),
        ("{reason: damaged, amount: order.total}",
         "then.open_dispute: missing required key 'currency'"),
        ("{reason: damaged, amount: order.total, currency: EUR, refund: all}",
         "then.open_dispute: unknown key 'refund'"),
    ],
)  # fmt: skip
def test_a_bad_open_dispute_is_reported_with_its_line_and_rule(claim: str, message: str) -> None:
    line = 1 + RULESET[: RULESET.index("{reason: damaged")].count("\n")
    damaged = "{reason: damaged, amount: order.total, currency: EUR}"
    problems = ruleset(RULESET.replace(damaged, claim))
    assert isinstance(problems, list)
    texts = [str(p) for p in problems]
    assert any(t.startswith(f"rules.yaml:{line}: rule damaged: ") and message in t
               for t in texts), texts  # fmt: skip


def test_explain_names_the_dispute_a_continue_rule_opens() -> None:
    parsed = ruleset()
    assert isinstance(parsed, Ruleset)
    doc = InputDoc(message={"body": "My parcel never arrived"}, order=ATTRS)
    lines = render_explanation(explain(parsed, input_from_doc(doc)))
    assert any("overdue-parcel" in x and "MATCHED, continue" in x
               and "open_dispute item_not_received" in x for x in lines), lines  # fmt: skip


# --- the routing stage writes the command ---------------------------------------------------


def test_a_matching_rule_writes_the_open_dispute_command_keyed_by_order() -> None:
    threaded = opened()
    assert threaded.state.queue == "dept:general"  # the continue rule does not route
    (record,) = commands(threaded)
    assert record.key == b"o-77"
    event = DisputeActionEvent.model_validate_json(record.value)
    assert event.type == "support.dispute.action"
    action = event.data
    assert isinstance(action, OpenDispute)
    assert (action.order_id, action.buyer_id, action.vendor_id) == ("o-77", "buyer-1", "acme")
    assert (action.actor.id, action.actor.role.value) == ("rule:overdue-parcel", "system")
    assert (action.reason_code.value, action.amount, action.currency, action.category) == (
        "item_not_received", Decimal("59.90"), "EUR", "audio"
    )  # fmt: skip
    assert action.at == NOW
    assert action.description is not None
    assert threaded.state.ticket_id in action.description
    dispute = decision_of(threaded).dispute
    assert dispute is not None
    assert dispute.command_id == event.id
    assert dispute.problem is None


def test_a_fixed_currency_and_the_terminal_rule_claim() -> None:
    (record,) = commands(opened("It came broken", attributes={"total": 12}))
    action = DisputeActionEvent.model_validate_json(record.value).data
    assert isinstance(action, OpenDispute)
    assert (action.reason_code.value, action.amount, action.currency) == (
        "damaged", Decimal(12), "EUR"
    )  # fmt: skip


def test_the_first_matching_rule_with_a_claim_wins() -> None:
    (record,) = commands(opened("My parcel never arrived and the box is broken"))
    action = DisputeActionEvent.model_validate_json(record.value).data
    assert action.actor.id == "rule:overdue-parcel"


@pytest.mark.parametrize(
    ("kw", "problem"),
    [
        ({"attributes": {"days_late": 9, "currency": "EUR"}},
         "amount: the message does not carry it"),
        ({"attributes": {**ATTRS, "total": "-3"}}, "amount: Input should be greater than 0"),
        ({"attributes": {**ATTRS, "currency": "euros"}}, "currency: String should match"),
        ({"role": "seller"}, "the sender is a seller, not a buyer"),
        ({"order_id": None}, "the message names no order (order_id)"),
        ({"vendor_id": None}, "the message names no selling vendor (vendor_id)"),
    ],
)  # fmt: skip
def test_a_claim_the_message_cannot_back_writes_no_command_and_says_why(
    kw: dict[str, Any], problem: str
) -> None:
    threaded = opened(**kw)
    assert commands(threaded) == []
    dispute = decision_of(threaded).dispute
    assert dispute is not None
    assert dispute.command_id is None
    assert dispute.problem is not None
    assert problem in dispute.problem
    assert threaded.state.queue == "dept:general"  # the message itself is routed as usual


def test_no_matching_claim_no_command_and_no_dispute_on_the_decision() -> None:
    threaded = opened("Where is the invoice?")
    assert commands(threaded) == []
    assert decision_of(threaded).dispute is None


def test_a_replay_after_a_crash_writes_the_same_command() -> None:
    first = opened()
    stored = TicketState.from_bytes(first.state.to_bytes())
    source, parsed = inbound("evt-1", "My parcel never arrived", offset=1)
    later = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
    again = thread_message(parsed, b"thread-1", source, stored, policy(), later)
    assert isinstance(again, Threaded)
    assert again.replayed
    assert [r.value for r in commands(again)] == [r.value for r in commands(first)]


def test_a_follow_up_opens_nothing() -> None:
    first = opened()
    source, parsed = inbound("evt-2", "It never arrived, again", offset=2)
    follow = thread_message(parsed, b"thread-1", source, first.state, policy(), NOW)
    assert isinstance(follow, Threaded)
    assert not follow.is_new
    assert [r for r in render(follow, "evt-2", NOW) if r.topic == TICKETS_ACTIONS.name] == []


# --- the disputes stage judges it ----------------------------------------------------------


def test_the_disputes_stage_opens_the_dispute_the_rule_asked_for() -> None:
    (record,) = commands(opened(vendor_id="acme", order_id="o-1001"))
    h = Harness()
    out = h.act(record.value, key=record.key)
    assert h.types() == ["support.dispute.opened", "support.dispute.awaiting_seller"]
    opened_event = orjson.loads(h.sent.on(DISPUTES_EVENTS.name)[0].value)["data"]
    assert opened_event["reason_code"] == "item_not_received"
    assert not [r for r in out if r.topic.endswith("dlq")]


def test_a_second_ticket_about_a_disputed_order_is_ignored_not_dead_lettered() -> None:
    (first,) = commands(opened(vendor_id="acme", order_id="o-1001"))
    (second,) = commands(opened("The parcel never arrived", thread_ref="thread-2",
                                vendor_id="acme", order_id="o-1001"))  # fmt: skip
    assert orjson.loads(first.value)["id"] != orjson.loads(second.value)["id"]
    h = Harness()
    h.act(first.value, key=first.key)
    out = h.act(second.value, key=second.key)
    assert not [r for r in out if r.topic.endswith("dlq")]
    assert h.types() == ["support.dispute.opened", "support.dispute.awaiting_seller"]
    assert h.stage.counts["ignored"] == 1
