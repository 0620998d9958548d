"""Helpers for the rule-engine tests: small rulesets from YAML text, inputs, both evaluators."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rules import CompiledRuleset, NaiveEvaluator, Problem, RuleInput, RuleResult, Ruleset
from rules.facts import BuyerInfo, TicketInfo
from rules.load import parse_ruleset_text
from schemas.message import InboundMessage
from schemas.vendor import VendorProfile

EXAMPLES = Path(__file__).resolve().parents[3] / "rules" / "examples"
NOW = datetime(2024, 6, 4, 10, 0, tzinfo=UTC)  # Tuesday

HEADER = """\
name: test
version: "1"
departments: [general, disputes, payments, vendors_desk, desk_de]
sla_policies: [urgent_sla, vip, standard]
defaults: {priority: normal, sla: standard}
intents:
  not_received: [never arrived, not received]
  refund: [refund]
calendars:
  office:
    timezone: Europe/Berlin
    hours: {weekdays: ["09:00-17:00"]}
  night:
    timezone: UTC
    hours: {daily: ["22:00-06:00"]}
  vendor_hours:
    timezone: vendor
    fallback_timezone: UTC
    hours: {weekdays: ["08:00-20:00"]}
"""


def ruleset_text(rules_yaml: str, header: str = HEADER) -> str:
    return header + "rules:\n" + textwrap.indent(textwrap.dedent(rules_yaml), "  ")


def parse(rules_yaml: str, header: str = HEADER) -> Ruleset:
    parsed = parse_ruleset_text(ruleset_text(rules_yaml, header), "test.yaml")
    assert not isinstance(parsed, list), "\n".join(map(str, parsed))
    return parsed


def problems(rules_yaml: str, header: str = HEADER, **kw: Any) -> list[Problem]:
    parsed = parse_ruleset_text(ruleset_text(rules_yaml, header), "test.yaml", **kw)
    assert isinstance(parsed, list), "expected problems, the ruleset is valid"
    return parsed


def message(body: str = "hello", **fields: Any) -> InboundMessage:
    data: dict[str, Any] = {
        "channel": "email",
        "message_id": "m-1",
        "thread_ref": "t-1",
        "sender": {"id": "buyer-1", "role": "buyer"},
        "body": body,
    }
    data.update(fields)
    return InboundMessage.model_validate(data)


def make_input(
    body: str = "hello",
    *,
    now: datetime = NOW,
    ticket: TicketInfo | None = None,
    vendor: dict[str, Any] | None = None,
    buyer: BuyerInfo | None = None,
    order: dict[str, Any] | None = None,
    **fields: Any,
) -> RuleInput:
    return RuleInput(
        message=message(body, **fields),
        now=now,
        ticket=ticket,
        vendor=VendorProfile.model_validate(vendor) if vendor is not None else None,
        buyer=buyer,
        order=order or {},
    )


def decide(ruleset: Ruleset, inp: RuleInput) -> RuleResult:
    """Evaluate with both evaluators, check they agree, return the compiled result."""
    fast = CompiledRuleset(ruleset).evaluate(inp)
    slow = NaiveEvaluator(ruleset).evaluate(inp)
    assert same_decision(fast, slow), f"compiled {fast} != naive {slow}"
    return fast


def same_decision(a: RuleResult, b: RuleResult) -> bool:
    keys = ("queue", "priority", "sla_policy", "rule_id", "tags", "matched", "explanation",
            "fallback", "ruleset", "ruleset_version")  # fmt: skip
    return all(getattr(a, k) == getattr(b, k) for k in keys)
