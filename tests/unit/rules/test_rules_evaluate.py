"""Evaluation order, action merging, vendor fallback, traces and the router adapter."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from router.routing import BuyerHistory, Decision, RoutingContext, RoutingPolicy, TicketFacts
from router.rules_policy import RulesetPolicy, decision_of
from rules import CompiledRuleset, NaiveEvaluator
from rules.facts import BuyerInfo, TicketInfo
from rules.result import MAX_TRACE, MAX_TRACE_UNMATCHED
from schemas.ticket import Priority
from tests.unit.rules.rules_support import EXAMPLES, NOW, decide, make_input, message, parse

ORDERED = parse(
    """\
    - id: low-first-in-file
      priority: -5
      when: {field: message.channel, eq: chat}
      then: {route: "dept:payments"}
    - id: tag-everything
      priority: 100
      then: {tags: ["seen", "ch:{message.channel}"], continue: true}
    - id: vip
      priority: 90
      when: {field: buyer.vip, eq: true}
      then: {priority: high, sla: vip, tags: [vip], continue: true}
    - id: urgent-words
      priority: 80
      when: {field: message.text, contains_any: [lawyer, court]}
      then: {priority: urgent, sla: urgent_sla, tags: [legal], continue: true}
    - id: same-priority-first
      when: {field: message.channel, eq: chat}
      then: {route: "dept:disputes", priority: low, tags: [seen]}
    - id: same-priority-second
      when: {field: message.channel, eq: chat}
      then: {route: "dept:general"}
    - id: to-vendor
      when: {field: message.vendor_id, exists: true}
      then:
        route: "vendor:{message.vendor_id}"
        fallback: "dept:vendors_desk"
        contract: {field: vendor.tier, in: [gold, platinum]}
        sla: standard
        tags: [vendor]
    - id: catch-all
      priority: -100
      then: {route: "dept:general"}
    """
)


def test_rules_run_by_priority_then_file_order() -> None:
    res = decide(ORDERED, make_input(channel="chat"))
    assert res.rule_id == "same-priority-first"  # not the earlier-in-file, lower priority
    assert res.queue == "dept:disputes"
    assert res.matched == ("tag-everything", "same-priority-first")


def test_continue_rules_add_tags_and_priority_is_the_maximum() -> None:
    res = decide(ORDERED, make_input("my lawyer will call", channel="chat",
                                     buyer=BuyerInfo(vip=True)))  # fmt: skip
    assert res.matched == ("tag-everything", "vip", "urgent-words", "same-priority-first")
    assert res.priority is Priority.URGENT  # max(high, urgent, low)
    assert res.tags == ("seen", "ch:chat", "vip", "legal")  # first-seen order, no repeats
    assert res.sla_policy == "urgent_sla"  # the strictest named (listed first)


def test_a_lower_priority_is_kept_when_no_rule_raises_it() -> None:
    assert decide(ORDERED, make_input(channel="chat")).priority is Priority.LOW
    assert decide(ORDERED, make_input()).priority is Priority.NORMAL  # the default
    assert decide(ORDERED, make_input()).sla_policy == "standard"


def test_vendor_route_is_templated() -> None:
    res = decide(ORDERED, make_input(vendor_id="acme", vendor={"vendor_id": "acme",
                                                                "tier": "gold"}))  # fmt: skip
    assert res.queue == "vendor:acme"
    assert res.fallback is None
    assert res.tags == ("seen", "ch:email", "vendor")


def test_vendor_fallbacks() -> None:
    cases = {
        "vendor acme unknown": make_input(vendor_id="acme"),
        "vendor acme suspended": make_input(
            vendor_id="acme", vendor={"vendor_id": "acme", "status": "suspended", "tier": "gold"}
        ),
        "vendor acme offboarded": make_input(
            vendor_id="acme", vendor={"vendor_id": "acme", "status": "offboarded", "tier": "gold"}
        ),
        "vendor acme out of contract (vendor.tier in": make_input(
            vendor_id="acme", vendor={"vendor_id": "acme", "tier": "standard"}
        ),
        "vendor acme unknown ": make_input(  # the profile is another vendor's
            vendor_id="acme", vendor={"vendor_id": "other", "tier": "gold"}
        ),
    }
    for reason, inp in cases.items():
        res = decide(ORDERED, inp)
        assert res.queue == "dept:vendors_desk", reason
        assert res.rule_id == "to-vendor"
        assert res.fallback is not None
        assert res.fallback.startswith(reason.strip()), (reason, res.fallback)
        assert "fallback to dept:vendors_desk" in res.explanation
        assert res.trace[-1].matched
        assert "dept:vendors_desk" in res.trace[-1].reason


def test_missing_template_field_falls_back() -> None:
    ruleset = parse(
        """\
        - id: by-order-vendor
          when: {field: message.order_id, exists: true}
          then: {route: "vendor:{order.vendor}", fallback: "dept:vendors_desk"}
        - id: catch-all
          then: {route: "dept:general"}
        """
    )
    res = decide(ruleset, make_input(order_id="o-1"))
    assert (res.queue, res.fallback) == ("dept:vendors_desk", "no vendor id")
    res = decide(ruleset, make_input(order_id="o-1", order={"vendor": "Not A Vendor Id"}))
    assert res.fallback == "bad vendor id 'Not A Vendor Id'"
    res = decide(ruleset, make_input(order_id="o-1", order={"vendor": "zed"},
                                     vendor={"vendor_id": "zed"}))  # fmt: skip
    assert res.queue == "vendor:zed"


def test_trace_lists_tried_rules_with_their_first_failing_condition() -> None:
    res = decide(ORDERED, make_input(vendor_id="acme", vendor={"vendor_id": "acme",
                                                                "tier": "gold"}))  # fmt: skip
    entries = [(t.rule_id, t.matched, t.reason) for t in res.trace]
    assert entries == [("tag-everything", True, "continue"), ("to-vendor", True, "matched")]
    # The index skips rules that cannot match (vip: buyer.vip is indexed; urgent-words: the
    # phrases of its only test are); the reference evaluator tries every rule and gives the
    # same reasons for the rules both tried.
    naive = NaiveEvaluator(ORDERED).evaluate(
        make_input(vendor_id="acme", vendor={"vendor_id": "acme", "tier": "gold"}),
        full_trace=True,
    )
    reasons = {t.rule_id: t.reason for t in naive.trace}
    assert reasons["vip"] == "buyer.vip eq true"
    assert reasons["urgent-words"] == "message.text contains_any ['lawyer', 'court']"
    assert reasons["same-priority-first"] == "message.channel eq 'chat'"
    assert all(reasons[rule] == reason for rule, _, reason in entries)
    # A rule the index selects but whose other conditions fail is traced with the first one.
    ruleset = parse(
        """\
        - id: refunds-by-email
          when: {all: [{field: message.channel, eq: email}, {field: message.body, contains: refund},
                       {field: ticket.message_count, gte: 2}]}
          then: {route: "dept:payments"}
        - id: repeat
          when: {field: ticket.message_count, gte: 3}
          then: {route: "dept:disputes"}
        - id: catch-all
          then: {route: "dept:general"}
        """
    )
    res = decide(ruleset, make_input("hello"))
    assert [(t.rule_id, t.matched, t.reason) for t in res.trace] == [
        ("refunds-by-email", False, "message.body contains 'refund'"),
        ("repeat", False, "ticket.message_count gte 3"),
        ("catch-all", True, "matched"),
    ]


def test_trace_is_bounded() -> None:
    many = "".join(
        f"- id: r{i}\n  when: {{field: ticket.message_count, gt: {i + 10}}}\n"
        "  then: {route: dept:general}\n"
        for i in range(60)
    )
    ruleset = parse(many + "- id: catch-all\n  then: {route: dept:general}\n")
    res = decide(ruleset, make_input("nothing matches"))
    assert res.rule_id == "catch-all"
    assert len(res.trace) == MAX_TRACE_UNMATCHED + 1 <= MAX_TRACE
    assert res.trace[-1].rule_id == "catch-all"


def test_decisions_are_deterministic() -> None:
    inp = make_input("court", channel="chat", buyer=BuyerInfo(vip=True))
    compiled = CompiledRuleset(ORDERED)
    first = compiled.evaluate(inp)
    assert all(compiled.evaluate(inp) == first for _ in range(5))
    assert CompiledRuleset(ORDERED).evaluate(inp) == first


def test_explanation_names_the_rule_condition_and_contributors() -> None:
    res = decide(ORDERED, make_input(channel="chat", buyer=BuyerInfo(vip=True)))
    assert res.explanation == (
        "rule same-priority-first matched (message.channel eq 'chat'); "
        "also applied tag-everything, vip"
    )
    assert (res.ruleset, res.ruleset_version) == ("test", "1")


def test_index_selects_only_possible_rules() -> None:
    compiled = CompiledRuleset(ORDERED)
    assert "message.channel" in compiled.index_fields
    email = compiled.candidates(make_input(channel="email"))
    assert "same-priority-first" not in email
    assert "vip" not in email  # buyer.vip eq true is indexed
    chat = compiled.candidates(make_input(channel="chat", buyer=BuyerInfo(vip=True)))
    assert {"same-priority-first", "same-priority-second", "vip"} <= set(chat)
    assert list(chat) == sorted(chat, key=[r.id for r in ORDERED.rules].index)


def test_tags_rendered_from_index_fields_follow_each_message() -> None:
    ruleset = parse(
        """\
        - id: tag
          priority: 10
          then: {tags: ["ch:{message.channel}", "l:{message.language}", "v:{vendor.tier}"],
                 continue: true}
        - id: by-language
          when: {all: [{field: message.language, in: [de, fr]}, {field: vendor.tier, eq: gold}]}
          then: {route: "dept:desk_de"}
        - id: catch-all
          then: {route: "dept:general"}
        """
    )
    compiled = CompiledRuleset(ruleset)
    assert {"message.language", "vendor.tier"} <= set(compiled.index_fields)
    cases = [
        (make_input(language="de", vendor={"vendor_id": "v", "tier": "gold"}),
         ("ch:email", "l:de", "v:gold")),
        (make_input(channel="chat", language="fr"), ("ch:chat", "l:fr")),  # no vendor: no tier
        (make_input(language="de", vendor={"vendor_id": "v", "tier": "silver"}),
         ("ch:email", "l:de", "v:silver")),
        (make_input(), ("ch:email",)),
    ]  # fmt: skip
    naive = NaiveEvaluator(ruleset)
    for _ in range(2):  # the second time from the chains kept per key
        for inp, tags in cases:
            assert compiled.evaluate(inp).tags == tags == naive.evaluate(inp).tags


def test_ticket_defaults_to_a_new_single_message_ticket() -> None:
    ruleset = parse(
        """\
        - id: first
          when: {all: [{field: ticket.is_new, eq: true}, {field: ticket.message_count, eq: 1},
                       {field: ticket.channels, contains: email}, {field: ticket.age_hours, eq: 0}]}
          then: {route: "dept:disputes"}
        - id: catch-all
          then: {route: "dept:general"}
        """
    )
    assert decide(ruleset, make_input()).rule_id == "first"
    later = TicketInfo(is_new=False, message_count=2, channels=frozenset({"email"}))
    assert decide(ruleset, make_input(ticket=later)).rule_id == "catch-all"


def test_ruleset_policy_adapts_routing_context_to_decision() -> None:
    policy = RulesetPolicy(CompiledRuleset(ORDERED))
    assert isinstance(policy, RoutingPolicy)
    assert (policy.name, policy.version) == ("test", "1")
    ctx = RoutingContext(
        message=message("the court date", channel="chat"),
        ticket=TicketFacts(
            ticket_id="t-9",
            is_new=False,
            message_count=3,
            channels=frozenset({"email", "chat"}),
            opened_at=NOW - timedelta(hours=5),
            age_seconds=5 * 3600.0,
        ),
        now=NOW,
        buyer=BuyerHistory(vip=True),
    )
    decision = policy.decide(ctx)
    assert isinstance(decision, Decision)
    assert decision.queue == "dept:disputes"
    assert decision.priority is Priority.URGENT
    assert decision.rule_id == "same-priority-first"
    assert (decision.ruleset, decision.ruleset_version) == ("test", "1")
    assert decision.tags == ("seen", "ch:chat", "vip", "legal")
    assert decision.trace
    assert decision.trace[-1].rule_id == "same-priority-first"
    assert decision.explanation.startswith("rule same-priority-first matched")
    assert policy.evaluate(ctx).matched[-1] == "same-priority-first"
    # The fast construction equals the dataclass constructor and stays frozen.
    res = policy.evaluate(ctx)
    expected = Decision(
        queue=res.queue, priority=res.priority, sla_policy=res.sla_policy, rule_id=res.rule_id,
        ruleset=res.ruleset, ruleset_version=res.ruleset_version, tags=res.tags,
        explanation=res.explanation, trace=res.trace,
    )  # fmt: skip
    assert decision == expected
    assert hash(decision) == hash(expected)
    assert repr(decision) == repr(expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.queue = "dept:general"  # type: ignore[misc]  # checking it is frozen
    # Another message with the same outcome shares the result, and so the decision; one
    # with another outcome gets its own.
    same = dataclasses.replace(ctx, message=message("court again", channel="chat"))
    assert policy.evaluate(same) is res
    assert policy.decide(same) is decision
    other = dataclasses.replace(ctx, message=message("hello", channel="email"))
    assert policy.decide(other) == decision_of(policy.evaluate(other)) != decision


def test_naive_datetimes_are_read_as_utc() -> None:
    ruleset = parse(
        """\
        - id: office
          when: {field: now, within_hours: office}
          then: {route: "dept:desk_de"}
        - id: catch-all
          then: {route: "dept:general"}
        """
    )
    naive_now = datetime(2024, 6, 4, 8, 30)  # 10:30 in Berlin when read as UTC
    assert decide(ruleset, make_input(now=naive_now)).rule_id == "office"
    assert decide(ruleset, make_input(now=naive_now.replace(tzinfo=UTC))).rule_id == "office"


def test_policies_from_files_and_records(tmp_path: Path) -> None:
    from router.rules_policy import RulesetError, policy_from_file, policy_from_record
    from rules import ruleset_record

    policy = policy_from_file(EXAMPLES / "marketplace.yaml")
    assert (policy.name, policy.version) == ("marketplace", "1.0.0")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: '1'\nrules: []\n")
    with pytest.raises(RulesetError) as err:
        policy_from_file(bad)
    assert err.value.problems
    assert "rules" in str(err.value)
    swapped = policy_from_record(
        ruleset_record(policy.compiled.ruleset, at=NOW), source="routing.rules@3"
    )
    assert isinstance(swapped, RulesetPolicy)
    assert swapped.version == "1.0.0"
    refused = policy_from_record(b'{"specversion": "1.0", "data": {"name": "x"}}')
    assert isinstance(refused, list)
    assert refused


def test_booleans_are_never_numbers_even_through_the_index() -> None:
    ruleset = parse(
        """\
        - id: vip
          when: {field: buyer.vip, eq: true}
          then: {route: "dept:disputes"}
        - id: catch-all
          then: {route: "dept:general"}
        """
    )
    assert decide(ruleset, make_input(buyer=BuyerInfo(vip=True))).rule_id == "vip"
    not_a_bool = BuyerInfo(vip=1)  # type: ignore[arg-type]  # data from a sloppy table
    assert decide(ruleset, make_input(buyer=not_a_bool)).rule_id == "catch-all"
